"""Step manifests and input fingerprints: what decides whether a step reruns.

Every step directory holds ``config.yaml`` (the resolved step configuration) and
``manifest.json``::

    {"step": "train", "status": "running" | "failed" | "complete",
     "key": "<sha256 of params + inputs + geoseg version + code digest>",
     "params": {...}, "inputs": {...}, "geoseg_version": "...", "code": {"digest": ..., "files": N},
     "run_id": "<new on every completed execution>", "started": ..., "finished": ...,
     "seconds": ..., "outputs": {...}, "summary": "...", "progress": {...}}

A step is skipped when its manifest is ``complete`` with the same key and its outputs
exist. Downstream steps list their upstream steps' ``run_id`` among their inputs, so a
step that reran makes everything that reads it rerun too.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from geoseg import __version__
from geoseg.io.fingerprint import file_fingerprint as fingerprint
from geoseg.io.raster import is_virtual
from geoseg.utils.atomic import write_text_atomic

__all__ = [
    "MANIFEST_NAME",
    "CONFIG_NAME",
    "digest",
    "now",
    "new_run_id",
    "read_manifest",
    "write_manifest",
    "write_config",
    "write_yaml",
    "file_fingerprint",
    "scene_fingerprints",
    "step_key",
]

MANIFEST_NAME = "manifest.json"
CONFIG_NAME = "config.yaml"


def digest(obj: Any) -> str:
    """A stable sha256 of a JSON-serialisable object (keys sorted)."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def step_key(params: dict[str, Any], inputs: dict[str, Any], code: str) -> str:
    """The key of one execution of a step: parameters, input fingerprints and code version.

    Args:
        params: the step's content parameters.
        inputs: fingerprints of its scenes and the ``run_id`` of the steps it reads.
        code: digest of the stage's source files (``geoseg.pipeline.code.code_version``).
    """
    return digest({"params": params, "inputs": inputs, "geoseg_version": __version__, "code": code})


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_id() -> str:
    """A fresh random run id (32 hex digits)."""
    return uuid.uuid4().hex


def read_manifest(step_dir: Path) -> dict[str, Any] | None:
    """The step's manifest, or None when absent or unreadable (then the step simply reruns)."""
    path = step_dir / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def write_manifest(step_dir: Path, manifest: dict[str, Any]) -> None:
    """Write the step's manifest atomically (JSON)."""
    write_text_atomic(step_dir / MANIFEST_NAME, json.dumps(manifest, indent=2, default=str))


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as YAML atomically, keys in the given order."""
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))


def write_config(step_dir: Path, config: dict[str, Any]) -> None:
    """The step's resolved configuration, ``STEP_DIR/config.yaml``."""
    write_yaml(step_dir / CONFIG_NAME, config)


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """Path, size and modification time of a file (of every file under a local folder; remote and
    zipped files as :func:`geoseg.io.fingerprint.file_fingerprint` identifies them)."""
    if not is_virtual(path) and Path(path).is_dir():
        files = sorted(f for f in Path(path).rglob("*") if f.is_file())
        return {"path": str(path), "files": [file_fingerprint(f) for f in files]}
    return fingerprint(path)


def scene_fingerprints(catalog: Any, dataset: str, scene_ids: list[str] | None = None) -> dict[str, Any]:
    """The definition and files of a dataset's scenes (and labels) — what tiling and prediction read.

    Opening the scenes generates the demo scene on first use; the files are then fingerprinted
    like any other.
    """
    from geoseg.config import dataset_scenes

    ds = catalog.dataset(dataset)
    scenes = [cs for cs in dataset_scenes(catalog, dataset) if scene_ids is None or cs.scene.scene_id in scene_ids]
    out = []
    for cs in scenes:
        for scene in cs.date_scenes:  # a time series: every date
            files = sorted({b.path for b in scene.bands.values()} | {x.path for x in (scene.scl, scene.mask) if x})
            labels = None
            if cs.labels is not None:
                labels = {**file_fingerprint(cs.labels.file), "column": cs.labels.column,
                          "layer": cs.labels.layer}
            out.append({"scene_id": scene.scene_id, "offset": scene.offset.offset,
                        "files": [file_fingerprint(f) for f in files], "labels": labels})
    return {"dataset": dataset, "definition": ds.model_dump(mode="json"), "scenes": out}
