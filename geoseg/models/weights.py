"""Weights: pretrained backbones (hub, local file, torchgeo) and geoseg checkpoints.

This module reads, writes and maps weights; building models is the registry's job
(:func:`~geoseg.models.registry.create_model`, :func:`~geoseg.models.registry.load_model`).

* ``pretrained=True`` downloads timm's hub weights (RGB); ``pretrained=<path>`` reads a
  local file — safetensors, or a torch state dict loaded with ``weights_only=True`` — or a
  model bundle directory (``config.json`` + ``model.safetensors``, written by training).
* A **whole-model checkpoint** is one that carries a geoseg spec (written by
  :func:`save_weights`, or a bundle's ``config.json``), or, for plain torch state dicts
  without metadata, one whose keys are keys of the model being built. It is loaded into the
  whole model and must fit it exactly. Anything else is a **backbone** checkpoint in timm's
  format (or the custom encoder's own state dict).
* A backbone's first convolution is adapted band by band (:mod:`geoseg.models.first_conv`):
  hub weights are RGB = ``B04, B03, B02``; a local backbone file may declare its bands in
  the safetensors metadata key ``"bands"`` (JSON list), torchgeo weights in ``meta["bands"]``.
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
import torch
from torch import Tensor, nn

from geoseg.errors import CheckpointError, ModelError
from geoseg.models.base import SegmentationModel
from geoseg.models.encoders import TimmEncoder, build_timm_features
from geoseg.models.first_conv import RGB_BANDS, adapt_first_conv_weight, normalize_band_name
from geoseg.models.options import ArchOptions

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
_SPEC_KEY = "geoseg_spec"
# the layout of a model bundle directory (geoseg's training writes it; see docs/training.md)
_BUNDLE_CONFIG, _BUNDLE_WEIGHTS = "config.json", "model.safetensors"


def read_state_dict(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a weights file: safetensors, or a torch pickle loaded with ``weights_only=True``.

    Lightning-style ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers are unwrapped. A
    model bundle directory is read as its ``model.safetensors``, with the spec of its
    ``config.json`` as metadata.

    Returns:
        The state dict and the safetensors metadata (empty for torch files).

    Raises:
        CheckpointError: Missing file, unreadable or unsafe content.
    """
    path = Path(path)
    if path.is_dir():
        return _read_bundle_dir(path)
    if not path.is_file():
        raise CheckpointError("weights file not found", path=path)
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[8:9] == b"{":  # safetensors: u64 header length, then a JSON header
        try:
            with safetensors.safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
                return {k: f.get_tensor(k) for k in f.keys()}, meta  # noqa: SIM118
        except Exception as err:  # safetensors raises its own error types
            raise CheckpointError(f"not a safetensors or torch weights file: {err}", path=path) from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError for unsafe content, RuntimeError for corrupt zips
        raise CheckpointError(
            f"cannot load with weights_only=True: {err}",
            path=path,
            hint="save a plain state dict (torch.save(model.state_dict(), f)) or use safetensors",
        ) from err
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError("file does not hold a state dict of tensors", path=path)
    sd = dict(obj)
    if sd and all(k.startswith("model.") for k in sd):
        sd = {k[len("model."):]: v for k, v in sd.items()}
    return sd, {}


def _read_bundle_dir(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    config, weights = path / _BUNDLE_CONFIG, path / _BUNDLE_WEIGHTS
    if not (config.is_file() and weights.is_file()):
        raise CheckpointError(
            f"not a weights file or a model bundle directory ({_BUNDLE_CONFIG} + {_BUNDLE_WEIGHTS})",
            path=path, hint="pass a .safetensors/.pth file or MODEL_DIR/best (or final, epoch_N)",
        )
    sd, meta = read_state_dict(weights)
    if _SPEC_KEY not in meta:
        try:
            spec = json.loads(config.read_text())["model"]
        except (ValueError, UnicodeDecodeError, KeyError, TypeError) as err:
            raise CheckpointError(f"no model spec in the bundle's {_BUNDLE_CONFIG} ({err})",
                                  path=config) from None
        meta[_SPEC_KEY] = json.dumps(spec)
    return sd, meta


def read_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """Read a weights file or model bundle directory (see :func:`read_state_dict`).

    Returns:
        The state dict and the geoseg spec of the model that wrote it (``model.spec``), or
        None when the file carries none (a backbone, or a plain torch state dict).

    Raises:
        CheckpointError: As :func:`read_state_dict`, or a spec that is not a JSON object.
    """
    sd, meta = read_state_dict(path)
    return sd, _spec_in(meta, path)


def _spec_in(meta: Mapping[str, str], path: str | Path) -> dict[str, Any] | None:
    if _SPEC_KEY not in meta:
        return None
    try:
        spec = json.loads(meta[_SPEC_KEY])
    except ValueError as err:
        raise CheckpointError(f"damaged geoseg spec in the file metadata ({err})", path=path) from None
    if not isinstance(spec, dict):
        raise CheckpointError("damaged geoseg spec in the file metadata (not a JSON object)", path=path)
    return spec


def save_weights(model: SegmentationModel, path: str | Path) -> Path:
    """Write the model's weights as safetensors, with ``model.spec`` in the metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(sd, str(path), metadata={_SPEC_KEY: json.dumps(model.spec)})
    return path


def _spec_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    keys = ("name", "in_channels", "num_classes", "encoder", "options", "aux_params")
    return [f"{k}: file {a.get(k)!r} vs model {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def load_weights(model: SegmentationModel, path: str | Path) -> SegmentationModel:
    """Load a geoseg checkpoint (file or model bundle directory) into ``model`` (strict).

    Raises:
        CheckpointError: Missing file, a different architecture, or mismatched keys/shapes.
    """
    sd, spec = read_checkpoint(path)
    if spec is not None:
        diff = _spec_diff(spec, model.spec)
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


def _download_error(name: str, err: Exception) -> ModelError:
    return ModelError(
        f"could not download pretrained weights for encoder {name!r} "
        f"({type(err).__name__}: {str(err)[:200]})",
        hint="this machine may have no network: pass pretrained=<local .safetensors or .pth file>",
    )


def pretrained_timm_features(
    name: str,
    in_channels: int,
    channel_names: Sequence[str] | None,
    depth: int,
    output_stride: int | None,
    state_dict: Mapping[str, Tensor] | None = None,
    source_bands: Sequence[str] | None = None,
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
    if target is None:
        raise ModelError(
            f"pretrained weights for {name!r} need channel_names for {in_channels} input channels",
            hint="pass channel_names=[...] so RGB filters land on B04/B03/B02",
        )
    if source_bands is None or len(source_bands) != src_chans:
        raise CheckpointError(f"cannot tell which bands the {src_chans}-channel first conv expects",
                              hint='store them as safetensors metadata {"bands": "[...]"}')
    try:
        src, _ = build_timm_features(name, src_chans, depth, output_stride, pretrained=True,
                                     pretrained_cfg_overlay=overlay)
    except (RuntimeError, KeyError) as err:
        if state_dict is None:
            raise _download_error(name, err) from err
        raise CheckpointError(f"backbone weights do not fit timm model {name!r}: {err}") from err
    except Exception as err:  # network/hub errors have many types (OSError, HTTP errors, ...)
        if state_dict is None:
            raise _download_error(name, err) from err
        raise
    if [normalize_band_name(b) for b in source_bands] == [normalize_band_name(c) for c in target]:
        logger.info("%s: pretrained first conv bands already match %s", name, list(target))
        return src
    sd = src.state_dict()
    pretrained_cfg = cast(dict[str, Any], src.pretrained_cfg)  # set by timm.create_model
    key = _first_conv_key(sd, pretrained_cfg.get("first_conv"), src_chans)
    sd[key], _ = adapt_first_conv_weight(sd[key], source_bands, target, log_name=f"{name}.{key}")
    model, _ = build_timm_features(name, in_channels, depth, output_stride)
    model.load_state_dict(sd, strict=True)
    return model


def load_torchgeo_weights(model: SegmentationModel, weights: Any) -> SegmentationModel:
    """Load torchgeo backbone weights (a ``WeightsEnum`` member) into ``model``'s encoder.

    The weights' ``meta["bands"]`` are mapped onto ``model.channel_names`` band by band.
    ``weights.get_state_dict`` downloads, so this needs the network (or torch hub's cache).

    Raises:
        ModelError: The encoder is not a timm encoder, or channel names are missing.
    """
    if not isinstance(model.encoder, TimmEncoder):
        raise ModelError("torchgeo weights can only be loaded into a timm encoder")
    bands = list(weights.meta["bands"])
    return _load_timm_backbone(model, weights.get_state_dict(progress=True), bands)


def _load_timm_backbone(model: SegmentationModel, sd: Mapping[str, Tensor],
                        bands: Sequence[str] | None) -> SegmentationModel:
    """Load timm-format backbone weights into ``model``'s timm encoder, first conv band-mapped."""
    assert isinstance(model.encoder, TimmEncoder)
    feats = pretrained_timm_features(
        model.encoder.name, model.in_channels, model.channel_names, model.options.encoder_depth,
        model.encoder_output_stride(model.options), state_dict=sd, source_bands=bands,
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

    ``pretrained`` is False/None, True (timm hub backbone weights) or a path: a whole-model
    checkpoint (see the module docstring) is loaded into the whole model, which it must fit
    (options that hold no weights, such as ``freeze_backbone``, may differ); otherwise the
    file holds backbone weights, whose first convolution is mapped band by band.
    """
    args = (in_channels, num_classes, encoder, options, aux_params, channel_names)
    if pretrained is False or pretrained is None:
        return cls(*args)
    enc_name = cls.default_encoder if encoder is None else encoder
    stride = cls.encoder_output_stride(options)
    is_timm = isinstance(enc_name, str) and timm.is_model(enc_name)
    if pretrained is True:
        if not is_timm or not isinstance(enc_name, str):
            raise ModelError(
                f"pretrained=True needs a timm encoder name, got {enc_name!r}",
                hint="load custom encoder weights from a local file: pretrained=<path>",
            )
        feats = pretrained_timm_features(enc_name, in_channels, channel_names,
                                         options.encoder_depth, stride)
        return cls(*args, timm_model=feats)
    if not isinstance(pretrained, str | Path):
        raise ModelError(f"pretrained must be False, True or a file path, got {pretrained!r}")
    sd, meta = read_state_dict(pretrained)
    spec = _spec_in(meta, pretrained)
    model = cls(*args)
    if _is_whole_model(sd, spec, model):
        _check_channels(spec, model, pretrained)
        logger.info("%s: loading a whole %s checkpoint from %s", cls.name,
                    (spec or {}).get("name", "geoseg"), pretrained)
        return load_state(model, sd, pretrained, spec)
    bands = json.loads(meta["bands"]) if "bands" in meta else None
    if isinstance(model.encoder, TimmEncoder) and is_timm:
        return _load_timm_backbone(model, sd, bands)
    try:
        # a custom encoder's own weights (a timm encoder has no .module: AttributeError)
        cast(nn.Module, model.encoder.module).load_state_dict(sd, strict=True)
    except (RuntimeError, AttributeError) as err:
        raise CheckpointError(f"encoder weights do not fit {enc_name!r}: {err}", path=pretrained) from err
    return model
