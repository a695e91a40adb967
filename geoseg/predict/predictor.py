"""The streaming predictor: windows → features → model → blended rows → land-cover COG.

Three stages overlap: a thread pool computes the next windows' features
(:func:`geoseg.features.read_features`, the one feature implementation; :data:`RUN` neighbouring
windows of a row are read as one union window, so the columns they share are read and computed
once, as the tiler does with its runs of cubes), the calling thread
runs batches through the model, and a single stitching thread blends each batch's
probabilities into the :class:`~geoseg.stitch.Stitcher` and writes finished rows. Memory is
bounded by window size × scene width (accumulators) plus a few batches in flight.

A time series (:class:`~geoseg.predict.series.SeriesInput`) streams the same way: each window's
features are read date by date (``(T, C, h, w)``, :func:`geoseg.tiling.series.read_series`), a
pixel is classified when any date is valid, and the map lands on the dates' common grid.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from geoseg.bundle import ModelBundle, ModelRunner, load_model_bundle, resolve_device
from geoseg.bundle.domain import DomainCheck, check_domain, sample_scene
from geoseg.config.schema import with_overrides
from geoseg.errors import DomainError
from geoseg.features import read_features
from geoseg.io.scene import Scene, open_scene
from geoseg.predict.options import PredictOptions
from geoseg.predict.prefetch import prefetch
from geoseg.predict.series import SeriesInput
from geoseg.predict.windows import DEFAULT_FLOOR, WindowLayout, run_union, window_layout
from geoseg.stitch.cog import GDAL_CACHE_BYTES
from geoseg.stitch.stitcher import BlockSink, Stitcher
from geoseg.utils.memory import keep_freed_memory
from geoseg.utils.progress import track_progress

__all__ = ["StreamStats", "check_scene_domain", "load_model_bundle", "plan_windows", "prepare_run",
           "stream_predictions"]

log = logging.getLogger(__name__)

RUN = 4  # windows of a row read together (window-independent features: slices equal separate reads)


@dataclass(frozen=True)
class StreamStats:
    """Counters of one streaming run."""

    layout: WindowLayout
    windows_run: int
    model_seconds: float
    seconds: float
    device: str
    accumulator_bytes: int
    engine: str = "torch"
    engine_reason: str = ""


def plan_windows(scene: Scene | SeriesInput, bundle: ModelBundle, window: int | None = None, overlap: int | None = None) -> WindowLayout:
    """The window layout used for ``scene`` (overlap default: window / 4).

    The default window is the one of least total forward cost for this scene: the bundle's
    measured seconds per megapixel of each size times the window pixels its layout runs (a
    scene barely larger than a window would recompute most of it twice). Without measured
    costs (bundles written before they were recorded): the bundle's ``predict_window``.
    """
    height, width = scene.grid.height, scene.grid.width

    def layout(size: int) -> WindowLayout:
        return window_layout(height, width, size, size // 4 if overlap is None else int(overlap))

    if window is not None:
        return layout(int(window))
    costs = bundle.config.predict_window_costs
    if not costs:
        return layout(int(bundle.config.predict_window))
    fitting = [s for s in costs if overlap is None or int(overlap) < s]

    def total(size: int) -> float:
        plan = layout(size)
        return len(plan) * plan.window_height * plan.window_width * costs[size]

    return layout(min(fitting, key=total) if fitting else int(bundle.config.predict_window))


def default_workers() -> int:
    """Feature threads: half the cores (the model gets the rest), between 1 and 4."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def prepare_run(scene: Scene | SeriesInput, bundle: ModelBundle, options: PredictOptions) -> WindowLayout:
    """Check that ``bundle`` can predict ``scene`` with ``options``; return the window layout.

    The one set-up shared by :func:`stream_predictions` and the writers around it, so that
    every bad option fails before anything is read or written.

    Raises:
        BandError: the scene lacks a band the model's recipe needs.
        ConfigError: the window does not fit the overlap, the device is not there, or the input's form (one
            date, a series of T dates) is not the model's.
    """
    from geoseg.bundle.series import check_series_input

    if isinstance(scene, SeriesInput):
        check_series_input(bundle.config.model, scene.time_steps, scene.reference.path, "the series")
    else:
        check_series_input(bundle.config.model, None, scene.path, "the scene")
    recipe = bundle.config.recipe
    scene.require_bands(recipe.required_bands, f"the model's recipe {recipe.name}")
    layout = plan_windows(scene, bundle, options.window, options.overlap)
    resolve_device(options.device)
    return layout


def _log_warning(message: str) -> None:
    log.warning("%s", message)


def check_scene_domain(scene: Scene | SeriesInput, bundle: ModelBundle, options: PredictOptions,
                       warn: Callable[[str], None] | None = None) -> DomainCheck | None:
    """Compare ``scene`` with the model's training domain before any work (:mod:`geoseg.bundle.domain`).

    Nine small windows of the scene are read through the feature stack (0.2-0.4 s on a full
    10980² GeoTIFF tile, about 1 s on a JPEG 2000 ``.SAFE``). The findings, on one line, are passed
    to ``warn`` (default: a log warning) — or, with ``options.strict``, refused.

    A series is compared through its first date (the dates of one location share a processing chain).

    Returns:
        The :class:`~geoseg.bundle.domain.DomainCheck`, or None when the bundle records no
        training domain (bundles written before it existed: nothing is compared).

    Raises:
        DomainError: ``options.strict`` and the scene does not fit the training domain.
    """
    domain = bundle.config.domain
    if domain is None:
        log.info("%s: the model records no training domain (written before geoseg recorded one): the scene is "
                 "not compared with its training data", scene.scene_id)
        return None
    if isinstance(scene, SeriesInput):
        scene = scene.reference
    sample = sample_scene(scene, bundle.config.recipe, workers=options.workers or default_workers())
    result = check_domain(domain, scene, sample)
    if result.findings and options.strict:
        raise DomainError(f"refused by --strict: {result.message}", path=scene.path,
                          hint="without --strict (predict.strict: false) the map is written with a warning")
    if result.findings:  # one line per scene, however many findings
        (warn or _log_warning)(result.message)
    return result


def stream_predictions(
    scene: Scene | SeriesInput,
    bundle: ModelBundle,
    sink: BlockSink,
    options: PredictOptions | None = None,
    *,
    floor: float = DEFAULT_FLOOR,
    **overrides: Any,
) -> StreamStats:
    """Predict ``scene`` window by window and feed blended row blocks to ``sink``.

    Args:
        scene: the opened scene (its 10 m grid is the output grid), or a series (its dates' common grid).
        bundle: the model bundle (model, recipe, normalisation, class map).
        sink: receives every finished :class:`~geoseg.stitch.StitchedBlock`, top to bottom.
        options: window, overlap, batch size, device, precision, TTA, reading threads and
            progress (:class:`~geoseg.predict.PredictOptions`; ``overviews`` is the writer's).
        floor: minimum blending weight of a window pixel.
        **overrides: single options on top of ``options`` (``window=256``...).

    Raises:
        BandError: the scene lacks a band the model's recipe needs.
        ConfigError: invalid window/overlap/batch size or device.
    """
    from geoseg.tiling.series import read_series

    opts = with_overrides(options or PredictOptions(), overrides)
    batch_size, progress = opts.batch_size, opts.progress
    start = time.perf_counter()
    layout = prepare_run(scene, bundle, opts)
    keep_freed_memory()
    recipe = bundle.config.recipe
    runner = ModelRunner(bundle, device=opts.device, fp16=opts.fp16, tta=opts.tta, engine=opts.engine,
                         work_pixels=len(layout) * layout.window_height * layout.window_width)
    stitcher = Stitcher(scene.grid, runner.num_classes, layout.window_height, sink)
    workers = opts.workers or default_workers()
    grid = scene.grid
    model_seconds = 0.0
    windows_run = 0

    def read(run: tuple[Window, ...]) -> list[tuple[Window, torch.Tensor | None, np.ndarray]]:
        union = run_union(run)
        valid: np.ndarray
        if isinstance(scene, SeriesInput):  # (T, C, h, w): a pixel is classified when any date is valid
            features, dates_valid = read_series(scene.scenes, union, recipe)
            valid = np.asarray(dates_valid.any(axis=0))
        else:
            features, valid = read_features(scene, union, recipe)
        out = []
        for w in run:
            cols = slice(w.col_off - union.col_off, w.col_off - union.col_off + w.width)
            v = valid[:, cols]
            out.append((w, runner.prepare(features[..., cols]) if v.any() else None, v))
        return out

    def windows(stream: Iterator[tuple[Any, list]]) -> Iterator[tuple[Window, torch.Tensor | None, np.ndarray]]:
        for _, items in stream:
            yield from items

    def stitch(items: list[tuple[Window, np.ndarray]], out: torch.Tensor) -> None:
        probs = runner.finish(out)
        for (w, valid), p in zip(items, probs, strict=True):
            stitcher.add(grid, w, p, layout.weights(w, floor), valid)

    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), ThreadPoolExecutor(1, thread_name_prefix="geoseg-stitch") as pool:
        previous: Future | None = None
        batch: list[tuple[Window, torch.Tensor, np.ndarray]] = []

        def run(items: list[tuple[Window, torch.Tensor, np.ndarray]]) -> Future:
            nonlocal model_seconds, windows_run, previous
            x = torch.stack([f for _, f, _ in items])
            t0 = time.perf_counter()
            out = runner.run(x)
            model_seconds += time.perf_counter() - t0
            windows_run += len(items)
            if previous is not None:
                previous.result()  # one batch in the stitcher at a time; raises its errors
            return pool.submit(stitch, [(w, v) for w, _, v in items], out)

        depth = max(-(-2 * batch_size // RUN), workers + 1)  # runs in flight
        stream = prefetch(read, layout.runs(RUN), workers=workers, depth=depth)
        with contextlib.closing(stream), track_progress(len(layout), f"predict {scene.scene_id}", "window",
                                                        enabled=progress) as bar:
            for w, features, valid in windows(stream):  # on errors, closing() stops the read-ahead threads at once
                bar.update()
                if features is None:  # no valid pixel: nothing to classify, its pixels stay nodata
                    continue
                batch.append((w, features, valid))
                if len(batch) == batch_size:
                    previous = run(batch)
                    batch = []
            if batch:
                previous = run(batch)
            if previous is not None:
                previous.result()  # the final line counts the last batch too
        pool.submit(stitcher.close).result()
    return StreamStats(layout, windows_run, model_seconds, time.perf_counter() - start, str(runner.device),
                       stitcher.nbytes, runner.engine, runner.choice.reason if runner.choice else "no window ran")


def resolve_scene(scene: Scene | SeriesInput | str | Path) -> Scene | SeriesInput:
    """An opened :class:`Scene` or series (paths are opened with :func:`geoseg.io.open_scene`)."""
    return scene if isinstance(scene, Scene | SeriesInput) else open_scene(scene)


def describe_model(bundle: ModelBundle) -> str:
    """A short model name for tags and logs, e.g. ``unet/resnet34``."""
    spec = bundle.config.model
    return f"{spec.name}/{spec.encoder}" if spec.encoder else spec.name

