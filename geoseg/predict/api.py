"""``predict_scene`` / ``predict_scenes``: a scene (or several) and a model in, land-cover COGs out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoseg import __version__
from geoseg.bundle import ModelBundle
from geoseg.config.schema import with_overrides
from geoseg.errors import ConfigError
from geoseg.io.scene import Scene
from geoseg.predict.options import PredictOptions
from geoseg.predict.predictor import (
    check_scene_domain,
    describe_model,
    load_model_bundle,
    prepare_run,
    resolve_scene,
    stream_predictions,
)
from geoseg.predict.series import SeriesInput
from geoseg.predict.summary import ClassArea, PredictionSummary

if TYPE_CHECKING:
    from geoseg.bundle.domain import DomainCheck
from geoseg.stitch.output import LandCoverWriter, check_landcover_outputs
from geoseg.utils.outputs import SIGNATURE_TAG

__all__ = ["predict_scene", "predict_scenes", "check_output_paths"]

_RASTER_SUFFIXES = (".tif", ".tiff")


def check_output_paths(out: Path, confidence: Path | None, vector: Path | None,
                       scene: Scene | SeriesInput | None = None,
                       model_dir: str | Path | None = None) -> None:
    """Validate output names and folders before any work is done (see
    :func:`geoseg.stitch.output.check_landcover_outputs`); ``scene`` and ``model_dir`` are the inputs."""
    check_landcover_outputs(out, confidence, vector, [*(scene.files() if scene is not None else []), model_dir])


def predict_scene(
    scene: Scene | SeriesInput | str | Path,
    model: ModelBundle | str | Path,
    out: str | Path,
    options: PredictOptions | None = None,
    *,
    confidence: str | Path | None = None,
    vector: str | Path | None = None,
    warn: Callable[[str], None] | None = None,
    **overrides: Any,
) -> PredictionSummary:
    """Predict one scene and write its land-cover COG with sidecars (and optional extras).

    Before any work the scene is compared with the model's training domain
    (:func:`~geoseg.predict.predictor.check_scene_domain`): each finding goes to ``warn``
    (default: a log warning), into the summary (``domain``) and the GeoTIFF's tags; with
    ``strict`` a finding refuses the scene (``DomainError``) and nothing is written.

    Args:
        scene: an opened :class:`~geoseg.io.Scene` or a scene path (any layout), or a time series
            (:class:`~geoseg.predict.series.SeriesInput`, for a series model: one map on the dates' grid).
        model: a loaded :class:`~geoseg.bundle.ModelBundle` or its directory (a training
            run directory with ``best``/``final`` works too).
        out: the land-cover GeoTIFF (``.tif``); ``<out>.aux.xml`` and ``<base>.qml`` go beside it.
        options: window, overlap, batch size, device, fp16, TTA, overviews, reading threads
            and progress (:class:`~geoseg.predict.PredictOptions`; default ``PredictOptions()``).
        confidence: optional GeoTIFF of the max class probability (0–100, nodata 255).
        vector: optional GeoPackage of class polygons, dissolved per class.
        warn: receives each training-domain finding (one sentence) unless ``strict``.
        **overrides: single options on top of ``options``, e.g. ``predict_scene(s, m, o, tta=True)``.

    Returns:
        The run's :class:`PredictionSummary` (pixels, valid fraction, class areas, seconds).

    Raises:
        CheckpointError, BandError, SceneError, ConfigError: bad model, scene, options or
            output paths — always before anything is written.
        DomainError: ``strict`` and the scene does not fit the model's training data.
    """
    opts = with_overrides(options or PredictOptions(), overrides)
    start = datetime.now(UTC)
    out = Path(out)
    conf_path = None if confidence is None else Path(confidence)
    vec_path = None if vector is None else Path(vector)
    opened = resolve_scene(scene)
    check_output_paths(out, conf_path, vec_path, opened, model if isinstance(model, (str, Path)) else model.path)
    bundle = load_model_bundle(model)
    prepare_run(opened, bundle, opts)  # option errors before anything is written
    domain = check_scene_domain(opened, bundle, opts, warn)  # --strict refuses here, before anything is written
    return _predict_checked(opened, bundle, out, opts, conf_path, vec_path, domain, start)


def _predict_checked(opened: Scene | SeriesInput, bundle: ModelBundle, out: Path, opts: PredictOptions, conf_path: Path | None,
                     vec_path: Path | None, domain: DomainCheck | None, start: datetime) -> PredictionSummary:
    """Predict a scene whose inputs, outputs and training domain were checked; write the outputs."""
    recipe = bundle.config.recipe
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
        "domain_check": ("not checked: the model records no training domain" if domain is None
                         else " | ".join([domain.status(), *domain.messages])),
    }
    dates = {}
    if isinstance(opened, SeriesInput):  # the dates used, in time order (None: a padded date)
        dates = {"dates": list(opened.acquired), "date_sources": [s.path if s else None for s in opened.scenes]}
        tags["dates"] = ", ".join(d or "padding" for d in opened.acquired)
    writer = LandCoverWriter(out, opened.grid, bundle.config.classes, tags=tags, confidence=conf_path,
                             vector=vec_path, overviews=opts.overviews)
    with writer:
        stats = stream_predictions(opened, bundle, writer, opts)
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
        model_seconds=stats.model_seconds, device=stats.device, engine=stats.engine,
        engine_reason=stats.engine_reason, confidence=conf_path, vector=vec_path,
        extra={"window": stats.layout.window_height, "overlap": stats.layout.overlap, "tta": opts.tta,
               "accumulator_bytes": stats.accumulator_bytes, **dates},
        domain=None if domain is None else domain.to_dict(),
    )


def predict_scenes(
    scenes: Sequence[Scene | SeriesInput | str | Path],
    model: ModelBundle | str | Path,
    out_dir: str | Path,
    options: PredictOptions | None = None,
    *,
    confidence: str | None = None,
    vector: str | None = None,
    warn: Callable[[str], None] | None = None,
    **overrides: Any,
) -> list[PredictionSummary]:
    """Predict several scenes with one model: ``<out_dir>/<scene_id>.tif`` each, in its own CRS.

    Everything is checked (bands, options, output names, the training domain) before the first
    scene is predicted.

    Args:
        scenes: opened scenes or scene paths.
        model: bundle or bundle directory (loaded once).
        out_dir: output folder.
        options: as for :func:`predict_scene` (``**overrides`` too).
        confidence: if given (e.g. ``"confidence.tif"``), also write ``<scene_id>_<confidence>``.
        vector: if given (e.g. ``"classes.gpkg"``), also write ``<scene_id>_<vector>``.
        warn: receives each training-domain finding, as for :func:`predict_scene`.
        **overrides: single options on top of ``options``.

    Raises:
        ConfigError: ``out_dir`` looks like a file, or two scenes share a scene id.
        DomainError: ``strict`` and a scene does not fit the model's training data.
    """
    opts = with_overrides(options or PredictOptions(), overrides)
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

    def paths(s: Scene | SeriesInput) -> tuple[Path, Path | None, Path | None]:
        return (out_dir / f"{s.scene_id}.tif",
                None if confidence is None else out_dir / f"{s.scene_id}_{confidence}",
                None if vector is None else out_dir / f"{s.scene_id}_{vector}")

    for s in opened:
        prepare_run(s, bundle, opts)
        check_output_paths(*paths(s), s, bundle.path)
    domains = [check_scene_domain(s, bundle, opts, warn) for s in opened]  # --strict: before the first map
    summaries = []
    for s, domain in zip(opened, domains, strict=True):
        out, conf, vec = paths(s)
        summaries.append(_predict_checked(s, bundle, out, opts, conf, vec, domain, datetime.now(UTC)))
    return summaries
