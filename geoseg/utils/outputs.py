"""Who owns an output: geoseg replaces or removes only what it wrote itself.

One rule for every command that writes:

- **Folders.** An output folder is new, empty, or holds the marker ``.geoseg.json`` that geoseg
  wrote there, naming the kind of artefact (``cubestore``, ``model bundle``...) and the entries
  geoseg wrote. Anything else is refused. Replacing or clearing a folder removes only the
  entries its marker lists; a user's file dropped into it survives.
- **Files.** An existing output file is replaced only when geoseg wrote it, which it tells
  from a signature inside the file (a GeoTIFF tag, the ONNX producer, GeoPackage metadata).
- **Inputs.** No output may be, lie inside, or contain an input of the same command (after
  symlinks are resolved).

Violations raise :class:`~geoseg.errors.OutputError` before any work is done.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from geoseg.errors import OutputError

__all__ = [
    "MARKER_NAME",
    "SIGNATURE_TAG",
    "read_marker",
    "claim_folder",
    "mark_folder",
    "remove_owned",
    "atomic_folder",
    "legacy_entries",
    "claim_file",
    "written_by_geoseg",
    "check_not_input",
    "temp_name",
    "clean_stale_temporaries",
    "make_parents",
    "remove_empty",
]

MARKER_NAME = ".geoseg.json"
SIGNATURE_TAG = "GEOSEG_OUTPUT"  # GeoTIFF dataset tag / GeoPackage metadata key: the kind of output


# ----------------------------------------------------------------------------------- temporaries
_TEMP_NAME = re.compile(r"^\.(?P<stem>.+)\.[a-z]+-(?P<pid>\d+)-[0-9a-f]{8}(?P<rest>\..*)?$")


def temp_name(final: Path, tag: str = "tmp") -> Path:
    """A hidden sibling of ``final`` to write it under: ``.STEM.<tag>-<pid>-<random>SUFFIX``.

    The process id lets a later run tell a crashed writer's leftovers from a live writer's file.
    """
    return final.with_name(f".{final.stem}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}{final.suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temporaries(final: str | Path, *, every_output: bool = False) -> list[Path]:
    """Remove temporaries of ``final`` left by a geoseg process that no longer runs (kill -9).

    Only hidden files named by :func:`temp_name` for this very output (and GDAL's ``.aux.xml``/
    ``.ovr`` beside them) are touched; a live writer's temporaries stay. With ``every_output``,
    those of every output in ``final``'s folder (a folder geoseg owns, e.g. the tiler's task
    records). Returns what was removed.
    """
    final = Path(final)
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(final.parent):
            match = _TEMP_NAME.match(entry.name)
            if not match or entry.is_symlink():
                continue
            rest = match["rest"] or ""
            ours = every_output or (match["stem"] == final.stem
                                    and (rest == final.suffix or rest.startswith(final.suffix + ".")))
            if not ours or _alive(int(match["pid"])):
                continue
            _remove(Path(entry.path))
            removed.append(Path(entry.path))
    return removed


def make_parents(path: Path) -> list[Path]:
    """Create the missing folders above ``path``; returns those created (deepest first)."""
    created = []
    folder = path.parent.absolute()
    while not folder.exists():
        created.append(folder)
        folder = folder.parent
    path.parent.mkdir(parents=True, exist_ok=True)
    return created


def remove_empty(folders: Iterable[Path]) -> None:
    """Remove folders geoseg created for an output that was not written (only while empty)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


# ----------------------------------------------------------------------------------- folders
def read_marker(folder: str | Path) -> dict | None:
    """The marker geoseg wrote in ``folder`` (None when absent or unreadable)."""
    path = Path(folder) / MARKER_NAME
    try:
        marker = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or not isinstance(marker.get("kind"), str):
        return None
    marker["entries"] = [e for e in marker.get("entries", []) if isinstance(e, str) and "/" not in e and e not in
                         ("", ".", "..")]
    return marker


def _user_entries(folder: Path, owned: Iterable[str]) -> list[str]:
    skip = {MARKER_NAME, *owned}
    return sorted(e for e in os.listdir(folder) if e not in skip)


Legacy = Callable[[Path], "list[str] | None"]


def claim_folder(folder: str | Path, kind: str, *, flag: str = "--out", legacy: Legacy | None = None) -> list[str]:
    """Check that geoseg may write ``folder`` as a ``kind``; return the entries it wrote there before.

    ``legacy`` recognises a ``kind`` folder written by a geoseg version without markers and
    returns the entries it wrote (None when the folder is not one).

    Raises:
        OutputError: ``folder`` is a file, holds another kind of geoseg output, or holds files
            geoseg did not write (without a marker).
    """
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return []
    if not folder.is_dir():
        raise OutputError(f"{flag} must be a folder, but this is a file", path=folder,
                          hint=f"give {flag} a new folder path; geoseg never replaces a file with a folder")
    marker = read_marker(folder)
    if marker is not None:
        if marker["kind"] != kind:
            raise OutputError(f"this folder holds a geoseg {marker['kind']}, not a {kind}", path=folder,
                              hint=f"choose another {flag}")
        return [e for e in marker["entries"] if (folder / e).exists() or (folder / e).is_symlink()]
    entries = _user_entries(folder, ())
    old = legacy(folder) if legacy is not None and entries else None
    if old is not None:
        return old
    if entries:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise OutputError(f"{flag} folder is not empty and was not written by geoseg ({shown})", path=folder,
                          hint=f"choose a new or empty folder for {flag}; geoseg never deletes files it did not write")
    return []


def mark_folder(folder: str | Path, kind: str, entries: Iterable[str], *, replace: bool = False) -> None:
    """Record (atomically) that geoseg wrote ``entries`` in ``folder`` as a ``kind``.

    Entries already recorded are kept unless ``replace``.
    """
    folder = Path(folder)
    old = read_marker(folder)
    known = [] if replace or old is None else old["entries"]
    names = list(dict.fromkeys([*known, *entries]))
    clean_stale_temporaries(folder / MARKER_NAME)
    tmp = temp_name(folder / MARKER_NAME)
    tmp.write_text(json.dumps({"kind": kind, "written_by": "geoseg", "entries": names}, indent=1))
    os.replace(tmp, folder / MARKER_NAME)


def remove_owned(folder: str | Path, kind: str, *, flag: str = "--out", legacy: Legacy | None = None) -> list[str]:
    """Remove what geoseg wrote in ``folder`` (as its marker lists); user files stay.

    The folder itself and the marker are removed too when nothing else is left in it.
    Returns the names of the user's entries that were kept.
    """
    folder = Path(folder)
    owned = claim_folder(folder, kind, flag=flag, legacy=legacy)
    for name in owned:
        _remove(folder / name)
    if not folder.exists():
        return []
    kept = _user_entries(folder, ())
    if kept:
        mark_folder(folder, kind, [], replace=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            (folder / MARKER_NAME).unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()
    return kept


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_folder(final: str | Path, kind: str, *, flag: str = "--out", legacy: Legacy | None = None) -> Iterator[Path]:
    """Write a ``kind`` folder under a temporary name; on success it takes ``final``'s place.

    ``final`` is checked with :func:`claim_folder` before anything is written and again before
    the swap. Entries geoseg wrote there before are replaced; a user's own entries stay beside
    the new ones (a user entry with the name of a new one is refused, never overwritten). On
    error nothing changes at ``final``.
    """
    final = Path(final)
    claim_folder(final, kind, flag=flag, legacy=legacy)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(final)
    tmp = temp_name(final)
    tmp.mkdir()
    try:
        yield tmp
        entries = sorted(os.listdir(tmp))
        mark_folder(tmp, kind, entries, replace=True)
        previous = claim_folder(final, kind, flag=flag, legacy=legacy)
        user = _user_entries(final, previous) if final.is_dir() else []
        clash = sorted(set(user) & set(entries))
        if clash:
            raise OutputError(f"{flag} folder holds {', '.join(clash)}, which geoseg did not write", path=final,
                              hint="move those files away or choose another folder")
        if not user:  # all geoseg's: swap the folders (two renames), then drop the old one
            old = temp_name(final, "old")
            if final.exists():
                os.replace(final, old)
            os.replace(tmp, final)
            _remove(old)
        else:  # a user's files stay: replace geoseg's entries one by one
            for name in previous:
                _remove(final / name)
            for name in entries:
                os.replace(tmp / name, final / name)
            mark_folder(final, kind, entries, replace=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def legacy_entries(*required: str, optional: Iterable[str] = (), patterns: Iterable[str] = (),
                   contains: Mapping[str, str] | None = None) -> Legacy:
    """A ``legacy`` recogniser for folders geoseg wrote before markers existed.

    A folder is one when it holds all of ``required`` and each file named in ``contains``
    holds its text (geoseg's own wording, so that a user's ``README.txt`` or ``config.yaml``
    is never taken for geoseg's). geoseg then owns those names, the ``optional`` names present
    and entries matching ``patterns`` (globs).
    """

    def recognise(folder: Path) -> list[str] | None:
        if not all((folder / name).exists() for name in required):
            return None
        for name, text in (contains or {}).items():
            try:
                with open(folder / name, "rb") as fh:
                    if text.encode() not in fh.read(65536):
                        return None
            except OSError:
                return None
        found = [n for n in (*required, *optional) if (folder / n).exists()]
        return found + sorted(p.name for pattern in patterns for p in folder.glob(pattern))

    return recognise


# ----------------------------------------------------------------------------------- files
def written_by_geoseg(path: str | Path) -> bool:
    """Whether the file at ``path`` carries geoseg's signature (it may then be replaced).

    GeoTIFF: the ``GEOSEG_OUTPUT`` tag (or geoseg as TIFFTAG_SOFTWARE); ONNX: producer
    ``geoseg``; GeoPackage: ``GEOSEG_OUTPUT`` metadata; JSON: ``"written_by": "geoseg"``.
    Anything else (``.npy`` included) is never taken for geoseg's.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import rasterio

            with rasterio.open(path) as ds:
                tags = ds.tags()
            return SIGNATURE_TAG in tags or tags.get("TIFFTAG_SOFTWARE", "").startswith("geoseg")
        if suffix == ".onnx":
            import onnx

            return onnx.load(str(path), load_external_data=False).producer_name == "geoseg"
        if suffix == ".gpkg":
            import pyogrio

            info = pyogrio.read_info(path, layer=0)  # the data layer (QGIS styles live in a 2nd table)
            return SIGNATURE_TAG in {**(info.get("dataset_metadata") or {}), **(info.get("layer_metadata") or {})}
        if suffix == ".json":
            data = json.loads(path.read_text())
            items = data if isinstance(data, list) else [data]
            return bool(items) and all(isinstance(d, dict) and d.get("written_by") == "geoseg" for d in items)
    except Exception:  # unreadable: not a file geoseg can vouch for
        return False
    return False


def claim_file(path: str | Path, *, flag: str = "--out", suffixes: tuple[str, ...] = (),
               sidecars: Iterable[str | Path] = ()) -> Path:
    """Check that geoseg may write the file ``path``: a new name, or a file geoseg wrote.

    ``sidecars`` (e.g. ``.aux.xml``, ``.qml``) are written beside it: when ``path`` is new, an
    existing sidecar is a user's file and refused.

    Raises:
        OutputError: ``path`` is a folder, has the wrong suffix, exists and was not written by
            geoseg, or its folder is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} is an existing folder, not a file name", path=path,
                          hint=f"give a file name, e.g. {flag} {path / ('out' + (suffixes[0] if suffixes else '.tif'))}")
    if suffixes and path.suffix.lower() not in suffixes:
        raise OutputError(f"{flag} must end in {' or '.join(suffixes)}", path=path,
                          hint=f"e.g. {flag} {path.with_suffix(suffixes[0]).name}")
    if (path.exists() or path.is_symlink()) and not written_by_geoseg(path):
        raise OutputError(f"{flag} file exists and was not written by geoseg", path=path,
                          hint="choose another name, or move the file away yourself; geoseg never overwrites "
                               "files it did not write")
    if not path.exists():
        for extra in map(Path, sidecars):
            if extra.exists() or extra.is_symlink():
                raise OutputError(f"{flag} would overwrite {extra.name}, a file geoseg did not write", path=extra,
                                  hint="choose another output name, or move that file away yourself")
    _check_writable(_existing_parent(path.parent), path, flag)
    return path


def _check_writable(folder: Path, path: Path, flag: str) -> None:
    """Create and remove a probe file in ``folder`` (``os.access`` is wrong for root and read-only mounts)."""
    probe = temp_name(folder / ".geoseg-write-test", "probe")
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as err:
        raise OutputError(f"cannot write in {folder}: the folder is not writable ({err.strerror})", path=path,
                          hint=f"choose a writable location for {flag}") from None


def _existing_parent(folder: Path) -> Path:
    folder = folder.absolute()
    while not folder.exists():
        if folder.parent == folder:
            break
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError("a parent of the output is a file, not a folder", path=folder,
                          hint="choose an output path whose folders are folders")
    return folder


# ----------------------------------------------------------------------------------- inputs
def _resolved(path: str | Path) -> Path | None:
    text = str(path)
    if "://" in text or text.startswith("/vsi"):
        return None  # remote: cannot collide with a local output
    return Path(text).expanduser().resolve()


def check_not_input(outputs: Mapping[str, str | Path | None], inputs: Iterable[str | Path | None]) -> None:
    """Refuse an output that is, lies inside, or contains an input (symlinks resolved).

    Args:
        outputs: flag (as the user typed it, e.g. ``--out``) → output path.
        inputs: the command's input files and folders.
    """
    sources = [(p, _resolved(p)) for p in inputs if p is not None]
    for flag, out in outputs.items():
        if out is None:
            continue
        target = _resolved(out)
        if target is None:
            continue
        for given, src in sources:
            if src is None:
                continue
            if target == src:
                why = "would overwrite the input"
            elif src in target.parents:
                why = f"lies inside the input {given}"
            elif target in src.parents:
                why = f"contains the input {given}"
            else:
                continue
            raise OutputError(f"{flag} {why}: geoseg never writes over its own inputs", path=out,
                              hint=f"choose a {flag} outside the inputs")
