"""``geoseg predict``: scene(s) + model bundle → land-cover COG(s) that open styled in QGIS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from geoseg.cli.options import AliasOption, Flag, given, options_from
from geoseg.cli.scene_cmds import SCENE_FLAGS
from geoseg.cli.types import Device
from geoseg.io.options import SceneOptions
from geoseg.predict.options import PredictOptions

__all__ = ["predict_cmd"]


@click.command("predict")
@click.option("--model", "-m", "--model_path", "model", cls=AliasOption, type=click.Path(path_type=Path), required=True,
              help="Model directory written by geoseg train (MODEL_DIR, MODEL_DIR/best, final or epoch_N).")
@click.option("--scene", "-s", "scenes", type=click.Path(path_type=str), multiple=True,
              help="Scene: multi-band GeoTIFF, folder of band files, or .SAFE. Repeat for several scenes.")
@click.option("--series", is_flag=True, default=False,
              help="The --scene files are the dates of one time series (same grid; ordered by acquisition time) "
                   "for a series model: one map on their grid. Catalog series datasets need no flag.")
@click.option("--catalog", type=click.Path(path_type=Path), default=None,
              help="data_catalog.yaml to take the scenes of --dataset from (default: ./data_catalog.yaml).")
@click.option("--dataset", default=None, help="Predict every scene of this catalog dataset.")
@click.option("--out", "-o", "--output_dir", "out", cls=AliasOption, type=click.Path(path_type=Path), required=True,
              help="Output .tif (one scene), or a folder (no suffix): <scene_id>.tif for each scene.")
@click.option("--data-path", "--data_path", "data_path", cls=AliasOption, type=click.Path(path_type=Path),
              default=None, help="A folder of chips (GeoTIFF, .npy, .npz) instead of scenes: --out is a folder of "
              "<name>_layer.npz class masks, and <name>.tif for georeferenced chips.")
@click.option("--save-visualizations", "--save_visualizations", "save_visualizations", cls=AliasOption,
              is_flag=True, default=False, help="With --data-path: also <name>_vis.png (true colours | classes).")
@click.option("--confidence", type=click.Path(path_type=Path), default=None,
              help="Also write the max class probability (0-100, nodata 255) to this GeoTIFF "
                   "(several scenes: <scene_id>_<name> in --out).")
@click.option("--vector", type=click.Path(path_type=Path), default=None,
              help="Also write class polygons (dissolved per class) to this GeoPackage "
                   "(several scenes: <scene_id>_<name> in --out).")
@click.option("--summary-json", type=click.Path(path_type=Path), default=None,
              help="Also write the run summary (areas, seconds...) as JSON.")
@options_from(SceneOptions, exclude=("resolution", "offset", "invalid_scl"), flags={
    "scale": Flag(hint=SCENE_FLAGS["scale"].hint, help="DN per unit reflectance of the --scene files [default: 10000, "
                  "Sentinel-2 digital numbers]; 1 for reflectance 0-1 (catalog scenes: the catalog's scale:)"),
    "date": Flag(aliases=("--datetime",), help="Acquisition to read from a --scene folder holding band files of "
                 "several (YYYYMMDD[THHMMSS] or ISO 8601)")})
@options_from(PredictOptions, flags={"device": Flag(type=Device()), "tta": Flag(is_flag=True),
                                     "window": Flag(aliases=("--target_size",)),
                                     "workers": Flag(aliases=("--num_workers",))})
def predict_cmd(model: Path, scenes: tuple[str, ...], scale: float | None, date: str | None, series: bool,
                catalog: Path | None, dataset: str | None, out: Path, data_path: Path | None,
                save_visualizations: bool, confidence: Path | None, vector: Path | None,
                summary_json: Path | None, **options: Any) -> None:
    """Classify Sentinel-2 scene(s) with a trained model into a land-cover GeoTIFF.

    The output is a Cloud-Optimized GeoTIFF on the scene's exact 10 m grid: class codes of the
    model's class map, 0 (transparent) where the input is invalid, a colour palette, and
    sidecars (landcover.tif.aux.xml, landcover.qml) so QGIS shows named, coloured classes.

    \b
    Examples:
      geoseg predict --model runs/demo/train/model/best --scene S2_SCENE.SAFE --out landcover.tif
      geoseg predict -m MODEL -s a.tif -s b.tif --out predictions/ --confidence conf.tif
      geoseg predict -m MODEL --dataset demo --out predictions/
      geoseg predict -m SERIES_MODEL --series -s april.tif -s june.tif -s august.tif --out landcover.tif
      geoseg predict -m MODEL --data-path chips/ --out masks/ --save-visualizations
    """
    opts = PredictOptions(**given(options, PredictOptions.model_fields))  # bad options refused before any work
    scene_options = SceneOptions(scale=scale, date=date)
    from geoseg.errors import ConfigError
    from geoseg.io import open_scene

    if data_path is not None:  # seed 001's inference: a folder of chips
        other = [flag for flag, value in (("--scene", scenes), ("--series", series), ("--dataset", dataset), ("--catalog", catalog),
                                          ("--confidence", confidence), ("--vector", vector),
                                          ("--summary-json", summary_json), ("--datetime", date)) if value]
        if other:
            raise ConfigError(f"--data-path predicts chips; {', '.join(other)} is for scenes",
                              hint="drop them, or predict scenes without --data-path")
        from geoseg.predict.chips import predict_chips

        chips = predict_chips(data_path, model, out, opts, save_visualizations=save_visualizations, scale=scale)
        for line in chips.lines():
            click.echo(line)
        return
    if save_visualizations:
        raise ConfigError("--save-visualizations goes with --data-path (chips)", hint="add --data-path DIR")
    if dataset is None and catalog is not None:
        raise ConfigError("--catalog needs --dataset (which dataset's scenes to predict)")
    if not scenes and dataset is None:
        raise ConfigError("no scene given", hint="use --scene SCENE (repeatable) or --dataset NAME")
    if summary_json is not None:
        from geoseg.utils.outputs import claim_file

        claim_file(summary_json, flag="--summary-json", suffixes=(".json",))
    if series and (dataset is not None or len(scenes) < 2):
        raise ConfigError("--series takes the dates of one series as several --scene" if dataset is None else
                          "--series goes with --scene; a catalog dataset's series scenes are read as series anyway",
                          hint="repeat --scene, one per date (same grid)" if dataset is None else "drop --series")
    # a damaged or unusual scene is refused in a second, before torch loads
    opened: list[Any] = [open_scene(s, scene_options) for s in scenes]
    if series:
        from geoseg.predict.series import series_from_scenes

        opened = [series_from_scenes(opened)]  # grid and dates checked, before torch
    into_folder = out.is_dir() or not out.suffix  # ``--out maps/``: <scene_id>.tif inside
    if len(opened) == 1 and dataset is None and not into_folder:  # output paths too, before torch
        from geoseg.stitch.output import check_landcover_outputs

        check_landcover_outputs(out, confidence, vector, [*opened[0].files(), model])
    from geoseg.predict import load_model_bundle, predict_scene, predict_scenes

    bundle = load_model_bundle(model)
    if dataset is not None:
        from geoseg.config import dataset_scenes, load_catalog

        cat = load_catalog(catalog or Path("data_catalog.yaml"))
        catalog_scenes = dataset_scenes(cat, dataset)
        _warn_class_map(cat.dataset(dataset).classes, bundle.config.classes, dataset)
        from geoseg.predict.series import series_from_catalog

        opened += [c.scene if c.series is None else series_from_catalog(c.series) for c in catalog_scenes]
    if len(opened) == 1 and dataset is None and not into_folder:
        summaries = [predict_scene(opened[0], bundle, out, opts, confidence=confidence, vector=vector, warn=_warn)]
    else:
        summaries = predict_scenes(opened, bundle, out, opts,
                                   confidence=None if confidence is None else confidence.name,
                                   vector=None if vector is None else vector.name, warn=_warn)
    for summary in summaries:
        for line in summary.lines():
            click.echo(line)
    if summary_json is not None:
        from geoseg.utils.atomic import atomic_path

        with atomic_path(summary_json) as tmp:
            tmp.write_text(json.dumps([s.to_dict() for s in summaries], indent=2))


def _warn(message: str) -> None:
    """A finding of the training-domain check, on stderr before the prediction starts."""
    click.echo(f"warning: {message}", err=True)


def _warn_class_map(catalog_classes, model_classes, dataset: str) -> None:
    """Warn when the catalog's class map differs from the model's (the model's is written)."""
    ours = [(c.code, c.name) for c in model_classes]
    theirs = [(c.code, c.name) for c in catalog_classes]
    if theirs and ours != theirs:
        click.echo(f"warning: dataset {dataset}'s class map differs from the model's; writing the model's "
                   f"({', '.join(f'{c}={n}' for c, n in ours)})", err=True)
