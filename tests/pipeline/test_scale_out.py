"""Scale-out: the pipeline's tile step and prediction fan-out on a separately started Dask cluster.

A ``dask scheduler`` and ``dask worker --nworkers 2`` run as their own processes on
127.0.0.1 — the way a user's cluster is reached with ``geoseg run --scheduler tcp://...``
(the session's ``dask_cluster`` fixture of tests/conftest.py, shared with tests/tiling).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio

from tests.conftest import REPO, worker_task_keys
from tests.pipeline._pipeline_helpers import tiny_pipeline, write_catalog, write_pipeline

BIN = Path(sys.executable).parent


def test_tile_step_runs_on_the_cluster_and_equals_a_local_run(dask_cluster: str, tiny_run: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    cluster = dask_cluster
    from geoseg.cli.main import main
    from tests.tiling._tiling_helpers import assert_same_store

    catalog = tiny_run.parents[1] / "catalog.yaml"  # the shared run's catalog: same sources, same store
    pipeline = write_pipeline(tmp_path / "tile_only.yaml", tiny_pipeline(catalog, name="tile_only", steps=("tile",)))
    before = worker_task_keys(cluster, "geoseg-tile-")
    with pytest.raises(SystemExit) as done:
        main(["run", str(pipeline), "--scheduler", cluster, "--run-dir", str(tmp_path / "run"), "--no-progress"])
    out = capsys.readouterr().out
    assert done.value.code == 0, out
    assert f"tiling on {cluster}" in out and "[tile] done" in out
    assert_same_store(tmp_path / "run" / "tile" / "cubes", tiny_run / "tile" / "cubes")
    tiled = {w: keys - before.get(w, set()) for w, keys in worker_task_keys(cluster, "geoseg-tile-").items()}
    assert len(tiled) == 2 and all(tiled.values())  # both worker processes cut cubes
    config = (tmp_path / "run" / "tile" / "config.yaml").read_text()
    assert f"scheduler: {cluster}" in config


def test_prediction_fans_out_one_task_per_scene(dask_cluster: str, tiny_run: Path, tmp_path: Path) -> None:
    from geoseg.pipeline import run_pipeline

    cluster = dask_cluster
    run_dir = tmp_path / "runs" / "tiny"
    shutil.copytree(tiny_run, run_dir)
    catalog = write_catalog(tmp_path / "catalog.yaml", {"demo": [("demo", 3)], "two": [("demo", 3), ("other", 5)]})
    pipeline = write_pipeline(tmp_path / "two.yaml", tiny_pipeline(catalog, predict={"dataset": "two"}))
    lines: list[str] = []
    before = set().union(*worker_task_keys(cluster, "geoseg-predict-").values())
    result = run_pipeline(pipeline, run_dir=run_dir, scheduler=cluster, progress=False, echo=lines.append)
    assert result.ran == ["predict"]  # tile, train, evaluate, export are up to date
    predicted = set().union(*worker_task_keys(cluster, "geoseg-predict-").values()) - before
    assert sorted(k.rsplit("-", 1)[-1] for k in predicted) == ["demo", "other"]  # one task per scene
    assert any(f"land-cover map(s) on {cluster}" in line for line in lines)
    # the cluster's map of the training scene equals the one predicted locally by the shared run
    with rasterio.open(run_dir / "predict" / "maps" / "demo.tif") as a, \
            rasterio.open(tiny_run / "predict" / "maps" / "demo.tif") as b:
        assert a.transform == b.transform and a.crs == b.crs
        agreement = (a.read(1) == b.read(1)).mean()
    assert agreement >= 0.999
    with rasterio.open(run_dir / "predict" / "maps" / "other.tif") as ds:
        assert ds.read(1).max() > 0


def test_unreachable_scheduler_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from geoseg.cli.main import main

    catalog = write_catalog(tmp_path / "catalog.yaml")
    pipeline = write_pipeline(tmp_path / "p.yaml", tiny_pipeline(catalog, steps=("tile",)))
    with pytest.raises(SystemExit) as done:
        main(["run", str(pipeline), "--scheduler", "tcp://127.0.0.1:9", "--run-dir", str(tmp_path / "run")])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()  # checked before anything is written


@pytest.mark.skipif(importlib.util.find_spec("dask_jobqueue") is None, reason="dask-jobqueue is not installed")
def test_slurm_recipe_writes_a_worker_job_script(capsys: pytest.CaptureFixture[str]) -> None:
    """pipelines/slurm/dask_jobqueue_cluster.py builds a real dask-jobqueue SLURMCluster (nothing submitted)."""
    spec = importlib.util.spec_from_file_location("slurm_recipe", REPO / "pipelines" / "slurm" / "dask_jobqueue_cluster.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    code = recipe.main([str(REPO / "pipelines" / "demo.yaml"), "--print-job-script", "--queue", "cpu",
                        "--account", "geo", "--cores", "4", "--memory", "16GB", "--walltime", "01:30:00",
                        "--interface", "lo", "--gpus-per-job", "1"])
    script = capsys.readouterr().out
    assert code == 0
    for directive in ("#SBATCH -p cpu", "#SBATCH -A geo", "#SBATCH --cpus-per-task=4", "#SBATCH -t 01:30:00",
                      "#SBATCH --gres=gpu:1", "#SBATCH -J geoseg-dask"):
        assert directive in script
    assert f"{sys.executable} -m distributed.cli.dask_worker tcp://127.0.0.1:" in script
    assert "--nworkers 4" in script and "--nthreads 1" in script


@pytest.mark.slow  # two training processes (~21 s): .ci/run runs the slow tier after the default suite
def test_ddp_training_on_two_cpu_processes_from_the_pipeline(tmp_path: Path) -> None:
    """devices: 2 + strategy: ddp: Lightning re-launches `geoseg run` for rank 1, which only joins the training
    (~2 min on 2 cores)."""
    catalog = write_catalog(tmp_path / "catalog.yaml")
    pipeline = write_pipeline(tmp_path / "ddp.yaml", tiny_pipeline(
        catalog, name="ddp", steps=("tile", "train", "evaluate"),
        train={"epochs": 1, "batch_size": 4, "accelerator": "cpu", "devices": 2, "strategy": "ddp"}))
    env = {**os.environ, "GEOSEG_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([str(BIN / "geoseg"), "run", str(pipeline), "--run-dir", str(tmp_path / "run"),
                           "--no-progress"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in done.stdout + done.stderr
    assert done.stdout.count("[tile] ") == 2 and done.stdout.count("[evaluate] done") == 1  # rank 0 only
    for step in ("tile", "train", "evaluate"):
        assert json.loads((tmp_path / "run" / step / "manifest.json").read_text())["status"] == "complete"
