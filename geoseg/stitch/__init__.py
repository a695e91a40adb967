"""The georeferenced stitcher and the land-cover output writers (COG, sidecars, polygons)."""

from geoseg.stitch.cog import BLOCK, StreamingCOG, temp_sibling
from geoseg.stitch.output import (
    BAND_DESCRIPTION,
    CONFIDENCE_NODATA,
    LandCoverWriter,
    classes_from_probs,
)
from geoseg.stitch.sidecars import (
    aux_xml_path,
    class_colormap,
    pam_xml,
    qml_path,
    qml_xml,
    write_sidecars,
)
from geoseg.stitch.stitcher import BlockSink, StitchedBlock, Stitcher
from geoseg.stitch.vector import polygonize_classes

__all__ = [
    "BAND_DESCRIPTION",
    "BLOCK",
    "BlockSink",
    "CONFIDENCE_NODATA",
    "LandCoverWriter",
    "StitchedBlock",
    "Stitcher",
    "StreamingCOG",
    "aux_xml_path",
    "class_colormap",
    "classes_from_probs",
    "pam_xml",
    "polygonize_classes",
    "qml_path",
    "qml_xml",
    "temp_sibling",
    "write_sidecars",
]
