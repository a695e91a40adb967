"""Which cubes ``geoseg evaluate`` draws as example figures, and why.

A budget of ``count`` figures is filled in this order, each cube at most once:

1. **largest error**: the cube with the largest fraction of wrongly predicted labelled pixels
   (among cubes with at least :data:`MIN_LABELLED_SHARE` of the best-labelled cube's pixels,
   so that a cube with three labelled pixels does not win);
2. **class: NAME**: for each class present in the split's ground truth, rarest class first,
   the cube where that class covers the most pixels (a cube already chosen only gains the reason);
3. **random**: ``count // 4`` cubes (at least; more when fewer classes are present), drawn with
   a fixed seed among the cubes not chosen yet (labelled ones first), so reruns draw the same figures.

Classes left out because the budget is spent are reported (raise ``--save-examples``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from geoseg.train.metrics import IGNORE_INDEX

if TYPE_CHECKING:
    from collections.abc import Sequence

    from torch import Tensor

__all__ = ["EXAMPLE_SEED", "CubeTally", "Example", "choose_examples", "count_for", "example_title", "pixel_accuracy"]

EXAMPLE_SEED = 0
MIN_LABELLED_SHARE = 0.1


@dataclass(frozen=True)
class Example:
    """One cube to draw: its position in the split's order and why it was chosen."""

    position: int
    reasons: tuple[str, ...]


@dataclass
class CubeTally:
    """Per-cube pixel counts of an evaluation pass, in the split's order."""

    num_classes: int
    _labelled: list[np.ndarray] = field(default_factory=list)
    _correct: list[np.ndarray] = field(default_factory=list)
    _class_pixels: list[np.ndarray] = field(default_factory=list)

    def update(self, pred: Tensor, truth: Tensor) -> None:
        """Count a batch: ``pred`` and ``truth`` (N, H, W) training indices (255 = ignored)."""
        labelled = truth != IGNORE_INDEX
        self._labelled.append(labelled.sum((1, 2)).cpu().numpy())
        self._correct.append(((pred == truth) & labelled).sum((1, 2)).cpu().numpy())
        per_class = [(truth == c).sum((1, 2)) for c in range(self.num_classes)]
        self._class_pixels.append(np.stack([p.cpu().numpy() for p in per_class], axis=1))

    @property
    def labelled(self) -> np.ndarray:
        """Labelled pixels per cube (N,)."""
        return np.concatenate(self._labelled) if self._labelled else np.zeros(0, np.int64)

    @property
    def correct(self) -> np.ndarray:
        """Correctly predicted labelled pixels per cube (N,)."""
        return np.concatenate(self._correct) if self._correct else np.zeros(0, np.int64)

    @property
    def class_pixels(self) -> np.ndarray:
        """Ground-truth pixels per cube and class (N, K)."""
        return np.concatenate(self._class_pixels) if self._class_pixels else np.zeros((0, self.num_classes), np.int64)


def choose_examples(labelled: np.ndarray, correct: np.ndarray, class_pixels: np.ndarray,
                    class_names: Sequence[str], count: int,
                    seed: int = EXAMPLE_SEED) -> tuple[list[Example], list[str]]:
    """The cubes to draw (module docstring), and the present classes left out for lack of budget.

    Args:
        labelled: Labelled pixels per cube (N,).
        correct: Correctly predicted labelled pixels per cube (N,).
        class_pixels: Ground-truth pixels per cube and class (N, K).
        class_names: The K class names.
        count: Number of figures (at most N are drawn).
        seed: Seed of the random picks.
    """
    labelled, correct = np.asarray(labelled, np.int64), np.asarray(correct, np.int64)
    class_pixels = np.asarray(class_pixels, np.int64).reshape(len(labelled), len(class_names))
    count = min(count, len(labelled))
    picks: dict[int, list[str]] = {}
    if count <= 0:
        return [], []
    targeted = _targeted(count)
    if labelled.max(initial=0) > 0:
        error = (labelled - correct) / np.maximum(labelled, 1)
        eligible = labelled >= MIN_LABELLED_SHARE * labelled.max()
        order = np.lexsort((-labelled, -np.where(eligible, error, -1.0)))  # error first, then labelled pixels
        picks[int(order[0])] = ["largest error"]
    support = class_pixels.sum(axis=0)
    left_out: list[str] = []
    for c in np.argsort(support, kind="stable"):  # rarest class first
        if support[c] == 0:
            continue
        position, reason = int(np.argmax(class_pixels[:, c])), f"class: {class_names[c]}"
        if position in picks:
            picks[position].append(reason)
        elif len(picks) < targeted:
            picks[position] = [reason]
        else:
            left_out.append(class_names[c])
    rng = np.random.default_rng(seed)
    rest = [rng.permutation([p for p in np.flatnonzero(has) if p not in picks]) for has in (labelled > 0, labelled == 0)]
    draws = np.concatenate(rest)[: count - len(picks)]  # labelled cubes first
    for position in sorted(int(p) for p in draws):
        picks[position] = ["random"]
    return [Example(p, tuple(r)) for p, r in picks.items()], left_out


def _targeted(count: int) -> int:
    return count - count // 4


def count_for(targeted: int) -> int:
    """The smallest figure count that leaves ``targeted`` figures to the worst cube and the classes."""
    count = targeted
    while _targeted(count) < targeted:
        count += 1
    return count


def pixel_accuracy(truth: np.ndarray, pred: np.ndarray) -> float | None:
    """Fraction of the labelled pixels predicted right (None: no labelled pixel)."""
    labelled = truth != IGNORE_INDEX
    n = int(labelled.sum())
    return None if n == 0 else float((truth[labelled] == pred[labelled]).sum()) / n


def example_title(cube_id: int, split: str, accuracy: float | None, reasons: Sequence[str]) -> str:
    """A figure's label: cube id, split, pixel accuracy and why the cube was chosen."""
    acc = "no labelled pixel" if accuracy is None else f"pixel accuracy {100 * accuracy:.1f} %"
    return f"cube {cube_id} · {split} · {acc} · {', '.join(reasons)}"
