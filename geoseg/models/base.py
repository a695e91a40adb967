"""``SegmentationModel``: encoder → decoder → head, with ``forward`` written once.

Subclasses build their decoder in ``__init__`` and implement :meth:`decode`, which maps
the encoder features to class logits at any resolution (plus optional deep-supervision and
auxiliary logits). This base class does everything else, for every architecture:

* time-series input ``(N, T, C, H, W)`` with the option ``temporal`` (dates as channels or
  the temporal-attention front end, :mod:`geoseg.models.temporal`), per-date validity;
* optional input normalisation (RSPRUNet++'s masked BatchNorm);
* zero-padding the input to ``pad_divisor`` (the coarsest encoder stride) and cropping all
  outputs back, so any input size works (``required_divisor`` is 1);
* upsampling logits to the input resolution;
* the aux classification head on the deepest encoder feature (``aux_params``);
* PointRend point sampling (training) and subdivision (inference) when enabled;
* ``freeze_backbone`` and the self-describing ``spec``.

A subclass names its options model as the type argument, ``class UNet(SegmentationModel[UNetOptions])``:
that sets its ``Options`` and types ``self.options``.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import torch.nn.functional as F
from torch import Tensor, nn

from geoseg.errors import ModelError
from geoseg.models.constructors import ArchitectureMeta
from geoseg.models.encoders import FeatureEncoder, create_encoder
from geoseg.models.heads import build_classification_head, resize
from geoseg.models.masked_batchnorm import MaskedBatchNorm2d
from geoseg.models.options import ArchOptions
from geoseg.models.outputs import ModelOutput
from geoseg.models.pointrend import PointHead, PointRendOptions
from geoseg.models.temporal import TemporalAttention, encoder_input, series_validity

__all__ = ["Decoded", "SegmentationModel"]

OptionsT = TypeVar("OptionsT", bound=ArchOptions)


@dataclass
class Decoded:
    """What :meth:`SegmentationModel.decode` returns (all tensors on the padded grid)."""

    logits: Tensor
    deep: list[Tensor] = field(default_factory=list)
    aux_mask: Tensor | None = None


class SegmentationModel(nn.Module, Generic[OptionsT], metaclass=ArchitectureMeta):
    """Base class of every geoseg segmentation model.

    Calling a registered architecture class with keywords (``UNet(num_classes=3,
    input_channels=24)``; the encoder may come first, positionally, as in smp:
    ``UNet("resnet34", classes=4)``) builds it through ``create_model`` (:mod:`.constructors`).

    Args:
        in_channels: Input channels (of one date, for a time series).
        num_classes: Number of classes K.
        encoder: Encoder name or module (None = the architecture's default encoder).
        options: Validated architecture options.
        aux_params: Validated aux classification-head parameters, or None.
        channel_names: Name of each input channel (band-aware weight loading), or None.
        timm_model: A pre-built (possibly pretrained) timm features model for the encoder.

    Attributes:
        Options: The architecture's options model (the class's type argument).
        required_divisor: Input size multiple the caller must respect (1: pads internally).
        pad_divisor: Multiple the input is padded to internally.
        supports_deep_supervision: The architecture can return deep-supervision logits.
        supports_pointrend: The architecture accepts ``pointrend=True``.
        undilated_setting: The option that builds it undilated (hint when an encoder cannot dilate).
        has_aux_head: An aux classification head is present (``forward`` returns a tuple).
        has_aux_mask_head: An auxiliary segmentation head fills ``ModelOutput.aux_mask``.
    """

    name: ClassVar[str] = "model"
    Options: ClassVar[type[ArchOptions]] = ArchOptions
    default_encoder: ClassVar[str] = "resnet34"
    summary: ClassVar[str] = ""
    supports_deep_supervision: ClassVar[bool] = False
    supports_pointrend: ClassVar[bool] = False
    #: The registered model a series ``input_shape=(T, H, W, C)`` builds without ``temporal``.
    series_variant: ClassVar[str | None] = None
    # the option that builds the architecture undilated, named when an encoder cannot dilate
    undilated_setting: ClassVar[str] = "output_stride=32"

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        encoder: str | nn.Module | None,
        options: OptionsT,
        aux_params: dict[str, Any] | None = None,
        channel_names: Sequence[str] | None = None,
        timm_model: nn.Module | None = None,
    ) -> None:
        super().__init__()
        encoder = self.default_encoder if encoder is None else encoder
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.options = options
        self.channel_names = None if channel_names is None else list(channel_names)
        self.aux_params = aux_params
        self.input_norm: MaskedBatchNorm2d | None = None
        self.encoder: FeatureEncoder = create_encoder(
            encoder, self.encoder_channels, options.encoder_depth, self.encoder_output_stride(options),
            timm_model, stride_fallback=self.encoder_stride_fallback(options), undilated=self.undilated_setting,
        )
        self.pad_divisor = max(self.encoder.reductions)
        self.required_divisor = 1
        self.classification_head = (
            None if aux_params is None
            else build_classification_head(self.encoder.channels[-1], aux_params)
        )
        self.point_head: PointHead | None = None
        if isinstance(options, PointRendOptions) and options.pointrend:
            if not self.supports_pointrend:
                raise ModelError(f"{self.name} does not support pointrend")
            fine_channels = self.encoder.channels[self.encoder.feature_at_level(self.fine_level)]
            self.point_head = PointHead(fine_channels, num_classes, options)
        self.temporal_attention = None
        if options.temporal == "attention":  # a scorer for each level something reads
            read = self.decoder_inputs()
            if self.classification_head is not None:
                read.add(len(self.encoder.channels) - 1)
            if self.point_head is not None:
                read.add(self.encoder.feature_at_level(self.fine_level))
            self.temporal_attention = TemporalAttention(self.encoder.channels, sorted(read))
        self.has_aux_mask_head = False
        if options.freeze_backbone:
            self.encoder.requires_grad_(False)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            args = typing.get_args(base)
            if args and isinstance(args[0], type) and issubclass(args[0], ArchOptions):
                cls.Options = args[0]

    # ------------------------------------------------------------------ hooks
    @classmethod
    def encoder_output_stride(cls, options: OptionsT) -> int | None:
        """Output stride the encoder must be dilated to (None = undilated)."""
        return None

    @classmethod
    def encoder_stride_fallback(cls, options: OptionsT) -> bool:
        """True when that output stride is only a default: an encoder that cannot dilate is used as it is."""
        return False

    def decoder_inputs(self) -> set[int]:
        """Indices of the encoder features :meth:`decode` reads (default: all of them).

        Called by ``__init__`` before the subclass builds its decoder (only ``self.encoder`` and
        ``self.options`` exist): the temporal-attention front end gets a scorer for these only.
        """
        return set(range(len(self.encoder.channels)))

    def decode(self, features: list[Tensor], size: tuple[int, int], train: bool) -> Decoded:
        """Map encoder features to logits; ``train`` asks for deep/aux outputs too."""
        raise NotImplementedError

    def encode(self, x: Tensor, valid: Tensor | None) -> list[Tensor]:
        """The 2D feature pyramid the decoder takes.

        Args:
            x: Padded input ``(N, C, H, W)``, or a padded series ``(N, T, C, H, W)`` already
                multiplied by its validity and normalised.
            valid: Per-date validity ``(N, T, 1, H, W)`` of a series, None for one date.
        """
        if valid is None:
            return self.encoder(x)
        if self.temporal_attention is None:  # dates as channels
            return self.encoder(x.flatten(1, 2))
        return self.temporal_attention(self.encode_dates(x, valid), valid)

    def encode_dates(self, x: Tensor, valid: Tensor) -> list[Tensor]:
        """The encoder run on every date ``(N*T, C, H, W)``: features ``(N, T, C_l, h_l, w_l)``.

        In training, dates without a valid pixel are not run (their features are 0, and their
        weight in any masked pooling is 0 anyway): padding dates cost nothing and stay out of
        the encoder's BatchNorm statistics.
        """
        n, t = x.shape[:2]
        flat = x.flatten(0, 1)
        present = valid.flatten(0, 1).flatten(1).any(dim=1) if self.training else None  # (N*T,)
        if present is None or bool(present.all()) or not bool(present.any()):
            return [f.unflatten(0, (n, t)) for f in self.encoder(flat)]
        out = []
        for f in self.encoder(flat[present]):
            full = f.new_zeros((n * t, *f.shape[1:]))
            full[present] = f
            out.append(full.unflatten(0, (n, t)))
        return out

    def level_features(self, features: list[Tensor], level: int) -> Tensor:
        """The 2D feature map ``(N, C, h, w)`` of pyramid level ``level`` that PointRend samples
        (the fine level) and the aux classification head pools (the deepest)."""
        return features[self.encoder.feature_at_level(level)]

    # ------------------------------------------------------------------ properties
    @property
    def encoder_channels(self) -> int:
        """Input channels of the encoder (``T * C`` for dates as channels, else ``in_channels``)."""
        return encoder_input(self.in_channels, self.channel_names, self.options)[0]

    @property
    def encoder_channel_names(self) -> list[str] | None:
        """Names of the encoder's input channels (``"t<k>:<name>"`` for dates as channels)."""
        return encoder_input(self.in_channels, self.channel_names, self.options)[1]

    @property
    def takes_series(self) -> bool:
        """True when the input is a time series ``(N, T, C, H, W)`` (option ``temporal`` set)."""
        return self.options.temporal is not None

    @property
    def has_aux_head(self) -> bool:
        """True when ``aux_params`` added a classification head."""
        return self.classification_head is not None

    @property
    def deep_supervision(self) -> bool:
        """True when ``forward_train`` fills ``ModelOutput.deep``."""
        return bool(getattr(self.options, "deep_supervision", False))

    @property
    def spec(self) -> dict[str, Any]:
        """JSON-serialisable description; ``create_model(**spec)`` rebuilds this architecture."""
        return {
            "name": self.name,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "encoder": self.encoder.name,
            "options": self.options.to_dict(),
            "aux_params": None if self.aux_params is None else dict(self.aux_params),
            "channel_names": self.channel_names,
        }

    def train(self, mode: bool = True) -> SegmentationModel:
        """Set train/eval mode; a frozen backbone stays in eval mode (fixed BN statistics)."""
        super().train(mode)
        if self.options.freeze_backbone:
            self.encoder.eval()
        return self

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """Logits (N, K, H, W) at input resolution, or ``(mask, label)`` with an aux head.

        With PointRend the mask is refined by iterative subdivision.
        """
        out = self._run(x, train=False)
        if self.classification_head is not None:
            assert out.label is not None
            return out.mask, out.label
        return out.mask

    def forward_train(self, x: Tensor) -> ModelOutput:
        """All training outputs (deep supervision, aux heads, PointRend points)."""
        return self._run(x, train=True)

    def _check_input(self, x: Tensor) -> None:
        if not self.takes_series:
            if x.ndim != 4 or x.shape[1] != self.in_channels:
                raise ModelError(f"{self.name} expects input (N, {self.in_channels}, H, W), got {tuple(x.shape)}",
                                 hint="a time series needs the option temporal" if x.ndim == 5 else None)
            return
        steps = self.options.time_steps
        if x.ndim != 5 or x.shape[2] != self.in_channels or (steps is not None and x.shape[1] != steps):
            raise ModelError(
                f"{self.name} (temporal={self.options.temporal!r}) expects a series (N, T, C, H, W) with "
                f"C={self.in_channels} and T={steps or 'any'}, got {tuple(x.shape)}"
            )

    def _prepare(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Input (and per-date validity) after masking invalid dates and input normalisation."""
        if not self.takes_series:
            return (x if self.input_norm is None else self.input_norm(x)), None
        valid = series_validity(x, self.options.mask_channels)
        x = x * valid  # an invalid (date, pixel) never reaches the network
        if self.input_norm is not None:  # date by date: masked dates stay out of the statistics
            x = self.input_norm(x.flatten(0, 1), valid.flatten(0, 1)).unflatten(0, x.shape[:2])
        return x, valid

    def _run(self, x: Tensor, train: bool) -> ModelOutput:
        self._check_input(x)
        h, w = int(x.shape[-2]), int(x.shape[-1])
        x, valid = self._prepare(x)
        d = self.pad_divisor
        ph, pw = (-h) % d, (-w) % d
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))  # zeros = no-data, right/bottom
            valid = None if valid is None else F.pad(valid, (0, pw, 0, ph))
        size = (h + ph, w + pw)
        features = self.encode(x, valid)
        dec = self.decode(features, size, train)

        def full(t: Tensor) -> Tensor:
            return resize(t, size)[..., :h, :w]

        out = ModelOutput(mask=full(dec.logits))
        if train:
            out.deep = [full(t) for t in dec.deep]
            out.aux_mask = None if dec.aux_mask is None else full(dec.aux_mask)
        if self.point_head is not None:
            fine = self.level_features(features, self.fine_level)
            region = (h / size[0], w / size[1])
            if train:
                out.point_logits, out.point_coords = self.point_head.forward_train(
                    dec.logits, fine, region
                )
            else:
                out.mask = self.point_head.inference(dec.logits, fine, size, (h, w))[..., :h, :w]
        if self.classification_head is not None:
            out.label = self.classification_head(self.level_features(features, self.encoder.levels[-1]))
        return out

    @property
    def fine_level(self) -> int:
        """Pyramid level of the fine-grained features PointRend samples (P2, or the finest)."""
        return 2 if 2 in self.encoder.levels else self.encoder.levels[0]
