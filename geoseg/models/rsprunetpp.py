"""RSPRUNet++ (Sensors 2022, "Detecting Pest-Infested Forest Damage through
Multispectral Satellite Imagery and Improved UNet++"): masked BatchNorm on the input →
ResNeSt encoder → UNet++ nested decoder with scSE in every block → the X(0, j) heads
upsampled and fused by a final 1×1 convolution.

UNet++ nodes: ``X(i, 0)`` is encoder feature ``i`` (finest first); for ``j ≥ 1``
``X(i, j) = Block(up(X(i+1, j-1)), [X(i, 0), …, X(i, j-1)])`` (dense skips). With a 5-level
encoder the top row has four nodes X(0,1..4); each gets a 1×1 classifier whose logits,
upsampled to the input size, are the deep-supervision outputs and are concatenated and
fused into the final mask (fusion initialised to their average).
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import torch
import torch.nn.functional as F
from pydantic import model_validator
from torch import Tensor, nn
from typing_extensions import override

from geoseg.errors import ModelError
from geoseg.models.base import Decoded, SegmentationModel
from geoseg.models.heads import ConvBNReLU, resize, scse
from geoseg.models.masked_batchnorm import MaskedBatchNorm2d
from geoseg.models.options import opt
from geoseg.models.pointrend import PointRendOptions

__all__ = ["RSPRUNetPlusPlus", "RSPRUNetPPOptions", "NestedDecoder", "NestedBlock"]

_DEFAULT_CHANNELS = (512, 256, 128, 64, 32)


class RSPRUNetPPOptions(PointRendOptions):
    """Options of RSPRUNet++."""

    architecture: ClassVar[str] = "rsprunetpp"

    decoder_channels: tuple[int, ...] | None = opt(
        None,
        "node channels per level, deep to shallow, one per level but the deepest "
        "(None: the last L-1 of 512,256,128,64,32 — 256,128,64,32 for a 5-level encoder)",
    )
    deep_supervision: bool = opt(False, "return the X(0,j) head logits in ModelOutput.deep")
    masked_bn: bool = opt(True, "masked BatchNorm on the input (statistics of valid pixels only)")

    @model_validator(mode="after")
    def _check_rsprunetpp(self) -> Self:
        if min(self.decoder_channels or (1,)) < 1:
            raise ModelError("rsprunetpp.decoder_channels must be positive")
        return self


class NestedBlock(nn.Module):
    """A UNet++ node: upsample, concatenate dense skips, scSE, two conv-BN-ReLU, scSE.

    Args:
        in_channels: Channels of the deeper node (upsampled input).
        skip_channels: Total channels of the same-level skips.
        out_channels: Output channels.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.attention1 = scse(in_channels + skip_channels)
        self.conv1 = ConvBNReLU(in_channels + skip_channels, out_channels)
        self.conv2 = ConvBNReLU(out_channels, out_channels)
        self.attention2 = scse(out_channels)

    def forward(self, x: Tensor, skips: list[Tensor]) -> Tensor:
        """Upsample ``x`` to the skips' size (nearest) and fuse."""
        x = F.interpolate(x, size=skips[0].shape[-2:], mode="nearest")
        x = self.attention1(torch.cat([x, *skips], dim=1))
        return self.attention2(self.conv2(self.conv1(x)))


class NestedDecoder(nn.Module):
    """UNet++ decoder over encoder features (finest first).

    Args:
        encoder_channels: Channels of each encoder feature, finest first (L levels).
        decoder_channels: Node channels per level, deep to shallow (L - 1 values).
    """

    def __init__(self, encoder_channels: list[int], decoder_channels: tuple[int, ...]) -> None:
        super().__init__()
        n = len(encoder_channels)
        if n < 2:
            raise ModelError(f"UNet++ needs at least 2 encoder levels, got {n}")
        if len(decoder_channels) != n - 1:
            raise ModelError(
                f"rsprunetpp.decoder_channels needs {n - 1} values for a {n}-level encoder, "
                f"got {list(decoder_channels)}"
            )
        self.depth = n
        level_ch = list(decoder_channels)[::-1]  # finest first
        ch = {(i, 0): c for i, c in enumerate(encoder_channels)}
        self.blocks = nn.ModuleDict()
        for j in range(1, n):
            for i in range(n - j):
                skip = sum(ch[(i, k)] for k in range(j))
                self.blocks[f"x_{i}_{j}"] = NestedBlock(ch[(i + 1, j - 1)], skip, level_ch[i])
                ch[(i, j)] = level_ch[i]
        self.top_channels = [ch[(0, j)] for j in range(1, n)]

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """Return the top-row nodes X(0, 1..L-1)."""
        nodes = {(i, 0): f for i, f in enumerate(features)}
        for j in range(1, self.depth):
            for i in range(self.depth - j):
                block = self.blocks[f"x_{i}_{j}"]
                nodes[(i, j)] = block(nodes[(i + 1, j - 1)], [nodes[(i, k)] for k in range(j)])
        return [nodes[(0, j)] for j in range(1, self.depth)]


class RSPRUNetPlusPlus(SegmentationModel[RSPRUNetPPOptions]):
    """RSPRUNet++: ResNeSt + UNet++ with scSE, fused multi-head output, masked BatchNorm."""

    name: ClassVar[str] = "rsprunetpp"
    default_encoder: ClassVar[str] = "resnest101e"
    summary: ClassVar[str] = "ResNeSt + UNet++ (scSE) with fused X(0,j) heads, masked BN input, PointRend"
    supports_deep_supervision: ClassVar[bool] = True
    supports_pointrend: ClassVar[bool] = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        opts = self.options
        if opts.masked_bn:
            self.input_norm = MaskedBatchNorm2d(self.in_channels, mask_channels=opts.mask_channels)
        n_nodes = len(self.encoder.channels) - 1
        channels = opts.decoder_channels or _DEFAULT_CHANNELS[len(_DEFAULT_CHANNELS) - n_nodes :]
        self.decoder = NestedDecoder(self.encoder.channels, tuple(channels))
        k = self.num_classes
        self.heads = nn.ModuleList(nn.Conv2d(c, k, 1) for c in self.decoder.top_channels)
        n_heads = len(self.heads)
        self.fusion = nn.Conv2d(n_heads * k, k, 1)
        with torch.no_grad():  # start as the average of the heads
            self.fusion.weight.zero_()
            assert self.fusion.bias is not None  # Conv2d has a bias by default
            self.fusion.bias.zero_()
            for j in range(n_heads):
                self.fusion.weight[torch.arange(k), j * k + torch.arange(k), 0, 0] = 1.0 / n_heads

    @override
    def decode(self, features: list[Tensor], size: tuple[int, int], train: bool) -> Decoded:
        top = self.decoder(features)
        heads = [head(x) for head, x in zip(self.heads, top, strict=True)]
        point = self.point_head is not None  # PointRend refines the fused logits of the X(0, j) grid
        deep = [resize(h, size) for h in heads] if self.deep_supervision or not point else []
        fused = self.fusion(torch.cat(heads if point else deep, dim=1))
        return Decoded(logits=fused, deep=deep if self.deep_supervision else [])
