"""UNet 3+ (Huang et al. 2020, arXiv:2004.08790) on timm backbones.

Full-scale skip connections: with encoder features ``E_0 … E_{L-1}`` (finest first) and
``D_{L-1} = E_{L-1}``, every decoder stage ``D_i`` (i = L-2 … 0) concatenates L branches of
``cat_channels`` each — finer encoder features max-pooled down (``E_j``, j < i), ``E_i``
itself, and the deeper decoder stages bilinearly upsampled (``D_j``, j > i) — then fuses
them with a 3×3 conv-BN-ReLU into ``L·cat_channels`` channels. The mask comes from
``D_0``; with deep supervision every deeper stage ``D_1 … D_{L-1}`` gets its own 3×3
classifier, upsampled to the input size (``ModelOutput.deep``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Self, cast

import torch
import torch.nn.functional as F
from pydantic import model_validator
from torch import Tensor, nn
from typing_extensions import override

from geoseg.errors import ModelError
from geoseg.models.base import Decoded, SegmentationModel
from geoseg.models.heads import ConvBNReLU, SegmentationHead, resize
from geoseg.models.options import opt
from geoseg.models.pointrend import PointRendOptions

__all__ = ["UNet3Plus", "UNet3PlusOptions", "FullScaleDecoder"]


class UNet3PlusOptions(PointRendOptions):
    """Options of UNet 3+."""

    architecture: ClassVar[str] = "unet3plus"

    cat_channels: int = opt(64, "channels of each full-scale skip branch")
    deep_supervision: bool = opt(False, "add a classifier on every deeper decoder stage")

    @model_validator(mode="after")
    def _check_unet3plus(self) -> Self:
        if self.cat_channels < 1:
            raise ModelError(f"unet3plus.cat_channels must be positive, got {self.cat_channels}")
        return self


class FullScaleDecoder(nn.Module):
    """The UNet 3+ decoder.

    Args:
        encoder_channels: Channels of the encoder features, finest first.
        reductions: Their strides (used for the max-pooling factors).
        cat_channels: Channels per branch.
    """

    def __init__(self, encoder_channels: list[int], reductions: list[int], cat_channels: int) -> None:
        super().__init__()
        n = len(encoder_channels)
        if n < 2:
            raise ModelError(f"UNet 3+ needs at least 2 encoder levels, got {n}")
        self.n = n
        self.reductions = reductions
        self.up_channels = cat_channels * n
        self.stages = nn.ModuleDict()
        self.fuse = nn.ModuleDict()
        for i in range(n - 2, -1, -1):
            branches = nn.ModuleList()
            for j in range(n):
                c_in = encoder_channels[j] if j <= i or j == n - 1 else self.up_channels
                branches.append(ConvBNReLU(c_in, cat_channels))
            self.stages[str(i)] = branches
            self.fuse[str(i)] = ConvBNReLU(self.up_channels, self.up_channels)

    def stage_channels(self, i: int, encoder_channels: list[int]) -> int:
        """Channels of decoder stage ``D_i``."""
        return encoder_channels[-1] if i == self.n - 1 else self.up_channels

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """Return ``[D_0, D_1, …, D_{L-1}]``."""
        n = self.n
        dec: dict[int, Tensor] = {n - 1: features[-1]}
        for i in range(n - 2, -1, -1):
            size = features[i].shape[-2:]
            parts = []
            for j, branch in enumerate(cast(nn.ModuleList, self.stages[str(i)])):
                if j < i:
                    k = self.reductions[i] // self.reductions[j]
                    src = features[j] if k == 1 else F.max_pool2d(features[j], k, k, ceil_mode=True)
                elif j == i:
                    src = features[i]
                else:
                    src = F.interpolate(dec[j], size=size, mode="bilinear", align_corners=False)
                parts.append(branch(src))
            dec[i] = self.fuse[str(i)](torch.cat(parts, dim=1))
        return [dec[i] for i in range(n)]


class UNet3Plus(SegmentationModel[UNet3PlusOptions]):
    """UNet 3+ with full-scale skips and optional deep supervision."""

    name: ClassVar[str] = "unet3plus"
    default_encoder: ClassVar[str] = "convnext_tiny"
    summary: ClassVar[str] = "UNet 3+ (Huang et al. 2020): full-scale skips, deep supervision, PointRend"
    supports_deep_supervision: ClassVar[bool] = True
    supports_pointrend: ClassVar[bool] = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        opts = self.options
        enc = self.encoder.channels
        self.decoder = FullScaleDecoder(enc, self.encoder.reductions, opts.cat_channels)
        self.segmentation_head = SegmentationHead(self.decoder.up_channels, self.num_classes)
        self.deep_heads = nn.ModuleList(
            SegmentationHead(self.decoder.stage_channels(i, enc), self.num_classes)
            for i in range(1, len(enc))
        ) if opts.deep_supervision else nn.ModuleList()

    @override
    def decode(self, features: list[Tensor], size: tuple[int, int], train: bool) -> Decoded:
        stages = self.decoder(features)
        deep = []
        if train and len(self.deep_heads):
            deep = [resize(h(d), size) for h, d in zip(self.deep_heads, stages[1:], strict=True)]
        return Decoded(logits=self.segmentation_head(stages[0]), deep=deep)
