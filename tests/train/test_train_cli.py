"""geoseg train / geoseg evaluate: YAML config + CLI overrides, outputs, one-line user errors."""

from __future__ import annotations

import json

import pytest
import yaml

from geoseg.cli.main import main
from geoseg.train import TrainConfig, load_train_config


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_train_from_yaml_with_cli_overrides_then_evaluate(demo_cubes, tmp_path, capsys):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump({
        "cubes": str(demo_cubes), "out": "model",  # relative to the YAML's folder
        "model": "unet3plus", "encoder": "test_resnet", "cat_channels": 8, "epochs": 5, "lr": 0.003,
        "num_workers": 0, "progress": False,
    }))
    code, out, err = run(capsys, "train", "--config", cfg, "--epochs", "1", "--batch-size", "6", "--patience", "0",
                         "--deep-supervision", "--save-every", "1", "--class-weights", "auto")
    assert code == 0, err
    model = tmp_path / "model"
    assert "trained unet3plus (test_resnet) for 1 epochs" in out and f"best model:  {model / 'best'}" in out
    resolved = yaml.safe_load((model / "config.yaml").read_text())
    assert resolved["epochs"] == 1 and resolved["batch_size"] == 6 and resolved["lr"] == 0.003  # CLI wins, YAML kept
    assert resolved["patience"] is None and resolved["deep_supervision"] is True
    assert (model / "epoch_1" / "config.json").is_file()
    weights = json.loads((model / "best" / "config.json").read_text())["extra"]["class_weights"]
    assert len(weights) == 6 and max(weights) > 1.0

    ev = tmp_path / "eval"
    code, out, err = run(capsys, "evaluate", model / "best", demo_cubes, "--out", ev, "--split", "val",
                         "--save-examples", "2", "--fp16")
    assert code == 0, err
    assert "mIoU" in out and "water" in out
    metrics = json.loads((ev / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"water", "forest", "cropland", "grassland", "built-up", "bare soil"}
    assert {"miou", "oa", "f1", "kappa", "confusion_matrix", "split", "num_cubes"} <= set(metrics)
    assert metrics["precision"] == "bfloat16" and metrics["split"] == "val"
    assert (ev / "confusion_matrix.png").stat().st_size > 1000
    assert sorted(p.name for p in (ev / "examples").iterdir()) == ["example_0.png", "example_1.png"]
    report = (ev / "evaluation_report.txt").read_text()
    assert "mIoU" in report and "built-up" in report and "confusion matrix" in report
    # the training run itself, as for predict: its best bundle
    code, out, err = run(capsys, "evaluate", model, demo_cubes, "--out", tmp_path / "eval_run", "--split", "val")
    assert code == 0, err
    assert json.loads((tmp_path / "eval_run" / "metrics.json").read_text())["model_dir"] == str((model / "best").resolve())


def test_user_errors_are_one_line_with_exit_code_2(demo_cubes, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("modle: unet\n")
    code, _, err = run(capsys, "train", demo_cubes, "--out", tmp_path / "m", "--config", bad)
    assert code == 2 and "unknown key 'modle'" in err and "did you mean 'model'" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, _, err = run(capsys, "train", tmp_path / "no-store", "--out", tmp_path / "m")
    assert code == 2 and "no CubeStore here" in err
    code, _, err = run(capsys, "train", demo_cubes, "--out", tmp_path / "m", "--model", "unet4")
    assert code == 2 and "unknown model 'unet4'" in err
    code, _, err = run(capsys, "train", demo_cubes, "--out", tmp_path / "m", "--target-size", "128")
    assert code == 2 and "larger than the cubes" in err
    code, _, err = run(capsys, "train", demo_cubes)
    assert code == 2 and "needs `cubes`" in err and "--out" in err
    code, _, err = run(capsys, "evaluate", tmp_path, demo_cubes, "--out", tmp_path / "e")
    assert code == 2 and "not a model directory" in err
    code, _, err = run(capsys, "evaluate", tmp_path / "no-model", demo_cubes, "--out", tmp_path / "e")
    assert code == 2 and "model directory does not exist" in err and "--model" not in err
    assert not (tmp_path / "e").exists() and not (tmp_path / "m").exists()  # nothing half-written


def test_config_model_rejects_bad_values_and_resolves_aliases(tmp_path):
    with pytest.raises(ValueError, match="cat_channels is a unet3plus option"):
        TrainConfig(model="unet", cat_channels=16)
    assert TrainConfig(precision="32").precision == "32-true"
    assert TrainConfig(devices="2").devices == 2
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 3\nloss: focal\n")
    loaded = load_train_config(cfg, epochs=7, lr=None)
    assert loaded.epochs == 7 and loaded.loss == "focal" and loaded.lr == TrainConfig().lr
    from geoseg.errors import ConfigError

    cfg.write_text("schedule: cosinus\n")
    with pytest.raises(ConfigError, match="schedule"):
        load_train_config(cfg)


def test_an_activated_classifier_is_refused_for_training():
    """geoseg trains on logits: seed 003's classifier_activation would train on probabilities."""
    from geoseg.errors import ConfigError
    from geoseg.train import load_train_config

    with pytest.raises(ConfigError, match="classifier_activation"):
        load_train_config(model="deeplabv3plus", model_options={"classifier_activation": "softmax"})
    assert load_train_config(model="deeplabv3plus", model_options={"classifier_activation": None}).model_options
