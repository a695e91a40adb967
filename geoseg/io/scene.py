"""Open a Sentinel-2 scene in any of its three layouts as a picklable :class:`Scene`.

Layouts: ``multiband`` (one GeoTIFF, band names from its descriptions, the catalog or its
band count), ``per_band`` (a folder of one file per band, GeoTIFF or JP2, at native
10/20/60 m) and ``safe`` (an ESA ``.SAFE`` product, L1C or L2A). A Scene only *describes*
the files; reading happens window by window in :mod:`geoseg.io.reader`, so a Scene can be
shipped to Dask workers, which open their own file handles.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import rasterio
from rasterio.errors import RasterioIOError

from geoseg.errors import (
    BandError,
    CorruptRasterError,
    CRSMismatchError,
    MissingFileError,
)
from geoseg.io.grid import Grid
from geoseg.io.offsets import OffsetDecision, offset_from_safe_xml, offset_from_tags
from geoseg.io.sensors import (
    DEFAULT_INVALID_SCL,
    S2_BAND_NAMES,
    S2_BANDS,
    S2_L2A_BAND_NAMES,
    S2_NODATA,
    normalise_band_name,
)

__all__ = ["BandFile", "Scene", "Layout", "open_scene", "open_raster"]

Layout = Literal["multiband", "per_band", "safe"]
_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")
_BAND_TOKEN = re.compile(r"(?:^|[_\-.])(B(?:0?[1-9]|1[0-2]|8A)|SCL)(?=[_\-.]|$)", re.IGNORECASE)
_DATETIME = re.compile(r"(\d{8}T\d{6})")


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

    def with_options(self, **changes) -> Scene:
        return replace(self, **changes)

    def require_bands(self, bands: Sequence[str], why: str) -> None:
        missing = [b for b in bands if b not in self.bands]
        if missing:
            raise BandError(
                f"scene has no band {', '.join(missing)} (found {', '.join(self.bands) or 'none'})",
                path=self.path,
                hint=f"{why} needs {', '.join(bands)}; add the missing band files or choose another recipe",
            )


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


def _band_file(path: Path, index: int = 1) -> BandFile:
    with open_raster(path) as ds:
        nodata = ds.nodata if ds.nodata is not None else S2_NODATA
        return BandFile(str(path), index, Grid.from_dataset(ds), nodata, ds.dtypes[index - 1])


def _match_token(name: str) -> str | None:
    tokens = [normalise_band_name(t) for t in _BAND_TOKEN.findall(Path(name).stem)]
    tokens = [t for t in tokens if t]
    return tokens[-1] if tokens else None


def _discover_band_files(folder: Path) -> tuple[dict[str, BandFile], BandFile | None]:
    """Map band names to files under ``folder``; the finest resolution wins for duplicates."""
    found: dict[str, BandFile] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in _RASTER_SUFFIXES or "QI_DATA" in path.parts:
            continue
        name = _match_token(path.name)
        if name is None:
            continue
        band = _band_file(path)
        if name not in found or band.resolution < found[name].resolution:
            found[name] = band
    scl = found.pop("SCL", None)
    return found, scl


def _multiband(path: Path, band_names: Sequence[str] | None) -> tuple[dict[str, BandFile], str, dict]:
    with open_raster(path) as ds:
        grid = Grid.from_dataset(ds)
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
            names = descriptions
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


def _check_alignment(bands: Mapping[str, BandFile], grid: Grid, scene_path: Path) -> None:
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


def _detect_layout(path: Path) -> Layout:
    if path.is_dir():
        return "safe" if path.suffix.upper() == ".SAFE" or any(path.glob("MTD_MSIL*.xml")) else "per_band"
    return "multiband"


def open_scene(
    path: str | Path,
    *,
    resolution: float = 10.0,
    offset: float | None = None,
    band_names: Sequence[str] | None = None,
    invalid_scl: Sequence[int] = DEFAULT_INVALID_SCL,
    mask: str | Path | None = None,
    scene_id: str | None = None,
) -> Scene:
    """Describe the scene at ``path``; nothing but headers and metadata is read.

    Args:
        path: a multi-band GeoTIFF, a folder of per-band files, or a ``.SAFE`` folder.
        resolution: target grid resolution in metres (10 m: the finest S2 grid).
        offset: DN offset overriding the product metadata (catalog ``offset``).
        band_names: band order of a multi-band file without band descriptions.
        invalid_scl: SCL classes that make a pixel invalid.
        mask: optional external mask raster; non-zero pixels are invalid.
        scene_id: identifier used in outputs (default: derived from the file name).

    Raises:
        MissingFileError, CorruptRasterError, BandError, CRSMismatchError.
    """
    from geoseg.io.reader import infer_scene_offset  # reader imports Scene

    p = Path(path)
    if not p.exists():
        raise MissingFileError("scene does not exist", path=p, hint="check the path (a .tif, a band folder or a .SAFE)")
    layout = _detect_layout(p)
    facts: dict[str, str] = {}
    decision: OffsetDecision | None = None
    if layout == "multiband":
        bands, level, tags = _multiband(p, band_names)
        scl = bands.pop("SCL", None)
        decision = offset_from_tags(tags)
        dt = tags.get("datetime") or tags.get("TIFFTAG_DATETIME")
    else:
        bands, scl = _discover_band_files(p)
        if not bands:
            raise BandError("no Sentinel-2 band files found (names must contain B01..B12 or B8A)", path=p,
                            hint="point to a folder of per-band .tif/.jp2 files or a .SAFE product")
        level = "L2A" if scl is not None else "unknown"
        if layout == "safe":
            xmls = sorted(p.glob("MTD_MSIL*.xml"))
            if xmls:
                decision, facts = offset_from_safe_xml(xmls[0])
                level = "L2A" if "MSIL2A" in xmls[0].name else "L1C"
        else:
            with open_raster(next(iter(bands.values())).path) as ds:
                decision = offset_from_tags(ds.tags())
                level = ds.tags().get("PROCESSING_LEVEL", level)
        dt = facts.get("PRODUCT_START_TIME")
    if dt is None:
        match = _DATETIME.search(p.name) or _DATETIME.search(Path(next(iter(bands.values())).path).name)
        dt = match.group(1) if match else None

    finest = min(bands.values(), key=lambda b: b.resolution)
    grid = finest.grid.with_resolution(resolution)
    _check_alignment({**bands, **({"SCL": scl} if scl else {})}, grid, p)
    external = None
    if mask is not None:
        external = _band_file(Path(mask))
        _check_alignment({"mask": external}, grid, p)
    scene = Scene(
        scene_id=scene_id or (p.stem if layout != "safe" else p.name.split(".")[0]),
        path=str(p),
        layout=layout,
        level=level,
        bands={b: bands[b] for b in S2_BANDS if b in bands},
        grid=grid,
        offset=OffsetDecision(0.0, "none"),
        scl=scl,
        mask=external,
        invalid_scl=tuple(invalid_scl),
        datetime=dt,
        facts=facts,
    )
    if offset is not None:
        decision = OffsetDecision(float(offset), "catalog", "set in the catalog / command line")
    elif decision is None:
        decision = infer_scene_offset(scene)
    return scene.with_options(offset=decision)
