"""Outputs are written under a temporary name and renamed when complete.

Folders are written with :func:`geoseg.utils.outputs.atomic_folder`, which also enforces
who owns the folder; this module holds the single-file case.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from geoseg.utils.outputs import (
    atomic_folder,
    clean_stale_temporaries,
    make_parents,
    remove_empty,
    temp_name,
)

__all__ = ["atomic_path", "atomic_folder", "write_text_atomic", "write_json_atomic"]


@contextlib.contextmanager
def atomic_path(final: str | Path, *, clean: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it replaces ``final``, on error it is removed.

    Callers that write a user-named output check it first with
    :func:`geoseg.utils.outputs.claim_file`. ``clean`` removes a killed run's temporaries of
    ``final`` first (a scan of its folder: writers of many files in one folder, such as the
    tiler's task records, pass False and clean the folder once per run instead).
    """
    final = Path(final)
    created = make_parents(final)
    if clean:
        clean_stale_temporaries(final)
    tmp = temp_name(final)
    done = False
    try:
        yield tmp
        os.replace(tmp, final)
        done = True
    finally:
        for leftover in (tmp, Path(f"{tmp}.aux.xml"), Path(f"{tmp}.ovr")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        if not done:
            remove_empty(created)  # folders made for this output only


def write_text_atomic(path: str | Path, text: str, *, fsync: bool = False, clean: bool = True) -> None:
    """Write ``text`` to ``path`` with :func:`atomic_path` (flushed to disk first when ``fsync``)."""
    with atomic_path(path, clean=clean) as tmp, open(tmp, "w") as fh:
        fh.write(text)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())


def write_json_atomic(path: str | Path, data: Any, *, indent: int = 1, default: Callable[[Any], Any] | None = None,
                      fsync: bool = False, clean: bool = True) -> None:
    """Write ``data`` as JSON (with a final newline) to ``path`` with :func:`write_text_atomic`."""
    write_text_atomic(path, json.dumps(data, indent=indent, default=default) + "\n", fsync=fsync, clean=clean)
