"""A real 2-process DDP run on CPU (gloo): rank 0 alone writes MODEL_DIR, and it agrees with 1 process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from geoseg.bundle import load_bundle
from geoseg.train import evaluate, train
from tests.train._helpers import tiny_config

pytestmark = pytest.mark.slow  # two-process DDP training (~20 s): .ci/run runs the slow tier after the suite

# Same data order and effective batch in both runs: the single process takes batches of 8
# shuffled cubes, the two DDP ranks take 4 of the same 8 each (ShardSampler). No augmentation
# (ranks draw different flips) and plain cross-entropy. Remaining differences: BatchNorm
# statistics over 4 instead of 8 cubes (SyncBatchNorm is CUDA-only) and the per-rank
# averaging of the loss.
COMMON = {"epochs": 2, "augment": False, "loss": "ce", "lr": 2e-3, "seed": 3}
AUDIT = Path(__file__).with_name("_ddp_audit.py")
REPO = Path(__file__).resolve().parents[2]


def _writes(log: Path) -> list[tuple[str, str]]:
    return [tuple(line.split("\t", 1)) for line in log.read_text().splitlines()]  # type: ignore[misc]


@pytest.fixture(scope="module")
def ddp_run(demo_cubes: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """``geoseg train --devices 2 --strategy ddp`` with every rank's file writes recorded."""
    root = tmp_path_factory.mktemp("ddp")
    out, audit = root / "model", root.parent / f"{root.name}-audit"
    args = ["train", str(demo_cubes), "--out", str(out),
            "--model", "unet", "--encoder", "test_resnet", "--model-option", "decoder_channels=[32,16,16,8,8]",
            "--epochs", "2", "--batch-size", "4", "--no-augment", "--loss", "ce", "--lr", "2e-3", "--seed", "3",
            "--num-workers", "0", "--patience", "0", "--no-progress", "--save-every", "1", "--profiler", "simple",
            "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
    cmd = [sys.executable, str(AUDIT), str(audit), str(root), "--", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, audit, proc.stdout


def test_ddp_outputs_written_by_rank_zero_only(ddp_run):
    out, audit, stdout = ddp_run
    rank0, rank1 = _writes(audit / "rank0.log"), _writes(audit / "rank1.log")
    # rank 1 ran (its audit log exists) and wrote nothing at all under the run directory
    assert rank1 == []
    written = {path for event, path in rank0 if event in ("open", "rename-to")}
    for name in ("model/config.yaml", "model/history.json", "model/training_plots.png", "model/best",
                 "model/final", "model/epoch_1", "model/epoch_2", "model/checkpoints/last.ckpt",
                 "model/logs/metrics.csv", "model/profile.txt"):
        assert name in written, f"rank 0 did not write {name}"
    # bundles appear by rename of a complete temporary directory, never written in place
    bundles = ("model/best/", "model/final/", "model/epoch_1/", "model/epoch_2/")
    assert not [(event, path) for event, path in rank0 if path.startswith(bundles)]
    # nothing temporary or per-rank is left behind
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert not [n for n in names if ".tmp-" in n]
    assert json.loads((out / ".geoseg.json").read_text())["kind"] == "training run"  # geoseg's own folder
    assert sorted(p.name for p in out.iterdir() if p.name != ".geoseg.json") == [
        "best", "checkpoints", "config.yaml", "epoch_1", "epoch_2", "final", "history.json", "logs",
        "profile.txt", "training_plots.png"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.ckpt"]
    # the report is printed once (by rank 0)
    assert stdout.count("best epoch") == 1
    assert stdout.count("final model:") == 1


def test_ddp_bundles_load_and_match_the_checkpoint(ddp_run):
    out, _, _ = ddp_run
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    weights = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    final = load_bundle(out / "final")
    for name, value in final.model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    last_epoch = load_bundle(out / "epoch_2")
    for name, value in last_epoch.model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    assert load_bundle(out / "epoch_1").config.extra["epoch"] == 1
    assert last_epoch.config.extra["epoch"] == final.config.extra["epoch"] == 2
    best = load_bundle(out / "best")
    history = json.loads((out / "history.json").read_text())
    best_epoch = max(history, key=lambda h: h["val_miou"])["epoch"]
    assert best.config.extra["epoch"] == best_epoch
    assert best.config.extra["metrics"]["miou"] == pytest.approx(history[best_epoch - 1]["val_miou"], abs=1e-6)
    assert ckpt["epoch"] == 1  # 0-based: the checkpoint of the 2nd (last) epoch
    assert "fit" in (out / "profile.txt").read_text().lower()


def test_two_process_ddp_matches_single_process(ddp_run, demo_cubes, tmp_path):
    out, _, _ = ddp_run
    single = train(tiny_config(demo_cubes, tmp_path / "single", batch_size=8, **COMMON))

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
