"""Labels onto a scene grid: class-code rasters (nearest) or vector polygons (rasterised).

:func:`prepare_labels` checks a label source once (CRS, overlap with the scene, class codes)
and returns a picklable :class:`SceneLabels`; its :meth:`~SceneLabels.read` gives the
training indices of any window of the scene grid. Like the feature reads, the result for a
pixel never depends on the window it is read in:

- a raster on the scene grid is read directly; one in the same CRS at another resolution or
  alignment is sampled by nearest neighbour at target pixel centres (exact, in numpy); one in
  another CRS is sampled by nearest neighbour at target pixel centres transformed point by
  point with PROJ (GDAL's warper can flip near-tie pixels between windows);
- vector polygons are reprojected to the scene CRS once and burnt with the pixel-centre rule
  (later features win where polygons overlap).

Training index ``i`` is the position of a code in the dataset's class list; 255 marks pixels
to ignore: codes in ``ignore_codes``, the raster's nodata, pixels outside the raster or outside
every polygon, and (with ``valid``) invalid pixels. Codes outside the class map raise
:class:`~geoseg.errors.LabelError` naming them and the file.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from rasterio.windows import Window

from geoseg.errors import CRSMismatchError, LabelError, MissingFileError
from geoseg.io.grid import Grid
from geoseg.io.raster import GDAL_ENV, gdal_path, is_virtual, ogr_env, open_raster
from geoseg.io.resample import source_coords

__all__ = ["LabelMap", "SceneLabels", "prepare_labels", "IGNORE_INDEX"]

log = logging.getLogger(__name__)

IGNORE_INDEX = 255
_UNLABELLED = -1  # pixels with no code at all (outside the raster / polygons, nodata)


@dataclass(frozen=True)
class LabelMap:
    """Class codes in training-index order plus the codes that mean "unlabelled"."""

    codes: tuple[int, ...]
    ignore_codes: tuple[int, ...] = (0,)
    names: tuple[str, ...] = ()  # class names in the order of ``codes`` (vector labels may use them)

    def __post_init__(self) -> None:
        if len(self.codes) > 254:
            raise LabelError(f"{len(self.codes)} classes; at most 254 fit in uint8 labels with 255 = ignore")

    def lut(self) -> np.ndarray:
        """int16 lookup table over codes -1..65535 shifted by one: index, 255 ignore, -2 unknown."""
        table = np.full(65537, -2, dtype=np.int16)
        table[_UNLABELLED + 1] = IGNORE_INDEX
        for code in self.ignore_codes:
            table[code + 1] = IGNORE_INDEX
        for index, code in enumerate(self.codes):
            table[code + 1] = index
        return table

    def unknown(self, codes: Sequence[int] | np.ndarray) -> list[int]:
        """The codes that are neither classes nor ignore codes (sorted)."""
        known = set(self.codes) | set(self.ignore_codes) | {_UNLABELLED}
        return sorted(int(c) for c in np.unique(np.asarray(codes)) if int(c) not in known)

    def to_indices(self, codes: np.ndarray, source: str) -> np.ndarray:
        """Map an int code array to uint8 training indices (255 = ignore)."""
        if codes.size and (codes.min() < _UNLABELLED or codes.max() > 65535):
            raise LabelError(f"label codes {self.unknown(codes)[:10]} are not in the class map {list(self.codes)}",
                             path=source, hint="add them to the dataset's classes or to ignore_codes")
        mapped = self.lut()[codes.astype(np.int64) + 1]
        if (mapped == -2).any():
            bad = self.unknown(codes[mapped == -2])
            raise LabelError(f"label codes {bad} are not in the class map {list(self.codes)}", path=source,
                             hint="add them to the dataset's classes or to ignore_codes in the catalog")
        return mapped.astype(np.uint8)

    def codes_of(self, values: Sequence[object], source: str | Path, column: str) -> np.ndarray:
        """Class codes of a vector attribute holding class names (any case) or codes written as text.

        Raises:
            LabelError: values that are neither a class name nor an integer, listing the valid names.
        """
        by_name = {n.strip().casefold(): c for n, c in zip(self.names, self.codes, strict=False)}
        texts = np.array([str(v).strip() for v in values], dtype=object)
        uniq, inverse = np.unique(texts, return_inverse=True) if len(texts) else (texts, np.zeros(0, np.int64))
        found, unknown = [], []
        for text in uniq:
            if text.casefold() in by_name:
                found.append(by_name[text.casefold()])
            elif text.lstrip("+-").isdigit():
                found.append(int(text))
            else:
                found.append(-1)
                unknown.append(text)
        if unknown:
            valid = ", ".join(repr(n) for n in self.names)
            raise LabelError(f"class names {unknown[:10]} in column {column!r} are not in the class map",
                             path=source, hint=f"use one of {valid} (any case) or a class code" if valid
                             else f"use the class codes {list(self.codes)}")
        return np.asarray(found, dtype=np.int64)[inverse.reshape(-1)]


@dataclass(frozen=True)
class SceneLabels:
    """A checked label source for one scene grid; cheap to pickle (vector: WKB shapes)."""

    kind: Literal["raster", "vector"]
    path: str
    grid: Grid
    label_map: LabelMap
    source_grid: Grid | None = None  # raster: its own grid
    nodata: float | None = None
    shapes: tuple[tuple[bytes, int], ...] = ()  # vector: (WKB in the scene CRS, code)

    def read_codes(self, window: Window) -> np.ndarray:
        """int32 class codes of ``window`` (``-1`` where there is no label at all)."""
        if self.kind == "vector":
            return self._burn(window)
        return self._sample(window)

    def read(self, window: Window, valid: np.ndarray | None = None) -> np.ndarray:
        """uint8 training indices of ``window``; 255 where unlabelled or (given) invalid."""
        indices = self.label_map.to_indices(self.read_codes(window), self.path)
        if valid is not None:
            indices[~valid] = IGNORE_INDEX
        return indices

    def subset(self, bounds: tuple[float, float, float, float]) -> SceneLabels:
        """A copy holding only the polygons that intersect ``bounds`` (rasters: itself)."""
        return self.subsets([bounds])[0]

    def subsets(self, bounds: Sequence[tuple[float, float, float, float]]) -> list[SceneLabels]:
        """:meth:`subset` for many windows at once (one spatial index over the polygons)."""
        if self.kind != "vector" or not self.shapes:
            return [self] * len(bounds)
        import shapely

        tree = shapely.STRtree(shapely.from_wkb([wkb for wkb, _ in self.shapes]))
        out = []
        for box in bounds:
            hits = np.sort(tree.query(shapely.box(*box), predicate="intersects"))
            out.append(replace(self, shapes=tuple(self.shapes[i] for i in hits)))
        return out

    # -- raster -------------------------------------------------------------------------------
    def _sample(self, window: Window) -> np.ndarray:
        src = self.source_grid
        assert src is not None
        h, w = int(window.height), int(window.width)
        with rasterio.Env(**GDAL_ENV), open_raster(self.path) as ds:
            if src.same_as(self.grid):
                codes = ds.read(1, window=window).astype(np.int32)
            elif src.crs == self.grid.crs and _north_up(src) and _north_up(self.grid):
                codes = self._nearest(ds, window)
            else:
                codes = self._warp(ds, window)
        if self.nodata is not None and not np.isnan(self.nodata):
            codes[codes == int(self.nodata)] = _UNLABELLED
        assert codes.shape == (h, w)
        return codes

    def _nearest(self, ds, window: Window) -> np.ndarray:
        src = self.source_grid
        assert src is not None
        h, w = int(window.height), int(window.width)
        ys = source_coords(self.grid.affine, src.affine, int(window.row_off), h, axis=0)
        xs = source_coords(self.grid.affine, src.affine, int(window.col_off), w, axis=1)
        ri, ci = np.floor(ys + 0.5).astype(np.int64), np.floor(xs + 0.5).astype(np.int64)
        rin, cin = (ri >= 0) & (ri < src.height), (ci >= 0) & (ci < src.width)
        codes = np.full((h, w), _UNLABELLED, dtype=np.int32)
        if not rin.any() or not cin.any():
            return codes
        r_lo, r_hi = int(ri[rin].min()), int(ri[rin].max()) + 1
        c_lo, c_hi = int(ci[cin].min()), int(ci[cin].max()) + 1
        block = ds.read(1, window=Window(c_lo, r_lo, c_hi - c_lo, r_hi - r_lo)).astype(np.int32)
        codes[np.ix_(rin, cin)] = block[np.ix_(ri[rin] - r_lo, ci[cin] - c_lo)]
        return codes

    def _warp(self, ds, window: Window) -> np.ndarray:
        """Nearest neighbour across CRSs: each target pixel centre is transformed point by point.

        Centres are computed from absolute pixel indices and PROJ transforms each point on its
        own, so a pixel's label never depends on the window (GDAL's warper does not promise that).
        """
        src = self.source_grid
        assert src is not None
        h, w = int(window.height), int(window.width)
        a = self.grid.affine
        cols = np.arange(int(window.col_off), int(window.col_off) + w) + 0.5
        rows = np.arange(int(window.row_off), int(window.row_off) + h) + 0.5
        cc, rr = np.meshgrid(cols, rows)
        x = a.c + a.a * cc + a.b * rr
        y = a.f + a.d * cc + a.e * rr
        tx, ty = _transformer(self.grid.crs_wkt, src.crs_wkt).transform(x, y)
        inv = ~src.affine
        fc = inv.c + inv.a * tx + inv.b * ty
        fr = inv.f + inv.d * tx + inv.e * ty
        ok = np.isfinite(fc) & np.isfinite(fr)
        ci = np.where(ok, np.floor(np.where(ok, fc, -1)), -1).astype(np.int64)
        ri = np.where(ok, np.floor(np.where(ok, fr, -1)), -1).astype(np.int64)
        inside = (ri >= 0) & (ri < src.height) & (ci >= 0) & (ci < src.width)
        codes = np.full((h, w), _UNLABELLED, dtype=np.int32)
        if not inside.any():
            return codes
        r_lo, r_hi = int(ri[inside].min()), int(ri[inside].max()) + 1
        c_lo, c_hi = int(ci[inside].min()), int(ci[inside].max()) + 1
        block = ds.read(1, window=Window(c_lo, r_lo, c_hi - c_lo, r_hi - r_lo)).astype(np.int32)
        codes[inside] = block[ri[inside] - r_lo, ci[inside] - c_lo]
        return codes

    # -- vector -------------------------------------------------------------------------------
    def _burn(self, window: Window) -> np.ndarray:
        from rasterio.features import rasterize

        h, w = int(window.height), int(window.width)
        if not self.shapes:
            return np.full((h, w), _UNLABELLED, dtype=np.int32)
        import shapely

        geoms = shapely.from_wkb([wkb for wkb, _ in self.shapes])
        return rasterize(
            zip(geoms, (code for _, code in self.shapes), strict=True), out_shape=(h, w),
            transform=self.grid.window_transform(window), fill=_UNLABELLED, dtype="int32",
            all_touched=False,
        )


_local = threading.local()


def _transformer(src_wkt: str, dst_wkt: str):
    """A PROJ transformer per thread (pyproj transformers must not be shared between threads)."""
    from pyproj import Transformer

    cache = _local.__dict__.setdefault("transformers", {})
    key = (src_wkt, dst_wkt)
    if key not in cache:
        cache[key] = Transformer.from_crs(src_wkt, dst_wkt, always_xy=True)
    return cache[key]


def _north_up(grid: Grid) -> bool:
    a = grid.affine
    return a.b == 0 and a.d == 0 and a.a > 0 and a.e < 0


def prepare_labels(
    raster: str | Path | None,
    vector: str | Path | None,
    grid: Grid,
    label_map: LabelMap,
    *,
    column: str | None = None,
    layer: str | None = None,
) -> SceneLabels:
    """Check a label source against a scene grid and the class map (reads it once).

    Raises:
        MissingFileError: the file does not exist.
        CRSMismatchError: the raster has no CRS (and is not on the scene grid) or does not
            overlap the scene.
        LabelError: codes outside the class map, a missing attribute column, non-integer codes.
    """
    if (raster is None) == (vector is None):
        raise LabelError("give exactly one of a label raster or a label vector file")
    if raster is not None:
        return _prepare_raster(str(raster) if is_virtual(raster) else Path(raster), grid, label_map)
    assert vector is not None
    return _prepare_vector(str(vector) if is_virtual(vector) else Path(vector), grid, label_map, column, layer)


def _prepare_raster(path: str | Path, grid: Grid, label_map: LabelMap) -> SceneLabels:
    with open_raster(path) as ds:
        if ds.count < 1:
            raise LabelError("label raster has no band", path=path)
        if not np.issubdtype(np.dtype(ds.dtypes[0]), np.integer):
            raise LabelError(f"label raster holds {ds.dtypes[0]} values; class codes must be integers",
                             path=path, hint="write labels as an integer (e.g. uint8) raster")
        if ds.crs is None:
            if (ds.height, ds.width) == grid.shape and np.allclose(tuple(ds.transform)[:6], grid.transform):
                source = Grid(grid.crs_wkt, grid.transform, grid.width, grid.height)
            else:
                raise CRSMismatchError(
                    "label raster has no CRS and is not on the scene's grid, so it cannot be reprojected",
                    path=path, hint=f"assign its CRS (e.g. gdal_edit.py -a_srs {grid.crs.to_string()}) or "
                    "write it on the scene grid",
                )
        else:
            source = Grid.from_dataset(ds, path)
        _check_overlap(path, source, grid)
        nodata = ds.nodata
        seen = _codes_present(ds)
    if nodata is not None and not np.isnan(nodata):
        seen = seen[seen != int(nodata)]
    bad = label_map.unknown(seen)
    if bad:
        raise LabelError(f"label codes {bad} are not in the class map {list(label_map.codes)}", path=path,
                         hint="add them to the dataset's classes (or ignore_codes) in the catalog")
    return SceneLabels("raster", str(path), grid, label_map, source_grid=source, nodata=nodata)


def _codes_present(ds) -> np.ndarray:
    """Sorted distinct values of band 1, block by block (bincount for 8/16-bit unsigned)."""
    dtype = np.dtype(ds.dtypes[0])
    if dtype.kind == "u" and dtype.itemsize <= 2:
        counts = np.zeros(2 ** (8 * dtype.itemsize), dtype=np.int64)
        for _, window in ds.block_windows(1):
            counts += np.bincount(ds.read(1, window=window).ravel(), minlength=counts.size)
        return np.flatnonzero(counts)
    seen = np.zeros(0, dtype=np.int64)
    for _, window in ds.block_windows(1):
        seen = np.union1d(seen, np.unique(ds.read(1, window=window)))
    return seen


def _check_overlap(path: str | Path, source: Grid, grid: Grid) -> None:
    from rasterio.warp import transform_bounds

    try:
        left, bottom, right, top = transform_bounds(source.crs, grid.crs, *source.bounds)
    except Exception as err:  # PROJ cannot relate the two CRSs
        raise CRSMismatchError(f"cannot reproject labels from {source.crs.to_string()} to the scene's "
                               f"{grid.crs.to_string()} ({err})", path=path) from None
    s_left, s_bottom, s_right, s_top = grid.bounds
    if left >= s_right or right <= s_left or bottom >= s_top or top <= s_bottom:
        raise CRSMismatchError(
            f"labels ({source.crs.to_string()}, bounds {source.bounds}) do not overlap the scene "
            f"({grid.crs.to_string()}, bounds {grid.bounds})", path=path,
            hint="check that the labels belong to this scene and carry the right CRS",
        )


def _read_vector(path: str | Path, layer: str | None):
    """The GeoDataFrame of a local, ``/vsi`` or URL vector file (the latter read through GDAL's ``/vsi*``).

    Existence of a remote file is checked by opening it; errors name ``path`` as given.
    """
    import geopandas as gpd
    from pyogrio.errors import DataSourceError

    source = gdal_path(path) if isinstance(path, str) else path
    try:
        # pyogrio repeats GDAL's HTTP errors as RuntimeWarnings: the error below says it once
        with ogr_env(), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return gpd.read_file(source, layer=layer, engine="pyogrio")
    except Exception as err:
        msg = (str(err).splitlines() or [type(err).__name__])[0].replace(str(source), str(path))
        if isinstance(path, str) and isinstance(err, DataSourceError) and "not recognized" not in msg:
            raise MissingFileError(f"cannot open it: it does not exist or cannot be reached ({msg[:160]})",
                                   path=path, hint="check labels.vector in the catalog and the network; private "
                                   "buckets need GDAL's credential variables (AWS_*, GS_*/GOOGLE_*, AZURE_*)") from None
        raise LabelError(f"cannot read vector labels ({msg[:120]})", path=path,
                         hint="check that it is a vector file GDAL reads (GeoPackage, Shapefile, GeoJSON...) and labels.layer") from None


def _prepare_vector(path: str | Path, grid: Grid, label_map: LabelMap, column: str | None,
                    layer: str | None) -> SceneLabels:
    if isinstance(path, Path) and not path.exists():
        raise MissingFileError("label file does not exist", path=path, hint="check labels.vector in the catalog")
    if not column:
        raise LabelError("vector labels need the attribute column holding class codes", path=path,
                         hint="set labels.column in the catalog")
    frame = _read_vector(path, layer)
    if column not in frame.columns:
        others = [c for c in frame.columns if c != frame.geometry.name]
        raise LabelError(f"no attribute {column!r} (columns: {', '.join(others)})", path=path,
                         hint="set labels.column to the attribute holding class codes")
    if frame.crs is None:
        raise CRSMismatchError("vector labels have no CRS, so they cannot be placed on the scene", path=path,
                               hint="assign the CRS (e.g. with ogr2ogr -a_srs) and try again")
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
    values = frame[column]
    if values.isna().any():
        raise LabelError(f"attribute {column!r} holds missing values", path=path,
                         hint="every polygon needs a class code or class name")
    if values.dtype.kind in "OSU" or str(values.dtype) == "string":  # class names (or codes written as text)
        codes = label_map.codes_of(values.tolist(), path, column)
    elif values.dtype.kind not in "iufb" or not np.all(np.mod(values.to_numpy(dtype=float), 1) == 0):
        raise LabelError(f"attribute {column!r} holds non-integer values", path=path,
                         hint="every polygon needs an integer class code or a class name")
    else:
        codes = values.to_numpy(dtype=np.int64)
    bad = label_map.unknown(codes)
    if bad:
        raise LabelError(f"label codes {bad} in column {column!r} are not in the class map "
                         f"{list(label_map.codes)}", path=path,
                         hint="add them to the dataset's classes (or ignore_codes) in the catalog")
    frame = _repair(frame, path)
    source_crs, source_bounds = frame.crs, tuple(round(float(v), 6) for v in frame.total_bounds)
    frame = frame.to_crs(grid.crs)
    _check_vector_overlap(path, frame, source_crs, source_bounds, grid)
    shapes = tuple((geom.wkb, int(code)) for geom, code in zip(frame.geometry, codes, strict=True))
    return SceneLabels("vector", str(path), grid, label_map, shapes=shapes)


def _repair(frame, path: str | Path):
    """Invalid polygons (a bow-tie, a self-touching ring) repaired with ``make_valid``, with a warning.

    GDAL would burn such a polygon by its own scanline rule; ``make_valid`` (structure method,
    collapsed parts dropped) gives the polygons the outline describes, so what is burnt is what
    QGIS shows after "Fix geometries".
    """
    import geopandas as gpd
    import shapely

    invalid = ~shapely.is_valid(frame.geometry.to_numpy())
    if not invalid.any():
        return frame
    frame = frame.copy()
    geoms = frame.geometry.to_numpy().copy()
    geoms[invalid] = shapely.make_valid(geoms[invalid], method="structure", keep_collapsed=False)
    frame[frame.geometry.name] = gpd.GeoSeries(geoms, index=frame.index, crs=frame.crs)
    log.warning("%s: repaired %d invalid label geometr%s (e.g. self-intersecting polygons) with make_valid; "
                "check them in QGIS (Fix geometries)", path, int(invalid.sum()), "y" if invalid.sum() == 1 else "ies")
    return frame


def _check_vector_overlap(path: str | Path, frame, source_crs, source_bounds, grid: Grid) -> None:
    """Refuse vector labels none of whose polygons touch the scene (as for a label raster)."""
    import shapely

    scene = shapely.box(*grid.bounds)
    if len(frame) and shapely.intersects(frame.geometry.to_numpy(), scene).any():
        return
    what = "hold no polygon" if not len(frame) else (
        f"({source_crs.to_string()}, bounds {source_bounds}) do not overlap the scene "
        f"({grid.crs.to_string()}, bounds {grid.bounds})")
    raise CRSMismatchError(f"vector labels {what}", path=path,
                           hint="check that the labels belong to this scene and carry the right CRS")
