"""Heads and small building blocks shared by the decoders.

The aux classification head follows segmentation_models_pytorch: global pooling
(``avg``/``max``) → dropout → linear → optional activation, on the deepest encoder feature.
Its layers are smp's :class:`~segmentation_models_pytorch.base.ClassificationHead`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from segmentation_models_pytorch.base import ClassificationHead
from segmentation_models_pytorch.base.modules import SCSEModule
from torch import Tensor, nn

from geoseg.errors import ModelError
from geoseg.utils.closest import suggestion

__all__ = [
    "AUX_PARAM_DEFAULTS",
    "ConvBNReLU",
    "scse",
    "resize",
    "SegmentationHead",
    "build_classification_head",
    "validate_aux_params",
]

AUX_PARAM_DEFAULTS: dict[str, Any] = {
    "classes": None,  # None -> num_classes of the model
    "pooling": "avg",
    "dropout": None,
    "activation": None,
}
_ACTIVATIONS = (None, "identity", "sigmoid", "softmax", "logsoftmax", "softmax2d", "tanh")


class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias) → BatchNorm2d → ReLU.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size (padding keeps the spatial size).
        dilation: Dilation of the convolution.
        separable: Depthwise-separable convolution (depthwise k×k then pointwise 1×1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        dilation: int = 1,
        separable: bool = False,
    ) -> None:
        pad = dilation * (kernel_size // 2)
        if separable and kernel_size > 1:
            conv: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, in_channels, kernel_size, padding=pad, dilation=dilation,
                          groups=in_channels, bias=False),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
            )
        else:
            conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=pad,
                             dilation=dilation, bias=False)
        super().__init__(conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def scse(channels: int) -> nn.Module:
    """smp's concurrent spatial and channel squeeze & excitation block (reduction 16)."""
    return SCSEModule(channels, reduction=16 if channels >= 16 else channels)


def resize(x: Tensor, size: tuple[int, int] | Any) -> Tensor:
    """Bilinear resize to ``size`` (no-op when the size already matches)."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class SegmentationHead(nn.Module):
    """Convolution from decoder channels to class logits (resolution unchanged).

    Args:
        in_channels: Decoder output channels.
        num_classes: Number of classes K.
        kernel_size: Kernel size of the classifier convolution.
        dropout: Dropout probability before the classifier (0 disables).
    """

    def __init__(self, in_channels: int, num_classes: int, kernel_size: int = 3, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout2d(dropout) if dropout else nn.Identity()
        self.conv = nn.Conv2d(in_channels, num_classes, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        """Return logits (N, K, h, w) at the resolution of ``x``."""
        return self.conv(self.dropout(x))


def validate_aux_params(aux_params: Mapping[str, Any] | None, num_classes: int) -> dict[str, Any] | None:
    """Check ``aux_params`` and fill defaults (``classes`` defaults to ``num_classes``).

    Raises:
        ModelError: Unknown key or invalid value.
    """
    if aux_params is None:
        return None
    if not isinstance(aux_params, Mapping):
        raise ModelError(f"aux_params must be a dict or None, got {type(aux_params).__name__}")
    unknown = sorted(set(aux_params) - set(AUX_PARAM_DEFAULTS))
    if unknown:
        raise ModelError(
            f"unknown aux_params key(s) {unknown}; valid keys are {sorted(AUX_PARAM_DEFAULTS)}",
            hint=suggestion(str(unknown[0]), AUX_PARAM_DEFAULTS),
        )
    params = {**AUX_PARAM_DEFAULTS, **aux_params}
    if params["classes"] is None:
        params["classes"] = num_classes
    if not isinstance(params["classes"], int) or params["classes"] < 1:
        raise ModelError(f"aux_params['classes'] must be a positive int, got {params['classes']!r}")
    if params["pooling"] not in ("avg", "max"):
        raise ModelError(f"aux_params['pooling'] must be 'avg' or 'max', got {params['pooling']!r}")
    dropout = params["dropout"]
    if dropout is not None and not (isinstance(dropout, int | float) and 0 <= dropout < 1):
        raise ModelError(f"aux_params['dropout'] must be None or in [0, 1), got {dropout!r}")
    if params["activation"] not in _ACTIVATIONS:
        raise ModelError(
            f"aux_params['activation'] must be one of {_ACTIVATIONS}, got {params['activation']!r}"
        )
    return params


def build_classification_head(in_channels: int, params: Mapping[str, Any]) -> nn.Module:
    """The aux classification head for validated ``params`` (see :func:`validate_aux_params`)."""
    return ClassificationHead(
        in_channels=in_channels,
        classes=params["classes"],
        pooling=params["pooling"],
        dropout=params["dropout"],
        activation=params["activation"],
    )
