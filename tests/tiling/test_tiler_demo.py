"""The demo scene tiled into a CubeStore: cubes, labels, footprints, index, stats, split, export."""

from __future__ import annotations

import itertools
import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window
from shapely.geometry import box

from geoseg.cli.main import main
from geoseg.config import dataset_scenes, load_catalog
from geoseg.features import get_recipe, read_features
from geoseg.tiling import CubeStore, export_npy, store_info


@pytest.fixture(scope="module")
def store(demo_store) -> CubeStore:
    return CubeStore.open(demo_store)


@pytest.fixture(scope="module")
def scene(demo_catalog):
    return dataset_scenes(load_catalog(demo_catalog), "demo480")[0].scene


def test_every_cube_equals_read_features_bit_for_bit(store: CubeStore, scene) -> None:
    recipe = get_recipe("s2_24")
    size = store.cube_size
    assert len(store) > 40 and store.num_channels == 24
    for row in store.index.itertuples():
        cube = store.read_cube(row.cube_id)
        assert cube.shape == (24, size, size) and cube.dtype == np.float32
        window = Window(row.col_off, row.row_off, row.width, row.height)
        features, valid = read_features(scene, window, recipe)
        np.testing.assert_array_equal(cube[:, : row.height, : row.width], features)
        assert (cube[:, ~valid] == 0).all()  # masked pixels: 0 in all 24 channels
        assert valid.mean() == pytest.approx(row.valid_fraction) and row.valid_fraction >= 0.2


def test_labels_are_255_exactly_where_invalid(store: CubeStore, scene, demo480) -> None:
    with rasterio.open(demo480.labels) as ds:
        codes = ds.read(1)
    for row in store.index.itertuples():
        label = store.read_label(row.cube_id)
        window = Window(row.col_off, row.row_off, row.width, row.height)
        _, valid = read_features(scene, window, "s2_24")
        np.testing.assert_array_equal(label == 255, ~valid)  # demo codes 1..6 cover every pixel
        sub = codes[row.row_off : row.row_off + row.height, row.col_off : row.col_off + row.width]
        np.testing.assert_array_equal(label[valid], sub[valid] - 1)  # index i = code i + 1
        for index, cls in enumerate(store.classes):
            assert getattr(row, f"count_{cls.code}") == int((label == index).sum())


def test_footprints_and_transforms_follow_the_affine(store: CubeStore, scene) -> None:
    index = store.index
    aff = scene.grid.affine
    assert index.crs.to_epsg() == 32633 and set(index["crs"]) == {"EPSG:32633"}
    for row in index.itertuples():
        expected = aff @ Affine.translation(row.col_off, row.row_off)
        assert tuple(row.transform) == pytest.approx(tuple(expected)[:6], abs=0)
        x0, y0 = expected @ (0, 0)
        x1, y1 = expected @ (row.width, row.height)
        assert row.geometry.equals(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
    assert index["cube_id"].tolist() == list(range(len(store)))


def test_edge_cubes_exist_and_the_scene_is_covered(store: CubeStore, scene, demo_store) -> None:
    index = store.index
    h, w = scene.grid.shape
    assert (index.row_off + index.height).max() == h and (index.col_off + index.width).max() == w
    manifest = json.loads((demo_store / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["num_cubes"] == len(store)
    assert manifest["num_candidates"] == 81  # 9 × 9 windows on 480 px (see test_axis_slots_numbers)
    assert sum(manifest["skipped"].values()) == 81 - len(store)
    # candidate windows at the last row/column start at 416 (= 480 - 64) and are kept when valid enough
    assert 416 in set(index.col_off) or 416 in set(index.row_off)


def test_overlapping_cubes_share_a_split_and_val_is_not_empty(store: CubeStore) -> None:
    index = store.index
    assert set(index.split) == {"train", "val", "test"}
    assert len(store.ids("val")) > 0
    assert sorted(np.concatenate([store.ids(s) for s in ("train", "val", "test")]).tolist()) == list(range(len(store)))
    for a, b in itertools.combinations(index.itertuples(), 2):
        if a.geometry.intersection(b.geometry).area > 0:
            assert a.split == b.split, (a.cube_id, b.cube_id)


def test_stats_are_valid_pixel_moments_of_the_cubes(store: CubeStore) -> None:
    cubes = store.read_cubes(store.ids())
    labels = store.read_labels(store.ids())
    valid = labels != 255  # (no ignore codes, full label cover) → exactly the valid pixels
    values = np.moveaxis(cubes, 1, 0)[:, valid].astype(np.float64)
    assert store.stats["count"] == values.shape[1]
    np.testing.assert_allclose(store.mean, values.mean(axis=1), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(store.std, values.std(axis=1), rtol=1e-8, atol=1e-12)
    train = store.ids("train")
    tv = np.moveaxis(store.read_cubes(train), 1, 0)[:, store.read_labels(train) != 255].astype(np.float64)
    np.testing.assert_allclose(store.stats["by_split"]["train"]["mean"], tv.mean(axis=1), rtol=1e-10, atol=1e-12)
    counts = np.bincount(labels[valid], minlength=6)
    assert store.stats["class_counts"] == {str(c.code): int(n) for c, n in zip(store.classes, counts, strict=True)}
    assert [c.code for c in store.classes] == [1, 2, 3, 4, 5, 6]
    assert store.recipe.name == "s2_24" and store.channel_names[11] == "NDWI"


def test_geopackage_index_opens_as_a_layer(demo_store, store: CubeStore) -> None:
    layer = gpd.read_file(demo_store / "index.gpkg", layer="cubes")
    assert len(layer) == len(store) and layer.crs.to_epsg() == 32633
    assert json.loads(layer["transform"][0]) == list(store.index["transform"][0])
    assert layer.geometry.equals(store.index.geometry)


def test_export_npy_and_info(demo_store, store: CubeStore, tmp_path, capsys) -> None:
    out = export_npy(demo_store, tmp_path / "val.npy", with_labels=True, split="val")
    arr = np.load(out)
    ids = store.ids("val")
    assert arr.shape == (len(ids), 25, 64, 64) and arr.dtype == np.float32
    np.testing.assert_array_equal(arr[0, :24], store.read_cube(ids[0]))
    np.testing.assert_array_equal(arr[-1, 24], store.read_label(ids[-1]).astype(np.float32))
    with pytest.raises(SystemExit) as exit_info:
        main(["cubes", "export", str(demo_store), "--out", str(tmp_path / "all.npy")])
    assert exit_info.value.code == 0
    assert np.load(tmp_path / "all.npy", mmap_mode="r").shape == (len(store), 24, 64, 64)
    lines = store_info(demo_store)
    assert any("cubes of 64 px" in line for line in lines)
    with pytest.raises(SystemExit) as exit_info:
        main(["cubes", "info", str(demo_store)])
    assert exit_info.value.code == 0 and "water" in capsys.readouterr().out
