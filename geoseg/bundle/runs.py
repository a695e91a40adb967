"""Finding a bundle: a bundle folder itself, or a training run (``MODEL_DIR``) and its best/final bundle.

A training run's ``MODEL_DIR`` holds ``best/`` (best validation score), ``final/`` (end of
training) and ``epoch_N/``; ``best`` is missing when no validation ran, and then ``final``
stands in for it. Every reader (predict, export, the pipeline's evaluate/predict/export
steps) goes through these functions.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from geoseg.bundle.config import CONFIG_NAME
from geoseg.bundle.files import ModelBundle, load_bundle
from geoseg.errors import CheckpointError

__all__ = ["BundleChoice", "BUNDLE_CHOICES", "is_bundle", "run_bundle_dir", "resolve_bundle_dir", "load_model_bundle"]

log = logging.getLogger(__name__)

BundleChoice = Literal["best", "final"]
BUNDLE_CHOICES: tuple[BundleChoice, ...] = ("best", "final")


def is_bundle(path: str | Path) -> bool:
    """Whether ``path`` holds a bundle's ``config.json`` (its weights are checked when it is loaded)."""
    return (Path(path) / CONFIG_NAME).is_file()


def run_bundle_dir(model_dir: str | Path, choice: BundleChoice = "best") -> Path:
    """The training run's ``choice`` bundle; ``final`` when it has no ``best`` (no validation ran)."""
    root = Path(model_dir)
    chosen = root / choice
    return chosen if is_bundle(chosen) else root / "final"


def resolve_bundle_dir(path: str | Path, *, flag: str = "--model") -> Path:
    """``path`` if it is a bundle, else the ``best`` (or ``final``) bundle of the training run there.

    ``flag`` is the option that gave ``path`` (named in the error; empty for an argument).

    Raises:
        CheckpointError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError("model directory does not exist", path=path,
                              hint=f"pass {flag + ' ' if flag else ''}MODEL_DIR written by geoseg train (MODEL_DIR/best)")
    if not is_bundle(path):
        for sub in BUNDLE_CHOICES:
            if is_bundle(path / sub):
                log.info("using the %s bundle of %s", sub, path)
                return path / sub
    return path


def load_model_bundle(model: ModelBundle | str | Path) -> ModelBundle:
    """A loaded bundle; a path may be the bundle itself or a training run holding ``best``/``final``.

    Raises:
        CheckpointError: the folder does not exist or holds no bundle.
    """
    if isinstance(model, ModelBundle):
        return model
    return load_bundle(resolve_bundle_dir(model))
