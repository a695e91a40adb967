"""Shared fixtures: the real Sentinel-2 samples in ../shared/data and small demo scenes."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GEOSEG_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared(*parts: str) -> Path:
    """A path under ../shared/data; skips the test with a clear reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real Sentinel-2 samples not available: {path} is missing (place ../shared beside the repo)")
    return path


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Generated data (the catalog's demo scene) goes to a per-session cache, not ~/.cache."""
    os.environ.setdefault("GEOSEG_CACHE", str(tmp_path_factory.mktemp("geoseg-cache")))


@pytest.fixture(scope="session")
def demo_small(tmp_path_factory: pytest.TempPathFactory):
    """A 240 × 240 demo scene (per-band files at 10/20/60 m, SCL, labels)."""
    from geoseg.demo import generate_demo_scene

    return generate_demo_scene(tmp_path_factory.mktemp("demo") / "demo240", size=240, seed=3, progress=False)


# --------------------------------------------------------------------------- shared by tests/train and tests/data
# small demo CubeStores: 64 px cubes without overlap, each cube its own split block
DEMO_STORE_PARAMS = {"cube_size": 64, "overlap": 0, "min_valid": 0.2, "split_block": 1, "seed": 0}
ONE_THREAD_DIRS = ("train", "data", "seeds")


def make_demo_store(root: Path, size: int = 336, seed: int = 1, workers: int = 1, **params) -> Path:
    """Generate a demo scene under ``root`` and tile it (the real tiler) into ``root / 'store'``."""
    import yaml

    from geoseg.demo import DEMO_CLASSES, generate_demo_scene
    from geoseg.tiling import tile_dataset

    demo = generate_demo_scene(root / "scene", size=size, seed=seed, progress=False)
    catalog = root / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({
        "schema_version": 1,
        "datasets": {"demo": {
            "recipe": "s2_24",
            "ignore_codes": [0],
            "classes": [{"code": c, "name": n, "color": col} for c, n, col in DEMO_CLASSES],
            "scenes": [{"id": "demo", "path": str(demo.scene), "labels": {"raster": str(demo.labels)}}],
        }},
    }))
    out = root / "store"
    tile_dataset(catalog, "demo", out, workers=workers, progress=False, **{**DEMO_STORE_PARAMS, **params})
    return out


@pytest.fixture(scope="session")
def demo_cubes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 336 px demo scene tiled into 64 px cubes (~17 train, ~4 val, ~4 test)."""
    return make_demo_store(tmp_path_factory.mktemp("train-store"))


@pytest.fixture(scope="session")
def data_cubes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 240 px demo scene tiled into 48 px cubes."""
    return make_demo_store(tmp_path_factory.mktemp("data-store"), size=240, seed=2, cube_size=48, split_block=1,
                           min_valid=0.1)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(request: pytest.FixtureRequest):
    """Tests of tests/train, tests/data and tests/seeds run torch with one intra-op thread: the 2 cores are
    shared with other test runs, and OpenMP oversubscription slows convolutions down several
    times on a loaded machine. Other folders keep torch's default."""
    if Path(request.path).resolve().parent not in [REPO / "tests" / d for d in ONE_THREAD_DIRS]:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# --------------------------------------------------------------------- shared by tests/tiling and tests/pipeline
def _die_with_parent():
    """A ``preexec_fn``: on Linux, the child gets SIGTERM when pytest dies, even by SIGKILL."""
    if sys.platform != "linux":
        return None
    import ctypes
    import signal

    prctl, parent, sigterm = ctypes.CDLL(None, use_errno=True).prctl, os.getpid(), int(signal.SIGTERM)

    def preexec() -> None:  # runs between fork and exec: no imports, no locks
        prctl(1, sigterm)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # pytest died before prctl: nobody would send the signal
            os._exit(1)

    return preexec


def _start_process(args: list[str], log: Path):
    """Start ``args`` in a process group of its own (stopped as a whole) that dies with pytest."""
    import subprocess

    return subprocess.Popen(args, cwd=REPO, start_new_session=True, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            preexec_fn=_die_with_parent())


def _stop_process(proc) -> None:
    import signal
    import subprocess

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def _terminate_as_interrupt():
    """While active, SIGTERM to pytest acts as Ctrl-C: pytest stops and tears its fixtures down."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"pytest received signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A user's cluster, reached by address: ``dask scheduler`` and ``dask worker --nworkers 2`` started as
    separate processes on 127.0.0.1 (once per session); yields the scheduler address.

    The processes never outlive the run: each has its own process group, stopped at teardown; a
    SIGTERM to pytest becomes an interrupt, so teardown runs; and they get SIGTERM from Linux
    when pytest dies anyway (parent-death signal), the workers also when the scheduler is gone.
    """
    import json
    import time

    from distributed import Client

    bin_dir = Path(sys.executable).parent
    tmp = tmp_path_factory.mktemp("dask-cluster")
    scheduler_file = tmp / "scheduler.json"
    with _terminate_as_interrupt(), contextlib.ExitStack() as stack:
        def start(args: list[str], log: Path) -> None:
            stack.callback(_stop_process, _start_process(args, log))

        start([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
               "--no-dashboard", "--scheduler-file", str(scheduler_file)], tmp / "scheduler.log")
        deadline = time.monotonic() + 90
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        start([str(bin_dir / "dask"), "worker", address, "--nworkers", "2", "--nthreads", "1",
               "--host", "127.0.0.1", "--no-dashboard", "--memory-limit", "3GB", "--death-timeout", "60"],
              tmp / "workers.log")
        with Client(address, timeout="30s") as probe:
            probe.wait_for_workers(2, timeout=120)
        yield address


def worker_task_keys(address: str, prefix: str) -> dict[str, set[str]]:
    """Per worker of the cluster at ``address``: keys of the tasks it ran that start with ``prefix``
    (from the workers' own logs; the cluster is shared, so compare before and after)."""
    from distributed import Client

    def keys(dask_worker, prefix=prefix):
        return sorted({str(entry[0]) for entry in dask_worker.state.log if str(entry[0]).startswith(prefix)})

    with Client(address, timeout="30s") as client:
        return {worker: set(found) for worker, found in client.run(keys).items()}
