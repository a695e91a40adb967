"""`geoseg features`: the 24-band GeoTIFF on the scene's exact grid, block by block."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from geoseg.errors import OutputError
from geoseg.features import feature_stack, get_recipe, read_features, write_feature_stack
from geoseg.features.writer import natural_colour_qml
from geoseg.io import open_scene


def test_written_stack_equals_read_features(demo_small, tmp_path: Path) -> None:
    scene = open_scene(demo_small.scene)
    out = write_feature_stack(scene, tmp_path / "stack.tif", block=96, progress=False)
    expected, valid = read_features(scene, Window(0, 0, 240, 240))
    with rasterio.open(out) as ds:
        assert ds.count == 24 and ds.dtypes[0] == "float32"
        assert ds.descriptions == get_recipe("s2_24").channel_names
        assert ds.crs == scene.grid.crs and ds.transform == scene.grid.affine
        assert (ds.width, ds.height) == (240, 240)
        assert ds.profile["tiled"] and ds.compression.name.lower() == "zstd"
        np.testing.assert_array_equal(ds.read(), expected)
        np.testing.assert_array_equal(ds.dataset_mask() > 0, valid)
        assert ds.tags()["recipe"] == "s2_24" and ds.tags()["offset"] == "-1000.0"
    # invalid pixels are 0 in all 24 channels, and the first 11 sum to 0 exactly there
    assert (expected[:, ~valid] == 0).all()
    assert (np.abs(expected[:11]).sum(axis=0)[valid] > 0).all()


def test_stack_qml_shows_natural_colour(demo_small, tmp_path: Path) -> None:
    """QGIS opens the stack as B04/B03/B02 with one fixed reflectance stretch (0–0.3), masked pixels clear."""
    out = write_feature_stack(open_scene(demo_small.scene), tmp_path / "stack.tif", block=128, progress=False)
    style = tmp_path / "stack.qml"
    assert style.stat().st_mtime_ns >= out.stat().st_mtime_ns  # written after the raster
    text = style.read_text(encoding="utf-8")
    renderer = ET.fromstring(text.split("\n", 1)[1]).find("pipe/rasterrenderer")
    with rasterio.open(out) as ds:
        descriptions = list(ds.descriptions)
        red = ds.read(descriptions.index("B04") + 1, masked=True)
    bands = [int(renderer.get(f"{c}Band")) for c in ("red", "green", "blue")]
    assert renderer.get("type") == "multibandcolor" and bands == [descriptions.index(b) + 1 for b in ("B04", "B03", "B02")]
    for colour in ("red", "green", "blue"):
        enhancement = renderer.find(f"{colour}ContrastEnhancement")
        assert (enhancement.findtext("minValue"), enhancement.findtext("maxValue")) == ("0", "0.3")
        assert enhancement.findtext("algorithm") == "StretchToMinimumMaximum"
    assert renderer.findtext("minMaxOrigin/limits") == "None"  # never a per-scene stretch
    entry = renderer.find("rasterTransparency/threeValuePixelList/pixelListEntry")
    assert entry.attrib == {"red": "0", "green": "0", "blue": "0", "percentTransparent": "100"}
    assert 0.01 < float(np.ma.median(red)) < 0.3  # the stack holds reflectance: the stretch fits it


def test_stack_style_needs_the_visible_bands(demo_small, tmp_path: Path) -> None:
    assert natural_colour_qml(["B08", "NDVI"]) is None
    (tmp_path / "mine.qml").write_text("<qgis>the user's style</qgis>")
    with pytest.raises(OutputError, match="mine.qml"):  # a user's style beside a new stack is never overwritten
        write_feature_stack(open_scene(demo_small.scene), tmp_path / "mine.tif", progress=False)
    assert (tmp_path / "mine.qml").read_text() == "<qgis>the user's style</qgis>"
    assert not (tmp_path / "mine.tif").exists()


def test_lazy_stack_is_chunked_and_matches(demo_small) -> None:
    scene = open_scene(demo_small.scene)
    ds = feature_stack(scene, block=64)
    assert ds.features.chunks is not None and ds.features.data.chunksize == (24, 64, 64)
    assert list(ds.band.values[-2:]) == ["NDRE3", "DRS"]
    sub = ds.features.isel(y=slice(70, 130), x=slice(100, 200)).values
    direct, _ = read_features(scene, Window(100, 70, 100, 60))
    np.testing.assert_array_equal(sub, direct)
    aff = scene.grid.affine
    assert ds.x.values[0] == aff.c + 5 and ds.y.values[0] == aff.f - 5


def test_cli_features_and_inspect(demo_small, tmp_path: Path) -> None:
    out = tmp_path / "cli_stack.tif"
    run = subprocess.run([sys.executable, "-m", "geoseg", "features", str(demo_small.scene), "--out", str(out),
                          "--no-progress"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "24 channels" in run.stdout and out.exists()
    run = subprocess.run([sys.executable, "-m", "geoseg", "inspect", str(demo_small.scene)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    text = run.stdout
    for expected in ("per_band", "EPSG:32633", "240 x 240 px at 10 m", "-1000 DN  [metadata]", "B8A@20m",
                     "B01@60m", "valid", "cloud high probability"):
        assert expected in text, expected


def test_compiled_kernel_equals_numpy_path(demo_small) -> None:
    from geoseg.features.kernel import compile_recipe_kernel
    from geoseg.io.reader import read_raw, read_valid

    scene = open_scene(demo_small.scene)
    recipe = get_recipe("s2_24")
    window = Window(0, 0, 240, 240)
    raw, invalid = read_raw(scene, window, recipe.required_bands)
    valid = read_valid(scene, window, invalid)
    reflectance = {b: (raw[i].astype(np.float64) - 1000) / 10000 for i, b in enumerate(recipe.required_bands)}
    numpy_path = recipe.compute(reflectance, valid)
    kernel = compile_recipe_kernel(recipe)
    assert kernel is not None
    fused = np.empty_like(numpy_path)
    kernel(raw, -1000.0, 10000.0, valid, fused)
    np.testing.assert_array_equal(fused, numpy_path)
