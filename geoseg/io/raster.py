"""Raster files: opening one with geoseg errors, where a band lives, and GDAL read errors.

The lowest layer of :mod:`geoseg.io`: :mod:`geoseg.io.offsets` (sampling band files),
:mod:`geoseg.io.scene` (describing a scene) and :mod:`geoseg.io.reader` (window reads) all
open files through :func:`open_raster` and report failed reads through :func:`reading`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.errors import RasterioError, RasterioIOError

from geoseg.errors import CorruptRasterError, MissingFileError
from geoseg.io.grid import Grid

__all__ = ["BandFile", "GDAL_ENV", "open_raster", "reading"]

GDAL_ENV = {"GDAL_NUM_THREADS": 1}  # one GDAL thread per read: Dask (or a thread pool) provides the parallelism


@dataclass(frozen=True)
class BandFile:
    """Where one band lives: file, 1-based band index in that file, its grid and nodata."""

    path: str
    index: int
    grid: Grid
    nodata: float | None
    dtype: str

    @property
    def resolution(self) -> float:
        return self.grid.resolution[0]


def open_raster(path: str | Path):
    """``rasterio.open`` with geoseg errors for missing, empty or unreadable files."""
    p = Path(path)
    if not p.exists():
        raise MissingFileError("file does not exist", path=p, hint="check the path in the catalog or command")
    if p.is_file() and p.stat().st_size == 0:
        raise CorruptRasterError("file is empty (0 bytes)", path=p, hint="re-download or re-export it")
    try:
        return rasterio.open(p)
    except RasterioIOError as err:
        msg = str(err).splitlines()[0][:160]
        raise CorruptRasterError(f"not a readable raster ({msg})", path=p, hint="re-download or re-export it") from None


def _reason(err: BaseException | None) -> str:
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
