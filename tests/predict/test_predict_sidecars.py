"""The .aux.xml (category names + thematic RAT) and .qml list exactly the model's classes."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import geopandas as gpd
import numpy as np
import pytest
import rasterio

from geoseg.predict import predict_scene
from geoseg.stitch import pam_xml, qml_xml
from geoseg.stitch.sidecars import (
    GFU_BLUE,
    GFU_GREEN,
    GFU_MINMAX,
    GFU_NAME,
    GFU_RED,
    aux_xml_path,
    qml_path,
)
from tests.predict._predict_helpers import SPARSE_CLASSES, pointwise_bundle, write_multiband_scene


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    root = tmp_path_factory.mktemp("sidecars")
    scene = write_multiband_scene(root / "scene.tif", 150, 130, seed=4)
    out = root / "out" / "landcover.tif"
    summary = predict_scene(scene, pointwise_bundle(SPARSE_CLASSES, window=64, seed=1), out, overlap=16,
                            device="cpu", vector=root / "out" / "classes.gpkg", progress=False)
    return out, summary


def test_aux_xml_category_names_and_rat(predicted):
    out, _ = predicted
    band = ET.parse(aux_xml_path(out)).getroot().find("PAMRasterBand")
    assert band.get("band") == "1"
    cats = [c.text or "" for c in band.find("CategoryNames").findall("Category")]
    assert len(cats) == max(c.code for c in SPARSE_CLASSES) + 1  # entry i = pixel value i
    assert {i: n for i, n in enumerate(cats) if n} == {c.code: c.name for c in SPARSE_CLASSES}
    rat = band.find("GDALRasterAttributeTable")
    assert rat.get("tableType") == "thematic"
    fields = [(f.findtext("Name"), int(f.findtext("Type")), int(f.findtext("Usage"))) for f in rat.findall("FieldDefn")]
    assert fields == [("Value", 0, GFU_MINMAX), ("Class", 2, GFU_NAME), ("Red", 0, GFU_RED),
                      ("Green", 0, GFU_GREEN), ("Blue", 0, GFU_BLUE)]
    rows = [[f.text for f in row.findall("F")] for row in rat.findall("Row")]
    assert rows == [[str(c.code), c.name, *map(str, c.rgb)] for c in SPARSE_CLASSES]  # no nodata row


def test_qml_lists_exactly_the_classes(predicted):
    out, _ = predicted
    path = qml_path(out)
    assert path.name == "landcover.qml"  # not landcover.tif.qml
    text = path.read_text()
    root = ET.fromstring(text.split("\n", 1)[1])
    renderer = root.find("pipe/rasterrenderer")
    assert renderer.get("type") == "paletted" and renderer.get("band") == "1"
    entries = [(int(e.get("value")), e.get("label"), e.get("color"), e.get("alpha"))
               for e in renderer.find("colorPalette").findall("paletteEntry")]
    assert entries == [(c.code, c.name, c.color, "255") for c in SPARSE_CLASSES]


def test_sidecars_are_written_after_the_tif(predicted):
    out, _ = predicted
    assert aux_xml_path(out).stat().st_mtime_ns >= out.stat().st_mtime_ns
    assert qml_path(out).stat().st_mtime_ns >= out.stat().st_mtime_ns
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "classes.gpkg", "landcover.qml", "landcover.tif", "landcover.tif.aux.xml"]  # no temporaries


def test_codes_and_vector_polygons(predicted):
    out, summary = predicted
    with rasterio.open(out) as ds:
        data = ds.read(1)
        pixel_area = abs(ds.transform.a * ds.transform.e)
    present = sorted(int(v) for v in np.unique(data) if v)
    assert set(present) <= {c.code for c in SPARSE_CLASSES} and len(present) >= 2
    frame = gpd.read_file(out.parent / "classes.gpkg")
    assert frame["code"].tolist() == present
    names = {c.code: c.name for c in SPARSE_CLASSES}
    assert frame["name"].tolist() == [names[c] for c in present]
    for _, row in frame.iterrows():
        count = int((data == row["code"]).sum())
        assert row["pixels"] == count
        assert row.geometry.area == pytest.approx(count * pixel_area)  # dissolved, nothing lost
        assert row.geometry.is_valid
    assert {c.code: c.pixels for c in summary.classes if c.pixels} == dict(zip(frame["code"], frame["pixels"], strict=True))


def test_pam_and_qml_text_are_deterministic():
    assert pam_xml(SPARSE_CLASSES) == pam_xml(list(reversed(SPARSE_CLASSES)))
    assert 'value="0"' not in qml_xml(SPARSE_CLASSES)  # nodata is left out of the legend
    assert qml_xml(SPARSE_CLASSES).startswith("<!DOCTYPE qgis")


def test_polygons_dissolve_across_strips(predicted, tmp_path):
    """Reading the raster in strips gives the same polygons as reading it at once."""
    from geoseg.stitch import polygonize_classes

    out, _ = predicted
    polygonize_classes(out, tmp_path / "one.gpkg", SPARSE_CLASSES, strip_rows=10_000)
    polygonize_classes(out, tmp_path / "strips.gpkg", SPARSE_CLASSES, strip_rows=37)
    one, strips = gpd.read_file(tmp_path / "one.gpkg"), gpd.read_file(tmp_path / "strips.gpkg")
    assert one["code"].tolist() == strips["code"].tolist()
    for a, b in zip(one.geometry, strips.geometry, strict=True):
        assert len(a.geoms) == len(b.geoms) and b.is_valid
        assert a.symmetric_difference(b).area == pytest.approx(0, abs=1e-6)
