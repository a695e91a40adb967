"""The georeferenced stitcher and the land-cover output writers (COG, sidecars, polygons).

The predictor uses these; they are usable alone (docs/predict.md): :class:`Stitcher` blends
windows you predicted yourself into :class:`StitchedBlock` s for a sink such as
:class:`LandCoverWriter`, which writes the styled COG and its sidecars.
"""

from geoseg.stitch.output import LandCoverWriter
from geoseg.stitch.sidecars import pam_xml, qml_xml, write_sidecars
from geoseg.stitch.stitcher import BlockSink, StitchedBlock, Stitcher
from geoseg.stitch.vector import polygonize_classes

__all__ = [
    "BlockSink",
    "LandCoverWriter",
    "StitchedBlock",
    "Stitcher",
    "pam_xml",
    "polygonize_classes",
    "qml_xml",
    "write_sidecars",
]
