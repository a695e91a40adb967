"""The base models of every options object and config file: unknown keys refused, one-line errors.

They sit below every stage (a stage's options model, the reader's :class:`~geoseg.io.SceneOptions`
as much as the pipeline's steps derive from them); reading YAML files with them is
:mod:`geoseg.config.schema`'s.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from geoseg.errors import ConfigError
from geoseg.utils.closest import did_you_mean

__all__ = ["StrictModel", "OptionsModel", "with_overrides", "in_file"]

# set while a config file is validated: nested options models then report the key's location
_IN_FILE: ContextVar[bool] = ContextVar("geoseg_in_file", default=False)
OptionsT = TypeVar("OptionsT", bound="OptionsModel")


@contextmanager
def in_file() -> Iterator[None]:
    """While a file is validated, options models raise pydantic's error (the file's reader names the key)."""
    token = _IN_FILE.set(True)
    try:
        yield
    finally:
        _IN_FILE.reset(token)


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class OptionsModel(StrictModel):
    """Base of a stage's options given from Python: frozen, validated when constructed.

    A validator states a rule by raising :class:`ConfigError` with the user-facing message
    (the CLI's words, e.g. ``--min-valid``); that error is raised as is. Other failures (an
    unknown option, a wrong type) become one ConfigError naming the option.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            if _IN_FILE.get():  # part of a config file: its reader names the key in the file
                raise
            raise _options_error(err, type(self)) from None


def with_overrides(options: OptionsT, overrides: Mapping[str, Any]) -> OptionsT:
    """``options`` with single ``overrides`` applied, validated again (an unknown name is refused)."""
    if not overrides:
        return options
    return type(options)(**{**{k: getattr(options, k) for k in type(options).model_fields}, **overrides})


def _options_error(err: ValidationError, model: type[BaseModel]) -> ConfigError:
    for e in err.errors():
        cause = (e.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigError):
            return cause
    first = next((e for e in err.errors() if e["type"] == "extra_forbidden"), err.errors()[0])
    where = ".".join(str(p) for p in first["loc"]) or model.__name__
    if first["type"] == "extra_forbidden":
        return ConfigError(f"unknown option {where!r} of {model.__name__}",
                           hint=did_you_mean(where, list(model.model_fields)))
    message = first["msg"].removeprefix("Value error, ")
    return ConfigError(f"{model.__name__} option {where}: {message}" if first["loc"] else f"{model.__name__}: {message}")
