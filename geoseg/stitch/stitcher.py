"""Blend overlapping window predictions into rows of a scene, holding only the open rows.

The :class:`Stitcher` keeps accumulators (weighted class scores, weights, valid mask) for a
band of rows as tall as one window and as wide as the scene. Windows must arrive in row
order (any column order within a row of windows). When a window starts below the band's top
row, every row above it is final: those rows are normalised (scores / weights) and handed to
the sink as one :class:`StitchedBlock`, then the band moves down. Peak memory is therefore
``classes × window height × scene width``, whatever the scene's area.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from geoseg.errors import CRSMismatchError
from geoseg.io.grid import Grid

__all__ = ["StitchedBlock", "Stitcher", "BlockSink"]


@dataclass(frozen=True)
class StitchedBlock:
    """Finished rows ``[row_off, row_off + height)`` of the scene, full width.

    Attributes:
        row_off: first scene row of the block.
        probs: float32 ``(K, height, width)`` blended class probabilities (0 at invalid pixels).
        valid: bool ``(height, width)`` valid-input mask.
    """

    row_off: int
    probs: np.ndarray
    valid: np.ndarray

    @property
    def height(self) -> int:
        """Rows in the block."""
        return int(self.valid.shape[0])


BlockSink = Callable[[StitchedBlock], None]


class Stitcher:
    """Accumulate weighted window probabilities; emit finished row blocks to ``sink``.

    Args:
        grid: the scene grid every window must come from.
        num_classes: K, the number of probability channels.
        band_height: rows the accumulators hold (≥ the tallest window).
        sink: called with every finished :class:`StitchedBlock`, top to bottom.
    """

    def __init__(self, grid: Grid, num_classes: int, band_height: int, sink: BlockSink):
        if band_height < 1 or num_classes < 1:
            raise ValueError("band_height and num_classes must be positive")
        self.grid, self.num_classes, self.sink = grid, num_classes, sink
        self.capacity = min(band_height, grid.height)
        width = grid.width
        self._scores = np.zeros((num_classes, self.capacity, width), dtype=np.float32)
        self._weight = np.zeros((self.capacity, width), dtype=np.float32)
        self._valid = np.zeros((self.capacity, width), dtype=bool)
        self._top = 0  # scene row of accumulator row 0
        self._filled = 0  # accumulator rows touched so far
        self._closed = False

    @property
    def rows_done(self) -> int:
        """Scene rows already emitted to the sink."""
        return self._top

    @property
    def nbytes(self) -> int:
        """Memory held by the accumulators."""
        return self._scores.nbytes + self._weight.nbytes + self._valid.nbytes

    def add(self, grid: Grid, window: Window, probs: np.ndarray, weights: np.ndarray, valid: np.ndarray) -> None:
        """Blend one window's probabilities ``(K, h, w)`` with ``weights`` ``(h, w)``.

        Raises:
            CRSMismatchError: ``grid`` is not the stitcher's grid.
            ValueError: the window is outside the grid, out of row order, taller than the
                band, or the arrays do not match its shape.
        """
        if self._closed:
            raise ValueError("stitcher is closed")
        if grid is not self.grid and not grid.same_as(self.grid, tol=0.0):
            raise CRSMismatchError(
                f"window from grid {grid.crs.to_string()} {grid.shape} {grid.transform} cannot be merged into "
                f"grid {self.grid.crs.to_string()} {self.grid.shape} {self.grid.transform}",
                hint="stitch the predictions of each scene separately",
            )
        r0, c0 = int(window.row_off), int(window.col_off)
        h, w = int(window.height), int(window.width)
        if r0 < 0 or c0 < 0 or r0 + h > self.grid.height or c0 + w > self.grid.width:
            raise ValueError(f"window {window} is outside the {self.grid.shape} grid")
        if probs.shape != (self.num_classes, h, w) or weights.shape != (h, w) or valid.shape != (h, w):
            raise ValueError(
                f"window {h}x{w}: got probs {probs.shape}, weights {weights.shape}, valid {valid.shape}"
            )
        if r0 < self._top:
            raise ValueError(f"window at row {r0} arrives after rows < {self._top} were written (row order)")
        if r0 > self._top:
            self._flush(r0 - self._top)
        if h > self.capacity:
            raise ValueError(f"window of {h} rows is taller than the stitcher band ({self.capacity})")
        rows, cols = slice(0, h), slice(c0, c0 + w)
        self._scores[:, rows, cols] += probs * weights
        self._weight[rows, cols] += weights
        self._valid[rows, cols] |= valid
        self._filled = max(self._filled, h)

    def close(self) -> None:
        """Emit every remaining row (down to the bottom of the grid)."""
        if self._closed:
            return
        while self._top < self.grid.height:
            self._flush(min(self.capacity, self.grid.height - self._top))
        self._closed = True

    def _flush(self, n: int) -> None:
        """Emit accumulator rows ``[0, n)`` (possibly beyond the filled ones) and move down."""
        n = min(n, self.grid.height - self._top)
        while n > 0:
            k = min(n, self.capacity)
            weight, valid = self._weight[:k], self._valid[:k].copy()
            with np.errstate(invalid="ignore", divide="ignore"):
                probs = np.where(valid & (weight > 0), self._scores[:, :k] / weight, np.float32(0))
            self.sink(StitchedBlock(self._top, probs.astype(np.float32, copy=False), valid))
            keep = max(self._filled - k, 0)
            if keep:
                self._scores[:, :keep] = self._scores[:, k : k + keep]
                self._weight[:keep] = self._weight[k : k + keep]
                self._valid[:keep] = self._valid[k : k + keep]
            self._scores[:, keep : self._filled] = 0
            self._weight[keep : self._filled] = 0
            self._valid[keep : self._filled] = False
            self._filled = keep
            self._top += k
            n -= k
