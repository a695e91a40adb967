"""Batch normalisation that ignores no-data pixels (RSPRUNet++ input normalisation).

A pixel is *valid* when its first ``mask_channels`` input channels are not all zero
(Sentinel-2 no-data is 0 in every reflectance band; the rule is :func:`geoseg.validity.valid_mask`,
and training builds the model with the recipe's mask channels). Batch statistics are computed over
valid pixels only, masked pixels are written as exactly 0, and running statistics follow
:class:`torch.nn.BatchNorm2d`: ``running = (1 - momentum) * running + momentum * batch``
with the *unbiased* batch variance (``momentum=None`` gives the cumulative average).
The computation has no data-dependent Python branches, so it traces/export cleanly.

The same layer normalises volumes ``(N, C, T, H, W)`` (the 3D decoder of ``deeplabv3plus3d``)
with a mask ``(N, 1, T, H, W)``; a time series ``(N, T, C, H, W)`` is normalised date by date
as ``(N*T, C, H, W)``. Either way a masked date (or a masked pixel of a date) is left out of the
statistics and written as 0.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from typing_extensions import override

from geoseg.validity import DEFAULT_MASK_CHANNELS, valid_mask

__all__ = ["MaskedBatchNorm2d", "valid_pixel_mask"]


def valid_pixel_mask(x: Tensor, mask_channels: int = DEFAULT_MASK_CHANNELS) -> Tensor:
    """Return the (N, 1, H, W) float mask of :func:`geoseg.validity.valid_mask`.

    Args:
        x: Input (N, C, H, W).
        mask_channels: How many leading channels decide validity (all if C is smaller).

    Returns:
        1.0 for valid pixels, 0.0 for no-data pixels, dtype of ``x``.
    """
    return valid_mask(x, mask_channels).to(x.dtype)


class MaskedBatchNorm2d(nn.Module):
    """BatchNorm2d whose statistics and output only involve valid pixels.

    Input ``(N, C, H, W)``, or ``(N, C, T, H, W)`` with the mask given (statistics over
    every valid position of every dimension but C).

    Args:
        num_features: Number of channels C.
        mask_channels: Leading channels that define validity (see :func:`valid_pixel_mask`).
        eps: Added to the variance for numerical stability.
        momentum: Running-statistics momentum (PyTorch convention); None = cumulative mean.
        affine: Learn a per-channel scale and shift.
        track_running_stats: Keep running statistics and use them in eval mode.
    """

    # registered buffers (None without track_running_stats), typed as torch's BatchNorm types them
    running_mean: Tensor | None
    running_var: Tensor | None
    num_batches_tracked: Tensor | None

    def __init__(
        self,
        num_features: int,
        mask_channels: int = DEFAULT_MASK_CHANNELS,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__()
        self.num_features = num_features
        self.mask_channels = mask_channels
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    @override
    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, mask_channels={self.mask_channels}, eps={self.eps}, "
            f"momentum={self.momentum}, affine={self.affine}"
        )

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Normalise ``x``; ``mask`` (N, 1, ...) overrides the mask derived from ``x``."""
        m = valid_pixel_mask(x, self.mask_channels) if mask is None else mask.to(x.dtype)
        dims = (0, *range(2, x.ndim))  # every dimension but the channels
        shape = (1, -1) + (1,) * (x.ndim - 2)  # a per-channel vector broadcast over them
        use_batch = self.training or not self.track_running_stats
        if use_batch:
            n = m.sum()  # valid pixels (same for every channel)
            n_safe = n.clamp(min=1.0)
            mean = (x * m).sum(dim=dims) / n_safe
            centred = (x - mean.view(shape)) * m
            var = (centred * centred).sum(dim=dims) / n_safe  # biased, for normalising
            if self.training and self.track_running_stats:
                self._update_running(mean, var, n)
        else:
            assert self.running_mean is not None and self.running_var is not None  # track_running_stats
            mean, var = self.running_mean, self.running_var
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y * m  # masked pixels are exactly 0

    @torch.no_grad()
    def _update_running(self, mean: Tensor, var: Tensor, n: Tensor) -> None:
        # A batch with fewer than 2 valid pixels has no unbiased variance: leave stats alone.
        assert self.num_batches_tracked is not None
        assert self.running_mean is not None and self.running_var is not None
        has_stats = (n > 1).to(mean.dtype)
        self.num_batches_tracked.add_(has_stats.long())
        if self.momentum is None:  # cumulative moving average, as nn.BatchNorm2d
            factor = has_stats / self.num_batches_tracked.clamp(min=1).to(mean.dtype)
        else:
            factor = has_stats * self.momentum
        unbiased = var * n / (n - 1).clamp(min=1.0)
        self.running_mean.add_(factor * (mean - self.running_mean))
        self.running_var.add_(factor * (unbiased - self.running_var))
