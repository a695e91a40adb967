"""The hostile-input harness shared by every reliability test.

Each case runs the real ``geoseg`` command in a subprocess and checks what a user sees and
keeps: the exit code, exactly one ``error:`` line naming the file or option, no traceback,
nothing under the final output name, and every pre-existing file byte-identical.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str | Path, cwd: Path | None = None, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``geoseg ARGS`` as a user runs it (a fresh interpreter, output captured)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "geoseg", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=timeout, env=full_env)


def run_inproc(*args: str | Path) -> subprocess.CompletedProcess:
    """``geoseg ARGS`` through the CLI's ``main`` in this process (what a user sees on stdout/stderr).

    An exception escaping ``main`` is what a user would see as a traceback: it is written to
    the captured stderr with exit code 1, so :func:`assert_refused` reports it.
    """
    from geoseg.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException:  # noqa: BLE001 - shown like the interpreter would show it
            err.write(traceback.format_exc())
            code = 1
    return subprocess.CompletedProcess([str(a) for a in args], code, out.getvalue(), err.getvalue())


def assert_refused(result: subprocess.CompletedProcess, *names: str | Path, rc: int = 2) -> str:
    """Exit code ``rc``, no traceback, exactly one ``error:`` line on stderr that names each of ``names``.

    Other stderr lines (log output, progress) are allowed; a second error line is not.
    Returns the error line.
    """
    both = result.stdout + result.stderr
    assert "Traceback" not in both, f"traceback shown:\n{both}"
    assert result.returncode == rc, f"exit code {result.returncode}, expected {rc}:\n{both}"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"expected exactly one error line, got {len(errors)}:\n{result.stderr}"
    line = errors[0]
    for name in names:
        assert str(name) in line, f"error line does not name {name!r}: {line}"
    return line


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (files or folders), plus every folder, keyed by path."""
    found: dict[str, str] = {}
    for root in roots:
        root = Path(root)
        if root.is_file():
            found[str(root)] = hashlib.sha256(root.read_bytes()).hexdigest()
            continue
        for dirpath, _dirnames, filenames in os.walk(root):
            found[dirpath] = "<dir>"
            for name in filenames:
                path = Path(dirpath, name)
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def assert_unchanged(before: dict[str, str], *roots: Path) -> None:
    """Every file and folder recorded by :func:`snapshot` still exists with the same bytes."""
    after = snapshot(*roots) if roots else {}
    for path, digest in before.items():
        p = Path(path)
        assert p.exists(), f"user data lost: {path} was deleted"
        if digest == "<dir>":
            continue
        now = after.get(path) or hashlib.sha256(p.read_bytes()).hexdigest()
        assert now == digest, f"user data changed: {path}"


def assert_nothing_new(folder: Path, before: dict[str, str]) -> None:
    """No file or folder appeared under ``folder`` (no half-written output, no temporaries)."""
    after = snapshot(folder)
    new = sorted(set(after) - set(before))
    assert not new, f"left behind: {new}"


def user_files(folder: Path, names: Iterable[str] = ("thesis.txt", "notes/field.csv")) -> dict[str, str]:
    """Put a user's own files into ``folder`` and return the snapshot of those files alone."""
    paths = [folder / name for name in names]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"my own work: {path.name}\n")
    return snapshot(*paths)


@pytest.fixture(scope="session")
def demo_scene_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo scene written once (per-band files, SCL, labels); copy it before damaging it."""
    from geoseg.demo import generate_demo_scene

    return generate_demo_scene(tmp_path_factory.mktemp("rel-demo") / "demo", size=120, seed=5, progress=False).scene.parent


@pytest.fixture()
def demo_copy(demo_scene_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the demo folder (scene folder + labels.tif + README.txt)."""
    dst = tmp_path / "demo"
    shutil.copytree(demo_scene_dir, dst)
    return dst


def scene_of(demo_folder: Path) -> Path:
    """The band-file folder of a demo copy."""
    return next(p for p in demo_folder.iterdir() if p.is_dir())


def band_of(scene: Path, band: str) -> Path:
    return next(scene.glob(f"*_{band}_*.tif"))


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut ``path`` to a fraction of its size (the header still opens, the data does not read)."""
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])
