"""The CubeStore format: chunk encodings equal zarr's, reader errors, pickling."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from geoseg.errors import GeosegError, MissingFileError
from geoseg.tiling import CubeStore, IncompleteStoreError
from geoseg.tiling.store import chunk_path, create_arrays, open_arrays, write_chunk


def test_direct_chunk_writes_equal_zarr_writes(tmp_path) -> None:
    rng = np.random.default_rng(0)
    cube = rng.random((24, 32, 32), dtype=np.float32)
    label = rng.integers(0, 7, (32, 32)).astype(np.uint8)
    label[:5] = 255
    via_zarr = create_arrays(tmp_path / "a.zarr", 3, 24, 32, labels=True)
    via_zarr[0][1] = cube
    via_zarr[1][1] = label
    create_arrays(tmp_path / "b.zarr", 3, 24, 32, labels=True)
    write_chunk(tmp_path / "b.zarr", "cubes", 1, cube)
    write_chunk(tmp_path / "b.zarr", "labels", 1, label)
    for name, ndim in (("cubes", 4), ("labels", 3)):
        a = chunk_path(tmp_path / "a.zarr", name, 1, ndim).read_bytes()
        assert a == chunk_path(tmp_path / "b.zarr", name, 1, ndim).read_bytes()
    cubes, labels = open_arrays(tmp_path / "b.zarr")
    np.testing.assert_array_equal(cubes[1], cube)
    np.testing.assert_array_equal(labels[1], label)
    assert np.isnan(cubes[2]).all() and (labels[0] == 255).all()  # unwritten chunks: fill values (cubes: NaN)
    assert cubes.chunks == (1, 24, 32, 32) and labels.chunks == (1, 32, 32)
    assert json.loads((tmp_path / "b.zarr" / "zarr.json").read_text())["zarr_format"] == 3


def test_reader_refuses_missing_and_incomplete_stores(demo_store, tmp_path) -> None:
    with pytest.raises(MissingFileError, match="no CubeStore here.*geoseg tile"):
        CubeStore.open(tmp_path / "nothing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "manifest.json").write_text(json.dumps({"complete": False}))
    with pytest.raises(IncompleteStoreError, match="incomplete.*--overwrite"):
        CubeStore.open(tmp_path / "half")
    store = CubeStore.open(demo_store)
    with pytest.raises(IndexError, match="out of range"):
        store.read_cube(len(store))
    with pytest.raises(GeosegError, match="unknown split 'training'"):
        store.ids("training")  # type: ignore[arg-type]
    clone = pickle.loads(pickle.dumps(store))  # e.g. into DataLoader worker processes
    np.testing.assert_array_equal(clone.read_cube(3), store.read_cube(3))
    assert clone.has_labels and clone.cube_size == 64 and len(clone) == len(store)
    assert store.manifest["recipe"]["name"] == "s2_24" and store.manifest["classes"][0]["index"] == 0
