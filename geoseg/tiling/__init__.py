"""Tiling: cut a dataset's scenes into masked feature cubes with labels (the CubeStore)."""

from geoseg.tiling.export import export_npy, store_info
from geoseg.tiling.layout import CubeWindow, axis_slots, cube_windows
from geoseg.tiling.split import assign_splits
from geoseg.tiling.stats import Moments, cube_moments
from geoseg.tiling.store import IGNORE_INDEX, SPLITS, CubeStore, IncompleteStoreError, Split
from geoseg.tiling.tiler import TileSummary, local_cluster, tile_dataset

__all__ = [
    "CubeStore",
    "CubeWindow",
    "IGNORE_INDEX",
    "IncompleteStoreError",
    "Moments",
    "SPLITS",
    "Split",
    "TileSummary",
    "assign_splits",
    "axis_slots",
    "cube_moments",
    "cube_windows",
    "export_npy",
    "local_cluster",
    "store_info",
    "tile_dataset",
]
