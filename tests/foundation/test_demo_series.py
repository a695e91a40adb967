"""The seasonal demo (``geoseg demo-data --dates N``): dates, clouds, phenology, determinism."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.windows import Window
from scipy import ndimage

from geoseg.cli.main import cli
from geoseg.cli.scene_cmds import _MAX_DATES
from geoseg.demo import DEMO_CLASSES, generate_demo_scene, generate_demo_series, season_dates
from geoseg.demo.series import MAX_DATES
from geoseg.errors import ConfigError
from geoseg.io import open_scene, read_scl, read_window

SIZE, SEED = 240, 0
BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]  # 10 and 20 m


@pytest.fixture(scope="module")
def season(tmp_path_factory: pytest.TempPathFactory):
    return generate_demo_series(tmp_path_factory.mktemp("season") / "s", size=SIZE, seed=SEED, dates=6, progress=False)


@pytest.fixture(scope="module")
def pixels(season):
    """Reflectance ``(h, w, dates, bands)``, valid ``(dates, h, w)``, SCL ``(dates, h, w)``, labels."""
    window = Window(0, 0, SIZE, SIZE)
    refl, valid, scl = [], [], []
    for scene in season.scenes:
        opened = open_scene(scene)
        bands, ok = read_window(opened, window, BANDS)
        refl.append(np.stack([bands[b] for b in BANDS], axis=-1))
        valid.append(ok)
        scl.append(read_scl(opened, window))
    with rasterio.open(season.labels) as ds:
        labels = ds.read(1)
    return np.stack(refl, axis=2), np.stack(valid), np.stack(scl), labels


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_each_date_is_a_demo_scene_on_the_same_grid(season, tmp_path: Path) -> None:
    assert len(season.scenes) == len(season.datetimes) == 6
    assert list(season.datetimes) == sorted(season.datetimes)
    assert season.datetimes[0] >= datetime(2023, 4, 1) and season.datetimes[-1] <= datetime(2023, 10, 31)
    single = open_scene(generate_demo_scene(tmp_path / "one", size=SIZE, seed=SEED, progress=False).scene)
    for scene, when in zip(season.scenes, season.datetimes, strict=True):
        opened = open_scene(scene)
        assert opened.datetime == when.strftime("%Y%m%dT%H%M%S")  # per-band files: from their names
        with rasterio.open(opened.bands["B04"].path) as ds:
            assert ds.tags()["datetime"] == when.isoformat()
        assert opened.level == "L2A" and opened.offset.offset == -1000 and len(opened.bands) == 12
        assert opened.grid == single.grid
    with rasterio.open(season.labels) as ds:
        assert ds.tags()["classes"] == ";".join(f"{c}={n}" for c, n, _ in DEMO_CLASSES)
        assert set(np.unique(ds.read(1))) <= {c for c, _, _ in DEMO_CLASSES}
    assert MAX_DATES == _MAX_DATES and len(set(season_dates(MAX_DATES))) == MAX_DATES


def test_season_is_seeded(season, tmp_path: Path) -> None:
    again = generate_demo_series(tmp_path / "again", size=SIZE, seed=SEED, dates=6, progress=False)
    assert _digests(again.root) == _digests(season.root)
    other = generate_demo_series(tmp_path / "other", size=SIZE, seed=SEED + 1, dates=6, progress=False)
    assert _digests(other.root)[f"{season.scenes[2].name}/{season.scenes[2].name}_B04_10m.tif"] != \
        _digests(season.root)[f"{season.scenes[2].name}/{season.scenes[2].name}_B04_10m.tif"]


def test_clouds_move_and_every_pixel_is_clear_on_most_dates(pixels) -> None:
    _, valid, scl, _ = pixels
    cloud = np.isin(scl, (8, 9))
    assert all(c.mean() > 0.005 for c in cloud)  # each date has some cloud
    for i in range(len(cloud)):
        for j in range(i + 1, len(cloud)):
            assert (cloud[i] & cloud[j]).sum() < 0.15 * min(cloud[i].sum(), cloud[j].sum())  # elsewhere each date
    assert np.isin(scl, (3, 10)).any(axis=(1, 2)).sum() >= 4  # shadows and cirrus too
    data = ndimage.binary_erosion((scl != 0).all(axis=0), iterations=6)  # away from the swath edge
    assert valid[:, data].sum(axis=0).min() >= 4  # clear on at least 4 of the 6 dates


def _qda_accuracy(x: np.ndarray, y: np.ndarray, train: np.ndarray, reg: float = 0.1) -> float:
    """Balanced accuracy of a two-class Gaussian (quadratic discriminant) classifier, equal priors."""
    mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-9
    z = (x - mean) / std
    scores = []
    for cls in (0, 1):
        fit = z[train & (y == cls)]
        cov = (1 - reg) * np.cov(fit, rowvar=False) + reg * np.eye(z.shape[1])
        chol = np.linalg.cholesky(cov)
        dist = np.linalg.solve(chol, (z[~train] - fit.mean(axis=0)).T)
        scores.append(-0.5 * (dist**2).sum(axis=0) - np.log(np.diag(chol)).sum())
    pred, truth = (scores[1] > scores[0]).astype(int), y[~train]
    return float(np.mean([(pred[truth == c] == c).mean() for c in (0, 1)]))


def _accuracies(pixels, a: int, b: int) -> tuple[list[float], float]:
    """Per-date and whole-season accuracy of telling class ``a`` from ``b``, pixel by pixel.

    Pixels valid on every date; fit on the pixels of half of 40 px blocks (a checkerboard, so
    that most fields are seen in training or in testing only), scored on the other half; both
    ways round, averaged.
    """
    refl, valid, _, labels = pixels
    keep = valid.all(axis=0) & np.isin(labels, (a, b))
    rows, cols = np.nonzero(keep)
    x, y = refl[keep], (labels[keep] == b).astype(int)
    checker = (rows // 40 + cols // 40) % 2 == 0

    def score(features: np.ndarray) -> float:
        return float(np.mean([_qda_accuracy(features, y, half) for half in (checker, ~checker)]))

    return [score(x[:, d]) for d in range(x.shape[1])], score(x.reshape(len(x), -1))


def test_cropland_and_grassland_differ_only_over_the_season(pixels) -> None:
    dates, season = _accuracies(pixels, 3, 4)
    assert max(dates) < 0.75, dates  # measured 0.55–0.70 per date (seed 0)
    assert season > 0.95  # measured 0.994


def test_cropland_and_bare_soil_differ_after_harvest_only_over_the_season(pixels) -> None:
    dates, season = _accuracies(pixels, 3, 6)
    assert max(dates[3:]) < 0.75, dates  # August to October: stubble, tilled and sown fields
    assert season > 0.95  # April tells them apart too: winter crops are green, fallow is not


def test_one_date_is_the_single_date_demo(tmp_path: Path) -> None:
    series = generate_demo_series(tmp_path / "series", size=120, seed=5, dates=1, progress=False)
    scene = generate_demo_scene(tmp_path / "scene", size=120, seed=5, progress=False)
    assert _digests(series.root) == _digests(scene.root)
    assert series.scenes == (scene.scene.parent.parent / "series" / scene.scene.name,)
    runner = CliRunner()
    for args, out in ((["--dates", "1"], "a"), ([], "b")):
        result = runner.invoke(cli, ["demo-data", "--out", str(tmp_path / out), "--size", "120", "--seed", "5", *args])
        assert result.exit_code == 0, result.output
        assert _digests(tmp_path / out) == _digests(scene.root)


def test_cli_prints_where_each_date_went(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo-data", "--dates", "3", "--out", str(tmp_path / "d"), "--size", "120"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    folders = sorted(p for p in (tmp_path / "d").iterdir() if p.is_dir())
    assert len(folders) == 3 and all(str(f) in result.output for f in folders)
    assert lines[0].startswith("2023-04-13: ") and lines[-1].endswith("labels.tif")
    bad = CliRunner().invoke(cli, ["demo-data", "--dates", "0", "--out", str(tmp_path / "e")])
    assert bad.exit_code == 2 and "--dates" in bad.output and not (tmp_path / "e").exists()
    with pytest.raises(ConfigError, match="1 to 37 dates"):
        season_dates(38)
