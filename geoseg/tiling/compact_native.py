"""The native layout of compact cubes: uint16 DN at each band's own resolution, bilinear tables, mask.

The DN the feature kernel reads on the 10 m grid (:func:`geoseg.io.reader.read_raw`) are, for
the 10 m bands, the integer DN of the file, and for the 20 m and 60 m bands float32 bilinear
interpolants of integer DN (:func:`geoseg.io.resample.read_resampled`): fractional values that
no 16-bit integer holds. What *is* 16-bit is their source. So a compact cube stores, in one
byte record (one chunk, one read per cube):

- ``tables``: float32 ``(levels, 6, size)``: for each resampled level, the bilinear rows
  ``r0, r1``, weights ``wr``, columns ``c0, c1`` and weights ``wc`` of the cube, relative to
  the source block below (what ``read_resampled`` computes for that window);
- per level, the uint16 DN of its bands: on the scene grid ``(bands, size, size)``; resampled
  levels, the source block ``(bands, rows, cols)`` the cube's pixels interpolate from
  (e.g. 130 × 130 at 20 m, 46 × 46 at 60 m for 256 px cubes);
- ``valid``: uint8 ``(size, size)``.

The batch transform (:func:`decode_records`) redoes the interpolation with the same float32
operations in the same order (``a0 + (a1 - a0) · w``, rows then columns, each one IEEE
operation), so the DN — and the features computed from them — equal the default store's bit for
bit; the tiler also checks every cube it writes against the DN it computed the features from.
For ``s2_24`` from Sentinel-2 band files this is ~12 bytes per pixel instead of 96.

The layout applies when every band of every scene holds 8- or 16-bit integer DN (a level's
bands all signed, int16, or all unsigned, uint16) and each
band's grid relation to its scene (resolution ratio, origin) is the same in every scene;
otherwise the compact store falls back to float32 DN on the 10 m grid
(:mod:`geoseg.tiling.compact`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from rasterio.windows import Window

from geoseg.features.recipes import Recipe

if TYPE_CHECKING:
    import torch

    from geoseg.io.scene import Scene

__all__ = ["plan_native_layout", "native_records", "decode_records", "decode_records_numpy", "RECORD_ARRAY"]

RECORD_ARRAY: Literal["record"] = "record"
_TABLE_ROWS = 6  # r0, r1, wr, c0, c1, wc


_SIGNED = {np.dtype(np.int8): True, np.dtype(np.int16): True, np.dtype(np.uint8): False, np.dtype(np.uint16): False}


def _relation(scene: Scene, band: str) -> tuple | None:
    bf = scene.bands[band]
    if np.dtype(bf.dtype) not in _SIGNED:
        return None
    if bf.grid.same_as(scene.grid):
        return (False,)
    s, b = scene.grid.affine, bf.grid.affine
    if bf.grid.crs != scene.grid.crs or s.b or s.d or b.b or b.d:
        return None
    return (True, round(s.a / b.a, 9), round(s.e / b.e, 9), round((b.c - s.c) / b.a, 6), round((b.f - s.f) / b.e, 6))


def plan_native_layout(scenes: Sequence[Scene], recipe: Recipe, size: int) -> dict | None:
    """The manifest's description of the native layout for these scenes, or None when it does not apply."""
    relations: dict[str, tuple] | None = None
    for scene in scenes:
        rel = {b: _relation(scene, b) for b in recipe.required_bands}
        if any(r is None for r in rel.values()) or (relations is not None and rel != relations):
            return None
        for b in recipe.required_bands:  # bands of one level share one grid in each scene
            same = [o for o in recipe.required_bands if rel[o] == rel[b]]
            if rel[b][0] and any(not scene.bands[o].grid.same_as(scene.bands[b].grid)  # type: ignore[index]
                                 for o in same):
                return None
        relations = rel  # type: ignore[assignment]
    if relations is None:
        return None
    groups: dict[tuple, list[str]] = {}
    for b in recipe.required_bands:
        groups.setdefault(relations[b], []).append(b)
    dtypes = {}
    for key, bands in groups.items():  # 8/16-bit DN of one level: all signed (int16) or all unsigned (uint16)
        signed = {_SIGNED[np.dtype(scene.bands[b].dtype)] for scene in scenes for b in bands}
        if len(signed) != 1:
            return None
        dtypes[key] = "int16" if signed.pop() else "uint16"
    levels, offset = [], _TABLE_ROWS * size * 4 * sum(1 for k in groups if k[0])
    for key, bands in groups.items():
        if key[0]:
            rows, cols = math.floor((size - 1) * abs(key[2])) + 3, math.floor((size - 1) * abs(key[1])) + 3
        else:
            rows = cols = size
        levels.append({"bands": bands, "resampled": bool(key[0]), "rows": rows, "cols": cols, "offset": offset,
                       "dtype": dtypes[key]})
        offset += 2 * len(bands) * rows * cols
    return {"kind": "native", "size": size, "levels": levels, "valid_offset": offset, "record_bytes": offset + size * size}


def _dtype(level: dict) -> str:
    """The little-endian numpy dtype of a level's DN (layouts before signed DN: uint16)."""
    return "<i2" if level.get("dtype") == "int16" else "<u2"


def _tables(scene: Scene, band: str, window: Window):
    from geoseg.io.resample import _axis, source_coords

    src = scene.bands[band].grid
    row0, col0, h, w = int(window.row_off), int(window.col_off), int(window.height), int(window.width)
    (r, wr) = _axis(source_coords(scene.grid.affine, src.affine, row0, h, axis=0), src.height, "bilinear")
    (c, wc) = _axis(source_coords(scene.grid.affine, src.affine, col0, w, axis=1), src.width, "bilinear")
    return (r[0], r[1], wr), (c[0], c[1], wc)  # absolute source indices and the weight of the second


def native_records(scene: Scene, union: Window, cubes: Sequence[tuple[slice, int, int]], valid: np.ndarray,
                   dn: np.ndarray | None, recipe: Recipe, layout: dict) -> list[np.ndarray]:
    """The byte record of each cube of one task.

    Args:
        scene, union: the scene and the task's union window.
        cubes: per cube, its columns in the union, its height and width.
        valid: the union's valid mask; dn: the union's DN as the features were computed from
            (NaN where invalid), to check each record against, or None: no check (the tiler;
            the tests check the records bit for bit, tests/tiling/test_tiler_compact.py).

    Raises:
        RuntimeError: a record does not reproduce ``dn`` (never expected: a bug, not user input).
    """
    from geoseg.io.reader import _dataset
    from geoseg.io.resample import _bilinear

    size = int(layout["size"])
    order = {b: i for i, b in enumerate(recipe.required_bands)}
    records = [np.zeros(int(layout["record_bytes"]), np.uint8) for _ in cubes]
    table = 0
    for level in layout["levels"]:
        bands = level["bands"]
        first = scene.bands[bands[0]]
        blocks: dict[str, np.ndarray] = {}
        if level["resampled"]:
            (r0, r1, wr), (c0, c1, wc) = _tables(scene, bands[0], union)
            r_lo, r_hi, c_lo, c_hi = int(r0.min()), int(r1.max()) + 1, int(c0.min()), int(c1.max()) + 1
            read_window = Window(c_lo, r_lo, c_hi - c_lo, r_hi - r_lo)
        else:
            read_window = union
        for b in bands:
            bf = scene.bands[b]
            blocks[b] = _dataset(bf.path).read(bf.index, window=read_window)
        src = np.stack([blocks[b] for b in bands]).astype(_dtype(level))
        for k, (cols, h, w) in enumerate(cubes):
            rec = records[k]
            out = rec[level["offset"]: level["offset"] + 2 * src.shape[0] * level["rows"] * level["cols"]]
            out = out.view(_dtype(level)).reshape(src.shape[0], level["rows"], level["cols"])
            if not level["resampled"]:
                out[:, :h, :w] = src[:, :, cols]
                got = src[:, :, cols].astype(np.float32) if dn is not None else None
            else:
                cc0, cc1, cwc = c0[cols], c1[cols], wc[cols]
                lo, hi = int(cc0.min()), int(cc1.max()) + 1
                block = src[:, :, lo - c_lo: hi - c_lo]
                if block.shape[1] > level["rows"] or block.shape[2] > level["cols"]:
                    raise RuntimeError(f"source block {block.shape} exceeds the layout's {level['rows']}x{level['cols']}")
                out[:, : block.shape[1], : block.shape[2]] = block
                t = rec[: _TABLE_ROWS * size * 4 * (table + 1)].view("<f4").reshape(-1, _TABLE_ROWS, size)[table]
                t[0, :h], t[1, :h], t[2, :h] = r0 - r_lo, r1 - r_lo, wr
                t[3, :w], t[4, :w], t[5, :w] = cc0 - lo, cc1 - lo, cwc
                got = _bilinear(block, r0 - r_lo, r1 - r_lo, wr, cc0 - lo, cc1 - lo, cwc) if dn is not None else None
            if got is None or dn is None:
                continue
            ok, want = valid[:, cols], dn[[order[b] for b in bands]][:, :, cols]
            if not np.array_equal(got[:, ok], want[:, ok]):
                raise RuntimeError(f"compact record of bands {bands} does not reproduce the DN of {first.path}")
        if level["resampled"]:
            table += 1
    voff = int(layout["valid_offset"])
    for k, (cols, h, w) in enumerate(cubes):
        records[k][voff: voff + size * size].reshape(size, size)[:h, :w] = valid[:, cols]
    return records


def decode_records(records: torch.Tensor, layout: dict, bands: Sequence[str]) -> torch.Tensor:
    """DN ``(N, len(bands), size, size)`` float32 on the 10 m grid, NaN at invalid pixels, from records ``(N, R)``.

    The same float32 operations as :func:`geoseg.io.resample._bilinear`, on ``records``' device.
    """
    import torch

    n, size = records.shape[0], int(layout["size"])
    dn = torch.empty((n, len(bands), size, size), dtype=torch.float32, device=records.device)
    order = {b: i for i, b in enumerate(bands)}
    n_tables = sum(1 for level in layout["levels"] if level["resampled"])
    tables = records[:, : _TABLE_ROWS * size * 4 * n_tables].contiguous().view(torch.float32)
    tables = tables.reshape(n, n_tables, _TABLE_ROWS, size)
    table = 0
    for level in layout["levels"]:
        nb, rows, cols = len(level["bands"]), int(level["rows"]), int(level["cols"])
        raw = records[:, level["offset"]: level["offset"] + 2 * nb * rows * cols].contiguous().view(torch.int16)
        if _dtype(level) == "<i2":
            src = raw.to(torch.float32).reshape(n, nb, rows, cols)
        else:  # uint16 through int32 (torch's uint16 has few operations)
            src = (raw.to(torch.int32) & 0xFFFF).to(torch.float32).reshape(n, nb, rows, cols)
        if level["resampled"]:
            t = tables[:, table]
            r0, r1 = (t[:, 0].long()[:, None, :, None].expand(n, nb, size, cols),
                      t[:, 1].long()[:, None, :, None].expand(n, nb, size, cols))
            a0 = src.gather(2, r0)
            row = a0 + (src.gather(2, r1) - a0) * t[:, 2][:, None, :, None]
            c0, c1 = (t[:, 3].long()[:, None, None, :].expand(n, nb, size, size),
                      t[:, 4].long()[:, None, None, :].expand(n, nb, size, size))
            v = row.gather(3, c0)
            src = v + (row.gather(3, c1) - v) * t[:, 5][:, None, None, :]
            table += 1
        for j, b in enumerate(level["bands"]):
            dn[:, order[b]] = src[:, j]
    voff = int(layout["valid_offset"])
    valid = records[:, voff: voff + size * size].reshape(n, size, size) != 0
    return dn.masked_fill_(~valid[:, None], float("nan"))


def decode_records_numpy(records: np.ndarray, layout: dict, bands: Sequence[str]) -> np.ndarray:
    """:func:`decode_records` on the CPU with the resampler's own kernel (the same bits, several times faster)."""
    from geoseg.io.resample import _bilinear

    n, size = records.shape[0], int(layout["size"])
    dn = np.empty((n, len(bands), size, size), dtype=np.float32)
    order = [{b: i for i, b in enumerate(bands)}[b] for level in layout["levels"] for b in level["bands"]]
    n_tables = sum(1 for level in layout["levels"] if level["resampled"])
    voff = int(layout["valid_offset"])
    for k in range(n):
        rec = records[k]
        tables = rec[: _TABLE_ROWS * size * 4 * n_tables].view("<f4").reshape(n_tables, _TABLE_ROWS, size)
        table, j = 0, 0
        for level in layout["levels"]:
            nb, rows, cols = len(level["bands"]), int(level["rows"]), int(level["cols"])
            src = rec[level["offset"]: level["offset"] + 2 * nb * rows * cols].view(_dtype(level)).reshape(nb, rows, cols)
            if level["resampled"]:
                t = tables[table]
                index = t[[0, 1, 3, 4]].astype(np.int64)
                values = _bilinear(src, index[0], index[1], t[2], index[2], index[3], t[5])
                table += 1
            else:
                values = src
            for v in values:
                dn[k, order[j]] = v
                j += 1
        valid = rec[voff: voff + size * size].reshape(size, size) != 0
        dn[k][:, ~valid] = np.nan
    return dn
