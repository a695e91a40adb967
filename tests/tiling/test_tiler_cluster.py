"""`geoseg tile --scheduler ADDR` on a user's cluster: a scheduler and 2 worker processes started apart
(the session's ``dask_cluster`` fixture of tests/conftest.py, shared with tests/pipeline)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.tiling._tiling_helpers import DEMO_PARAMS, assert_same_store

BIN = Path(sys.executable).parent


def test_tile_on_an_existing_cluster_by_address(dask_cluster: str, demo_catalog, demo_store, tmp_path) -> None:
    from distributed import Client

    def executed_counts() -> dict[str, int]:
        with Client(dask_cluster) as client:
            return client.run(lambda dask_worker: dask_worker.state.executed_count)

    cluster, before = dask_cluster, executed_counts()
    out = tmp_path / "store"
    args = [str(BIN / "geoseg"), "tile", "--catalog", str(demo_catalog), "--dataset", "demo480", "--out", str(out),
            "--scheduler", cluster, "--no-progress"]
    for key in ("cube_size", "overlap", "min_valid", "split_block", "seed"):
        args += [f"--{key.replace('_', '-')}", str(DEMO_PARAMS[key])]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"tiling on {cluster}" in done.stdout and "cubes from 1 scene" in done.stdout
    assert_same_store(out, demo_store)
    executed = executed_counts()
    assert len(executed) == 2 and all(n > before.get(w, 0) for w, n in executed.items())  # both worker processes tiled
