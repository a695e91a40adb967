"""Which windows a scene is predicted in, and how much each pixel of a window counts.

Windows are immutable :class:`rasterio.windows.Window` values laid out row-major with a
stride of ``window - overlap``; the last window of a row or column is shifted inside the
scene instead of being dropped or padded. Blending weights are a cosine (Hann) taper over the
overlap, with a floor so that no pixel ever has zero weight, and flat (weight 1) on the sides
that touch the scene border, where no other window can take over.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from geoseg.errors import ConfigError
from geoseg.predict.options import check_window

__all__ = ["WindowLayout", "run_union", "window_layout", "axis_starts", "taper_1d", "window_weights", "DEFAULT_FLOOR"]

DEFAULT_FLOOR = 0.01


def axis_starts(size: int, window: int, stride: int) -> list[int]:
    """Start offsets along one axis: every ``stride``, the last one shifted to ``size - window``."""
    window = min(window, size)
    last = size - window
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


@dataclass(frozen=True)
class WindowLayout:
    """The windows covering a ``height`` × ``width`` grid, row-major.

    Attributes:
        height, width: grid shape in pixels.
        window_height, window_width: size of every window (the window size, clipped to the grid).
        overlap: requested overlap between neighbouring windows (pixels).
        rows, cols: start offsets of the window rows and columns.
    """

    height: int
    width: int
    window_height: int
    window_width: int
    overlap: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def __iter__(self):
        for r in self.rows:
            for c in self.cols:
                yield Window(c, r, self.window_width, self.window_height)

    def runs(self, group: int) -> list[tuple[Window, ...]]:
        """The windows in runs of up to ``group`` neighbours of one window row, row-major.

        A run is read as one union window (:func:`run_union`): the columns its windows share
        are read and computed once.
        """
        runs = []
        for r in self.rows:
            row = [Window(c, r, self.window_width, self.window_height) for c in self.cols]
            runs += [tuple(row[i:i + group]) for i in range(0, len(row), group)]
        return runs

    def weights(self, window: Window, floor: float = DEFAULT_FLOOR) -> np.ndarray:
        """Blending weights of ``window`` (float32, window shape)."""
        r, c = int(window.row_off), int(window.col_off)
        edges = (r == 0, r + self.window_height >= self.height, c == 0, c + self.window_width >= self.width)
        return window_weights(self.window_height, self.window_width, self.overlap, edges, floor)


def run_union(run: tuple[Window, ...]) -> Window:
    """The window covering a run of windows of one row."""
    first, last = run[0], run[-1]
    return Window(first.col_off, first.row_off, last.col_off + last.width - first.col_off, first.height)


def window_layout(height: int, width: int, window: int, overlap: int) -> WindowLayout:
    """Lay out ``window`` × ``window`` windows with ``overlap`` pixels over a grid.

    Raises:
        ConfigError: Non-positive window, negative overlap, or overlap ≥ window.
    """
    check_window(window, overlap)
    if height < 1 or width < 1:
        raise ConfigError(f"cannot lay out windows over an empty {height} x {width} grid")
    stride = window - overlap
    wh, ww = min(window, height), min(window, width)
    return WindowLayout(
        height, width, wh, ww, overlap,
        tuple(axis_starts(height, window, stride)), tuple(axis_starts(width, window, stride)),
    )


def taper_1d(length: int, ramp: int, flat_start: bool, flat_end: bool, floor: float) -> np.ndarray:
    """A 1-D weight profile: raised-cosine ramps of ``ramp`` pixels, 1 in the middle, ≥ ``floor``."""
    profile = np.ones(length, dtype=np.float64)
    ramp = min(ramp, length // 2)
    if ramp > 0:
        rising = 0.5 - 0.5 * np.cos(math.pi * (np.arange(ramp) + 0.5) / ramp)
        if not flat_start:
            profile[:ramp] = rising
        if not flat_end:
            profile[length - ramp:] = rising[::-1]
    return np.maximum(profile, floor).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _weights(h: int, w: int, overlap: int, edges: tuple[bool, bool, bool, bool], floor: float) -> np.ndarray:
    top, bottom, left, right = edges
    rows = taper_1d(h, overlap, top, bottom, floor)
    cols = taper_1d(w, overlap, left, right, floor)
    out = np.outer(rows, cols).astype(np.float32)
    out.setflags(write=False)
    return out


def window_weights(
    h: int, w: int, overlap: int, edges: tuple[bool, bool, bool, bool] = (False,) * 4,
    floor: float = DEFAULT_FLOOR,
) -> np.ndarray:
    """The 2-D taper of an ``h`` × ``w`` window (read-only float32).

    Args:
        h, w: window shape.
        overlap: ramp length in pixels (0: uniform weights).
        edges: (top, bottom, left, right) sides lying on the scene border (kept flat).
        floor: minimum weight, > 0, so every pixel of every window counts a little.
    """
    if not 0 < floor <= 1:
        raise ConfigError(f"taper floor must be in (0, 1], got {floor}")
    return _weights(h, w, overlap, tuple(bool(e) for e in edges), float(floor))
