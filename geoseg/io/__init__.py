"""Reading Sentinel-2 scenes (three layouts) onto one 10 m grid, window by window.

>>> scene = open_scene("S2B_MSIL2A_..._T33UUU_....SAFE")    # or a .tif, or a band folder
>>> reflectance, valid = read_window(scene, Window(0, 0, 512, 512), ["B04", "B08"])

Modules, lowest first: ``raster`` (opening files, GDAL errors), ``radiometry`` (DN to
reflectance), ``offsets`` (the radiometric offset of a scene), ``options`` (how a scene is
opened: :class:`SceneOptions`), ``scene`` (describing a scene),
``resample`` and ``reader`` (window reads), ``labels`` (class rasters and vectors).
"""

from geoseg.io.grid import Grid, iter_blocks
from geoseg.io.offsets import OffsetDecision
from geoseg.io.options import SceneOptions
from geoseg.io.raster import BandFile as BandFile
from geoseg.io.raster import open_raster as open_raster
from geoseg.io.reader import close_cached as close_cached
from geoseg.io.reader import read_reflectance as read_reflectance
from geoseg.io.reader import read_scl, read_window
from geoseg.io.scene import Scene, open_scene
from geoseg.io.sensors import DEFAULT_INVALID_SCL, S2_BANDS, SCL_CLASSES

# BandFile, open_raster, close_cached and read_reflectance (``name as name`` above) stay
# importable from here as before, but they are building blocks of the reader, not the user API.
__all__ = [
    "DEFAULT_INVALID_SCL",
    "Grid",
    "OffsetDecision",
    "S2_BANDS",
    "SCL_CLASSES",
    "Scene",
    "SceneOptions",
    "iter_blocks",
    "open_scene",
    "read_scl",
    "read_window",
]
