"""The code version of a step: a hash of the source files its stage actually runs.

``geoseg.__version__`` does not change when a source checkout is edited, so a step's skip
key also holds a digest of its code: the step's entry modules and every ``geoseg`` module
they import (statically, including imports inside functions, and the ``__init__`` of every
package on the way), plus the data files beside them (``features/recipes.yaml``). Editing
the tiler reruns ``tile`` and what reads it; editing the predictor leaves ``tile`` and
``train`` up to date. The digest works the same from a checkout and from an installed
wheel (no git needed).
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CodeVersion", "code_files", "code_version"]

DATA_SUFFIXES = (".yaml", ".yml", ".json")

# path -> (mtime_ns, size, sha256, imported module names); sources are parsed once per change
_CACHE: dict[Path, tuple[int, int, str, frozenset[str]]] = {}


@dataclass(frozen=True)
class CodeVersion:
    """The digest of a step's code and the files it covers (relative to the package's parent)."""

    digest: str
    files: tuple[str, ...]


def _package_root(package: str) -> Path:
    import importlib

    return Path(importlib.import_module(package).__file__).resolve().parent  # type: ignore[arg-type]


def _module_file(module: str, root: Path) -> Path | None:
    """The file of ``package.a.b`` under ``root`` (the package folder), or None for a non-module name."""
    parts = module.split(".")[1:]
    base = root.joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if parts and base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _parents(module: str) -> list[str]:
    """``a.b.c`` → ``a``, ``a.b`` (packages whose ``__init__`` runs on import)."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _scan(path: Path, module: str, package: str) -> tuple[str, frozenset[str]]:
    """sha256 of a source file and the ``package`` modules it imports (cached by mtime and size)."""
    st = path.stat()
    hit = _CACHE.get(path)
    if hit is not None and hit[:2] == (st.st_mtime_ns, st.st_size):
        return hit[2], hit[3]
    source = path.read_bytes()
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against this module's package
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import submodule`
    own = frozenset(n for n in names if n == package or n.startswith(package + "."))
    digest = hashlib.sha256(source).hexdigest()
    _CACHE[path] = (st.st_mtime_ns, st.st_size, digest, own)
    return digest, own


def code_files(entries: Iterable[str], package: str = "geoseg", root: Path | None = None) -> dict[str, Path]:
    """Every module that importing ``entries`` loads from ``package``: module name → file.

    Args:
        entries: module names (``geoseg.tiling``, ``geoseg.pipeline.fanout``...).
        package: the top-level package whose modules are followed (others are ignored).
        root: the package folder (default: where ``package`` is imported from).

    Raises:
        ValueError: an entry that is not a module of ``package``.
    """
    root = root if root is not None else _package_root(package)
    todo = []
    for entry in entries:
        if _module_file(entry, root) is None:
            raise ValueError(f"{entry!r} is not a module of {package} ({root})")
        todo.append(entry)
    found: dict[str, Path] = {}
    while todo:
        module = todo.pop()
        if module in found:
            continue
        path = _module_file(module, root)
        if path is None:  # `from pkg.mod import name`: a name, not a module
            continue
        found[module] = path
        _, imported = _scan(path, module, package)
        todo.extend(m for m in (*imported, *_parents(module)) if m not in found)
    return dict(sorted(found.items()))


def code_version(entries: Iterable[str], package: str = "geoseg", root: Path | None = None) -> CodeVersion:
    """The digest of the sources (and data files beside them) that :func:`code_files` finds."""
    root = root if root is not None else _package_root(package)
    modules = code_files(entries, package, root)
    digests = {path: _scan(path, module, package)[0] for module, path in modules.items()}
    for folder in {p.parent for p in modules.values()}:
        digests.update({f: hashlib.sha256(f.read_bytes()).hexdigest() for f in folder.iterdir()
                        if f.suffix in DATA_SUFFIXES and f.is_file()})
    h = hashlib.sha256()
    names = []
    for path in sorted(digests):
        name = path.relative_to(root.parent).as_posix()
        h.update(f"{name}\0{digests[path]}\n".encode())
        names.append(name)
    return CodeVersion(h.hexdigest(), tuple(names))
