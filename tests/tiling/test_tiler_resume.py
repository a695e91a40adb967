"""Determinism and resuming: 1 vs 2 workers, a killed run resumed, a crash while finalising."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from geoseg.errors import ConfigError
from geoseg.tiling import CubeStore, IncompleteStoreError, tile_dataset
from tests.tiling._tiling_helpers import (
    DEMO_PARAMS,
    assert_same_store,
    crash_while_compacting,
    kill_tiling_after,
    write_catalog,
)


def test_one_and_two_worker_processes_give_identical_stores(demo_catalog, demo_store, tmp_path) -> None:
    one = tile_dataset(demo_catalog, "demo480", tmp_path / "one", workers=1, progress=False, **DEMO_PARAMS)
    two = tile_dataset(demo_catalog, "demo480", tmp_path / "two", workers=2, progress=False, **DEMO_PARAMS)
    assert one.workers == 1 and two.workers == 2 and one.cubes == two.cubes > 0
    assert_same_store(tmp_path / "one", tmp_path / "two")
    assert_same_store(tmp_path / "one", demo_store)  # tasks of 4 cubes there, same content


def test_killed_run_resumes_to_the_same_store(demo_catalog, demo_store, client, tmp_path) -> None:
    out = tmp_path / "killed"
    finished = kill_tiling_after(demo_catalog, "demo480", out, DEMO_PARAMS)
    assert 5 <= finished < 81
    assert json.loads((out / "manifest.json").read_text())["complete"] is False
    with pytest.raises(IncompleteStoreError, match="rerun the same"):
        CubeStore.open(out)
    summary = tile_dataset(demo_catalog, "demo480", out, client=client, group=1, progress=False, **DEMO_PARAMS)
    assert summary.resumed >= finished and summary.computed == 81 - summary.resumed
    assert not (out / "_staging").exists()
    assert_same_store(out, demo_store)


def test_crash_while_compacting_then_rerun(demo_catalog, demo_store, client, tmp_path, monkeypatch) -> None:
    out = tmp_path / "crash"
    crash_while_compacting(demo_catalog, out, client, monkeypatch)
    assert json.loads((out / "manifest.json").read_text())["complete"] is False
    summary = tile_dataset(demo_catalog, "demo480", out, client=client, progress=False, **DEMO_PARAMS)
    assert summary.resumed == 81 and summary.computed == 0
    assert_same_store(out, demo_store)


def test_complete_store_is_kept_and_changes_are_refused(demo480, client, tmp_path) -> None:
    scene = tmp_path / "scene"
    shutil.copytree(demo480.scene, scene)
    catalog = write_catalog(tmp_path / "catalog.yaml", scene, {"raster": str(demo480.labels)})
    out = tmp_path / "store"
    params = {**DEMO_PARAMS, "cube_size": 96}
    first = tile_dataset(catalog, "demo480", out, client=client, progress=False, **params)
    again = tile_dataset(catalog, "demo480", out, client=client, progress=False, **params)
    assert again.already_complete and again.cubes == first.cubes and "nothing to do" in again.lines()[0]
    with pytest.raises(ConfigError, match=r"overlap 16 -> 8 .*--overwrite"):
        tile_dataset(catalog, "demo480", out, client=client, progress=False, **{**params, "overlap": 8})
    band = next(scene.glob("*B04*"))
    os.utime(band, ns=(band.stat().st_atime_ns, band.stat().st_mtime_ns + 10**9))
    with pytest.raises(ConfigError, match="source of scene 'demo480' changed"):
        tile_dataset(catalog, "demo480", out, client=client, progress=False, **params)
    rebuilt = tile_dataset(catalog, "demo480", out, client=client, progress=False, overwrite=True, **params)
    assert not rebuilt.already_complete and rebuilt.cubes == first.cubes
    assert CubeStore.open(out).manifest["complete"] is True
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not written by geoseg"):
        tile_dataset(catalog, "demo480", tmp_path / "other", client=client, progress=False, **params)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
