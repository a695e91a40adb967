"""Click parameter types that refuse bad numbers and lists at the CLI boundary, before any work.

Every numeric option of every command uses one of these (or a ``click.Choice``): a value out
of range, not finite (``nan``, ``inf``) or malformed stops the command before anything is
read or written, and ``geoseg.cli.main`` prints it as one line naming the flag::

    error: --resolution: 0 is not > 0 — the target grid resolution in metres, e.g. --resolution 10

Ranges show in ``--help`` as click's own range types do (``[x>0]``).
"""

from __future__ import annotations

import math
import re
from typing import Any

import click
from typing_extensions import override

__all__ = ["Float", "Int", "IntList", "Fractions", "Devices", "Duration", "Device", "SchedulerAddress",
           "fail_option"]


def _fmt(value: float | int) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _with_hint(message: str, hint: str | None) -> str:
    return f"{message} — {hint}" if hint else message


def fail_option(flag: str, message: str, hint: str | None = None) -> None:
    """Refuse a combination of options found in a command body (before any work): one line naming ``flag``."""
    raise click.BadParameter(_with_hint(message, hint), param_hint=flag)


class _Range(click.ParamType):
    """Mixin of :class:`Int` and :class:`Float`: a finite number in ``[min, max]`` (bounds may be open)."""

    min: Any
    max: Any
    min_open: bool
    max_open: bool
    _number_class: Any

    def _describe_range(self) -> str:
        if self.min is None and self.max is None:  # click would print "x<=None"
            return ""
        return super()._describe_range()  # type: ignore[misc]

    def _setup(self, hint: str | None, multiple_of: int | None) -> None:
        self.hint = hint
        self.multiple_of = multiple_of

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, bool):
            value = int(value)
        rv: Any
        if isinstance(value, self._number_class) and not isinstance(value, bool):
            rv = value
        else:
            text = str(value).strip()
            try:
                rv = self._number_class(text)
            except (TypeError, ValueError):
                kind = "an integer" if self._number_class is int else "a number"
                self.fail(_with_hint(f"{text!r} is not {kind}", self.hint), param, ctx)
        if isinstance(rv, float) and not math.isfinite(rv):
            self.fail(_with_hint(f"{_fmt(rv)} is not a finite number", self.hint), param, ctx)
        if self.min is not None and (rv <= self.min if self.min_open else rv < self.min):
            op = ">" if self.min_open else ">="
            self.fail(_with_hint(f"{_fmt(rv)} is not {op} {_fmt(self.min)}", self.hint), param, ctx)
        if self.max is not None and (rv >= self.max if self.max_open else rv > self.max):
            op = "<" if self.max_open else "<="
            self.fail(_with_hint(f"{_fmt(rv)} is not {op} {_fmt(self.max)}", self.hint), param, ctx)
        if self.multiple_of and rv % self.multiple_of:
            self.fail(_with_hint(f"{_fmt(rv)} is not a multiple of {self.multiple_of}", self.hint), param, ctx)
        return rv


class Int(_Range, click.IntRange):
    """An integer in a range, e.g. ``Int(1, hint="e.g. --workers 4")``."""

    def __init__(self, min: int | None = None, max: int | None = None, *, min_open: bool = False,
                 max_open: bool = False, hint: str | None = None, multiple_of: int | None = None) -> None:
        click.IntRange.__init__(self, min, max, min_open=min_open, max_open=max_open)
        self._setup(hint, multiple_of)


class Float(_Range, click.FloatRange):
    """A finite float in a range, e.g. ``Float(0, min_open=True)`` for a strictly positive value."""

    def __init__(self, min: float | None = None, max: float | None = None, *, min_open: bool = False,
                 max_open: bool = False, hint: str | None = None) -> None:
        click.FloatRange.__init__(self, min, max, min_open=min_open, max_open=max_open)
        self._setup(hint, None)


class IntList(click.ParamType):
    """A comma-separated list of integers in ``[min, max]`` (e.g. SCL classes 0–11); ``""`` is empty."""

    name = "list"

    def __init__(self, min: int, max: int, *, what: str = "value", hint: str | None = None) -> None:
        self.min, self.max, self.what, self.hint = min, max, what, hint

    @override
    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, ...]:
        items = list(value) if isinstance(value, list | tuple) else [v.strip() for v in str(value).split(",")]
        out: list[int] = []
        for item in items:
            if isinstance(item, str) and not item:
                continue
            try:
                n = int(item)
            except (TypeError, ValueError):
                self.fail(_with_hint(f"{item!r} in {value!r} is not an integer {self.what} "
                                     f"({self.min}–{self.max})", self.hint), param, ctx)
            if not self.min <= n <= self.max:
                self.fail(_with_hint(f"{n} in {value!r} is not a {self.what} ({self.min}–{self.max})", self.hint),
                          param, ctx)
            if n not in out:
                out.append(n)
        return tuple(out)


class Fractions(click.ParamType):
    """``train,val,test``: three finite, non-negative fractions summing to 1."""

    name = "fractions"
    HINT = "give three fractions train,val,test summing to 1, e.g. --split 0.7,0.15,0.15"

    @override
    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[float, ...]:
        if isinstance(value, list | tuple):
            parts = list(value)
        else:
            parts = [v.strip() for v in str(value).split(",")]
        try:
            numbers = tuple(float(v) for v in parts)
        except (TypeError, ValueError):
            self.fail(_with_hint(f"{value!r} is not three comma-separated numbers", self.HINT), param, ctx)
        if len(numbers) != 3:
            self.fail(_with_hint(f"{value!r} has {len(numbers)} fraction(s), not 3", self.HINT), param, ctx)
        if not all(math.isfinite(f) and f >= 0 for f in numbers):
            self.fail(_with_hint(f"{value!r}: fractions must be finite and >= 0", self.HINT), param, ctx)
        if abs(sum(numbers) - 1.0) > 1e-6:
            self.fail(_with_hint(f"{value!r} sums to {sum(numbers):g}, not 1", self.HINT), param, ctx)
        return numbers


class Devices(click.ParamType):
    """Lightning ``devices``: ``auto``, a count (``-1``: all), or a list of device indices ``0,1``."""

    name = "devices"
    HINT = "give a count (e.g. --devices 2), auto, -1 (all) or device indices (e.g. --devices 0,1)"

    @override
    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if text == "auto" or text == "-1":
            return text
        if re.fullmatch(r"\d+", text):
            if int(text) < 1:
                self.fail(_with_hint(f"{text} is not >= 1", self.HINT), param, ctx)
            return text
        if re.fullmatch(r"\d+(\s*,\s*\d+)*\s*,?", text):
            return text
        self.fail(_with_hint(f"{text!r} is not a device count or list", self.HINT), param, ctx)


class Duration(click.ParamType):
    """``DD:HH:MM:SS`` (Lightning's ``max_time``), not zero."""

    name = "DD:HH:MM:SS"

    @override
    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        match = re.fullmatch(r"(\d+):(\d+):(\d+):(\d+)", text)
        if match is None or not any(int(g) for g in match.groups()):
            self.fail(_with_hint(f"{text!r} is not a duration DD:HH:MM:SS", "e.g. --max-time 00:12:00:00 (12 hours)"),
                      param, ctx)
        return text


class Device(click.ParamType):
    """A torch device name: ``auto``, ``cpu``, ``mps``, ``cuda`` or ``cuda:N``."""

    name = "device"

    @override
    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from geoseg.utils.checks import DEVICE_HINT, check_device_name

        try:
            return check_device_name(value)
        except ValueError:
            self.fail(_with_hint(f"{str(value).strip()!r} is not a device", DEVICE_HINT), param, ctx)


class SchedulerAddress(click.ParamType):
    """A Dask scheduler address ``PROTOCOL://HOST:PORT`` (``HOST:PORT`` means tcp); checked for form only."""

    name = "address"
    HINT = "use tcp://HOST:PORT, e.g. --scheduler tcp://10.0.0.5:8786"

    @override
    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from urllib.parse import urlsplit

        text = str(value).strip()
        parts = urlsplit(text if "://" in text else f"tcp://{text}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme in ("tcp", "tls", "ws", "wss") and (not parts.hostname or not port):
            self.fail(_with_hint(f"{text!r} is not a Dask scheduler address", self.HINT), param, ctx)
        if not parts.scheme or not parts.netloc:
            self.fail(_with_hint(f"{text!r} is not a Dask scheduler address", self.HINT), param, ctx)
        return text
