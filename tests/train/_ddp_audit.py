"""Run the geoseg CLI with an audit hook that records every filesystem write of this process.

``python tests/train/_ddp_audit.py AUDIT_DIR WATCHED_ROOT -- geoseg-args...``

Lightning's DDP launcher starts the other ranks by re-running this script with
``LOCAL_RANK`` set, so every rank records its writes (``open`` for writing, ``mkdir``,
``rename``/``replace``, ``remove``, ``rmdir``, ``rmtree``) under WATCHED_ROOT into
``AUDIT_DIR/rank<LOCAL_RANK>.log`` (one ``event<TAB>path`` per line). Python's audit events
(PEP 578) see writes from any library that goes through Python's ``open``/``os`` functions:
json, matplotlib, Lightning's checkpoint and CSV writers; native writers (safetensors) write
inside directories whose creation and rename are recorded.
"""

from __future__ import annotations

import os
import sys

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_PATH_EVENTS = {"os.mkdir": 0, "os.remove": 0, "os.rmdir": 0, "shutil.rmtree": 0, "os.truncate": 0,
                "shutil.copyfile": 1}


def _as_path(value: object) -> str | None:
    if isinstance(value, int) or value is None:
        return None
    try:
        return os.path.abspath(os.fsdecode(value))  # type: ignore[arg-type]
    except TypeError:
        return None


def install(audit_dir: str, root: str) -> None:
    """Record this process's writes under ``root`` in ``audit_dir/rank<LOCAL_RANK>.log``."""
    rank = os.environ.get("LOCAL_RANK", "0")  # the launching process is rank 0 (unset at start)
    os.makedirs(audit_dir, exist_ok=True)
    fd = os.open(os.path.join(audit_dir, f"rank{rank}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    root = os.path.abspath(root) + os.sep

    def record(event: str, path: str | None) -> None:
        if path is not None and path.startswith(root):
            os.write(fd, f"{event}\t{path[len(root):]}\n".encode())  # os.write raises no audit event

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS)
            if writing:
                record("open", _as_path(path))
        elif event == "os.rename":
            record("rename-from", _as_path(args[0]))
            record("rename-to", _as_path(args[1]))
        elif event in _PATH_EVENTS:
            record(event, _as_path(args[_PATH_EVENTS[event]]))

    sys.addaudithook(hook)


if __name__ == "__main__":
    audit_dir, watched, sep, *cli_args = sys.argv[1:]
    if sep != "--":
        raise SystemExit("usage: _ddp_audit.py AUDIT_DIR WATCHED_ROOT -- geoseg-args...")
    install(audit_dir, watched)
    from geoseg.cli.main import main

    main(cli_args)
