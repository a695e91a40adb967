"""Helpers for the model tests: tiny encoders and small decoders keep CPU time low."""

from __future__ import annotations

import torch

from geoseg.models import SegmentationModel, get_model_class, list_models

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
    "deeplabv3plus3d": "test_resnet",
}
SMALL_OPTIONS: dict[str, dict] = {
    "rsprunetpp": {"decoder_channels": [32, 32, 16, 16], "deep_supervision": True},
    "unet3plus": {"cat_channels": 16, "deep_supervision": True},
    "deeplabv3plus": {"aspp_channels": 32, "decoder_channels": 32, "low_level_channels": 16},
    "pspnet": {"psp_channels": 64, "decoder_channels": [32, 32, 16, 16]},
    "unet": {"decoder_channels": [64, 32, 32, 16, 16]},
    "deeplabv3plus3d": {"aspp_channels": 32, "decoder_channels": 32, "low_level_channels": 16},
}
TIME_STEPS = 3  # dates of the series in the contract tests


def single_date_models() -> list[str]:
    """Registered architectures that take one date (N, C, H, W)."""
    return [name for name in list_models() if get_model_class(name).Options.single_date]


def series_variants() -> list[tuple[str, str]]:
    """(architecture, temporal mode) of every time-series model the registry builds."""
    return [(name, mode) for name in list_models() for mode in get_model_class(name).Options.temporal_modes]


def series_options(name: str, temporal: str | None) -> dict:
    """Keywords of a small model of ``name`` in the ``temporal`` mode (None: the model's default)."""
    out = dict(SMALL_OPTIONS[name])
    if temporal is not None:
        out["temporal"] = temporal
    if temporal == "channels":
        out["time_steps"] = TIME_STEPS
    return out


def make_input(n: int, c: int, h: int, w: int, invalid_fraction: float = 0.0) -> torch.Tensor:
    """Random input; a top-left block of invalid pixels (all channels 0) if requested."""
    x = torch.randn(n, c, h, w)
    if invalid_fraction:
        k = int(h * invalid_fraction)
        x[:, :, :k, :k] = 0
    return x


def make_series(n: int, t: int, c: int, h: int, w: int, invalid_fraction: float = 0.0) -> torch.Tensor:
    """Random series (N, T, C, H, W): each date as :func:`make_input`, date 1 (if any) also
    invalid (0 in every channel) in its bottom rows."""
    x = torch.stack([make_input(n, c, h, w, invalid_fraction) for _ in range(t)], dim=1)
    if t > 1 and invalid_fraction:
        x[:, 1, :, h - max(1, int(h * invalid_fraction)):] = 0
    return x


def model_input(model: SegmentationModel, n: int, c: int, h: int, w: int,
                invalid_fraction: float = 0.0) -> torch.Tensor:
    """The input ``model`` takes: (N, C, H, W), or a series of ``time_steps`` (else 3) dates."""
    if not model.takes_series:
        return make_input(n, c, h, w, invalid_fraction)
    return make_series(n, model.options.time_steps or TIME_STEPS, c, h, w, invalid_fraction)
