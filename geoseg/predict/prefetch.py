"""Ordered read-ahead: compute the next items on a thread pool while the caller works."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["prefetch"]

T = TypeVar("T")
R = TypeVar("R")


def prefetch(fn: Callable[[T], R], items: Iterable[T], *, workers: int = 2, depth: int = 8) -> Generator[tuple[T, R], None, None]:
    """Yield ``(item, fn(item))`` in input order, keeping up to ``depth`` calls in flight.

    ``fn`` runs on ``workers`` threads (GDAL reads and numpy release the GIL), so the caller's
    own work overlaps with the next results. At most ``depth`` results are held at a time.
    Closing the generator early cancels what has not started; per-thread state (such as the
    reader's cached file handles) goes away with the worker threads.
    """
    workers, depth = max(1, workers), max(1, depth)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="geoseg-prefetch")
    pending: deque[tuple[T, Future[R]]] = deque()
    source = iter(items)

    def submit() -> None:
        for item in source:
            pending.append((item, pool.submit(fn, item)))
            return

    try:
        for _ in range(depth):
            submit()
        while pending:
            item, future = pending.popleft()
            result = future.result()
            submit()
            yield item, result
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True)
