"""Single-file atomic writes (geoseg.utils.atomic): every writer of a small file goes through them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from geoseg.utils.atomic import write_json_atomic, write_text_atomic


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_write_json_and_text_atomic(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "manifest.json"
    write_json_atomic(path, {"complete": False}, fsync=True)  # missing folders are made
    assert path.read_text() == '{\n "complete": false\n}\n'
    stale = path.with_name(f".manifest.tmp-{_dead_pid()}-0123abcd.json")  # left by a killed writer
    stale.write_text("{")
    write_json_atomic(path, {"when": Path("x")}, indent=2, default=str)
    assert json.loads(path.read_text()) == {"when": "x"}
    assert sorted(os.listdir(path.parent)) == ["manifest.json"]
    write_text_atomic(tmp_path / "config.yaml", "a: 1\n")
    assert (tmp_path / "config.yaml").read_text() == "a: 1\n"


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    write_json_atomic(path, {"n": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"n": object()})  # not serialisable: fails before the temporary exists
    with pytest.raises(TypeError):
        write_text_atomic(path, 3)  # type: ignore[arg-type]  # fails while writing the temporary
    assert json.loads(path.read_text()) == {"n": 1} and os.listdir(tmp_path) == ["stats.json"]
