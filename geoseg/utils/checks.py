"""Device and engine names of the options models (checked before torch loads).

Numbers are bounded by the options models themselves (``Field(gt=0, ...)``), which the CLI's
click types are generated from; what a type cannot say is checked here.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator

__all__ = ["check_device_name", "DEVICE_HINT", "DeviceName", "EngineName"]

_DEVICE_NAME = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DEVICE_HINT = "use auto, cpu, cuda, cuda:N or mps"


def check_device_name(name: str) -> str:
    """``name`` (lower-cased) if it is ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    The one rule for device names: the CLI's ``--device`` type and the bundle layer's
    ``DeviceName`` both call it (this module imports no torch, so the CLI checks before torch loads).

    Raises:
        ValueError: any other name (pydantic turns it into a one-line ConfigError).
    """
    text = str(name).strip().lower()
    if not _DEVICE_NAME.match(text):
        raise ValueError(f"unknown device {name!r}; {DEVICE_HINT}")
    return text


DeviceName = Annotated[str, AfterValidator(check_device_name)]
"""A validated device name for options models (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``)."""
EngineName = Literal["auto", "torch", "torch-bf16", "onnxruntime"]
"""An inference engine (:mod:`geoseg.bundle.engines`)."""
