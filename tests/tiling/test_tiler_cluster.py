"""`geoseg tile --scheduler ADDR` on a user's cluster: a scheduler and 2 worker processes started apart
(the session's ``dask_cluster`` fixture of tests/conftest.py, shared with tests/pipeline)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_cluster_processes_die_with_pytest(tmp_path) -> None:
    """The fixture's processes get SIGTERM when their parent dies, even by SIGKILL (no orphans)."""
    import os
    import signal
    import time

    script = ("import sys, time; from pathlib import Path; from tests.conftest import _start_process\n"
              f"p = _start_process([sys.executable, '-c', 'import time; time.sleep(120)'], Path({str(tmp_path)!r}) / 'log')\n"
              "print(p.pid, flush=True); time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        child = int(parent.stdout.readline())
        assert os.getpgid(child) == child  # a process group of its own, stopped as a whole
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(child):
            time.sleep(0.1)
        assert not _alive(child)
    finally:
        parent.kill()
        parent.wait()
        if child and _alive(child):
            os.killpg(child, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for init counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_sigterm_to_pytest_becomes_an_interrupt() -> None:
    import os
    import signal

    from tests.conftest import _terminate_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), _terminate_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before
