"""Calling an architecture class builds it through the registry, with the source documents' names.

Each architecture class accepts the keyword form its source document uses and returns exactly
what :func:`~geoseg.models.create_model` returns for the class's registry name (the same class,
pretrained-weight handling, option checks and ``spec``)::

    RSPRUNetPlusPlus(num_classes=3, input_channels=24)              # seed 000
    UNet3Plus(num_classes=3, backbone="convnext_tiny", cat_channels=64, deep_supervision=True)  # 001
    DeepLabV3Plus(encoder_name="resnet50", num_classes=1, encoder_depth=4)  # seed 003 / smp
    PSPNet(data=store, use_unet=False, pointrend=True)             # seed 004 (arcgis.learn)
    UNet(encoder_name="resnet34", in_channels=24, classes=6)        # smp
    UNet("resnet34", encoder_weights=None, classes=4)               # smp, the encoder positional

Argument names:

* input channels: ``in_channels`` or ``input_channels``; classes: ``num_classes`` or
  ``classes``; encoder: ``encoder``, ``encoder_name`` or ``backbone``, or the one positional
  argument, as smp's first parameter (``smp.Unet('resnet34', ...)``); every other argument is
  a keyword;
* an encoder name that is neither a timm model nor a registered encoder but medicai's spelling
  of one (seed 003: ``seresnext50``, ``efficientnetb0``, ``resnet50v2``, ``resnet50vd``) is
  timm's (``seresnext50_32x4d``, ``efficientnet_b0``, ``resnetv2_50``, ``resnet50d``), with an
  INFO note (:func:`medicai_encoder_name`);
* ``encoder_weights`` (smp): ``"imagenet"`` means ``pretrained=True``, ``None`` means False,
  another string is a local weights file;
* ``data`` (arcgis.learn): a CubeStore (or any object with ``channel_names`` and
  ``classes``) gives ``in_channels``, ``channel_names`` and ``num_classes``;
* everything else is passed to ``create_model`` unchanged: ``pretrained``, ``channel_names``,
  ``aux_params``, ``options`` (a dict) and the architecture options (``geoseg models NAME``),
  which are checked there (an unknown name raises ``ModelError`` with the closest match).

The registry constructs a model with the internal form ``cls(in_channels, num_classes, encoder,
options, ...)``, where ``options`` is an :class:`~geoseg.models.options.ArchOptions` instance;
that form is left as it is. The registry hands its factory and names to this module when it is
imported (:func:`use_registry`), so that this module, imported by ``base``, imports neither.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

import timm
from torch import nn
from typing_extensions import override

from geoseg.errors import ModelError
from geoseg.models.custom_encoders import resolve_encoder_name
from geoseg.models.options import ArchOptions

__all__ = ["ALIASES", "ArchitectureMeta", "medicai_encoder_name", "translate_arguments", "use_registry"]

logger = logging.getLogger(__name__)

# geoseg's name -> the other spellings of the source documents (and smp)
ALIASES: dict[str, tuple[str, ...]] = {
    "in_channels": ("input_channels",),
    "num_classes": ("classes",),
    "encoder": ("encoder_name", "backbone"),
}
_REGISTRY: dict[str, Any] = {"factory": None, "models": {}}
# medicai's encoder names (its lower-cased class names, seed 003) → timm's
_MEDICAI_NAMES = (
    (re.compile(r"^(se)?resnext(50|101)$"), r"\1resnext\2_32x4d"),  # cardinality 32, bottleneck width 4
    (re.compile(r"^resnet(\d+)v2$"), r"resnetv2_\1"),
    (re.compile(r"^(se)?resnet(\d+)vd$"), r"\1resnet\2d"),
    (re.compile(r"^efficientnet_?(b\d|l2)$"), r"efficientnet_\1"),
    (re.compile(r"^efficientnet_?v2_?(s|m|l|xl)$"), r"efficientnetv2_\1"),
    (re.compile(r"^convnext_?v2_(\w+)$"), r"convnextv2_\1"),
)


def use_registry(factory: Callable[..., Any], models: Mapping[str, type]) -> None:
    """Set the factory (``create_model``) and the name → class registry of the keyword form."""
    _REGISTRY.update(factory=factory, models=models)


def _merge(out: dict[str, Any], key: str, value: Any, given_as: str, where: str) -> None:
    if key in out and out[key] != value:
        raise ModelError(f"{where}: {given_as}={value!r} contradicts {key}={out[key]!r}",
                         hint=f"give only one of {', '.join((key, *ALIASES.get(key, ())))}"
                              + (" (or data=)" if key in ("in_channels", "num_classes", "channel_names") else ""))
    out[key] = value


def medicai_encoder_name(name: str) -> str:
    """timm's name for medicai's spelling of an encoder (``seresnext50`` → ``seresnext50_32x4d``).

    A name geoseg already knows (timm, geoseg's or smp's registry) is returned unchanged, and
    so is one without a timm counterpart (the unknown-encoder error then lists close names).
    """
    if resolve_encoder_name(name) is not None:
        return name
    key = name.lower()
    for pattern, replacement in _MEDICAI_NAMES:
        timm_name = pattern.sub(replacement, key)
        if timm_name != key and timm.is_model(timm_name):
            logger.info("encoder %r (medicai's name) is timm's %r", name, timm_name)
            return timm_name
    return name


def translate_arguments(where: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``create_model`` for a call written with the sources' names.

    Args:
        where: The class name, for error messages.
        kwargs: The keywords of the call.

    Raises:
        ModelError: Two spellings of one argument disagree, or ``data`` has no channels/classes.
    """
    out: dict[str, Any] = {}
    rest = dict(kwargs)
    for key, aliases in ALIASES.items():
        for name in (key, *aliases):
            if name in rest:
                _merge(out, key, rest.pop(name), name, where)
    if isinstance(out.get("encoder"), str):
        out["encoder"] = medicai_encoder_name(out["encoder"])
    if "encoder_weights" in rest:
        weights = rest.pop("encoder_weights")
        value = False if weights is None else True if weights == "imagenet" else weights
        _merge(out, "pretrained", value, "encoder_weights", where)
    if "data" in rest:
        data = rest.pop("data")
        names, classes = getattr(data, "channel_names", None), getattr(data, "classes", None)
        if names is None or classes is None:
            raise ModelError(f"{where}: data must be a CubeStore (an object with channel_names and classes), "
                             f"got {type(data).__name__}")
        _merge(out, "in_channels", len(names), "data", where)
        _merge(out, "num_classes", len(classes), "data", where)
        _merge(out, "channel_names", list(names), "data", where)
    for key, value in rest.items():
        _merge(out, key, value, key, where)
    return out


class ArchitectureMeta(type):
    """Metaclass of :class:`~geoseg.models.SegmentationModel`: the keyword form builds via the registry."""

    @override
    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        options = args[3] if len(args) > 3 else kwargs.get("options")
        if isinstance(options, ArchOptions):  # the registry's internal form
            return super().__call__(*args, **kwargs)
        factory, models = _REGISTRY["factory"], _REGISTRY["models"]
        name = getattr(cls, "name", None)
        if factory is None or not isinstance(name, str) or models.get(name) is not cls:
            raise ModelError(f"{cls.__name__} is not a registered architecture",
                             hint=f"build it as {cls.__name__}(in_channels, num_classes, encoder, options)")
        if len(args) > 1 or (args and not isinstance(args[0], str | nn.Module)):
            raise ModelError(f"{cls.__name__}() takes one positional argument, the encoder (as smp's "
                             f"encoder_name), got {', '.join(repr(a) for a in args)[:80]}",
                             hint=f"give the others as keywords, e.g. {cls.__name__}('resnet34', num_classes=3, "
                                  "in_channels=24)")
        if args:
            named = [k for k in ("encoder", *ALIASES["encoder"]) if k in kwargs]
            if named:
                raise ModelError(f"{cls.__name__}() got the encoder positionally and as {named[0]}=",
                                 hint="give it once")
            kwargs = {"encoder": args[0], **kwargs}
        if "name" in kwargs:
            raise ModelError(f"{cls.__name__}() builds {name!r}; 'name' is not an argument")
        return factory(name, **translate_arguments(cls.__name__, kwargs))
