"""A run interrupted after an epoch and resumed ends with the weights of an uninterrupted run."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from geoseg.errors import CheckpointError, ConfigError
from geoseg.train import train
from geoseg.train.callbacks import EpochSeed
from tests.train._helpers import tiny_config


class Crash(Exception):
    """A simulated failure (node lost, job killed) at the start of the second epoch."""


# PSPNet: dropout and an aux head; random crops and flips: every random generator matters
OPTIONS = {"target_size": 48, "augment": True, "epochs": 2}


def test_resumed_run_matches_uninterrupted_run(demo_cubes, tmp_path, monkeypatch):
    full = train(tiny_config(demo_cubes, tmp_path / "full", "pspnet", **OPTIONS))

    original = EpochSeed.on_train_epoch_start

    def crash_at_second_epoch(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise Crash
        original(self, trainer, pl_module)

    interrupted = tiny_config(demo_cubes, tmp_path / "run", "pspnet", **OPTIONS)
    monkeypatch.setattr(EpochSeed, "on_train_epoch_start", crash_at_second_epoch)
    with pytest.raises(Crash):
        train(interrupted)
    monkeypatch.undo()
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "run" / "final").exists()
    # without --resume the occupied MODEL_DIR is refused
    with pytest.raises(ConfigError, match="already holds a training run"):
        train(interrupted)

    resumed = train(interrupted.model_copy(update={"resume": True}))
    assert resumed.epochs == full.epochs == 2
    a = load_file(str(tmp_path / "full" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "run" / "final" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=key)
    # the history (restored from the checkpoint) and the validation scores agree too
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    for h_full, h_res in zip(full.history, resumed.history, strict=True):
        assert h_res["val_miou"] == pytest.approx(h_full["val_miou"], abs=1e-6)
        assert h_res["train_loss"] == pytest.approx(h_full["train_loss"], rel=1e-5)


def test_resume_errors(demo_cubes, tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        train(tiny_config(demo_cubes, tmp_path / "none", resume=True))
    # 'auto' starts a fresh run when there is nothing to resume
    done = train(tiny_config(demo_cubes, tmp_path / "auto", resume="auto", epochs=1, validate_every=1))
    assert done.epochs == 1 and done.best is not None
    # another architecture cannot continue this checkpoint
    with pytest.raises(CheckpointError, match="cannot resume: model, cat_channels, model_options differ"):
        train(tiny_config(demo_cubes, tmp_path / "auto", "unet3plus", resume=True, epochs=2))
