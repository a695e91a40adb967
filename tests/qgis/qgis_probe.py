"""Open outputs in a real headless QGIS and report what an analyst would see (run by Debian's python3).

Usage: ``/usr/bin/python3 qgis_probe.py OUT.json LAYER PNG [LAYER PNG ...]``

LAYER is a raster (GeoTIFF) or a GeoPackage of polygons (``.gpkg``). For each: validity, CRS,
the renderer QGIS chose (from the ``.qml`` beside a raster, from the ``layer_styles`` table
inside a GeoPackage) with its key settings, the legend, and a PNG: a raster at its own size
over its own extent (one image pixel per raster pixel), a vector 400 px wide. Never import
this from the project's interpreter: it needs Debian's ``qgis`` package.
"""

import json
import sys

VECTOR_WIDTH = 400


def renderer_settings(renderer):
    """The settings that decide what the analyst sees, per renderer type."""
    kind = renderer.type()
    if kind == "paletted":
        return {"classes": [[int(c.value), c.label, c.color.name()] for c in renderer.classes()]}
    if kind == "singlebandpseudocolor":
        shader = renderer.shader().rasterShaderFunction()
        return {"band": renderer.band(), "min": renderer.classificationMin(), "max": renderer.classificationMax(),
                "ramp_type": int(shader.colorRampType()),
                "ramp": [[item.value, item.color.name()] for item in shader.colorRampItemList()]}
    if kind == "multibandcolor":
        enhancements = (renderer.redContrastEnhancement(), renderer.greenContrastEnhancement(),
                        renderer.blueContrastEnhancement())
        transparency = renderer.rasterTransparency()
        return {"bands": [renderer.redBand(), renderer.greenBand(), renderer.blueBand()],
                "stretch": [[e.minimumValue(), e.maximumValue(), int(e.contrastEnhancementAlgorithm())]
                            for e in enhancements],
                "transparent": [[p.red, p.green, p.blue, p.percentTransparent]
                                for p in transparency.transparentThreeValuePixelList()] if transparency else []}
    if kind == "categorizedSymbol":
        return {"attribute": renderer.classAttribute(),
                "categories": [[int(c.value()), c.label(), c.symbol().color().name()] for c in renderer.categories()]}
    return {}


def render(layer, png, width, height):
    from qgis.core import QgsMapRendererParallelJob, QgsMapSettings
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(QSize(width, height))
    settings.setBackgroundColor(QColor(0, 0, 0, 0))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    saved = bool(job.renderedImage().save(png, "PNG"))
    del job, settings
    return saved


def probe_raster(path, png):
    from qgis.core import QgsRasterLayer

    layer = QgsRasterLayer(path, "raster", "gdal")
    out = {"valid": layer.isValid()}
    if not layer.isValid():
        return out
    provider, renderer = layer.dataProvider(), layer.renderer()
    out.update(
        crs=layer.crs().authid(), width=layer.width(), height=layer.height(), bands=layer.bandCount(),
        has_nodata=provider.sourceHasNoDataValue(1), nodata=provider.sourceNoDataValue(1),
        band_description=provider.generateBandName(1), renderer=renderer.type(),
        renderer_class=type(renderer).__name__, settings=renderer_settings(renderer),
        legend=[[label, color.name()] for label, color in renderer.legendSymbologyItems()],
    )
    out["rendered"] = render(layer, png, layer.width(), layer.height())
    del provider, renderer, layer  # before exitQgis(), or the interpreter crashes at exit
    return out


def probe_vector(path, png):
    from qgis.core import QgsVectorLayer, QgsWkbTypes

    layer = QgsVectorLayer(path, "polygons", "ogr")
    out = {"valid": layer.isValid()}
    if not layer.isValid():
        return out
    renderer = layer.renderer()
    extent = layer.extent()
    out.update(
        crs=layer.crs().authid(), features=layer.featureCount(), geometry=QgsWkbTypes.displayString(layer.wkbType()),
        fields=layer.fields().names(), sublayers=[s.split("!!::!!")[1] for s in layer.dataProvider().subLayers()],
        renderer=renderer.type(), renderer_class=type(renderer).__name__, settings=renderer_settings(renderer),
        legend=[[item.label(), item.symbol().color().name()] for item in renderer.legendSymbolItems()],
        extent=[extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()],
    )
    height = max(1, round(VECTOR_WIDTH * extent.height() / extent.width()))
    out["rendered"] = render(layer, png, VECTOR_WIDTH, height)
    del renderer, layer
    return out


def main(argv):
    from qgis.core import Qgis, QgsApplication

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    result = {"qgis_version": Qgis.QGIS_VERSION, "layers": {}}
    pairs = argv[2:]
    for path, png in zip(pairs[::2], pairs[1::2], strict=True):
        probe = probe_vector if path.lower().endswith(".gpkg") else probe_raster
        result["layers"][path] = probe(path, png)
    with open(argv[1], "w") as f:
        json.dump(result, f)
    app.exitQgis()


if __name__ == "__main__":
    main(sys.argv)
