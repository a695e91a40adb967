"""``predict_scene`` / ``predict_scenes``: a scene (or several) and a model in, land-cover COGs out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from geoseg import __version__
from geoseg.bundle import Device, ModelBundle
from geoseg.errors import ConfigError
from geoseg.io.scene import Scene
from geoseg.predict.predictor import (
    DEFAULT_BATCH_SIZE,
    describe_model,
    load_model_bundle,
    prepare_run,
    resolve_scene,
    stream_predictions,
)
from geoseg.predict.summary import ClassArea, PredictionSummary
from geoseg.stitch.cog import OverviewResampling
from geoseg.stitch.output import LandCoverWriter, check_landcover_outputs
from geoseg.utils.outputs import SIGNATURE_TAG

__all__ = ["predict_scene", "predict_scenes", "check_output_paths"]

_RASTER_SUFFIXES = (".tif", ".tiff")


def check_output_paths(out: Path, confidence: Path | None, vector: Path | None, scene: Scene | None = None,
                       model_dir: str | Path | None = None) -> None:
    """Validate output names and folders before any work is done (see
    :func:`geoseg.stitch.output.check_landcover_outputs`); ``scene`` and ``model_dir`` are the inputs."""
    check_landcover_outputs(out, confidence, vector, [*(scene.files() if scene is not None else []), model_dir])


def predict_scene(
    scene: Scene | str | Path,
    model: ModelBundle | str | Path,
    out: str | Path,
    *,
    window: int | None = None,
    overlap: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: Device | str = "auto",
    fp16: bool = True,
    tta: bool = False,
    confidence: str | Path | None = None,
    vector: str | Path | None = None,
    workers: int | None = None,
    overviews: OverviewResampling = "mode",
    progress: bool = True,
) -> PredictionSummary:
    """Predict one scene and write its land-cover COG with sidecars (and optional extras).

    Args:
        scene: an opened :class:`~geoseg.io.Scene` or a scene path (any layout).
        model: a loaded :class:`~geoseg.bundle.ModelBundle` or its directory (a training
            run directory with ``best``/``final`` works too).
        out: the land-cover GeoTIFF (``.tif``); ``<out>.aux.xml`` and ``<base>.qml`` go beside it.
        window: window size (default: the bundle's training window).
        overlap: overlap in pixels (default: window // 4).
        batch_size: windows per forward pass.
        device: ``auto``, ``cpu`` or ``cuda``.
        fp16: float16 autocast on CUDA.
        tta: average over the 8 flips/rotations.
        confidence: optional GeoTIFF of the max class probability (0–100, nodata 255).
        vector: optional GeoPackage of class polygons, dissolved per class.
        workers: feature-reading threads.
        overviews: overview resampling of the class COG, ``mode`` or ``nearest``.
        progress: show a progress bar.

    Returns:
        The run's :class:`PredictionSummary` (pixels, valid fraction, class areas, seconds).

    Raises:
        CheckpointError, BandError, SceneError, ConfigError: bad model, scene, options or
            output paths — always before anything is written.
    """
    start = datetime.now(UTC)
    out = Path(out)
    conf_path = None if confidence is None else Path(confidence)
    vec_path = None if vector is None else Path(vector)
    if overviews not in ("mode", "nearest"):
        raise ConfigError(f"class overviews must use mode or nearest resampling, got {overviews!r}")
    opened = resolve_scene(scene)
    check_output_paths(out, conf_path, vec_path, opened, model if isinstance(model, (str, Path)) else model.path)
    bundle = load_model_bundle(model)
    prepare_run(opened, bundle, window, overlap, batch_size, device)  # option errors before anything is written
    recipe = bundle.config.recipe_obj()
    tags = {
        "model": describe_model(bundle),
        "model_dir": str(bundle.path) if bundle.path else "",
        "geoseg_version": __version__,
        "date": start.isoformat(timespec="seconds"),
        "source_scene": opened.path,
        "scene_id": opened.scene_id,
        "recipe": recipe.name,
        "classes": "; ".join(f"{c.code}={c.name}" for c in bundle.config.classes),
        "TIFFTAG_SOFTWARE": f"geoseg {__version__}",
        SIGNATURE_TAG: "land cover",
        "TIFFTAG_DATETIME": start.strftime("%Y:%m:%d %H:%M:%S"),
    }
    writer = LandCoverWriter(out, opened.grid, bundle.config.classes, tags=tags, confidence=conf_path,
                             vector=vec_path, overviews=overviews)
    with writer:
        stats = stream_predictions(
            opened, bundle, writer, window=window, overlap=overlap, batch_size=batch_size, device=device,
            fp16=fp16, tta=tta, workers=workers, progress=progress,
        )
    grid = opened.grid
    pixel_ha = abs(grid.affine.a * grid.affine.e) / 10_000
    classes = tuple(ClassArea(c.code, c.name, int(writer.counts[c.code]), float(writer.counts[c.code] * pixel_ha))
                    for c in bundle.config.classes)
    pixels = grid.width * grid.height
    seconds = (datetime.now(UTC) - start).total_seconds()
    return PredictionSummary(
        scene_id=opened.scene_id, source=opened.path, output=out, width=grid.width, height=grid.height,
        crs=grid.crs.to_string(), pixels=pixels, valid_pixels=pixels - int(writer.counts[0]), classes=classes,
        windows=len(stats.layout), windows_run=stats.windows_run, seconds=seconds,
        model_seconds=stats.model_seconds, device=stats.device, confidence=conf_path, vector=vec_path,
        extra={"window": stats.layout.window_height, "overlap": stats.layout.overlap, "tta": tta,
               "accumulator_bytes": stats.accumulator_bytes},
    )


def predict_scenes(
    scenes: Sequence[Scene | str | Path],
    model: ModelBundle | str | Path,
    out_dir: str | Path,
    *,
    window: int | None = None,
    overlap: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: Device | str = "auto",
    fp16: bool = True,
    tta: bool = False,
    confidence: str | None = None,
    vector: str | None = None,
    workers: int | None = None,
    overviews: OverviewResampling = "mode",
    progress: bool = True,
) -> list[PredictionSummary]:
    """Predict several scenes with one model: ``<out_dir>/<scene_id>.tif`` each, in its own CRS.

    Everything is checked (bands, options, output names) before the first scene is predicted. Options
    are those of :func:`predict_scene`, except:

    Args:
        scenes: opened scenes or scene paths.
        model: bundle or bundle directory (loaded once).
        out_dir: output folder.
        confidence: if given (e.g. ``"confidence.tif"``), also write ``<scene_id>_<confidence>``.
        vector: if given (e.g. ``"classes.gpkg"``), also write ``<scene_id>_<vector>``.

    Raises:
        ConfigError: ``out_dir`` looks like a file, or two scenes share a scene id.
    """
    out_dir = Path(out_dir)
    if out_dir.suffix.lower() in _RASTER_SUFFIXES:
        raise ConfigError("with several scenes --out is a folder", path=out_dir, hint="e.g. --out predictions/")
    bundle = load_model_bundle(model)
    opened = [resolve_scene(s) for s in scenes]
    ids = [s.scene_id for s in opened]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(f"several scenes share the id {dupes[0]!r}; their outputs would collide",
                          hint="give each scene a distinct file name or catalog id")

    def paths(s: Scene) -> tuple[Path, Path | None, Path | None]:
        return (out_dir / f"{s.scene_id}.tif",
                None if confidence is None else out_dir / f"{s.scene_id}_{confidence}",
                None if vector is None else out_dir / f"{s.scene_id}_{vector}")

    for s in opened:
        prepare_run(s, bundle, window, overlap, batch_size, device)
        check_output_paths(*paths(s), s, bundle.path)
    summaries = []
    for s in opened:
        out, conf, vec = paths(s)
        summaries.append(predict_scene(
            s, bundle, out, window=window, overlap=overlap, batch_size=batch_size, device=device, fp16=fp16,
            tta=tta, confidence=conf, vector=vec, workers=workers, overviews=overviews, progress=progress,
        ))
    return summaries
