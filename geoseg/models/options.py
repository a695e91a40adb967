"""Typed architecture options: frozen pydantic models that reject unknown keys and wrong types.

Each architecture declares an options model, a subclass of :class:`ArchOptions` with typed
fields and defaults; every field carries a help text (:func:`opt`), which
``describe_models()`` and ``geoseg models`` show. Cross-field rules are pydantic
``@model_validator(mode="after")`` methods raising :class:`~geoseg.errors.ModelError`::

    class MyOptions(ArchOptions):
        architecture: ClassVar[str] = "mynet"
        width: int = opt(64, "channels of the decoder")

        @model_validator(mode="after")
        def _check_width(self) -> Self:
            if self.width < 1:
                raise ModelError(f"mynet.width must be positive, got {self.width}")
            return self

Values are checked strictly (no ``"5"`` for an int, no ``True`` for a number); JSON lists
are accepted for tuple fields.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from geoseg.errors import ModelError
from geoseg.utils.closest import suggestion
from geoseg.validity import DEFAULT_MASK_CHANNELS

__all__ = ["ArchOptions", "opt"]


def opt(default: Any, help: str) -> Any:  # noqa: A002 - "help" mirrors argparse/click
    """A field with a default and a help text."""
    return Field(default=default, description=help)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"tuple[{_type_name(typing.get_args(tp)[0])}, ...]"
    return "None" if tp is type(None) else getattr(tp, "__name__", str(tp))


class ArchOptions(BaseModel):
    """Options every architecture accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

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

    def __init__(self, **values: Any) -> None:
        """Validate ``values``.

        Raises:
            ModelError: Unknown option (with the closest valid name) or invalid value.
        """
        try:
            super().__init__(**values)
        except ValidationError as err:
            raise type(self)._error(err, values) from None

    @model_validator(mode="before")
    @classmethod
    def _lists_as_tuples(cls, values: Any) -> Any:
        # JSON has no tuples; an empty list is never a valid option (left a list, it is refused)
        if not isinstance(values, Mapping):
            return values
        return {k: tuple(v) if isinstance(v, list | tuple) and v else v for k, v in values.items()}

    @model_validator(mode="after")
    def _check_depth(self) -> Self:
        if not 1 <= self.encoder_depth <= 5:
            raise ModelError(f"{self.architecture}.encoder_depth must be in 1..5, got {self.encoder_depth}")
        return self

    @model_validator(mode="after")
    def _check_series(self) -> Self:
        """An unknown ``temporal`` mode names the valid ones; ``channels`` needs ``time_steps``."""
        if not (self.temporal in self.temporal_modes or (self.temporal is None and self.single_date)):
            valid = [repr(m) for m in self.temporal_modes] + (["None (one date)"] if self.single_date else [])
            raise ModelError(
                f"unknown temporal mode {self.temporal!r} for architecture {self.architecture!r}; "
                f"valid modes are {', '.join(valid)}",
                hint=suggestion(str(self.temporal), self.temporal_modes),
            )
        if self.mask_channels < 1 or (self.time_steps is not None and self.time_steps < 1):
            raise ModelError(f"{self.architecture}.mask_channels and time_steps must be positive, "
                             f"got {self.mask_channels} and {self.time_steps}")
        if self.temporal == "channels" and self.time_steps is None:
            raise ModelError(f"{self.architecture}: temporal='channels' needs time_steps (the T of T x C "
                             "input channels)", hint="pass time_steps=T, e.g. time_steps=6")
        return self

    @classmethod
    def _error(cls, err: ValidationError, values: Mapping[str, Any]) -> ModelError:
        """The one-line ModelError for ``err``: a rule's own error, an unknown option or a bad value."""
        problems = err.errors()
        for problem in problems:
            cause = (problem.get("ctx") or {}).get("error")
            if isinstance(cause, ModelError):
                return cause
        names = list(cls.model_fields)
        unknown = [str(p["loc"][0]) for p in problems if p["type"] == "extra_forbidden"]
        if unknown:
            return ModelError(
                f"unknown option {unknown[0]!r} for architecture {cls.architecture!r}; "
                f"valid options are {sorted(names)}",
                hint=suggestion(unknown[0], names),
            )
        name = str(problems[0]["loc"][0])
        tp = cls.model_fields[name].annotation
        where, value = f"{cls.architecture}.{name}", values.get(name)
        if typing.get_origin(tp) in (Union, types.UnionType):
            return ModelError(f"{where}: {value!r} does not match {_type_name(tp)}")
        return ModelError(f"{where}: expected {_type_name(tp)}, got {value!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Self:
        """Build from a mapping, refusing unknown keys with the closest valid name.

        Raises:
            ModelError: Unknown option or invalid value.
        """
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        return self.model_dump(mode="json")

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """Name, type, default and help of every option."""
        return [
            {"name": name, "type": _type_name(f.annotation), "default": f.default, "help": f.description or ""}
            for name, f in cls.model_fields.items()
        ]
