"""CubeStore → torch datasets, a Lightning DataModule and on-device batch augmentation."""

from geoseg.data.augment import center_crop, dihedral, random_crop, random_dihedral, resize_nearest
from geoseg.data.datamodule import CubeDataModule, store_normalization
from geoseg.data.dataset import CubeDataset, InMemoryCubes
from geoseg.data.sampler import ShardSampler

__all__ = [
    "CubeDataModule",
    "CubeDataset",
    "InMemoryCubes",
    "ShardSampler",
    "center_crop",
    "dihedral",
    "random_crop",
    "random_dihedral",
    "resize_nearest",
    "store_normalization",
]
