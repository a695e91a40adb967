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

A series model (``temporal`` channels, attention or 3d) exports with the input
``(N, T*C, H, W)``: the T dates' feature stacks one after the other (date-major, as
``t1:B02 ... tT:NDVI``), which Deepness reads from one raster of T x C bands. The graph views it as
``(N, T, C, H, W)``, masks each date's invalid pixels as above (a pixel is valid when any date
is) and runs the model, so every temporal mode exports for a fixed T (the training store's).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from typing_extensions import override

from geoseg import __version__
from geoseg.bundle import ModelBundle, ModelRunner, load_model_bundle
from geoseg.config.schema import with_overrides
from geoseg.errors import ConfigError, ModelError
from geoseg.export.deepness import DEEPNESS_SCALE, require_onnxruntime, run_like_deepness
from geoseg.export.options import MAX_OPSET, Exporter, ExportOptions
from geoseg.utils.atomic import atomic_path
from geoseg.utils.outputs import check_not_input, claim_file
from geoseg.validity import valid_mask

__all__ = ["DeepnessGraph", "OnnxExport", "export_onnx", "deepness_metadata", "reference_probabilities",
           "series_steps", "VALID_TOLERANCE"]

log = logging.getLogger(__name__)

VALID_TOLERANCE = 1e-5  # valid_mask's tolerance on raw values recovered in the graph (rounding error)


class DeepnessGraph(nn.Module):
    """The bundle's model behind Deepness's standardisation: zero mask in, softmax out.

    Args:
        model: the segmentation model (eval mode); a ``(mask, label)`` output keeps the mask.
        mean: per-channel mean of the bundle's normalisation (raw units).
        std: per-channel std of the bundle's normalisation (raw units).
        mask_channels: leading channels that are all 0 at invalid pixels.
        mask_invalid: re-apply the zero mask (input and output) inside the graph.
        time_steps: dates T of a series model: the input is ``(N, T*C, H, W)`` (``mean``/``std``
            per channel of one date); None: one date.
    """

    mean: torch.Tensor  # buffers
    std: torch.Tensor

    def __init__(self, model: nn.Module, mean: list[float], std: list[float], mask_channels: int,
                 mask_invalid: bool = True, time_steps: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.mask_channels = mask_channels
        self.mask_invalid = mask_invalid
        self.time_steps = time_steps
        shape = (1, -1, 1, 1) if time_steps is None else (1, 1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).clamp_min(1e-12).view(shape))

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time_steps is not None:  # (N, T*C, H, W) -> (N, T, C, H, W)
            x = x.unflatten(1, (self.time_steps, -1))
        valid = None
        if self.mask_invalid:
            k, dim = self.mask_channels, x.dim() - 3
            raw = x.narrow(dim, 0, k) * self.std.narrow(dim, 0, k) + self.mean.narrow(dim, 0, k)
            valid = valid_mask(raw, k, channel_dim=dim, tolerance=VALID_TOLERANCE)
            x = torch.where(valid, x, torch.zeros_like(x))
            if self.time_steps is not None:  # the map: valid where any date is
                valid = valid.any(dim=1)
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
    dates = series_steps(bundle) or 1
    return {
        "model_type": "Segmentor",
        "class_names": {str(i): c.name for i, c in enumerate(cfg.classes)},
        "resolution": int(resolution_m * 100) if float(resolution_m * 100).is_integer() else resolution_m * 100,
        "tile_size": tile_size,
        "tiles_size": tile_size,
        "tiles_overlap": overlap,
        "standardization_mean": [m / DEEPNESS_SCALE for m in cfg.normalization.mean] * dates,
        "standardization_std": [max(s, 1e-12) / DEEPNESS_SCALE for s in cfg.normalization.std] * dates,
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
        "geoseg_time_steps": series_steps(bundle),
    }


def series_steps(bundle: ModelBundle) -> int | None:
    """Dates T the exported graph of a series model takes (its ``time_steps``, else the training
    store's); None for a single-date model.

    Raises:
        ConfigError: a series model whose bundle records no T.
    """
    if not getattr(bundle.model, "takes_series", False):
        return None
    steps = bundle.config.model.options.get("time_steps") or bundle.config.time_steps
    if steps is None:
        raise ConfigError("the series model's bundle records no number of dates, which the ONNX graph needs "
                          "(its input is T x C bands)", path=bundle.path, hint="retrain it with this geoseg version")
    return int(steps)


def _check_tile_size(bundle: ModelBundle, tile_size: int) -> None:
    """The rule that needs the model (the others are :class:`ExportOptions`'): a multiple of its divisor."""
    divisor = int(getattr(bundle.model, "required_divisor", 1) or 1)
    if tile_size % divisor:
        raise ConfigError(f"tile size {tile_size} is not a multiple of {divisor}, which the model needs",
                          hint=f"e.g. --tile-size {max(divisor, tile_size // divisor * divisor)}")


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
    dates = series_steps(bundle) or 1
    mean = np.tile(np.asarray(cfg.normalization.mean, dtype=np.float32), dates)
    std = np.tile(np.asarray(cfg.normalization.std, dtype=np.float32), dates)
    raw = (mean + std * rng.standard_normal((tile_size, tile_size, len(mean)))).astype(np.float32)
    raw[: tile_size // 4, : tile_size // 3] = 0.0  # an invalid (masked) corner
    if dates > 1:  # a block cloudy on the first date only
        raw[tile_size // 2:, tile_size // 2:, : len(mean) // dates] = 0.0
    probs = run_like_deepness(path, raw)
    x = torch.from_numpy(np.ascontiguousarray(raw.transpose(2, 0, 1)))[None]
    with torch.inference_mode():
        ref = reference_probabilities(bundle, x, mask_invalid)
    return float(np.abs(probs - ref.numpy()).max())


def reference_probabilities(bundle: ModelBundle, raw: torch.Tensor, mask_invalid: bool = True) -> torch.Tensor:
    """What the exported graph must return for raw features ``(N, C, H, W)`` (a series model: ``(N, T*C, H, W)``):
    the predictor's forward pass (:class:`~geoseg.bundle.ModelRunner`, CPU float32), 0 at invalid pixels with
    ``mask_invalid`` (a series: pixels invalid on every date)."""
    runner = ModelRunner(bundle, device="cpu", fp16=False)
    dates = series_steps(bundle)
    if dates is not None:
        raw = raw.unflatten(1, (dates, -1))
    probs = runner.probabilities(runner.normalize(raw))
    if mask_invalid:
        valid = valid_mask(raw, bundle.config.mask_channels, channel_dim=raw.dim() - 3)
        if dates is not None:
            valid = valid.any(dim=1)
        probs = torch.where(valid, probs, torch.zeros_like(probs))
    return probs


def export_onnx(
    model: ModelBundle | str | Path,
    out: str | Path,
    options: ExportOptions | None = None,
    **overrides: Any,
) -> OnnxExport:
    """Export a model bundle to ONNX for the Deepness QGIS plugin (see the module docstring).

    Args:
        model: a loaded bundle, a bundle directory or a training run (``best`` is used).
        out: the ``.onnx`` file (written atomically).
        options: opset (≤ 20, Deepness's onnxruntime 1.17), tile size (default: the window the
            model was trained on), overlap (``tiles_overlap``, percent of the tile), input
            resolution in metres, ``seg_thresh``, static batch, ``mask_invalid``, exporter and
            the onnxruntime check (:class:`~geoseg.export.ExportOptions`; default ``ExportOptions()``).
        **overrides: single options on top of ``options``, e.g. ``export_onnx(m, o, opset=18)``
            (``resolution_m`` is the former name of ``resolution``).

    Returns:
        The :class:`OnnxExport` (path, opset, metadata, check result, notes).

    Raises:
        CheckpointError: not a model directory. ConfigError: bad options or onnxruntime
            missing. ModelError: the check finds a difference above 1e-4.
    """
    if "resolution_m" in overrides:  # the former name of ``resolution``
        overrides["resolution"] = overrides.pop("resolution_m")
    opts = with_overrides(options or ExportOptions(), overrides)
    bundle = load_model_bundle(model)
    check_not_input({"--out": out}, [bundle.path] if isinstance(model, ModelBundle) else [model, bundle.path])
    out = claim_file(out, suffixes=(".onnx",))
    cfg = bundle.config
    size = int(opts.tile_size or cfg.window)
    _check_tile_size(bundle, size)
    require_onnxruntime()
    dates = series_steps(bundle)
    graph = DeepnessGraph(bundle.model.cpu().eval(), cfg.normalization.mean, cfg.normalization.std,
                          cfg.mask_channels, opts.mask_invalid, dates).eval()
    batch, mask_invalid = opts.batch, opts.mask_invalid
    channels = len(cfg.channel_names) * (dates or 1)
    example = torch.zeros(batch or 1, channels, size, size)
    metadata = deepness_metadata(bundle, size, opts.overlap, opts.resolution, opts.seg_thresh, mask_invalid)
    with atomic_path(out) as tmp:
        _export(graph, example, tmp, opts.opset, batch is None, opts.exporter)
        written_opset = _write_metadata(tmp, metadata, opts.opset)
        diff = _self_check(tmp, bundle, size, mask_invalid) if opts.check else None
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
    if dates is not None:
        notes.append(f"a time series of {dates} dates: the input raster holds their {len(cfg.channel_names)} "
                     f"channels date after date ({channels} bands, oldest date first)")
    shape: list[int | str] = [batch or "batch", channels, size, size]
    log.info("exported %s to %s (opset %d)", bundle.path, out, written_opset)
    return OnnxExport(out, written_opset, shape, metadata, diff, notes)
