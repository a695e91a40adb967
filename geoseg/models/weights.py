"""Weights: pretrained backbones (hub, local file, torchgeo) and geoseg checkpoints.

* ``pretrained=True`` downloads timm's hub weights (RGB); ``pretrained=<file>`` reads a
  local file — safetensors, or a torch state dict loaded with ``weights_only=True``.
  A file whose keys look like a geoseg model (``encoder.``/``decoder.`` …) is loaded into
  the whole model; anything else is a backbone checkpoint in timm's format.
* The first convolution is adapted band by band (:mod:`geoseg.models.first_conv`): hub
  weights are RGB = ``B04, B03, B02``; a local backbone file may declare its bands in the
  safetensors metadata key ``"bands"`` (JSON list), torchgeo weights in ``meta["bands"]``.
* :func:`save_weights` writes safetensors with the model's ``spec`` as metadata, so
  :func:`load_model` can rebuild the architecture from the file alone.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
    "load_model",
    "read_state_dict",
    "pretrained_timm_features",
    "load_torchgeo_weights",
    "build_with_weights",
]

logger = logging.getLogger(__name__)
_SPEC_KEY = "geoseg_spec"
_MODEL_PREFIXES = ("encoder.", "decoder.", "segmentation_head.", "input_norm.", "head.")


def read_state_dict(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a weights file: safetensors, or a torch pickle loaded with ``weights_only=True``.

    Lightning-style ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers are unwrapped.

    Returns:
        The state dict and the safetensors metadata (empty for torch files).

    Raises:
        CheckpointError: Missing file, unreadable or unsafe content.
    """
    path = Path(path)
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
    """Load a geoseg checkpoint into ``model`` (strict).

    Raises:
        CheckpointError: Missing file, a different architecture, or mismatched keys/shapes.
    """
    sd, meta = read_state_dict(path)
    if _SPEC_KEY in meta:
        diff = _spec_diff(json.loads(meta[_SPEC_KEY]), model.spec)
        if diff:
            raise CheckpointError(
                "checkpoint was saved from a different architecture: " + "; ".join(diff), path=path,
                hint="rebuild the model with geoseg.models.load_model(path)",
            )
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"weights do not fit the model: {err}", path=path) from err
    return model


def load_model(path: str | Path) -> SegmentationModel:
    """Rebuild a model from a file written by :func:`save_weights` and load its weights."""
    from geoseg.models.registry import create_model

    _, meta = read_state_dict(path)
    if _SPEC_KEY not in meta:
        raise CheckpointError("no geoseg spec in the file metadata", path=path,
                              hint="load it with load_weights(create_model(...), path)")
    model = create_model(**json.loads(meta[_SPEC_KEY]), pretrained=False)
    return load_weights(model, path)


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
    key = _first_conv_key(sd, src.pretrained_cfg.get("first_conv"), src_chans)
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
    sd = weights.get_state_dict(progress=True)
    feats = pretrained_timm_features(
        model.encoder.name, model.in_channels, model.channel_names, model.options.encoder_depth,
        model.encoder_output_stride(model.options), state_dict=sd, source_bands=bands,
    )
    model.encoder.model.load_state_dict(feats.state_dict(), strict=True)
    return model


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
    """Instantiate ``cls`` and load the requested pretrained weights (used by ``create_model``)."""
    args = (in_channels, num_classes, encoder, options, aux_params, channel_names)
    if pretrained is False or pretrained is None:
        return cls(*args)
    enc_name = cls.default_encoder if encoder is None else encoder
    stride = cls.encoder_output_stride(options)
    is_timm = isinstance(enc_name, str) and timm.is_model(enc_name)
    if pretrained is True:
        if not is_timm:
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
    if any(k.startswith(_MODEL_PREFIXES[0]) for k in sd) and all(
        k.startswith(_MODEL_PREFIXES + ("classification_head.", "point_head.", "aux_head."))
        for k in sd
    ):
        return load_weights(cls(*args), pretrained)  # a whole geoseg checkpoint
    bands = json.loads(meta["bands"]) if "bands" in meta else None
    if is_timm:
        feats = pretrained_timm_features(enc_name, in_channels, channel_names,
                                         options.encoder_depth, stride, state_dict=sd, source_bands=bands)
        return cls(*args, timm_model=feats)
    model = cls(*args)
    try:
        model.encoder.module.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"encoder weights do not fit {enc_name!r}: {err}", path=pretrained) from err
    return model
