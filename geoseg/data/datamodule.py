"""``CubeDataModule``: a CubeStore's train/val/test splits as Lightning dataloaders.

Loading and batching happen in the DataLoader; everything that changes pixel values or
geometry happens on the batch after it reached the device (``on_after_batch_transfer``,
torchgeo style), in this order:

0. a compact store's DN become the recipe's channels (:func:`~geoseg.data.dataset.dn_batch_features`,
   equal to the default store's cubes bit for bit);
1. valid-pixel normalisation with the store's statistics (:func:`geoseg.bundle.normalize`
   — masked pixels stay exactly 0, so masked BatchNorm and the zero-sum rule still hold; a
   series store's ``(N, T, C, H, W)`` batches per channel, each date's invalid pixels 0);
2. ``target_size``: a random crop per training sample (``crop``; validation keeps whole
   cubes), or a nearest resize of training and validation batches (``resize``);
3. training only: an independent random flip / 90° rotation per sample, on image and label
   (the dates of a series cube share their crop, flip and rotation).

Random draws of steps 2–3 come from ``self.generator`` (CPU), which the trainer reseeds at
every epoch start, so augmentation does not depend on torch's global generator.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader
from typing_extensions import override

from geoseg.bundle import Normalization, normalize
from geoseg.config.catalog import ClassDef
from geoseg.data.arrays import ArrayStore, is_array_file
from geoseg.data.augment import random_crop, random_dihedral, resize_nearest
from geoseg.data.dataset import CubeDataset, InMemoryCubes, dn_batch_features
from geoseg.data.sampler import ShardSampler
from geoseg.errors import ConfigError, EmptyAreaError
from geoseg.tiling.store import CubeStore

__all__ = ["CubeDataModule", "store_normalization"]

MEMORY_LIMIT = 2 * 1024**3


def store_normalization(store: CubeStore, split: str = "train") -> Normalization:
    """Mean/std of ``split``'s valid pixels from stats.json (all cubes when it has none).

    Channels with (near) zero spread get std 1 so that normalisation stays finite.
    """
    block = store.stats.get("by_split", {}).get(split) or {}
    source = block if block.get("count", 0) > 0 else store.stats
    std = np.asarray(source["std"], np.float64)
    std = np.where(std > 1e-8, std, 1.0)
    return Normalization(mean=[float(v) for v in source["mean"]], std=[float(v) for v in std])


class CubeDataModule(pl.LightningDataModule):
    """Dataloaders over a CubeStore's splits with on-device normalisation and augmentation.

    Args:
        store: CubeStore directory, an opened store, or an ``(N, C+1, H, W)`` ``.npy``/``.npz``
            array (:mod:`geoseg.data.arrays`).
        batch_size: Batch size per device.
        num_workers: DataLoader worker processes (None: 0 when in memory, else 2).
        target_size: Training size (see ``target_mode``); None keeps the cube size.
        target_mode: ``crop`` or ``resize`` (module docstring).
        augment: Random flips and rotations of training batches.
        train_split: Split used for training.
        val_split: Split used for validation.
        test_split: Split used by ``trainer.test``.
        downsample: Keep at most this many cubes per split (seeded random subset; debugging).
        seed: Seed of shuffling and of the downsampled subset.
        in_memory: Load the used cubes into RAM (``auto``: when they take < 2 GB).
        normalization: Statistics to normalise with (default: the train split's stats.json).

    Raises:
        ConfigError: A split has no cubes, the store has no labels, or the sizes disagree.
    """

    def __init__(
        self,
        store: str | Path | CubeStore,
        *,
        batch_size: int = 8,
        num_workers: int | None = None,
        target_size: int | None = None,
        target_mode: Literal["crop", "resize"] = "crop",
        augment: bool = True,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "test",
        downsample: int | None = None,
        seed: int = 0,
        in_memory: Literal["auto", "yes", "no"] = "auto",
        normalization: Normalization | None = None,
    ) -> None:
        super().__init__()
        if isinstance(store, CubeStore):
            self.store = store
        elif is_array_file(store):  # an (N, C+1, H, W) .npy/.npz (geoseg.data.arrays)
            self.store = ArrayStore.open(store)
        else:
            self.store = CubeStore.open(store)
        if not self.store.has_labels:
            raise ConfigError("the CubeStore has no labels; training and evaluation need them",
                              path=self.store.path, hint="give the dataset's scenes labels in the catalog and tile again")
        if target_size is not None and target_mode == "crop" and target_size > self.store.cube_size:
            raise ConfigError(f"target_size {target_size} is larger than the cubes ({self.store.cube_size} px)",
                              path=self.store.path, hint="use a smaller --target-size or --target-mode resize")
        self.batch_size, self.target_size, self.target_mode = batch_size, target_size, target_mode
        self.augment, self.seed, self.downsample = augment, seed, downsample
        self.splits = {"fit": train_split, "validate": val_split, "test": test_split}
        self.in_memory_mode = in_memory
        self.normalization = normalization or store_normalization(self.store, train_split)
        self.recipe = self.store.recipe
        self.layout = getattr(self.store, "native_layout", None)  # byte records of a compact store
        self.mask_channels = self.recipe.num_mask_channels
        self._num_workers = num_workers
        self.datasets: dict[str, CubeDataset] = {}
        # draws of the training augmentation (CPU; reseeded every epoch by the trainer)
        self.generator = torch.Generator().manual_seed(seed)

    # ------------------------------------------------------------------ description
    @property
    def classes(self) -> list[ClassDef]:
        """The store's classes in training-index order."""
        return self.store.classes

    @property
    def class_names(self) -> list[str]:
        """Class names in training-index order."""
        return [c.name for c in self.classes]

    @property
    def channel_names(self) -> list[str]:
        """Name of each input channel of the store."""
        return self.store.channel_names

    @property
    def window(self) -> int:
        """Size of the training inputs (crop size, or the cube size)."""
        crop = self.target_size is not None and self.target_mode == "crop"
        return int(self.target_size) if crop else self.store.cube_size  # type: ignore[arg-type]

    def class_counts(self, split: str | None = None) -> np.ndarray:
        """Labelled pixels per class (training index order) in ``split`` (None: all cubes)."""
        index = self.store.index
        rows = index if split is None else index[index["split"] == split]
        return np.array([int(rows[f"count_{c.code}"].sum()) if f"count_{c.code}" in rows else 0
                         for c in self.classes], dtype=np.int64)

    def split_ids(self, split: str) -> np.ndarray:
        """Cube ids of ``split`` (downsampled when requested)."""
        ids = self.store.ids(split)  # type: ignore[arg-type]
        if self.downsample is not None and len(ids) > self.downsample:
            rng = np.random.default_rng(self.seed)
            ids = np.sort(rng.choice(ids, size=self.downsample, replace=False))
        return ids

    @property
    def num_workers(self) -> int:
        """DataLoader workers: as given, else 0 for in-memory cubes and min(2, CPUs) otherwise."""
        if self._num_workers is not None:
            return self._num_workers
        in_memory = any(isinstance(d.source, InMemoryCubes) for d in self.datasets.values())
        return 0 if in_memory else min(2, os.cpu_count() or 1)

    # ------------------------------------------------------------------ datasets
    def _dataset(self, split: str) -> CubeDataset:
        if split in self.datasets:
            return self.datasets[split]
        ids = self.split_ids(split)
        if len(ids) == 0:
            raise EmptyAreaError(f"the CubeStore has no {split!r} cubes", path=self.store.path,
                                 hint="tile with split fractions that give this split cubes (geoseg tile --split)")
        dates = getattr(self.store, "time_steps", None) or 1
        per_cube = 4 * dates * self.store.num_channels * self.store.cube_size**2 + self.store.cube_size**2
        load = self.in_memory_mode == "yes" or (self.in_memory_mode == "auto" and per_cube * len(ids) < MEMORY_LIMIT)
        source = InMemoryCubes.from_store(self.store, ids) if load else self.store
        self.datasets[split] = CubeDataset(source, None if load else ids)
        return self.datasets[split]

    @override
    def setup(self, stage: str) -> None:
        if stage == "fit":
            self._dataset(self.splits["fit"])
            self._dataset(self.splits["validate"])
        else:
            self._dataset(self.splits.get(stage, self.splits["test"]))

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, split: str, train: bool) -> DataLoader:
        ds = self._dataset(split)
        rank, world = self._rank_world()
        sampler = ShardSampler(len(ds), shuffle=train, seed=self.seed, rank=rank, world_size=world, equal_shards=train)
        if train:
            if len(sampler) == 0:
                raise EmptyAreaError(f"{len(ds)} training cubes cannot be shared by {world} processes",
                                     path=self.store.path, hint="use fewer devices or more cubes")
            if self.trainer is not None:
                sampler.set_epoch(self.trainer.current_epoch)  # resumed runs start mid-schedule
        workers = self.num_workers
        return DataLoader(
            ds, batch_size=self.batch_size, sampler=sampler, num_workers=workers,
            drop_last=train and len(sampler) >= self.batch_size, persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    @override
    def train_dataloader(self) -> DataLoader:
        return self._loader(self.splits["fit"], train=True)

    @override
    def val_dataloader(self) -> DataLoader:
        return self._loader(self.splits["validate"], train=False)

    @override
    def test_dataloader(self) -> DataLoader:
        return self._loader(self.splits["test"], train=False)

    def loader(self, split: str) -> DataLoader:
        """An evaluation dataloader (no shuffle, no augmentation) over any split."""
        return self._loader(split, train=False)

    # ------------------------------------------------------------------ on-device transforms
    def prepare_batch(self, batch: dict[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        """Normalise, resize/crop and (training) augment a batch that is on its device."""
        x = normalize(dn_batch_features(batch, self.recipe, self.layout).float(), self.normalization,
                      self.mask_channels)
        y = batch["mask"]
        if self.target_size is not None:
            if self.target_mode == "resize":
                x, y = resize_nearest(x, y, self.target_size)
            elif train:
                x, y = random_crop(x, y, self.target_size, generator=self.generator)
        if train and self.augment:
            x, y = random_dihedral(x, y, generator=self.generator)
        return {"image": x, "mask": y}

    def transfer_batch_to_device(self, batch: dict[str, torch.Tensor], device: torch.device,
                                 dataloader_idx: int) -> dict[str, torch.Tensor]:
        """Move the batch's two tensors (Lightning's generic collection walk costs ~ms a step)."""
        if device.type == "cpu":
            return batch
        return {key: value.to(device, non_blocking=True) for key, value in batch.items()}

    @override
    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict[str, torch.Tensor]:
        training = self.trainer is not None and self.trainer.training
        return self.prepare_batch(batch, train=training)
