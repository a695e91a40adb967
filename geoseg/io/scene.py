"""Open a Sentinel-2 scene in any of its three layouts as a picklable :class:`Scene`.

Layouts: ``multiband`` (one GeoTIFF, band names from its descriptions, the catalog or its
band count), ``per_band`` (a folder of one file per band, GeoTIFF or JP2, at native
10/20/60 m) and ``safe`` (an ESA ``.SAFE`` product, L1C or L2A); a STAC item is read as a fourth,
``stac`` (one file per band at its assets' locations, :mod:`geoseg.io.stac`). A Scene only *describes*
the files; reading happens window by window in :mod:`geoseg.io.reader`, so a Scene can be
shipped to Dask workers, which open their own file handles.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from geoseg.errors import (
    BandError,
    ConfigError,
    CRSMismatchError,
    MissingFileError,
)
from geoseg.io.grid import Grid
from geoseg.io.offsets import (
    OffsetDecision,
    check_scale,
    infer_offset,
    offset_from_safe_xml,
    offset_from_tags,
    sample_bands,
)
from geoseg.io.options import SceneOptions
from geoseg.io.products import Product, find_product
from geoseg.io.raster import BandFile, is_virtual, open_raster
from geoseg.io.sensors import (
    DEFAULT_INVALID_SCL,
    REFLECTANCE_SCALE,
    S2_BAND_NAMES,
    S2_BANDS,
    S2_L2A_BAND_NAMES,
    S2_NODATA,
    normalise_band_name,
)
from geoseg.io.stac import is_stac_item, read_stac_item
from geoseg.utils.options import with_overrides

__all__ = ["Scene", "Layout", "open_scene", "BandFile", "open_raster"]  # the last two live in geoseg.io.raster

if TYPE_CHECKING:
    import pystac

Layout = Literal["multiband", "per_band", "safe", "stac"]
_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")
_BAND_TOKEN = re.compile(r"(?:^|[_\-.])(B(?:0?[1-9]|1[0-2]|8A)|SCL)(?=[_\-.]|$)", re.IGNORECASE)
_DATETIME = re.compile(r"(\d{8}T\d{6})")


@dataclass(frozen=True)
class Scene:
    """A Sentinel-2 scene described as data; read it with :func:`geoseg.io.read_window`."""

    scene_id: str
    path: str
    layout: Layout
    level: str  # "L1C", "L2A" or "unknown"
    bands: Mapping[str, BandFile]
    grid: Grid  # the target (10 m) grid every band is read onto
    offset: OffsetDecision
    scl: BandFile | None = None
    mask: BandFile | None = None  # external mask: non-zero = invalid
    invalid_scl: tuple[int, ...] = DEFAULT_INVALID_SCL
    datetime: str | None = None
    facts: Mapping[str, str] = field(default_factory=dict)
    scale: float = REFLECTANCE_SCALE  # DN per unit reflectance: reflectance = (DN + offset) / scale

    def with_options(self, **changes) -> Scene:
        """A copy with the given fields replaced (``dataclasses.replace``)."""
        return replace(self, **changes)

    def files(self) -> list[str]:
        """Every file or folder this scene reads (outputs must never land on them)."""
        layers = [*self.bands.values(), self.scl, self.mask]
        return list(dict.fromkeys([self.path, *(layer.path for layer in layers if layer is not None)]))

    def require_bands(self, bands: Sequence[str], why: str) -> None:
        """Check the scene has ``bands``; ``why`` names what needs them in the error.

        Raises:
            BandError: A band is missing.
        """
        missing = [b for b in bands if b not in self.bands]
        if missing:
            raise BandError(
                f"scene has no band {', '.join(missing)} (found {', '.join(self.bands) or 'none'})",
                path=self.path,
                hint=f"{why} needs {', '.join(bands)}; add the missing band files or choose another recipe",
            )


def _band_file(path: str | Path, index: int = 1, single: bool = False) -> BandFile:
    with open_raster(path) as ds:
        if single and ds.count != 1:
            raise BandError(
                f"a band file must hold one band, this one holds {ds.count} ({ds.dtypes[0]})", path=path,
                hint="it is not a Sentinel-2 band file (a feature stack or a multi-band scene?): move it out of "
                "the scene folder (a multi-band scene is read on its own: geoseg inspect FILE)",
            )
        nodata = ds.nodata if ds.nodata is not None else S2_NODATA
        return BandFile(str(path), index, Grid.from_dataset(ds, path), nodata, ds.dtypes[index - 1])


def _match_token(name: str) -> str | None:
    tokens = [normalise_band_name(t) for t in _BAND_TOKEN.findall(Path(name).stem)]
    tokens = [t for t in tokens if t]
    return tokens[-1] if tokens else None


def _acquisition(path: str | Path) -> str | None:
    match = _DATETIME.search(Path(path).name)
    return match.group(1) if match else None


def _select_acquisition(folder: str | Path, candidates: list[tuple[str, str | Path]],
                        date: str | None) -> list[tuple[str, str | Path]]:
    """The band files of one acquisition (``YYYYMMDDTHHMMSS`` in their names); refuse a mix."""
    acquisitions: dict[str, list[str]] = {}
    for name, path in candidates:
        dt = _acquisition(path)
        if dt is not None:
            acquisitions.setdefault(dt, []).append(name)
    listing = "; ".join(f"{dt} ({', '.join(names)})" for dt, names in sorted(acquisitions.items()))
    if date is None:
        if len(acquisitions) <= 1:
            return candidates
        main = max(acquisitions, key=lambda dt: len(acquisitions[dt]))
        raise BandError(
            f"band files of {len(acquisitions)} acquisitions are mixed: {listing}", path=folder,
            hint=f"choose one with --datetime (e.g. --datetime {main}; catalog: datetime: '{main}'), "
            "or keep each acquisition in its own folder",
        )
    wanted = re.sub(r"[-: ]|\.\d+|Z$", "", date.strip().upper())  # ISO 8601 too: 2017-02-16T10:50:31.024Z
    chosen = [dt for dt in acquisitions if dt.startswith(wanted)]
    if len(chosen) != 1:
        what = "no band files of" if not chosen else "several acquisitions match"
        raise BandError(f"{what} acquisition {date!r} (found {listing or 'no dated file names'})", path=folder,
                        hint="give the date and time of one of them, as YYYYMMDD or YYYYMMDDTHHMMSS")
    return [(n, p) for n, p in candidates if _acquisition(p) in (chosen[0], None)]


def _discover_band_files(folder: str | Path, files: Sequence[str | Path],
                         date: str | None = None) -> tuple[dict[str, BandFile], BandFile | None]:
    """Map band names to ``files`` (every file under ``folder``); the finest resolution wins for duplicates."""
    found: dict[str, BandFile] = {}
    candidates: list[tuple[str, str | Path]] = []
    for path in files:
        pure = Path(path)  # only for its name, suffix and parts: a /vsizip/ path stays a str
        if pure.suffix.lower() not in _RASTER_SUFFIXES or "QI_DATA" in pure.parts:
            continue
        name = _match_token(pure.name)
        if name is not None:
            candidates.append((name, path))
    for name, path in _select_acquisition(folder, candidates, date):
        band = _band_file(path, single=True)
        if name not in found or band.resolution < found[name].resolution:
            found[name] = band
    scl = found.pop("SCL", None)
    return found, scl


def _multiband(path: str | Path, band_names: Sequence[str] | None) -> tuple[dict[str, BandFile], str, dict]:
    with open_raster(path) as ds:
        grid = Grid.from_dataset(ds, path)
        nodata = ds.nodata if ds.nodata is not None else S2_NODATA
        descriptions = [normalise_band_name(d) if d else None for d in ds.descriptions]
        tags = ds.tags()
        if band_names is not None:
            names = [normalise_band_name(b) or b.upper() for b in band_names]
            if len(names) != ds.count:
                raise BandError(
                    f"catalog lists {len(names)} band names but the file has {ds.count} bands",
                    path=path,
                    hint="make band_names match the file's band order",
                )
        elif all(descriptions):
            names = [d for d in descriptions if d]  # all set: same list, typed list[str]
        elif ds.count == len(S2_BAND_NAMES):
            names = list(S2_BAND_NAMES)
        elif ds.count == len(S2_L2A_BAND_NAMES):
            names = list(S2_L2A_BAND_NAMES)
        else:
            raise BandError(
                f"{ds.count} bands without band descriptions",
                path=path,
                hint="set band descriptions (B01..B12) or give band_names in the catalog "
                "(files without names must hold 13 L1C or 12 L2A bands in ESA order)",
            )
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise BandError(f"duplicated bands {dupes}", path=path, hint="each band may appear once")
        bands = {
            n: BandFile(str(path), i + 1, grid, nodata, ds.dtypes[i]) for i, n in enumerate(names) if n
        }
        level = "L1C" if "B10" in bands else ("L2A" if "SCL" in bands or len(bands) == 12 else "unknown")
        return bands, level, tags


def _check_alignment(bands: Mapping[str, BandFile], grid: Grid, scene_path: str | Path) -> None:
    for name, band in bands.items():
        if band.grid.crs != grid.crs:
            raise CRSMismatchError(
                f"band {name} ({band.path}) is in {band.grid.crs.to_string()}, other bands in {grid.crs.to_string()}",
                path=scene_path,
                hint="reproject the band files onto one CRS before reading them as one scene",
            )
        tol = band.resolution / 2
        if any(abs(a - b) > tol for a, b in zip(band.grid.bounds, grid.bounds, strict=True)):
            raise CRSMismatchError(
                f"band {name} ({band.path}) covers {band.grid.bounds}, the scene {grid.bounds}",
                path=scene_path,
                hint="all band files of a scene must cover the same extent",
            )


def _check_projected(band: BandFile) -> None:
    """Refuse a band in a geographic CRS (degrees): the scene grid is metric (10 m pixels)."""
    crs = band.grid.crs
    if not crs.is_geographic:
        return
    left, bottom, right, top = band.grid.bounds
    lon, lat = (left + right) / 2, (bottom + top) / 2
    zone = min(60, max(1, int((lon + 180) // 6) + 1))
    epsg = (32600 if lat >= 0 else 32700) + zone
    raise CRSMismatchError(
        f"raster is in a geographic CRS ({crs.to_string()}, degrees); geoseg needs a projected grid in metres "
        "(Sentinel-2's UTM zone)", path=band.path,
        hint=f"reproject it, e.g. gdalwarp -t_srs EPSG:{epsg} -tr 10 10 -r bilinear {band.path} OUT.tif "
        f"(EPSG:{epsg} = UTM zone {zone}{'N' if lat >= 0 else 'S'}, from the file's centre)",
    )


def _detect_layout(path: Path) -> Layout:
    if path.is_dir():
        return "safe" if path.suffix.upper() == ".SAFE" or any(path.glob("MTD_MSIL*.xml")) else "per_band"
    return "multiband"


def open_scene(
    path: str | Path | pystac.Item,
    options: SceneOptions | None = None,
    *,
    band_names: Sequence[str] | None = None,
    mask: str | Path | None = None,
    scene_id: str | None = None,
    **overrides: Any,
) -> Scene:
    """Describe the scene at ``path``; headers, metadata and a decimated sample are read.

    The sample (at most 512 px a side per band) decides the offset of files without
    metadata and checks that valid values are reflectance x ``scale``; a damaged file fails
    here, before any output is written.

    Args:
        path: a multi-band GeoTIFF, a folder of per-band files, a ``.SAFE`` folder or a zip of one
            (``X.SAFE.zip``, read in place through ``/vsizip/``), a ``/vsi*`` path, or a URL
            (``s3://``, ``gs://``, ``az://``, ``http(s)://``; see :func:`geoseg.io.raster.gdal_path`), or a
            STAC item: a ``.json`` file or URL, a STAC API item URL or a :class:`pystac.Item`
            (:mod:`geoseg.io.stac`; its offset and scale come from the item's properties).
        options: the grid resolution in metres (10 m: the finest S2 grid), a DN offset overriding
            the product metadata (catalog ``offset``), the scale (DN per unit reflectance,
            default 10000, Sentinel-2's quantification value; 1 for a product stored as
            reflectance 0-1: reflectance = (DN + offset) / scale), the SCL classes that make a
            pixel invalid, and the acquisition to read from a folder holding band files of
            several (:class:`~geoseg.io.SceneOptions`; default ``SceneOptions()``).
        band_names: band order of a multi-band file without band descriptions.
        mask: optional external mask raster; non-zero pixels are invalid.
        scene_id: identifier used in outputs (default: derived from the file name).
        **overrides: single options on top of ``options``, e.g. ``open_scene(path, offset=-1000)``.

    Raises:
        ConfigError: a bad option (before anything is read). MissingFileError,
            CorruptRasterError, BandError, CRSMismatchError, ScaleError.
    """
    opts = with_overrides(options or SceneOptions(), overrides)
    resolution, offset, scale, date = opts.resolution, opts.offset, opts.scale, opts.date
    stac = read_stac_item(path) if is_stac_item(path) else None  # a STAC item: its bands are its assets
    if stac is not None:
        path, scene_id = stac.item, scene_id or stac.scene_id
        scale = stac.scale if scale is None else scale  # stated > 0 (geoseg.io.stac)
    scale = REFLECTANCE_SCALE if scale is None else scale
    shown = str(path)  # as the user wrote it: errors and Scene.path of remote scenes keep it
    p = Path(shown)
    where: str | Path = shown if is_virtual(shown) else p  # what errors name
    source: str | Path = where  # what GDAL opens
    zipped: Product | None = None  # a zip archive or a remote .SAFE folder
    if stac is not None:
        layout: Layout = "stac"
    elif (zipped := find_product(shown)) is not None:
        layout = zipped.layout
        source = zipped.root
    elif is_virtual(shown):
        layout = "multiband"  # a remote or /vsi file; opening it checks that it exists
    else:
        if not p.exists():
            raise MissingFileError("scene does not exist", path=p,
                                   hint="check the path (a .tif, a band folder or a .SAFE)")
        layout = _detect_layout(p)
    facts: dict[str, str] = {}
    decision: OffsetDecision | None = None
    if stac is not None:
        if date is not None:
            raise ConfigError(f"datetime {date!r} selects among the band files of a folder, but a STAC item is one "
                              "acquisition", path=where, hint="drop the datetime (--datetime / catalog datetime:)")
        bands, scl = stac.band_files()
        level, decision, dt, facts = stac.level, stac.offset, stac.datetime, dict(stac.facts)
    elif layout == "multiband":
        if date is not None:
            raise ConfigError(f"datetime {date!r} selects among the band files of a folder, but this scene is one file",
                              path=where, hint="drop the datetime (--datetime / catalog datetime:), or point to the band folder")
        bands, level, tags = _multiband(source, band_names)
        scl = bands.pop("SCL", None)
        decision = offset_from_tags(tags)
        dt = tags.get("datetime") or tags.get("TIFFTAG_DATETIME")
    else:
        files: Sequence[str | Path] = zipped.files if zipped is not None else sorted(p.rglob("*"))
        bands, scl = _discover_band_files(where, files, date)
        if not bands:
            raise BandError("no Sentinel-2 band files found (names must contain B01..B12 or B8A)", path=where,
                            hint="point to a folder of per-band .tif/.jp2 files or a .SAFE product")
        level = "L2A" if scl is not None else "unknown"
        if layout == "safe":
            if zipped is not None:
                xml_name = zipped.xml_name
                if zipped.xml is not None:
                    decision, facts = offset_from_safe_xml(Path(xml_name), zipped.xml)
            else:
                xmls = sorted(p.glob("MTD_MSIL*.xml"))
                xml_name = xmls[0].name if xmls else ""
                if xmls:
                    decision, facts = offset_from_safe_xml(xmls[0])
            if xml_name:
                level = "L2A" if "MSIL2A" in xml_name else "L1C"
        else:
            with open_raster(next(iter(bands.values())).path) as ds:
                decision = offset_from_tags(ds.tags())
                level = ds.tags().get("PROCESSING_LEVEL", level)
        dt = facts.get("PRODUCT_START_TIME")
    if dt is None:
        match = _DATETIME.search(p.name) or _DATETIME.search(Path(next(iter(bands.values())).path).name)
        dt = match.group(1) if match else None

    finest = min(bands.values(), key=lambda b: b.resolution)
    _check_projected(finest)
    grid = finest.grid.with_resolution(resolution)
    _check_alignment({**bands, **({"SCL": scl} if scl else {})}, grid, where)
    external = None
    if mask is not None:
        external = _band_file(str(mask) if is_virtual(mask) else Path(mask))
        _check_alignment({"mask": external}, grid, where)
    bands = {b: bands[b] for b in S2_BANDS if b in bands}
    # one decimated read of every file: a damaged file fails here, before any output is written
    samples = sample_bands({**bands, **{name: x for name, x in (("SCL", scl), ("mask", external)) if x}})
    samples = {name: arr for name, arr in samples.items() if name in bands}
    first = next(iter(bands.values()))
    scale = float(scale)
    if offset is not None:
        decision = OffsetDecision(float(offset), "catalog", "set in the catalog / command line")
    elif decision is None:
        decision = infer_offset(samples, nodata=first.nodata, scale=scale)
    check_scale(samples, decision.offset, scale, first.nodata, str(where),
                {name: (b.path, b.dtype) for name, b in bands.items()})
    named = Path(zipped.root) if zipped is not None else p  # a zipped scene is named by the folder in the zip
    return Scene(
        scene_id=scene_id or (named.stem if layout != "safe" else named.name.split(".")[0]),
        path=str(where),
        layout=layout,
        level=level,
        bands=bands,
        grid=grid,
        offset=decision,
        scl=scl,
        mask=external,
        invalid_scl=opts.invalid_scl,
        datetime=dt,
        facts=facts,
        scale=scale,
    )
