"""Time-series datasets: multi-date cubes (N, T, C, H, W) equal single-date tiling date by date.

Three 240 px demo scenes (seeds 1-3: the same T33UUU grid, clouds in different places) are
renamed to three acquisition dates and listed, out of order, as one location's series.
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from geoseg.cli.main import main
from geoseg.config import dataset_scenes, load_catalog
from geoseg.config.series import choose_evenly, parse_acquired
from geoseg.demo import DEMO_CLASSES, generate_demo_scene
from geoseg.errors import CatalogError, ConfigError, CRSMismatchError, GeosegError
from geoseg.tiling import CubeStore, IncompleteStoreError, export_npy, store_info, tile_dataset
from tests.tiling._tiling_helpers import (
    DEMO_PARAMS,
    assert_same_store,
    crash_while_compacting,
    kill_tiling_after,
)

PARAMS = DEMO_PARAMS  # 64 px cubes, overlap 16: 25 candidates in a 240 px scene
DATES = ("20230415T101559", "20230612T101559", "20230820T101559")
_DATETIME = re.compile(r"\d{8}T\d{6}")
ISO = tuple(parse_acquired(d).isoformat() for d in DATES)


def _redated(scene: Path, date: str, into: Path) -> Path:
    """A copy of a per-band demo scene whose folder and file names carry acquisition ``date``."""
    out = into / _DATETIME.sub(date, scene.name)
    out.mkdir(parents=True)
    for f in scene.iterdir():
        shutil.copy(f, out / _DATETIME.sub(date, f.name))
    return out


@pytest.fixture(scope="module")
def season(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three dates of one location (240 px) and the labels of the first."""
    root = tmp_path_factory.mktemp("season")
    demos = [generate_demo_scene(root / f"demo{seed}", size=240, seed=seed, progress=False) for seed in (1, 2, 3)]
    scenes = [_redated(d.scene, date, root / "dates") for d, date in zip(demos, DATES, strict=True)]
    return {"root": root, "scenes": scenes, "labels": demos[0].labels}


def _catalog(path: Path, items: list, labels: Path | None, *, time_steps: int | None = 3, name: str = "season",
             scene_extra: dict | None = None, dataset_extra: dict | None = None) -> Path:
    """A one-location catalog: ``items`` are series dates (paths or dicts); ``time_steps=None``: a single scene."""
    entry: dict = {"id": "site"}
    if time_steps is None:
        entry["path"] = str(items[0])
    else:
        entry["series"] = [it if isinstance(it, dict) else {"path": str(it)} for it in items]
    entry.update(scene_extra or {})
    if labels is not None:
        entry["labels"] = {"raster": str(labels)}
    dataset = {"recipe": "s2_24", "ignore_codes": [], "scenes": [entry],
               "classes": [{"code": c, "name": n, "color": col} for c, n, col in DEMO_CLASSES]}
    if time_steps is not None:
        dataset["time_steps"] = time_steps
    dataset.update(dataset_extra or {})
    path.write_text(yaml.safe_dump({"schema_version": 1, "datasets": {name: dataset}}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def series_store(season, client) -> Path:
    """The season tiled as a series (dates listed newest first)."""
    root = season["root"]
    catalog = _catalog(root / "series.yaml", season["scenes"][::-1], season["labels"])
    tile_dataset(catalog, "season", root / "series_store", client=client, progress=False, **PARAMS)
    return root / "series_store"


@pytest.fixture(scope="module")
def single_stores(season, client) -> list[Path]:
    """Each date tiled on its own (min-valid 0: every cube with a valid pixel is kept)."""
    root, out = season["root"], []
    for t, scene in enumerate(season["scenes"]):
        catalog = _catalog(root / f"single{t}.yaml", [scene], season["labels"], time_steps=None)
        tile_dataset(catalog, "season", root / f"single{t}", client=client, progress=False,
                     **{**PARAMS, "min_valid": 0.0})
        out.append(root / f"single{t}")
    return out


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_series_cubes_equal_single_date_tiling_date_by_date(season, series_store, single_stores) -> None:
    store = CubeStore.open(series_store)
    assert store.time_steps == 3 and store.cube_shape == (3, 24, 64, 64) and len(store) == 25
    singles = [CubeStore.open(p) for p in single_stores]
    assert all(s.time_steps is None for s in singles)  # single-date stores keep their format
    by_window = [{(r.row_off, r.col_off): int(r.cube_id) for r in s.index.itertuples()} for s in singles]
    index = store.index
    assert all(list(d) == list(ISO) for d in index["dates"])  # sorted by acquisition, not catalog order
    valid_pixels, padded = 0, 0
    for row in index.itertuples():
        cube, label = store.read_cube(row.cube_id), store.read_label(row.cube_id)
        assert cube.shape == (3, 24, 64, 64) and cube.dtype == np.float32
        any_valid = np.zeros((64, 64), bool)
        for t, single in enumerate(singles):
            key = (row.row_off, row.col_off)
            if key not in by_window[t]:  # no valid pixel on that date: the date is 0 everywhere
                assert not cube[t].any() and row.date_valid_fractions[t] == 0
                continue
            i = by_window[t][key]
            np.testing.assert_array_equal(cube[t], single.read_cube(i))  # bit for bit, with that date's mask
            valid = single.read_cube(i)[:11].sum(axis=0) != 0
            assert row.date_valid_fractions[t] == pytest.approx(valid.mean()) == single.index.valid_fraction[i]
            single_label = single.read_label(i)
            np.testing.assert_array_equal(label[valid], single_label[valid])  # the same labels where valid
            any_valid |= valid
            valid_pixels += int(valid.sum())
        assert row.valid_fraction == pytest.approx(any_valid.mean())  # valid on at least one date
        assert (label[~any_valid] == 255).all()  # no date says anything there: ignored
        padded += row.padded_dates
    assert padded == 0 and store.stats["count"] == valid_pixels  # statistics over valid (date, pixel)s
    assert 0 < min(min(f) for f in index["date_valid_fractions"]) < 1  # the clouds differ per date


def test_series_metadata_xarray_cubes_info_and_export(series_store, tmp_path, capsys) -> None:
    xr = pytest.importorskip("xarray")
    import dask

    store = CubeStore.open(series_store)
    manifest = store.manifest
    assert manifest["time_steps"] == 3 and manifest["series"]["rule"] == "even"
    location = manifest["series"]["locations"][0]
    assert location["dates"] == list(ISO) and location["padded"] == 0
    assert [c["used"] for c in location["considered"]] == [True] * 3
    assert [s["acquired"] for s in manifest["sources"]] == list(ISO)  # one source per date
    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ds = xr.open_zarr(series_store / "cubes.zarr")
        assert ds["cubes"].dims == ("cube", "time", "channel", "y", "x")
        assert ds.sizes["time"] == 3 and list(ds["dates"].values[0]) == list(ISO)
        np.testing.assert_array_equal(ds["cubes"][2].values, store.read_cube(2))
        np.testing.assert_allclose(ds["date_valid_fraction"].values,
                                   np.stack([np.asarray(f) for f in store.index["date_valid_fractions"]]))
    code, out, _ = _cli(["cubes", "info", str(series_store)], capsys)
    means = np.stack([np.asarray(f) for f in store.index["date_valid_fractions"]]).mean(axis=0)
    assert code in (0, None) and out.splitlines() == store_info(store)
    assert "time series: T = 3 dates per cube (rule even, 0 padded dates)" in out
    assert f"site: 2023-04-15 {means[0]:.3f}, 2023-06-12 {means[1]:.3f}, 2023-08-20 {means[2]:.3f}" in out
    assert repr(store).endswith("time_steps=3)")
    array = np.load(export_npy(store, tmp_path / "cubes.npy"), mmap_mode="r")
    assert array.shape == (25, 3, 24, 64, 64)
    np.testing.assert_array_equal(array[7], store.read_cube(7))
    with pytest.raises(GeosegError, match=r"multi-date CubeStore's cubes are \(T=3, C, H, W\)"):
        export_npy(store, tmp_path / "labelled.npy", with_labels=True)


def test_padding_records_masked_dates_and_keeps_the_real_ones(season, series_store, client, tmp_path) -> None:
    catalog = _catalog(tmp_path / "pad.yaml", season["scenes"], season["labels"], time_steps=4,
                       dataset_extra={"series_rule": "pad"})
    tile_dataset(catalog, "season", tmp_path / "pad", client=client, progress=False, **PARAMS)
    padded, three = CubeStore.open(tmp_path / "pad"), CubeStore.open(series_store)
    assert padded.time_steps == 4 and len(padded) == len(three)
    for i in range(len(three)):
        cube = padded.read_cube(i)
        np.testing.assert_array_equal(cube[:3], three.read_cube(i))
        assert not cube[3].any()
        np.testing.assert_array_equal(padded.read_label(i), three.read_label(i))
    assert all(list(d) == [*ISO, None] for d in padded.index["dates"])
    assert (padded.index["padded_dates"] == 1).all() and all(f[3] == 0 for f in padded.index["date_valid_fractions"])
    assert padded.manifest["series"]["locations"][0]["padded"] == 1
    assert padded.stats["mean"] == three.stats["mean"] and padded.stats["count"] == three.stats["count"]
    gpkg = __import__("geopandas").read_file(tmp_path / "pad" / "index.gpkg")
    assert json.loads(gpkg["dates"][0]) == [*ISO, None]
    with pytest.raises(CatalogError, match=r"series 'site' has 3 dates, but time_steps is 4 .*series_rule: pad"):
        tile_dataset(_catalog(tmp_path / "even.yaml", season["scenes"], None, time_steps=4), "season",
                     tmp_path / "even", client=client, progress=False)
    assert not (tmp_path / "even").exists()


def test_date_range_min_valid_fraction_and_even_selection(season, tmp_path) -> None:
    from geoseg.io.summary import summarise_scene

    scenes = season["scenes"]
    catalog = _catalog(tmp_path / "range.yaml", scenes, None, time_steps=2,
                       scene_extra={"date_range": ["2023-05-01", "2023-12-31"]})
    series = dataset_scenes(load_catalog(catalog), "season")[0].series
    assert series is not None and [d.acquired for d in series.dates] == list(ISO[1:])
    assert [c["why"] for c in series.considered] == ["outside date_range", "", ""]
    # min_valid_fraction drops the cloudiest date (its fraction measured as geoseg inspect does)
    fractions = [summarise_scene(dataset_scenes(load_catalog(_catalog(tmp_path / f"s{t}.yaml", [s], None,
                                                                      time_steps=None)), "season")[0].scene,
                                 sample=True).valid_fraction for t, s in enumerate(scenes)]
    worst = int(np.argmin(fractions))
    threshold = (sorted(fractions)[0] + sorted(fractions)[1]) / 2
    catalog = _catalog(tmp_path / "valid.yaml", scenes, None, time_steps=2,
                       scene_extra={"min_valid_fraction": threshold})
    series = dataset_scenes(load_catalog(catalog), "season")[0].series
    assert series is not None and [d.acquired for d in series.dates] == [d for t, d in enumerate(ISO) if t != worst]
    assert [d.valid_fraction for d in series.dates] == pytest.approx([f for t, f in enumerate(fractions) if t != worst],
                                                                      abs=1e-6)
    # five dates, T = 3: the first, the last and the one closest to mid-season
    extra = [_redated(scenes[0], "20230420T101559", tmp_path), _redated(scenes[1], "20230720T101559", tmp_path)]
    catalog = _catalog(tmp_path / "even.yaml", [*scenes, *extra], None, time_steps=3)
    series = dataset_scenes(load_catalog(catalog), "season")[0].series
    assert series is not None
    assert [d.acquired[:10] for d in series.dates] == ["2023-04-15", "2023-06-12", "2023-08-20"]
    assert sum(c["why"] == "not chosen (even selection)" for c in series.considered) == 2
    assert choose_evenly([0, 1, 2, 10, 11, 20], 3) == [0, 3, 5]
    assert choose_evenly([0, 1, 2], 3) == [0, 1, 2] and choose_evenly([0, 5, 6, 7, 8, 9, 10], 2) == [0, 6]


def test_grid_mismatch_is_one_line_and_nothing_is_written(season, tmp_path, capsys) -> None:
    other = generate_demo_scene(tmp_path / "other", size=246, seed=4, progress=False)
    moved = _redated(other.scene, "20230901T101559", tmp_path / "dates")
    catalog = _catalog(tmp_path / "grid.yaml", [*season["scenes"], moved], season["labels"])
    out = tmp_path / "store"
    with pytest.raises(CRSMismatchError, match=r"date 4 of series 'site' is not on the grid of its date 1 .*"
                                               r"246 x 246 px instead of 240 x 240.*gdalwarp -t_srs EPSG:32633"):
        tile_dataset(catalog, "season", out, progress=False)
    code, _, err = _cli(["tile", "--catalog", str(catalog), "--dataset", "season", "--out", str(out)], capsys)
    assert code == 2 and err.count("\n") == 1 and str(moved) in err and "Traceback" not in err
    assert not out.exists()
    code, _, err = _cli(["tile", "--catalog", str(_catalog(tmp_path / "ok.yaml", season["scenes"], None)),
                         "--dataset", "season", "--out", str(out), "--store", "compact"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--store compact does not hold time series" in err
    assert not out.exists()


def test_catalog_rules_of_series(season, tmp_path) -> None:
    bad = _catalog(tmp_path / "typo.yaml", [{"path": str(season["scenes"][0]), "acquird": "2023-04-01"}], None)
    with pytest.raises(CatalogError, match=r"unknown key 'datasets.season.scenes.0.series.0.acquird'.*'acquired'"):
        load_catalog(bad)
    with pytest.raises(CatalogError, match="scene 'site' has a 'series': set the dataset's time_steps"):
        load_catalog(_catalog(tmp_path / "t.yaml", season["scenes"], None, time_steps=3,
                              dataset_extra={"time_steps": None}))
    with pytest.raises(CatalogError, match="scene 'site' has no 'series', but the dataset has time_steps"):
        load_catalog(_catalog(tmp_path / "s.yaml", season["scenes"], None, time_steps=None,
                              dataset_extra={"time_steps": 3}))
    twice = _catalog(tmp_path / "twice.yaml", [season["scenes"][0], season["scenes"][0]], None, time_steps=2)
    with pytest.raises(CatalogError, match="dates 1 and 2 of series 'site' are both acquired at 2023-04-15T10:15:59"):
        dataset_scenes(load_catalog(twice), "season")
    # the catalog's acquired wins over the metadata
    given = _catalog(tmp_path / "given.yaml", [{"path": str(s), "acquired": f"2024-0{t + 1}-01"}
                                               for t, s in enumerate(season["scenes"])], None)
    series = dataset_scenes(load_catalog(given), "season")[0].series
    assert series is not None and [d.acquired for d in series.dates] == [f"2024-0{t}-01T00:00:00" for t in (1, 2, 3)]
    from geoseg.pipeline.state import scene_fingerprints

    fingerprints = scene_fingerprints(load_catalog(given), "season")["scenes"]
    assert [f["scene_id"] for f in fingerprints] == [f"site@2024-0{t}-01T00:00:00" for t in (1, 2, 3)]  # every date
    assert parse_acquired("2023:06:12 10:15:59") == parse_acquired("2023-06-12T12:15:59+02:00")
    with pytest.raises(ConfigError, match="date_range and min_valid_fraction select dates of a 'series'"):
        load_catalog(_catalog(tmp_path / "r.yaml", season["scenes"], None, time_steps=None,
                              scene_extra={"date_range": ["2023-01-01", "2023-02-01"]}))


def test_crash_while_compacting_then_rerun(season, series_store, client, tmp_path, monkeypatch) -> None:
    catalog = _catalog(tmp_path / "series.yaml", season["scenes"][::-1], season["labels"], name="demo480")
    crash_while_compacting(catalog, tmp_path / "crash", client, monkeypatch, after=10)
    summary = tile_dataset(catalog, "demo480", tmp_path / "crash", client=client, progress=False, **PARAMS)
    assert summary.resumed == 25 and summary.computed == 0
    _assert_same_content(tmp_path / "crash", series_store)


def test_killed_run_resumes_to_the_same_store(season, client, tmp_path) -> None:
    """A run killed mid-way (SIGKILL to it and its Dask workers) resumes to the store of a clean run."""
    catalog = _catalog(tmp_path / "series.yaml", season["scenes"], season["labels"])
    params = {**PARAMS, "cube_size": 32, "overlap": 0, "min_valid": 0.0}  # 64 one-cube tasks
    out = tmp_path / "killed"
    finished = kill_tiling_after(catalog, "season", out, params)
    assert 5 <= finished < 64
    with pytest.raises(IncompleteStoreError, match="rerun the same"):
        CubeStore.open(out)
    summary = tile_dataset(catalog, "season", out, client=client, group=1, progress=False, **params)
    assert summary.resumed >= finished and summary.computed == 64 - summary.resumed
    tile_dataset(catalog, "season", tmp_path / "clean", client=client, progress=False, **params)
    assert_same_store(out, tmp_path / "clean")


def _assert_same_content(a: Path, b: Path) -> None:
    """Same cubes, labels, index and statistics (manifests differ only in the dataset's name and catalog)."""
    sa, sb = CubeStore.open(a), CubeStore.open(b)
    assert len(sa) == len(sb) and sa.stats == sb.stats
    for i in range(len(sa)):
        np.testing.assert_array_equal(sa.read_cube(i), sb.read_cube(i))
        np.testing.assert_array_equal(sa.read_label(i), sb.read_label(i))
    assert sa.index.drop(columns="geometry").equals(sb.index.drop(columns="geometry"))
    assert sa.manifest["series"] == sb.manifest["series"]
