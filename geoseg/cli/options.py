"""Click options generated from a stage's options model: one declaration per option.

A stage declares its options once, as a pydantic model (:class:`~geoseg.tiling.TileOptions`,
:class:`~geoseg.train.TrainConfig`, :class:`~geoseg.predict.PredictOptions`,
:class:`~geoseg.train.EvaluateOptions`): name, type, bounds, default and description. The
command builds its click options from that model with :func:`options_from`: ``--kebab-name``,
a ``click.Choice`` for a ``Literal``, ``--x/--no-x`` for a bool, a range-checked
:class:`~geoseg.cli.types.Int`/:class:`~geoseg.cli.types.Float` from the field's bounds (an
:class:`~geoseg.cli.types.IntList` for a tuple of bounded ints, e.g. SCL classes), and
the description with the model's default as help; the field's own spelling
(``--batch_size``) works too, unlisted. Every generated option defaults to
``None`` (not given), so the model's default is the only default and a YAML config can be
overridden by exactly the flags the user typed. :func:`given` turns the command's keyword
arguments back into the model's fields.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

import annotated_types as at
import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from geoseg.cli.types import Float, Int, IntList

__all__ = ["Flag", "AliasOption", "options_from", "given", "option_fields"]

F = TypeVar("F", bound=Callable[..., Any])

_FIELDS_ATTR = "__geoseg_option_fields__"


@dataclass(frozen=True)
class Flag:
    """How one field appears on the command line when the generated form is not enough.

    Attributes:
        aliases: more names for the option (``"-o"``, ``"--architecture"``).
        type: a click type replacing the generated one (e.g. ``Devices()``).
        help: replaces the field's description.
        hint: the example shown with a range error (default ``e.g. --name DEFAULT``).
        is_flag: a bool given only as ``--name`` (no ``--no-name``).
        required: the option must be given.
        snake: also answer to the field's own spelling (``--batch_size``); False when a command
            gives that spelling another form.
    """

    aliases: tuple[str, ...] = ()
    type: click.ParamType | None = None
    help: str | None = None
    hint: str | None = None
    is_flag: bool = False
    required: bool = False
    snake: bool = True


def _without_none(annotation: Any) -> Any:
    """``X | None`` → ``X`` (other unions are returned unchanged)."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        arms = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(arms) == 1:
            return arms[0]
    return annotation


def _bounds(metadata: Iterable[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, at.Ge):
            out.update(min=item.ge)
        elif isinstance(item, at.Gt):
            out.update(min=item.gt, min_open=True)
        elif isinstance(item, at.Le):
            out.update(max=item.le)
        elif isinstance(item, at.Lt):
            out.update(max=item.lt, max_open=True)
    return out


def _default_text(info: FieldInfo) -> str | None:
    if info.default_factory is not None or info.default is None or info.is_required():
        return None
    value = info.default
    if isinstance(value, bool):
        return None  # shown by the --x/--no-x pair
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _click_type(name: str, info: FieldInfo, flag: Flag) -> click.ParamType | type | None:
    """The click type of a field (None for a bool flag)."""
    if flag.type is not None:
        return flag.type
    annotation = _plain(_without_none(info.annotation))
    origin = typing.get_origin(annotation)
    option = "--" + name.replace("_", "-")
    example = _default_text(info)
    if annotation is bool:
        return None
    if origin is Literal:
        return click.Choice([str(a) for a in typing.get_args(annotation)])
    if origin is tuple and typing.get_args(annotation)[1:] == (Ellipsis,):
        return _int_list(name, typing.get_args(annotation)[0], flag.hint or f"e.g. {option} {example or '1,2'}")
    if annotation in (int, float):
        bounds = _bounds(info.metadata)
        if example is None:
            example = str(bounds.get("min", 1))
        hint = flag.hint or f"e.g. {option} {example}"
        if not bounds and annotation is int:
            return click.INT
        return (Int if annotation is int else Float)(**bounds, hint=hint)
    if annotation is Path:
        return click.Path(path_type=Path)
    if annotation is str:
        return click.STRING
    raise TypeError(f"option {name}: no click type for {annotation!r}; give Flag(type=...)")


def _plain(annotation: Any) -> Any:
    """``Annotated[X, ...]`` → ``X`` (validators and constraints stay with the model)."""
    return typing.get_args(annotation)[0] if typing.get_origin(annotation) is Annotated else annotation


def _int_list(name: str, item: Any, hint: str) -> IntList:
    """``tuple[Annotated[int, Field(ge=a, le=b, description=noun)], ...]`` → a comma-separated ``IntList(a, b)``."""
    infos = [m for m in typing.get_args(item)[1:] if isinstance(m, FieldInfo)] if _plain(item) is not item else []
    bounds = _bounds(m for info in infos for m in info.metadata)
    if _plain(item) is not int or "min" not in bounds or "max" not in bounds or bounds.get("min_open") \
            or bounds.get("max_open"):
        raise TypeError(f"option {name}: a tuple option needs int items with ge and le bounds; give Flag(type=...)")
    noun = next((info.description for info in infos if info.description), "value")
    return IntList(bounds["min"], bounds["max"], what=noun, hint=hint)


class _Option(click.Option):
    """A generated option: also answers to its field's spelling (``--batch_size``), not shown in help."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown, secondary = self.opts, self.secondary_opts
        self.opts = [o for o in shown if "_" not in o]
        self.secondary_opts = [o for o in secondary if "_" not in o]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts, self.secondary_opts = shown, secondary


AliasOption = _Option
"""``cls=`` of a hand-declared click option whose ``_`` spellings (a script's ``--save_path``) stay out of help."""


def _option(name: str, info: FieldInfo, flag: Flag) -> click.Option:
    kebab = "--" + name.replace("_", "-")
    snake = [f"--{name}"] if "_" in name and flag.snake else []  # Python, YAML and many research scripts spell it so
    annotation = _without_none(info.annotation)
    text = flag.help or (info.description or "").rstrip(".")
    default = _default_text(info)
    if default is not None and "[" not in text:
        text = f"{text} [{default}]" if text else f"[{default}]"
    first = text.split(" ", 1)[0]
    if not any(c in first for c in ".:_"):  # not a value or code ("auto:", "torch.compile")
        text = text[:1].upper() + text[1:]
    click_type = _click_type(name, info, flag)
    if annotation is bool and flag.type is None:
        if flag.is_flag:
            names = [kebab, *snake, *flag.aliases]
        else:
            names = [f"{kebab}/--no-{kebab[2:]}", *(f"{s}/--no_{name}" for s in snake), *flag.aliases]
        option = _Option([*names, name], is_flag=True, default=None, help=text, required=flag.required)
        if not flag.is_flag and not snake:
            option.secondary_opts.append(f"--no_{name}")  # --no_progress, as --no_pretrained in scripts
        return option
    return _Option([kebab, *snake, *flag.aliases, name], type=click_type, default=None, help=text,
                   required=flag.required)


def options_from(model: type[BaseModel], *, exclude: Collection[str] = (),
                 flags: Mapping[str, Flag] | None = None) -> Callable[[F], F]:
    """Decorate a click command with one option per field of ``model`` (except ``exclude``).

    Options appear in the model's field order, after the options declared by hand above
    the decorator. ``flags`` adjusts single fields.

    Raises:
        KeyError: ``exclude`` or ``flags`` names a field the model does not have (a
            renamed field cannot silently drop its option).
    """
    flags = dict(flags or {})
    unknown = (set(exclude) | set(flags)) - set(model.model_fields)
    if unknown:
        raise KeyError(f"{model.__name__} has no field(s) {sorted(unknown)}")
    names = [n for n in model.model_fields if n not in exclude]

    def decorate(command: F) -> F:
        for name in reversed(names):
            params = command.__dict__.setdefault("__click_params__", [])
            params.append(_option(name, model.model_fields[name], flags.get(name, Flag())))
        setattr(command, _FIELDS_ATTR, (*getattr(command, _FIELDS_ATTR, ()), *names))
        return command

    return decorate


def option_fields(command: Any) -> tuple[str, ...]:
    """The model fields a command has generated options for (its callback's, for a click command)."""
    return tuple(getattr(getattr(command, "callback", command), _FIELDS_ATTR, ()))


def given(values: Mapping[str, Any], fields: Collection[str]) -> dict[str, Any]:
    """The options of ``fields`` the user gave (not None), ready for the options model."""
    return {k: v for k, v in values.items() if k in fields and v is not None}
