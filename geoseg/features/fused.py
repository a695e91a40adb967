"""One compiled pass per window: resampling, masking, DN → reflectance and the recipe's indices.

The kernel takes the source blocks as stored (:func:`geoseg.io.reader.read_sources`) and, strip
by strip of rows in cache, interpolates each band onto the 10 m grid, marks pixels touched by nodata or
a non-finite source pixel, an invalid SCL class or the external mask, turns DN into
reflectance and writes every channel. It performs exactly the operations of the numpy path
(:func:`geoseg.io.resample.read_resampled`'s float32 interpolation, then
:func:`geoseg.features.kernel.kernel_source`'s float64 formulas), so both give the same bits.
The source is generated from the recipe's formulas, like the index kernel's.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

import numpy as np

from geoseg.features.kernel import channel_loops, load_generated
from geoseg.features.recipes import Recipe
from geoseg.io.reader import Sources

__all__ = ["compile_fused_kernel", "fused_features", "fused_source"]

_HELPERS = '''

@numba.njit(inline="always", cache=True)
def _bad(a, nodata):
    """Nodata or not finite (``x - x`` is NaN for inf and NaN); no branch, so loops vectorise."""
    x = np.float64(a)
    return (x == nodata) | (x - x != 0.0)


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _band(src, nodata, same, rows, cols, wr, wc, y, tmp, tbad, refl, inv, offset, scale):
    """One output row of one band: bilinear in float32 (rows, then columns), then reflectance."""
    n = refl.shape[0]
    if same:
        a = src[y]
        for x in range(n):
            refl[x] = dn_to_reflectance(np.float32(a[x]), offset, scale)
        for x in range(n):
            inv[x] |= _bad(a[x], nodata)
        return
    a0, a1, wy = src[rows[0, y]], src[rows[1, y]], wr[y]
    lo, hi = wy < 1, wy > 0
    for x in range(src.shape[1]):
        v = np.float32(a0[x])
        tmp[x] = v + (np.float32(a1[x]) - v) * wy
    bad = False
    for x in range(src.shape[1]):
        b = (lo & _bad(a0[x], nodata)) | (hi & _bad(a1[x], nodata))
        tbad[x] = b
        bad |= b
    c0, c1 = cols[0], cols[1]
    for x in range(n):
        v = tmp[c0[x]]
        refl[x] = dn_to_reflectance(v + (tmp[c1[x]] - v) * wc[x], offset, scale)
    if bad:  # rare: a source pixel with non-zero weight is nodata or not finite
        for x in range(n):
            inv[x] |= ((wc[x] < 1) & tbad[c0[x]]) | ((wc[x] > 0) & tbad[c1[x]])


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _classes(scl, row, cols, lut, inv):
    """Mark pixels whose (nearest) SCL class is flagged in ``lut``."""
    for x in range(inv.shape[0]):
        s = scl[row, cols[x]]
        if s >= 0 and s < lut.shape[0]:
            k = int(s)
            if k == s and lut[k]:
                inv[x] = True

'''


STRIP = 8  # rows per pass: the channels are written in runs of STRIP rows, not row by row


def fused_source(recipe: Recipe) -> str:
    """Python source of the fused kernel of ``recipe`` (compiled by numba).

    Strip by strip of :data:`STRIP` rows, each band's reflectance goes to a scratch array and
    each channel is then one loop over the strip's pixels (such loops vectorise).
    """
    n = len(recipe.required_bands)
    lines = [
        "@numba.njit(nogil=True, cache=True, boundscheck=False)",
        "def kernel(srcs, nodata, same, rows, cols, wr, wc, scl, scl_rows, scl_cols, lut, offset, scale, valid, out):",
        "    h, w = valid.shape",
        f"    refl = np.empty(({n}, {STRIP} * w))",
        f"    width = max({', '.join(f'srcs[{i}].shape[1]' for i in range(n))})",
        "    tmp, tbad = np.empty(width, np.float32), np.empty(width, np.bool_)",
        f"    inv = np.empty({STRIP} * w, np.bool_)",
        "    flat, planes = valid.reshape(h * w), out.reshape((out.shape[0], h * w))",
        f"    for y0 in range(0, h, {STRIP}):",
        f"        y1 = min(y0 + {STRIP}, h)",
        "        for y in range(y0, y1):",
        "            k = (y - y0) * w",
        "            vin, bad = valid[y], inv[k:k + w]",
        "            for x in range(w):",
        "                bad[x] = not vin[x]",
    ]
    lines += [f"            _band(srcs[{i}], nodata[{i}], same[{i}], rows[{i}], cols[{i}], wr[{i}], wc[{i}], y, tmp, tbad, "
              f"refl[{i}, k:k + w], bad, offset, scale)" for i in range(n)]
    lines += [
        "            if lut.shape[0]:",
        "                _classes(scl, scl_rows[0, y], scl_cols[0], lut, bad)",
        "        m, base = (y1 - y0) * w, y0 * w",
        "        v = flat[base:base + m]",
        "        for x in range(m):",
        "            v[x] = not inv[x]",
    ]
    lines += [f"        r_{b} = refl[{i}]" for i, b in enumerate(recipe.required_bands)]
    lines += channel_loops(recipe, "planes[{c}, base:base + m]", "m", "        ")
    return _HELPERS + "\n".join(lines) + "\n"


_COMPILE_LOCK = threading.Lock()


def compile_fused_kernel(recipe: Recipe) -> Callable | None:
    """The compiled fused kernel of ``recipe``, or None without numba (callers use the numpy path)."""
    with _COMPILE_LOCK:
        return _compile(recipe)


@functools.cache
def _compile(recipe: Recipe) -> Callable | None:
    return load_generated("fused", recipe.name, fused_source(recipe))


def fused_features(kernel: Callable, sources: Sources, recipe: Recipe, offset: float, scale: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(features, valid)`` of one window from its :class:`~geoseg.io.reader.Sources`."""
    valid = sources.valid.copy()
    out = np.empty((recipe.num_channels, *valid.shape), dtype=np.float32)
    fps = sources.footprints
    scl, scl_fp, lut = sources.scl, sources.scl_footprint, sources.scl_lut
    if scl is None or scl_fp is None:
        scl, scl_fp, lut = np.zeros((1, 1), np.uint8), fps[0], np.zeros(0, bool)
    scl_rows, scl_cols = scl_fp.rows, scl_fp.cols
    if scl_fp.same and lut.shape[0]:  # an SCL on the scene grid: the kernel indexes it all the same
        scl_rows, scl_cols = (np.tile(np.arange(n, dtype=np.int64), (2, 1)) for n in valid.shape)
    kernel(sources.blocks, sources.nodata, np.array([f.same for f in fps]), tuple(f.rows for f in fps),
           tuple(f.cols for f in fps), tuple(f.wr for f in fps), tuple(f.wc for f in fps),
           scl, scl_rows, scl_cols, lut, float(offset), float(scale), valid, out)
    return out, valid
