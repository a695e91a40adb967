"""The model registry and factories: ``create_model``, ``load_model``, ``list_models``, ``describe_models``.

A plain dict name → model class. Capabilities are read from class attributes, never from
``if name == ...`` checks. Unknown names and options raise :class:`~geoseg.errors.ModelError`
with the valid names and the closest match. Reading and mapping weights is
:mod:`geoseg.models.weights`' job (which does not import this module).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from geoseg.errors import CheckpointError, ModelError
from geoseg.models.base import SegmentationModel
from geoseg.models.constructors import use_registry
from geoseg.models.deeplabv3plus import DeepLabV3Plus
from geoseg.models.deeplabv3plus3d import DeepLabV3Plus3D
from geoseg.models.encoders import resolve_in_channels
from geoseg.models.heads import validate_aux_params
from geoseg.models.pspnet import PSPNet
from geoseg.models.rsprunetpp import RSPRUNetPlusPlus
from geoseg.models.unet import UNet
from geoseg.models.unet3plus import UNet3Plus
from geoseg.models.weights import build_with_weights, load_state, read_checkpoint
from geoseg.utils.closest import suggestion

__all__ = ["MODELS", "create_model", "load_model", "list_models", "describe_models", "get_model_class"]

MODELS: dict[str, type[SegmentationModel]] = {
    cls.name: cls for cls in (RSPRUNetPlusPlus, UNet3Plus, DeepLabV3Plus, PSPNet, UNet, DeepLabV3Plus3D)
}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, in registry order."""
    return list(MODELS)


def get_model_class(name: str) -> type[SegmentationModel]:
    """The class registered under ``name``.

    Raises:
        ModelError: Unknown name (the message lists valid names and the closest match).
    """
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise ModelError(
            f"unknown model {name!r}; valid models are {', '.join(MODELS)}",
            hint=suggestion(str(name), MODELS),
        ) from None


def describe_models() -> dict[str, dict[str, Any]]:
    """Per model: summary, default encoder, options (name/type/default/help), capabilities.

    ``capabilities["time_series"]`` lists the ``temporal`` modes the model accepts (a series
    input ``(N, T, C, H, W)``); ``capabilities["single_date"]`` says whether it takes one date.
    """
    return {
        name: {
            "summary": cls.summary,
            "default_encoder": cls.default_encoder,
            "options": cls.Options.describe(),
            "capabilities": {
                "deep_supervision": cls.supports_deep_supervision,
                "pointrend": cls.supports_pointrend,
                "aux_mask_head": any(o["name"] == "aux_mask_head" for o in cls.Options.describe()),
                "aux_classification_head": True,
                "custom_encoders": True,
                "any_input_size": True,
                "time_series": list(cls.Options.temporal_modes),
                "single_date": cls.Options.single_date,
            },
        }
        for name, cls in MODELS.items()
    }


def create_model(
    name: str,
    in_channels: int | None = None,
    num_classes: int = 3,
    encoder: str | nn.Module | None = None,
    pretrained: bool | str | Path = False,
    channel_names: Sequence[str] | None = None,
    aux_params: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    input_shape: Sequence[int | None] | None = None,
    **architecture_options: Any,
) -> SegmentationModel:
    """Build a segmentation model.

    Args:
        name: Architecture, one of :func:`list_models`.
        in_channels: Input channels (24 for the ``s2_24`` recipe). None: from ``input_shape``,
            else from an encoder module's ``_in_channels``, else 24.
        num_classes: Number of classes K of the output logits.
        encoder: timm model name (or smp's ``tu-<name>``), custom encoder name (geoseg's
            ``register_encoder`` or smp's ``encoders`` dict), or an encoder module;
            None selects the architecture's default encoder.
        pretrained: False (random), True (timm hub weights for the backbone, or a registered
            encoder's ``"imagenet"`` ``pretrained_settings``; needs the network unless they
            name a local file), a ``pretrained_settings`` tag, torchgeo's Sentinel-2 backbone weights
            by name (``"torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCO"``, optionally ``=<file>``;
            the encoder defaults to theirs), or a local weights file (safetensors, or a torch state dict loaded
            with ``weights_only=True``) or model bundle directory: backbone weights (first
            conv mapped band by band), or a whole geoseg checkpoint — one written by
            :func:`~geoseg.models.save_weights` or training, or a plain state dict of this
            model — which must fit the model.
        channel_names: Name of each input channel (``"B04"``, ``"NDVI"``, ...). Required to
            place pretrained RGB filters when ``in_channels != 3``.
        aux_params: Classification head (keys ``classes``, ``pooling``, ``dropout``,
            ``activation``); ``forward`` then returns ``(mask, label)``.
        options: Architecture options as a dict (the ``options`` entry of ``model.spec``).
        input_shape: ``(H, W, C)``, channels last (seed 003's medicai/Keras form): gives
            ``in_channels`` = C; geoseg models take any H, W. A series ``(T, H, W, C)`` (the
            seed's 3D form) also gives ``time_steps`` = T (None: any T) and, without
            ``temporal``, builds the architecture's series variant (``deeplabv3plus`` →
            ``deeplabv3plus3d``).
        **architecture_options: Architecture options as keywords (see ``describe_models``).

    Returns:
        The model, in training mode.

    Raises:
        ModelError: Unknown model, encoder or option; invalid values; weights unavailable.
        CheckpointError: A local weights file is missing or does not fit.
    """
    cls = get_model_class(name)
    in_channels = resolve_in_channels(in_channels, input_shape, encoder)
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ModelError(f"in_channels must be a positive int, got {in_channels!r}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(f"num_classes must be a positive int, got {num_classes!r}")
    if channel_names is not None and len(channel_names) != in_channels:
        raise ModelError(
            f"channel_names has {len(channel_names)} names but in_channels={in_channels}"
        )
    merged = dict(options or {})
    clash = sorted(set(merged) & set(architecture_options))
    if clash:
        raise ModelError(f"option(s) {clash} given both in options= and as keywords")
    merged.update(architecture_options)
    if isinstance(input_shape, Sequence) and len(input_shape) == 4:
        cls = _series_class(cls, merged)
        merged = _with_time_steps(merged, input_shape[0])
    opts = cls.Options.from_dict(merged)
    aux = validate_aux_params(aux_params, num_classes)
    if isinstance(encoder, str) and encoder.startswith("custom:"):
        raise ModelError(
            f"encoder {encoder!r} was an unregistered module instance and cannot be rebuilt by name",
            hint="register its class with geoseg.models.register_encoder and pass the name",
        )

    return build_with_weights(
        cls,
        in_channels=in_channels,
        num_classes=num_classes,
        encoder=encoder,
        options=opts,
        aux_params=aux,
        channel_names=channel_names,
        pretrained=pretrained,
    )


def _series_class(cls: type[SegmentationModel], options: Mapping[str, Any]) -> type[SegmentationModel]:
    """The class a series ``input_shape`` builds: ``cls`` with ``temporal`` set, else its series variant."""
    if not cls.Options.single_date or options.get("temporal") is not None:
        return cls
    if cls.series_variant is None:
        raise ModelError(
            f"input_shape (T, H, W, C) is a time series; {cls.name} takes one with the option temporal",
            hint=f"add temporal='attention' or temporal='channels' (valid: {', '.join(cls.Options.temporal_modes)})",
        )
    return MODELS[cls.series_variant]


def _with_time_steps(options: dict[str, Any], steps: Any) -> dict[str, Any]:
    """``options`` with ``time_steps`` from a series ``input_shape`` (T None: any)."""
    if steps is None:
        return options
    if options.get("time_steps", steps) != steps:
        raise ModelError(f"input_shape has T={steps} dates but time_steps={options['time_steps']}")
    return {**options, "time_steps": steps}


def load_model(path: str | Path) -> SegmentationModel:
    """Rebuild a model from a geoseg checkpoint alone and load its weights.

    Args:
        path: A file written by :func:`~geoseg.models.save_weights`, or a model bundle
            directory (``config.json`` + ``model.safetensors``).

    Returns:
        The model (training mode), exactly as saved.

    Raises:
        CheckpointError: Missing or unreadable file, no geoseg spec, or weights that do not
            fit the architecture the spec describes.
    """
    sd, spec = read_checkpoint(path)
    if spec is None:
        raise CheckpointError("no geoseg spec in the file metadata", path=path,
                              hint="load it with load_weights(create_model(...), path)")
    model = create_model(**{**spec, "pretrained": False})
    return load_state(model, sd, path, spec)


# `UNet(num_classes=3, in_channels=24)` and the other keyword forms build through create_model
use_registry(create_model, MODELS)
