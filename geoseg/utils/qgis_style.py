"""QGIS style documents (``.qml``) and SLD, written as QGIS 3.22 writes them and read by later versions.

Raster renderers, for a ``<name>.qml`` sidecar that QGIS loads with ``<name>.tif``:

* :func:`paletted_qml` — one colour and label per class value (the land-cover map);
* :func:`pseudocolor_qml` — a continuous colour ramp between fixed limits (the confidence);
* :func:`multiband_qml` — an RGB composite of three bands with a fixed stretch (the features).

Vector layers: :func:`categorized_qml` and :func:`categorized_sld` colour polygons by the
value of one field; a GeoPackage carries them in QGIS's ``layer_styles`` table.

Colours are ``#rrggbb`` strings. Symbol and ramp properties use the ``<prop k v>`` form that
QGIS 3.22 reads and writes and every later version still reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from xml.etree import ElementTree as ET

__all__ = [
    "Category", "VIRIDIS", "QGIS_VERSION", "qml_path", "paletted_qml", "pseudocolor_qml", "multiband_qml",
    "categorized_qml", "categorized_sld",
]

QGIS_VERSION = "3.22.16-Białowieża"
DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
# matplotlib's viridis at 0, 0.1, ..., 1: a perceptually uniform sequential ramp
VIRIDIS = ("#440154", "#482475", "#414487", "#355f8d", "#2a788e", "#21918c",
           "#22a884", "#44bf70", "#7ad151", "#bddf26", "#fde725")
Category = tuple[int, str, str]  # value, label, colour

SLD, SE, OGC = "http://www.opengis.net/sld", "http://www.opengis.net/se", "http://www.opengis.net/ogc"
XSI = "http://www.w3.org/2001/XMLSchema-instance"


def qml_path(raster: str | Path) -> Path:
    """``landcover.tif`` → ``landcover.qml`` (QGIS loads ``<base name>.qml``, not ``.tif.qml``)."""
    return Path(raster).with_suffix(".qml")


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def _rgba(color: str, alpha: int = 255) -> str:
    """``#1f78b4`` → ``31,120,180,255`` (QGIS's colour property format)."""
    value = color.lstrip("#")
    return ",".join(str(int(value[i : i + 2], 16)) for i in (0, 2, 4)) + f",{alpha}"


def _number(value: float) -> str:
    return f"{value:g}"


def _document(root: ET.Element) -> str:
    ET.indent(root, space="  ")
    return DOCTYPE + ET.tostring(root, encoding="unicode") + "\n"


def _raster_style(renderer_type: str, **attrs: str) -> tuple[ET.Element, ET.Element]:
    """The ``qgis`` root of a raster style and its empty ``rasterrenderer`` (fixed limits)."""
    root = ET.Element("qgis", version=QGIS_VERSION, styleCategories="AllStyleCategories",
                      hasScaleBasedVisibilityFlag="0", minScale="1e+08", maxScale="0")
    pipe = _sub(root, "pipe")
    renderer = _sub(pipe, "rasterrenderer", type=renderer_type, opacity="1", alphaBand="-1", nodataColor="", **attrs)
    _sub(renderer, "rasterTransparency")
    mmo = _sub(renderer, "minMaxOrigin")
    for tag, text in (("limits", "None"), ("extent", "WholeRaster"), ("statAccuracy", "Estimated"),
                      ("cumulativeCutLower", "0.02"), ("cumulativeCutUpper", "0.98"), ("stdDevFactor", "2")):
        _sub(mmo, tag, text)  # limits None: the style's own limits, never recomputed from statistics
    _sub(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    _sub(pipe, "huesaturation", saturation="0", colorizeOn="0", colorizeRed="255", colorizeGreen="128",
         colorizeBlue="128", colorizeStrength="100", grayscaleMode="0", invertColors="0")
    _sub(pipe, "rasterresampler", maxOversampling="2")
    _sub(pipe, "resamplingStage", "resamplingFilter")
    _sub(root, "blendMode", "0")
    return root, renderer


def paletted_qml(categories: Sequence[Category], band: int = 1) -> str:
    """A paletted renderer listing exactly ``categories`` (sorted by value)."""
    root, renderer = _raster_style("paletted", band=str(band))
    palette = _sub(renderer, "colorPalette")
    for value, label, color in sorted(categories):
        _sub(palette, "paletteEntry", value=str(value), color=color, alpha="255", label=label)
    return _document(root)


def pseudocolor_qml(minimum: float, maximum: float, ramp: Sequence[str] = VIRIDIS, *, band: int = 1,
                    suffix: str = "") -> str:
    """A single-band pseudocolour renderer: ``ramp`` spread evenly from ``minimum`` to ``maximum``.

    Colours are interpolated linearly between the stops; values outside the limits take the end
    colours, nodata stays transparent. ``suffix`` (e.g. ``" %"``) follows the legend's numbers.
    """
    if len(ramp) < 2 or not maximum > minimum:
        raise ValueError("a colour ramp needs two colours or more and maximum > minimum")
    lo, hi = _number(minimum), _number(maximum)
    root, renderer = _raster_style("singlebandpseudocolor", band=str(band), classificationMin=lo,
                                   classificationMax=hi)
    shader = _sub(_sub(renderer, "rastershader"), "colorrampshader", colorRampType="INTERPOLATED",
                  classificationMode="1", clip="0", minimumValue=lo, maximumValue=hi, labelPrecision="0")
    steps = [i / (len(ramp) - 1) for i in range(len(ramp))]
    gradient = _sub(shader, "colorramp", name="[source]", type="gradient")
    props = {"color1": _rgba(ramp[0]), "color2": _rgba(ramp[-1]), "discrete": "0", "rampType": "gradient",
             "stops": ":".join(f"{_number(t)};{_rgba(c)}" for t, c in zip(steps[1:-1], ramp[1:-1], strict=True))}
    for key, text in props.items():
        _sub(gradient, "prop", k=key, v=text)
    for t, color in zip(steps, ramp, strict=True):
        value = minimum + t * (maximum - minimum)
        _sub(shader, "item", value=_number(value), color=color, alpha="255", label=f"{value:.0f}{suffix}")
    _sub(shader, "rampLegendSettings", minimumLabel="", maximumLabel="", prefix="", suffix=suffix,
         direction="0", orientation="2", useContinuousLegend="1")
    return _document(root)


def multiband_qml(red: int, green: int, blue: int, *, minimum: float, maximum: float,
                  transparent: tuple[float, float, float] | None = None) -> str:
    """An RGB composite of bands ``red``/``green``/``blue`` (1-based), each stretched ``minimum``–``maximum``.

    ``transparent``: the (red, green, blue) band values drawn fully transparent, e.g. the zeros
    of masked pixels (QGIS 3.22 ignores a GeoTIFF's mask band).
    """
    root, renderer = _raster_style("multibandcolor", redBand=str(red), greenBand=str(green), blueBand=str(blue))
    if transparent is not None:
        pixels = _sub(renderer.find("rasterTransparency"), "threeValuePixelList")  # type: ignore[arg-type]
        r, g, b = map(_number, transparent)
        _sub(pixels, "pixelListEntry", red=r, green=g, blue=b, percentTransparent="100")
    for colour in ("red", "green", "blue"):
        enhancement = _sub(renderer, f"{colour}ContrastEnhancement")
        _sub(enhancement, "minValue", _number(minimum))
        _sub(enhancement, "maxValue", _number(maximum))
        _sub(enhancement, "algorithm", "StretchToMinimumMaximum")
    return _document(root)


def categorized_qml(field: str, categories: Sequence[Category], *, outline: str = "#323232",
                    outline_width_mm: float = 0.1) -> str:
    """A vector style: polygons filled with their category's colour by the value of ``field``."""
    root = ET.Element("qgis", version=QGIS_VERSION, styleCategories="AllStyleCategories",
                      hasScaleBasedVisibilityFlag="0", minScale="100000000", maxScale="0", readOnly="0",
                      labelsEnabled="0", symbologyReferenceScale="-1")
    renderer = _sub(root, "renderer-v2", type="categorizedSymbol", attr=field, symbollevels="0", forceraster="0",
                    enableorderby="0", referencescale="-1")
    listed, symbols = _sub(renderer, "categories"), _sub(renderer, "symbols")
    for i, (value, label, color) in enumerate(sorted(categories)):
        _sub(listed, "category", value=str(value), label=label, symbol=str(i), render="true")
        symbol = _sub(symbols, "symbol", type="fill", name=str(i), alpha="1", clip_to_extent="1", force_rhr="0")
        layer = _sub(symbol, "layer", **{"class": "SimpleFill", "locked": "0", "enabled": "1", "pass": "0"})
        props = {"color": _rgba(color), "style": "solid", "outline_color": _rgba(outline),
                 "outline_style": "solid", "outline_width": _number(outline_width_mm), "outline_width_unit": "MM",
                 "joinstyle": "bevel", "offset": "0,0", "offset_unit": "MM"}
        for key, text in props.items():
            _sub(layer, "prop", k=key, v=text)
    for tag, text in (("blendMode", "0"), ("featureBlendMode", "0"), ("layerOpacity", "1")):
        _sub(root, tag, text)
    _sub(root, "legend", type="default-vector", showLabelLegend="0")
    return _document(root)


def categorized_sld(layer: str, field: str, categories: Sequence[Category]) -> str:
    """The same style as SLD 1.1 (one rule per category), for clients that read SLD."""
    root = ET.Element("StyledLayerDescriptor", {
        "xmlns": SLD, "xmlns:se": SE, "xmlns:ogc": OGC, "xmlns:xsi": XSI, "version": "1.1.0",
        "xsi:schemaLocation": f"{SLD} http://schemas.opengis.net/sld/1.1.0/StyledLayerDescriptor.xsd"})
    named = _sub(root, "NamedLayer")
    _sub(named, "se:Name", layer)
    user = _sub(named, "UserStyle")
    _sub(user, "se:Name", layer)
    features = _sub(user, "se:FeatureTypeStyle")
    for value, label, color in sorted(categories):
        rule = _sub(features, "se:Rule")
        _sub(rule, "se:Name", label)
        _sub(_sub(rule, "se:Description"), "se:Title", label)
        equal = _sub(_sub(rule, "ogc:Filter"), "ogc:PropertyIsEqualTo")
        _sub(equal, "ogc:PropertyName", field)
        _sub(equal, "ogc:Literal", str(value))
        fill = _sub(_sub(rule, "se:PolygonSymbolizer"), "se:Fill")
        _sub(fill, "se:SvgParameter", color, name="fill")
    ET.indent(root, space=" ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
