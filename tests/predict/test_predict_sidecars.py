"""The styles QGIS reads: .aux.xml (category names + thematic RAT) and .qml of the map, the
confidence raster's viridis .qml and band metadata, and the polygons' ``layer_styles`` table."""

from __future__ import annotations

import sqlite3
import warnings
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
from geoseg.utils.qgis_style import VIRIDIS, pseudocolor_qml
from tests.predict._predict_helpers import SPARSE_CLASSES, pointwise_bundle, write_multiband_scene


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    root = tmp_path_factory.mktemp("sidecars")
    scene = write_multiband_scene(root / "scene.tif", 150, 130, seed=4)
    out = root / "out" / "landcover.tif"
    summary = predict_scene(scene, pointwise_bundle(SPARSE_CLASSES, window=64, seed=1), out, overlap=16,
                            device="cpu", vector=root / "out" / "classes.gpkg", confidence=root / "out" / "confidence.tif",
                            progress=False)
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
    confidence = out.with_name("confidence.tif")
    assert qml_path(confidence).stat().st_mtime_ns >= confidence.stat().st_mtime_ns
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "classes.gpkg", "confidence.qml", "confidence.tif", "landcover.qml", "landcover.tif",
        "landcover.tif.aux.xml"]  # no temporaries


def test_codes_and_vector_polygons(predicted):
    out, summary = predicted
    with rasterio.open(out) as ds:
        data = ds.read(1)
        pixel_area = abs(ds.transform.a * ds.transform.e)
    present = sorted(int(v) for v in np.unique(data) if v)
    assert set(present) <= {c.code for c in SPARSE_CLASSES} and len(present) >= 2
    frame = gpd.read_file(out.parent / "classes.gpkg", layer="land_cover")
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
    one = gpd.read_file(tmp_path / "one.gpkg", layer="land_cover")
    strips = gpd.read_file(tmp_path / "strips.gpkg", layer="land_cover")
    assert one["code"].tolist() == strips["code"].tolist()
    for a, b in zip(one.geometry, strips.geometry, strict=True):
        assert len(a.geoms) == len(b.geoms) and b.is_valid
        assert a.symmetric_difference(b).area == pytest.approx(0, abs=1e-6)


# ------------------------------------------------------------------------------ confidence
def _qml_root(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE qgis")
    return ET.fromstring(text.split("\n", 1)[1])


def test_viridis_is_matplotlibs() -> None:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    assert tuple(to_hex(colormaps["viridis"](i / 10)) for i in range(11)) == VIRIDIS


def test_confidence_qml_is_a_viridis_ramp_from_0_to_100(predicted):
    out, _ = predicted
    path = qml_path(out.with_name("confidence.tif"))
    assert path.name == "confidence.qml"
    renderer = _qml_root(path).find("pipe/rasterrenderer")
    assert renderer.get("type") == "singlebandpseudocolor" and renderer.get("band") == "1"
    assert (renderer.get("classificationMin"), renderer.get("classificationMax")) == ("0", "100")
    assert renderer.findtext("minMaxOrigin/limits") == "None"  # fixed limits, never from statistics
    shader = renderer.find("rastershader/colorrampshader")
    assert shader.get("colorRampType") == "INTERPOLATED"
    items = [(float(i.get("value")), i.get("color"), i.get("label")) for i in shader.findall("item")]
    assert items == [(10.0 * k, c, f"{10 * k} %") for k, c in enumerate(VIRIDIS)]


def test_confidence_band_metadata(predicted):
    out, _ = predicted
    with rasterio.open(out.with_name("confidence.tif")) as ds:
        assert ds.descriptions == ("confidence",) and ds.units == ("%",) and ds.nodata == 255
        assert ds.tags(1)["units"] == "percent" and ds.tags(1)["valid_range"] == "0 100"
        values = ds.read(1)
    assert values[values != 255].max() <= 100


def test_pseudocolor_needs_a_ramp_and_a_range():
    with pytest.raises(ValueError, match="maximum > minimum"):
        pseudocolor_qml(100, 0)
    with pytest.raises(ValueError, match="two colours"):
        pseudocolor_qml(0, 100, ["#000000"])


# ------------------------------------------------------------------------------ polygons' style
QGIS_STYLE_COLUMNS = ["id", "f_table_catalog", "f_table_schema", "f_table_name", "f_geometry_column", "styleName",
                      "styleQML", "styleSLD", "useAsDefault", "description", "owner", "ui", "update_time"]


@pytest.fixture(scope="module")
def gpkg(predicted):
    out, _ = predicted
    con = sqlite3.connect(out.with_name("classes.gpkg"))
    con.row_factory = sqlite3.Row
    yield con
    con.close()


def test_geopackage_is_version_1_2(gpkg):
    assert gpkg.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47  # "GPKG"
    assert gpkg.execute("PRAGMA user_version").fetchone()[0] == 10200  # QGIS 3.22's GDAL warns on 1.4


def test_layer_styles_table_as_qgis_writes_it(gpkg):
    columns = [row["name"] for row in gpkg.execute("PRAGMA table_info(layer_styles)")]
    assert columns == QGIS_STYLE_COLUMNS
    contents = {row["table_name"]: row["data_type"] for row in gpkg.execute("SELECT * FROM gpkg_contents")}
    assert contents == {"land_cover": "features", "layer_styles": "attributes"}
    geometry = gpkg.execute("SELECT column_name FROM gpkg_geometry_columns WHERE table_name = 'land_cover'").fetchone()
    rows = gpkg.execute("SELECT * FROM layer_styles").fetchall()
    assert len(rows) == 1
    row = rows[0]
    assert (row["f_table_name"], row["f_geometry_column"], row["useAsDefault"]) == ("land_cover", geometry[0], 1)
    assert row["styleName"] == "land_cover" and row["update_time"].endswith("Z")


def test_default_style_colours_polygons_by_class(gpkg):
    qml, sld = gpkg.execute("SELECT styleQML, styleSLD FROM layer_styles").fetchone()
    root = ET.fromstring(qml.split("\n", 1)[1])
    renderer = root.find("renderer-v2")
    assert renderer.get("type") == "categorizedSymbol" and renderer.get("attr") == "code"
    categories = [(int(c.get("value")), c.get("label"), c.get("symbol")) for c in renderer.find("categories")]
    assert [(v, label) for v, label, _ in categories] == [(c.code, c.name) for c in SPARSE_CLASSES]  # as the map
    fills = {s.get("name"): s.find("layer/prop[@k='color']").get("v") for s in renderer.find("symbols")}
    assert [fills[symbol] for *_, symbol in categories] == [f"{r},{g},{b},255" for r, g, b in
                                                             (c.rgb for c in SPARSE_CLASSES)]
    ns = {"se": "http://www.opengis.net/se", "ogc": "http://www.opengis.net/ogc"}
    rules = ET.fromstring(sld.split("\n", 1)[1]).findall(".//se:Rule", ns)
    assert [(r.findtext(".//ogc:Literal", namespaces=ns), r.findtext(".//se:SvgParameter", namespaces=ns))
            for r in rules] == [(str(c.code), c.color) for c in SPARSE_CLASSES]


def test_geopackage_is_recognised_as_geosegs_without_warnings(predicted):
    from geoseg.utils.outputs import written_by_geoseg

    out, _ = predicted
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. pyogrio's "more than one layer found"
        assert written_by_geoseg(out.with_name("classes.gpkg"))
