"""torchgeo's Sentinel-2 pretrained weights by name: ``pretrained="torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCO"``.

The reading half of torchgeo weights (:mod:`geoseg.models.weights` maps and loads them):

* :func:`parse_torchgeo` splits ``torchgeo:<Class>.<MEMBER>[=<file>]``;
* :func:`torchgeo_weights` resolves the name to torchgeo's ``WeightsEnum`` member, whose
  ``meta`` gives its input channels (``in_chans``) and their Sentinel-2 bands (``bands``);
  :func:`timm_model_of` names the timm model torchgeo builds for it. Only Sentinel-2 weights
  of timm CNNs can be used: geoseg maps bands by their Sentinel-2 names, and its decoders need
  a timm encoder with a feature pyramid (not a plain ViT's single stride);
* :func:`torchgeo_state_dict` reads the weights: the ``=<file>`` given, else torch hub's cache
  (where torchgeo's ``get_state_dict`` keeps what it downloads:
  ``torch.hub.get_dir()/checkpoints/<file name of the URL>``, i.e. ``$TORCH_HOME/hub/...``),
  else downloads them with ``weights.get_state_dict``. Offline, either local form works.

torchgeo is imported only here, and only when such a name is used.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
from torch import Tensor

from geoseg.errors import CheckpointError, ModelError
from geoseg.models.first_conv import normalize_band_name
from geoseg.models.weight_files import read_state_dict, unwrap_state_dict
from geoseg.utils.closest import suggestion

__all__ = [
    "TORCHGEO_PREFIX",
    "TorchgeoRef",
    "parse_torchgeo",
    "torchgeo_weights",
    "torchgeo_weight_names",
    "timm_model_of",
    "torchgeo_cache_file",
    "torchgeo_state_dict",
    "check_pretrained",
]

TORCHGEO_PREFIX = "torchgeo:"
_S2_BAND = re.compile(r"^B(0[1-9]|1[0-2]|8A)$")
_EXAMPLE = "torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCO"
_USE = "use Sentinel-2 weights of a ResNet, e.g. ResNet18_Weights.SENTINEL2_ALL_MOCO or ResNet50_Weights.SENTINEL2_ALL_MOCO"
# timm modules whose models give features at one stride only (plain vision transformers)
_SINGLE_STRIDE = ("vision_transformer", "deit", "eva", "beit")


@dataclass(frozen=True)
class TorchgeoRef:
    """A ``torchgeo:<Class>.<MEMBER>[=<file>]`` request: the weights' name and an optional local file."""

    name: str
    file: Path | None = None

    def __str__(self) -> str:
        return f"{TORCHGEO_PREFIX}{self.name}" + ("" if self.file is None else f"={self.file}")


def parse_torchgeo(value: object) -> TorchgeoRef | None:
    """The torchgeo request in a ``pretrained`` value, or None when it is not a ``torchgeo:`` name.

    Raises:
        ModelError: ``torchgeo:`` without ``<Class>.<MEMBER>``, or ``=`` without a file.
    """
    if not isinstance(value, str | Path) or not str(value).startswith(TORCHGEO_PREFIX):
        return None
    name, sep, file = str(value).removeprefix(TORCHGEO_PREFIX).partition("=")
    name = name.strip()
    if not re.fullmatch(r"\w+_Weights\.\w+", name):
        raise ModelError(f"pretrained={str(value)!r} is not torchgeo:<Class>.<MEMBER>[=<file>]",
                         hint=f"e.g. {_EXAMPLE} (names: geoseg.models.torchgeo_weights.torchgeo_weight_names())")
    if sep and not file.strip():
        raise ModelError(f"pretrained={str(value)!r}: no file after '='",
                         hint=f"{TORCHGEO_PREFIX}{name}=/path/to/weights.pth, or leave out '=' to use torch hub's cache")
    return TorchgeoRef(name, Path(file.strip()).expanduser() if sep else None)


def _all_weights() -> dict[str, Any]:
    """Every ``WeightsEnum`` member torchgeo exports, by ``Class.MEMBER`` name."""
    import torchgeo.models

    found: dict[str, Any] = {}
    for attr in dir(torchgeo.models):
        cls = getattr(torchgeo.models, attr)
        if attr.endswith("_Weights") and isinstance(cls, type) and issubclass(cls, enum.Enum):
            found.update({f"{attr}.{member.name}": member for member in cls})
    return found


def _unusable(name: str, weights: Any) -> str | None:
    """Why geoseg cannot load these torchgeo weights (None: it can)."""
    meta = weights.meta
    bands = [normalize_band_name(str(b)) for b in meta.get("bands") or ()]
    if "SENTINEL2" not in name or not bands or not all(_S2_BAND.match(b) for b in bands):
        return f"they are not Sentinel-2 weights (bands {list(meta.get('bands') or [])})"
    if len(set(bands)) != len(bands):
        return f"their input repeats bands ({list(meta['bands'])}: several dates), not one image"
    model = timm_model_of(weights)
    if model is None:
        return f"they are for {meta.get('model')!r}, not a timm backbone"
    if any(model in timm.list_models(module=m) for m in _SINGLE_STRIDE):
        return f"they are for the plain vision transformer {model!r} (one feature stride), which geoseg's decoders cannot use"
    return None


def timm_model_of(weights: Any) -> str | None:
    """The timm model torchgeo builds for ``weights`` (None: not a timm model).

    That is the name of torchgeo's builder of the weights' class (``resnet152`` for
    ``ResNet152_Weights``, whose ``meta["model"]`` says ``resnet50``), else ``meta["model"]``.
    """
    import torchgeo.models

    for builder in torchgeo.models.list_models():
        if timm.is_model(builder) and torchgeo.models.get_model_weights(builder) is type(weights):
            return builder
    model = weights.meta.get("model")
    return model if isinstance(model, str) and timm.is_model(model) else None


def torchgeo_weight_names() -> list[str]:
    """Names of the torchgeo weights geoseg can load (Sentinel-2 bands, a timm model), sorted."""
    return sorted(name for name, w in _all_weights().items() if _unusable(name, w) is None)


def torchgeo_weights(name: str) -> Any:
    """torchgeo's ``WeightsEnum`` member ``name`` (``"ResNet18_Weights.SENTINEL2_ALL_MOCO"``).

    Raises:
        ModelError: Unknown name (with the closest one), or weights geoseg cannot use (not
            Sentinel-2, or not for a timm model).
    """
    members = _all_weights()
    if name not in members:
        raise ModelError(f"torchgeo has no weights {name!r}",
                         hint=suggestion(name, torchgeo_weight_names(), n=3) or _USE)
    weights = members[name]
    why = _unusable(name, weights)
    if why is not None:
        raise ModelError(f"torchgeo weights {name} cannot be used by geoseg: {why}", hint=_USE)
    return weights


def torchgeo_cache_file(weights: Any) -> Path:
    """Where torchgeo (torch hub) keeps the downloaded file: ``torch.hub.get_dir()/checkpoints/<URL file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def _label(weights: Any) -> str:
    return f"{type(weights).__name__}.{weights.name}" if isinstance(weights, enum.Enum) else repr(weights)


def torchgeo_state_dict(weights: Any, file: str | Path | None = None) -> dict[str, Tensor]:
    """The state dict of torchgeo ``weights``: from ``file``, torch hub's cache, or a download.

    The weights' first convolution must take ``meta["in_chans"]`` channels (a file of other
    weights is refused). Files are read with ``weights_only=True``.

    Raises:
        CheckpointError: ``file`` missing or unreadable, or not these weights.
        ModelError: Not on this machine and the download failed (no network): the message
            names the URL, and where to put the file.
    """
    label = _label(weights)
    url = getattr(weights, "url", None)
    path = Path(file) if file is not None else (torchgeo_cache_file(weights) if url else None)
    if file is not None and not path.is_file():  # type: ignore[union-attr]
        raise CheckpointError(f"torchgeo weights {label}: file not found", path=file,
                              hint=f"download {url} and pass its path" if url else None)
    if path is not None and path.is_file():
        sd, _ = read_state_dict(path)
        source: str | Path = path
    else:
        download = weights.get_state_dict
        try:
            if isinstance(weights, enum.Enum):  # torchgeo's member: torch hub download, read safely
                obj = download(progress=True, map_location="cpu", weights_only=True)
            else:  # a stand-in with meta and get_state_dict
                obj = download(progress=True)
        except Exception as err:  # no network: URLError, OSError, HTTP errors, ...
            raise ModelError(
                f"torchgeo weights {label} are not on this machine and could not be downloaded from {url} "
                f"({type(err).__name__}: {str(err)[:120]})",
                hint=f"offline: download that file elsewhere, then pass {TORCHGEO_PREFIX}{label}=/path/to/"
                     f"{Path(urlparse(str(url)).path).name} or copy it into {torchgeo_cache_file(weights).parent}",
            ) from err
        sd, source = unwrap_state_dict(obj, str(url)), str(url)
    expected = weights.meta.get("in_chans")
    first = next((v for v in sd.values() if v.ndim == 4), None)
    if expected is not None and (first is None or first.shape[1] != expected):
        got = "no convolution" if first is None else f"a first convolution of {first.shape[1]} channels"
        raise CheckpointError(f"not the torchgeo weights {label}: {got}, those take {expected} bands",
                              path=source, hint=f"download {url}" if url else None)
    return sd


def check_pretrained(value: object, encoder: str | None = None) -> None:
    """Refuse a ``torchgeo:`` ``pretrained`` value that cannot work, before training (no download).

    Other values are left to :func:`~geoseg.models.create_model`. Checks the name, that the
    weights are usable, that a given ``=<file>`` exists, and that ``encoder`` (when given) is the
    timm model the weights are for.

    Raises:
        ModelError: Malformed or unknown name, unusable weights, another encoder.
        CheckpointError: The ``=<file>`` does not exist.
    """
    ref = parse_torchgeo(value)
    if ref is None:
        return
    weights = torchgeo_weights(ref.name)
    if ref.file is not None and not ref.file.is_file():
        raise CheckpointError(f"torchgeo weights {ref.name}: file not found", path=ref.file,
                              hint=f"download {weights.url} and pass its path")
    check_encoder_matches(ref.name, weights, encoder)


def check_encoder_matches(label: str, weights: Any, encoder: str | None) -> None:
    """Refuse an ``encoder`` other than the timm model of torchgeo ``weights`` (None: any).

    Raises:
        ModelError: The encoder differs.
    """
    model = timm_model_of(weights)
    if encoder is None or model is None:
        return
    from geoseg.models.custom_encoders import resolve_encoder_name

    resolved = resolve_encoder_name(encoder)
    if resolved != model:
        raise ModelError(f"torchgeo weights {label} are for the timm encoder {model!r}, not {encoder!r}",
                         hint=f"use encoder {model!r} (--encoder {model})")
