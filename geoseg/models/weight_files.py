"""Reading weights: files, model bundle directories, and registered encoders' pretrained settings.

The lower half of :mod:`geoseg.models.weights` (which maps and loads what is read here):

* :func:`read_state_dict` reads safetensors, a torch pickle (``weights_only=True``) or a model
  bundle directory; :func:`read_checkpoint` adds the geoseg spec stored with it.
* :func:`settings_tag` and :func:`registered_weights` read a custom encoder's smp-style
  ``pretrained_settings``: a ``url`` (http(s) through ``torch.hub``, or a local file) or a
  Hugging Face ``repo_id``, with the bands the weights expect.

torchgeo's weights by name (``pretrained="torchgeo:..."``) are read by
:mod:`geoseg.models.torchgeo_weights`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import huggingface_hub
import safetensors
import safetensors.torch
import torch
from torch import Tensor

from geoseg.errors import CheckpointError, ModelError, WeightsDownloadError
from geoseg.models.custom_encoders import EncoderEntry
from geoseg.models.first_conv import RGB_BANDS

__all__ = [
    "SPEC_KEY",
    "read_state_dict",
    "read_checkpoint",
    "unwrap_state_dict",
    "spec_in",
    "download_error",
    "settings_tag",
    "declared_bands",
    "registered_weights",
]

SPEC_KEY = "geoseg_spec"
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
    return unwrap_state_dict(obj, path), {}


def unwrap_state_dict(obj: Any, path: str | Path) -> dict[str, Tensor]:
    """The state dict in a loaded torch object (Lightning wrappers and a ``model.`` prefix removed)."""
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError("file does not hold a state dict of tensors", path=path)
    sd = dict(obj)
    if sd and all(k.startswith("model.") for k in sd):
        sd = {k[len("model."):]: v for k, v in sd.items()}
    return sd


def _read_bundle_dir(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    config, weights = path / _BUNDLE_CONFIG, path / _BUNDLE_WEIGHTS
    if not (config.is_file() and weights.is_file()):
        raise CheckpointError(
            f"not a weights file or a model bundle directory ({_BUNDLE_CONFIG} + {_BUNDLE_WEIGHTS})",
            path=path, hint="pass a .safetensors/.pth file or MODEL_DIR/best (or final, epoch_N)",
        )
    sd, meta = read_state_dict(weights)
    if SPEC_KEY not in meta:
        try:
            spec = json.loads(config.read_text())["model"]
        except (ValueError, UnicodeDecodeError, KeyError, TypeError) as err:
            raise CheckpointError(f"no model spec in the bundle's {_BUNDLE_CONFIG} ({err})",
                                  path=config) from None
        meta[SPEC_KEY] = json.dumps(spec)
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
    return sd, spec_in(meta, path)


def spec_in(meta: Mapping[str, str], path: str | Path) -> dict[str, Any] | None:
    """The geoseg spec in a file's metadata, or None (:exc:`CheckpointError` when damaged)."""
    if SPEC_KEY not in meta:
        return None
    try:
        spec = json.loads(meta[SPEC_KEY])
    except ValueError as err:
        raise CheckpointError(f"damaged geoseg spec in the file metadata ({err})", path=path) from None
    if not isinstance(spec, dict):
        raise CheckpointError("damaged geoseg spec in the file metadata (not a JSON object)", path=path)
    return spec


def download_error(name: str, err: Exception) -> WeightsDownloadError:
    """The one-line error of a failed weights download (no network: use a local file)."""
    return WeightsDownloadError(
        f"could not download pretrained weights for encoder {name!r} "
        f"({type(err).__name__}: {str(err)[:200]})",
        hint="this machine may have no network: pass pretrained=<local .safetensors or .pth file>",
    )


def settings_tag(entry: EncoderEntry | None, pretrained: bool | str | Path) -> str | None:
    """The ``pretrained_settings`` key ``pretrained`` asks for (None: not a registered-weights request)."""
    if entry is None:
        return None
    settings = entry.pretrained_settings
    if pretrained is True:
        if not settings:
            raise ModelError(f"encoder {entry.name!r} has no pretrained_settings",
                             hint="pass pretrained=<local weights file>")
        if "imagenet" in settings or len(settings) > 1:
            return "imagenet"
        return next(iter(settings))
    if not isinstance(pretrained, str) or not settings or Path(pretrained).exists():
        return None
    # smp's encoder_weights="ssl" etc.: a settings key, or a word that is no file path
    return pretrained if pretrained in settings or not any(c in pretrained for c in "/\\.") else None


def declared_bands(entry: EncoderEntry, tag: str) -> list[str] | None:
    """The ``bands`` list of ``pretrained_settings[tag]``, known before any download (None: not given)."""
    bands = (entry.pretrained_settings.get(tag) or {}).get("bands")
    return [str(b) for b in bands] if bands else None


def registered_weights(entry: EncoderEntry, tag: str) -> tuple[dict[str, Tensor], list[str] | None]:
    """The state dict and band list of a registered encoder's ``pretrained_settings[tag]``.

    Settings give ``url`` (http(s): downloaded with torch.hub, as smp < 0.5 did; a local path
    or ``file://`` URL: read here) or ``repo_id``/``revision`` (a Hugging Face repository with
    ``model.safetensors``, as smp ≥ 0.5). The bands come from ``bands``, the file's metadata,
    or ``input_space`` (``"BGR"`` reverses RGB; RGB is the default for 3 channels). ``mean``,
    ``std`` and ``input_range`` are not used: geoseg normalises with the data's statistics.
    """
    settings = entry.pretrained_settings.get(tag)
    if settings is None:
        raise ModelError(f"encoder {entry.name!r} has no {tag!r} weights; its pretrained_settings are "
                         f"{sorted(entry.pretrained_settings)}")
    meta: dict[str, str] = {}
    try:
        if "repo_id" in settings:
            path = huggingface_hub.hf_hub_download(str(settings["repo_id"]), filename="model.safetensors",
                                                   revision=settings.get("revision"))
            sd, meta = read_state_dict(path)
        elif "url" in settings:
            url = str(settings["url"])
            if url.startswith(("http://", "https://")):
                obj = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False,
                                                         weights_only=True)
                sd = unwrap_state_dict(obj, url)
            else:
                sd, meta = read_state_dict(url.removeprefix("file://"))
        else:
            raise ModelError(f"pretrained_settings[{tag!r}] of encoder {entry.name!r} has neither "
                             "'url' nor 'repo_id'")
    except (ModelError, CheckpointError):
        raise
    except Exception as err:  # network/hub errors have many types (OSError, HTTP errors, ...)
        raise download_error(entry.name, err) from err
    bands = declared_bands(entry, tag) or (json.loads(meta["bands"]) if "bands" in meta else None)
    if bands is None and str(settings.get("input_space", "")).upper() == "BGR":
        bands = list(RGB_BANDS)[::-1]
    return sd, None if bands is None else [str(b) for b in bands]
