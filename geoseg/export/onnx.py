"""``export_onnx``: a model bundle → an ONNX model that the Deepness QGIS plugin runs as is.

The graph takes what Deepness feeds it — the 24-channel feature stack divided by 255 and
standardised with the ``standardization_mean``/``_std`` metadata, which are our bundle's
normalisation (from the CubeStore's ``stats.json``) divided by 255, so that
``(v / 255 - m / 255) / (s / 255) == (v - m) / s`` — and returns softmax probabilities.

Our normalisation keeps invalid pixels at exactly 0 (the masked-cube convention); Deepness
standardises every pixel, turning an invalid pixel (all channels 0) into ``-mean / std``.
With ``mask_invalid`` (the default) the graph re-applies the zero mask itself: it recovers the
raw values of the first ``mask_channels`` channels (``x * s + m``), marks a pixel invalid
by the one rule (:func:`geoseg.validity.valid_mask`; the recovered values carry rounding
error, hence :data:`VALID_TOLERANCE` instead of 0), zeroes its input (as in training) and its
output probabilities (as the predictor does). The result equals the bundle's
:class:`~geoseg.bundle.ModelRunner` probabilities (``softmax(model(normalize(x)))``) on valid
pixels and 0 on invalid ones.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from typing_extensions import override

from geoseg import __version__
from geoseg.bundle import ModelBundle, ModelRunner, load_model_bundle
from geoseg.errors import ConfigError, ModelError
from geoseg.export.deepness import DEEPNESS_SCALE, require_onnxruntime, run_like_deepness
from geoseg.utils.atomic import atomic_path
from geoseg.utils.outputs import check_not_input, claim_file
from geoseg.validity import valid_mask

__all__ = ["DeepnessGraph", "OnnxExport", "export_onnx", "deepness_metadata", "reference_probabilities",
           "MAX_OPSET", "VALID_TOLERANCE"]

log = logging.getLogger(__name__)

MAX_OPSET = 20  # Deepness pins onnxruntime 1.17
MIN_OPSET = 13
VALID_TOLERANCE = 1e-5  # valid_mask's tolerance on raw values recovered in the graph (rounding error)
Exporter = Literal["torchscript", "dynamo"]


class DeepnessGraph(nn.Module):
    """The bundle's model behind Deepness's standardisation: zero mask in, softmax out.

    Args:
        model: the segmentation model (eval mode); a ``(mask, label)`` output keeps the mask.
        mean: per-channel mean of the bundle's normalisation (raw units).
        std: per-channel std of the bundle's normalisation (raw units).
        mask_channels: leading channels that are all 0 at invalid pixels.
        mask_invalid: re-apply the zero mask (input and output) inside the graph.
    """

    mean: torch.Tensor  # buffers
    std: torch.Tensor

    def __init__(self, model: nn.Module, mean: list[float], std: list[float], mask_channels: int,
                 mask_invalid: bool = True) -> None:
        super().__init__()
        self.model = model
        self.mask_channels = mask_channels
        self.mask_invalid = mask_invalid
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).clamp_min(1e-12).view(1, -1, 1, 1))

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        valid = None
        if self.mask_invalid:
            k = self.mask_channels
            raw = x[:, :k] * self.std[:, :k] + self.mean[:, :k]
            valid = valid_mask(raw, k, tolerance=VALID_TOLERANCE)
            x = torch.where(valid, x, torch.zeros_like(x))
        out = self.model(x)
        logits = out[0] if isinstance(out, tuple | list) else out
        probs = torch.softmax(logits, dim=1)
        if valid is not None:
            probs = torch.where(valid, probs, torch.zeros_like(probs))
        return probs


@dataclass
class OnnxExport:
    """What :func:`export_onnx` wrote and how it checked it."""

    path: Path
    opset: int
    input_shape: list[int | str]
    metadata: dict[str, Any]
    max_abs_diff: float | None
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report of ``geoseg export``: file, input, Deepness class mapping, check and notes."""
        names = self.metadata["class_names"]
        codes = self.metadata["geoseg_class_codes"]
        out = [
            f"wrote {self.path} (ONNX opset {self.opset}, input {self.input_shape}, softmax output)",
            f"  tile size {self.metadata['tile_size']} px, overlap {self.metadata['tiles_overlap']} %, "
            f"resolution {self.metadata['resolution']} cm/px",
            "  Deepness value → class: " + ", ".join(
                f"{int(i) + 1}={names[i]} (code {codes[int(i)]})" for i in sorted(names, key=int)),
        ]
        if self.max_abs_diff is not None:
            out.append(f"  checked with onnxruntime as Deepness runs it: max |p_onnx - p_torch| = {self.max_abs_diff:.2e}")
        out += [f"  note: {n}" for n in self.notes]
        return out


def deepness_metadata(bundle: ModelBundle, tile_size: int, overlap: int, resolution_m: float, seg_thresh: float,
                      mask_invalid: bool) -> dict[str, Any]:
    """The ``metadata_props`` (before JSON encoding) Deepness reads, plus geoseg's own keys."""
    cfg = bundle.config
    return {
        "model_type": "Segmentor",
        "class_names": {str(i): c.name for i, c in enumerate(cfg.classes)},
        "resolution": int(resolution_m * 100) if float(resolution_m * 100).is_integer() else resolution_m * 100,
        "tile_size": tile_size,
        "tiles_size": tile_size,
        "tiles_overlap": overlap,
        "standardization_mean": [m / DEEPNESS_SCALE for m in cfg.normalization.mean],
        "standardization_std": [max(s, 1e-12) / DEEPNESS_SCALE for s in cfg.normalization.std],
        "seg_thresh": seg_thresh,
        "seg_small_segment": 1,
        "geoseg_version": __version__,
        "geoseg_model": cfg.model.model_dump(mode="json"),
        "geoseg_recipe": cfg.recipe.name,
        "geoseg_channel_names": list(cfg.channel_names),
        "geoseg_class_codes": [c.code for c in cfg.classes],
        "geoseg_class_colors": [c.color for c in cfg.classes],
        "geoseg_mask_invalid": mask_invalid,
        "geoseg_mask_channels": cfg.mask_channels,
    }


def _check_options(bundle: ModelBundle, tile_size: int, opset: int, overlap: int, batch: int | None) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(f"opset {opset} is outside {MIN_OPSET}..{MAX_OPSET}",
                          hint=f"Deepness runs onnxruntime 1.17: use --opset {MAX_OPSET} or lower")
    if not 0 <= overlap < 100:
        raise ConfigError(f"overlap {overlap} % must be in 0..99", hint="e.g. --overlap 25")
    if tile_size < 8:
        raise ConfigError(f"tile size {tile_size} is too small", hint="use the model's window (default)")
    divisor = int(getattr(bundle.model, "required_divisor", 1) or 1)
    if tile_size % divisor:
        raise ConfigError(f"tile size {tile_size} is not a multiple of {divisor}, which the model needs",
                          hint=f"e.g. --tile-size {max(divisor, tile_size // divisor * divisor)}")
    if batch is not None and batch < 1:
        raise ConfigError(f"batch {batch} must be at least 1 (or omitted for a dynamic batch)")


def _export(graph: nn.Module, example: torch.Tensor, path: Path, opset: int, dynamic_batch: bool,
            exporter: Exporter) -> None:
    axes = {"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        kwargs: dict[str, Any] = {"opset_version": opset, "input_names": ["input"], "output_names": ["output"],
                                  "do_constant_folding": True}
        if exporter == "dynamo":
            from torch.export import Dim

            shapes = ({0: Dim("batch", min=1, max=1024)},) if dynamic_batch else None
            torch.onnx.export(graph, (example,), str(path), dynamo=True, dynamic_shapes=shapes, **kwargs)
        else:
            torch.onnx.export(graph, (example,), str(path), dynamo=False, dynamic_axes=axes, **kwargs)


def _write_metadata(path: Path, metadata: dict[str, Any], opset: int) -> int:
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, json.dumps(value)
    proto.producer_name = "geoseg"
    proto.producer_version = __version__
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    found = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=opset)
    if found > MAX_OPSET:
        raise ModelError(f"the exporter wrote opset {found}, above Deepness's {MAX_OPSET}",
                         hint="use --exporter torchscript or a lower --opset")
    return found


def _self_check(path: Path, bundle: ModelBundle, tile_size: int, mask_invalid: bool, seed: int = 0) -> float:
    """Max |p_onnx - p_torch| on a synthetic raw tile with an invalid block, run as Deepness does."""
    cfg = bundle.config
    rng = np.random.default_rng(seed)
    mean = np.asarray(cfg.normalization.mean, dtype=np.float32)
    std = np.asarray(cfg.normalization.std, dtype=np.float32)
    raw = (mean + std * rng.standard_normal((tile_size, tile_size, len(mean)))).astype(np.float32)
    raw[: tile_size // 4, : tile_size // 3] = 0.0  # an invalid (masked) corner
    probs = run_like_deepness(path, raw)
    x = torch.from_numpy(np.ascontiguousarray(raw.transpose(2, 0, 1)))[None]
    with torch.inference_mode():
        ref = reference_probabilities(bundle, x, mask_invalid)
    return float(np.abs(probs - ref.numpy()).max())


def reference_probabilities(bundle: ModelBundle, raw: torch.Tensor, mask_invalid: bool = True) -> torch.Tensor:
    """What the exported graph must return for raw features ``(N, C, H, W)``: the predictor's
    forward pass (:class:`~geoseg.bundle.ModelRunner`, CPU float32), 0 at invalid pixels with ``mask_invalid``."""
    runner = ModelRunner(bundle, device="cpu", fp16=False)
    probs = runner.probabilities(runner.normalize(raw))
    if mask_invalid:
        valid = valid_mask(raw, bundle.config.mask_channels)
        probs = torch.where(valid, probs, torch.zeros_like(probs))
    return probs


def export_onnx(
    model: ModelBundle | str | Path,
    out: str | Path,
    *,
    opset: int = 17,
    tile_size: int | None = None,
    overlap: int = 25,
    resolution_m: float = 10.0,
    seg_thresh: float = 0.0,
    mask_invalid: bool = True,
    batch: int | None = None,
    exporter: Exporter = "torchscript",
    check: bool = True,
) -> OnnxExport:
    """Export a model bundle to ONNX for the Deepness QGIS plugin (see the module docstring).

    Args:
        model: a loaded bundle, a bundle directory or a training run (``best`` is used).
        out: the ``.onnx`` file (written atomically).
        opset: ONNX opset (≤ 20, Deepness's onnxruntime 1.17).
        tile_size: input height = width (default: the window the model was trained on).
        overlap: ``tiles_overlap`` metadata, percent of the tile.
        resolution_m: pixel size of the input raster in metres (10 for the s2_24 stack).
        seg_thresh: Deepness's probability threshold (0: every pixel gets its argmax class).
        mask_invalid: re-apply the zero mask of invalid pixels inside the graph.
        batch: a static batch size (default: dynamic batch dimension).
        exporter: ``torchscript`` (fast, default) or ``dynamo`` (``torch.export``).
        check: run the file with onnxruntime as Deepness does and compare with PyTorch.

    Returns:
        The :class:`OnnxExport` (path, opset, metadata, check result, notes).

    Raises:
        CheckpointError: not a model directory. ConfigError: bad options or onnxruntime
            missing. ModelError: the check finds a difference above 1e-4.
    """
    bundle = load_model_bundle(model)
    check_not_input({"--out": out}, [bundle.path] if isinstance(model, ModelBundle) else [model, bundle.path])
    out = claim_file(out, suffixes=(".onnx",))
    cfg = bundle.config
    size = int(tile_size or cfg.window)
    _check_options(bundle, size, opset, overlap, batch)
    require_onnxruntime()
    graph = DeepnessGraph(bundle.model.cpu().eval(), cfg.normalization.mean, cfg.normalization.std,
                          cfg.mask_channels, mask_invalid).eval()
    example = torch.zeros(batch or 1, len(cfg.channel_names), size, size)
    metadata = deepness_metadata(bundle, size, overlap, resolution_m, seg_thresh, mask_invalid)
    with atomic_path(out) as tmp:
        _export(graph, example, tmp, opset, batch is None, exporter)
        written_opset = _write_metadata(tmp, metadata, opset)
        diff = _self_check(tmp, bundle, size, mask_invalid) if check else None
        if diff is not None and diff > 1e-4:
            raise ModelError(f"the ONNX model differs from PyTorch by {diff:.2e} (> 1e-4)",
                             path=out, hint="try --exporter dynamo, or report the architecture")
    notes = []
    codes = [c.code for c in cfg.classes]
    if codes != list(range(1, len(codes) + 1)):
        notes.append(f"Deepness writes value index+1 (1..{len(codes)}); the class codes are {codes}: "
                     "read values through the class names, not as catalog codes")
    if mask_invalid:
        notes.append("invalid pixels get probability 0 for every class; Deepness has no nodata class and "
                     "shows them as the first class unless masked out")
    shape: list[int | str] = [batch or "batch", len(cfg.channel_names), size, size]
    log.info("exported %s to %s (opset %d)", bundle.path, out, written_opset)
    return OnnxExport(out, written_opset, shape, metadata, diff, notes)
