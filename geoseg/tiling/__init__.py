"""Tiling: cut a dataset's scenes into masked feature cubes with labels (the CubeStore).

>>> summary = tile_dataset("data_catalog.yaml", "demo", "cubes/demo", cube_size=256, overlap=32)
>>> store = CubeStore.open("cubes/demo")
>>> x, y = store.read_cube(store.ids("train")[0]), store.read_label(store.ids("train")[0])

The window layout (``layout``), the spatial split (``split``), the statistics (``stats``) and
the Dask plumbing (``tiler.local_cluster``) are importable from their modules.
"""

from geoseg.tiling.export import export_npy, store_info
from geoseg.tiling.store import IGNORE_INDEX, CubeStore, IncompleteStoreError, Split
from geoseg.tiling.tiler import TileSummary, tile_dataset

__all__ = [
    "CubeStore",
    "IGNORE_INDEX",
    "IncompleteStoreError",
    "Split",
    "TileSummary",
    "export_npy",
    "store_info",
    "tile_dataset",
]
