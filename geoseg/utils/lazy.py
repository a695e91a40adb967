"""Lazily imported package exports (PEP 562): ``import geoseg.train`` costs nothing until used.

A package lists ``name → module`` and gets a module ``__getattr__`` that imports the module on
first access. So importing a light submodule (``geoseg.train.config`` for the CLI's options)
does not load torch and Lightning through the package's ``__init__``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: ``exports[name]`` is the module defining ``name``."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return __getattr__
