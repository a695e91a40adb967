"""What makes a class raster open in QGIS with the right colours and names.

* :func:`class_colormap` — the GeoTIFF palette (value → RGBA; 0 = transparent nodata).
* :func:`pam_xml` — ``<name>.tif.aux.xml``: GDAL category names (entry i = pixel value i,
  read by QGIS 3.22) and a thematic raster attribute table (Value/Class/Red/Green/Blue, read
  by QGIS ≥ 3.30). rasterio cannot write either, so the PAM XML is written by hand.
* :func:`qml_xml` — ``<name>.qml``: a paletted renderer listing only the real classes.

Both sidecars leave nodata (0) out and must be written after the final ``.tif`` exists.
:func:`write_confidence_style` gives the confidence raster its ``.qml`` (viridis, 0–100 %).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from xml.etree import ElementTree as ET

from geoseg.config.catalog import ClassDef
from geoseg.utils.atomic import atomic_path, write_text_atomic
from geoseg.utils.qgis_style import paletted_qml, pseudocolor_qml, qml_path

__all__ = [
    "class_colormap", "pam_xml", "qml_xml", "write_sidecars", "write_confidence_style", "aux_xml_path", "qml_path",
    "CONFIDENCE_RANGE",
    "GFT_INTEGER", "GFT_STRING", "GFU_MINMAX", "GFU_NAME", "GFU_RED", "GFU_GREEN", "GFU_BLUE",
]

# GDALRATFieldType / GDALRATFieldUsage enum values (gdal.h)
GFT_INTEGER, GFT_STRING = 0, 2
GFU_NAME, GFU_MINMAX, GFU_RED, GFU_GREEN, GFU_BLUE = 2, 5, 6, 7, 8
CONFIDENCE_RANGE = (0, 100)  # percent


def class_colormap(classes: Sequence[ClassDef]) -> dict[int, tuple[int, int, int, int]]:
    """Palette for a uint8 class raster: each class code gets its colour, 0 is transparent."""
    cmap = {0: (0, 0, 0, 0)}
    for c in classes:
        cmap[c.code] = (*c.rgb, 255)
    return cmap


def aux_xml_path(tif: str | Path) -> Path:
    """``landcover.tif`` → ``landcover.tif.aux.xml``."""
    tif = Path(tif)
    return tif.with_name(tif.name + ".aux.xml")


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def pam_xml(classes: Sequence[ClassDef], band_description: str = "land_cover") -> str:
    """The PAM sidecar: category names + thematic RAT for exactly ``classes``."""
    ordered = sorted(classes, key=lambda c: c.code)
    root = ET.Element("PAMDataset")
    band = _sub(root, "PAMRasterBand", band="1")
    _sub(band, "Description", band_description)
    names = {c.code: c.name for c in ordered}
    cats = _sub(band, "CategoryNames")
    for value in range(max(names) + 1):
        _sub(cats, "Category", names.get(value, ""))
    rat = _sub(band, "GDALRasterAttributeTable", tableType="thematic")
    fields = [("Value", GFT_INTEGER, GFU_MINMAX), ("Class", GFT_STRING, GFU_NAME),
              ("Red", GFT_INTEGER, GFU_RED), ("Green", GFT_INTEGER, GFU_GREEN), ("Blue", GFT_INTEGER, GFU_BLUE)]
    for i, (name, ftype, usage) in enumerate(fields):
        fd = _sub(rat, "FieldDefn", index=str(i))
        _sub(fd, "Name", name)
        _sub(fd, "Type", str(ftype))
        _sub(fd, "Usage", str(usage))
    for i, c in enumerate(ordered):
        row = _sub(rat, "Row", index=str(i))
        for cell in (c.code, c.name, *c.rgb):
            _sub(row, "F", str(cell))
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def qml_xml(classes: Sequence[ClassDef]) -> str:
    """A QGIS style: paletted renderer on band 1 with one entry per class (nodata left out)."""
    return paletted_qml([(c.code, c.name, c.color) for c in classes])


def write_sidecars(tif: str | Path, classes: Sequence[ClassDef], band_description: str = "land_cover") -> tuple[Path, Path]:
    """Write ``<tif>.aux.xml`` and ``<base>.qml`` beside an existing ``tif`` (atomically)."""
    tif = Path(tif)
    if not tif.is_file():
        raise FileNotFoundError(f"{tif}: write the raster before its sidecars")
    written = []
    for path, text in ((aux_xml_path(tif), pam_xml(classes, band_description)), (qml_path(tif), qml_xml(classes))):
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        written.append(path)
    return written[0], written[1]


def write_confidence_style(tif: str | Path) -> Path:
    """Write ``<base>.qml`` beside an existing confidence raster: viridis from 0 to 100 %."""
    tif = Path(tif)
    if not tif.is_file():
        raise FileNotFoundError(f"{tif}: write the raster before its style")
    write_text_atomic(qml_path(tif), pseudocolor_qml(*CONFIDENCE_RANGE, suffix=" %"))
    return qml_path(tif)
