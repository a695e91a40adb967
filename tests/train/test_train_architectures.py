"""A short CPU training run of every architecture writes the full MODEL_DIR, and the bundle
written to best/ reproduces the validation scores from its config.json alone."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml

from geoseg.bundle import load_bundle
from geoseg.models import get_model_class, list_models
from geoseg.train import evaluate, train
from tests.train._helpers import tiny_config

# each architecture also exercises other options (heads, losses, schedules, outputs)
EXTRA = {
    "unet": {"aux_head": True, "schedule": "onecycle", "loss": "ce"},
    "unet3plus": {"deep_supervision": True, "class_weights": "auto", "loss": "focal_dice"},
    "rsprunetpp": {"deep_supervision": True, "schedule": "plateau", "warmup_epochs": 0.5},
    "deeplabv3plus": {"model_options": {"aspp_channels": 16, "decoder_channels": 16, "low_level_channels": 8,
                                        "pointrend": True, "point_train_points": 64,
                                        "point_subdivision_points": 256, "point_fc_dim": 16}},
    "pspnet": {"save_every": 1, "target_size": 48, "optimizer": "sgd", "lr": 0.01},
}


def test_every_registered_architecture_is_covered():
    """Every architecture that takes one date (deeplabv3plus3d takes series only)."""
    assert sorted(EXTRA) == sorted(n for n in list_models() if get_model_class(n).Options.single_date)


@pytest.mark.parametrize("arch", list(EXTRA))
def test_short_training_writes_model_dir_and_best_reproduces_val_metrics(arch, demo_cubes, tmp_path):
    out = tmp_path / "model"
    cfg = tiny_config(demo_cubes, out, arch, **EXTRA[arch])
    result = train(cfg)

    # the full MODEL_DIR
    for name in ("best/config.json", "best/model.safetensors", "final/config.json", "final/model.safetensors",
                 "checkpoints/last.ckpt", "training_plots.png", "config.yaml", "history.json", "logs/metrics.csv"):
        assert (out / name).is_file(), name
    assert (out / "epoch_1").is_dir() == (arch == "pspnet") and (out / "epoch_2").is_dir() == (arch == "pspnet")
    assert yaml.safe_load((out / "config.yaml").read_text())["model"] == arch
    assert result.epochs == 2 and len(result.history) == 2
    assert {"train_loss", "val_loss", "train_miou", "val_miou", "val_f1", "lr"} <= set(result.history[-1])
    with open(out / "logs" / "metrics.csv") as fh:
        columns = set(next(csv.reader(fh)))
    assert {"val_miou", "val_oa", "val_f1", "val_kappa", "train_loss_step"} <= columns

    # best/ holds everything predict needs, and rebuilds the architecture from config.json alone
    bundle = load_bundle(out / "best")
    cfg_json = json.loads((out / "best" / "config.json").read_text())
    assert bundle.config.model.name == arch and bundle.config.model.encoder == "test_resnet"
    assert [c.code for c in bundle.config.classes] == [1, 2, 3, 4, 5, 6]
    assert bundle.config.classes[0].name == "water" and bundle.config.classes[0].color.startswith("#")
    assert len(bundle.config.normalization.mean) == 24 and bundle.config.channel_names[3] == "B04"
    assert bundle.config.window == (48 if arch == "pspnet" else 64)
    measured = {int(k): v for k, v in cfg_json["predict_window_costs"].items()}
    assert bundle.config.window in measured and bundle.config.predict_window in measured  # the fastest, measured
    assert measured[bundle.config.predict_window] <= min(measured.values()) * 1.1
    assert cfg_json["extra"]["epoch"] == result.best_epoch
    x = torch.zeros(1, 24, 64, 64)
    logits = bundle.model(x)
    logits = logits[0] if isinstance(logits, tuple) else logits
    assert logits.shape == (1, 6, 64, 64)

    # evaluating best/ on the validation split reproduces the logged validation scores
    ev = evaluate(out / "best", demo_cubes, tmp_path / "eval", split="val")
    for key in ("miou", "oa", "f1", "kappa"):
        assert ev.metrics[key] == pytest.approx(result.metrics[key], abs=1e-6), key
    assert ev.metrics["confusion_matrix"] == result.metrics["confusion_matrix"]
    best_row = next(h for h in result.history if h["epoch"] == result.best_epoch)
    assert best_row["val_miou"] == pytest.approx(result.best_score)
