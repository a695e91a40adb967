"""An (N, C+1, H, W) array (seed 000's form, `geoseg cubes export --with-labels`) read as a CubeStore."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import yaml

from geoseg.data import CubeDataModule
from geoseg.data.arrays import ArrayStore, is_array_file, sidecar_path
from geoseg.errors import ConfigError, CorruptStoreError, LabelError, MissingFileError
from geoseg.tiling import CubeStore
from geoseg.tiling.export import export_npy


def _array(n: int = 10, channels: int = 24, size: int = 16, classes: int = 3, seed: int = 0) -> np.ndarray:
    """Random cubes with an invalid corner (first 11 channels 0) and a label plane of class indices."""
    rng = np.random.default_rng(seed)
    arr = rng.uniform(0.01, 0.5, (n, channels + 1, size, size)).astype(np.float32)
    arr[:, :11, :3, :3] = 0  # invalid pixels: the mask channels are 0 (the other channels are not)
    arr[:, -1] = rng.integers(0, classes, (n, size, size))
    return arr


def _save(tmp_path, arr: np.ndarray, name: str = "cubes.npy", meta: dict | None = None, **npz):
    path = tmp_path / name
    if name.endswith(".npz"):
        np.savez(path, **npz)
    else:
        np.save(path, arr)
    if meta is not None:
        sidecar_path(path).write_text(yaml.safe_dump(meta))
    return path


def test_an_exported_store_reads_back_as_the_store(data_cubes, tmp_path) -> None:
    store = CubeStore.open(data_cubes)
    path = export_npy(store, tmp_path / "cubes.npy", with_labels=True)
    inferred = ArrayStore.open(path)  # classes: one per label value up to the highest present
    highest = max(int(k) for k, v in store.stats["class_counts"].items() if v)
    assert [c.code for c in inferred.classes] == list(range(1, highest + 1))
    sidecar_path(path).write_text(yaml.safe_dump({"classes": [c.model_dump() for c in store.classes]}))
    arrays = ArrayStore.open(path)
    assert is_array_file(path) and len(arrays) == len(store) and arrays.cube_size == store.cube_size
    assert arrays.channel_names == store.channel_names and arrays.recipe == store.recipe
    assert arrays.classes == store.classes
    np.testing.assert_allclose(arrays.stats["mean"], store.stats["mean"], rtol=1e-9)
    np.testing.assert_allclose(arrays.stats["std"], store.stats["std"], rtol=1e-6)  # float32 deviations
    assert arrays.stats["class_counts"] == store.stats["class_counts"]
    for i in range(len(store)):
        assert np.array_equal(arrays.read_cube(i), store.read_cube(i))
        assert np.array_equal(arrays.read_label(i), store.read_label(i))
    # the store's own split, given as an .npz split array, gives the store's training statistics
    split = np.asarray(store.index["split"], dtype=str)
    npz = _save(tmp_path, None, "cubes.npz", cubes=np.load(path), split=split)
    given = ArrayStore.open(npz)
    assert list(given.ids("val")) == list(store.ids("val")) and given.manifest["split"] == {"rule": "given"}
    np.testing.assert_allclose(given.stats["by_split"]["train"]["mean"], store.stats["by_split"]["train"]["mean"],
                               rtol=1e-9)


def test_the_random_split_is_seeded_and_documented(tmp_path) -> None:
    path = _save(tmp_path, _array(n=20))
    a, b = ArrayStore.open(path), ArrayStore.open(path)
    assert list(a.ids("val")) == list(b.ids("val")) and len(a.ids("val")) == 4 and len(a.ids("test")) == 0
    assert a.manifest["split"] == {"rule": "random", "val_fraction": 0.2, "test_fraction": 0.0, "seed": 0}
    expected = np.sort(np.random.default_rng(0).permutation(20)[:4])
    assert list(a.ids("val")) == list(expected)
    sidecar_path(path).write_text(yaml.safe_dump({"val_fraction": 0.1, "test_fraction": 0.25, "split_seed": 3}))
    c = ArrayStore.open(path)
    assert (len(c.ids("train")), len(c.ids("val")), len(c.ids("test"))) == (13, 2, 5)
    sidecar_path(path).write_text(yaml.safe_dump({"split": ["val", "test"] + ["train"] * 18}))
    assert list(ArrayStore.open(path).ids("test")) == [1]
    sidecar_path(path).write_text(yaml.safe_dump({"split": [1, 2] + [0] * 18}))
    assert list(ArrayStore.open(path).ids("val")) == [0]


def test_recipe_and_classes_default_from_the_array_or_come_from_its_yaml(tmp_path) -> None:
    store = ArrayStore.open(_save(tmp_path, _array(classes=3)))
    assert store.recipe.name == "s2_24"
    assert [(c.code, c.name) for c in store.classes] == [(1, "class 0"), (2, "class 1"), (3, "class 2")]
    ten = ArrayStore.open(_save(tmp_path, _array(channels=10), "ten.npy"))
    assert ten.recipe.name == "s2_10" and ten.num_channels == 10
    meta = {"classes": [{"code": 5, "name": "water", "color": "#0000ff"}, {"code": 7, "name": "forest", "color": "#00ff00"},
                        {"code": 9, "name": "crops", "color": "#ffff00"}, {"code": 11, "name": "urban", "color": "#ff0000"}]}
    named = ArrayStore.open(_save(tmp_path, _array(classes=3), "named.npy", meta))
    assert [c.name for c in named.classes] == ["water", "forest", "crops", "urban"]
    assert named.stats["class_counts"]["11"] == 0 and len(named.index.filter(like="count_").columns) == 4
    with pytest.raises(ConfigError, match="match no recipe") as err:
        ArrayStore.open(_save(tmp_path, _array(channels=13), "thirteen.npy"))
    assert "label" in err.value.hint
    with pytest.raises(ConfigError, match="recipe 's2_10' has 10 channels"):
        ArrayStore.open(_save(tmp_path, _array(), "wrong.npy", {"recipe": "s2_10"}))


def test_labels_and_invalid_pixels(tmp_path) -> None:
    arr = _array(n=4)
    arr[0, -1, 5, 5] = np.nan  # NaN = ignore, as 255
    arr[1, -1, 6, 6] = 255
    store = ArrayStore.open(_save(tmp_path, arr))
    assert store.read_label(0)[5, 5] == 255 and store.read_label(1)[6, 6] == 255
    assert (store.read_label(2)[:3, :3] == 255).all()  # invalid pixels are ignored
    assert (store.read_cube(2)[:, :3, :3] == 0).all()  # and 0 in every channel
    assert store.read_cube(2).dtype == np.float32 and store.read_label(2).dtype == np.uint8
    bad = _array(n=2)
    bad[1, -1, 4, 4] = 1.5
    with pytest.raises(LabelError, match="cube 1: label value 1.5 is not a class index"):
        ArrayStore.open(_save(tmp_path, bad, "bad.npy"))
    meta = {"classes": [{"code": 1, "name": "a", "color": "#000000"}, {"code": 2, "name": "b", "color": "#111111"}]}
    with pytest.raises(LabelError, match="label value 2 but the YAML lists 2 classes"):
        ArrayStore.open(_save(tmp_path, _array(classes=3), "few.npy", meta))
    nan = _array(n=2)
    nan[0, 20, 8, 8] = np.inf
    with pytest.raises(ConfigError, match="cube 0, channel .*non-finite"):
        ArrayStore.open(_save(tmp_path, nan, "inf.npy"))


def test_wrong_files_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(MissingFileError):
        ArrayStore.open(tmp_path / "missing.npy")
    with pytest.raises(CorruptStoreError, match="not \\(N, C\\+1, H, W\\)"):
        ArrayStore.open(_save(tmp_path, np.zeros((3, 25, 16), np.float32), "flat.npy"))
    with pytest.raises(ConfigError, match="cubes of 16 x 12 px"):
        ArrayStore.open(_save(tmp_path, _array()[..., :12], "oblong.npy"))
    with pytest.raises(CorruptStoreError, match="none is the"):
        ArrayStore.open(_save(tmp_path, None, "two.npz", a=_array(), b=_array()))
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(CorruptStoreError, match="not a readable numpy array"):
        ArrayStore.open(tmp_path / "text.npy")
    with pytest.raises(ConfigError, match="split lists 2 cubes"):
        ArrayStore.open(_save(tmp_path, None, "short.npz", cubes=_array(), split=np.array(["train", "val"])))


def test_the_datamodule_reads_an_array_path_like_a_store(tmp_path) -> None:
    path = _save(tmp_path, _array(n=10), "seed.npz", data=_array(n=10))  # an .npz holding `data`
    dm = CubeDataModule(path, batch_size=4, num_workers=0)
    assert isinstance(dm.store, ArrayStore) and dm.window == 16 and dm.mask_channels == 11
    assert dm.normalization.mean == pytest.approx(dm.store.stats["by_split"]["train"]["mean"])
    assert dm.class_counts("train").sum() == int(sum((dm.store.read_label(i) < 255).sum()
                                                     for i in dm.store.ids("train")))
    dm.setup("fit")
    batch = dm.prepare_batch(next(iter(dm.train_dataloader())), train=True)
    assert batch["image"].shape == (4, 24, 16, 16) and batch["mask"].dtype == torch.uint8
    clone = pickle.loads(pickle.dumps(dm.store))  # DataLoader workers reload the file
    assert clone._data is None and np.array_equal(clone.read_cube(3), dm.store.read_cube(3))
