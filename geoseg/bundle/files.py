"""Self-contained model directories: weights + ``config.json`` = everything predict needs.

Layout of a bundle directory (``MODEL_DIR/best``, ``MODEL_DIR/final``, ``MODEL_DIR/epoch_N``)::

    config.json          BundleConfig: architecture spec, recipe, channel names, class map
                         (training index → code, name, colour), normalisation, window size
    model.safetensors    the weights

The trainer writes bundles, the evaluator, predictor and ONNX exporter read them; nothing
else about the training run is needed to use a model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from geoseg.bundle.config import (
    CONFIG_NAME,
    RESTORE_HINT,
    WEIGHTS_NAME,
    BundleConfig,
    read_bundle_config,
)
from geoseg.errors import CheckpointError, GeosegError
from geoseg.utils.outputs import atomic_folder, legacy_entries

__all__ = ["ModelBundle", "save_bundle", "load_bundle", "BUNDLE_KIND"]

BUNDLE_KIND = "model bundle"
_LEGACY = legacy_entries(CONFIG_NAME, WEIGHTS_NAME, contains={CONFIG_NAME: '"channel_names"'})


class ModelBundle:
    """A loaded bundle: the model in eval mode and its config."""

    def __init__(self, model: torch.nn.Module, config: BundleConfig, path: Path | None = None):
        self.model, self.config, self.path = model, config, path

    @property
    def codes(self) -> np.ndarray:
        """Class code of each output channel (index → code)."""
        return np.array([c.code for c in self.config.classes], dtype=np.uint8)


def save_bundle(model: torch.nn.Module | Mapping[str, torch.Tensor], config: BundleConfig,
                directory: str | Path) -> Path:
    """Write weights and config atomically to ``directory`` (replacing it).

    ``model`` is the model or its state dict (e.g. gathered from a sharded strategy).
    """
    from safetensors.torch import save_file

    sd = model if isinstance(model, Mapping) else model.state_dict()
    state = {k: v.detach().cpu().contiguous() for k, v in sd.items()}
    with atomic_folder(directory, BUNDLE_KIND, legacy=_LEGACY) as tmp:
        save_file(state, str(tmp / WEIGHTS_NAME))
        (tmp / CONFIG_NAME).write_text(json.dumps(config.model_dump(mode="json"), indent=2))
    return Path(directory)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:160]


def load_bundle(directory: str | Path, device: str | torch.device = "cpu") -> ModelBundle:
    """Rebuild the model from ``config.json`` alone and load its weights (eval mode)."""
    from safetensors.torch import load_file

    from geoseg.models import create_model

    d = Path(directory)
    cfg_path, weights = d / CONFIG_NAME, d / WEIGHTS_NAME
    if cfg_path.is_file() != weights.is_file():  # half a bundle: name the missing file
        missing = weights if cfg_path.is_file() else cfg_path
        raise CheckpointError(f"damaged model bundle: {missing.name} is missing", path=missing, hint=RESTORE_HINT)
    if not cfg_path.is_file() or not weights.is_file():
        raise CheckpointError(
            f"not a model directory (needs {CONFIG_NAME} and {WEIGHTS_NAME})",
            path=d,
            hint="pass MODEL_DIR/best (or final, epoch_N) written by geoseg train",
        )
    config = read_bundle_config(d)
    try:
        model = create_model(**config.model.model_dump(), pretrained=False)
    except GeosegError:
        raise
    except Exception as err:  # e.g. an option the architecture does not take
        raise CheckpointError(f"{CONFIG_NAME} does not describe a model this geoseg can build "
                              f"({type(err).__name__}: {_first_line(err)})", path=cfg_path,
                              hint=RESTORE_HINT) from None
    try:  # safetensors raises its own error type (SafetensorError) for a cut or garbled file
        state = load_file(str(weights), device="cpu")
    except Exception as err:
        raise CheckpointError(f"damaged model bundle: {WEIGHTS_NAME} cannot be read ({_first_line(err)})",
                              path=weights, hint=RESTORE_HINT) from None
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"weights do not match the architecture ({str(err).splitlines()[0]})", path=weights) from None
    model.to(device).eval()
    return ModelBundle(model, config, d)
