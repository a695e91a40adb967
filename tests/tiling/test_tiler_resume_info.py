"""The manifest's per-scene level and offset rule are information: stores written before they
were recorded still resume, and still count as the same store when complete."""

from __future__ import annotations

import json
import shutil

from geoseg.tiling import tile_dataset
from geoseg.tiling.plan import SOURCE_INFO_KEYS, content_key, describe_difference
from tests.tiling._tiling_helpers import DEMO_PARAMS, assert_same_store, crash_while_compacting


def _as_written_before(store) -> None:
    """Drop the informational keys from the store's manifest, as a geoseg before them wrote it."""
    path = store / "manifest.json"
    manifest = json.loads(path.read_text())
    for source in manifest["sources"]:
        for key in SOURCE_INFO_KEYS:
            source.pop(key)
    path.write_text(json.dumps(manifest))


def test_sources_record_level_and_offset_rule_outside_the_content_key(demo_store) -> None:
    manifest = json.loads((demo_store / "manifest.json").read_text())
    source = manifest["sources"][0]
    assert (source["level"], source["offset_rule"]) == ("L2A", "metadata")
    older = json.loads(json.dumps(manifest))
    for key in SOURCE_INFO_KEYS:
        older["sources"][0].pop(key)
    assert content_key(older) == content_key(manifest)
    changed = json.loads(json.dumps(manifest))
    changed["sources"][0]["offset"] = 0.0
    assert content_key(changed) != content_key(manifest)
    assert describe_difference(manifest, changed) == "source of scene 'demo480' changed (offset)"


def test_a_complete_older_store_is_kept(demo_catalog, demo_store, client, tmp_path) -> None:
    old = tmp_path / "old"
    shutil.copytree(demo_store, old)
    _as_written_before(old)
    again = tile_dataset(demo_catalog, "demo480", old, client=client, progress=False, **DEMO_PARAMS)
    assert again.already_complete and again.computed == 0


def test_an_interrupted_older_run_resumes(demo_catalog, demo_store, client, tmp_path, monkeypatch) -> None:
    out = tmp_path / "crash"
    crash_while_compacting(demo_catalog, out, client, monkeypatch)
    _as_written_before(out)  # the interrupted run was started by a geoseg before the keys existed
    summary = tile_dataset(demo_catalog, "demo480", out, client=client, progress=False, **DEMO_PARAMS)
    assert summary.resumed == 81 and summary.computed == 0
    assert_same_store(out, demo_store)  # the resumed store's manifest records them again
