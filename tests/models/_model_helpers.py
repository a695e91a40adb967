"""Helpers for the model tests: tiny encoders and small decoders keep CPU time low."""

from __future__ import annotations

import torch

# Sentinel-2 channel names of the s2_24 recipe (geoseg/features/recipes.yaml).
S2_24 = [
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12",
    "NDWI", "DWSI", "NGRDI", "RDI", "GLI", "NDRE2", "PBI", "NDVI", "GNDVI", "CIG", "CVI",
    "NDRE3", "DRS",
]

# A tiny timm encoder per architecture (different families on purpose) and small decoders.
SMALL_ENCODER = {
    "rsprunetpp": "test_resnet",
    "unet3plus": "test_convnext",
    "deeplabv3plus": "test_resnet",
    "pspnet": "test_efficientnet",
    "unet": "test_resnet",
}
SMALL_OPTIONS: dict[str, dict] = {
    "rsprunetpp": {"decoder_channels": [32, 32, 16, 16], "deep_supervision": True},
    "unet3plus": {"cat_channels": 16, "deep_supervision": True},
    "deeplabv3plus": {"aspp_channels": 32, "decoder_channels": 32, "low_level_channels": 16},
    "pspnet": {"psp_channels": 64, "decoder_channels": [32, 32, 16, 16]},
    "unet": {"decoder_channels": [64, 32, 32, 16, 16]},
}


def make_input(n: int, c: int, h: int, w: int, invalid_fraction: float = 0.0) -> torch.Tensor:
    """Random input; a top-left block of invalid pixels (all channels 0) if requested."""
    x = torch.randn(n, c, h, w)
    if invalid_fraction:
        k = int(h * invalid_fraction)
        x[:, :, :k, :k] = 0
    return x
