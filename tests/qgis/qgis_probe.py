"""Open rasters in a real headless QGIS and report what an analyst would see (run by Debian's python3).

Usage: ``/usr/bin/python3 qgis_probe.py OUT.json RASTER PNG [RASTER PNG ...]``

For each raster: validity, CRS, size, nodata, renderer type, the paletted renderer's classes
(value, label, colour), the legend entries, and a PNG rendered at the raster's own size over
its own extent (one image pixel per raster pixel). Never import this from the project's
interpreter: it needs Debian's ``qgis`` package.
"""

import json
import sys


def probe(path, png):
    from qgis.core import QgsMapRendererParallelJob, QgsMapSettings, QgsRasterLayer
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    layer = QgsRasterLayer(path, "landcover", "gdal")
    out = {"valid": layer.isValid()}
    if not layer.isValid():
        return out
    provider = layer.dataProvider()
    renderer = layer.renderer()
    out.update(
        crs=layer.crs().authid(),
        width=layer.width(),
        height=layer.height(),
        has_nodata=provider.sourceHasNoDataValue(1),
        nodata=provider.sourceNoDataValue(1),
        renderer=renderer.type(),
        renderer_class=type(renderer).__name__,
        legend=[[label, color.name()] for label, color in layer.legendSymbologyItems()],
    )
    if hasattr(renderer, "classes"):
        out["classes"] = [[int(c.value), c.label, c.color.name()] for c in renderer.classes()]
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(QSize(layer.width(), layer.height()))
    settings.setBackgroundColor(QColor(0, 0, 0, 0))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    out["rendered"] = bool(job.renderedImage().save(png, "PNG"))
    del job, settings, renderer, provider, layer  # before exitQgis(), or the interpreter crashes at exit
    return out


def main(argv):
    from qgis.core import Qgis, QgsApplication

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    result = {"qgis_version": Qgis.QGIS_VERSION, "layers": {}}
    pairs = argv[2:]
    for raster, png in zip(pairs[::2], pairs[1::2], strict=True):
        result["layers"][raster] = probe(raster, png)
    with open(argv[1], "w") as f:
        json.dump(result, f)
    app.exitQgis()


if __name__ == "__main__":
    main(sys.argv)
