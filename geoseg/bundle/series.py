"""The input form a bundle's model takes (one date, or a series of T dates), checked before any work."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from geoseg.errors import ConfigError

__all__ = ["check_series_input"]


def check_series_input(model_spec: Mapping[str, Any] | BaseModel, dates: int | None, path: str | Path | None,
                       what: str = "the CubeStore") -> None:
    """Refuse input with the wrong form for a bundle's model (one line naming the fix).

    Args:
        model_spec: The bundle's ``model`` spec (its ``options`` hold ``temporal``/``time_steps``).
        dates: Dates of the input (a series store's T, the number of ``--scene`` of a series),
            None for single-date input.
        path: The input named by the error.
        what: How the error names the input.

    Raises:
        ConfigError: A single-date model on a series, a series model on one date, or a dates-as-channels
            model given another number of dates than it was trained with.
    """
    if not isinstance(model_spec, Mapping):  # a bundle's typed ModelSpec
        model_spec = model_spec.model_dump()
    options = model_spec.get("options") or {}
    temporal, steps = options.get("temporal"), options.get("time_steps")
    name = model_spec.get("name", "the model")
    where = Path(path) if path is not None else None
    if temporal is None and dates is not None:
        raise ConfigError(f"{name} takes one date but {what} is a time series of {dates} dates", path=where,
                          hint="give it single-date input, or train a series model (geoseg train on a series store)")
    if temporal is not None and dates is None:
        raise ConfigError(f"{name} (temporal={temporal!r}) takes a time series but {what} has one date", path=where,
                          hint="give it a series (a series store; geoseg predict --series with one --scene per date)")
    if temporal == "channels" and steps is not None and dates != steps:
        raise ConfigError(f"{name} (dates as channels) needs exactly {steps} dates, {what} has {dates}", path=where,
                          hint=f"give it {steps} dates (temporal='attention' or deeplabv3plus3d take any number)")
