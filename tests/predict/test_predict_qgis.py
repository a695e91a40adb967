"""A real QGIS (Debian's 3.22, headless) opens our land-cover GeoTIFF with names and colours.

Runs Debian's ``/usr/bin/python3`` in a clean subprocess (never importing Debian's ``qgis`` or
``osgeo`` into the project's interpreter), as /work/shared/QGIS.md describes. Skipped when QGIS
is not installed, unless ``GEOSEG_REQUIRE_QGIS=1`` (CI installs it; then a missing QGIS fails).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoseg.predict import predict_scene
from tests.predict._predict_helpers import SPARSE_CLASSES, pointwise_bundle, write_multiband_scene

pytestmark = pytest.mark.qgis

DEBIAN_PYTHON = "/usr/bin/python3"

QGIS_SCRIPT = r"""
import json, sys
from qgis.core import (QgsApplication, QgsMapRendererParallelJob, QgsMapSettings,
                       QgsPalettedRasterRenderer, QgsRasterLayer)
from qgis.PyQt.QtCore import QSize
from osgeo import gdal

QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], False)
app.initQgis()


def inspect(path, png):
    layer = QgsRasterLayer(path, "landcover", "gdal")
    renderer = layer.renderer()
    out = {
        "valid": layer.isValid(), "crs": layer.crs().authid(), "nodata": layer.dataProvider().sourceNoDataValue(1),
        "renderer": type(renderer).__name__,
        "classes": [[int(c.value), c.label, c.color.name()] for c in renderer.classes()]
        if isinstance(renderer, QgsPalettedRasterRenderer) else [],
    }
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(QSize(130, 150))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    out["rendered"] = job.renderedImage().save(png, "PNG")
    del job, settings, renderer, layer
    return out


result = {"with_qml": inspect(sys.argv[1], sys.argv[3]), "without_qml": inspect(sys.argv[2], sys.argv[4])}
ds = gdal.Open(sys.argv[2])
ds.GetGeoTransform()  # GDAL 3.6 loads the PAM sidecar lazily
band = ds.GetRasterBand(1)
rat = band.GetDefaultRAT()
result["gdal"] = {
    "version": gdal.__version__, "categories": band.GetCategoryNames(), "description": band.GetDescription(),
    "rat": [[rat.GetValueAsString(r, c) for c in range(rat.GetColumnCount())] for r in range(rat.GetRowCount())],
    "rat_columns": [rat.GetNameOfCol(c) for c in range(rat.GetColumnCount())],
}
del band, ds, rat
print("RESULT " + json.dumps(result))
app.exitQgis()
"""


def _qgis_available() -> bool:
    if not Path(DEBIAN_PYTHON).exists():
        return False
    probe = subprocess.run([DEBIAN_PYTHON, "-c", "import qgis.core, osgeo.gdal"], capture_output=True,
                           env={"PATH": "/usr/bin:/bin"})
    return probe.returncode == 0


@pytest.fixture(scope="module")
def qgis_result(tmp_path_factory):
    if not _qgis_available():
        if os.environ.get("GEOSEG_REQUIRE_QGIS") == "1":
            pytest.fail("QGIS is required (GEOSEG_REQUIRE_QGIS=1) but python3-qgis is not installed")
        pytest.skip("Debian's QGIS is not installed (apt-get install python3-qgis qgis-providers qgis)")
    root = tmp_path_factory.mktemp("qgis")
    scene = write_multiband_scene(root / "scene.tif", 150, 130, seed=4)
    out = root / "styled" / "landcover.tif"
    predict_scene(scene, pointwise_bundle(SPARSE_CLASSES, window=64, seed=1), out, device="cpu", progress=False)
    bare = root / "bare"
    bare.mkdir()
    for name in ("landcover.tif", "landcover.tif.aux.xml"):  # no .qml: QGIS must use the PAM sidecar
        shutil.copy(out.parent / name, bare / name)
    env = {"PATH": "/usr/bin:/bin", "QT_QPA_PLATFORM": "offscreen", "HOME": str(root),
           "QGIS_CUSTOM_CONFIG_PATH": str(root / "qgis-profile"), "XDG_RUNTIME_DIR": str(root)}
    proc = subprocess.run([DEBIAN_PYTHON, "-c", QGIS_SCRIPT, str(out), str(bare / "landcover.tif"),
                           str(root / "styled.png"), str(root / "bare.png")],
                          capture_output=True, text=True, env=env, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"QGIS script failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    with rasterio.open(out) as ds:
        data = ds.read(1)
    return json.loads(lines[0][len("RESULT "):]), root, data


def test_qgis_reads_styled_layer(qgis_result):
    result, _, _ = qgis_result
    layer = result["with_qml"]
    assert layer["valid"] and layer["crs"] == "EPSG:32633" and layer["nodata"] == 0
    assert layer["renderer"] == "QgsPalettedRasterRenderer"
    # the .qml gives a clean legend: exactly the model's classes, names and colours
    assert layer["classes"] == [[c.code, c.name, c.color] for c in SPARSE_CLASSES]


def test_qgis_without_qml_takes_names_from_the_aux_xml(qgis_result):
    result, _, _ = qgis_result
    layer = result["without_qml"]
    assert layer["renderer"] == "QgsPalettedRasterRenderer"
    labels = {value: (label, color) for value, label, color in layer["classes"]}
    for c in SPARSE_CLASSES:
        assert labels[c.code] == (c.name, c.color)
    gdal = result["gdal"]
    assert gdal["description"] == "land_cover"
    assert {i: n for i, n in enumerate(gdal["categories"]) if n} == {c.code: c.name for c in SPARSE_CLASSES}
    assert gdal["rat_columns"] == ["Value", "Class", "Red", "Green", "Blue"]
    assert gdal["rat"] == [[str(c.code), c.name, *map(str, c.rgb)] for c in SPARSE_CLASSES]


def test_qgis_renders_the_class_colours(qgis_result):
    import matplotlib.image as mpimg

    result, root, data = qgis_result
    assert result["with_qml"]["rendered"] and result["without_qml"]["rendered"]
    png = (mpimg.imread(root / "styled.png")[..., :3] * 255).round().astype(int)
    colours = {tuple(px) for px in png.reshape(-1, 3)}
    present = {int(v) for v in np.unique(data) if v}
    for c in SPARSE_CLASSES:
        if c.code in present and (data == c.code).mean() > 0.02:
            assert tuple(c.rgb) in colours, f"{c.name} ({c.color}) is not drawn"
