"""Typed architecture options: frozen dataclasses that reject unknown keys and wrong types.

Each architecture declares an options dataclass (subclass of :class:`ArchOptions`); every
field carries a ``help`` text in its metadata, which ``describe_models()`` and
``geoseg models`` show. JSON lists are accepted for tuple fields.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypeVar, Union

from geoseg.errors import ModelError
from geoseg.utils.closest import suggestion
from geoseg.validity import DEFAULT_MASK_CHANNELS

__all__ = ["ArchOptions", "opt"]

T = TypeVar("T", bound="ArchOptions")


def opt(default: Any, help: str) -> Any:  # noqa: A002 - "help" mirrors argparse/click
    """A dataclass field with a default and a help text."""
    return dataclasses.field(default=default, metadata={"help": help})


def _check(value: Any, tp: Any, where: str) -> Any:
    """Return ``value`` coerced to ``tp`` (lists → tuples) or raise ModelError."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arm in typing.get_args(tp):
            try:
                return _check(value, arm, where)
            except ModelError:
                continue
        raise ModelError(f"{where}: {value!r} does not match {_type_name(tp)}")
    if origin is Literal:
        ok = value in typing.get_args(tp)
    elif origin is tuple:
        item_tp = typing.get_args(tp)[0]
        if isinstance(value, list | tuple) and value:
            return tuple(_check(v, item_tp, where) for v in value)
        ok = False
    elif tp is type(None):
        ok = value is None
    elif tp in (int, float):  # bool is not a number here
        ok = isinstance(value, int | float if tp is float else int) and not isinstance(value, bool)
        value = float(value) if ok and tp is float else value
    else:
        ok = isinstance(value, tp)
    if ok:
        return value
    raise ModelError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"tuple[{_type_name(typing.get_args(tp)[0])}, ...]"
    return "None" if tp is type(None) else getattr(tp, "__name__", str(tp))


@dataclasses.dataclass(frozen=True)
class ArchOptions:
    """Options every architecture accepts."""

    architecture: ClassVar[str] = "model"
    #: The series modes ``temporal`` accepts (a 2D architecture: both series front ends).
    temporal_modes: ClassVar[tuple[str, ...]] = ("channels", "attention")
    #: ``temporal=None`` (one date, input (N, C, H, W)) is accepted.
    single_date: ClassVar[bool] = True

    encoder_depth: int = opt(5, "deepest encoder level used (P_depth, stride 2**depth)")
    freeze_backbone: bool = opt(False, "freeze encoder weights and BatchNorm statistics")
    temporal: str | None = opt(
        None, "time series (N, T, C, H, W): 'channels' (dates as T*C input channels, needs time_steps) "
        "or 'attention' (shared encoder per date, attention over dates per level); None: one date")
    time_steps: int | None = opt(None, "dates T of a series (None: any T; 'channels' needs it)")
    mask_channels: int = opt(DEFAULT_MASK_CHANNELS, "leading channels that define a valid (non-zero) pixel "
                             "of a date (training sets it from the recipe's num_mask_channels)")

    def __post_init__(self) -> None:
        self._check_temporal()
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = _check(getattr(self, f.name), hints[f.name], f"{self.architecture}.{f.name}")
            object.__setattr__(self, f.name, value)
        if not 1 <= self.encoder_depth <= 5:
            raise ModelError(f"{self.architecture}.encoder_depth must be in 1..5, got {self.encoder_depth}")
        if self.mask_channels < 1 or (self.time_steps is not None and self.time_steps < 1):
            raise ModelError(f"{self.architecture}.mask_channels and time_steps must be positive, "
                             f"got {self.mask_channels} and {self.time_steps}")
        if self.temporal == "channels" and self.time_steps is None:
            raise ModelError(f"{self.architecture}: temporal='channels' needs time_steps (the T of T x C "
                             "input channels)", hint="pass time_steps=T, e.g. time_steps=6")
        self.validate()

    def _check_temporal(self) -> None:
        """An unknown ``temporal`` mode names the valid ones and the closest match."""
        if self.temporal in self.temporal_modes or (self.temporal is None and self.single_date):
            return
        valid = [repr(m) for m in self.temporal_modes] + (["None (one date)"] if self.single_date else [])
        raise ModelError(
            f"unknown temporal mode {self.temporal!r} for architecture {self.architecture!r}; "
            f"valid modes are {', '.join(valid)}",
            hint=suggestion(str(self.temporal), self.temporal_modes),
        )

    def validate(self) -> None:
        """Cross-field checks of a subclass (raise ModelError)."""

    @classmethod
    def from_dict(cls: type[T], values: Mapping[str, Any]) -> T:
        """Build from a mapping, refusing unknown keys with the closest valid name.

        Raises:
            ModelError: Unknown option or invalid value.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in names:
                raise ModelError(
                    f"unknown option {key!r} for architecture {cls.architecture!r}; "
                    f"valid options are {sorted(names)}",
                    hint=suggestion(key, names),
                )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in dataclasses.fields(self)
        }

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """Name, type, default and help of every option."""
        hints = typing.get_type_hints(cls)
        return [
            {
                "name": f.name,
                "type": _type_name(hints[f.name]),
                "default": f.default,
                "help": f.metadata.get("help", ""),
            }
            for f in dataclasses.fields(cls)
        ]
