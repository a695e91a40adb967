"""Device 'auto': CUDA gets mixed precision and channels-last, the CPU float32; torch.compile."""

from __future__ import annotations

import pytest
import torch

from geoseg.errors import ConfigError
from geoseg.train import SegmentationTask, TrainConfig, resolve_hardware, train


@pytest.mark.parametrize(("cuda", "bf16", "expected"), [
    (False, False, ("cpu", "32-true", False)),
    (True, True, ("cuda", "bf16-mixed", True)),
    (True, False, ("cuda", "16-mixed", True)),
])
def test_auto_hardware(monkeypatch, cuda, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert resolve_hardware(TrainConfig()) == expected
    # explicit choices win
    assert resolve_hardware(TrainConfig(accelerator="cpu")) == ("cpu", "32-true", False)
    assert resolve_hardware(TrainConfig(precision="bf16-mixed", channels_last="yes"))[1:] == ("bf16-mixed", True)


def test_channels_last_module_gives_the_same_logits():
    cfg = TrainConfig(model="unet", encoder="test_resnet", model_options={"decoder_channels": [16, 16, 8, 8, 8]})
    names = [f"c{i}" for i in range(24)]
    torch.manual_seed(0)
    plain = SegmentationTask(cfg.model_dump(mode="json"), 24, names, list("abcdef")).eval()
    cl = SegmentationTask(cfg.model_dump(mode="json"), 24, names, list("abcdef"), channels_last=True).eval()
    cl.model.load_state_dict(plain.model.state_dict())
    x = torch.randn(2, 24, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(cl(x.contiguous(memory_format=torch.channels_last)), plain(x), rtol=1e-4, atol=1e-5)


def test_unusable_strategies_are_one_line_errors(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    from geoseg.train.runner import _strategy

    with pytest.raises(ConfigError, match="needs DeepSpeed"):
        _strategy(TrainConfig(strategy="deepspeed_stage_2"), "cuda")
    with pytest.raises(ConfigError, match="SyncBatchNorm has no CPU"):
        _strategy(TrainConfig(sync_batchnorm=True), "cpu")


@pytest.mark.slow  # torch.compile's first compilation (~12 s): .ci/run runs the slow tier after the default suite
def test_compiled_model_matches_eager_and_trains(demo_cubes, tmp_path):
    """torch.compile on CPU (inductor needs a C++ compiler; minutes on a loaded 2-core machine)."""
    cfg = TrainConfig(model="unet", encoder="test_resnet", compile=True,
                      model_options={"decoder_channels": [16, 16, 8, 8, 8]})
    task = SegmentationTask(cfg.model_dump(mode="json"), 24, [f"c{i}" for i in range(24)], list("abcdef")).eval()
    x = torch.randn(2, 24, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(task(x), task.model(x), rtol=1e-4, atol=1e-5)
    result = train(cfg.model_copy(update={"cubes": demo_cubes, "out": tmp_path / "m", "epochs": 1,
                                          "progress": False, "limit_batches": 2}))
    assert (tmp_path / "m" / "best" / "model.safetensors").is_file() and result.epochs == 1
