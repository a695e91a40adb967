"""Torch datasets over a CubeStore split, read lazily from zarr or held in memory.

A sample is ``{"image": float32 (C, H, W), "mask": uint8 (H, W)}`` — the raw cube (not
normalised; a series store's cube is ``(T, C, H, W)``) and its labels (training indices, 255 = ignore). Normalisation and
augmentation run later, on the batch on the device (:class:`~geoseg.data.CubeDataModule`).

A compact store (:mod:`geoseg.tiling.compact`) read lazily gives its DN instead:
``{"image": float32 (B, H, W) DN, NaN = invalid, "mask": ..., "radiometry": float64 (offset,
scale)}``, and the batch transform computes the recipe's channels on the device
(:func:`dn_batch_features`), equal to the default store's cubes bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from geoseg.features.recipes import Recipe
from geoseg.tiling.store import IGNORE_INDEX, CubeStore

__all__ = ["CubeDataset", "InMemoryCubes", "dn_batch_features"]

RADIOMETRY_KEY = "radiometry"


def dn_batch_features(batch: dict[str, torch.Tensor], recipe: Recipe, layout: dict | None = None) -> torch.Tensor:
    """The batch's ``image`` as the recipe's float32 channels, on its device.

    Batches of compact cubes (they carry ``radiometry``) are DN, or byte records of the native
    ``layout`` (:mod:`geoseg.tiling.compact_native`, decoded first): the channels are computed
    here (:func:`geoseg.features.torch_features.features_from_dn_torch`); other batches pass unchanged.
    """
    if RADIOMETRY_KEY not in batch:
        return batch["image"]
    from geoseg.features.torch_features import features_from_dn_torch

    dn = batch["image"]
    if dn.ndim == 2:  # (N, record bytes)
        from geoseg.tiling.compact_native import decode_records, decode_records_numpy

        if layout is None:
            raise ValueError("byte records need the store's native layout (manifest dn_layout)")
        if dn.device.type == "cpu":  # the resampler's compiled kernel
            dn = torch.from_numpy(decode_records_numpy(dn.numpy(), layout, recipe.required_bands))
        else:
            dn = decode_records(dn, layout, recipe.required_bands)
    if dn.device.type == "cpu":  # the recipe's compiled kernel: the same bits, ~15x faster than torch on a CPU
        return _features_on_cpu(dn, batch[RADIOMETRY_KEY], recipe)
    return features_from_dn_torch(dn, batch[RADIOMETRY_KEY], recipe)


def _features_on_cpu(dn: torch.Tensor, radiometry: torch.Tensor, recipe: Recipe) -> torch.Tensor:
    from geoseg.features.stack import features_from_dn

    arrays, rad = dn.numpy(), radiometry.numpy()
    out = [features_from_dn(a, a[0] == a[0], float(r[0]), float(r[1]), recipe) for a, r in zip(arrays, rad, strict=True)]
    return torch.from_numpy(np.stack(out))


class InMemoryCubes:
    """Cubes and labels held as numpy arrays (a drop-in for :class:`CubeStore` reads).

    Args:
        cubes: (N, C, H, W) float32, or (N, T, C, H, W) for a series store.
        labels: (N, H, W) uint8 (255 = ignore), or None for unlabelled cubes.
    """

    def __init__(self, cubes: np.ndarray, labels: np.ndarray | None) -> None:
        if cubes.ndim not in (4, 5):
            raise ValueError(f"cubes must be (N, C, H, W) or (N, T, C, H, W), got shape {cubes.shape}")
        if labels is not None and labels.shape != (cubes.shape[0], *cubes.shape[-2:]):
            raise ValueError(f"labels shape {labels.shape} does not match cubes {cubes.shape}")
        self.cubes = np.ascontiguousarray(cubes, dtype=np.float32)
        self.labels = None if labels is None else np.ascontiguousarray(labels, dtype=np.uint8)

    @classmethod
    def from_store(cls, store: CubeStore, ids: Sequence[int] | np.ndarray) -> InMemoryCubes:
        """Read cubes ``ids`` of ``store`` into memory (position k holds cube ``ids[k]``)."""
        ids = [int(i) for i in ids]
        labels = store.read_labels(ids) if store.has_labels else None
        return cls(store.read_cubes(ids), labels)

    def __len__(self) -> int:
        return int(self.cubes.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes held by the cubes and labels."""
        return int(self.cubes.nbytes + (0 if self.labels is None else self.labels.nbytes))


class CubeDataset(Dataset):
    """The cubes ``ids`` of a store (read per item) or of an :class:`InMemoryCubes`.

    Args:
        source: A :class:`CubeStore` (lazy zarr reads, picklable for DataLoader workers) or
            :class:`InMemoryCubes`.
        ids: For a store, the cube ids of the split; for in-memory cubes, positions
            (default: all).
    """

    def __init__(self, source: CubeStore | InMemoryCubes, ids: Sequence[int] | np.ndarray | None = None) -> None:
        self.source = source
        self.ids = np.arange(len(source), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        i = int(self.ids[k])
        src = self.source
        compact = False
        if isinstance(src, InMemoryCubes):
            cube = src.cubes[i]
            label = src.labels[i] if src.labels is not None else None
        else:
            compact = getattr(src, "form", "features") == "compact"  # ArrayStore, ChipList: features
            native = compact and isinstance(src, CubeStore) and src.native_layout is not None
            cube = src.read_record(i) if native else src.read_dn(i) if compact else src.read_cube(i)
            label = src.read_label(i) if src.has_labels else None
        if label is None:  # (a byte record has no image shape: the store's cube size)
            shape = cube.shape[-2:] if cube.ndim >= 3 else (src.cube_size, src.cube_size)  # type: ignore[union-attr]
            label = np.full(shape, IGNORE_INDEX, np.uint8)
        sample = {"image": torch.from_numpy(np.asarray(cube)), "mask": torch.from_numpy(np.asarray(label))}
        if compact and isinstance(src, CubeStore):  # DN: the channels are computed on the device
            sample[RADIOMETRY_KEY] = torch.from_numpy(src.radiometry(i).copy())
        return sample
