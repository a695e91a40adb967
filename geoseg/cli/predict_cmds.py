"""``geoseg predict``: scene(s) + model bundle → land-cover COG(s) that open styled in QGIS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from geoseg.cli.types import Float, Int, fail_option

__all__ = ["predict_cmd"]


@click.command("predict")
@click.option("--model", "-m", "model", type=click.Path(path_type=Path), required=True,
              help="Model directory written by geoseg train (MODEL_DIR, MODEL_DIR/best, final or epoch_N).")
@click.option("--scene", "-s", "scenes", type=click.Path(path_type=str), multiple=True,
              help="Scene: multi-band GeoTIFF, folder of band files, or .SAFE. Repeat for several scenes.")
@click.option("--scale", type=Float(0, min_open=True, hint="DN per unit reflectance, e.g. --scale 1 for reflectance 0-1"),
              default=None, help="DN per unit reflectance of the --scene files [default: 10000, Sentinel-2 digital "
              "numbers]; 1 for reflectance 0-1 (catalog scenes: the catalog's scale:).")
@click.option("--date", default=None, help="Acquisition to read from a --scene folder holding band files of several "
              "(YYYYMMDD or YYYYMMDDTHHMMSS).")
@click.option("--catalog", type=click.Path(path_type=Path), default=None,
              help="data_catalog.yaml to take the scenes of --dataset from (default: ./data_catalog.yaml).")
@click.option("--dataset", default=None, help="Predict every scene of this catalog dataset.")
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True,
              help="Output .tif (one scene), or a folder (no suffix): <scene_id>.tif for each scene.")
@click.option("--window", type=Int(8, hint="window side in pixels, e.g. --window 256"), default=None, help="Window size in pixels (default: the model's training window).")
@click.option("--overlap", type=Int(0, hint="pixels shared by neighbouring windows, e.g. --overlap 32"), default=None, help="Overlap of neighbouring windows in pixels (default: window/4).")
@click.option("--batch-size", type=Int(1, hint="the batch size in windows per forward pass, e.g. --batch-size 8"), default=8, show_default=True, help="Windows per forward pass.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto: CUDA when available, else CPU.")
@click.option("--fp16/--no-fp16", default=True, show_default=True, help="Half-precision autocast on CUDA (CPU runs float32).")
@click.option("--tta", is_flag=True, help="Average predictions over flips and 90° rotations (8× slower).")
@click.option("--confidence", type=click.Path(path_type=Path), default=None,
              help="Also write the max class probability (0-100, nodata 255) to this GeoTIFF "
                   "(several scenes: <scene_id>_<name> in --out).")
@click.option("--vector", type=click.Path(path_type=Path), default=None,
              help="Also write class polygons (dissolved per class) to this GeoPackage "
                   "(several scenes: <scene_id>_<name> in --out).")
@click.option("--overviews", type=click.Choice(["mode", "nearest"]), default="mode", show_default=True,
              help="Resampling of the COG overviews (never averaging class codes).")
@click.option("--workers", type=Int(1, hint="threads, e.g. --workers 2"), default=None, help="Feature-reading threads (default: half the cores, 1-4).")
@click.option("--summary-json", type=click.Path(path_type=Path), default=None,
              help="Also write the run summary (areas, seconds...) as JSON.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def predict_cmd(model: Path, scenes: tuple[str, ...], scale: float | None, date: str | None,
                catalog: Path | None, dataset: str | None, out: Path,
                window: int | None, overlap: int | None, batch_size: int, device: str, fp16: bool, tta: bool,
                confidence: Path | None, vector: Path | None, overviews: str, workers: int | None,
                summary_json: Path | None, no_progress: bool) -> None:
    """Classify Sentinel-2 scene(s) with a trained model into a land-cover GeoTIFF.

    The output is a Cloud-Optimized GeoTIFF on the scene's exact 10 m grid: class codes of the
    model's class map, 0 (transparent) where the input is invalid, a colour palette, and
    sidecars (landcover.tif.aux.xml, landcover.qml) so QGIS shows named, coloured classes.

    \b
    Examples:
      geoseg predict --model runs/demo/model/best --scene S2_SCENE.SAFE --out landcover.tif
      geoseg predict -m MODEL -s a.tif -s b.tif --out predictions/ --confidence conf.tif
      geoseg predict -m MODEL --dataset demo --out predictions/
    """
    if window is not None and overlap is not None and overlap >= window:
        fail_option("--overlap", f"{overlap} must be smaller than --window {window}", f"e.g. --overlap {window // 4}")
    from geoseg.errors import ConfigError
    from geoseg.io import open_scene

    if dataset is None and catalog is not None:
        raise ConfigError("--catalog needs --dataset (which dataset's scenes to predict)")
    if not scenes and dataset is None:
        raise ConfigError("no scene given", hint="use --scene SCENE (repeatable) or --dataset NAME")
    if summary_json is not None:
        from geoseg.utils.outputs import claim_file

        claim_file(summary_json, flag="--summary-json", suffixes=(".json",))
    # a damaged or unusual scene is refused in a second, before torch loads
    opened = [open_scene(s, scale=scale, date=date) for s in scenes]
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
        opened += [c.scene for c in catalog_scenes]
    options: dict[str, Any] = {"window": window, "overlap": overlap, "batch_size": batch_size, "device": device, "fp16": fp16,
               "tta": tta, "workers": workers, "overviews": overviews, "progress": not no_progress}
    if len(opened) == 1 and dataset is None and not into_folder:
        summaries = [predict_scene(opened[0], bundle, out, confidence=confidence, vector=vector, **options)]
    else:
        summaries = predict_scenes(opened, bundle, out,
                                   confidence=None if confidence is None else confidence.name,
                                   vector=None if vector is None else vector.name, **options)
    for summary in summaries:
        for line in summary.lines():
            click.echo(line)
    if summary_json is not None:
        from geoseg.utils.atomic import atomic_path

        with atomic_path(summary_json) as tmp:
            tmp.write_text(json.dumps([s.to_dict() for s in summaries], indent=2))


def _warn_class_map(catalog_classes, model_classes, dataset: str) -> None:
    """Warn when the catalog's class map differs from the model's (the model's is written)."""
    ours = [(c.code, c.name) for c in model_classes]
    theirs = [(c.code, c.name) for c in catalog_classes]
    if theirs and ours != theirs:
        click.echo(f"warning: dataset {dataset}'s class map differs from the model's; writing the model's "
                   f"({', '.join(f'{c}={n}' for c, n in ours)})", err=True)
