"""Helpers of the tiler tests (catalog writing, store comparison)."""

from __future__ import annotations

from pathlib import Path

import yaml

from geoseg.demo import DEMO_CLASSES

# Parameters of the demo stores: 480 px scene, 64 px cubes, 16 px overlap → 3 × 3 split blocks.
DEMO_PARAMS = {"cube_size": 64, "overlap": 16, "min_valid": 0.2, "split_block": 4, "seed": 0}


def write_catalog(path: Path, scene: Path, labels: dict | None, *, classes=DEMO_CLASSES, ignore_codes=(),
                  name: str = "demo480", extra_scene: dict | None = None) -> Path:
    """A one-dataset catalog for ``scene`` (absolute paths)."""
    entry = {"id": "demo480", "path": str(scene), **(extra_scene or {})}
    if labels is not None:
        entry["labels"] = labels
    data = {
        "schema_version": 1,
        "datasets": {name: {
            "recipe": "s2_24",
            "ignore_codes": list(ignore_codes),
            "classes": [{"code": c, "name": n, "color": col} for c, n, col in classes],
            "scenes": [entry],
        }},
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def assert_same_store(a: Path, b: Path) -> None:
    """Two stores hold identical arrays, index, statistics and manifest."""
    import geopandas as gpd
    import numpy as np
    import pandas as pd

    from geoseg.tiling import CubeStore

    sa, sb = CubeStore.open(a), CubeStore.open(b)
    assert len(sa) == len(sb)
    for i in range(len(sa)):
        np.testing.assert_array_equal(sa.read_cube(i), sb.read_cube(i))
        if sa.has_labels:
            np.testing.assert_array_equal(sa.read_label(i), sb.read_label(i))
    pd.testing.assert_frame_equal(pd.DataFrame(sa.index.drop(columns="geometry")),
                                  pd.DataFrame(sb.index.drop(columns="geometry")))
    assert sa.index.geometry.equals(sb.index.geometry)
    assert sa.stats == sb.stats
    assert sa.manifest == sb.manifest
    ga = gpd.read_file(a / "index.gpkg")
    gb = gpd.read_file(b / "index.gpkg")
    assert ga.drop(columns="geometry").equals(gb.drop(columns="geometry"))
    # chunk files are byte-identical
    files_a = sorted(p.relative_to(a) for p in (a / "cubes.zarr").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in (b / "cubes.zarr").rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def crash_while_compacting(catalog, out: Path, client, monkeypatch, after: int = 20) -> None:
    """Run the demo480 tiling into ``out`` with the disk 'going away' after ``after`` chunk moves."""
    import pytest

    import geoseg.tiling.finalize as finalize
    from geoseg.tiling import tile_dataset

    real_move, moved = finalize._move, []

    def flaky_move(src, dst):
        if len(moved) == after:
            raise OSError("disk went away")
        moved.append(dst)
        real_move(src, dst)

    monkeypatch.setattr(finalize, "_move", flaky_move)
    with pytest.raises(OSError, match="disk went away"):
        tile_dataset(catalog, "demo480", out, client=client, progress=False, **DEMO_PARAMS)
    monkeypatch.setattr(finalize, "_move", real_move)


def kill_tiling_after(catalog: Path, dataset: str, out: Path, params: dict, records: int = 5) -> int:
    """Start ``tile_dataset`` in its own process session, SIGKILL it (and its Dask workers) once
    ``records`` cube records are finished, and return how many were; asserts the kill came first."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    script = ("from geoseg.tiling import tile_dataset\n"
              f"tile_dataset({str(catalog)!r}, {dataset!r}, {str(out)!r}, workers=1, group=1, progress=False, "
              f"**{params!r})\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = out / "_staging" / "done"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if done.exists() and len(list(done.glob("[0-9]*.json"))) >= records:
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the run and its Dask workers (own session)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    return len(list(done.glob("[0-9]*.json")))
