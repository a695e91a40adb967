"""Class polygons from a class raster: ``rasterio.features.shapes`` per strip, dissolved per class.

The raster is read in strips of rows, so memory is bounded by the strip, not the scene.
``shapes`` already returns maximal connected regions inside a strip; only polygons that touch
an internal strip border can continue in the next strip, so only those are unioned
(``shapely.union_all``). Each class then becomes one MultiPolygon.

The GeoPackage (version 1.2, which QGIS 3.22's GDAL reads without a warning) carries its own
style in QGIS's ``layer_styles`` table: a categorized renderer on ``code`` with the class
colours and names, as the default style, so QGIS shows it styled when it is opened.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.features import shapes
from rasterio.windows import Window

from geoseg.config.catalog import ClassDef
from geoseg.utils.atomic import atomic_path
from geoseg.utils.outputs import SIGNATURE_TAG
from geoseg.utils.qgis_style import categorized_qml, categorized_sld

__all__ = ["polygonize_classes", "layer_style_row", "STRIP_ROWS", "GPKG_VERSION", "STYLE_TABLE", "GEOMETRY_COLUMN"]

STRIP_ROWS = 2048
GPKG_VERSION = "1.2"  # GDAL writes 1.4 by default, which QGIS 3.22's GDAL 3.6 only partially supports
STYLE_TABLE = "layer_styles"  # where QGIS keeps styles inside a GeoPackage
GEOMETRY_COLUMN = "geom"


def layer_style_row(layer: str, classes: Sequence[ClassDef]) -> dict[str, object]:
    """The ``layer_styles`` row (QGIS's columns) making the class colours ``layer``'s default style."""
    import pandas as pd

    categories = [(c.code, c.name, c.color) for c in classes]
    return {
        "f_table_catalog": "", "f_table_schema": "", "f_table_name": layer, "f_geometry_column": GEOMETRY_COLUMN,
        "styleName": layer, "styleQML": categorized_qml("code", categories),
        "styleSLD": categorized_sld(layer, "code", categories), "useAsDefault": True,
        "description": "geoseg: class colours and names", "owner": "", "ui": None,
        "update_time": pd.Timestamp.now(tz="UTC").floor("ms"),
    }


def polygonize_classes(raster: str | Path, out: str | Path, classes: Sequence[ClassDef], *, layer: str = "land_cover",
                       strip_rows: int = STRIP_ROWS) -> int:
    """Write one (multi)polygon per class present in ``raster`` to the GeoPackage ``out``.

    Columns: ``code``, ``name``, ``color``, ``pixels``, ``area_ha``. Nodata (0) and codes
    outside ``classes`` are left out; polygons use 4-connectivity. The layer's default QGIS
    style (class colours and names) goes into the ``layer_styles`` table of the same file,
    which is written under a temporary name and renamed when complete.

    Returns:
        The number of features written (classes present).
    """
    import geopandas as gpd
    import pandas as pd
    import pyogrio
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
    styles = pd.DataFrame([layer_style_row(layer, classes)])
    with atomic_path(out) as tmp:
        pyogrio.write_dataframe(frame, tmp, driver="GPKG", layer=layer, metadata={SIGNATURE_TAG: "class polygons"},
                                dataset_options={"VERSION": GPKG_VERSION},
                                layer_options={"GEOMETRY_NAME": GEOMETRY_COLUMN})
        pyogrio.write_dataframe(styles, tmp, driver="GPKG", layer=STYLE_TABLE, layer_options={"FID": "id"})
    return len(frame)
