"""Lazily exported packages: every public name resolves, to the same object each time.

``geoseg.train``, ``geoseg.tiling``, ``geoseg.predict`` and ``geoseg.export`` import their names on first use
(``geoseg.utils.lazy``), so that the CLI can read a stage's options without loading torch. A
public name equal to a submodule's name would be shadowed by the module once that module is
imported; this test keeps that from happening again.
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import types

import pytest

LAZY = ["geoseg.train", "geoseg.tiling", "geoseg.predict", "geoseg.export"]


@pytest.mark.parametrize("name", LAZY)
def test_every_public_name_resolves_to_the_same_object(name):
    package = importlib.import_module(name)
    submodules = {m.name for m in pkgutil.iter_modules(package.__path__)}
    for export in package.__all__:
        assert export not in submodules, f"{name}.{export} is also a submodule"
        first = getattr(package, export)
        assert not isinstance(first, types.ModuleType)
        assert getattr(package, export) is first
    with pytest.raises(AttributeError):
        package.no_such_name  # noqa: B018


def test_reading_options_does_not_load_torch():
    code = ("import sys; import geoseg.train.config, geoseg.train.evaluate_options, geoseg.predict.options, "
            "geoseg.tiling.options, geoseg.export.options, geoseg.cli.train_cmds, geoseg.cli.predict_cmds, "
            "geoseg.cli.tile_cmds, geoseg.cli.export_cmds; "
            "print('torch' in sys.modules, 'lightning' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
