"""Helpful misses: name the closest valid choice when a user misspells one.

The one "did you mean" of geoseg (configuration keys, datasets, recipes, steps, models,
encoders, architecture options, aux head keys), with one similarity cutoff.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["CUTOFF", "close_matches", "closest", "did_you_mean", "suggestion"]

CUTOFF = 0.5
"""Least :class:`difflib.SequenceMatcher` ratio for a choice to be suggested."""


def close_matches(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` valid choices similar to ``name``, most similar first."""
    return difflib.get_close_matches(str(name), list(choices), n=n, cutoff=CUTOFF)


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The valid choice closest to ``name``, or None when nothing is similar."""
    matches = close_matches(name, choices, n=1)
    return matches[0] if matches else None


def suggestion(name: str, choices: Iterable[str], n: int = 1) -> str | None:
    """``did you mean 'a'?`` (or ``'a', 'b' or 'c'`` for ``n=3``); None when nothing is similar."""
    matches = [repr(m) for m in close_matches(name, choices, n=n)]
    if not matches:
        return None
    listed = matches[0] if len(matches) == 1 else f"{', '.join(matches[:-1])} or {matches[-1]}"
    return f"did you mean {listed}?"


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A hint such as ``did you mean 'cube_size'? (valid: a, b, c)``."""
    choices = sorted(choices)
    best = suggestion(name, choices)
    valid = ", ".join(choices)
    return f"{best} (valid: {valid})" if best else f"valid: {valid}"
