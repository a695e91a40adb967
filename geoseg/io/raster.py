"""Raster files: opening one with geoseg errors, where a band lives, and GDAL read errors.

The lowest layer of :mod:`geoseg.io`: :mod:`geoseg.io.offsets` (sampling band files),
:mod:`geoseg.io.scene` (describing a scene) and :mod:`geoseg.io.reader` (window reads) all
open files through :func:`open_raster` and report failed reads through :func:`reading`.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.errors import NotGeoreferencedWarning, RasterioError, RasterioIOError

from geoseg.errors import CorruptRasterError, MissingFileError
from geoseg.io.grid import Grid

__all__ = ["BandFile", "GDAL_ENV", "REMOTE_ENV", "gdal_path", "is_virtual", "ogr_env", "open_raster", "reading"]


def _unless_set(options: dict) -> dict:
    return {k: v for k, v in options.items() if k not in os.environ}


# Read options, in one place. GDAL_ENV wraps every window read and sample (geoseg.io.reader,
# geoseg.io.offsets), in the main process, its threads and the Dask tiling workers alike
# (they read through the same functions; GDAL's credential variables such as AWS_* reach
# them as ordinary environment variables, which worker processes inherit).
# The remote defaults below give way to the same variable set in the environment by the user.
GDAL_ENV = {
    "GDAL_NUM_THREADS": 1,  # one GDAL thread per read: Dask (or a thread pool) provides the parallelism
    **_unless_set({
        "GDAL_HTTP_MAX_RETRY": 3,  # remote files: retry a failed or throttled (429/5xx) request ...
        "GDAL_HTTP_RETRY_DELAY": 1,  # ... after 1 s, then longer
    }),
}
# Added when a file is opened through a GDAL virtual path (/vsizip/, /vsis3/, /vsicurl/, ...):
# no directory listing on open (no sidecar files to find; a listing of a bucket is slow) and
# a cache of the remote bytes, so neighbouring windows do not fetch the same blocks again.
REMOTE_ENV = _unless_set({
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "VSI_CACHE": True,
    "VSI_CACHE_SIZE": 64 * 2**20,  # bytes, per open file
})


@contextlib.contextmanager
def ogr_env() -> Iterator[None]:
    """:data:`GDAL_ENV` and :data:`REMOTE_ENV` for reads through pyogrio (vector files, folder listings).

    pyogrio bundles a GDAL of its own, which ``rasterio.Env`` does not reach; its options are
    process-wide, so the previous values are restored on exit.
    """
    import pyogrio

    options = {**GDAL_ENV, **REMOTE_ENV}
    before = {name: pyogrio.get_gdal_config_option(name) for name in options}
    pyogrio.set_gdal_config_options(options)
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options(before)


_SCHEMES = {"s3": "/vsis3/", "gs": "/vsigs/", "az": "/vsiaz/", "http": "/vsicurl/http", "https": "/vsicurl/https"}
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")
_NETWORK = re.compile(r"^[a-z][a-z0-9+.-]*://|/vsi(curl|s3|gs|az|adls|oss|swift|webhdfs)", re.IGNORECASE)  # read over a network


def is_virtual(path: str | Path) -> bool:
    """Whether ``path`` is a URL or a GDAL virtual path (not checked or resolved on the local disk)."""
    text = str(path)
    return "://" in text or text.startswith("/vsi")


def gdal_path(path: str | Path) -> str:
    """The path GDAL opens: ``s3://``, ``gs://``, ``az://`` and ``http(s)://`` become ``/vsis3/``,
    ``/vsigs/``, ``/vsiaz/`` and ``/vsicurl/``; ``/vsi*`` and local paths are returned unchanged."""
    text = str(path)
    match = _URL.match(text)
    if match is None:
        return text
    scheme = match.group(1).lower()
    if scheme not in _SCHEMES:
        raise MissingFileError(f"unsupported location {scheme}://", path=text,
                               hint="give a local path, s3://, gs://, az://, http(s):// or a GDAL /vsi path")
    if scheme.startswith("http"):
        return _SCHEMES[scheme] + text[len(scheme):]
    return _SCHEMES[scheme] + match.group(2)


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
        """Pixel size in CRS units (x)."""
        return self.grid.resolution[0]


def _open_virtual(text: str):
    """Open a URL or /vsi path: existence is checked by opening it; errors name ``text`` as given."""
    source = gdal_path(text)
    try:
        with rasterio.Env(**REMOTE_ENV), _quiet():
            return rasterio.open(source)
    except RasterioIOError as err:
        # GDAL's message names its own path: the error line names the path as written instead
        first = (str(err).splitlines() or [type(err).__name__])[0]
        msg = first.replace(f"'{source}' ", "").replace(source, text)[:200]
        if "not recognized as being in a supported file format" in first:
            raise CorruptRasterError(f"not a readable raster ({msg})", path=text,
                                     hint="check that it is a GeoTIFF/JP2 band file or scene"
                                     + (" (or the connection was cut or timed out: GDAL then sees no file)"
                                        if _NETWORK.search(source) else "")) from None
        raise MissingFileError(f"cannot open it: it does not exist or cannot be reached ({msg})", path=text,
                               hint="check the path and the network; private buckets need GDAL's credential "
                               "variables (AWS_*, GS_*/GOOGLE_*, AZURE_*), see docs/inputs.md") from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No NotGeoreferencedWarning on open: geoseg reports a raster without a CRS itself, naming the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


def open_raster(path: str | Path):
    """``rasterio.open`` with geoseg errors for missing, empty or unreadable files.

    ``path`` may be local, a URL (``s3://``, ``gs://``, ``az://``, ``http(s)://``) or a GDAL
    ``/vsi`` path (:func:`gdal_path`); those are opened to find out whether they exist.
    """
    if is_virtual(path):
        return _open_virtual(str(path))
    p = Path(path)
    if not p.exists():
        raise MissingFileError("file does not exist", path=p, hint="check the path in the catalog or command")
    if p.is_file() and p.stat().st_size == 0:
        raise CorruptRasterError("file is empty (0 bytes)", path=p, hint="re-download or re-export it")
    try:
        with _quiet():
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
        hint = "the file is damaged or truncated: re-download or re-export it"
        if _NETWORK.search(str(path)):
            hint = ("the file is damaged or truncated, or the connection failed: check the network and retry "
                    "(GDAL_HTTP_MAX_RETRY, GDAL_HTTP_TIMEOUT), else re-download or re-export it")
        raise CorruptRasterError(f"cannot read {what} ({_reason(err)})", path=path, hint=hint) from None
