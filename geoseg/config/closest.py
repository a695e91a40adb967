"""Helpful misses: name the closest valid key when a user misspells one."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["closest", "did_you_mean"]


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The valid choice closest to ``name``, or None when nothing is similar."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A hint such as ``did you mean 'cube_size'? (valid: a, b, c)``."""
    choices = sorted(choices)
    best = closest(name, choices)
    valid = ", ".join(choices)
    return f"did you mean {best!r}? (valid: {valid})" if best else f"valid: {valid}"
