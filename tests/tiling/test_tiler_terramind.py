"""Five real samples in five UTM zones with LULC labels → one store, CRS and transforms per cube."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import CRS as ProjCRS
from shapely.geometry import box

from geoseg.tiling import CubeStore, tile_dataset
from tests.conftest import REPO, shared


@pytest.fixture(scope="module")
def store(client, tmp_path_factory) -> CubeStore:
    shared("terramind_examples")
    out = tmp_path_factory.mktemp("terramind") / "store"
    tile_dataset(REPO / "data_catalog.yaml", "terramind", out, cube_size=128, overlap=32, min_valid=0.0,
                 client=client, progress=False)
    return CubeStore.open(out)


def test_one_store_with_each_cubes_crs_and_transform(store: CubeStore) -> None:
    root = shared("terramind_examples")
    index = store.index
    assert len(store) == 5 * 4  # 224 px with 128 px cubes, stride 96: offsets 0 and 96
    assert sorted(index.col_off.unique()) == [0, 96] and not index.padded.any()
    assert index.crs.to_epsg() == 4326  # several CRSs: footprints in WGS 84, native CRS per row
    assert index["crs"].nunique() == 5
    for row in index.itertuples():
        with rasterio.open(root / "S2L2A" / f"{row.scene_id}.tif") as ds:
            assert row.crs == f"EPSG:{ds.crs.to_epsg()}"
            expected = ds.transform @ Affine.translation(row.col_off, row.row_off)
        assert tuple(row.transform) == pytest.approx(tuple(expected)[:6], abs=1e-6)
        native = gpd.GeoSeries([row.geometry], crs=4326).to_crs(ProjCRS.from_user_input(row.crs)).iloc[0]
        x0, y0 = expected @ (0, 0)
        x1, y1 = expected @ (128, 128)
        cube_box = box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        assert native.symmetric_difference(cube_box).area < 1e-3 * cube_box.area
    gpkg = gpd.read_file(store.path / "index.gpkg")
    assert gpkg.crs.to_epsg() == 4326 and sorted(gpkg["crs"].unique()) == sorted(index["crs"].unique())


def test_labels_follow_the_lulc_rasters(store: CubeStore) -> None:
    root = shared("terramind_examples")
    codes = [c.code for c in store.classes]
    assert codes == list(range(1, 10))
    for row in store.index.itertuples():
        with rasterio.open(root / "LULC" / f"{row.scene_id}.tif") as ds:
            lulc = ds.read(1)[row.row_off : row.row_off + 128, row.col_off : row.col_off + 128]
        label = store.read_label(row.cube_id)
        cube = store.read_cube(row.cube_id)
        valid = cube[:11].any(axis=0)
        expected = np.where(valid & (lulc != 0), lulc.astype(np.int16) - 1, 255)
        np.testing.assert_array_equal(label, expected)
    assert sum(store.stats["class_counts"].values()) == sum(
        int((store.read_label(i) != 255).sum()) for i in store.ids())
