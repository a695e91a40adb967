"""Helpers of the trainer tests: tiny training configs (the demo stores are fixtures of tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# tiny model options per architecture, for fast CPU runs
TINY: dict[str, dict[str, Any]] = {
    "unet": {"model_options": {"decoder_channels": [32, 16, 16, 8, 8]}},
    "unet3plus": {"cat_channels": 8},
    "rsprunetpp": {"model_options": {"decoder_channels": [16, 16, 8, 8]}},
    "deeplabv3plus": {"model_options": {"aspp_channels": 16, "decoder_channels": 16, "low_level_channels": 8}},
    "pspnet": {"model_options": {"psp_channels": 16, "decoder_channels": [16, 16, 8, 8]}},
}


def tiny_config(cubes: Path, out: Path, model: str = "unet", **overrides: Any):
    """A TrainConfig for a fast CPU run of ``model`` with a tiny timm encoder."""
    from geoseg.train import TrainConfig

    base: dict[str, Any] = {
        "cubes": cubes, "out": out, "model": model, "encoder": "test_resnet", "epochs": 2, "batch_size": 8,
        "lr": 2e-3, "progress": False, "num_workers": 0, "patience": None, **TINY.get(model, {}),
    }
    base.update(overrides)
    return TrainConfig(**base)
