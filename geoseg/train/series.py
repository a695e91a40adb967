"""The model input form of a training run, picked from the store: one date, or a time series.

A multi-date store (cubes ``(T, C, H, W)``) trains a series model: a 2D architecture gets the
temporal-attention front end (``temporal="attention"``, any T) unless the options ask for
dates as channels (``temporal="channels"``, ``time_steps`` filled with the store's T), and
``deeplabv3plus3d`` is natively temporal. A single-date store refuses a series model, and a
series store refuses an explicit single-date one, each in one line naming the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geoseg.errors import ConfigError

__all__ = ["series_model_options"]


def series_model_options(name: str, options: Mapping[str, Any], time_steps: int | None,
                         store: str | Path | None = None) -> dict[str, Any]:
    """Architecture options of model ``name`` for a store with ``time_steps`` dates (None: one date).

    Args:
        name: Registered architecture.
        options: The run's architecture options (``temporal``/``time_steps`` may be set).
        time_steps: The store's dates per cube, or None for a single-date store.
        store: The store's path (named by errors).

    Returns:
        ``options`` with ``temporal`` (and ``time_steps`` for dates as channels) set for a series store.

    Raises:
        ConfigError: A series model on a single-date store, or options that contradict the store's T.
    """
    from geoseg.models import get_model_class

    cls = get_model_class(name)
    opts = dict(options)
    temporal = opts.get("temporal")
    path = Path(store) if store is not None else None
    if time_steps is None:
        if temporal is not None or not cls.Options.single_date:
            raise ConfigError(
                f"{name} (temporal={temporal or cls.Options.temporal_modes[0]!r}) needs a time-series store, "
                "but the CubeStore has one date per cube", path=path,
                hint="tile a catalog dataset with series scenes (time_steps), or train a 2D model without "
                     "the temporal option")
        return opts
    if temporal is None:
        temporal = "attention" if cls.Options.single_date else cls.Options.temporal_modes[0]
        opts["temporal"] = temporal
    if temporal == "channels":
        if opts.setdefault("time_steps", time_steps) != time_steps:
            raise ConfigError(f"time_steps={opts['time_steps']} but the CubeStore has {time_steps} dates per cube",
                              path=path, hint=f"drop the time_steps option (dates as channels takes the "
                                              f"store's T={time_steps})")
    elif opts.get("time_steps") not in (None, time_steps):
        raise ConfigError(f"time_steps={opts['time_steps']} but the CubeStore has {time_steps} dates per cube",
                          path=path, hint="drop the time_steps option")
    return opts
