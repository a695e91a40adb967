"""Spatial train/val/test split: whole blocks of neighbouring cubes go to one split.

Blocks come from :mod:`geoseg.tiling.layout` (cubes of different blocks never overlap).
Blocks are ordered by ``(scene, block_row, block_col)``, shuffled with a seeded generator,
and cut by the fractions (rounded; val gets at least one block whenever there are two or
more blocks and its fraction is positive, train keeps at least one block).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from geoseg.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import SupportsRichComparison

__all__ = ["assign_splits", "check_fractions"]

_Key = TypeVar("_Key", bound="SupportsRichComparison")  # block keys are sorted, then shuffled


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate ``(train, val, test)`` fractions (non-negative, summing to 1)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"split fractions {tuple(fractions)} must be three non-negative numbers summing to 1",
                          hint="e.g. --split 0.7,0.15,0.15 (train, val, test)")
    return float(fractions[0]), float(fractions[1]), float(fractions[2])


def _counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    _, f_val, f_test = fractions
    n_val = int(round(f_val * n))
    n_test = int(round(f_test * n))
    if n >= 2 and f_val > 0:
        n_val = max(n_val, 1)
    while n_val + n_test > n - (1 if fractions[0] > 0 and n >= 1 else 0):
        if n_test > 0:
            n_test -= 1
        else:
            n_val -= 1
    return n - n_val - n_test, n_val, n_test


def assign_splits(blocks: Sequence[_Key], fractions: Sequence[float], seed: int) -> dict[_Key, str]:
    """Map each distinct block key to ``"train"``, ``"val"`` or ``"test"`` (reproducible)."""
    fr = check_fractions(fractions)
    keys = sorted(set(blocks))
    order = np.random.default_rng(seed).permutation(len(keys))
    _, n_val, n_test = _counts(len(keys), fr)
    out: dict[_Key, str] = {}
    for rank, k in enumerate(order):
        out[keys[k]] = "val" if rank < n_val else ("test" if rank < n_val + n_test else "train")
    return out
