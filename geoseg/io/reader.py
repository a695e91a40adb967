"""Read one window of a :class:`Scene` onto its 10 m grid: reflectance bands + valid mask.

Every consumer (feature stack, tiler, predictor) reads through :func:`read_window`, so there
is one implementation of offsets, resampling and masking. File handles are cached per thread
and per process (Dask workers open their own); GDAL state is scoped with ``rasterio.Env``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence

import numpy as np
import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.windows import Window

from geoseg.errors import CorruptRasterError
from geoseg.io.offsets import OffsetDecision, infer_offset
from geoseg.io.resample import read_resampled
from geoseg.io.scene import BandFile, Scene, open_raster

__all__ = ["read_window", "read_raw", "read_valid", "read_reflectance", "read_scl", "infer_scene_offset",
           "sample_scene", "to_reflectance", "close_cached"]

_local = threading.local()
_GDAL_ENV = {"GDAL_NUM_THREADS": 1}  # Dask provides the parallelism


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


def _reason(err: BaseException) -> str:
    """GDAL's own words for a failed read (rasterio's outer message only says "Read failed")."""
    messages = []
    while err is not None:
        messages.append(str(err).strip())
        err = err.__cause__ or err.__context__
    useful = [m for m in messages if m and "see previous exception" not in m.lower()]
    return (useful[-1] if useful else messages[0])[:200]


@contextlib.contextmanager
def reading(path: str, what: str) -> Iterator[None]:
    """Turn a failed GDAL read of ``path`` into one :class:`CorruptRasterError` naming the file and ``what``.

    The error pickles (it travels from Dask worker processes as is).
    """
    try:
        yield
    except (RasterioError, CPLE_BaseError) as err:
        raise CorruptRasterError(f"cannot read {what} ({_reason(err)})", path=path,
                                 hint="the file is damaged or truncated: re-download or re-export it") from None


def _where(window: Window) -> str:
    return (f"window col {int(window.col_off)}, row {int(window.row_off)}, "
            f"{int(window.width)} x {int(window.height)} px of the scene grid")


def to_reflectance(raw: np.ndarray, scene: Scene) -> np.ndarray:
    """Reflectance ``(DN + offset) / scale`` in float64 (the scale is 10000 for standard Sentinel-2)."""
    return (raw.astype(np.float64) + float(scene.offset.offset)) / float(scene.scale)


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
    with rasterio.Env(**_GDAL_ENV):
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
    with rasterio.Env(**_GDAL_ENV):
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
    with rasterio.Env(**_GDAL_ENV):
        return _read_class_layer(scene, scene.scl, window)[0]


def sample_scene(scene: Scene, max_size: int = 512) -> dict[str, np.ndarray]:
    """A decimated read (at most ``max_size`` px a side) of every band: DN as float64 by band name.

    Used for the offset inference and the scale check. The SCL and mask layers are read the same
    way (and dropped), so a damaged file of the scene is refused before any work starts.
    """
    from concurrent.futures import ThreadPoolExecutor

    def read(band: BandFile) -> np.ndarray:
        # one GDAL thread per read: a failed JPEG 2000 read is then reported, not zero-filled
        with rasterio.Env(**_GDAL_ENV), open_raster(band.path) as ds, reading(band.path, "a sample of the file"):
            factor = max(1, int(np.ceil(max(ds.width, ds.height) / max_size)))
            shape = (max(1, ds.height // factor), max(1, ds.width // factor))
            return ds.read(band.index, out_shape=shape, resampling=Resampling.nearest)

    layers = [*scene.bands.items(), *((n, x) for n, x in (("SCL", scene.scl), ("mask", scene.mask)) if x)]
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1, len(layers)))) as pool:
        data = list(pool.map(read, [band for _, band in layers]))  # the first failure (in band order) is raised
    return {name: arr.astype(np.float64) for (name, _), arr in zip(layers, data, strict=True) if name in scene.bands}


def infer_scene_offset(scene: Scene, max_size: int = 512,
                       samples: dict[str, np.ndarray] | None = None) -> OffsetDecision:
    """Apply the documented inference rule to a decimated read of the scene's bands."""
    if samples is None:
        samples = sample_scene(scene, max_size)
    nodata = next(iter(scene.bands.values())).nodata
    return infer_offset(samples, nodata=nodata, scale=scene.scale)
