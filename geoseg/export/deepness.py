"""What the Deepness QGIS plugin does with an ONNX segmentation model, as plain functions.

Deepness (PUTvision/qgis-plugin-deepness) reads a raster tile ``(H, W, C)``, divides it by
255, standardises it per channel with the model's ``standardization_mean``/``_std``
metadata, transposes it to ``(N, C, H, W)`` and runs the model; the output class value of a
pixel is ``argmax + 1``. These functions reproduce those steps so that tests (and users) can
check an exported model exactly as the plugin will run it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from geoseg.errors import ConfigError, MissingFileError

__all__ = [
    "DEEPNESS_SCALE",
    "METADATA_KEYS",
    "deepness_preprocess",
    "read_metadata",
    "run_like_deepness",
    "require_onnxruntime",
]

DEEPNESS_SCALE = 255.0  # Deepness divides every raw value by this before standardising
METADATA_KEYS = ("model_type", "class_names", "resolution", "tile_size", "tiles_size", "tiles_overlap",
                 "standardization_mean", "standardization_std", "seg_thresh", "seg_small_segment")


def require_onnxruntime() -> Any:
    """Import onnx and onnxruntime or raise a one-line ConfigError saying how to install them."""
    try:
        import onnx  # noqa: F401  (writes the metadata)
        import onnxruntime
    except ImportError as err:
        raise ConfigError(f"{err.name} is not installed (needed for ONNX export)",
                          hint='pip install "geoseg[onnx]"') from None
    return onnxruntime


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ONNX ``metadata_props`` of ``path``, each value JSON-decoded (as Deepness reads them)."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise MissingFileError("ONNX model does not exist", path=p, hint="check the path (geoseg export --out)")
    model = onnx.load(str(p), load_external_data=False)
    return {prop.key: json.loads(prop.value) for prop in model.metadata_props}


def deepness_preprocess(tiles: np.ndarray, mean: Any, std: Any) -> np.ndarray:
    """Deepness's preprocessing: ``(raw / 255 - mean) / std`` per channel, NHWC → NCHW float32.

    Args:
        tiles: raw raster values, ``(H, W, C)`` or ``(N, H, W, C)`` (channels last, as QGIS
            hands them to the plugin).
        mean: per-channel ``standardization_mean`` (metadata).
        std: per-channel ``standardization_std`` (metadata).

    Returns:
        ``(N, C, H, W)`` float32.
    """
    batch = tiles[None] if tiles.ndim == 3 else tiles
    scaled = np.float32(batch * (1.0 / DEEPNESS_SCALE))
    standard = (scaled - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(np.transpose(standard, (0, 3, 1, 2)), dtype=np.float32)


def run_like_deepness(path: str | Path, tiles: np.ndarray, session: Any = None) -> np.ndarray:
    """Run the ONNX model ``path`` on raw tiles exactly as Deepness does.

    Args:
        path: the exported model.
        tiles: raw values ``(H, W, C)`` or ``(N, H, W, C)``; H and W must be the model's tile size.
        session: an existing ``onnxruntime.InferenceSession`` of ``path`` (optional).

    Returns:
        The model output ``(N, K, H, W)``: class probabilities.
    """
    ort = require_onnxruntime()
    meta = read_metadata(path)
    if session is None:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = deepness_preprocess(tiles, meta["standardization_mean"], meta["standardization_std"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: batch})[0]
