"""Custom encoders by name: geoseg's registry and segmentation_models_pytorch's ``encoders`` dict.

A name is resolved in this order (:func:`resolve_encoder_name`):

1. geoseg's registry (:func:`register_encoder`);
2. timm (``timm.is_model``), also spelt ``tu-<name>`` as in smp;
3. smp's dict ``segmentation_models_pytorch.encoders.encoders``, read at lookup time, so an
   encoder registered there the smp way (``smp.encoders.encoders["my_encoder"] = {"encoder":
   MyEncoder, "pretrained_settings": {...}, "params": {...}}``) is found by name. smp's own
   encoders whose names are timm models (``resnet34``) are therefore built by timm.

:func:`build_encoder_module` builds a registered encoder the way smp's ``get_encoder`` does:
the class with its ``params`` plus ``depth`` and ``output_stride`` (and, for geoseg's registry,
``in_channels``) when its constructor accepts them; then optional weights; then the first
convolution set to the input channels (:func:`~geoseg.models.first_conv.set_module_in_channels`,
band-aware for pretrained weights) when the module declares other ones in ``_in_channels``;
then, for smp's ``EncoderMixin``, ``make_dilated(output_stride)``. :class:`ModuleEncoder` wraps
the module (or a module instance passed as the encoder) and checks what it returns;
:func:`check_custom_encoder` checks that against ``encoder_depth`` and ``output_stride``.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import segmentation_models_pytorch.encoders as smp_encoders
import timm
import torch
from segmentation_models_pytorch.encoders._base import EncoderMixin
from torch import Tensor, nn

from geoseg.errors import CheckpointError, ModelError
from geoseg.models.feature_encoder import FeatureEncoder, warn_stride_fallback
from geoseg.models.first_conv import normalize_band_name, set_module_in_channels

__all__ = [
    "EncoderEntry",
    "ModuleEncoder",
    "register_encoder",
    "unregister_encoder",
    "registered_encoders",
    "encoder_names",
    "resolve_encoder_name",
    "build_encoder_module",
    "check_custom_encoder",
    "instance_name",
]

_LEVEL_KEY = re.compile(r"^[Pp](\d+)$")


@dataclass(frozen=True)
class EncoderEntry:
    """A custom encoder registered by name (in geoseg's registry or smp's ``encoders`` dict).

    Attributes:
        name: The registered name.
        cls: The encoder class.
        params: Extra constructor keyword arguments.
        pretrained_settings: Weights by tag (``"imagenet"``: ``{"url": ...}`` or
            ``{"repo_id": ..., "revision": ...}``, optional ``input_space``/``bands``).
        source: Which registry holds it.
    """

    name: str
    cls: type[nn.Module]
    params: Mapping[str, Any]
    pretrained_settings: Mapping[str, Mapping[str, Any]]
    source: Literal["geoseg", "smp"]


_REGISTRY: dict[str, EncoderEntry] = {}


def _check_class(name: str, cls: Any) -> type[nn.Module]:
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ModelError(f"encoder {name!r}: expected an nn.Module subclass, got {cls!r}")
    return cls


def register_encoder(
    name: str,
    cls: type[nn.Module],
    params: Mapping[str, Any] | None = None,
    pretrained_settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Make a custom encoder class usable by name in every architecture.

    Registering in smp's dict (``smp.encoders.encoders[name] = {...}``) works too.

    Args:
        name: Encoder name (must not shadow a timm model name).
        cls: ``nn.Module`` subclass following smp's encoder contract (``out_channels``,
            ``depth``, ``forward`` returning ``[x, f1, ..., f_depth]``) or returning a
            ``{"P1": ..., "Pn": ...}`` dict. Its constructor receives ``in_channels``,
            ``depth`` and ``output_stride`` when it accepts them, plus ``params``.
        params: Extra constructor keyword arguments.
        pretrained_settings: smp's ``pretrained_settings``: weights by tag (see
            :class:`EncoderEntry`), used by ``pretrained=True`` / ``encoder_weights="imagenet"``.

    Raises:
        ModelError: If the name is taken or ``cls`` is not an ``nn.Module`` subclass.
    """
    cls = _check_class(name, cls)
    if name in _REGISTRY or timm.is_model(name):
        raise ModelError(f"encoder name {name!r} is already registered or is a timm model name")
    settings = {str(k): dict(v) for k, v in (pretrained_settings or {}).items()}
    _REGISTRY[name] = EncoderEntry(name, cls, dict(params or {}), settings, "geoseg")


def unregister_encoder(name: str) -> None:
    """Remove a custom encoder registered with :func:`register_encoder`."""
    _REGISTRY.pop(name, None)


def registered_encoders() -> list[str]:
    """Names registered with :func:`register_encoder`."""
    return sorted(_REGISTRY)


def encoder_names() -> list[str]:
    """Every custom name that resolves: geoseg's registry, then smp's ``encoders`` dict."""
    return registered_encoders() + [n for n in smp_encoders.encoders if n not in _REGISTRY]


def _smp_entry(name: str, raw: Any) -> EncoderEntry:
    if isinstance(raw, tuple | list) and len(raw) == 1 and isinstance(raw[0], Mapping):
        raw = raw[0]  # `encoders[name] = {...},` — a trailing comma makes a 1-tuple
    if not isinstance(raw, Mapping) or "encoder" not in raw:
        raise ModelError(
            f"smp.encoders.encoders[{name!r}] must be a dict with keys 'encoder', "
            f"'pretrained_settings' and 'params', got {type(raw).__name__}"
        )
    settings = {str(k): dict(v) for k, v in (raw.get("pretrained_settings") or {}).items()}
    return EncoderEntry(name, _check_class(name, raw["encoder"]), dict(raw.get("params") or {}),
                        settings, "smp")


def resolve_encoder_name(name: str) -> str | EncoderEntry | None:
    """The timm model name, or the registered entry, that ``name`` stands for (None: unknown)."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if timm.is_model(name):
        return name
    if name.startswith("tu-") and timm.is_model(name[3:]):  # smp's "timm universal" spelling
        return name[3:]
    raw = smp_encoders.encoders.get(name)
    return None if raw is None else _smp_entry(name, raw)


def accepts(cls: type[nn.Module], arg: str) -> bool:
    """Whether ``cls``'s constructor takes ``arg`` (by name, or through ``**kwargs``)."""
    params = inspect.signature(cls.__init__).parameters
    return arg in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def build_encoder_module(
    entry: EncoderEntry,
    in_channels: int,
    depth: int,
    output_stride: int | None,
    *,
    state_dict: Mapping[str, Tensor] | None = None,
    source_bands: Sequence[str] | None = None,
    channel_names: Sequence[str] | None = None,
) -> nn.Module:
    """Build a registered encoder for ``in_channels`` inputs, as smp's ``get_encoder`` does.

    Args:
        entry: The registered encoder.
        in_channels: Input channels of the model.
        depth: ``encoder_depth``.
        output_stride: Dilate to this stride (None or 32: undilated). Whether the module
            managed to is for the caller to check.
        state_dict: Weights of the module as built for ``len(source_bands)`` channels.
        source_bands: Band of each input channel of ``state_dict``'s first convolution (None:
            the model's own channels, loaded unchanged).
        channel_names: Name of each of the ``in_channels`` channels.

    Returns:
        The module (training mode), its first convolution taking ``in_channels``.

    Raises:
        ModelError: The constructor or the channel adaptation failed.
        CheckpointError: ``state_dict`` does not fit the module.
    """
    cls = entry.cls
    built_for = in_channels if state_dict is None or source_bands is None else len(source_bands)
    kwargs = copy.deepcopy(dict(entry.params))
    for arg, value in (("depth", depth), ("output_stride", output_stride or 32)):
        if accepts(cls, arg):
            kwargs[arg] = value
    if entry.source == "geoseg" and accepts(cls, "in_channels"):  # smp builds for 3 and adapts
        kwargs["in_channels"] = built_for
    try:
        module = cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ModelError(f"custom encoder {entry.name!r} could not be built with {kwargs}: {err}") from err
    declared = getattr(module, "_in_channels", None)  # smp's EncoderMixin attribute
    native = declared if isinstance(declared, int) else built_for  # undeclared: assumed as built
    log_name = f"encoder {entry.name!r}"
    if state_dict is not None:
        try:
            module.load_state_dict(dict(state_dict), strict=True)
        except RuntimeError as err:
            raise CheckpointError(f"weights do not fit encoder {entry.name!r}: {err}") from err
        same = source_bands is None or channel_names is not None and [
            normalize_band_name(b) for b in source_bands] == [normalize_band_name(c) for c in channel_names]
        if not same:
            set_module_in_channels(module, native, in_channels, source_bands=source_bands,
                                   target_channels=channel_names, log_name=log_name)
    elif native != in_channels:
        set_module_in_channels(module, native, in_channels, log_name=log_name)
    if output_stride not in (None, 32) and isinstance(module, EncoderMixin):
        with contextlib.suppress(NotImplementedError):  # no get_stages(): cannot dilate (caller decides)
            module.make_dilated(output_stride)
    return module


class ModuleEncoder(FeatureEncoder):
    """Adapter for a custom encoder module (smp list convention or ``P1..Pn`` dict).

    The module is run once on a small zero tensor at construction to measure channels and
    strides. Levels are what the module declares: the dict keys, or the list positions (smp's
    contract). Declared ``out_channels`` must agree with what it returns, and the strides must
    fit the levels (a deeper level keeps or halves the resolution per level).

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
        size = 2 ** max(depth + 2, 6)  # room for a level one step coarser than 2**level
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
            levels, feats = self._select(raw, name)
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
        self.reductions = [_stride(size, f, name, lv) for lv, f in zip(levels, feats, strict=True)]
        self.levels = levels
        pairs = list(zip(levels, self.reductions, strict=True))
        for (la, ra), (lb, rb) in itertools.pairwise(pairs):
            if not ra <= rb <= ra * 2 ** (lb - la):
                raise ModelError(
                    f"custom encoder {name!r}: P{lb} has stride {rb} after P{la} at stride {ra} "
                    f"(strides {self.reductions} for levels {levels})",
                    hint="each level must keep or halve the resolution of the one before; "
                    "key the features P1..Pn, finest first",
                )

    @staticmethod
    def _select(raw: Any, name: str) -> tuple[list[int], list[Tensor]]:
        """(levels, features) of the module's output, finest first, placeholders dropped."""
        if isinstance(raw, Mapping):  # {"P1": ..., "P2": ...}: the keys are the levels
            matches = [(_LEVEL_KEY.match(str(k)), f) for k, f in raw.items()]
            pairs = sorted(((int(m.group(1)), f) for m, f in matches if m is not None), key=lambda p: p[0])
            levels = [lv for lv, _ in pairs]
            if len(pairs) < len(raw) or len(set(levels)) != len(levels) or min(levels, default=1) < 1:
                raise ModelError(f"custom encoder {name!r} returned keys {list(raw)}; expected P1..Pn")
        elif isinstance(raw, list | tuple):
            pairs = list(enumerate(raw))[1:]  # drop the identity feature (smp convention)
        else:
            raise ModelError(
                f"a custom encoder must return a list of features or a P1..Pn dict, got {type(raw)}"
            )
        kept = [(lv, f) for lv, f in pairs if f.shape[1] > 0]
        return [lv for lv, _ in kept], [f for _, f in kept]

    def forward(self, x: Tensor) -> list[Tensor]:
        """Return the feature maps, finest first."""
        return self._select(self.module(x), self.name)[1]


def _stride(size: int, feature: Tensor, name: str, level: int) -> int:
    h, w = feature.shape[-2:]
    if size % h or size % w or size // h != size // w:
        raise ModelError(f"custom encoder {name!r}: P{level} is {h}x{w} for a {size}x{size} input; "
                         "expected an integer stride, the same along both axes")
    return size // h


def instance_name(module: nn.Module) -> str:
    """The registered name of a module's class (geoseg's registry), else ``custom:<qualname>``."""
    for name, entry in sorted(_REGISTRY.items()):
        if type(module) is entry.cls:
            return name
    return f"custom:{type(module).__module__}.{type(module).__qualname__}"


def check_custom_encoder(enc: ModuleEncoder, depth: int, output_stride: int | None,
                         fallback: bool, undilated: str = "output_stride=32") -> ModuleEncoder:
    """Check a custom encoder's levels against ``encoder_depth`` and its strides against ``output_stride``.

    With ``fallback`` (the output stride is only a default), an encoder coarser than
    ``output_stride`` is kept with a logged warning instead of raising; otherwise the error's
    hint names ``undilated``, the model setting that asks for no dilation.
    """
    if max(enc.levels) > depth:
        raise ModelError(
            f"custom encoder {enc.name!r} returns levels {enc.levels} but encoder_depth={depth}",
            hint=f"set encoder_depth={max(enc.levels)} (the number of levels it provides)",
        )
    if output_stride is not None and max(enc.reductions) > output_stride:
        if not fallback:
            raise ModelError(
                f"custom encoder {enc.name!r} has strides {enc.reductions}, coarser than "
                f"output_stride={output_stride}",
                hint="dilate it (an output_stride constructor argument, or get_stages() for smp's "
                f"make_dilated) or use {undilated}",
            )
        warn_stride_fallback(enc.name, output_stride, max(enc.reductions))
    return enc
