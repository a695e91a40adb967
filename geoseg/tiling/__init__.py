"""Tiling: cut a dataset's scenes into masked feature cubes with labels (the CubeStore).

>>> summary = tile_dataset("data_catalog.yaml", "demo", "cubes/demo", TileOptions(cube_size=256, overlap=32))
>>> store = CubeStore.open("cubes/demo")
>>> x, y = store.read_cube(store.ids("train")[0]), store.read_label(store.ids("train")[0])

The window layout (``layout``), the spatial split (``split``), the statistics (``stats``) and
the Dask plumbing (``tiler.local_cluster``) are importable from their modules. Names are
imported on first use, so ``geoseg.tiling.options`` loads without zarr and Dask.
"""

from typing import TYPE_CHECKING

from geoseg.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from geoseg.tiling.export import export_npy, store_info
    from geoseg.tiling.options import TileOptions, TilingParams
    from geoseg.tiling.store import IGNORE_INDEX, CubeStore, IncompleteStoreError, Split
    from geoseg.tiling.tiler import TileSummary, tile_dataset

_EXPORTS = {
    "export_npy": "geoseg.tiling.export",
    "store_info": "geoseg.tiling.export",
    "TileOptions": "geoseg.tiling.options",
    "TilingParams": "geoseg.tiling.options",
    "IGNORE_INDEX": "geoseg.tiling.store",
    "CubeStore": "geoseg.tiling.store",
    "IncompleteStoreError": "geoseg.tiling.store",
    "Split": "geoseg.tiling.store",
    "TileSummary": "geoseg.tiling.tiler",
    "tile_dataset": "geoseg.tiling.tiler",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "CubeStore",
    "IGNORE_INDEX",
    "IncompleteStoreError",
    "Split",
    "TileOptions",
    "TileSummary",
    "TilingParams",
    "export_npy",
    "store_info",
    "tile_dataset",
]
