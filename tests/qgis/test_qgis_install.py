"""install_qgis.sh, the one QGIS install recipe (.ci/run and the QGIS test's fixture), run against
fake ``apt-get``/``dpkg``/``id`` commands: the install branch is exercised without touching the system."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "tests" / "qgis" / "install_qgis.sh"
PACKAGES = ["python3-qgis", "qgis-providers", "qgis"]
INSTALL = f"install -y -q --no-install-recommends {' '.join(PACKAGES)}"

FAKE_APT = """#!/bin/bash
echo "${DEBIAN_FRONTEND:-interactive}|$*" >> "$FAKE_ROOT/calls.log"
if [ "$1" = update ] && [ -n "${FAKE_UPDATE_FAILS:-}" ]; then exit 100; fi
if [ "$1" = install ]; then
  touch "$FAKE_ROOT/installed"
  mkdir -p "$QGIS_PREFIX/bin"
  for f in python3 qgis_process.bin; do printf '#!/bin/sh\\n' > "$QGIS_PREFIX/bin/$f"; chmod +x "$QGIS_PREFIX/bin/$f"; done
fi
"""
FAKE_DPKG = """#!/bin/bash
echo "dpkg|$*" >> "$FAKE_ROOT/dpkg.log"
[ "$1" = -s ] && [ -e "$FAKE_ROOT/installed" ]
"""
FAKE_ID = """#!/bin/bash
[ "$1" = -u ] && echo "$FAKE_UID"
"""


def _fake_system(tmp_path: Path, uid: int = 0, installed: bool = False, update_fails: bool = False) -> dict[str, str]:
    """A PATH whose apt-get, dpkg and id are recorders; returns the environment to run the script with."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    for name, text in {"apt-get": FAKE_APT, "dpkg": FAKE_DPKG, "id": FAKE_ID}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    prefix = tmp_path / "usr"
    if installed:
        (tmp_path / "installed").touch()
        (prefix / "bin").mkdir(parents=True)
        for f in ("python3", "qgis_process.bin"):
            (prefix / "bin" / f).write_text("#!/bin/sh\n")
            (prefix / "bin" / f).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_ROOT": str(tmp_path), "FAKE_UID": str(uid),
           "QGIS_PREFIX": str(prefix), "LANG": "C.UTF-8"}  # no DEBIAN_FRONTEND: the script must set it
    if update_fails:
        env["FAKE_UPDATE_FAILS"] = "1"
    return env


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)


def _calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_missing_qgis_is_installed_with_update_first_and_non_interactive_apt(tmp_path: Path) -> None:
    env = _fake_system(tmp_path)
    assert _run(env, "--check").returncode == 1
    done = _run(env)
    assert done.returncode == 0, done.stderr
    # apt-get update first, then the install of exactly QGIS.md's packages, non-interactive
    assert _calls(tmp_path) == ["interactive|update -q", f"noninteractive|{INSTALL}"]
    dpkg = (tmp_path / "dpkg.log").read_text().splitlines()
    assert dpkg and all(line == f"dpkg|-s {' '.join(PACKAGES)}" for line in dpkg)
    assert _run(env, "--check").returncode == 0  # and the check agrees afterwards


def test_installed_qgis_is_left_alone(tmp_path: Path) -> None:
    env = _fake_system(tmp_path, installed=True)
    done = _run(env)
    assert done.returncode == 0 and "QGIS is installed" in done.stdout
    assert _calls(tmp_path) == []


def test_a_missing_binary_counts_as_missing(tmp_path: Path) -> None:
    """dpkg says installed but qgis_process.bin is gone (a broken install): install again."""
    env = _fake_system(tmp_path, installed=True)
    (tmp_path / "usr" / "bin" / "qgis_process.bin").unlink()
    assert _run(env, "--check").returncode == 1
    assert _run(env).returncode == 0 and _calls(tmp_path)[-1] == f"noninteractive|{INSTALL}"


def test_not_root_fails_with_the_command_to_run(tmp_path: Path) -> None:
    env = _fake_system(tmp_path, uid=1000)
    done = _run(env)
    assert done.returncode == 2 and _calls(tmp_path) == []
    assert done.stderr.strip() == f"QGIS is missing and installing it needs root: apt-get install {' '.join(PACKAGES)}"


def test_failed_update_stops_before_the_install(tmp_path: Path) -> None:
    env = _fake_system(tmp_path, update_fails=True)
    assert _run(env).returncode == 3
    assert _calls(tmp_path) == ["interactive|update -q"]


def test_dry_run_prints_the_commands_and_changes_nothing(tmp_path: Path) -> None:
    env = _fake_system(tmp_path, uid=1000, installed=True)  # as if missing, even when installed / not root
    done = _run(env, "--dry-run")
    assert done.returncode == 0
    assert done.stdout.splitlines() == [
        "apt-get update -q",
        f"env DEBIAN_FRONTEND=noninteractive apt-get {INSTALL}",
    ]
    assert _calls(tmp_path) == []
    assert _run(env, "--bogus").returncode == 64


def test_packages_are_those_of_qgis_md_and_ci_uses_the_script() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "tests/qgis/install_qgis.sh" in ci and "apt-get" not in ci  # one install recipe
    assert re.search(r"^export CI=", ci, re.M)  # the QGIS test fails instead of skipping in CI
    guide = REPO.parent / "shared" / "QGIS.md"
    if not guide.is_file():
        pytest.skip(f"{guide} is absent (place ../shared beside the repo)")
    match = re.search(r"apt-get install -y --no-install-recommends ([a-z0-9 \-]+)`", guide.read_text())
    assert match, "QGIS.md no longer shows the apt-get install line"
    assert sorted(match.group(1).split()) == sorted(PACKAGES)
