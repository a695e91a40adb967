"""DeepLabV3+ (Chen et al. 2018) with a selectable encoder depth.

``encoder_depth`` chooses the ASPP input; the low-level skip is always P2 (stride 4):

=============  ======================  =====================
encoder_depth  deep feature (ASPP in)  low-level feature
=============  ======================  =====================
5 (default)    P5                      P2
4              P4                      P2
3              P3                      P2
=============  ======================  =====================

``output_stride`` (8 or 16) dilates the backbone so the deep feature keeps that stride
(default 16, or 2**encoder_depth if smaller). ``head_upsample`` fixes the final upsampling
factor (useful with custom encoders); by default the logits are resized to the
input size. Decoder as in the paper: ASPP(256) → ×up → concat 1×1(48) low-level → two 3×3
convs (depthwise-separable by default) → 1×1 classifier. Optional PointRend head.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self, TypeVar

import torch
import torch.nn.functional as F
from pydantic import model_validator
from torch import Tensor, nn
from typing_extensions import override

from geoseg.errors import ModelError
from geoseg.models.base import Decoded, SegmentationModel
from geoseg.models.heads import ConvBNReLU, SegmentationHead
from geoseg.models.options import ArchOptions, opt
from geoseg.models.pointrend import PointRendOptions

__all__ = ["DeepLabV3Plus", "DeepLabBase", "DeepLabOptions", "DeepLabV3PlusOptions", "ASPP"]


class DeepLabOptions(ArchOptions):
    """Options of the DeepLabV3+ decoder, shared by ``deeplabv3plus`` and ``deeplabv3plus3d``."""

    architecture: ClassVar[str] = "deeplabv3plus"

    output_stride: int | None = opt(None, "stride of the ASPP input: 8, 16 or 32 (None: min(16, 2**encoder_depth))")
    atrous_rates: tuple[int, ...] | None = opt(None, "ASPP dilation rates (None: 6,12,18 scaled by 16/output_stride)")
    aspp_channels: int = opt(256, "ASPP output channels")
    aspp_dropout: float = opt(0.5, "dropout after the ASPP projection")
    low_level_channels: int = opt(48, "channels of the projected P2 skip")
    decoder_channels: int = opt(256, "channels of the decoder convolutions")
    separable: bool = opt(True, "depthwise-separable 3x3 convolutions in ASPP and decoder")
    # seed 003 (medicai): the activation of model(x); forward_train keeps logits for the losses
    classifier_activation: Literal["sigmoid", "softmax"] | None = opt(
        None, "activation of model(x)'s mask: sigmoid or softmax (None: logits; forward_train: logits)")

    @model_validator(mode="after")
    def _check_deeplab(self) -> Self:
        if self.encoder_depth < 3:
            raise ModelError(f"{self.architecture}.encoder_depth must be 3, 4 or 5, got {self.encoder_depth}")
        if self.output_stride is not None and (
            self.output_stride not in (8, 16, 32) or self.output_stride > 2**self.encoder_depth
        ):
            raise ModelError(
                f"{self.architecture}.output_stride must be 8, 16 or 32 and <= 2**encoder_depth "
                f"({2**self.encoder_depth}), got {self.output_stride}"
            )
        return self

    @property
    def stride(self) -> int:
        """Resolved output stride."""
        return self.output_stride or min(16, 2**self.encoder_depth)

    @property
    def rates(self) -> tuple[int, ...]:
        """Resolved ASPP rates."""
        return self.rates_at(self.stride)

    def rates_at(self, stride: int) -> tuple[int, ...]:
        """ASPP rates for a deep feature at ``stride`` (an encoder that could not dilate)."""
        return self.atrous_rates or tuple(max(1, r * 16 // stride) for r in (6, 12, 18))


class DeepLabV3PlusOptions(PointRendOptions, DeepLabOptions):
    """Options of DeepLabV3+."""

    architecture: ClassVar[str] = "deeplabv3plus"

    head_upsample: int | None = opt(None, "fixed final upsampling factor (None: resize to the input size)")

    @model_validator(mode="after")
    def _check_head_upsample(self) -> Self:
        if self.head_upsample is not None and self.head_upsample < 1:
            raise ModelError(f"deeplabv3plus.head_upsample must be >= 1, got {self.head_upsample}")
        return self


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1×1, atrous 3×3 per rate, image pooling → 1×1 projection.

    Args:
        in_channels: Input channels.
        out_channels: Channels of every branch and of the output.
        rates: Dilation rate of each 3×3 branch.
        separable: Depthwise-separable atrous convolutions.
        dropout: Dropout after the projection.
    """

    def __init__(self, in_channels: int, out_channels: int, rates: tuple[int, ...],
                 separable: bool = True, dropout: float = 0.5) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [ConvBNReLU(in_channels, out_channels, 1)]
            + [ConvBNReLU(in_channels, out_channels, 3, dilation=r, separable=separable) for r in rates]
        )
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.project = nn.Sequential(
            ConvBNReLU((len(rates) + 2) * out_channels, out_channels, 1), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the branches and project their concatenation."""
        parts = [b(x) for b in self.branches]
        parts.append(self.pool(x).expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(parts, dim=1))


DeepLabOptionsT = TypeVar("DeepLabOptionsT", bound=DeepLabOptions)


class DeepLabBase(SegmentationModel[DeepLabOptionsT]):
    """What the 2D and 3D DeepLabV3+ share: the dilated encoder and ``classifier_activation``."""

    default_encoder: ClassVar[str] = "resnet50"

    @classmethod
    @override
    def encoder_output_stride(cls, options: DeepLabOptionsT) -> int | None:
        stride = options.stride
        return None if stride >= 2**options.encoder_depth else stride

    @classmethod
    @override
    def encoder_stride_fallback(cls, options: DeepLabOptionsT) -> bool:
        return options.output_stride is None  # the default 16 is a wish

    @override
    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """As :meth:`SegmentationModel.forward`, the mask activated by ``classifier_activation``."""
        out = super().forward(x)
        act = self.options.classifier_activation
        if act is None:
            return out
        mask = out[0] if isinstance(out, tuple) else out
        mask = torch.sigmoid(mask) if act == "sigmoid" else torch.softmax(mask, dim=1)
        return (mask, out[1]) if isinstance(out, tuple) else mask


class DeepLabV3Plus(DeepLabBase[DeepLabV3PlusOptions]):
    """DeepLabV3+ (Chen et al. 2018) with selectable encoder_depth, output_stride and head_upsample.

    A series ``input_shape=(T, H, W, C)`` (seed 003's 3D form) builds :attr:`series_variant`.
    """

    name: ClassVar[str] = "deeplabv3plus"
    summary: ClassVar[str] = "DeepLabV3+ (Chen et al. 2018): ASPP on P(encoder_depth), P2 skip"
    supports_pointrend: ClassVar[bool] = True
    series_variant: ClassVar[str | None] = "deeplabv3plus3d"

    @override
    def decoder_inputs(self) -> set[int]:
        return {self.encoder.feature_at_level(self.options.encoder_depth), self.encoder.feature_at_level(2)}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        opts = self.options
        self.deep_index = self.encoder.feature_at_level(opts.encoder_depth)
        self.low_index = self.encoder.feature_at_level(2)
        ch = self.encoder.channels
        rates = opts.rates_at(self.encoder.reductions[self.deep_index])
        self.aspp = ASPP(ch[self.deep_index], opts.aspp_channels, rates, opts.separable, opts.aspp_dropout)
        self.low_level = ConvBNReLU(ch[self.low_index], opts.low_level_channels, 1)
        self.decoder = nn.Sequential(
            ConvBNReLU(opts.aspp_channels + opts.low_level_channels, opts.decoder_channels, 3,
                       separable=opts.separable),
            ConvBNReLU(opts.decoder_channels, opts.decoder_channels, 3, separable=opts.separable),
        )
        self.segmentation_head = SegmentationHead(opts.decoder_channels, self.num_classes, kernel_size=1)

    @override
    def decode(self, features: list[Tensor], size: tuple[int, int], train: bool) -> Decoded:
        low = features[self.low_index]
        x = self.aspp(features[self.deep_index])
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.segmentation_head(self.decoder(torch.cat([x, self.low_level(low)], dim=1)))
        factor = self.options.head_upsample
        if factor is not None:
            got = (logits.shape[-2] * factor, logits.shape[-1] * factor)
            if got != tuple(size):
                raise ModelError(
                    f"head_upsample={factor} turns {tuple(logits.shape[-2:])} logits into {got}, "
                    f"not the (padded) input size {tuple(size)}",
                    hint=f"use head_upsample={size[0] // logits.shape[-2]} or None",
                )
            if factor > 1:
                logits = F.interpolate(logits, scale_factor=factor, mode="bilinear", align_corners=False)
        return Decoded(logits=logits)
