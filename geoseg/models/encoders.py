"""Encoders: one timm adapter driven by ``feature_info``, and the factory of every encoder.

:func:`create_encoder` turns an encoder name or module into a
:class:`~geoseg.models.feature_encoder.FeatureEncoder`: a timm model (``features_only``; levels
from ``feature_info``: ``P_l`` has stride ``2**l`` in the undilated backbone, so a dilated
ResNet keeps levels 1..5 while its reductions read 2, 4, 8, 8, 8), or a custom encoder
(registered in geoseg's registry or smp's ``encoders`` dict, or a module instance; see
:mod:`geoseg.models.custom_encoders`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import timm
from timm.models import FeatureInfo
from torch import Tensor, nn

from geoseg.errors import ModelError
from geoseg.models.custom_encoders import (
    EncoderEntry,
    ModuleEncoder,
    build_encoder_module,
    check_custom_encoder,
    encoder_names,
    instance_name,
    register_encoder,
    registered_encoders,
    resolve_encoder_name,
    unregister_encoder,
)
from geoseg.models.feature_encoder import (
    FeatureEncoder,
    PyramidOutput,
    nominal_levels,
    warn_stride_fallback,
)
from geoseg.utils.closest import suggestion

__all__ = [
    "FeatureEncoder",
    "PyramidOutput",
    "TimmEncoder",
    "ModuleEncoder",
    "register_encoder",
    "unregister_encoder",
    "registered_encoders",
    "check_encoder",
    "create_encoder",
    "nominal_levels",
    "build_timm_features",
    "resolve_in_channels",
]


class TimmEncoder(FeatureEncoder):
    """A timm ``features_only`` model; channels and strides come from its ``feature_info``.

    Args:
        model: A timm model created with ``features_only=True``.
        name: The timm model name.
        in_channels: Input channels the model was built for.
        levels: Nominal levels of the features it returns (see :func:`nominal_levels`).
    """

    def __init__(self, model: nn.Module, name: str, in_channels: int, levels: list[int]) -> None:
        super().__init__()
        self.model = model
        self.name = name
        self.in_channels = in_channels
        info = _feature_info(model)
        self.channels = list(info.channels())
        self.reductions = list(info.reduction())
        self.levels = levels

    def forward(self, x: Tensor) -> list[Tensor]:
        """Return the feature maps, finest first."""
        return list(self.model(x))


def _feature_info(model: nn.Module) -> FeatureInfo:
    # nn.Module attributes are typed Tensor | Module; a timm features_only model sets a FeatureInfo
    return cast(FeatureInfo, model.feature_info)


def _unknown_encoder(name: str) -> ModelError:
    hint = suggestion(name, encoder_names() + timm.list_models(), n=3)
    return ModelError(f"unknown encoder {name!r}",
                      hint=hint or "see timm.list_models() or geoseg.models.register_encoder")


def check_encoder(name: str) -> None:
    """Raise ModelError unless ``name`` is a timm model or a registered custom encoder (no download)."""
    if resolve_encoder_name(name) is None:
        raise _unknown_encoder(name)


# (name, depth, output_stride) -> (out_indices, levels): avoids building a model twice
_PLANS: dict[tuple[str, int, int | None], tuple[tuple[int, ...], list[int]]] = {}


def build_timm_features(
    name: str, in_channels: int, depth: int, output_stride: int | None, *, fallback: bool = False,
    undilated: str = "output_stride=32", **create_kwargs: Any,
) -> tuple[nn.Module, list[int]]:
    """Build a timm ``features_only`` model keeping the features of level ≤ ``depth``.

    Args:
        name: timm model name.
        in_channels: ``in_chans`` of the model.
        depth: Deepest nominal level kept.
        output_stride: Dilate to this stride (None or 32: undilated).
        fallback: A model that cannot be dilated is built undilated, with a logged warning,
            instead of raising.
        undilated: The setting that asks for no dilation, named in the error's hint.
        **create_kwargs: Passed to ``timm.create_model`` (``pretrained``, overlays).

    Returns:
        The model and the nominal level of each returned feature.

    Raises:
        ModelError: The model cannot be dilated to ``output_stride`` (without ``fallback``) or
            has no feature at levels ≤ ``depth``.
    """
    kwargs: dict[str, Any] = dict(features_only=True, in_chans=in_channels, **create_kwargs)
    if output_stride is not None and output_stride != 32:
        kwargs["output_stride"] = output_stride
    key = (name, depth, output_stride)
    if key in _PLANS:
        out_indices, levels = _PLANS[key]
        return timm.create_model(name, out_indices=out_indices, **kwargs), list(levels)
    hint = f"use a dilatable backbone (ResNet, ResNeSt, EfficientNet, ConvNeXt) or {undilated}"
    try:
        model = timm.create_model(name, **kwargs)
    except (AssertionError, TypeError) as err:
        if "output_stride" not in kwargs:
            raise
        if fallback:
            warn_stride_fallback(name, kwargs["output_stride"], 32)
            return build_timm_features(name, in_channels, depth, None, **create_kwargs)
        raise ModelError(
            f"encoder {name!r} cannot be built with output_stride={output_stride}: "
            f"{err or type(err).__name__}", hint=hint,
        ) from err
    info = _feature_info(model)
    reductions = list(info.reduction())
    if output_stride is not None and max(reductions) > output_stride:
        if fallback:
            warn_stride_fallback(name, output_stride, max(reductions))
            return build_timm_features(name, in_channels, depth, None, **create_kwargs)
        raise ModelError(f"encoder {name!r} ignores output_stride={output_stride} (strides {reductions})",
                         hint=f"use a dilatable backbone or {undilated}")
    all_levels = nominal_levels(reductions)
    keep = [i for i, lv in enumerate(all_levels) if lv <= depth]
    if not keep:
        raise ModelError(f"encoder {name!r} has no feature at level <= {depth} (levels {all_levels})")
    out_indices = tuple(info.out_indices[i] for i in keep)
    levels = [all_levels[i] for i in keep]
    _PLANS[key] = (out_indices, levels)
    if len(keep) < len(all_levels):  # drop the deeper stages (parameters and compute)
        model = timm.create_model(name, out_indices=out_indices, **kwargs)
    return model, list(levels)


def create_encoder(
    encoder: str | nn.Module,
    in_channels: int,
    depth: int = 5,
    output_stride: int | None = None,
    timm_model: nn.Module | None = None,
    *,
    stride_fallback: bool = False,
    undilated: str = "output_stride=32",
    state_dict: Mapping[str, Tensor] | None = None,
    source_bands: Sequence[str] | None = None,
    channel_names: Sequence[str] | None = None,
) -> FeatureEncoder:
    """Build the encoder of a segmentation model (random weights unless ``state_dict``).

    Args:
        encoder: timm model name (or ``tu-<name>``), registered custom encoder name (geoseg's
            registry or smp's ``encoders`` dict), or an ``nn.Module``.
        in_channels: Input channels.
        depth: Deepest pyramid level to return (features with level ≤ depth).
        output_stride: Dilate the backbone so no feature is coarser than this (8, 16, 32).
        timm_model: An already built timm features model to wrap (used by weight loading).
        stride_fallback: ``output_stride`` is only a default: an encoder that cannot be
            dilated is used as it is, with a logged warning, instead of raising.
        undilated: The model setting that asks for no dilation, named in the errors' hints.
        state_dict: Weights for a registered custom encoder, loaded before its first
            convolution is adapted to ``in_channels`` (see ``source_bands``).
        source_bands: Band of each input channel of ``state_dict``'s first convolution.
        channel_names: Name of each input channel (band-aware adaptation of ``state_dict``).

    Returns:
        The :class:`FeatureEncoder`.

    Raises:
        ModelError: Unknown name, or a custom encoder that cannot honour the request.
    """
    if isinstance(encoder, FeatureEncoder):
        return encoder
    if isinstance(encoder, nn.Module):
        if hasattr(encoder, "feature_info"):  # a timm features_only model instance
            levels = nominal_levels(list(_feature_info(encoder).reduction()))
            return TimmEncoder(encoder, type(encoder).__name__, in_channels, levels)
        name = instance_name(encoder)
        takes = _declared_in_channels(encoder)
        if takes is not None and takes != in_channels:
            raise ModelError(
                f"encoder {name!r} takes {takes} input channels, in_channels={in_channels}",
                hint=f"use in_channels={takes}, or register its class (register_encoder or "
                "smp.encoders.encoders) so geoseg adapts its first convolution",
            )
        enc = ModuleEncoder(encoder, name, in_channels)
        return check_custom_encoder(enc, depth, output_stride, stride_fallback, undilated)
    resolved = resolve_encoder_name(encoder)
    if resolved is None:
        raise _unknown_encoder(encoder)
    if isinstance(resolved, EncoderEntry):
        module = build_encoder_module(resolved, in_channels, depth, output_stride, state_dict=state_dict,
                                      source_bands=source_bands, channel_names=channel_names)
        return check_custom_encoder(ModuleEncoder(module, encoder, in_channels), depth, output_stride,
                                    stride_fallback, undilated)
    if timm_model is None:
        timm_model, levels = build_timm_features(resolved, in_channels, depth, output_stride,
                                                 fallback=stride_fallback, undilated=undilated)
    else:
        levels = nominal_levels(list(_feature_info(timm_model).reduction()))
    return TimmEncoder(timm_model, resolved, in_channels, levels)


def _declared_in_channels(module: nn.Module, guess: bool = False) -> int | None:
    """A module's input channels: smp's ``_in_channels`` or ``in_channels`` (``guess``: else its first Conv2d's)."""
    value = getattr(module, "_in_channels", getattr(module, "in_channels", None))
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    conv = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None) if guess else None
    return None if conv is None else conv.in_channels


def resolve_in_channels(in_channels: int | None, input_shape: Sequence[int | None] | None,
                        encoder: str | nn.Module | None) -> int:
    """A model's input channels from ``in_channels``, a Keras-style ``input_shape`` or the encoder.

    Args:
        in_channels: Given input channels, or None.
        input_shape: ``(H, W, C)``, channels last, as medicai/Keras write it, or a series
            ``(T, H, W, C)`` (seed 003's 3D form; C is the channels of one date). The sizes may
            be None: geoseg models take any size. A shape that looks channels-first
            (``(3, 64, 64)``: fewer rows than columns, as many columns as "channels") is refused.
        encoder: An encoder module declares its channels in ``_in_channels`` (smp) or
            ``in_channels``, else they are its first ``Conv2d``'s.

    Returns:
        ``in_channels``, else C of ``input_shape``, else the module's, else 24 (the s2_24 recipe).

    Raises:
        ModelError: A malformed or channels-first ``input_shape``, or one contradicting ``in_channels``.
    """
    if input_shape is not None:
        shape = tuple(input_shape) if isinstance(input_shape, Sequence) else ()
        sizes_ok = all(s is None or (isinstance(s, int) and not isinstance(s, bool) and s > 0) for s in shape[:-1])
        channels = shape[-1] if len(shape) in (3, 4) else None
        if not (sizes_ok and isinstance(channels, int) and not isinstance(channels, bool) and channels > 0):
            raise ModelError(f"input_shape must be (H, W, C) or a series (T, H, W, C), channels last, "
                             f"got {input_shape!r}")
        if len(shape) == 3:
            first, height = shape[0], shape[1]
            if isinstance(first, int) and isinstance(height, int) and first < height == channels:  # (C, H, W)
                raise ModelError(f"input_shape={input_shape!r} looks channels-first (C, H, W): read channels last it "
                                 f"gives {channels} channels", hint=f"give ({height}, {channels}, {first}), channels "
                                 f"last as in medicai/Keras, or in_channels={first}")
        if in_channels is not None and in_channels != channels:
            raise ModelError(f"input_shape={input_shape!r} has {channels} channels but in_channels={in_channels}")
        return channels
    if in_channels is not None:
        return in_channels
    takes = _declared_in_channels(encoder, guess=True) if isinstance(encoder, nn.Module) else None
    return 24 if takes is None else takes


