"""pipelines/slurm/train.sbatch runs under a SLURM environment (a stand-in for srun) and
resumes when the job is resubmitted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # a training run killed and resumed (~18 s): .ci/run runs the slow tier after the default suite
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_train_sbatch_template_runs_and_resumes(demo_cubes, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    srun = bindir / "srun"  # drops srun's own options and runs the task (1 task = 1 process)
    srun.write_text('#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n')
    srun.chmod(0o755)
    env = {
        **os.environ, "PATH": f"{bindir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
        "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "geoseg-train", "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_JOB_NUM_NODES": "1", "SLURM_NNODES": "1", "SLURM_CPUS_PER_TASK": "1", "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost",
    }
    out = tmp_path / "model"
    opts = ["--model", "unet", "--encoder", "test_resnet", "--model-option", "decoder_channels=[16,16,8,8,8]",
            "--accelerator", "cpu", "--batch-size", "8", "--patience", "0", "--limit-batches", "2"]  # later options win
    script = REPO / "pipelines" / "slurm" / "train.sbatch"
    first = subprocess.run(["bash", str(script), str(demo_cubes), str(out), *opts, "--epochs", "1"],
                           env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "trained unet (test_resnet) for 1 epochs" in first.stdout
    # the requeued / resubmitted job continues from the checkpoint (--auto-resume in the template)
    second = subprocess.run(["bash", str(script), str(demo_cubes), str(out), *opts, "--epochs", "2"],
                            env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Restoring states from the checkpoint" in second.stderr
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    usage = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr
