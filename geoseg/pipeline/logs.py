"""The run log: step reports go to the terminal and to ``RUN_DIR/run.log``; library logs to the file."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["LOG_NAME", "Reporter", "run_log"]

LOG_NAME = "run.log"
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# loggers whose records are worth keeping in the run log (INFO and above)
_CAPTURED = ("geoseg", "lightning.pytorch", "lightning.fabric")

Reporter = Callable[[str], None]


@contextlib.contextmanager
def run_log(path: Path, echo: Callable[[str], None] | None) -> Iterator[Reporter]:
    """Open the run log (appending) for the duration of a run.

    Yields:
        ``report(line)``: writes ``line`` to the log file and passes it to ``echo`` (the
        terminal in the CLI; ``None`` keeps the terminal quiet).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    handler.setLevel(logging.INFO)
    saved: list[tuple[logging.Logger, int]] = []
    for name in _CAPTURED:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addHandler(handler)
    # the report logger writes only to the file; the terminal gets the line through ``echo``
    reporter = logging.getLogger("geoseg.pipeline.report")
    reporter.propagate = False
    reporter.setLevel(logging.INFO)
    reporter.addHandler(handler)

    def report(line: str) -> None:
        reporter.info(line)
        if echo is not None:
            echo(line)

    try:
        yield report
    finally:
        reporter.removeHandler(handler)
        for logger, level in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
        handler.close()
