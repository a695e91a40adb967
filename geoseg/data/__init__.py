"""CubeStore → torch datasets, a Lightning DataModule and on-device batch augmentation.

Batch augmentation (``augment``) and the store's normalisation statistics
(``datamodule.store_normalization``) are importable from their modules.
"""

from geoseg.data.datamodule import CubeDataModule
from geoseg.data.dataset import CubeDataset, InMemoryCubes
from geoseg.data.sampler import ShardSampler

__all__ = [
    "CubeDataModule",
    "CubeDataset",
    "InMemoryCubes",
    "ShardSampler",
]
