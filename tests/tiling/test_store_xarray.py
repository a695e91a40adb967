"""The CubeStore's zarr group opens as a self-describing xarray Dataset; old stores still open."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from geoseg.tiling import CubeStore
from geoseg.tiling.store import ARRAYS_NAME
from geoseg.tiling.store_metadata import describe_arrays

xr = pytest.importorskip("xarray")


@pytest.fixture(autouse=True)
def _local_dask():
    """Compute in this process, not on the tiler tests' cluster (the session's default client)."""
    import dask

    with dask.config.set(scheduler="synchronous"):
        yield


def _open(store: Path):
    with warnings.catch_warnings():  # consolidated metadata: no "falling back" warning
        warnings.simplefilter("error", RuntimeWarning)
        return xr.open_zarr(store / ARRAYS_NAME)


def test_open_zarr_gives_the_store_with_names_values_classes_and_georeferencing(demo_store):
    import dask.array as da

    store = CubeStore.open(demo_store)
    ds = _open(demo_store)
    n, c, size = len(store), store.num_channels, store.cube_size

    assert ds.cubes.dims == ("cube", "channel", "y", "x")
    assert ds.labels.dims == ("cube", "y", "x")
    assert ds.sizes == {"cube": n, "channel": c, "y": size, "x": size, "affine": 6}
    assert [str(v) for v in ds.channel.values] == store.channel_names == ds.attrs["channel_names"]
    np.testing.assert_array_equal(ds.cube.values, store.ids())

    for i in (0, n // 2, n - 1):
        np.testing.assert_array_equal(ds.cubes.sel(cube=i).values, store.read_cube(i))
        np.testing.assert_array_equal(ds.labels.sel(cube=i).values, store.read_label(i))
    assert ds.labels.dtype == np.uint8  # 255 stays "ignore", not a NaN mask
    assert (ds.labels.values == 255).any()
    ndvi = store.channel_names.index("NDVI")  # channels are selectable by name
    np.testing.assert_array_equal(ds.cubes.sel(channel="NDVI", cube=0).values, store.read_cube(0)[ndvi])

    classes = store.classes
    assert ds.labels.attrs["flag_values"] == list(range(len(classes)))
    assert ds.labels.attrs["flag_meanings"].split() == [k.name.replace(" ", "_") for k in classes]
    assert [(k["code"], k["name"], k["color"]) for k in ds.attrs["classes"]] == [
        (k.code, k.name, k.color) for k in classes]
    assert ds.labels.attrs["ignore_index"] == 255

    index = store.index
    assert [str(s) for s in ds.split.values] == list(index["split"])
    assert ds.sel(cube=ds.split == "train").sizes["cube"] == len(store.ids("train"))
    for i in (0, n - 1):
        transform = Affine(*ds.transform.sel(cube=i).values)
        assert transform == Affine(*index["transform"].iloc[i])
        cube = ds.cubes.sel(cube=i)  # one cube keeps its CRS and pixel-centre coordinates
        assert str(cube.crs.values) == index["crs"].iloc[i]
        row, col = 5, 7
        assert transform @ (col + 0.5, row + 0.5) == pytest.approx((float(cube.xc[col]), float(cube.yc[row])))
    assert ds.transform.sel(affine="a").values == pytest.approx(10.0)

    assert isinstance(ds.cubes.data, da.Array)
    assert ds.cubes.data.chunks == ((1,) * n, (c,), (size,), (size,))
    assert ds.labels.data.chunks == ((1,) * n, (size,), (size,))
    np.testing.assert_array_equal(ds.cubes.data[n - 2:].compute(), store.read_cubes([n - 2, n - 1]))


def _old_copy(src: Path, dst: Path) -> Path:
    """``src`` as written before the arrays were described: only cubes and labels, no names."""
    def link_chunks(a: str, b: str) -> None:  # chunk files shared, metadata copied (it is rewritten)
        os.link(a, b) if Path(a).name.startswith("c.") else shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link_chunks)
    arrays = dst / ARRAYS_NAME
    for entry in arrays.iterdir():
        if entry.is_dir() and entry.name not in ("cubes", "labels"):
            shutil.rmtree(entry)
    (arrays / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    for name in ("cubes", "labels"):
        meta = json.loads((arrays / name / "zarr.json").read_text())
        meta.pop("dimension_names")
        meta["attributes"] = {}
        (arrays / name / "zarr.json").write_text(json.dumps(meta))
    return dst


def test_old_store_opens_with_cubestore_and_can_be_described(demo_store, tmp_path):
    old = _old_copy(demo_store, tmp_path / "old")
    store, reference = CubeStore.open(old), CubeStore.open(demo_store)
    np.testing.assert_array_equal(store.read_cube(3), reference.read_cube(3))
    np.testing.assert_array_equal(store.read_label(3), reference.read_label(3))

    # arrays created without dimension names (a run resumed across the upgrade) get them
    describe_arrays(old / ARRAYS_NAME, store.manifest, store.index)
    ds = _open(old)
    assert ds.cubes.dims == ("cube", "channel", "y", "x")
    np.testing.assert_array_equal(ds.transform.values, _open(demo_store).transform.values)
    np.testing.assert_array_equal(ds.cubes.sel(cube=3).values, reference.read_cube(3))
    CubeStore.open(old)  # still verifies: chunks and their inventory untouched


def test_unlabelled_store_in_several_crs(tmp_path):
    import pandas as pd

    from geoseg.tiling.store import create_arrays

    root = tmp_path / ARRAYS_NAME
    cubes, _ = create_arrays(root, 2, 3, 8, labels=False)
    cubes[:] = np.arange(2 * 3 * 8 * 8, dtype=np.float32).reshape(2, 3, 8, 8)
    manifest = {"channel_names": ["B02", "B03", "NDVI"], "classes": [], "cube_size": 8, "dataset": "x",
                "recipe": {"name": "r"}}
    index = pd.DataFrame({"cube_id": [0, 1], "split": ["train", "val"], "scene_id": ["s32", "s33"],
                          "crs": ["EPSG:32632", "EPSG:32633"],
                          "transform": [[10, 0, 500000, 0, -10, 5e6], [20, 0, 100, 0, -20, 200]]})
    describe_arrays(root, manifest, index)
    ds = _open(tmp_path)
    assert set(ds.data_vars) == {"cubes"}
    assert [str(v) for v in ds.crs.values] == ["EPSG:32632", "EPSG:32633"]
    np.testing.assert_array_equal(ds.xc.values[1, :2], [110, 130])  # each cube in its own grid
    np.testing.assert_array_equal(ds.yc.values[0, :2], [5e6 - 5, 5e6 - 15])
    np.testing.assert_array_equal(ds.cubes.values, cubes[:])
