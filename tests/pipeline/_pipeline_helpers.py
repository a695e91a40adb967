"""Helpers of the pipeline tests (also used by tests/qgis): small catalogs, tiny pipelines, one shared run."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from geoseg.demo import DEMO_CLASSES

DEMO_SIZE = 324  # a multiple of 6: 5 x 5 cubes of 64 px (+ a partial row/column)

# the tiny pipeline: the demo pipeline's chain with a tiny model and 2 epochs
TINY_STEPS: dict[str, Any] = {
    "tile": {"cube_size": 64, "overlap": 0, "min_valid": 0.2, "split_block": 1, "seed": 0, "workers": 1},
    "train": {"model": "unet", "encoder": "test_resnet", "epochs": 2, "batch_size": 8, "lr": 0.002,
              "num_workers": 0, "patience": None, "model_options": {"decoder_channels": [32, 16, 16, 8, 8]}},
    "evaluate": {"split": "test", "save_examples": 1},
    "predict": {"window": 128, "confidence": True},
    "export": {"format": "onnx"},
}


def write_catalog(path: Path, scenes: dict[str, list[tuple[str, int]]] | None = None) -> Path:
    """A catalog of demo datasets: name → [(scene id, seed)], every scene DEMO_SIZE px, generated on use."""
    scenes = scenes or {"demo": [("demo", 3)]}
    classes = [{"code": c, "name": n, "color": col} for c, n, col in DEMO_CLASSES]
    datasets = {
        name: {"recipe": "s2_24", "ignore_codes": [0], "classes": classes,
               "scenes": [{"id": sid, "demo": {"size": DEMO_SIZE, "seed": seed}} for sid, seed in entries]}
        for name, entries in scenes.items()
    }
    path.write_text(yaml.safe_dump({"schema_version": 1, "datasets": datasets}, sort_keys=False))
    return path


def tiny_pipeline(catalog: Path, name: str = "tiny", steps: tuple[str, ...] | None = None,
                  **changes: dict[str, Any]) -> dict[str, Any]:
    """The tiny pipeline as a dict; ``changes`` update single steps (e.g. ``predict={"dataset": "two"}``)."""
    chosen = copy.deepcopy({k: v for k, v in TINY_STEPS.items() if steps is None or k in steps})
    for step, values in changes.items():
        chosen.setdefault(step, {}).update(values)
    return {"schema_version": 1, "name": name, "catalog": str(catalog), "dataset": "demo", "steps": chosen}


def write_pipeline(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def shared_tiny_run(factory: pytest.TempPathFactory) -> Path:
    """The tiny pipeline run once per test session (every step); returns its run directory.

    Later callers (tests/pipeline, tests/qgis) run it again: every step is then up to date and
    skipped, which costs well under a second.
    """
    from geoseg.pipeline import run_pipeline

    root = factory.getbasetemp() / "shared-tiny-pipeline"
    root.mkdir(exist_ok=True)
    catalog = write_catalog(root / "catalog.yaml")
    pipeline = write_pipeline(root / "tiny.yaml", tiny_pipeline(catalog))
    run_pipeline(pipeline, run_dir=root / "runs" / "tiny", progress=False, echo=None)
    return root / "runs" / "tiny"
