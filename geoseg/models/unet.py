"""U-Net baseline: any encoder + segmentation_models_pytorch's ``UnetDecoder``.

smp's decoder expects features at strides 1, 2, 4, …; levels the encoder lacks (e.g.
ConvNeXt starts at stride 4) are fed as zero-channel tensors, as smp's own timm adapter does.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self

import torch
from pydantic import model_validator
from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder
from torch import Tensor
from typing_extensions import override

from geoseg.errors import ModelError
from geoseg.models.base import Decoded, SegmentationModel
from geoseg.models.feature_encoder import FeatureEncoder
from geoseg.models.heads import SegmentationHead
from geoseg.models.options import opt
from geoseg.models.pointrend import PointRendOptions

__all__ = ["UNet", "UNetOptions"]

_DEFAULT_CHANNELS = (256, 128, 64, 32, 16)


class UNetOptions(PointRendOptions):
    """Options of the U-Net baseline."""

    architecture: ClassVar[str] = "unet"

    decoder_channels: tuple[int, ...] | None = opt(
        None, "channels of each decoder block, deep to shallow (None: last encoder_depth of 256,128,64,32,16)"
    )
    decoder_attention: Literal["none", "scse"] = opt("none", "attention in decoder blocks")

    @model_validator(mode="after")
    def _check_unet(self) -> Self:
        if self.decoder_channels is not None and len(self.decoder_channels) != self.encoder_depth:
            raise ModelError(
                f"unet.decoder_channels has {len(self.decoder_channels)} entries but "
                f"encoder_depth={self.encoder_depth} needs one per decoder block"
            )
        return self

    @property
    def channels(self) -> tuple[int, ...]:
        """Decoder channels resolved for the encoder depth."""
        return self.decoder_channels or _DEFAULT_CHANNELS[5 - self.encoder_depth :]


def _check_level_strides(encoder: FeatureEncoder) -> None:
    """smp's U-Net decoder joins level P_l at stride 2**l: name the first level that is not there."""
    for level, stride in zip(encoder.levels, encoder.reductions, strict=True):
        if stride == 2**level:
            continue
        where = (f"unet needs each level P_l at stride 2**l, but encoder {encoder.name!r} has P{level} at stride "
                 f"{stride} (levels {encoder.levels}, strides {encoder.reductions})")
        if stride < 2**level:
            raise ModelError(where, hint="it is dilated: use it undilated (unet does not dilate its encoder)")
        keyed = [r.bit_length() - 1 for r in encoder.reductions]  # the level of each stride
        raise ModelError(where, hint=f"key its features by stride ({', '.join(f'P{k}' for k in keyed)} with "
                                     f"encoder_depth={max(keyed)}), or use deeplabv3plus or pspnet, which take "
                                     "the levels as declared")


class UNet(SegmentationModel[UNetOptions]):
    """Plain U-Net (Ronneberger et al. 2015) with smp's decoder blocks."""

    name: ClassVar[str] = "unet"
    default_encoder: ClassVar[str] = "resnet34"
    summary: ClassVar[str] = "U-Net baseline (smp UnetDecoder), PointRend"
    supports_pointrend: ClassVar[bool] = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        opts = self.options
        depth = opts.encoder_depth
        by_level = dict(zip(self.encoder.levels, self.encoder.channels, strict=True))
        _check_level_strides(self.encoder)
        self._missing = [lv for lv in range(1, depth + 1) if lv not in by_level]
        enc_channels = [self.in_channels] + [by_level.get(lv, 0) for lv in range(1, depth + 1)]
        self.decoder = UnetDecoder(
            encoder_channels=enc_channels,
            decoder_channels=list(opts.channels),
            n_blocks=depth,
            attention_type=None if opts.decoder_attention == "none" else opts.decoder_attention,
        )
        self.segmentation_head = SegmentationHead(opts.channels[-1], self.num_classes, kernel_size=3)

    @override
    def decode(self, features: list[Tensor], size: tuple[int, int], train: bool) -> Decoded:
        by_level = dict(zip(self.encoder.levels, features, strict=True))
        ref = features[0]
        full = [ref.new_zeros(ref.shape[0], 0, *size)]
        for lv in range(1, self.options.encoder_depth + 1):
            f = by_level.get(lv)
            if f is None:  # zero-channel placeholder carrying the level's spatial size
                f = torch.empty(ref.shape[0], 0, size[0] // 2**lv, size[1] // 2**lv,
                                dtype=ref.dtype, device=ref.device)
            full.append(f)
        return Decoded(logits=self.segmentation_head(self.decoder(full)))
