"""``--profiler``: Lightning's profilers, reporting to ``MODEL_DIR/profile.txt`` from global rank 0.

Lightning names its report ``{stage}-{filename}-{local_rank}.txt``: with several nodes two
processes of the same local rank would write the same file. Here the report of global rank 0
goes to ``profile.txt`` (the other ranks keep their timings in memory and write nothing),
like every other output of a training run.
"""

from __future__ import annotations

from typing import Literal

from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.profilers import AdvancedProfiler, Profiler, SimpleProfiler

__all__ = ["RankZeroSimpleProfiler", "RankZeroAdvancedProfiler", "make_profiler", "PROFILE_NAME"]

PROFILE_NAME = "profile"


class _RankZeroReport:
    """Mixin: a fixed report name, and no report on ranks other than global rank 0."""

    def _prepare_filename(self, action_name: str | None = None, extension: str = ".txt") -> str:
        return "-".join([PROFILE_NAME, *([action_name] if action_name else [])]) + extension

    def describe(self) -> None:
        if getattr(rank_zero_only, "rank", 0) == 0:
            super().describe()  # type: ignore[misc]
        else:
            self.teardown(stage=self._stage)  # type: ignore[attr-defined]


class RankZeroSimpleProfiler(_RankZeroReport, SimpleProfiler):
    """:class:`~lightning.pytorch.profilers.SimpleProfiler` reporting from global rank 0."""


class RankZeroAdvancedProfiler(_RankZeroReport, AdvancedProfiler):
    """:class:`~lightning.pytorch.profilers.AdvancedProfiler` reporting from global rank 0."""


def make_profiler(kind: Literal["simple", "advanced"] | None, dirpath: str) -> Profiler | None:
    """The profiler of ``--profiler kind`` writing ``dirpath/profile.txt`` (None: no profiler)."""
    if kind is None:
        return None
    cls = RankZeroSimpleProfiler if kind == "simple" else RankZeroAdvancedProfiler
    return cls(dirpath=dirpath, filename=PROFILE_NAME)
