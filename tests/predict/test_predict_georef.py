"""Georeferencing: the land-cover COG sits on the input's exact grid, nodata exactly where invalid."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate

from geoseg.config.catalog import ClassDef
from geoseg.features import read_features
from geoseg.io import open_scene
from geoseg.io.grid import Grid
from geoseg.predict import predict_scene
from geoseg.stitch.output import CONFIDENCE_NODATA
from tests.conftest import shared
from tests.predict._predict_helpers import DEMO_CLASSES, input_grid, unet_bundle

TERRAMIND = ["282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0", "637U_59R_1_3"]
TERRAMIND_CLASSES = [
    ClassDef(code=c, name=n, color=col) for c, n, col in [
        (1, "water", "#419bdf"), (2, "trees", "#397d49"), (3, "flooded vegetation", "#7a87c6"), (4, "crops", "#e49635"),
        (5, "built area", "#c4281b"), (6, "bare ground", "#a59b8f"), (7, "snow / ice", "#a8ebff"),
        (8, "clouds", "#616161"), (9, "rangeland", "#e3e2c3")]
]


def _check_output(out, scene, source_grid: Grid, classes, conf=None):
    ok, errors, warnings = cog_validate(str(out), strict=True)
    assert ok, (errors, warnings)
    with rasterio.open(out) as ds:
        got = Grid.from_dataset(ds)
        assert got.transform == source_grid.transform  # bit for bit
        assert (got.width, got.height) == (source_grid.width, source_grid.height)
        assert got.crs == source_grid.crs and got.crs_wkt == source_grid.crs_wkt
        assert ds.dtypes[0] == "uint8" and ds.nodata == 0 and ds.count == 1
        assert ds.descriptions == ("land_cover",)
        assert ds.profile["blockxsize"] == 512 and ds.compression.name.lower() == "deflate"
        cmap = ds.colormap(1)
        for c in classes:
            assert cmap[c.code] == (*c.rgb, 255)
        assert cmap[0][3] == 0
        tags = ds.tags()
        assert tags["source_scene"] == scene.path and tags["geoseg_version"] and tags["model"].startswith("unet")
        assert tags["date"]
        data = ds.read(1)
    _, valid = read_features(scene, Window(0, 0, scene.grid.width, scene.grid.height), "s2_24")
    np.testing.assert_array_equal(data == 0, ~valid)  # nodata exactly where the input is invalid
    assert set(np.unique(data[valid])) <= {c.code for c in classes}
    if conf is not None:
        assert cog_validate(str(conf), strict=True)[0]
        with rasterio.open(conf) as ds:
            assert Grid.from_dataset(ds).transform == source_grid.transform and ds.nodata == CONFIDENCE_NODATA
            c = ds.read(1)
        np.testing.assert_array_equal(c == CONFIDENCE_NODATA, ~valid)
        assert c[valid].min() >= 100 // len(classes) and c[valid].max() <= 100
    return data


@pytest.fixture(scope="module")
def terramind_model(tmp_path_factory):
    return unet_bundle(tmp_path_factory.mktemp("models") / "terramind", TERRAMIND_CLASSES, window=96)


@pytest.mark.parametrize("sample", TERRAMIND)
def test_terramind_samples_keep_their_grid(sample, terramind_model, tmp_path):
    path = shared("terramind_examples", "S2L2A", f"{sample}.tif")
    scene = open_scene(path)
    out = tmp_path / "landcover.tif"
    summary = predict_scene(scene, terramind_model, out, overlap=32, batch_size=4, device="cpu",
                            confidence=tmp_path / "conf.tif", progress=False)
    data = _check_output(out, scene, input_grid(path), TERRAMIND_CLASSES, conf=tmp_path / "conf.tif")
    assert summary.pixels == 224 * 224 and summary.valid_pixels == int((data > 0).sum())
    assert sum(c.pixels for c in summary.classes) == summary.valid_pixels
    assert summary.crs == scene.grid.crs.to_string()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conf.qml", "conf.tif", "landcover.qml", "landcover.tif",
                                                          "landcover.tif.aux.xml"]


def test_terramind_zones_differ():
    """The five samples really span five UTM zones (the test above covers five CRSs)."""
    crs = {open_scene(shared("terramind_examples", "S2L2A", f"{s}.tif")).grid.crs.to_epsg() for s in TERRAMIND}
    assert len(crs) == 5


def test_demo_per_band_scene(demo_small, tmp_path):
    """A per-band scene (10/20/60 m files, SCL clouds): output on the 10 m band files' grid."""
    scene = open_scene(demo_small.scene)
    ten_m = next(p for p in sorted(demo_small.scene.iterdir()) if "_B02_" in p.name)
    bundle = unet_bundle(tmp_path / "model", DEMO_CLASSES, window=80)
    out = tmp_path / "out" / "landcover.tif"
    summary = predict_scene(scene, bundle, out, overlap=16, batch_size=4, device="cpu", progress=False)
    data = _check_output(out, scene, input_grid(ten_m), DEMO_CLASSES)
    assert 0 < summary.valid_fraction < 1  # the demo's clouds are nodata
    assert summary.valid_fraction == pytest.approx((data > 0).mean())
    hectares = sum(c.hectares for c in summary.classes)
    assert hectares == pytest.approx(summary.valid_pixels * 100 / 10_000)
    with rasterio.open(out) as ds:
        assert ds.overviews(1) == []  # 240 px fits in one 512 tile: no overview needed
