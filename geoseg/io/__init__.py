"""Reading Sentinel-2 scenes (three layouts) onto one 10 m grid, window by window."""

from geoseg.io.grid import Grid, iter_blocks
from geoseg.io.offsets import OffsetDecision
from geoseg.io.reader import close_cached, read_reflectance, read_scl, read_window
from geoseg.io.scene import BandFile, Scene, open_raster, open_scene
from geoseg.io.sensors import DEFAULT_INVALID_SCL, S2_BANDS, SCL_CLASSES

__all__ = [
    "BandFile",
    "DEFAULT_INVALID_SCL",
    "Grid",
    "OffsetDecision",
    "S2_BANDS",
    "SCL_CLASSES",
    "Scene",
    "close_cached",
    "iter_blocks",
    "open_raster",
    "open_scene",
    "read_reflectance",
    "read_scl",
    "read_window",
]
