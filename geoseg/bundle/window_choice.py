"""The prediction window a model gets by default, chosen by measuring its forward pass.

A model trained on small cubes predicts any window size, and which size runs fastest depends on
the architecture and the machine: small windows pay a fixed cost per window and per batch, large
ones leave the CPU caches and need more memory (docs/benchmarks_predict_window.md). So the trainer
times the model's forward pass on a few sizes at the start of training and records them in the
bundle: ``predict_window`` (the fastest per pixel; ties within :data:`TIE` go to the larger
window) and ``predict_window_costs`` (seconds per megapixel of each size), from which
:func:`geoseg.predict.plan_windows` picks the size of least total cost for each scene. With the
overlap a fixed fraction of the window, every size recomputes the same share of a large scene's
pixels, so seconds per pixel of one forward pass rank the sizes there. A series model is timed
on series windows ``(N, T, C, h, w)`` of the training T (seconds per pixel of the map).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["WindowChoice", "measure_predict_window", "CANDIDATES"]

CANDIDATES = (64, 128, 256, 512)
TIE = 0.10  # a larger window within 10 % of the fastest per pixel wins
BUDGET_SECONDS = 2.0  # no larger size is tried once one forward pass takes longer than this
BATCH = 2


@dataclass(frozen=True)
class WindowChoice:
    """The chosen window and the measured forward seconds per megapixel of each size."""

    window: int
    seconds_per_mpx: dict[int, float]


def _seconds(model: nn.Module, channels: int, size: int, generator: torch.Generator,
             time_steps: int | None = None) -> float:
    dates = () if time_steps is None else (time_steps,)
    x = torch.randn(BATCH, *dates, channels, size, size, generator=generator)
    model(x)  # warm-up: allocations, kernel selection
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        model(x)
        best = min(best, time.perf_counter() - t0)
    return best


def measure_predict_window(model: nn.Module, channels: int, train_window: int,
                           candidates: tuple[int, ...] = CANDIDATES, time_steps: int | None = None) -> WindowChoice:
    """Time ``model`` (on its device, eval mode, no gradients) at the training window and larger sizes.

    ``time_steps``: dates T of a series model's input ``(N, T, C, h, w)`` (None: one date).

    Sizes are the training window and the ``candidates`` above it that are multiples of the
    model's ``required_divisor``. The model's mode is restored and the global random state
    is not touched (training stays reproducible).
    """
    divisor = int(getattr(model, "required_divisor", 1) or 1)
    sizes = sorted({train_window, *(c for c in candidates if c > train_window and c % divisor == 0)})
    generator = torch.Generator().manual_seed(0)
    was_training = model.training
    per_mpx: dict[int, float] = {}
    model.eval()
    try:
        with torch.inference_mode():
            for size in sizes:
                seconds = _seconds(model, channels, size, generator, time_steps)
                per_mpx[size] = seconds / (BATCH * size * size / 1e6)
                if seconds > BUDGET_SECONDS:
                    break
    finally:
        model.train(was_training)
    fastest = min(per_mpx.values())
    window = max(s for s, t in per_mpx.items() if t <= fastest * (1 + TIE))
    return WindowChoice(window, per_mpx)
