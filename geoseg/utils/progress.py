"""Progress bars for long work: tqdm for loops, a dask callback for lazy graphs."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from dask.callbacks import Callback
from tqdm.auto import tqdm

__all__ = ["progress_bar", "DaskProgress"]

T = TypeVar("T")


def progress_bar(items: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it",
                 enabled: bool = True) -> Iterator[T]:
    """A tqdm bar on stderr (disabled with ``enabled=False``)."""
    return iter(tqdm(items, total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr,
                     dynamic_ncols=True, leave=True))


class DaskProgress(Callback):
    """A tqdm bar over the tasks of a dask computation on the local schedulers.

    Only tasks whose key starts with ``prefix`` are counted (e.g. the feature blocks).
    """

    def __init__(self, desc: str, prefix: str, unit: str = "block", enabled: bool = True):
        super().__init__()
        self.desc, self.prefix, self.unit, self.enabled = desc, prefix, unit, enabled
        self._bar: tqdm | None = None

    def _start_state(self, dsk, state) -> None:
        total = sum(1 for key in dsk if _name(key).startswith(self.prefix))
        self._bar = tqdm(total=total, desc=self.desc, unit=self.unit, disable=not self.enabled,
                         file=sys.stderr, dynamic_ncols=True)

    def _posttask(self, key, result, dsk, state, worker_id) -> None:
        if self._bar is not None and _name(key).startswith(self.prefix):
            self._bar.update(1)

    def _finish(self, dsk, state, errored) -> None:
        if self._bar is not None:
            self._bar.close()


def _name(key) -> str:
    return key[0] if isinstance(key, tuple) else str(key)
