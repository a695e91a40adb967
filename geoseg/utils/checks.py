"""Checks of numeric arguments of the Python API (the CLI checks the same values with click types).

A bad value raises a one-line :class:`~geoseg.errors.ConfigError` naming the argument, before
any file is read or written, instead of a ``ZeroDivisionError`` deep inside or a silently
wrong result (a NaN offset turns every pixel into NaN).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from numbers import Integral, Real
from typing import Annotated, Literal

from pydantic import AfterValidator

from geoseg.errors import ConfigError

__all__ = ["check_number", "check_scene_options", "check_device_name", "DEVICE_HINT", "DeviceName", "EngineName"]

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
EngineName = Literal["auto", "torch", "onnxruntime"]  # geoseg.bundle.engines
"""A validated device name for options models (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``)."""


def check_number(name: str, value: object, *, min: float | None = None, max: float | None = None,
                 min_open: bool = False, integer: bool = False, hint: str | None = None) -> None:
    """Raise ConfigError unless ``value`` is a finite number (an integer if ``integer``) in the range."""
    ok_type = isinstance(value, Integral) if integer else isinstance(value, Real)
    if isinstance(value, bool) or not ok_type:
        raise ConfigError(f"{name} {value!r} is not {'an integer' if integer else 'a number'}", hint=hint)
    if not math.isfinite(float(value)):  # type: ignore[arg-type]
        raise ConfigError(f"{name} {value} is not a finite number", hint=hint)
    if min is not None and (value <= min if min_open else value < min):  # type: ignore[operator]
        raise ConfigError(f"{name} {value} must be {'>' if min_open else '>='} {min:g}", hint=hint)
    if max is not None and value > max:  # type: ignore[operator]
        raise ConfigError(f"{name} {value} must be <= {max:g}", hint=hint)


def check_scene_options(resolution: float, offset: float | None, invalid_scl: Iterable[int]) -> None:
    """The options of :func:`geoseg.io.open_scene`: a positive resolution, a finite offset, SCL classes 0–11."""
    check_number("resolution", resolution, min=0, min_open=True, hint="the grid resolution in metres, e.g. 10")
    if offset is not None:
        check_number("offset", offset, min=-10000, max=10000, hint="a DN offset such as -1000 or 0")
    for c in invalid_scl:
        check_number("invalid_scl class", c, min=0, max=11, integer=True, hint="SCL classes are integers 0–11")
