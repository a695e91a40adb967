"""Tiling: cut a dataset's scenes into masked feature cubes with labels (the CubeStore)."""

from geoseg.tiling.store import IGNORE_INDEX, SPLITS, CubeStore, IncompleteStoreError, Split

__all__ = ["CubeStore", "IGNORE_INDEX", "IncompleteStoreError", "SPLITS", "Split"]
