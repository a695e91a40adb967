"""CubeStore → torch datasets, a Lightning DataModule and on-device batch augmentation.

Batch augmentation (``augment``) and the store's normalisation statistics
(``datamodule.store_normalization``) are importable from their modules. ``ArrayStore`` reads an
``(N, C+1, H, W)`` ``.npy``/``.npz`` array as a CubeStore (:mod:`geoseg.data.arrays`).
"""

from geoseg.data.arrays import ArrayStore
from geoseg.data.datamodule import CubeDataModule
from geoseg.data.dataset import CubeDataset, InMemoryCubes
from geoseg.data.sampler import ShardSampler

__all__ = [
    "ArrayStore",
    "CubeDataModule",
    "CubeDataset",
    "InMemoryCubes",
    "ShardSampler",
]
