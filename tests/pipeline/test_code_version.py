"""A step's code version: the digest of the source files its stage imports; editing them reruns the step."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from geoseg.pipeline.code import code_files, code_version


def _package(root: Path) -> Path:
    """A small package: a → b (inside a function), sub (relative imports, a data file), c unrelated."""
    pkg = root / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": '"""pkg."""\n',
        "a.py": "import os\n\n\ndef f():\n    from pkg.b import g\n\n    return g()\n",
        "b.py": "from pkg import sub\n\n\ndef g():\n    return sub.VALUE\n",
        "c.py": "import pkg.a\n",
        "sub/__init__.py": "from .d import VALUE\n",
        "sub/d.py": "from . import e\n\nVALUE = 1\n",
        "sub/e.py": "",
        "sub/table.yaml": "k: 1\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    return pkg


def test_import_closure_follows_lazy_relative_and_parent_imports(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    assert list(code_files(["pkg.a"], "pkg", pkg)) == ["pkg", "pkg.a", "pkg.b", "pkg.sub", "pkg.sub.d", "pkg.sub.e"]
    assert list(code_files(["pkg.sub.e"], "pkg", pkg)) == ["pkg", "pkg.sub", "pkg.sub.d", "pkg.sub.e"]
    version = code_version(["pkg.a"], "pkg", pkg)
    assert "pkg/sub/table.yaml" in version.files and "pkg/c.py" not in version.files
    with pytest.raises(ValueError, match="not a module of pkg"):
        code_files(["pkg.nope"], "pkg", pkg)


def test_digest_changes_with_the_code_it_covers_only(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    before = code_version(["pkg.a"], "pkg", pkg).digest
    assert code_version(["pkg.a"], "pkg", pkg).digest == before  # stable
    (pkg / "c.py").write_text("import pkg.a\nX = 2\n")  # not imported by pkg.a
    assert code_version(["pkg.a"], "pkg", pkg).digest == before
    for name, text in [("b.py", "from pkg import sub\n\n\ndef g():\n    return sub.VALUE + 1\n"),
                       ("sub/e.py", "E = 1\n"), ("sub/table.yaml", "k: 2\n")]:
        (pkg / name).write_text(text)
        after = code_version(["pkg.a"], "pkg", pkg).digest
        assert after != before, name
        before = after
    # a new import is followed at once
    (pkg / "b.py").write_text("import pkg.c\n")
    assert "pkg.c" in code_files(["pkg.a"], "pkg", pkg)


def test_each_step_hashes_its_own_stage() -> None:
    from geoseg.pipeline.steps import STEPS

    files = {name: set(step.code_version().files) for name, step in STEPS.items()}
    assert {"geoseg/tiling/tiler.py", "geoseg/features/kernel.py", "geoseg/io/reader.py",
            "geoseg/features/recipes.yaml"} <= files["tile"]
    assert not any(f.startswith(("geoseg/train/", "geoseg/models/", "geoseg/predict/")) for f in files["tile"])
    assert {"geoseg/train/runner.py", "geoseg/train/evaluation.py", "geoseg/models/unet.py",
            "geoseg/data/datamodule.py"} <= files["train"] == files["evaluate"]
    assert not any(f.startswith(("geoseg/predict/", "geoseg/stitch/", "geoseg/export/")) for f in files["train"])
    assert {"geoseg/predict/__init__.py", "geoseg/stitch/__init__.py"} <= files["predict"]
    assert "geoseg/export/onnx.py" in files["export"] and "geoseg/export/onnx.py" not in files["predict"]
    assert not any(f.startswith(("geoseg/pipeline/", "geoseg/cli/")) for fs in files.values() for f in fs)


def test_edited_stage_code_reruns_that_step_and_its_dependents_only(tiny_run: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import geoseg.pipeline.steps as steps
    from geoseg.pipeline import run_pipeline
    from geoseg.pipeline.code import CodeVersion

    run_dir = tmp_path / "runs" / "tiny"
    shutil.copytree(tiny_run, run_dir)
    real = steps.code_version

    def edited_export(entries):  # as if geoseg/export/onnx.py had been edited since the shared run
        version = real(entries)
        return CodeVersion("0" * 64, version.files) if tuple(entries) == ("geoseg.export",) else version

    monkeypatch.setattr(steps, "code_version", edited_export)
    lines: list[str] = []
    result = run_pipeline(tiny_run.parents[1] / "tiny.yaml", run_dir=run_dir, progress=False, echo=lines.append)
    assert result.ran == ["export"] and result.skipped == ["tile", "train", "evaluate", "predict"]
    assert "[export] running (code or version changed)" in lines
    manifest = json.loads((run_dir / "export" / "manifest.json").read_text())
    assert manifest["code"]["digest"] == "0" * 64 and manifest["code"]["files"] > 10
    monkeypatch.setattr(steps, "code_version", real)  # the code as it is: export reruns, nothing else
    assert run_pipeline(tiny_run.parents[1] / "tiny.yaml", run_dir=run_dir, progress=False, echo=None).ran == ["export"]
