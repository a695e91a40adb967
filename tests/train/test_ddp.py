"""A real 2-process DDP run on CPU (gloo) agrees with a 1-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from geoseg.train import evaluate, train
from tests.train._helpers import tiny_config

# Same data order and effective batch in both runs: the single process takes batches of 8
# shuffled cubes, the two DDP ranks take 4 of the same 8 each (ShardSampler). No augmentation
# (ranks draw different flips) and plain cross-entropy. Remaining differences: BatchNorm
# statistics over 4 instead of 8 cubes (SyncBatchNorm is CUDA-only) and the per-rank
# averaging of the loss.
COMMON = {"epochs": 2, "augment": False, "loss": "ce", "lr": 2e-3, "seed": 3}


def test_two_process_ddp_matches_single_process(demo_cubes, tmp_path):
    single = train(tiny_config(demo_cubes, tmp_path / "single", batch_size=8, **COMMON))

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "geoseg", "train", str(demo_cubes), "--out", str(out),
           "--model", "unet", "--encoder", "test_resnet", "--model-option", "decoder_channels=[32,16,16,8,8]",
           "--epochs", "2", "--batch-size", "4", "--no-augment", "--loss", "ce", "--lr", "2e-3", "--seed", "3",
           "--num-workers", "0", "--patience", "0", "--no-progress",
           "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "best epoch" in proc.stdout

    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    ddp_best = json.loads((out / "best" / "config.json").read_text())["extra"]
    # validation in DDP scores every val cube exactly once: its synced confusion matrix equals a
    # single-process evaluation of the same weights
    ev = evaluate(out / "best", demo_cubes, tmp_path / "eval", split="val")
    assert ev.metrics["confusion_matrix"] == ddp_best["metrics"]["confusion_matrix"]
    assert ev.metrics["miou"] == pytest.approx(ddp_best["metrics"]["miou"], abs=1e-9)
    # and training took the same path as the 1-process run, within tolerance
    for h_single, h_ddp in zip(single.history, history, strict=True):
        print(f"epoch {h_ddp['epoch']}: train loss {h_single['train_loss']:.4f} (1 process) vs {h_ddp['train_loss']:.4f} "
              f"(DDP), val loss {h_single['val_loss']:.4f} vs {h_ddp['val_loss']:.4f}, val OA {h_single['val_oa']:.4f} "
              f"vs {h_ddp['val_oa']:.4f}, val mIoU {h_single['val_miou']:.4f} vs {h_ddp['val_miou']:.4f}")
        assert h_ddp["train_loss"] == pytest.approx(h_single["train_loss"], rel=0.05)
        assert h_ddp["val_loss"] == pytest.approx(h_single["val_loss"], rel=0.05)
        assert h_ddp["val_miou"] == pytest.approx(h_single["val_miou"], abs=0.05)
        assert h_ddp["val_oa"] == pytest.approx(h_single["val_oa"], abs=0.05)
