"""pyproject.toml is the source of truth; environment.yml must list the same packages and bounds."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# PyPI name -> conda-forge name where they differ
CONDA_NAMES = {"torch": "pytorch"}


def _parse(spec: str) -> tuple[str, str | None]:
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(?:>=\s*([0-9][^,;\s]*))?", spec)
    assert match, spec
    return match.group(1).lower(), match.group(2)


def test_environment_yml_matches_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    conda = dict(_parse(d) for d in env["dependencies"] if isinstance(d, str))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == ["-e ."]
    deps = [*project["dependencies"], *project["optional-dependencies"]["stac"]]  # the stac extra too
    for dep in deps:
        name, bound = _parse(dep)
        conda_name = CONDA_NAMES.get(name, name)
        assert conda_name in conda, f"{conda_name} (from pyproject {dep!r}) missing in environment.yml"
        assert conda[conda_name] == bound, f"{conda_name}: environment.yml >={conda[conda_name]} vs pyproject >={bound}"
    pypi_names = {CONDA_NAMES.get(_parse(d)[0], _parse(d)[0]) for d in deps}
    extra = set(conda) - pypi_names - {"python", "pip"}
    assert not extra, f"environment.yml lists packages pyproject.toml does not: {sorted(extra)}"
    py_bound = project["requires-python"].removeprefix(">=")
    assert conda["python"] == py_bound


def test_console_script_and_typed_package() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["geoseg"] == "geoseg.cli.main:main"
    assert (REPO / "geoseg" / "py.typed").exists()
