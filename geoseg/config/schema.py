"""Typed YAML configs: pydantic models that reject unknown keys with a helpful one-line error.

The base models (:class:`StrictModel`, :class:`OptionsModel`) live in :mod:`geoseg.utils.options`
(below every stage) and are re-exported here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from geoseg.errors import ConfigError, MissingFileError
from geoseg.utils.closest import did_you_mean
from geoseg.utils.options import OptionsModel, StrictModel, in_file, with_overrides

__all__ = ["StrictModel", "OptionsModel", "with_overrides", "load_yaml", "read_yaml", "validate", "format_validation_error"]

M = TypeVar("M", bound=BaseModel)


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The valid field names of the sub-model reached by ``loc`` (best effort)."""
    current: Any = model
    for part in loc[:-1]:
        # Descend into fields; dict keys and list indices keep the current (item) model.
        if isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = _innermost_model(current.model_fields[part].annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        refused = set(getattr(current, "MANAGED", ()))  # set by a runner, never in a file
        return [f for f in current.model_fields if f not in refused]
    return []


def _innermost_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _innermost_model(arg)
        if found is not None:
            return found
    return None


def _as_keys(err: ConfigError, loc: tuple[Any, ...], fields: list[str]) -> str:
    """``err``'s message with its flags (``--cube-size``) as the file's keys (``steps.tile.cube_size``)."""
    prefix = ".".join(str(p) for p in loc)

    def key(match: re.Match[str]) -> str:
        name = match.group(1).replace("-", "_")
        return ".".join(filter(None, (prefix, name))) if name in fields else match.group(0)

    text = re.sub(r"--([a-z][a-z0-9-]*)", key, err.message)
    return text if text != err.message else ": ".join(filter(None, (prefix, text)))


def format_validation_error(err: ValidationError, model: type[BaseModel], source: str) -> ConfigError:
    """The ConfigError for a pydantic error: the first problem, named by its key in ``source``."""
    # an unknown key explains more than the "field required" it often causes (a misspelt key)
    first = next((e for e in err.errors() if e["type"] == "extra_forbidden"), err.errors()[0])
    loc = tuple(first["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        hint = did_you_mean(str(loc[-1]), _fields_at(model, loc))
        return ConfigError(f"unknown key {where!r}", path=source, hint=hint)
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):  # a stage's own rule, in the CLI's words: name the file's keys instead
        return ConfigError(_as_keys(cause, loc, _fields_at(model, (*loc, ""))), path=source)
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    message = first["msg"].removeprefix("Value error, ")
    return ConfigError(f"{where}: {message}{more}", path=source, hint="fix the value in this file")


def validate(model: type[M], data: Any, source: str) -> M:
    """Validate ``data`` against ``model``; errors become one-line ConfigErrors naming ``source``."""
    try:
        with in_file():
            return model.model_validate(data)
    except ValidationError as err:
        raise format_validation_error(err, model, source) from None


def read_yaml(path: str | Path) -> Any:
    """The content of a YAML file (``{}`` when empty); a missing file or bad syntax is a one-line error."""
    p = Path(path)
    if not p.is_file():
        raise MissingFileError("config file does not exist", path=p, hint="check the path")
    try:
        return yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{where}", path=p, hint="fix the YAML syntax") from None


def load_yaml(path: str | Path, model: type[M]) -> M:
    """Read and validate a YAML file."""
    return validate(model, read_yaml(path), str(path))
