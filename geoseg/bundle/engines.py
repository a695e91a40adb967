"""Inference engines of a bundle's forward pass: torch eager, torch bfloat16, or onnxruntime.

Measured on a 2-core CPU (docs/benchmarks_engines.md), against torch eager float32: bfloat16
autocast with channels-last 0.22× the time on a CPU that computes bfloat16 in hardware (AMX or
AVX512-BF16), onnxruntime 0.60×, ``torch.compile`` 0.62×; int8 dynamic quantisation is slower or
a no-op for convolutions, so it is not offered. :func:`choose_engine` picks, for ``auto``:

* torch on CUDA/MPS (with the runner's autocast and channels-last);
* ``torch-bf16`` on a CPU with native bfloat16, when its map agrees with float32 torch's on the
  run's first batch (:data:`BF16_AGREEMENT` of the valid pixels; checked by the runner);
* onnxruntime on the CPU when it is installed, the model exports, the exported graph agrees
  with torch on a probe batch (:func:`probe_agreement`), and the run is large enough to repay
  the export (:data:`AUTO_MIN_PIXELS`) or the graph is already cached;
* torch otherwise — the reason is logged and reported in the summary.

The exported graph (the bare model: normalised input → logits, dynamic batch, fixed window) is
cached in ``BUNDLE/.engines/`` (keyed by the weights' and config's digest, the window, the opset
and the torch version), or under ``$XDG_CACHE_HOME/geoseg/onnx`` when the bundle's folder is
not writable, so that later runs start at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from geoseg.bundle.config import CONFIG_NAME, WEIGHTS_NAME
from geoseg.bundle.files import ModelBundle
from geoseg.errors import ConfigError
from geoseg.utils.atomic import atomic_path
from geoseg.utils.checks import EngineName

__all__ = ["AUTO_MIN_PIXELS", "BF16_AGREEMENT", "BFloat16Forward", "EngineChoice", "EngineName", "OnnxForward",
           "choose_engine", "cpu_has_native_bf16", "onnx_cache_path", "probe_agreement"]

log = logging.getLogger(__name__)

OPSET = 17
# Below this many window pixels (windows × height × width) ``auto`` keeps torch unless the graph
# is cached: exporting costs ~3-10 s, onnxruntime saves ~2-3 s per megapixel on 2 cores (a 1000 px
# scene stays on torch, a 2000 px one and a full tile go to onnxruntime).
AUTO_MIN_PIXELS = 4_000_000
PROBE_AGREEMENT = 0.999  # share of probe pixels whose argmax must equal torch's
PROBE_ATOL = 1e-3  # and max |logit difference| relative to the logits' scale
# bfloat16 keeps 8 bits of mantissa: logits differ by ~1e-2, so only the map is compared, on the
# run's own first batch, with a margin above the 99.9 % the engines promise.
BF16_AGREEMENT = 0.9995


@dataclass(frozen=True)
class EngineChoice:
    """The engine a run uses and why."""

    name: Literal["torch", "torch-bf16", "onnxruntime"]
    reason: str


def _logits_module(model: nn.Module) -> nn.Module:
    class Logits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.model(x)
            return out[0] if isinstance(out, tuple | list) else out

    return Logits().eval()


def _digest(bundle: ModelBundle) -> str:
    h = hashlib.sha256()
    if bundle.path is not None and (bundle.path / WEIGHTS_NAME).is_file():
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            with open(bundle.path / name, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
    else:  # an in-memory bundle: its config and tensors
        h.update(bundle.config.model_dump_json().encode())
        for key, value in bundle.model.state_dict().items():
            h.update(key.encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def _cache_dirs(bundle: ModelBundle) -> list[Path]:
    dirs = [bundle.path / ".engines"] if bundle.path is not None else []
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return [*dirs, Path(base) / "geoseg" / "onnx"]


def onnx_cache_path(bundle: ModelBundle, height: int, width: int) -> list[Path]:
    """Where the graph of ``bundle`` at ``height`` × ``width`` is (or would be) cached, in order."""
    key = f"{_digest(bundle)}-{height}x{width}-op{OPSET}-torch{torch.__version__.split('+')[0]}"
    return [d / f"model-{key}.onnx" for d in _cache_dirs(bundle)]


def _export(bundle: ModelBundle, height: int, width: int) -> bytes:
    """The bare model as ONNX bytes (logits; dynamic batch, fixed window)."""
    channels = len(bundle.config.channel_names)
    graph = _logits_module(bundle.model.cpu().eval())
    with (tempfile.TemporaryDirectory(prefix="geoseg-onnx-") as tmp, warnings.catch_warnings(),
          contextlib.redirect_stdout(io.StringIO()), torch.inference_mode(False)):
        warnings.simplefilter("ignore")
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(graph, (torch.zeros(1, channels, height, width),), str(path), dynamo=False,
                          opset_version=OPSET, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, do_constant_folding=True)
        return path.read_bytes()


def _load_or_export(bundle: ModelBundle, height: int, width: int) -> bytes:
    candidates = onnx_cache_path(bundle, height, width)
    for path in candidates:
        if path.is_file():
            return path.read_bytes()
    data = _export(bundle, height, width)
    for path in candidates:  # the bundle's folder, else the user's cache
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
            log.info("cached the ONNX graph of %s in %s", bundle.path or "the model", path)
            break
        except OSError:
            continue
    return data


def is_cached(bundle: ModelBundle, height: int, width: int) -> bool:
    """Whether an exported graph of ``bundle`` at this window size is cached."""
    return any(p.is_file() for p in onnx_cache_path(bundle, height, width))


class OnnxForward:
    """``forward(x) -> logits`` of a bundle's model through onnxruntime (CPU provider).

    Args:
        bundle: the loaded model bundle.
        height: window height the graph is exported for.
        width: window width.
        threads: intra-op threads (default: torch's thread count, as the torch engine uses).
    """

    def __init__(self, bundle: ModelBundle, height: int, width: int, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.shape = (height, width)
        self.session = ort.InferenceSession(_load_or_export(bundle, height, width), options,
                                            providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``x`` (N, C, H, W) from the ONNX session; H, W must be the graph's window."""
        if tuple(x.shape[-2:]) != self.shape:
            raise ValueError(f"the ONNX graph takes {self.shape} windows, got {tuple(x.shape[-2:])}")
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        (logits,) = self.session.run(None, {"input": array})
        return torch.from_numpy(logits)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AMX or AVX512-BF16), where oneDNN's bf16 is fast.

    Elsewhere torch emulates bfloat16 and is slower than float32.
    """
    try:
        return bool(torch.backends.mkldnn.is_available()
                    and (torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()))
    except (AttributeError, RuntimeError):  # an older torch or a non-x86 CPU
        return False


class BFloat16Forward:
    """``forward(x) -> float32 logits`` of a model under CPU bfloat16 autocast, channels-last.

    Args:
        model: the bundle's model (in eval mode, on the CPU); converted to channels-last in place
            when ``channels_last`` (a 2D model; a series model's 3D convolutions stay as they are).
        channels_last: run 4D batches in channels-last layout (oneDNN's fast path).
    """

    def __init__(self, model: nn.Module, channels_last: bool = True):
        self.channels_last = channels_last
        self.model = model.to(memory_format=torch.channels_last) if channels_last else model

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Float32 logits of ``x`` computed in bfloat16."""
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.model(x)
        out = out[0] if isinstance(out, tuple | list) else out
        return out.float().contiguous()


def probe_agreement(bundle: ModelBundle, forward: Callable[[torch.Tensor], torch.Tensor], height: int, width: int,
                    seed: int = 0) -> tuple[float, float]:
    """(argmax agreement, max |logit difference| / logit scale) of ``forward`` against torch.

    The probe is two normalised windows of standard-normal values with an all-zero (invalid)
    corner, as real batches have.
    """
    channels = len(bundle.config.channel_names)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, channels, height, width, generator=generator)
    x[:, :, : height // 4, : width // 3] = 0.0
    with torch.inference_mode():
        out = bundle.model.cpu().eval()(x)
        ref = out[0] if isinstance(out, tuple | list) else out
        got = forward(x)
    agree = float((ref.argmax(1) == got.argmax(1)).float().mean())
    diff = float((ref - got).abs().max() / ref.abs().max().clamp_min(1.0))
    return agree, diff


def _onnxruntime_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def choose_engine(requested: EngineName, device: torch.device, work_pixels: int | None = None, *,
                  bundle: ModelBundle | None = None, window: tuple[int, int] | None = None,
                  bf16: bool = True) -> EngineChoice:
    """The engine of a run: ``requested``, or for ``auto`` the fastest one that fits (module doc).

    ``bf16=False`` leaves ``torch-bf16`` out of ``auto`` (its map check failed on this run).

    Raises:
        ConfigError: ``onnxruntime`` or ``torch-bf16`` asked for on a GPU, or onnxruntime not installed.
    """
    if requested == "torch":
        return EngineChoice("torch", "asked for (--engine torch)")
    if requested == "torch-bf16":
        if device.type != "cpu":
            raise ConfigError(f"--engine torch-bf16 runs on the CPU, not on {device}",
                              hint="use --engine torch (float16 autocast with --fp16) on a GPU, or --device cpu")
        if not cpu_has_native_bf16():
            log.warning("this CPU has no native bfloat16 (AMX or AVX512-BF16): torch emulates it, "
                        "slower than --engine torch")
        return EngineChoice("torch-bf16", "asked for (--engine torch-bf16)")
    if requested == "onnxruntime":
        if device.type != "cpu":
            raise ConfigError(f"--engine onnxruntime runs on the CPU, not on {device}",
                              hint="use --engine torch (or auto) on a GPU, or --device cpu")
        if not _onnxruntime_installed():
            raise ConfigError("--engine onnxruntime needs the onnxruntime package",
                              hint="pip install onnxruntime, or use --engine torch")
        return EngineChoice("onnxruntime", "asked for (--engine onnxruntime)")
    if device.type != "cpu":
        return EngineChoice("torch", f"auto: torch on {device.type}")
    if bf16 and cpu_has_native_bf16():
        return EngineChoice("torch-bf16", "auto: bfloat16 on a CPU that computes it in hardware")
    if not _onnxruntime_installed():
        return EngineChoice("torch", "auto: onnxruntime is not installed (pip install onnxruntime)")
    cached = bundle is not None and window is not None and is_cached(bundle, *window)
    if not cached and work_pixels is not None and work_pixels < AUTO_MIN_PIXELS:
        return EngineChoice("torch", f"auto: {work_pixels / 1e6:.1f} Mpx is too little work to repay an ONNX export")
    return EngineChoice("onnxruntime", "auto: onnxruntime on the CPU" + (" (cached graph)" if cached else ""))
