"""The built-in demo season in the catalog (``demo: {dates: N}``): validation, generation on first use, reading."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from geoseg.config import load_catalog
from geoseg.config.catalog import _MAX_DEMO_DATES
from geoseg.config.scenes import dataset_scenes
from geoseg.demo import season_dates
from geoseg.demo.series import MAX_DATES
from geoseg.errors import CatalogError
from tests.conftest import REPO

CLASSES = [{"code": 1, "name": "water", "color": "#1f78b4"}, {"code": 3, "name": "cropland", "color": "#f1c232"}]


def _catalog(path: Path, demo: dict, **dataset: object) -> Path:
    data = {"schema_version": 1, "datasets": {"season": {
        "classes": CLASSES, "scenes": [{"id": "site", "demo": demo}], **dataset}}}
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_repository_catalog_ships_a_six_date_demo_season() -> None:
    dataset = load_catalog(REPO / "data_catalog.yaml").dataset("demo_series")
    demo = dataset.scenes[0].demo
    assert dataset.time_steps == 6 and demo is not None and demo.dates == 6 and dataset.scenes[0].is_series
    assert demo.directory().name == f"demo_{demo.size}_{demo.seed}_6dates"  # never the single-date demo's folder
    single = load_catalog(REPO / "data_catalog.yaml").dataset("demo").scenes[0]
    assert single.demo is not None and single.demo.dates == 1 and not single.is_series
    assert single.demo.directory().name == f"demo_{single.demo.size}_{single.demo.seed}"  # unchanged


def test_a_demo_season_needs_time_steps_and_the_reverse(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"scene 'site' has a 'series' \(a demo season\): set the dataset's "
                                           "time_steps"):
        load_catalog(_catalog(tmp_path / "a.yaml", {"size": 120, "dates": 3}))
    with pytest.raises(CatalogError, match="scene 'site' has no 'series', but the dataset has time_steps"):
        load_catalog(_catalog(tmp_path / "b.yaml", {"size": 120}, time_steps=3))
    assert _MAX_DEMO_DATES == MAX_DATES  # the catalog's copy of the limit (it loads without numpy/scipy)
    with pytest.raises(CatalogError, match="dates"):
        load_catalog(_catalog(tmp_path / "c.yaml", {"size": 120, "dates": MAX_DATES + 1}, time_steps=3))


def test_a_demo_season_is_generated_on_first_use_and_read_as_a_series(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSEG_CACHE", str(tmp_path / "cache"))
    catalog = load_catalog(_catalog(tmp_path / "cat.yaml", {"size": 120, "seed": 3, "dates": 4}, time_steps=3))
    first = dataset_scenes(catalog, "season")[0]
    root = tmp_path / "cache" / "demo_120_3_4dates"
    assert first.series is not None and first.labels is not None and first.labels.raster == root / "labels.tif"
    chosen = [d.acquired for d in first.series.dates]  # 3 of the 4 dates, evenly through the season
    whens = [w.isoformat() for w in season_dates(4)]
    assert len(chosen) == 3 and chosen[0] == whens[0] and chosen[-1] == whens[-1] and set(chosen) <= set(whens)
    assert first.scene.scene_id == "site" and first.scene.grid.width == 120
    assert all(s.path is not None and Path(s.path).parent == root for s in first.date_scenes)
    stamp = (root / "labels.tif").stat().st_mtime_ns
    again = dataset_scenes(catalog, "season")[0]  # the second use reads the generated season as it is
    assert (root / "labels.tif").stat().st_mtime_ns == stamp
    assert again.series is not None and [d.acquired for d in again.series.dates] == chosen
