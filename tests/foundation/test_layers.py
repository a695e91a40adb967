"""The layer rule of docs/architecture.md: a package imports only packages of lower layers.

Every ``import geoseg.X`` and ``from geoseg.X import`` in the package counts, also those inside
functions (a lazy import is still a dependency; it only hides a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "geoseg"

# lowest first; a package may import any package of a lower layer, none of its own or a higher one
LAYERS: list[tuple[str, ...]] = [
    ("errors", "validity"),
    ("utils",),
    ("io", "models"),
    ("demo",),
    ("config",),
    ("features",),
    ("stitch",),
    ("tiling", "bundle"),
    ("data",),
    ("train", "predict"),
    ("export",),
    ("pipeline",),
    ("cli",),
    ("__main__",),
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _package_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.stem != "__init__" else "__init__"


def _imports(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(n.split(".")[1], node.lineno) for n in names if n.startswith("geoseg.")]
    return found


def _violations() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        pkg = _package_of(path)
        if pkg == "__init__":
            continue  # geoseg/__init__.py re-exports the public API
        for target, line in _imports(path):
            if target == pkg:
                continue
            if RANK[target] >= RANK[pkg]:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {pkg} imports {target}")
    return bad


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert not (packages | modules) - set(RANK), "add the new package to LAYERS and docs/architecture.md"


def test_imports_flow_downwards() -> None:
    assert _violations() == []


@pytest.mark.parametrize("module", ["geoseg.predict", "geoseg.bundle", "geoseg.export", "geoseg.io"])
def test_predictor_does_not_import_lightning(module: str) -> None:
    import subprocess
    import sys

    code = f"import sys, {module}; print(sorted(m for m in ('lightning', 'torchmetrics') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
