"""Weights: pretrained backbones (hub, local file, torchgeo) and geoseg checkpoints.

This module writes, maps and loads weights (reading files and downloads is
:mod:`geoseg.models.weight_files`); building models is the registry's job
(:func:`~geoseg.models.registry.create_model`, :func:`~geoseg.models.registry.load_model`).

* ``pretrained=True`` downloads timm's hub weights (RGB), or a registered custom encoder's
  ``pretrained_settings["imagenet"]`` (another settings tag names another entry);
  ``pretrained=<path>`` reads a local file — safetensors, or a torch state dict loaded with
  ``weights_only=True`` — or a model bundle directory (``config.json`` +
  ``model.safetensors``, written by training).
* ``pretrained="torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCO"`` (optionally ``=<file>``) loads
  torchgeo's Sentinel-2 backbone weights by name: downloaded by torchgeo, or read from the file
  or torch hub's cache offline (:mod:`geoseg.models.torchgeo_weights`); the encoder defaults
  to the timm model they were trained for.
* A **whole-model checkpoint** is one that carries a geoseg spec (written by
  :func:`save_weights`, or a bundle's ``config.json``), or, for plain torch state dicts
  without metadata, one whose keys are keys of the model being built. It is loaded into the
  whole model and must fit it exactly. Anything else is a **backbone** checkpoint in timm's
  format (or the custom encoder's own state dict).
* A backbone's first convolution is adapted band by band (:mod:`geoseg.models.first_conv`):
  hub weights are RGB = ``B04, B03, B02``; a local backbone file may declare its bands in
  the safetensors metadata key ``"bands"`` (JSON list), torchgeo weights in ``meta["bands"]``.
  A model without ``channel_names`` given 3-channel (RGB) weights gets smp's mapping instead
  (the filters cycled over its channels, with a one-line warning); weights of other bands
  need the names, which is checked before anything is downloaded.
* :func:`save_weights` writes safetensors with the model's ``spec`` as metadata, so
  ``load_model`` can rebuild the architecture from the file alone.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import safetensors
import safetensors.torch
import timm
from torch import Tensor, nn

from geoseg.errors import CheckpointError, ModelError
from geoseg.models.base import SegmentationModel
from geoseg.models.custom_encoders import EncoderEntry, resolve_encoder_name
from geoseg.models.encoders import TimmEncoder, build_timm_features, create_encoder
from geoseg.models.first_conv import (
    RGB_BANDS,
    adapt_first_conv_weight,
    cycle_first_conv_weight,
    normalize_band_name,
)
from geoseg.models.options import ArchOptions
from geoseg.models.temporal import encoder_input
from geoseg.models.torchgeo_weights import (
    check_encoder_matches,
    parse_torchgeo,
    timm_model_of,
    torchgeo_state_dict,
    torchgeo_weights,
)
from geoseg.models.weight_files import (
    SPEC_KEY,
    declared_bands,
    download_error,
    read_checkpoint,
    read_state_dict,
    registered_weights,
    settings_tag,
    spec_in,
)

__all__ = [
    "save_weights",
    "load_weights",
    "load_state",
    "read_state_dict",
    "read_checkpoint",
    "pretrained_timm_features",
    "load_torchgeo_weights",
    "build_with_weights",
]

logger = logging.getLogger(__name__)


def save_weights(model: SegmentationModel, path: str | Path) -> Path:
    """Write the model's weights as safetensors, with ``model.spec`` in the metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(sd, str(path), metadata={SPEC_KEY: json.dumps(model.spec)})
    return path


def _spec_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    keys = ("name", "in_channels", "num_classes", "encoder", "options", "aux_params")
    return [f"{k}: file {a.get(k)!r} vs model {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def _with_default_options(spec: Mapping[str, Any], model: SegmentationModel) -> dict[str, Any]:
    """``spec`` with the options it lacks at their defaults (a file written before they existed)."""
    options = spec.get("options")
    if spec.get("name") != model.name or not isinstance(options, Mapping):
        return dict(spec)
    try:
        return {**spec, "options": type(model).Options.from_dict(options).to_dict()}
    except ModelError:  # unknown or invalid options: reported as a difference
        return dict(spec)


def load_weights(model: SegmentationModel, path: str | Path) -> SegmentationModel:
    """Load a geoseg checkpoint (file or model bundle directory) into ``model`` (strict).

    Raises:
        CheckpointError: Missing file, a different architecture, or mismatched keys/shapes.
    """
    sd, spec = read_checkpoint(path)
    if spec is not None:
        diff = _spec_diff(_with_default_options(spec, model), model.spec)
        if diff:
            raise CheckpointError(
                "checkpoint was saved from a different architecture: " + "; ".join(diff), path=path,
                hint="rebuild the model with geoseg.models.load_model(path)",
            )
    return load_state(model, sd, path)


def load_state(model: SegmentationModel, sd: Mapping[str, Tensor], path: str | Path,
               spec: Mapping[str, Any] | None = None) -> SegmentationModel:
    """Load a whole-model state dict read from ``path`` into ``model`` (strict).

    Args:
        model: The model.
        sd: Its state dict, as read by :func:`read_checkpoint`.
        path: Where it was read from (for the error message).
        spec: The spec stored with it, if any: a misfit then names what differs.

    Raises:
        CheckpointError: Missing or unexpected keys, or shapes that differ.
    """
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        diff = [] if spec is None else _spec_diff(spec, model.spec)
        why = f"the checkpoint's architecture differs ({'; '.join(diff)})" if diff else str(err)
        raise CheckpointError(f"weights do not fit the model: {why}", path=path) from err
    return model


def _norm(name: str) -> str:
    return re.sub(r"[._]", "", name)


def _first_conv_key(sd: Mapping[str, Tensor], first_conv: str | None, in_chans: int | None) -> str:
    """Key of the first-conv weight: by timm's ``first_conv`` name, else the first 4-D weight."""
    if first_conv:
        for key, value in sd.items():
            if key.endswith(".weight") and _norm(key[: -len(".weight")]) == _norm(first_conv) \
                    and value.ndim == 4 and in_chans in (None, value.shape[1]):
                return key
    for key, value in sd.items():
        if key.endswith("weight") and value.ndim == 4 and in_chans in (None, value.shape[1]):
            return key
    raise CheckpointError(f"cannot find a first convolution in the weights (in_chans={in_chans})")


def pretrained_timm_features(
    name: str,
    in_channels: int,
    channel_names: Sequence[str] | None,
    depth: int,
    output_stride: int | None,
    state_dict: Mapping[str, Tensor] | None = None,
    source_bands: Sequence[str] | None = None,
    stride_fallback: bool = False,
    undilated: str = "output_stride=32",
) -> nn.Module:
    """A timm features model with pretrained weights, first conv mapped band by band.

    Args:
        name: timm model name.
        in_channels: Input channels of the new model.
        channel_names: Their names (None allowed only when they equal the source bands).
        depth: Deepest level kept (see :func:`~geoseg.models.encoders.build_timm_features`).
        output_stride: Dilation target or None.
        state_dict: Backbone weights in timm's format; None downloads timm's hub weights.
        source_bands: Bands of ``state_dict``'s first conv (None: RGB for 3 channels, else
            assumed identical to the target channels).
        stride_fallback: ``output_stride`` is only a default (see ``build_timm_features``).
        undilated: The model setting that asks for no dilation (named in errors).

    Raises:
        ModelError: Download failure, or channel names needed but missing.
        CheckpointError: ``state_dict`` does not fit the architecture.
    """
    overlay: dict[str, Any] = {}
    if state_dict is not None:
        cfg = timm.models.get_pretrained_cfg(name)
        key = _first_conv_key(state_dict, getattr(cfg, "first_conv", None), None)
        src_chans = int(state_dict[key].shape[1])
        overlay = {"state_dict": dict(state_dict), "input_size": (src_chans, 224, 224)}
    else:
        src_chans = 3
    source_bands, target = _band_lists(name, src_chans, in_channels, channel_names, source_bands)
    try:
        src, _ = build_timm_features(name, src_chans, depth, output_stride, fallback=stride_fallback,
                                     undilated=undilated, pretrained=True, pretrained_cfg_overlay=overlay)
    except ModelError:
        raise
    except (RuntimeError, KeyError) as err:
        if state_dict is None:
            raise download_error(name, err) from err
        raise CheckpointError(f"backbone weights do not fit timm model {name!r}: {err}") from err
    except Exception as err:  # network/hub errors have many types (OSError, HTTP errors, ...)
        if state_dict is None:
            raise download_error(name, err) from err
        raise
    if target is not None and [normalize_band_name(b) for b in source_bands] == [
            normalize_band_name(c) for c in target]:
        logger.info("%s: pretrained first conv bands already match %s", name, list(target))
        return src
    sd = src.state_dict()
    pretrained_cfg = cast(dict[str, Any], src.pretrained_cfg)  # set by timm.create_model
    key = _first_conv_key(sd, pretrained_cfg.get("first_conv"), src_chans)
    if target is None:  # unnamed channels: smp's cycling
        sd[key] = cycle_first_conv_weight(sd[key], in_channels, log_name=f"{name}.{key}")
    else:
        sd[key], _ = adapt_first_conv_weight(sd[key], source_bands, target, log_name=f"{name}.{key}")
    if output_stride is not None and max(_feature_info_reductions(src)) > output_stride:
        output_stride = None  # it could not dilate (stride_fallback): build the same, undilated
    model, _ = build_timm_features(name, in_channels, depth, output_stride)
    model.load_state_dict(sd, strict=True)
    return model


def _feature_info_reductions(model: nn.Module) -> list[int]:
    return list(cast(Any, model).feature_info.reduction())


def _band_lists(name: str, src_chans: int, in_channels: int, channel_names: Sequence[str] | None,
                source_bands: Sequence[str] | None) -> tuple[list[str], list[str] | None]:
    """Bands of the weights' first conv and names of the model's channels (RGB for 3 unnamed).

    Without a declared band list, 3 channels are RGB, and as many channels as the model's are
    taken as the model's own (named, or unnamed on both sides: loaded unchanged). Other
    unnamed channels given 3-channel weights get smp's cycling: their names are None.

    Raises:
        ModelError: The model's channels need names (weights of other than 3 channels).
        CheckpointError: The weights' bands cannot be told.
    """
    target = list(channel_names) if channel_names is not None else (
        list(RGB_BANDS) if in_channels == 3 else None)
    if source_bands is None:
        if src_chans == 3:
            source_bands = list(RGB_BANDS)
        elif target is not None and len(target) == src_chans:
            logger.info("%s: no band list in the weights; assuming the model's channels %s", name, target)
            source_bands = target
        elif src_chans == in_channels:  # unnamed on both sides: same layout, loaded unchanged
            source_bands = target = [f"channel_{i}" for i in range(src_chans)]
    if target is None and src_chans != 3:
        raise ModelError(
            f"pretrained weights of {src_chans} bands for {name!r} need channel_names for {in_channels} "
            "input channels", hint="pass channel_names=[...] so each band's filter lands on its channel",
        )
    if source_bands is None or len(source_bands) != src_chans:
        raise CheckpointError(f"cannot tell which bands the {src_chans}-channel first conv expects",
                              hint='store them as safetensors metadata {"bands": "[...]"}')
    return list(source_bands), target


def load_torchgeo_weights(model: SegmentationModel, weights: Any,
                          file: str | Path | None = None) -> SegmentationModel:
    """Load torchgeo backbone weights into ``model``'s encoder, first conv mapped band by band.

    Args:
        model: A model with a timm encoder: the one ``weights.meta["model"]`` names.
        weights: A torchgeo ``WeightsEnum`` member (``ResNet18_Weights.SENTINEL2_ALL_MOCO``) or
            its name, optionally as ``"torchgeo:<name>[=<file>]"``.
        file: A local copy of the weights (offline); default: torch hub's cache, else a
            download (see :func:`~geoseg.models.torchgeo_weights.torchgeo_state_dict`).

    The weights' ``meta["bands"]`` are mapped onto ``model.channel_names`` by name: the
    Sentinel-2 bands the recipe has get their filters, other channels (indices) the mean one.

    Raises:
        ModelError: Unknown or unusable weights, another encoder, channel names missing, or
            weights neither on this machine nor downloadable.
        CheckpointError: ``file`` is missing or holds other weights.
    """
    if isinstance(weights, str | Path):
        ref = parse_torchgeo(weights if str(weights).startswith("torchgeo:") else f"torchgeo:{weights}")
        assert ref is not None
        weights, file = torchgeo_weights(ref.name), ref.file if file is None else file
    if not isinstance(model.encoder, TimmEncoder):
        raise ModelError("torchgeo weights can only be loaded into a timm encoder")
    label = f"{type(weights).__name__}.{getattr(weights, 'name', '')}"
    check_encoder_matches(label, weights, model.encoder.name)
    bands = list(weights.meta["bands"])
    _band_lists(label, len(bands), model.in_channels, model.channel_names, bands)  # before any download
    return _load_timm_backbone(model, torchgeo_state_dict(weights, file), bands)


def _load_timm_backbone(model: SegmentationModel, sd: Mapping[str, Tensor],
                        bands: Sequence[str] | None) -> SegmentationModel:
    """Load timm-format backbone weights into ``model``'s timm encoder, first conv band-mapped."""
    assert isinstance(model.encoder, TimmEncoder)
    feats = pretrained_timm_features(
        model.encoder.name, model.encoder_channels, model.encoder_channel_names, model.options.encoder_depth,
        model.encoder_output_stride(model.options), state_dict=sd, source_bands=bands,
        stride_fallback=model.encoder_stride_fallback(model.options), undilated=model.undilated_setting,
    )
    model.encoder.model.load_state_dict(feats.state_dict(), strict=True)
    return model


def _check_channels(spec: Mapping[str, Any] | None, model: SegmentationModel, path: str | Path) -> None:
    """Refuse a checkpoint whose input channels are named differently from the model's."""
    theirs = None if spec is None else spec.get("channel_names")
    if theirs is None or model.channel_names is None:
        return
    if [normalize_band_name(c) for c in theirs] != [normalize_band_name(c) for c in model.channel_names]:
        raise CheckpointError(
            f"checkpoint was trained on channels {list(theirs)}, the model has {model.channel_names}",
            path=path, hint="use the checkpoint's channels, or backbone-only weights (band-mapped)",
        )


def _is_whole_model(sd: Mapping[str, Tensor], spec: Mapping[str, Any] | None,
                    model: SegmentationModel) -> bool:
    """A whole geoseg checkpoint: it carries a spec, or (plain torch files) the model's keys."""
    return spec is not None or not set(sd).isdisjoint(model.state_dict())


def build_with_weights(
    cls: type[SegmentationModel],
    *,
    in_channels: int,
    num_classes: int,
    encoder: str | nn.Module | None,
    options: ArchOptions,
    aux_params: dict[str, Any] | None,
    channel_names: Sequence[str] | None,
    pretrained: bool | str | Path,
) -> SegmentationModel:
    """Instantiate ``cls`` and load the requested pretrained weights (used by ``create_model``).

    ``pretrained`` is False/None; True (timm hub backbone weights, or a registered custom
    encoder's ``"imagenet"`` ``pretrained_settings``); the tag of one of those settings
    (smp's ``encoder_weights``, e.g. ``"ssl"``); ``"torchgeo:<Class>.<MEMBER>[=<file>]"``
    (torchgeo's Sentinel-2 backbone weights, see :func:`load_torchgeo_weights`); or a path: a
    whole-model checkpoint (see the module docstring) is loaded into the whole model, which it
    must fit (options that hold no weights, such as ``freeze_backbone``, may differ); otherwise
    the file holds backbone weights, whose first convolution is mapped band by band.
    """
    args = (in_channels, num_classes, encoder, options, aux_params, channel_names)
    # the encoder's own input: T*C date-prefixed channels for dates as channels
    enc_channels, enc_names = encoder_input(in_channels, channel_names, options)
    if pretrained is False or pretrained is None:
        return cls(*args)
    torchgeo = parse_torchgeo(pretrained)
    if torchgeo is not None:  # torchgeo's weights by name; the encoder defaults to their timm model
        weights = torchgeo_weights(torchgeo.name)
        if encoder is None:
            encoder = timm_model_of(weights)
        if not isinstance(encoder, str):
            raise ModelError(f"torchgeo weights {torchgeo.name} need a timm encoder name, got a module")
        check_encoder_matches(torchgeo.name, weights, encoder)
        model = cls(in_channels, num_classes, encoder, options, aux_params, channel_names)
        return load_torchgeo_weights(model, weights, torchgeo.file)
    enc_name = cls.default_encoder if encoder is None else encoder
    resolved = resolve_encoder_name(enc_name) if isinstance(enc_name, str) else None
    entry = resolved if isinstance(resolved, EncoderEntry) else None

    def with_custom_weights(sd: Mapping[str, Tensor], bands: Sequence[str] | None) -> SegmentationModel:
        assert entry is not None
        src_chans = int(sd[_first_conv_key(sd, None, None)].shape[1])
        source, target = _band_lists(entry.name, src_chans, enc_channels, enc_names, bands)
        enc = create_encoder(entry.name, enc_channels, options.encoder_depth, cls.encoder_output_stride(options),
                             stride_fallback=cls.encoder_stride_fallback(options),
                             undilated=cls.undilated_setting, state_dict=sd,
                             source_bands=source, channel_names=target)
        return cls(in_channels, num_classes, enc, options, aux_params, channel_names)

    tag = settings_tag(entry, pretrained)
    if entry is not None and tag is not None:
        declared = declared_bands(entry, tag)
        if declared is not None:  # the names they need are checked before any download
            _band_lists(entry.name, len(declared), in_channels, channel_names, declared)
        return with_custom_weights(*registered_weights(entry, tag))
    if pretrained is True:
        if not isinstance(resolved, str):
            raise ModelError(
                f"pretrained=True needs a timm encoder name or a registered encoder with "
                f"pretrained_settings, got {enc_name!r}",
                hint="load custom encoder weights from a local file: pretrained=<path>",
            )
        feats = pretrained_timm_features(resolved, enc_channels, enc_names, options.encoder_depth,
                                         cls.encoder_output_stride(options),
                                         stride_fallback=cls.encoder_stride_fallback(options),
                                         undilated=cls.undilated_setting)
        return cls(*args, timm_model=feats)
    if not isinstance(pretrained, str | Path):
        raise ModelError(f"pretrained must be False, True or a file path, got {pretrained!r}")
    sd, meta = read_state_dict(pretrained)
    spec = spec_in(meta, pretrained)
    model = cls(*args)
    if _is_whole_model(sd, spec, model):
        _check_channels(spec, model, pretrained)
        logger.info("%s: loading a whole %s checkpoint from %s", cls.name,
                    (spec or {}).get("name", "geoseg"), pretrained)
        return load_state(model, sd, pretrained, spec)
    bands = json.loads(meta["bands"]) if "bands" in meta else None
    if isinstance(model.encoder, TimmEncoder) and isinstance(resolved, str):
        return _load_timm_backbone(model, sd, bands)
    if entry is not None:  # a registered encoder: loaded as built, then its first conv adapted
        return with_custom_weights(sd, bands)
    try:
        # a custom encoder instance's own weights
        cast(nn.Module, model.encoder.module).load_state_dict(sd, strict=True)
    except (RuntimeError, AttributeError) as err:
        raise CheckpointError(f"encoder weights do not fit {enc_name!r}: {err}", path=pretrained) from err
    return model
