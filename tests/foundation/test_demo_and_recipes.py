"""The demo scene generator and recipes-as-data."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from geoseg.demo import DEMO_CLASSES, generate_demo_scene
from geoseg.errors import ConfigError
from geoseg.features import get_recipe, list_recipes, read_features
from geoseg.features.formula import compile_formula
from geoseg.io import open_scene, read_scl


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.tif")):
        with rasterio.open(path) as ds:
            h.update(ds.read().tobytes())
    return h.hexdigest()


def test_demo_is_seeded_and_realistic(demo_small, tmp_path: Path) -> None:
    again = generate_demo_scene(tmp_path / "again", size=240, seed=3, progress=False)
    assert _digest(again.root) == _digest(demo_small.root)
    other = generate_demo_scene(tmp_path / "other", size=240, seed=4, progress=False)
    assert _digest(other.root) != _digest(demo_small.root)

    scene = open_scene(demo_small.scene)
    resolutions = {b: f.resolution for b, f in scene.bands.items()}
    assert resolutions["B02"] == 10 and resolutions["B05"] == 20 and resolutions["B01"] == 60
    assert "B10" not in resolutions and len(resolutions) == 12
    with rasterio.open(demo_small.labels) as ds:
        labels = ds.read(1)
    assert set(np.unique(labels)) == {c for c, _, _ in DEMO_CLASSES}
    scl = read_scl(scene, Window(0, 0, 240, 240))
    for code in (0, 4, 6, 9):  # no-data edge, vegetation, water, clouds
        assert (scl == code).any(), code


def test_demo_classes_have_distinct_spectra(demo_small) -> None:
    scene = open_scene(demo_small.scene)
    features, valid = read_features(scene, Window(0, 0, 240, 240))
    with rasterio.open(demo_small.labels) as ds:
        labels = ds.read(1)
    means = {}
    for code, _, _ in DEMO_CLASSES:
        sel = valid & (labels == code)
        if sel.sum() > 20:
            means[code] = features[:, sel].mean(axis=1)
    codes = sorted(means)
    assert len(codes) >= 5
    gaps = [np.abs(means[a] - means[b]).max() for i, a in enumerate(codes) for b in codes[i + 1 :]]
    assert min(gaps) > 0.02


def test_demo_size_must_be_multiple_of_6(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--size 1026"):
        generate_demo_scene(tmp_path / "x", size=1024)
    assert not (tmp_path / "x").exists()


def test_division_by_zero_gives_zero() -> None:
    ndvi = compile_formula("(B8A - B04) / (B8A + B04)")
    b8a, b04 = np.array([0.3, 0.0, 0.2]), np.array([0.1, 0.0, 0.2])
    np.testing.assert_allclose(ndvi({"B8A": b8a, "B04": b04}), [0.5, 0.0, 0.0])
    cig = compile_formula("B8A / B03 - 1")
    np.testing.assert_allclose(cig({"B8A": np.array([0.4, 0.4]), "B03": np.array([0.2, 0.0])}), [1.0, -1.0])


@pytest.mark.parametrize("bad", ["__import__('os')", "B04.real", "B04 % 2", "open(B04)", "(B04"])
def test_formulas_are_only_arithmetic(bad: str) -> None:
    with pytest.raises(ConfigError):
        compile_formula(bad)


def test_recipes_are_data() -> None:
    assert {"s2_24", "rgb", "s2_l2a_12"} <= set(list_recipes())
    assert get_recipe("rgb").channel_names == ("B04", "B03", "B02")
    assert get_recipe("s2_24").required_bands == ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
    with pytest.raises(ConfigError, match="did you mean 's2_24'"):
        get_recipe("s2-24")


def test_demo_safe_layout_reads_like_a_product(tmp_path: Path, demo_small) -> None:
    demo = generate_demo_scene(tmp_path / "safe", size=240, seed=3, layout="safe", progress=False)
    assert demo.scene.suffix == ".SAFE" and (demo.scene / "MTD_MSIL2A.xml").exists()
    safe = open_scene(demo.scene)
    assert safe.layout == "safe" and safe.level == "L2A"
    assert safe.offset.offset == -1000 and "MTD_MSIL2A.xml" in safe.offset.detail
    per_band = open_scene(demo_small.scene)
    a, va = read_features(safe, Window(0, 0, 240, 240))
    b, vb = read_features(per_band, Window(0, 0, 240, 240))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(va, vb)
