"""CubeDataModule over a real (tiled) demo store: splits, statistics, on-device transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geoseg.bundle import Normalization, normalize
from geoseg.data import CubeDataModule, CubeDataset, InMemoryCubes
from geoseg.data.datamodule import store_normalization
from geoseg.errors import ConfigError, GeosegError, MissingFileError
from geoseg.tiling import CubeStore


def test_splits_classes_and_counts_come_from_the_store(data_cubes):
    dm = CubeDataModule(data_cubes, batch_size=4)
    store = dm.store
    assert dm.class_names == ["water", "forest", "cropland", "grassland", "built-up", "bare soil"]
    assert dm.channel_names == store.channel_names and len(dm.channel_names) == 24
    assert dm.mask_channels == 11 and dm.window == store.cube_size == 48
    total = dm.class_counts()
    assert total.tolist() == [store.stats["class_counts"][str(c.code)] for c in store.classes]
    per_split = sum(dm.class_counts(s) for s in ("train", "val", "test"))
    assert per_split.tolist() == total.tolist()
    # labels in the arrays agree with the index counts of the train split
    labels = store.read_labels(store.ids("train"))
    assert [int((labels == i).sum()) for i in range(6)] == dm.class_counts("train").tolist()


def test_normalization_uses_train_statistics_and_keeps_masked_pixels_zero(data_cubes):
    dm = CubeDataModule(data_cubes, batch_size=64)
    store = dm.store
    train = store.stats["by_split"]["train"]
    assert dm.normalization.mean == pytest.approx(train["mean"])
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    invalid = batch["image"][:, :11].abs().sum(1) == 0
    assert invalid.any()  # the demo scene has clouds and an invalid border
    assert (batch["mask"][invalid] == 255).all()
    for train_mode in (False, True):
        torch.manual_seed(0)
        out = dm.prepare_batch(batch, train=train_mode)
        x, y = out["image"], out["mask"]
        zero = (x == 0).all(1)
        # masked pixels stay exactly 0 in all 24 channels, and keep their ignore label
        assert int(zero.sum()) == int(invalid.sum())
        assert (y[zero] == 255).all()
    # normalised valid pixels of the train split have mean ~0 and std ~1 per channel
    x = normalize(torch.from_numpy(store.read_cubes(store.ids("train"))), dm.normalization)
    valid = x[:, :11].abs().sum(1) > 0
    values = x.permute(1, 0, 2, 3)[:, valid]
    assert values.mean(1).abs().max() < 1e-3 and (values.std(1) - 1).abs().max() < 1e-2


def test_normalize_on_arbitrary_data_keeps_zeros_exact():
    x = torch.randn(2, 5, 4, 4) + 3
    x[0, :, 1, 1] = 0
    x[1, :2, 2, 3] = 0  # first (mask) channels all zero: invalid even though others are not
    norm = Normalization(mean=[1.0] * 5, std=[2.0] * 5)
    out = normalize(x, norm, mask_channels=2)
    assert (out[0, :, 1, 1] == 0).all() and (out[1, :, 2, 3] == 0).all()
    assert torch.allclose(out[0, :, 0, 0], (x[0, :, 0, 0] - 1) / 2)


def test_lazy_and_in_memory_reads_give_the_same_batches(data_cubes):
    batches = []
    for mode in ("yes", "no"):
        dm = CubeDataModule(data_cubes, batch_size=5, in_memory=mode, num_workers=0)
        dm.setup("fit")
        loader = dm.val_dataloader()
        batches.append(next(iter(loader)))
        assert isinstance(dm.datasets["val"].source, InMemoryCubes if mode == "yes" else CubeStore)
    assert torch.equal(batches[0]["image"], batches[1]["image"])
    assert torch.equal(batches[0]["mask"], batches[1]["mask"])
    assert batches[0]["image"].dtype == torch.float32 and batches[0]["mask"].dtype == torch.uint8


def test_worker_processes_read_the_store(data_cubes):
    dm = CubeDataModule(data_cubes, batch_size=4, in_memory="no", num_workers=2)
    dm.setup("fit")
    seen = sum(b["image"].shape[0] for b in dm.val_dataloader())
    assert seen == len(dm.store.ids("val"))


def test_target_size_crops_training_and_keeps_validation_whole(data_cubes):
    dm = CubeDataModule(data_cubes, batch_size=4, target_size=32)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert dm.prepare_batch(batch, train=True)["image"].shape[-2:] == (32, 32)
    assert dm.prepare_batch(batch, train=False)["image"].shape[-2:] == (48, 48)
    assert dm.window == 32
    rs = CubeDataModule(data_cubes, batch_size=4, target_size=24, target_mode="resize")
    assert rs.prepare_batch(batch, train=False)["mask"].shape[-2:] == (24, 24)
    with pytest.raises(ConfigError, match="larger than the cubes"):
        CubeDataModule(data_cubes, target_size=64)


def test_downsample_and_errors(data_cubes, tmp_path):
    dm = CubeDataModule(data_cubes, downsample=3, seed=1)
    ids = dm.split_ids("train")
    assert len(ids) == 3 and set(ids) <= set(dm.store.ids("train"))
    assert CubeDataModule(data_cubes, downsample=3, seed=1).split_ids("train").tolist() == ids.tolist()
    with pytest.raises(MissingFileError):
        CubeDataModule(tmp_path / "nowhere")
    with pytest.raises(GeosegError, match="unknown split 'nosplit'"):
        CubeDataModule(data_cubes, val_split="nosplit").setup("fit")
    arrays = InMemoryCubes(np.zeros((2, 3, 4, 4), np.float32), None)
    sample = CubeDataset(arrays)[1]
    assert (sample["mask"] == 255).all() and sample["image"].shape == (3, 4, 4)
    assert store_normalization(dm.store, "train").std[0] > 0


def test_batch_transfer_moves_both_tensors_and_is_free_on_cpu(data_cubes):
    dm = CubeDataModule(data_cubes, batch_size=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    same = dm.transfer_batch_to_device(batch, torch.device("cpu"), 0)
    assert same is batch  # no copy, no collection walk on CPU
    moved = dm.transfer_batch_to_device(batch, torch.device("meta"), 0)
    assert set(moved) == {"image", "mask"}
    assert all(v.device.type == "meta" for v in moved.values())
    assert moved["image"].shape == batch["image"].shape and moved["mask"].dtype == batch["mask"].dtype
