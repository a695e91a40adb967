"""The streaming predictor: windows → features → model → blended rows → land-cover COG.

Three stages overlap: a thread pool computes the next windows' features
(:func:`geoseg.features.read_features`, the one feature implementation), the calling thread
runs batches through the model, and a single stitching thread blends each batch's
probabilities into the :class:`~geoseg.stitch.Stitcher` and writes finished rows. Memory is
bounded by window size × scene width (accumulators) plus a few batches in flight.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from geoseg.bundle import Device, ModelBundle, ModelRunner, load_model_bundle, resolve_device
from geoseg.errors import ConfigError
from geoseg.features import read_features
from geoseg.io.scene import Scene, open_scene
from geoseg.predict.prefetch import prefetch
from geoseg.predict.windows import DEFAULT_FLOOR, WindowLayout, window_layout
from geoseg.stitch.cog import GDAL_CACHE_BYTES
from geoseg.stitch.stitcher import BlockSink, Stitcher
from geoseg.utils.memory import keep_freed_memory
from geoseg.utils.progress import progress_bar

__all__ = ["StreamStats", "load_model_bundle", "plan_windows", "prepare_run", "stream_predictions", "DEFAULT_BATCH_SIZE"]

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True)
class StreamStats:
    """Counters of one streaming run."""

    layout: WindowLayout
    windows_run: int
    model_seconds: float
    seconds: float
    device: str
    accumulator_bytes: int


def plan_windows(scene: Scene, bundle: ModelBundle, window: int | None = None, overlap: int | None = None) -> WindowLayout:
    """The window layout used for ``scene``: default window = the bundle's, overlap = window / 4."""
    size = int(bundle.config.window if window is None else window)
    return window_layout(scene.grid.height, scene.grid.width, size, size // 4 if overlap is None else int(overlap))


def default_workers() -> int:
    """Feature threads: half the cores (the model gets the rest), between 1 and 4."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def check_batch_size(batch_size: int) -> None:
    """Raise :class:`ConfigError` unless ``batch_size`` ≥ 1."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}", hint="e.g. --batch-size 8")


def prepare_run(
    scene: Scene,
    bundle: ModelBundle,
    window: int | None = None,
    overlap: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: Device | str = "auto",
) -> WindowLayout:
    """Check that ``bundle`` can predict ``scene`` with these options; return the window layout.

    The one set-up shared by :func:`stream_predictions` and the writers around it, so that
    every bad option fails before anything is read or written.

    Raises:
        BandError: the scene lacks a band the model's recipe needs.
        ConfigError: invalid window, overlap, batch size or device.
    """
    recipe = bundle.config.recipe_obj()
    scene.require_bands(recipe.required_bands, f"the model's recipe {recipe.name}")
    layout = plan_windows(scene, bundle, window, overlap)
    check_batch_size(batch_size)
    resolve_device(device)
    return layout


def stream_predictions(
    scene: Scene,
    bundle: ModelBundle,
    sink: BlockSink,
    *,
    window: int | None = None,
    overlap: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: Device | str = "auto",
    fp16: bool = True,
    tta: bool = False,
    workers: int | None = None,
    floor: float = DEFAULT_FLOOR,
    progress: bool = True,
) -> StreamStats:
    """Predict ``scene`` window by window and feed blended row blocks to ``sink``.

    Args:
        scene: the opened scene (its 10 m grid is the output grid).
        bundle: the model bundle (model, recipe, normalisation, class map).
        sink: receives every finished :class:`~geoseg.stitch.StitchedBlock`, top to bottom.
        window: window size in pixels (default: the bundle's training window).
        overlap: overlap between neighbouring windows (default: window // 4).
        batch_size: windows per forward pass.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        fp16: float16 autocast on CUDA.
        tta: average over flips and 90° rotations (8 forward passes per batch).
        workers: feature-reading threads (default: half the cores, 1–4).
        floor: minimum blending weight of a window pixel.
        progress: show a progress bar over windows.

    Raises:
        BandError: the scene lacks a band the model's recipe needs.
        ConfigError: invalid window/overlap/batch size or device.
    """
    start = time.perf_counter()
    layout = prepare_run(scene, bundle, window, overlap, batch_size, device)
    keep_freed_memory()
    recipe = bundle.config.recipe_obj()
    runner = ModelRunner(bundle, device=device, fp16=fp16, tta=tta)
    stitcher = Stitcher(scene.grid, runner.num_classes, layout.window_height, sink)
    workers = max(1, workers if workers is not None else default_workers())
    grid = scene.grid
    model_seconds = 0.0
    windows_run = 0

    def read(w: Window) -> tuple[torch.Tensor | None, np.ndarray]:
        features, valid = read_features(scene, w, recipe)
        return (runner.prepare(features) if valid.any() else None), valid

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

        stream = prefetch(read, layout, workers=workers, depth=max(2 * batch_size, workers + 1))
        with contextlib.closing(stream):  # on errors, stop the read-ahead threads at once
            for w, (features, valid) in progress_bar(stream, total=len(layout), desc=scene.scene_id, unit="win",
                                                     enabled=progress):
                if features is None:  # no valid pixel: nothing to classify, its pixels stay nodata
                    continue
                batch.append((w, features, valid))
                if len(batch) == batch_size:
                    previous = run(batch)
                    batch = []
        if batch:
            previous = run(batch)
        if previous is not None:
            previous.result()
        pool.submit(stitcher.close).result()
    return StreamStats(layout, windows_run, model_seconds, time.perf_counter() - start, str(runner.device),
                       stitcher.nbytes)


def resolve_scene(scene: Scene | str | Path) -> Scene:
    """An opened :class:`Scene` (paths are opened with :func:`geoseg.io.open_scene`)."""
    return scene if isinstance(scene, Scene) else open_scene(scene)


def describe_model(bundle: ModelBundle) -> str:
    """A short model name for tags and logs, e.g. ``unet/resnet34``."""
    spec = bundle.config.model
    name = str(spec.get("name", "model"))
    encoder = spec.get("encoder")
    return f"{name}/{encoder}" if encoder else name

