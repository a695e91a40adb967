"""DeepLabV3+ in 3D over (T, H, W): seed 003's volumetric variant for a season of dates.

Input ``(N, T, C, H, W)`` (a series, see :mod:`geoseg.models.temporal`), output 2D logits
``(N, K, H, W)`` like every model:

1. the input is multiplied by its own per-date validity (an invalid (date, pixel) never leaks)
   and, with ``masked_bn``, normalised date by date over valid pixels only;
2. encoder: a timm 2D backbone run on every date (band-aware first layer as in 2D), inflated
   to (2+1)D by a residual temporal convolution after each stage (:mod:`.temporal_stages`);
   time is never strided;
3. ASPP in 3D — kernels ``(k, 3, 3)``, atrous in space only — on P(encoder_depth), and the 3D
   decoder (P2 skip, two ``(k, 3, 3)`` convolutions) at stride 4; every normalisation there is a
   masked BatchNorm over the valid (date, cell)s, which also writes masked ones as 0;
4. masked temporal pooling: the mean over the dates where the cell is valid (0 where it is valid
   on no date), then the 1×1 classifier and the upsampling to the input size.

PointRend and the aux classification head take their level's features averaged over the
valid dates in the same way.

A cell of a feature map is valid on a date when any of its pixels is. ``time_steps`` None takes
any number of dates (T = 1 included).
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import torch
import torch.nn.functional as F
from pydantic import model_validator
from torch import Tensor, nn
from typing_extensions import override

from geoseg.errors import ModelError
from geoseg.models.base import Decoded
from geoseg.models.deeplabv3plus import DeepLabBase, DeepLabOptions
from geoseg.models.heads import SegmentationHead
from geoseg.models.masked_batchnorm import MaskedBatchNorm2d
from geoseg.models.options import opt
from geoseg.models.pointrend import PointRendOptions
from geoseg.models.temporal import SeriesFeatures, level_mask, masked_temporal_mean
from geoseg.models.temporal_stages import TemporalStages

__all__ = ["DeepLabV3Plus3D", "DeepLabV3Plus3DOptions", "ASPP3d", "MaskedConv3d"]


class DeepLabV3Plus3DOptions(PointRendOptions, DeepLabOptions):
    """Options of the 3D DeepLabV3+."""

    architecture: ClassVar[str] = "deeplabv3plus3d"
    temporal_modes: ClassVar[tuple[str, ...]] = ("3d",)
    single_date: ClassVar[bool] = False

    temporal: str | None = opt("3d", "time series (N, T, C, H, W), natively: '3d'")
    temporal_kernel: int = opt(3, "time extent of the temporal convolutions (encoder blocks, ASPP, decoder)")
    masked_bn: bool = opt(True, "masked BatchNorm on the input, date by date over valid pixels only")

    @model_validator(mode="after")
    def _check_temporal_kernel(self) -> Self:
        if self.temporal_kernel < 1 or self.temporal_kernel % 2 == 0:
            raise ModelError(f"deeplabv3plus3d.temporal_kernel must be a positive odd int, got {self.temporal_kernel}")
        return self


class MaskedConv3d(nn.Module):
    """Conv3d (no bias) → masked BatchNorm → ReLU on ``(N, C, T, h, w)``, masked positions 0 in and out.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        time_kernel: Kernel extent over time (padding keeps T).
        kernel: Kernel extent over space (padding keeps h, w).
        dilation: Spatial dilation (time is never dilated).
        separable: Depthwise convolution then pointwise 1×1×1.
    """

    def __init__(self, in_channels: int, out_channels: int, time_kernel: int = 1, kernel: int = 1,
                 dilation: int = 1, separable: bool = False) -> None:
        super().__init__()
        size = (time_kernel, kernel, kernel)
        spatial = dict(padding=(time_kernel // 2, dilation * (kernel // 2), dilation * (kernel // 2)),
                       dilation=(1, dilation, dilation), bias=False)
        if separable and max(size) > 1:
            self.conv: nn.Module = nn.Sequential(
                nn.Conv3d(in_channels, in_channels, size, groups=in_channels, **spatial),  # type: ignore[arg-type]
                nn.Conv3d(in_channels, out_channels, 1, bias=False),
            )
        else:
            self.conv = nn.Conv3d(in_channels, out_channels, size, **spatial)  # type: ignore[arg-type]
        self.norm = MaskedBatchNorm2d(out_channels)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Apply to ``x`` with validity ``mask`` ``(N, 1, T, h, w)``."""
        return F.relu(self.norm(self.conv(x * mask), mask))


class ASPP3d(nn.Module):
    """ASPP over ``(N, C, T, h, w)``: 1×1×1, ``(k, 3, 3)`` atrous in space per rate, per-date pooling.

    Args:
        in_channels: Input channels.
        out_channels: Channels of every branch and of the output.
        rates: Spatial dilation rate of each atrous branch.
        time_kernel: Time extent k of the atrous branches.
        separable: Depthwise-separable atrous convolutions.
        dropout: Dropout after the projection.
    """

    def __init__(self, in_channels: int, out_channels: int, rates: tuple[int, ...], time_kernel: int,
                 separable: bool = True, dropout: float = 0.5) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [MaskedConv3d(in_channels, out_channels)]
            + [MaskedConv3d(in_channels, out_channels, time_kernel, 3, r, separable) for r in rates]
        )
        self.pool = MaskedConv3d(in_channels, out_channels)
        self.project = MaskedConv3d((len(rates) + 2) * out_channels, out_channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Apply the branches and project their concatenation (``mask`` ``(N, 1, T, h, w)``)."""
        parts = [branch(x, mask) for branch in self.branches]
        # image pooling, date by date over the valid cells
        count = mask.sum(dim=(-2, -1), keepdim=True)
        mean = (x * mask).sum(dim=(-2, -1), keepdim=True) / count.clamp(min=1.0)
        pooled = self.pool(mean, (count > 0).to(x.dtype))
        parts.append(pooled.expand_as(parts[0]) * mask)
        return self.dropout(self.project(torch.cat(parts, dim=1), mask))


class DeepLabV3Plus3D(DeepLabBase[DeepLabV3Plus3DOptions]):
    """DeepLabV3+ in 3D over (T, H, W) with masked temporal pooling to a 2D map (module docstring)."""

    name: ClassVar[str] = "deeplabv3plus3d"
    summary: ClassVar[str] = ("DeepLabV3+ in 3D for time series: (2+1)D encoder, 3D ASPP and decoder, "
                              "masked temporal pooling, PointRend")
    supports_pointrend: ClassVar[bool] = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        opts = self.options
        kt = opts.temporal_kernel
        if opts.masked_bn:
            self.input_norm = MaskedBatchNorm2d(self.in_channels, mask_channels=opts.mask_channels)
        self.temporal_stages = TemporalStages(self.encoder, kt)
        self.deep_index = self.encoder.feature_at_level(opts.encoder_depth)
        self.low_index = self.encoder.feature_at_level(2)
        ch = self.encoder.channels
        rates = opts.rates_at(self.encoder.reductions[self.deep_index])
        self.aspp = ASPP3d(ch[self.deep_index], opts.aspp_channels, rates, kt, opts.separable, opts.aspp_dropout)
        self.low_level = MaskedConv3d(ch[self.low_index], opts.low_level_channels)
        self.decoder = nn.ModuleList([
            MaskedConv3d(opts.aspp_channels + opts.low_level_channels, opts.decoder_channels, kt, 3,
                         separable=opts.separable),
            MaskedConv3d(opts.decoder_channels, opts.decoder_channels, kt, 3, separable=opts.separable),
        ])
        self.segmentation_head = SegmentationHead(opts.decoder_channels, self.num_classes, kernel_size=1)

    @override
    def encode(self, x: Tensor, valid: Tensor | None) -> list[Tensor]:
        """Features ``(N, T, C_l, h_l, w_l)`` of the (2+1)D encoder, with their validity."""
        assert valid is not None  # the options make every input a series
        return SeriesFeatures(self.temporal_stages(self.encoder, x, valid), valid)

    @override
    def decode(self, features: list[Tensor], size: tuple[int, int], train: bool) -> Decoded:
        assert isinstance(features, SeriesFeatures)
        deep, low = (features[i].transpose(1, 2) for i in (self.deep_index, self.low_index))  # (N, C, T, h, w)
        deep_mask, low_mask = (level_mask(features.valid, f.shape[-2:]).transpose(1, 2) for f in (deep, low))
        x = self.aspp(deep, deep_mask)
        x = F.interpolate(x, size=low.shape[-3:], mode="trilinear", align_corners=False)  # T unchanged
        x = torch.cat([x, self.low_level(low, low_mask)], dim=1)
        for block in self.decoder:
            x = block(x, low_mask)
        pooled = masked_temporal_mean(x.transpose(1, 2), features.valid)
        return Decoded(logits=self.segmentation_head(pooled))

    def level_features(self, features: list[Tensor], level: int) -> Tensor:
        """A level's features averaged over the valid dates (PointRend, aux classification head)."""
        assert isinstance(features, SeriesFeatures)
        return masked_temporal_mean(features[self.encoder.feature_at_level(level)], features.valid)
