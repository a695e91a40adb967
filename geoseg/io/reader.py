"""Read one window of a :class:`Scene` onto its 10 m grid: reflectance bands + valid mask.

Every consumer reads through this module — :func:`read_window` (reflectance and valid mask),
or :func:`read_raw` and :func:`read_valid` as the feature stack does (DN for the compiled
kernel) — so there is one implementation of resampling and masking, and DN become reflectance
by :func:`geoseg.io.radiometry.dn_to_reflectance`. File handles are cached per thread and per
process (Dask workers open their own); GDAL state is scoped with ``rasterio.Env``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.windows import Window

from geoseg.io.radiometry import dn_to_reflectance
from geoseg.io.raster import GDAL_ENV, BandFile, open_raster, reading
from geoseg.io.resample import Footprint, footprint, read_resampled
from geoseg.io.scene import Scene

__all__ = ["Sources", "read_sources", "read_window", "read_raw", "read_valid", "read_reflectance", "read_scl", "to_reflectance", "close_cached"]

_local = threading.local()


def _dataset(path: str):
    cache: dict = getattr(_local, "datasets", None) or {}
    _local.datasets = cache
    ds = cache.get(path)
    if ds is None or ds.closed:
        ds = cache[path] = open_raster(path)
    return ds


def close_cached() -> None:
    """Close this thread's cached file handles."""
    for ds in getattr(_local, "datasets", {}).values():
        ds.close()
    _local.datasets = {}


def _where(window: Window) -> str:
    return (f"window col {int(window.col_off)}, row {int(window.row_off)}, "
            f"{int(window.width)} x {int(window.height)} px of the scene grid")


def to_reflectance(raw: np.ndarray, scene: Scene) -> np.ndarray:
    """Reflectance of ``scene``'s DN in float64 (:func:`geoseg.io.radiometry.dn_to_reflectance`)."""
    return dn_to_reflectance(raw, float(scene.offset.offset), float(scene.scale))


def _groups(scene: Scene, bands: Sequence[str]) -> dict[str, list[tuple[str, BandFile]]]:
    """Bands grouped by file, so a multi-band file is read with one call per window."""
    groups: dict[str, list[tuple[str, BandFile]]] = {}
    for name in bands:
        band = scene.bands[name]
        groups.setdefault(band.path, []).append((name, band))
    return groups


def read_raw(scene: Scene, window: Window, bands: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """DN of ``bands`` on the scene grid as float32 ``(len(bands), h, w)`` and the invalid mask.

    Bands on the target grid are exact integers; resampled bands are bilinear interpolants.
    """
    h, w = int(window.height), int(window.width)
    invalid = np.zeros((h, w), dtype=bool)
    raw = np.empty((len(bands), h, w), dtype=np.float32)
    position = {name: i for i, name in enumerate(bands)}
    with rasterio.Env(**GDAL_ENV):
        for path, members in _groups(scene, bands).items():
            first = members[0][1]
            with reading(path, _where(window)):
                values, bad = read_resampled(
                    _dataset(path), [b.index for _, b in members], first.grid, scene.grid, window,
                    "bilinear", first.nodata,
                )
            invalid |= bad
            for (name, _), arr in zip(members, values, strict=True):
                raw[position[name]] = arr
    return raw, invalid


@dataclass(frozen=True, eq=False)
class Sources:
    """The source blocks one window needs, each read once, as stored (for the fused kernel).

    ``blocks[i]`` holds band ``i`` over ``footprints[i].read`` in its file's dtype, ``nodata[i]``
    its nodata value as compared (NaN: none). ``scl`` is the SCL block (None without SCL) and
    ``scl_lut[k]`` says whether class ``k`` is invalid; ``valid`` is the window's mask from the
    external cloud mask (all True without one).
    """

    blocks: tuple[np.ndarray, ...]
    nodata: np.ndarray
    footprints: tuple[Footprint, ...]
    scl: np.ndarray | None
    scl_footprint: Footprint | None
    scl_lut: np.ndarray
    valid: np.ndarray


def _nodata(value: float | None, dtype: np.dtype) -> float:
    """``value`` as numpy compares it with ``dtype`` data (float32 data: a float32 value), NaN for none."""
    if value is None:
        return float("nan")
    return float(np.asarray(value, dtype=np.result_type(dtype, value)))


def read_sources(scene: Scene, window: Window, bands: Sequence[str]) -> Sources:
    """Read the source blocks of ``bands`` (and SCL, mask) that ``window`` needs, each file once.

    The blocks are the footprints :func:`read_raw` resamples from: the compiled feature kernel
    (:mod:`geoseg.features.fused`) resamples, masks and computes the recipe in one pass.
    """
    blocks: dict[str, np.ndarray] = {}
    fps: dict[str, Footprint] = {}
    nodata: dict[str, float] = {}
    footprints: dict = {}  # per source grid: bands of one resolution share their footprint
    with rasterio.Env(**GDAL_ENV):
        for path, members in _groups(scene, bands).items():
            first = members[0][1]
            fp = footprints.get(first.grid)
            if fp is None:
                fp = footprints[first.grid] = footprint(first.grid, scene.grid, window, "bilinear")
            with reading(path, _where(window)):
                data = _dataset(path).read([b.index for _, b in members], window=fp.read)
            for (name, _), arr in zip(members, data, strict=True):
                blocks[name], fps[name], nodata[name] = arr, fp, _nodata(first.nodata, data.dtype)
        valid = np.ones((int(window.height), int(window.width)), dtype=bool)
        scl = scl_fp = None
        codes = np.asarray(scene.invalid_scl, dtype=np.int64)
        lut = np.zeros(int(codes.max()) + 1 if codes.size else 0, dtype=bool)
        if scene.scl is not None and (codes >= 0).all():
            layer = scene.scl
            scl_fp = footprint(layer.grid, scene.grid, window, "nearest")
            with reading(layer.path, _where(window)):
                scl = _dataset(layer.path).read(layer.index, window=scl_fp.read)
            lut[codes] = True
        elif scene.scl is not None:  # negative class codes: no look-up table
            valid &= ~np.isin(_read_class_layer(scene, scene.scl, window)[0], scene.invalid_scl)
        if scene.mask is not None:
            ext, bad = _read_class_layer(scene, scene.mask, window)
            valid &= (ext == 0) & ~bad
    return Sources(tuple(blocks[b] for b in bands), np.array([nodata[b] for b in bands]),
                   tuple(fps[b] for b in bands), scl, scl_fp, lut, valid)


def read_reflectance(
    scene: Scene, window: Window, bands: Sequence[str]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Reflectance ``(DN + offset) / scale`` of ``bands`` and the pixels invalid in any of them.

    Reflectance is float64 so that indices with small denominators (dark pixels) keep full
    precision; the feature stack rounds to float32 once, at the end.
    """
    raw, invalid = read_raw(scene, window, bands)
    return {name: to_reflectance(raw[i], scene) for i, name in enumerate(bands)}, invalid


def _read_class_layer(scene: Scene, layer: BandFile, window: Window) -> tuple[np.ndarray, np.ndarray]:
    with reading(layer.path, _where(window)):
        values, bad = read_resampled(_dataset(layer.path), [layer.index], layer.grid, scene.grid, window,
                                     "nearest", None)
    return values[0], bad


def read_valid(scene: Scene, window: Window, invalid: np.ndarray) -> np.ndarray:
    """The valid mask: not ``invalid`` (band nodata), SCL class allowed, external mask zero."""
    with rasterio.Env(**GDAL_ENV):
        if scene.scl is not None:
            scl, _ = _read_class_layer(scene, scene.scl, window)
            invalid |= np.isin(scl, scene.invalid_scl)
        if scene.mask is not None:
            ext, bad = _read_class_layer(scene, scene.mask, window)
            invalid |= (ext != 0) | bad
    return ~invalid


def read_window(
    scene: Scene, window: Window, bands: Sequence[str]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Reflectance of ``bands`` in ``window`` and the boolean valid-pixel mask.

    A pixel is invalid when: a used band holds nodata (DN 0 for Sentinel-2) or a non-finite
    value (bilinear: in any contributing source pixel); its SCL class is in
    ``scene.invalid_scl``; or the external mask is non-zero there.
    """
    scene.require_bands(bands, "reading")
    reflectance, invalid = read_reflectance(scene, window, bands)
    return reflectance, read_valid(scene, window, invalid)


def read_scl(scene: Scene, window: Window) -> np.ndarray | None:
    """The SCL classes of ``window`` on the scene grid (nearest), or None without SCL."""
    if scene.scl is None:
        return None
    with rasterio.Env(**GDAL_ENV):
        return _read_class_layer(scene, scene.scl, window)[0]
