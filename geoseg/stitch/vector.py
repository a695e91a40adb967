"""Class polygons from a class raster: ``rasterio.features.shapes`` per strip, dissolved per class.

The raster is read in strips of rows, so memory is bounded by the strip, not the scene.
``shapes`` already returns maximal connected regions inside a strip; only polygons that touch
an internal strip border can continue in the next strip, so only those are unioned
(``shapely.union_all``). Each class then becomes one MultiPolygon.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.features import shapes
from rasterio.windows import Window

from geoseg.config.catalog import ClassDef
from geoseg.utils.outputs import SIGNATURE_TAG

__all__ = ["polygonize_classes", "STRIP_ROWS"]

STRIP_ROWS = 2048


def polygonize_classes(raster: str | Path, out: str | Path, classes: Sequence[ClassDef], *, layer: str = "land_cover",
                       strip_rows: int = STRIP_ROWS) -> int:
    """Write one (multi)polygon per class present in ``raster`` to the GeoPackage ``out``.

    Columns: ``code``, ``name``, ``color``, ``pixels``, ``area_ha``. Nodata (0) and codes
    outside ``classes`` are left out; polygons use 4-connectivity.

    Returns:
        The number of features written (classes present).
    """
    import geopandas as gpd
    import shapely

    by_code = {c.code: c for c in classes}
    final: dict[int, list] = {}
    border: dict[int, list] = {}
    counts: dict[int, int] = {}
    with rasterio.open(raster) as ds:
        crs = ds.crs
        pixel_ha = abs(ds.transform.a * ds.transform.e) / 10_000
        for row in range(0, ds.height, strip_rows):
            window = Window(0, row, ds.width, min(strip_rows, ds.height - row))
            data = ds.read(1, window=window)
            mask = np.isin(data, list(by_code))
            for code, n in zip(*np.unique(data[mask], return_counts=True), strict=True):
                counts[int(code)] = counts.get(int(code), 0) + int(n)
            transform = ds.window_transform(window)
            pieces = list(shapes(data, mask=mask, connectivity=4, transform=transform))
            if not pieces:
                continue
            geoms = np.array([shapely.geometry.shape(g) for g, _ in pieces], dtype=object)
            values = np.array([int(v) for _, v in pieces])
            # y extent of each polygon in rows of this strip: touching a top/bottom internal border?
            ymin, ymax = shapely.bounds(geoms)[:, 1], shapely.bounds(geoms)[:, 3]
            top_y, bottom_y = transform.f, transform.f + transform.e * window.height
            touches = ((row > 0) & np.isclose(np.maximum(ymax, ymin), max(top_y, bottom_y))) | (
                (row + window.height < ds.height) & np.isclose(np.minimum(ymax, ymin), min(top_y, bottom_y)))
            for code in np.unique(values):
                sel = values == code
                final.setdefault(int(code), []).extend(geoms[sel & ~touches])
                border.setdefault(int(code), []).extend(geoms[sel & touches])
    codes, geometries = [], []
    for code in sorted(set(final) | set(border)):
        parts = list(final.get(code, []))
        if border.get(code):
            merged = shapely.union_all(np.array(border[code], dtype=object))
            parts.extend(shapely.get_parts(merged))
        codes.append(code)
        geometries.append(shapely.multipolygons(parts))
    frame = gpd.GeoDataFrame(
        {
            "code": np.array(codes, dtype=np.int32),
            "name": np.array([by_code[c].name for c in codes], dtype=object),
            "color": np.array([by_code[c].color for c in codes], dtype=object),
            "pixels": np.array([counts[c] for c in codes], dtype=np.int64),
            "area_ha": np.array([counts[c] * pixel_ha for c in codes], dtype=np.float64),
        },
        geometry=gpd.GeoSeries(geometries, crs=crs), crs=crs,
    )
    frame.to_file(out, driver="GPKG", layer=layer, metadata={SIGNATURE_TAG: "class polygons"})
    return len(frame)
