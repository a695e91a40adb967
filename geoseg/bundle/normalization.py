"""Normalisation of a bundle's inputs: per-channel ``(x - mean) / std`` on valid pixels only."""

from __future__ import annotations

import torch

from geoseg.config.schema import StrictModel
from geoseg.validity import DEFAULT_MASK_CHANNELS, valid_mask

__all__ = ["Normalization", "normalize"]


class Normalization(StrictModel):
    """Per-channel mean/std over valid pixels (from the CubeStore's stats.json)."""

    mean: list[float]
    std: list[float]


def normalize(x: torch.Tensor, norm: Normalization, mask_channels: int = DEFAULT_MASK_CHANNELS) -> torch.Tensor:
    """``(x - mean) / std`` on valid pixels; invalid pixels (:func:`geoseg.validity.valid_mask`) stay exactly 0.

    Works on (C, H, W) or (N, C, H, W) tensors.
    """
    channel_dim = x.dim() - 3
    shape = [1] * x.dim()
    shape[channel_dim] = -1
    mean = torch.as_tensor(norm.mean, dtype=x.dtype, device=x.device).view(shape)
    std = torch.as_tensor(norm.std, dtype=x.dtype, device=x.device).view(shape)
    valid = valid_mask(x, mask_channels, channel_dim)
    return torch.where(valid, (x - mean) / std.clamp_min(1e-12), torch.zeros_like(x))
