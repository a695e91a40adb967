"""Typed YAML configs: pydantic models that reject unknown keys with a helpful one-line error."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from geoseg.errors import ConfigError, MissingFileError
from geoseg.utils.closest import did_you_mean

__all__ = ["StrictModel", "OptionsModel", "load_yaml", "validate", "format_validation_error"]

M = TypeVar("M", bound=BaseModel)


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
            raise _options_error(err, type(self)) from None


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
    return ConfigError(f"{model.__name__} option {where}: {first['msg']}")


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The valid field names of the sub-model reached by ``loc`` (best effort)."""
    current: Any = model
    for part in loc[:-1]:
        # Descend into fields; dict keys and list indices keep the current (item) model.
        if isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = _innermost_model(current.model_fields[part].annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _innermost_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _innermost_model(arg)
        if found is not None:
            return found
    return None


def format_validation_error(err: ValidationError, model: type[BaseModel], source: str) -> ConfigError:
    """The ConfigError for a pydantic error: the first problem, named by its key in ``source``."""
    # an unknown key explains more than the "field required" it often causes (a misspelt key)
    first = next((e for e in err.errors() if e["type"] == "extra_forbidden"), err.errors()[0])
    loc = tuple(first["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        hint = did_you_mean(str(loc[-1]), _fields_at(model, loc))
        return ConfigError(f"unknown key {where!r}", path=source, hint=hint)
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return ConfigError(f"{where}: {first['msg']}{more}", path=source, hint="fix the value in this file")


def validate(model: type[M], data: Any, source: str) -> M:
    """Validate ``data`` against ``model``; errors become one-line ConfigErrors naming ``source``."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise format_validation_error(err, model, source) from None


def load_yaml(path: str | Path, model: type[M]) -> M:
    """Read and validate a YAML file."""
    p = Path(path)
    if not p.is_file():
        raise MissingFileError("config file does not exist", path=p, hint="check the path")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{where}", path=p, hint="fix the YAML syntax") from None
    return validate(model, data, str(p))
