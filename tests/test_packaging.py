"""Packaging: runtime dependencies are what geoseg/ imports; environment.yml mirrors pyproject.toml."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# PyPI name -> conda-forge name where they differ
CONDA_NAMES = {"torch": "pytorch", "huggingface-hub": "huggingface_hub"}
# runtime dependencies geoseg needs without importing them: another library imports them for geoseg
USED_THROUGH = {
    "pyarrow": "geopandas' GeoParquet (the CubeStore index)",
    "onnxscript": "torch.onnx's dynamo exporter (geoseg export --exporter dynamo)",
    "requests": "torchgeo <= 0.8 (torchgeo.datasets.openstreetmap, imported by torchgeo.models) without declaring it",
}
# imported by geoseg/ but optional: an extra, or found with importlib.util.find_spec first
OPTIONAL_IMPORTS = {"pystac_client", "deepspeed"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


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


def _imported_modules() -> dict[str, str]:
    """Top-level third-party modules imported anywhere in geoseg/ (lazy imports too) -> one place."""
    found: dict[str, str] = {}
    for path in sorted((REPO / "geoseg").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("geoseg", "__future__", "_typeshed"):
                    found.setdefault(top, f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def test_runtime_dependencies_are_what_geoseg_imports() -> None:
    """Every import of geoseg/ is a declared dependency, and every dependency is imported."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {_canonical(_parse(d)[0]) for d in project["dependencies"]}
    dists = importlib.metadata.packages_distributions()
    covered: set[str] = set()
    for module, where in _imported_modules().items():
        if module in OPTIONAL_IMPORTS:
            assert not {_canonical(d) for d in dists.get(module, [])} & declared, f"{module} is optional"
            continue
        names = {_canonical(d) for d in dists.get(module, [])}
        assert names, f"{module} (imported at {where}) is not installed: which distribution provides it?"
        assert names & declared, f"{where} imports {module} ({sorted(names)}), not in pyproject dependencies"
        covered |= names & declared
    assert set(USED_THROUGH) <= declared, f"needed through other libraries: {sorted(set(USED_THROUGH) - declared)}"
    unused = declared - covered - set(USED_THROUGH)
    assert not unused, f"runtime dependencies geoseg/ never imports (move them to an extra): {sorted(unused)}"


def test_test_and_bench_packages_are_extras() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {_canonical(_parse(d)[0]) for d in project["dependencies"]}
    extras = project["optional-dependencies"]
    for extra, must in (("test", {"pytest", "rio-cogeo"}), ("bench", {"scikit-learn"})):
        names = {_canonical(_parse(d)[0]) for d in extras[extra]}
        assert must <= names, f"[{extra}] lacks {sorted(must - names)}"
        assert not names & runtime, f"[{extra}] packages are also runtime dependencies: {sorted(names & runtime)}"
