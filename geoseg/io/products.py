"""Scenes in a zip archive or a remote ``.SAFE`` folder, found in place: nothing is downloaded whole or unpacked.

Locations (:func:`find_product`; anything else is left to :func:`geoseg.io.scene.open_scene`):

- a zip archive, local or remote: ``X.SAFE.zip``, ``https://…/X.SAFE.zip``, ``s3://…/X.zip``, or
  ``/vsizip/ARCHIVE.zip[/PATH/INSIDE]`` with ARCHIVE local or itself a ``/vsi`` path
  (``/vsizip//vsicurl/https://…``; GDAL's single-slash form ``/vsizip/vsicurl/…`` too). A zip
  holding one top-level folder (``X.SAFE.zip`` holds ``X.SAFE/``) is read as that folder;
- a remote ``.SAFE`` folder (``s3://…/X.SAFE``, ``/vsis3/…/X.SAFE``), where GDAL can list it: object
  storage can, a plain web server usually cannot (the refusal says what to give instead).

Members are read through GDAL's ``/vsizip/`` (over ``/vsicurl/``, ``/vsis3/``… for a remote
archive). A local archive is listed with :mod:`zipfile`; a remote one, and a remote folder, with
GDAL's VSI listing (``pyogrio.vsi_listtree``), which reads only the zip's central directory. The
SAFE's ``MTD_MSIL*.xml`` comes from :mod:`zipfile` locally, else from GDAL's SENTINEL2 driver,
which holds the whole document in its ``xml:SENTINEL2`` metadata domain.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from geoseg.errors import CorruptRasterError, MissingFileError
from geoseg.io.raster import REMOTE_ENV, gdal_path, is_virtual, ogr_env

__all__ = ["Product", "find_product"]

_VSIZIP = re.compile(r"^/vsizip/(.+?\.zip)(?:/(.*))?$", re.IGNORECASE)
_VSI_NO_SLASH = re.compile(r"^vsi[a-z0-9]+/", re.IGNORECASE)
_XML = re.compile(r"MTD_MSIL\w*\.xml")
_CREDENTIALS = "private buckets need GDAL's credential variables (AWS_*, GS_*/GOOGLE_*, AZURE_*), see docs/inputs.md"


@dataclass(frozen=True)
class Product:
    """A scene found in an archive or a remote folder: where GDAL reads it and what it holds."""

    root: str  # the GDAL path of the scene: the archive, a folder in it, one member file, or the remote folder
    layout: Literal["multiband", "per_band", "safe"]
    files: tuple[str, ...]  # GDAL paths of every file under root (folder layouts)
    xml: bytes | None  # the SAFE's MTD_MSIL*.xml
    xml_name: str


def find_product(shown: str) -> Product | None:
    """The scene at ``shown`` (as the user wrote it) if it is a zip archive or a remote ``.SAFE`` folder, else None.

    Raises:
        MissingFileError: the archive, the path inside it or the remote folder cannot be found or listed.
        CorruptRasterError: a damaged archive or an unreadable product metadata file.
    """
    match = _VSIZIP.match(shown)
    plain = shown.split("?", 1)[0].rstrip("/")
    if match:
        archive, inner = match.group(1), (match.group(2) or "").strip("/")
        if _VSI_NO_SLASH.match(archive):  # /vsizip/vsicurl/…: GDAL's single-slash form of /vsizip//vsicurl/…
            archive = f"/{archive}"
        if not archive.startswith("/vsi"):
            return _local_zip(Path(archive), inner, shown)
        return _remote(f"/vsizip/{archive}", inner, shown, is_zip=True)
    if not is_virtual(shown):
        return _local_zip(Path(shown), "", shown) if plain.lower().endswith(".zip") and not Path(shown).is_dir() else None
    if plain.lower().endswith(".zip"):
        return _remote(f"/vsizip/{gdal_path(shown).rstrip('/')}", "", shown, is_zip=True)
    if plain.upper().endswith(".SAFE"):
        return _remote(gdal_path(shown).rstrip("/"), "", shown, is_zip=False)
    return None


def _local_zip(archive: Path, inner: str, shown: str) -> Product:
    """A local archive, listed with :mod:`zipfile`."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            return _find_scene(names, f"/vsizip/{archive.absolute()}", inner, shown, zf.read)
    except (zipfile.BadZipFile, OSError) as err:
        if isinstance(err, MissingFileError):
            raise
        if isinstance(err, FileNotFoundError):
            raise MissingFileError("scene does not exist", path=shown,
                                   hint="check the path (a .tif, a band folder, a .SAFE or a .SAFE.zip)") from None
        raise CorruptRasterError(f"not a readable zip archive ({err})", path=shown,
                                 hint="the download is damaged or incomplete: re-download it") from None


def _remote(root: str, inner: str, shown: str, is_zip: bool) -> Product:
    """A remote archive or folder (or a local archive given as a ``/vsi`` path), listed by GDAL."""
    import pyogrio

    try:
        with ogr_env(), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # pyogrio repeats GDAL's errors as warnings
            listed = pyogrio.vsi_listtree(root)
    except Exception as err:  # FileNotFoundError: missing, unreachable, not a zip, or a server that lists nothing
        reason = (str(err).splitlines() or [type(err).__name__])[0].replace(root, shown)
        if is_zip:
            raise MissingFileError(f"cannot open the zip archive: it does not exist, cannot be reached or is not a "
                                   f"zip ({reason[:120]})", path=shown,
                                   hint=f"check the URL and the network; {_CREDENTIALS}") from None
        listed = []
    names = [entry[len(root) + 1:] for entry in listed if not entry.endswith("/")]
    if not names and is_zip:
        raise MissingFileError("the zip archive is empty", path=shown, hint="check the path (unzip -l lists it)")
    if not names:  # GDAL tells a folder it cannot list from a missing one no better than this
        raise MissingFileError(
            "cannot list the .SAFE folder: it does not exist, cannot be reached, or its server does not list "
            "folders (object storage such as s3://, gs:// and az:// does, a plain web server usually does not)",
            path=shown, hint="give the product as a .SAFE.zip (read in place) or a STAC item of the scene, or "
            f"download and unpack it; {_CREDENTIALS}")
    return _find_scene(names, root, inner, shown, lambda name: _remote_xml(f"{root}/{name}", shown))


def _remote_xml(path: str, shown: str) -> bytes:
    """A SAFE's ``MTD_MSIL*.xml`` read through GDAL's SENTINEL2 driver (it keeps the whole document)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with rasterio.Env(**REMOTE_ENV), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the product level has no grid
            with rasterio.open(path, driver="SENTINEL2") as ds:
                text = ds.tags(ns="xml:SENTINEL2").get("xml:SENTINEL2")
    except RasterioIOError as err:
        text, reason = None, (str(err).splitlines() or [type(err).__name__])[0].replace(f"'{path}' ", "")
    else:
        reason = "GDAL's SENTINEL2 driver gave no xml:SENTINEL2 metadata"
    if not text:
        raise CorruptRasterError(f"cannot read the product metadata {Path(path).name} ({reason[:120]})", path=shown,
                                 hint="the product is damaged or incomplete, or the connection failed: retry, "
                                 "else re-download it")
    return text.encode()


def _find_scene(names: list[str], base: str, inner: str, shown: str, read: Callable[[str], bytes]) -> Product:
    """The scene in a listing (paths relative to ``base``): one member file, a folder in it, or all of it."""
    if inner and inner in names:  # one member file: a multi-band raster
        return Product(f"{base}/{inner}", "multiband", (), None, "")
    prefix = f"{inner}/" if inner else ""
    under = [n[len(prefix):] for n in names if n.startswith(prefix)]
    if not under:
        raise MissingFileError(f"the zip archive holds no {inner!r}" if inner else "the zip archive is empty",
                               path=shown, hint="check the path inside the archive (unzip -l lists it)")
    tops = {n.split("/", 1)[0] for n in under}
    if not inner and len(tops) == 1 and all("/" in n for n in under):
        prefix = f"{tops.pop()}/"
        under = [n.split("/", 1)[1] for n in under]
    xmls = sorted(n for n in under if _XML.fullmatch(n))
    root = f"{base}/{prefix.rstrip('/')}" if prefix else base
    if len(under) == 1 and not xmls and not prefix:
        return Product(f"{base}/{under[0]}", "multiband", (), None, "")
    safe = root.upper().endswith(".SAFE") or bool(xmls)
    xml = read(prefix + xmls[0]) if xmls else None
    files = tuple(sorted(f"{root}/{n}" for n in under))
    return Product(root, "safe" if safe else "per_band", files, xml, xmls[0] if xmls else "")
