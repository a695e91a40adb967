"""Outputs are written under a temporary name and renamed when complete.

Folders are written with :func:`geoseg.utils.outputs.atomic_folder`, which also enforces
who owns the folder; this module holds the single-file case.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from geoseg.utils.outputs import (
    atomic_folder,
    clean_stale_temporaries,
    make_parents,
    remove_empty,
    temp_name,
)

__all__ = ["atomic_path", "atomic_folder"]


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it replaces ``final``, on error it is removed.

    Callers that write a user-named output check it first with
    :func:`geoseg.utils.outputs.claim_file`.
    """
    final = Path(final)
    created = make_parents(final)
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
