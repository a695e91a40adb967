"""The layer rule of docs/architecture.md: a package imports only packages of lower layers,
and no modules import each other in a cycle (within a package, which the layers do not order).

Every ``import geoseg.X`` and ``from geoseg.X import`` in the package counts, also those inside
functions (a lazy import is still a dependency; it only hides a cycle); imports under
``if TYPE_CHECKING:`` never run and do not count for cycles.
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


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_graph(root: Path) -> dict[str, set[str]]:
    """Module → the modules of ``root``'s package it imports (lazy imports too, not TYPE_CHECKING ones)."""
    paths = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(), str(path))
        type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                     and ast.unparse(node.test).endswith("TYPE_CHECKING") for b in node.body for n in ast.walk(b)}
        deps: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # `from geoseg.io import scene` imports the submodule; `from geoseg.io import Scene` the package
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in paths else node.module
                           for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in paths and t != name}
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle once, as the modules on it (a depth-first search for back edges)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                found.append(path[path.index(dep):] + [module] if dep in path else [dep, module])
            elif dep not in state:
                visit(dep, [*path, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    return found


def test_no_import_cycles() -> None:
    graph = _module_graph(PACKAGE)
    assert len(graph) > 100 and graph["geoseg.predict.api"]  # the scan sees the package
    assert _cycles(graph) == []


def test_a_lazy_import_cycle_is_found(tmp_path: Path) -> None:
    pkg = tmp_path / "geoseg" / "io"
    pkg.mkdir(parents=True)
    for init in (pkg.parent / "__init__.py", pkg / "__init__.py"):
        init.write_text("")
    (pkg / "scene.py").write_text("from geoseg.io.reader import read\n")
    (pkg / "reader.py").write_text("def read():\n    from geoseg.io import scene\n")
    (pkg / "offsets.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import geoseg.io.scene\n")
    (pkg / "layout.py").write_text("import geoseg.io.offsets\n")
    assert _cycles(_module_graph(pkg.parent)) == [["geoseg.io.reader", "geoseg.io.scene"]]
