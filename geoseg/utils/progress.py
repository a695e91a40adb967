"""Progress of long work: a tqdm bar on a terminal, plain log lines everywhere else.

:func:`track_progress` is the one way geoseg reports progress. Where it goes depends on
:func:`progress_mode`:

* ``bar``: a tqdm bar on stderr, when stderr is a terminal (or a Jupyter notebook).
* ``lines``: when stderr is not a terminal (CI, ``geoseg run`` writing ``run.log``, SLURM
  output files), a line such as ``tiling: 40/81 cubes (49 %), 12.3 s elapsed, ~13 s left``
  at most once per ``interval`` seconds *and* 10 % of the work, plus a final line. Lines go to
  the ``geoseg.progress`` logger when it logs INFO somewhere (the CLI, ``run.log``), else to
  stderr.
* ``off``: nothing (``enabled=False``, ``--no-progress``).

The environment variable ``GEOSEG_PROGRESS`` (``bar``, ``lines`` or ``off``) forces the mode;
``GEOSEG_PROGRESS_INTERVAL`` sets the seconds between lines (default 10).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Literal, TypeVar, cast

from dask.callbacks import Callback
from typing_extensions import override

__all__ = [
    "CallbackProgress",
    "DaskProgress",
    "Progress",
    "ProgressLines",
    "emit_line",
    "format_duration",
    "line_interval",
    "progress_bar",
    "progress_mode",
    "track_progress",
]

T = TypeVar("T")
Mode = Literal["bar", "lines", "off"]
MODE_VARIABLE = "GEOSEG_PROGRESS"
INTERVAL_VARIABLE = "GEOSEG_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 10.0  # seconds between two lines at least
DEFAULT_STEP = 0.1  # and at least this fraction of the work

log = logging.getLogger("geoseg.progress")


def progress_mode(enabled: bool = True) -> Mode:
    """How progress is shown: ``GEOSEG_PROGRESS`` if set, else a bar on a terminal, else lines."""
    if not enabled:
        return "off"
    forced = os.environ.get(MODE_VARIABLE, "").strip().lower()
    if forced in ("bar", "lines", "off"):
        return cast(Mode, forced)
    return "bar" if _is_terminal() or _in_notebook() else "lines"


def line_interval() -> float:
    """Seconds between two progress lines: ``GEOSEG_PROGRESS_INTERVAL``, default 10."""
    try:
        return max(0.0, float(os.environ.get(INTERVAL_VARIABLE, DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def emit_line(line: str) -> None:
    """Write one progress line: to the ``geoseg.progress`` logger when it logs INFO, else to stderr."""
    if log.isEnabledFor(logging.INFO) and log.hasHandlers():
        log.info(line)
    else:
        print(line, file=sys.stderr, flush=True)


def format_duration(seconds: float) -> str:
    """``12.3 s``, ``4 min 05 s``, ``2 h 03 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


class Progress:
    """Progress of ``total`` units of work; this base class shows nothing (mode ``off``).

    Use it as a context manager: leaving the block closes it (an exception reports where the
    work stopped).
    """

    def __init__(self, total: int | None = None) -> None:
        self.total, self.done = total, 0

    def update(self, n: int = 1) -> None:
        """Record ``n`` more units done."""
        self.done += n

    def close(self, completed: bool = True) -> None:
        """End the report (``completed=False``: the work stopped early)."""

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(completed=kind is None)


class CallbackProgress(Progress):
    """Progress given to a function ``report(done, total)`` at each update (a caller's own display)."""

    def __init__(self, total: int, report: Callable[[int, int], None]) -> None:
        super().__init__(total)
        self.report = report

    @override
    def update(self, n: int = 1) -> None:
        super().update(n)
        self.report(self.done, self.total or 0)


class _Bar(Progress):
    """A tqdm bar on stderr."""

    def __init__(self, total: int | None, desc: str, unit: str, leave: bool) -> None:
        super().__init__(total)
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=leave)

    def update(self, n: int = 1) -> None:
        super().update(n)
        self._bar.update(n)

    def close(self, completed: bool = True) -> None:
        self._bar.close()


class ProgressLines(Progress):
    """Plain progress lines, rate-limited (see the module documentation).

    Args:
        total: units of work (None: unknown, lines give the count only).
        desc: what is done, the start of each line (``tiling``).
        unit: the unit counted, singular (``cube``).
        interval: seconds between two lines at least (default: :func:`line_interval`).
        step: fraction of ``total`` between two lines at least.
        clock: a monotonic clock in seconds.
        write: where lines go (default: :func:`emit_line`).
    """

    def __init__(self, total: int | None, desc: str, unit: str, *, interval: float | None = None,
                 step: float = DEFAULT_STEP, clock: Callable[[], float] = time.monotonic,
                 write: Callable[[str], None] | None = None) -> None:
        super().__init__(total)
        self.desc, self.unit, self.step, self.clock = desc, unit, step, clock
        self.interval = line_interval() if interval is None else interval
        self.write = write or emit_line
        self.start = self._last_time = clock()
        self._last_done = 0
        self._closed = False

    @override
    def update(self, n: int = 1) -> None:
        super().update(n)
        if self.total is not None and self.done >= self.total:
            return  # the final line says it
        now = self.clock()
        enough = self.total is None or self.done - self._last_done >= self.step * self.total
        if enough and now - self._last_time >= self.interval:
            self._last_time, self._last_done = now, self.done
            elapsed = now - self.start
            left = ""
            if self.total and self.done:
                left = f", ~{format_duration(elapsed / self.done * (self.total - self.done))} left"
            self.write(f"{self.desc}: {self._count()}, {format_duration(elapsed)} elapsed{left}")

    @override
    def close(self, completed: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        elapsed = format_duration(self.clock() - self.start)
        finished = completed and (self.total is None or self.done >= self.total)
        self.write(f"{self.desc}: {self._count()} in {elapsed}" if finished
                   else f"{self.desc}: stopped at {self._count()} after {elapsed}")

    def _count(self) -> str:
        if self.total is None:
            return f"{self.done} {_plural(self.unit, self.done)}"
        percent = f" ({100 * self.done // self.total} %)" if self.total else ""
        return f"{self.done}/{self.total} {_plural(self.unit, self.total)}{percent}"


def track_progress(total: int | None, desc: str, unit: str = "item", *, enabled: bool = True,
                   leave: bool = True) -> Progress:
    """Progress of ``total`` units of ``unit`` (singular), in the mode of :func:`progress_mode`.

    Example::

        with track_progress(len(tasks), "tiling", "cube", enabled=progress) as bar:
            for task in tasks:
                ...
                bar.update()

    Args:
        total: units of work (None: unknown).
        desc: what is done (``tiling``, ``predict S2A_...``).
        unit: the unit counted (``cube``, ``window``, ``block``).
        enabled: False shows nothing (``--no-progress``).
        leave: a terminal bar stays on screen once done.
    """
    mode = progress_mode(enabled)
    if mode == "bar":
        return _Bar(total, desc, unit, leave)
    if mode == "lines":
        return ProgressLines(total, desc, unit)
    return Progress(total)


def progress_bar(items: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "item",
                 enabled: bool = True) -> Iterator[T]:
    """``items``, reporting progress with :func:`track_progress` as they are consumed."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]  # a sized iterable
    with track_progress(total, desc or "progress", unit, enabled=enabled) as bar:
        for item in items:
            yield item
            bar.update()


class DaskProgress(Callback):
    """Progress (:func:`track_progress`) over the tasks of a dask computation on the local schedulers.

    Only tasks whose key starts with ``prefix`` are counted (e.g. the feature blocks).
    """

    def __init__(self, desc: str, prefix: str, unit: str = "block", enabled: bool = True):
        super().__init__()
        self.desc, self.prefix, self.unit, self.enabled = desc, prefix, unit, enabled
        self._progress: Progress | None = None

    def _start_state(self, dsk: Any, state: Any) -> None:
        total = sum(1 for key in dsk if _name(key).startswith(self.prefix))
        self._progress = track_progress(total, self.desc, self.unit, enabled=self.enabled)

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        if self._progress is not None and _name(key).startswith(self.prefix):
            self._progress.update()

    def _finish(self, dsk: Any, state: Any, errored: bool) -> None:
        if self._progress is not None:
            self._progress.close(completed=not errored)


def _name(key: Any) -> str:
    return key[0] if isinstance(key, tuple) else str(key)


def _plural(unit: str, count: int) -> str:
    return unit if count == 1 or unit.endswith("s") else f"{unit}s"


def _is_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _in_notebook() -> bool:
    """A Jupyter kernel (its stderr is no terminal, yet tqdm draws a widget there)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})
