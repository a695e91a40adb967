"""The one device-and-precision policy of inference (evaluate, predict, export).

* :func:`resolve_device`: ``auto`` → CUDA when available, else the CPU; asking for a device
  that is not there (``cuda`` without a GPU, ``cuda:3`` on a 2-GPU machine, ``mps`` off a
  Mac) is a one-line :class:`~geoseg.errors.ConfigError`, never a traceback.
* :func:`resolve_precision`: reduced precision is float16 autocast on CUDA. On the CPU a
  caller chooses what ``fp16`` means: ``float32`` (the predictor: its ``fp16`` defaults to
  on and targets GPUs) or ``bfloat16`` (``geoseg evaluate --fp16``, documented as such).
* :func:`autocast`: the autocast context of a precision on a device.

Training's accelerator and mixed-precision choices are Lightning's
(:func:`geoseg.train.resolve_hardware`).
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

from geoseg.errors import ConfigError
from geoseg.utils.checks import DEVICE_HINT as _HINT
from geoseg.utils.checks import DeviceName, check_device_name

__all__ = ["Device", "DeviceName", "Precision", "autocast", "check_device_name", "resolve_device",
           "resolve_precision"]

Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["float32", "float16", "bfloat16"]


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` → CUDA when available, else CPU; a device that is not there is an error.

    Raises:
        ConfigError: unknown device name, or CUDA (or MPS) requested but not available.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    try:
        name = check_device_name(name)
    except ValueError:
        raise ConfigError(f"unknown device {device!r}", hint=_HINT) from None
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was requested but no CUDA GPU is available",
                              hint="use --device auto or --device cpu")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)",
                              hint="use --device cuda (the first GPU) or a smaller index")
        return torch.device(name)
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        raise ConfigError("--device mps was requested but MPS (Apple GPU) is not available",
                          hint="use --device auto or --device cpu")
    return torch.device("mps")


def resolve_precision(device: torch.device, fp16: bool,
                      cpu: Literal["float32", "bfloat16"] = "float32") -> Precision:
    """What ``fp16`` means on ``device``: float16 on CUDA, ``cpu`` elsewhere, float32 when off."""
    if not fp16:
        return "float32"
    return "float16" if device.type == "cuda" else cpu


def autocast(device: torch.device, precision: Precision):
    """The autocast context of ``precision`` on ``device`` (a no-op for float32)."""
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, precision))
