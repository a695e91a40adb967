"""What identifies an input file's version without reading it: path, size and modification time.

Used to decide whether a CubeStore can be resumed and whether a pipeline step reruns. A file
inside a local zip (``/vsizip/ARCHIVE.zip/…``) is identified by its archive; a remote file
(``s3://``, ``https://``, ``/vsicurl/…``) by its location alone: remote inputs (STAC assets,
object-store COGs) are taken to be immutable, and no request is made to fingerprint them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from geoseg.io.raster import is_virtual

__all__ = ["file_fingerprint"]

_ZIP = re.compile(r"^/vsizip/(\{[^}]+\}|.+?\.zip)(?=/|$)", re.IGNORECASE)


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """``{"path", "size", "mtime_ns"}`` of a local file; see the module docstring for the others."""
    text = str(path)
    if is_virtual(text):
        match = _ZIP.match(text)
        archive = Path(match.group(1).strip("{}")) if match else None  # "//abs.zip" or "rel.zip"
        if archive is None or not archive.is_file():
            return {"path": text}
        st = archive.stat()
        return {"path": text, "archive_size": st.st_size, "archive_mtime_ns": st.st_mtime_ns}
    st = Path(path).stat()
    return {"path": text, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
