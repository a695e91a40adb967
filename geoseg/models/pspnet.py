"""PSPNet (Zhao et al. 2017) with the options of arcgis.learn's PSPNetClassifier.

* Dilated backbone: the last two stages keep stride 8 with dilations 2 and 4
  (``keep_dilation``; default: dilated for the plain head, undilated for the U-Net decoder).
* Pyramid pooling module on the deepest feature: adaptive average pooling to each of
  ``pyramid_sizes`` (default 1, 2, 3, 6 — the paper's set; pass another set such as
  1, 3, 5, 6 explicitly if wanted), 1×1 conv to ``C / len(sizes)``, bilinear upsampling,
  concatenation with the input and a 3×3 bottleneck conv.
* Head: ``use_unet=False`` → 1×1 classifier + bilinear upsampling (×8 when dilated; an
  encoder that cannot dilate, such as DenseNet, is used at its own stride with a one-line
  note unless ``keep_dilation=True`` was asked for);
  ``use_unet=True`` (the default, as in arcgis.learn) → a learnable U-Net/FPN-style
  decoder through the encoder skips.
* ``aux_mask_head``: the paper's auxiliary FCN head on P4 (res4), loss weight 0.4.
* ``pointrend``: PointRend refinement of the coarse logits (see :mod:`.pointrend`).
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
from geoseg.models.heads import ConvBNReLU, SegmentationHead
from geoseg.models.options import opt
from geoseg.models.pointrend import PointRendOptions

__all__ = ["PSPNet", "PSPNetOptions", "PyramidPooling", "SkipDecoder"]

_DEFAULT_DECODER = (256, 128, 64, 32)


class PSPNetOptions(PointRendOptions):
    """Options of PSPNet."""

    architecture: ClassVar[str] = "pspnet"

    pyramid_sizes: tuple[int, ...] = opt((1, 2, 3, 6), "output sizes of the pyramid pooling branches")
    use_unet: bool = opt(True, "learnable U-Net/FPN decoder through the skips (False: 1x1 conv + 8x upsampling)")
    keep_dilation: bool | None = opt(None, "dilated backbone, output stride 8 (None: True without U-Net decoder)")
    psp_channels: int = opt(512, "channels of the pyramid pooling bottleneck")
    decoder_channels: tuple[int, ...] | None = opt(
        None, "U-Net decoder block channels, deep to shallow (None: first L-1 of 256,128,64,32)"
    )
    aux_mask_head: bool = opt(True, "auxiliary segmentation head on P4 (ModelOutput.aux_mask)")
    dropout: float = opt(0.1, "dropout before the classifiers")

    @model_validator(mode="after")
    def _check_pspnet(self) -> Self:
        if not self.pyramid_sizes or min(self.pyramid_sizes) < 1:
            raise ModelError(f"pspnet.pyramid_sizes must be positive ints, got {self.pyramid_sizes}")
        if len(set(self.pyramid_sizes)) != len(self.pyramid_sizes):
            raise ModelError(f"pspnet.pyramid_sizes has duplicates: {self.pyramid_sizes}")
        if self.dilated and self.encoder_depth < 3:
            raise ModelError("pspnet with a dilated backbone needs encoder_depth >= 3")
        return self

    @property
    def dilated(self) -> bool:
        """Whether the backbone is dilated to output stride 8."""
        return (not self.use_unet) if self.keep_dilation is None else self.keep_dilation


def _bins(n: int, s: int, like: Tensor) -> Tensor:
    """The ``(s, n)`` matrix averaging ``n`` values into ``s`` adaptive-pooling bins (torch's bins)."""
    m = torch.zeros(s, n, dtype=like.dtype, device=like.device)
    for i in range(s):
        start, stop = (i * n) // s, -(-(i + 1) * n // s)
        m[i, start:stop] = 1.0 / (stop - start)
    return m


class AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """Adaptive average pooling that also exports to ONNX, at any window size.

    ONNX has no adaptive pooling, and torch's exporter takes only output sizes that divide the
    input (a 256 px window's 8 × 8 deepest map has no 3 × 3 or 6 × 6 bins). While exporting,
    the same bins are two averaging matrices (rows, then columns), which the fixed-window graph
    holds as constants; equal to ``F.adaptive_avg_pool2d`` up to float rounding.
    """

    def forward(self, x: Tensor) -> Tensor:
        """Pooled ``x`` (N, C, s, s)."""
        if not torch.onnx.is_in_onnx_export():
            return super().forward(x)
        size = self.output_size if isinstance(self.output_size, tuple) else (self.output_size,) * 2
        rows = _bins(int(x.shape[-2]), int(size[0] or x.shape[-2]), x)
        cols = _bins(int(x.shape[-1]), int(size[1] or x.shape[-1]), x)
        return rows @ x @ cols.transpose(0, 1)


class PyramidPooling(nn.Module):
    """Pyramid pooling module.

    Args:
        in_channels: Channels of the pooled feature.
        sizes: Adaptive pooling output size of each branch.
        out_channels: Channels of the 3×3 bottleneck after concatenation.
    """

    def __init__(self, in_channels: int, sizes: tuple[int, ...], out_channels: int) -> None:
        super().__init__()
        branch_ch = max(1, in_channels // len(sizes))
        self.sizes = tuple(sizes)
        self.branches = nn.ModuleList(
            nn.Sequential(
                AdaptiveAvgPool2d(s),
                nn.Conv2d(in_channels, branch_ch, 1, bias=s == 1),
                nn.Identity() if s == 1 else nn.BatchNorm2d(branch_ch),  # 1×1 maps: no BN (smp)
                nn.ReLU(inplace=True),
            )
            for s in sizes
        )
        self.bottleneck = ConvBNReLU(in_channels + branch_ch * len(sizes), out_channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        """Pool, project, upsample, concatenate with ``x`` and fuse."""
        size = x.shape[-2:]
        parts = [x] + [
            F.interpolate(b(x), size=size, mode="bilinear", align_corners=False) for b in self.branches
        ]
        return self.bottleneck(torch.cat(parts, dim=1))


class SkipDecoder(nn.Module):
    """U-Net/FPN-style decoder: upsample, concatenate the encoder skip, two 3×3 convs.

    Args:
        in_channels: Channels of the deepest input (the PSP output).
        skip_channels: Channels of the skips, deep to shallow.
        decoder_channels: Output channels of each block, deep to shallow.
    """

    def __init__(self, in_channels: int, skip_channels: list[int], decoder_channels: tuple[int, ...]):
        super().__init__()
        if len(decoder_channels) != len(skip_channels):
            raise ModelError(
                f"pspnet.decoder_channels needs {len(skip_channels)} values, got {list(decoder_channels)}"
            )
        blocks = []
        for skip, out in zip(skip_channels, decoder_channels, strict=True):
            blocks.append(nn.Sequential(ConvBNReLU(in_channels + skip, out), ConvBNReLU(out, out)))
            in_channels = out
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = in_channels

    def forward(self, x: Tensor, skips: list[Tensor]) -> Tensor:
        """Decode ``x`` through ``skips`` (deep to shallow)."""
        for block, skip in zip(self.blocks, skips, strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return x


class PSPNet(SegmentationModel[PSPNetOptions]):
    """PSPNet with configurable pyramid, dilation, U-Net decoder, aux head and PointRend."""

    name: ClassVar[str] = "pspnet"
    default_encoder: ClassVar[str] = "resnet50"
    summary: ClassVar[str] = "PSPNet (Zhao et al. 2017): pyramid pooling, U-Net decoder or 8x head, aux head, PointRend"
    supports_pointrend: ClassVar[bool] = True
    undilated_setting: ClassVar[str] = "keep_dilation=False"

    @classmethod
    @override
    def encoder_output_stride(cls, options: PSPNetOptions) -> int | None:
        return 8 if options.dilated and 2**options.encoder_depth > 8 else None

    @override
    def decoder_inputs(self) -> set[int]:
        opts = self.options
        if opts.use_unet:
            return super().decoder_inputs()
        return {len(self.encoder.channels) - 1} | ({self._aux_feature()} if opts.aux_mask_head else set())

    def _aux_feature(self) -> int:
        """Index of the feature the aux segmentation head reads: P4, else the second deepest."""
        return self.encoder.feature_at_level(4) if 4 in self.encoder.levels else len(self.encoder.channels) - 2

    @classmethod
    @override
    def encoder_stride_fallback(cls, options: PSPNetOptions) -> bool:
        return options.keep_dilation is None  # the 8x head's dilation is a wish

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        opts = self.options
        ch = self.encoder.channels
        self.psp = PyramidPooling(ch[-1], opts.pyramid_sizes, opts.psp_channels)
        if opts.use_unet:
            skips = ch[:-1][::-1]
            dec_ch = opts.decoder_channels or _DEFAULT_DECODER[: len(skips)]
            if len(dec_ch) < len(skips):
                dec_ch = dec_ch + (dec_ch[-1],) * (len(skips) - len(dec_ch))
            self.decoder: SkipDecoder | None = SkipDecoder(opts.psp_channels, skips, tuple(dec_ch))
            head_in = self.decoder.out_channels
        else:
            self.decoder = None
            head_in = opts.psp_channels
        self.segmentation_head = SegmentationHead(head_in, self.num_classes, kernel_size=1,
                                                  dropout=opts.dropout)
        self.has_aux_mask_head = opts.aux_mask_head
        self.aux_index = self._aux_feature()
        self.aux_head = nn.Sequential(
            ConvBNReLU(ch[max(self.aux_index, 0)], 256, 3),
            SegmentationHead(256, self.num_classes, kernel_size=1, dropout=opts.dropout),
        ) if opts.aux_mask_head else None
        if self.aux_head is not None and len(ch) < 2:
            raise ModelError("pspnet.aux_mask_head needs an encoder with at least 2 levels")

    @override
    def decode(self, features: list[Tensor], size: tuple[int, int], train: bool) -> Decoded:
        x = self.psp(features[-1])
        if self.decoder is not None:
            x = self.decoder(x, features[:-1][::-1])
        aux = self.aux_head(features[self.aux_index]) if train and self.aux_head is not None else None
        return Decoded(logits=self.segmentation_head(x), aux_mask=aux)
