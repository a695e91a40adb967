"""Draw geoseg's outputs with QGIS's own map and legend renderers: the pictures of the README.

Usage (Debian's interpreter, which has ``qgis``; never the project's)::

    /usr/bin/python3 -I tests/qgis/render_docs.py LANDCOVER.tif CONFIDENCE.tif POLYGONS.gpkg OUT_DIR [WIDTH]

Writes ``OUT_DIR/qgis_landcover.png``, ``qgis_confidence.png`` and ``qgis_polygons.png``: each
layer drawn with the style QGIS loads for it (the ``.qml`` beside a raster, the ``layer_styles``
table inside the GeoPackage), a map ``WIDTH`` px wide (default 360) with the layer's QGIS legend
beside it, on white, saved as an 8-bit palette PNG (a few tens of KB). Runs headless:
``QT_QPA_PLATFORM`` defaults to ``offscreen`` and QGIS's profile goes to a temporary folder.
tests/qgis runs it on the tiny pipeline's outputs. The pictures in docs/images/ are the demo
pipeline's (``pipelines/demo.yaml`` with ``vector: true`` in its predict step), drawn with::

    /usr/bin/python3 -I tests/qgis/render_docs.py runs/demo/predict/maps/demo.tif \
        runs/demo/predict/maps/demo_confidence.tif runs/demo/predict/maps/demo_classes.gpkg docs/images
"""

import collections
import json
import os
import sys
import tempfile

NAMES = ("qgis_landcover.png", "qgis_confidence.png", "qgis_polygons.png")
DPI = 96
LEGEND_FONT_PT = 9


def _map_image(layer, width):
    """The layer over its own extent, ``width`` px wide, as QGIS draws it."""
    from qgis.core import QgsMapRendererCustomPainterJob, QgsMapSettings
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor, QImage, QPainter

    extent = layer.extent()
    height = max(1, round(width * extent.height() / extent.width()))
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(extent)
    settings.setOutputSize(QSize(width, height))
    settings.setOutputDpi(DPI)
    settings.setBackgroundColor(QColor("white"))
    image = QImage(width, height, QImage.Format_ARGB32_Premultiplied)
    image.fill(QColor("white"))
    painter = QPainter(image)
    job = QgsMapRendererCustomPainterJob(settings, painter)
    job.start()
    job.waitForFinished()
    painter.end()
    del job, painter, settings
    return image


def _legend_image(layer, height):
    """The layer's legend (its symbols and labels) as QGIS's legend renderer draws it."""
    from qgis.core import (
        QgsLayerTree,
        QgsLayerTreeModel,
        QgsLegendRenderer,
        QgsLegendSettings,
        QgsLegendStyle,
        QgsRenderContext,
    )
    from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter

    root = QgsLayerTree()
    root.addLayer(layer)
    model = QgsLayerTreeModel(root)
    settings = QgsLegendSettings()
    settings.setTitle("")
    for part in (QgsLegendStyle.Group, QgsLegendStyle.Subgroup, QgsLegendStyle.SymbolLabel):
        style = settings.style(part)
        style.setFont(QFont("DejaVu Sans", LEGEND_FONT_PT))
        settings.setStyle(part, style)
    legend = QgsLegendRenderer(model, settings)
    dots_per_mm = DPI / 25.4
    size = legend.minimumSize()  # millimetres
    image = QImage(max(1, round(size.width() * dots_per_mm)), height, QImage.Format_ARGB32_Premultiplied)
    image.fill(QColor("white"))
    painter = QPainter(image)
    painter.setRenderHint(QPainter.Antialiasing)
    context = QgsRenderContext.fromQPainter(painter)
    context.setScaleFactor(dots_per_mm)
    painter.scale(dots_per_mm, dots_per_mm)  # the legend draws in millimetres
    legend.drawLegend(context)
    painter.end()
    del painter, context, legend, model, root
    return image


def _palette_image(image, colours=256):
    """``image`` as 8-bit palette: its most frequent colours, each pixel mapped to the closest.

    Class colours, white and the ramp's colours are frequent, so they stay exact; only rare
    anti-aliasing tints move. (Qt's own conversion falls back to a web palette past 256 colours.)
    """
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtGui import QImage

    rgb = image.convertToFormat(QImage.Format_RGB32)
    data = rgb.constBits().asstring(rgb.sizeInBytes())
    counts = collections.Counter(data[i : i + 4] for i in range(0, len(data), 4))
    table = [int.from_bytes(pixel, "little") | 0xFF000000 for pixel, _ in counts.most_common(colours)]
    return rgb.convertToFormat(QImage.Format_Indexed8, table, Qt.ThresholdDither | Qt.AvoidDither)


def render(layer, png, width):
    """Map and legend side by side on white, saved as a palette PNG; returns what was drawn."""
    from qgis.PyQt.QtGui import QColor, QImage, QPainter

    chart = _map_image(layer, width)
    legend = _legend_image(layer, chart.height())
    gap = 12
    image = QImage(chart.width() + gap + legend.width(), chart.height(), QImage.Format_ARGB32_Premultiplied)
    image.fill(QColor("white"))
    painter = QPainter(image)
    painter.drawImage(0, 0, chart)
    painter.drawImage(chart.width() + gap, 0, legend)
    painter.end()
    saved = _palette_image(image).save(png, "PNG", 0)  # 0 = smallest file
    return {"saved": bool(saved), "width": image.width(), "height": image.height(), "map_width": chart.width(),
            "legend_width": legend.width()}


def main(argv):
    if len(argv) not in (5, 6):
        sys.exit(__doc__)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("QGIS_CUSTOM_CONFIG_PATH", tempfile.mkdtemp(prefix="qgis-profile-"))
    from qgis.core import QgsApplication, QgsRasterLayer, QgsVectorLayer

    landcover, confidence, polygons, out_dir = argv[1:5]
    width = int(argv[5]) if len(argv) == 6 else 360
    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    os.makedirs(out_dir, exist_ok=True)
    layers = [QgsRasterLayer(landcover, "land cover", "gdal"), QgsRasterLayer(confidence, "confidence", "gdal"),
              QgsVectorLayer(polygons, "class polygons", "ogr")]
    report = {}
    for layer, name, source in zip(layers, NAMES, (landcover, confidence, polygons), strict=True):
        if not layer.isValid():
            sys.exit(f"QGIS cannot open {source}")
        report[name] = render(layer, os.path.join(out_dir, name), width)
    print(json.dumps(report))
    del layers, layer
    app.exitQgis()


if __name__ == "__main__":
    main(sys.argv)
