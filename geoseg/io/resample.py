"""Window reads of a band onto a target grid (bilinear for reflectance, nearest for classes).

Resampling is done here, in numpy, from an explicit source footprint: for every target
pixel centre we locate the source pixels that contribute and read exactly those (plus the
one-pixel halo bilinear needs). The value of a target pixel therefore never depends on the
window it was read in — a tiler cube, a predictor window and the full feature stack agree
bit for bit. Source and target must share a CRS and be north-up.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from affine import Affine
from rasterio.windows import Window

from geoseg.io.grid import Grid

__all__ = ["Method", "Footprint", "footprint", "source_coords", "read_resampled"]

Method = Literal["bilinear", "nearest"]


def source_coords(target: Affine, source: Affine, start: int, count: int, axis: int) -> np.ndarray:
    """Fractional source pixel coordinates (pixel centres at integers) of target centres."""
    if axis == 1:  # columns: x
        x = target.c + target.a * (np.arange(start, start + count) + 0.5)
        return (x - source.c) / source.a - 0.5
    y = target.f + target.e * (np.arange(start, start + count) + 0.5)
    return (y - source.f) / source.e - 0.5


@dataclass(frozen=True, eq=False)
class Footprint:
    """The source pixels a target window needs and how they combine into its pixels.

    ``read`` is the source window to read. On the target grid (``same``) the values are used
    as read. Otherwise rows and columns are separable: nearest takes ``rows[0]``/``cols[0]``;
    bilinear blends ``rows[0]`` and ``rows[1]`` with weight ``wr`` (then columns with ``wc``),
    all relative to ``read``. Everything follows from target pixel centres, so a pixel's value
    never depends on the window.
    """

    read: Window
    same: bool
    rows: np.ndarray  # (2, h) int64
    cols: np.ndarray  # (2, w) int64
    wr: np.ndarray  # (h,) float32, weight of rows[1]
    wc: np.ndarray  # (w,) float32, weight of cols[1]


def footprint(source_grid: Grid, target_grid: Grid, window: Window, method: Method) -> Footprint:
    """The :class:`Footprint` of ``window`` of ``target_grid`` in ``source_grid``."""
    row0, col0 = int(window.row_off), int(window.col_off)
    h, w = int(window.height), int(window.width)
    if source_grid.same_as(target_grid):
        empty = np.zeros((2, 0), dtype=np.int64)
        return Footprint(window, True, empty, empty, np.zeros(0, np.float32), np.zeros(0, np.float32))
    src_aff = source_grid.affine
    rows, wr = _axis(source_coords(target_grid.affine, src_aff, row0, h, axis=0), source_grid.height, method)
    cols, wc = _axis(source_coords(target_grid.affine, src_aff, col0, w, axis=1), source_grid.width, method)
    r_lo, c_lo = int(rows.min()), int(cols.min())
    read = Window(c_lo, r_lo, int(cols.max()) + 1 - c_lo, int(rows.max()) + 1 - r_lo)
    return Footprint(read, False, rows - r_lo, cols - c_lo, wr, wc)


def _axis(coords: np.ndarray, size: int, method: Method) -> tuple[np.ndarray, np.ndarray]:
    """Source indices ``(2, n)`` and the float32 weight of the second along one axis."""
    if method == "nearest":
        i0 = np.clip(np.floor(coords + 0.5).astype(np.int64), 0, size - 1)
        return np.stack([i0, i0]), np.zeros(coords.shape, np.float32)
    coords = np.clip(coords, 0, size - 1)
    i0 = np.floor(coords).astype(np.int64)
    return np.stack([i0, np.minimum(i0 + 1, size - 1)]), (coords - i0).astype(np.float32)


def read_resampled(
    ds,
    indexes: list[int],
    source_grid: Grid,
    target_grid: Grid,
    window: Window,
    method: Method,
    nodata: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read ``window`` of ``target_grid`` from bands ``indexes`` of the open dataset ``ds``.

    Returns:
        ``(values, invalid)``: ``(len(indexes), h, w)`` values (the native dtype where no
        resampling is needed or with nearest, float32 when interpolated) and a boolean ``(h, w)`` mask of pixels touched by a nodata
        or non-finite source pixel in any band (with bilinear, a pixel is invalid when any of
        its contributing source pixels is).
    """
    fp = footprint(source_grid, target_grid, window, method)
    src = ds.read(indexes, window=fp.read)
    if fp.same:
        return src, _invalid(src, nodata)
    (r0, r1), (c0, c1), wr, wc = fp.rows, fp.cols, fp.wr, fp.wc
    if method == "nearest":
        return src[:, r0][:, :, c0], _invalid(src, nodata)[r0][:, c0]
    bad = _invalid(src, nodata)
    values = _bilinear(src, r0, r1, wr, c0, c1, wc)
    if not bad.any():
        return values, np.zeros(values.shape[1:], dtype=bool)
    # Invalid where any source pixel with non-zero weight is invalid.
    bad_rows = (bad[r0] & (wr < 1)[:, None]) | (bad[r1] & (wr > 0)[:, None])
    touched = (bad_rows[:, c0] & (wc < 1)[None, :]) | (bad_rows[:, c1] & (wc > 0)[None, :])
    return values, touched


def _bilinear(src: np.ndarray, r0, r1, wr, c0, c1, wc) -> np.ndarray:
    """Separable linear interpolation in float32, rows then columns: ``a0 + (a1 - a0) * w``.

    The compiled kernel performs exactly the float32 operations of the numpy expression
    (same order, no fused multiply-add), so both give the same bits.
    """
    kernel = _bilinear_kernel()
    if kernel is not None:
        out = np.empty((src.shape[0], r0.shape[0], c0.shape[0]), dtype=np.float32)
        kernel(src, r0, r1, wr, c0, c1, wc, out)
        return out
    rows = src[:, r0].astype(np.float32)
    rows += (src[:, r1] - rows) * wr[:, None]
    values = rows[:, :, c0]
    values += (rows[:, :, c1] - values) * wc[None, :]
    return values


@functools.cache
def _bilinear_kernel():
    try:
        import numba
    except ImportError:  # optional speed-up
        return None

    @numba.njit(nogil=True, cache=True, boundscheck=False)
    def kernel(src, r0, r1, wr, c0, c1, wc, out):  # pragma: no cover - compiled
        width = src.shape[2]
        row = np.empty(width, dtype=np.float32)
        for b in range(src.shape[0]):
            for y in range(r0.shape[0]):
                a0, a1, wy = src[b, r0[y]], src[b, r1[y]], wr[y]
                for x in range(width):
                    v = np.float32(a0[x])
                    row[x] = v + (np.float32(a1[x]) - v) * wy
                o = out[b, y]
                for x in range(c0.shape[0]):
                    v = row[c0[x]]
                    o[x] = v + (row[c1[x]] - v) * wc[x]

    return kernel


def _invalid(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """(h, w) mask of pixels that are nodata or non-finite in any band of ``data`` (n, h, w)."""
    bad = np.zeros(data.shape, dtype=bool)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        bad |= data == nodata
    if np.issubdtype(data.dtype, np.floating):
        bad |= ~np.isfinite(data)
    return np.asarray(bad.any(axis=0))  # numpy's stubs also allow a scalar here
