"""The fused kernel (resampling + masking + indices in one compiled pass) equals the numpy path bit for bit."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from geoseg.features import fused as fused_module
from geoseg.features import get_recipe, read_features
from geoseg.features import stack as stack_module
from geoseg.features.kernel import compile_recipe_kernel
from geoseg.io import open_scene, resample
from geoseg.io.reader import read_raw, read_valid
from tests.conftest import shared
from tests.foundation.test_radiometry import REAL, _without_b08

pytest.importorskip("numba")


def _numpy_resampling(scene, window, recipe):
    """Today's two-step path: numpy resampling and masking (read_raw), then the index kernel."""
    raw, invalid = read_raw(scene, window, recipe.required_bands)
    valid = read_valid(scene, window, invalid)
    out = np.empty((recipe.num_channels, *valid.shape), dtype=np.float32)
    compile_recipe_kernel(recipe)(raw, float(scene.offset.offset), float(scene.scale), valid, out)
    return out, valid


def _pure_numpy(monkeypatch: pytest.MonkeyPatch, scene, window, recipe):
    """read_features as without numba: every compiled kernel unavailable."""
    with monkeypatch.context() as m:
        m.setattr(stack_module, "compile_fused_kernel", lambda recipe: None)
        m.setattr(stack_module, "compile_recipe_kernel", lambda recipe: None)
        m.setattr(resample, "_bilinear_kernel", lambda: None)
        return read_features(scene, window, recipe)


def _assert_same(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> None:
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].dtype == b[0].dtype == np.float32 and a[0].shape == b[0].shape
    np.testing.assert_array_equal(a[0].view(np.uint32), b[0].view(np.uint32))  # bits: signed zeros, NaN


def _check(scene, window, recipe, monkeypatch) -> tuple[np.ndarray, np.ndarray]:
    assert fused_module.compile_fused_kernel(recipe) is not None
    fused = read_features(scene, window, recipe)
    _assert_same(fused, _numpy_resampling(scene, window, recipe))
    _assert_same(fused, _pure_numpy(monkeypatch, scene, window, recipe))
    return fused


@pytest.mark.parametrize("case", list(REAL))
def test_fused_equals_numpy_resampling_on_real_samples(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parts, options, window = REAL[case]
    scene = open_scene(shared(*parts), **options)
    window = window or Window(0, 0, scene.grid.width, scene.grid.height)
    recipe = get_recipe("s2_24") if "B08" in scene.bands else _without_b08()
    _, valid = _check(scene, window, recipe, monkeypatch)
    assert valid.any()


@pytest.mark.parametrize("window", [Window(0, 0, 240, 240), Window(37, 101, 150, 61), Window(239, 0, 1, 240)])
def test_fused_equals_numpy_resampling_on_the_demo(demo_small, window, monkeypatch: pytest.MonkeyPatch) -> None:
    scene = open_scene(demo_small.scene)
    _, valid = _check(scene, window, get_recipe("s2_24"), monkeypatch)
    assert valid.any()
    if window.width == window.height == 240:  # the scene has masked pixels (SCL clouds, nodata)
        assert not valid.all()


def _poisoned_scene(demo, root: Path) -> Path:
    """The demo's per-band files with float32 B05 (NaN, inf), nodata in B01 and B03, and an external mask."""
    folder = root / Path(demo.scene).name
    shutil.copytree(demo.scene, folder)
    for path in sorted(folder.glob("*.tif")):
        for band, dtype, values in (("_B05_", "float32", (np.nan, np.inf, -np.inf)), ("_B01_", None, (0,)),
                                    ("_B03_", None, (0,))):
            if band not in path.name:
                continue
            with rasterio.open(path) as ds:
                profile, data = ds.profile, ds.read(1)
            profile["dtype"] = dtype or profile["dtype"]
            data = data.astype(profile["dtype"])
            rng = np.random.default_rng(len(band))
            for value in values:
                rows, cols = rng.integers(0, data.shape[0], 12), rng.integers(0, data.shape[1], 12)
                data[rows, cols] = value
            with rasterio.open(path, "w", **profile) as ds:
                ds.write(data, 1)
    scl = next(folder.glob("*_SCL_*.tif"))
    with rasterio.open(scl) as ds:
        profile = ds.profile
        mask = (np.random.default_rng(0).random((ds.height, ds.width)) < 0.02).astype("uint8")
    with rasterio.open(root / "mask.tif", "w", **{**profile, "nodata": None}) as ds:
        ds.write(mask, 1)
    return folder


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy interpolating inf
def test_fused_equals_numpy_on_nan_inf_nodata_and_mask(demo_small, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _poisoned_scene(demo_small, tmp_path)
    recipe = get_recipe("s2_24")
    for options in ({}, {"mask": tmp_path / "mask.tif"}, {"invalid_scl": ()}):
        scene = open_scene(folder, **options)
        assert scene.bands["B05"].dtype == "float32"
        for window in (Window(0, 0, 240, 240), Window(13, 57, 101, 77)):
            features, valid = _check(scene, window, recipe, monkeypatch)
            assert (features[:, ~valid] == 0).all()


def test_scl_on_the_scene_grid(demo_small, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 20 m scene: the SCL (20 m) is on the scene grid; the kernel used to index past its empty look-up (a crash)."""
    scene = open_scene(demo_small.scene, resolution=20)
    assert scene.scl is not None and scene.scl.grid.same_as(scene.grid)
    window = Window(3, 5, 100, 90)
    recipe = get_recipe("s2_24")
    fused = read_features(scene, window, recipe)
    _assert_same(fused, _pure_numpy(monkeypatch, scene, window, recipe))
    assert fused[1].any() and not fused[1].all()  # the SCL masks some pixels


def test_fused_values_do_not_depend_on_the_window(demo_small) -> None:
    scene = open_scene(demo_small.scene)
    union, valid = read_features(scene, Window(20, 30, 200, 150), "s2_24")
    part, part_valid = read_features(scene, Window(61, 47, 90, 70), "s2_24")
    np.testing.assert_array_equal(part.view(np.uint32), union[:, 17:87, 41:131].view(np.uint32))
    np.testing.assert_array_equal(part_valid, valid[17:87, 41:131])


def test_without_numba_no_kernel_is_generated(monkeypatch: pytest.MonkeyPatch) -> None:
    from geoseg.features.kernel import load_generated

    monkeypatch.setitem(__import__("sys").modules, "numba", None)  # import numba raises ImportError
    assert load_generated("fused", "s2_24", fused_module.fused_source(get_recipe("s2_24"))) is None
