"""`geoseg tile --scheduler ADDR` on a user's cluster: a scheduler and 2 worker processes started apart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.tiling._tiling_helpers import DEMO_PARAMS, assert_same_store

BIN = Path(sys.executable).parent


def _start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=REPO, start_new_session=True, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def cluster(tmp_path):
    """``dask scheduler`` + ``dask worker --nworkers 2`` as separate processes; yields the address."""
    from distributed import Client

    scheduler_file = tmp_path / "scheduler.json"
    scheduler = _start([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                        "--scheduler-file", str(scheduler_file)], tmp_path / "scheduler.log")
    procs = [scheduler]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        procs.append(_start([str(BIN / "dask"), "worker", address, "--nworkers", "2", "--nthreads", "1",
                             "--no-dashboard", "--memory-limit", "2GB"], tmp_path / "workers.log"))
        with Client(address, timeout="30s") as probe:
            probe.wait_for_workers(2, timeout=90)
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)


def test_tile_on_an_existing_cluster_by_address(cluster: str, demo_catalog, demo_store, tmp_path) -> None:
    from distributed import Client

    out = tmp_path / "store"
    args = [str(BIN / "geoseg"), "tile", "--catalog", str(demo_catalog), "--dataset", "demo480", "--out", str(out),
            "--scheduler", cluster, "--no-progress"]
    for key in ("cube_size", "overlap", "min_valid", "split_block", "seed"):
        args += [f"--{key.replace('_', '-')}", str(DEMO_PARAMS[key])]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"tiling on {cluster}" in done.stdout and "cubes from 1 scene" in done.stdout
    assert_same_store(out, demo_store)
    with Client(cluster) as client:
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(executed) == 2 and all(n > 0 for n in executed.values())  # both worker processes tiled
