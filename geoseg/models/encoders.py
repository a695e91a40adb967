"""Encoders: one timm adapter driven by ``feature_info`` and a registry of custom encoders.

Every encoder seen by a decoder is a :class:`FeatureEncoder`: ``forward(x)`` returns the
feature maps finest first, described by ``channels``, ``reductions`` (actual stride w.r.t.
the input, dilation included) and ``levels`` (nominal pyramid level: ``P_l`` has stride
``2**l`` in an undilated backbone, so a dilated ResNet keeps levels 1..5 while its
reductions read 2, 4, 8, 8, 8). Decoders only use these lists, never model names.

Custom encoders follow segmentation_models_pytorch's encoder contract: a module with
``out_channels`` (input channels first) and ``depth`` whose ``forward`` returns
``[x, f1, ..., f_depth]`` with ``f_i`` at stride ``2**i`` — or a ``{"P1": f1, ...}`` dict
(the convention of KerasHub's ``pyramid_outputs``). Zero-channel placeholders are dropped.
Register a class with :func:`register_encoder` to use it by name, or pass an instance.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any, cast

import timm
import torch
from timm.models import FeatureInfo
from torch import Tensor, nn

from geoseg.errors import ModelError
from geoseg.utils.closest import suggestion

__all__ = [
    "FeatureEncoder",
    "TimmEncoder",
    "ModuleEncoder",
    "register_encoder",
    "unregister_encoder",
    "registered_encoders",
    "check_encoder",
    "create_encoder",
    "nominal_levels",
    "build_timm_features",
]

# name -> (encoder class, constructor params)
_CUSTOM_ENCODERS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {}


def register_encoder(name: str, cls: type[nn.Module], params: Mapping[str, Any] | None = None) -> None:
    """Make a custom encoder class usable by name in every architecture.

    Args:
        name: Encoder name (must not shadow a timm model name).
        cls: ``nn.Module`` subclass declaring ``out_channels`` and ``depth`` (see module doc).
            Its constructor receives ``in_channels``/``depth``/``output_stride`` when it
            accepts them, plus ``params``.
        params: Extra constructor keyword arguments.

    Raises:
        ModelError: If the name is taken or ``cls`` is not an ``nn.Module`` subclass.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ModelError(f"encoder {name!r}: expected an nn.Module subclass, got {cls!r}")
    if name in _CUSTOM_ENCODERS or timm.is_model(name):
        raise ModelError(f"encoder name {name!r} is already registered or is a timm model name")
    _CUSTOM_ENCODERS[name] = (cls, dict(params or {}))


def unregister_encoder(name: str) -> None:
    """Remove a custom encoder registered with :func:`register_encoder`."""
    _CUSTOM_ENCODERS.pop(name, None)


def registered_encoders() -> list[str]:
    """Names of the registered custom encoders."""
    return sorted(_CUSTOM_ENCODERS)


def nominal_levels(reductions: list[int]) -> list[int]:
    """Pyramid level of each feature; a stage that stops downsampling (dilated) still counts."""
    levels: list[int] = []
    for i, r in enumerate(reductions):
        if i > 0 and r <= reductions[i - 1]:
            levels.append(levels[-1] + 1)
        else:
            levels.append(round(math.log2(r)))
    return levels


class FeatureEncoder(nn.Module):
    """Base of the encoders decoders consume (see module docstring).

    Attributes:
        name: Encoder name (timm model or registered custom encoder).
        in_channels: Input channel count.
        channels: Channels of each returned feature, finest first.
        reductions: Stride of each feature w.r.t. the input.
        levels: Nominal pyramid level of each feature (``P_l``).
    """

    name: str
    in_channels: int
    channels: list[int]
    reductions: list[int]
    levels: list[int]

    def feature_at_level(self, level: int) -> int:
        """Index of the feature at pyramid level ``level``.

        Raises:
            ModelError: If the encoder has no feature at that level.
        """
        if level not in self.levels:
            raise ModelError(
                f"encoder {self.name!r} has no P{level} feature (levels {self.levels}, "
                f"reductions {self.reductions})"
            )
        return self.levels.index(level)


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


class ModuleEncoder(FeatureEncoder):
    """Adapter for a custom encoder instance (smp list convention or ``P1..Pn`` dict).

    The module is run once on a small zero tensor at construction to measure channels and
    strides; declared ``out_channels`` must agree with what it returns.

    Args:
        module: The custom encoder.
        name: Name used in messages and in ``model.spec``.
        in_channels: Expected input channels.
    """

    def __init__(self, module: nn.Module, name: str, in_channels: int) -> None:
        super().__init__()
        self.module = module
        self.name = name
        self.in_channels = in_channels
        depth = int(getattr(module, "depth", getattr(module, "_depth", 5)))
        size = 2 ** max(depth + 1, 6)
        was_training = module.training
        module.eval()
        with torch.no_grad():
            probe = torch.zeros(1, in_channels, size, size)
            try:
                raw = module(probe)
            except Exception as err:  # the module rejected our input: explain what we sent
                raise ModelError(
                    f"custom encoder {name!r} failed on a (1, {in_channels}, {size}, {size}) "
                    f"input: {err}"
                ) from err
            feats = self._select(raw)
        module.train(was_training)
        declared = getattr(module, "out_channels", getattr(module, "_out_channels", None))
        if declared is not None and not isinstance(raw, Mapping):
            got = [probe.shape[1]] + [f.shape[1] for f in raw[1:]]
            if list(declared)[: len(got)] != got:
                raise ModelError(
                    f"custom encoder {name!r} declares out_channels={list(declared)} but returns "
                    f"features with channels {got}"
                )
        if not feats:
            raise ModelError(f"custom encoder {name!r} returned no feature maps")
        self.channels = [f.shape[1] for f in feats]
        self.reductions = [size // f.shape[-1] for f in feats]
        self.levels = nominal_levels(self.reductions)

    @staticmethod
    def _select(raw: Any) -> list[Tensor]:
        if isinstance(raw, Mapping):  # {"P1": ..., "P2": ...}
            keys = sorted(raw, key=lambda k: int(str(k).lstrip("Pp")))
            feats = [raw[k] for k in keys]
        elif isinstance(raw, list | tuple):
            feats = list(raw)[1:]  # drop the identity feature (smp convention)
        else:
            raise ModelError(
                f"a custom encoder must return a list of features or a P1..Pn dict, got {type(raw)}"
            )
        return [f for f in feats if f.shape[1] > 0]

    def forward(self, x: Tensor) -> list[Tensor]:
        """Return the feature maps, finest first."""
        return self._select(self.module(x))


def _feature_info(model: nn.Module) -> FeatureInfo:
    # nn.Module attributes are typed Tensor | Module; a timm features_only model sets a FeatureInfo
    return cast(FeatureInfo, model.feature_info)


def _accepts(cls: type[nn.Module], arg: str) -> bool:
    params = inspect.signature(cls.__init__).parameters
    return arg in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _unknown_encoder(name: str) -> ModelError:
    hint = suggestion(name, registered_encoders() + timm.list_models(), n=3)
    return ModelError(f"unknown encoder {name!r}",
                      hint=hint or "see timm.list_models() or geoseg.models.register_encoder")


def check_encoder(name: str) -> None:
    """Raise ModelError unless ``name`` is a timm model or a registered custom encoder (no download)."""
    if name not in _CUSTOM_ENCODERS and not timm.is_model(name):
        raise _unknown_encoder(name)


# (name, depth, output_stride) -> (out_indices, levels): avoids building a model twice
_PLANS: dict[tuple[str, int, int | None], tuple[tuple[int, ...], list[int]]] = {}


def build_timm_features(
    name: str, in_channels: int, depth: int, output_stride: int | None, **create_kwargs: Any
) -> tuple[nn.Module, list[int]]:
    """Build a timm ``features_only`` model keeping the features of level ≤ ``depth``.

    Args:
        name: timm model name.
        in_channels: ``in_chans`` of the model.
        depth: Deepest nominal level kept.
        output_stride: Dilate to this stride (None or 32: undilated).
        **create_kwargs: Passed to ``timm.create_model`` (``pretrained``, overlays).

    Returns:
        The model and the nominal level of each returned feature.

    Raises:
        ModelError: The model cannot be dilated to ``output_stride`` or has no feature at
            levels ≤ ``depth``.
    """
    kwargs: dict[str, Any] = dict(features_only=True, in_chans=in_channels, **create_kwargs)
    if output_stride is not None and output_stride != 32:
        kwargs["output_stride"] = output_stride
    key = (name, depth, output_stride)
    if key in _PLANS:
        out_indices, levels = _PLANS[key]
        return timm.create_model(name, out_indices=out_indices, **kwargs), list(levels)
    try:
        model = timm.create_model(name, **kwargs)
    except (AssertionError, TypeError) as err:
        if "output_stride" not in kwargs:
            raise
        raise ModelError(
            f"encoder {name!r} cannot be built with output_stride={output_stride}: "
            f"{err or type(err).__name__}",
            hint="use a dilatable backbone (ResNet, ResNeSt, EfficientNet, ConvNeXt) or output_stride=32",
        ) from err
    info = _feature_info(model)
    reductions = list(info.reduction())
    if output_stride is not None and max(reductions) > output_stride:
        raise ModelError(
            f"encoder {name!r} ignores output_stride={output_stride} (strides {reductions})",
            hint="use a dilatable backbone or output_stride=32",
        )
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
) -> FeatureEncoder:
    """Build the encoder of a segmentation model (random weights; see ``weights.py``).

    Args:
        encoder: timm model name, registered custom encoder name, or an ``nn.Module``.
        in_channels: Input channels.
        depth: Deepest pyramid level to return (features with level ≤ depth).
        output_stride: Dilate the backbone so no feature is coarser than this (8, 16, 32).
        timm_model: An already built timm features model to wrap (used by weight loading).

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
        enc = ModuleEncoder(encoder, _instance_name(encoder), in_channels)
        return _check_custom(enc, depth, output_stride)
    if encoder in _CUSTOM_ENCODERS:
        cls, params = _CUSTOM_ENCODERS[encoder]
        kwargs = dict(params)
        for arg, value in (("in_channels", in_channels), ("depth", depth)):
            if _accepts(cls, arg):
                kwargs[arg] = value
        if output_stride not in (None, 32):
            if not _accepts(cls, "output_stride"):
                raise ModelError(
                    f"custom encoder {encoder!r} does not take output_stride={output_stride}",
                    hint="add an output_stride argument to its constructor or use output_stride=32",
                )
            kwargs["output_stride"] = output_stride
        return _check_custom(ModuleEncoder(cls(**kwargs), encoder, in_channels), depth, output_stride)
    if not timm.is_model(encoder):
        raise _unknown_encoder(encoder)
    if timm_model is None:
        timm_model, levels = build_timm_features(encoder, in_channels, depth, output_stride)
    else:
        levels = nominal_levels(list(_feature_info(timm_model).reduction()))
    return TimmEncoder(timm_model, encoder, in_channels, levels)


def _instance_name(module: nn.Module) -> str:
    for name, (cls, _) in _CUSTOM_ENCODERS.items():
        if type(module) is cls:
            return name
    return f"custom:{type(module).__module__}.{type(module).__qualname__}"


def _check_custom(enc: ModuleEncoder, depth: int, output_stride: int | None) -> ModuleEncoder:
    if max(enc.levels) > depth:
        raise ModelError(
            f"custom encoder {enc.name!r} returns levels {enc.levels} but encoder_depth={depth}",
            hint="set encoder_depth to the number of feature maps the encoder provides",
        )
    if output_stride is not None and max(enc.reductions) > output_stride:
        raise ModelError(
            f"custom encoder {enc.name!r} has strides {enc.reductions}, coarser than "
            f"output_stride={output_stride}"
        )
    return enc
