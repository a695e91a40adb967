"""Run a bundle's model: normalisation, device, precision, TTA, softmax — for every caller.

:class:`ModelRunner` is the one forward pass of a bundle, shared by the predictor (float32
``(N, C, H, W)`` numpy windows → class probabilities on the CPU), the evaluator (normalised
batches already on the device → logits) and the ONNX exporter's PyTorch reference. On CUDA
the batch goes through pinned memory, channels-last layout and float16 autocast; on the CPU
the model runs in float32 unless the caller asks for bfloat16 (:mod:`geoseg.bundle.device`).
Normalisation is the bundle's own :func:`~geoseg.bundle.normalize`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from geoseg.bundle.device import Precision, autocast, resolve_device, resolve_precision
from geoseg.bundle.engines import (
    BF16_AGREEMENT,
    PROBE_AGREEMENT,
    PROBE_ATOL,
    BFloat16Forward,
    EngineChoice,
    EngineName,
    choose_engine,
)
from geoseg.bundle.files import ModelBundle
from geoseg.bundle.normalization import normalize
from geoseg.errors import CheckpointError, ConfigError, ModelError
from geoseg.validity import valid_mask

__all__ = ["ModelRunner", "dihedral_transforms"]

log = logging.getLogger(__name__)


def dihedral_transforms() -> list[tuple[int, bool]]:
    """The 8 flips × 90° rotations as ``(quarter_turns, flip)`` pairs (identity first)."""
    return [(k, flip) for flip in (False, True) for k in range(4)]


def _apply(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


def _invert(y: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    if k:
        y = torch.rot90(y, -k, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if flip else y


class ModelRunner:
    """Logits and softmax probabilities of a bundle's model.

    Args:
        bundle: the loaded model bundle (model + config).
        device: ``auto``, ``cpu``, ``cuda`` (or ``cuda:N``, ``mps``); see
            :func:`~geoseg.bundle.device.resolve_device`.
        fp16: reduced precision: float16 autocast on CUDA; on the CPU what ``cpu_precision`` says.
        tta: average the probabilities over the 8 flips and 90° rotations.
        cpu_precision: what ``fp16`` means off CUDA: ``float32`` (ignored; the predictor) or
            ``bfloat16`` (the evaluator).
        compile: ``torch.compile`` the model (static shapes).
        engine: ``torch``, ``torch-bf16`` or ``onnxruntime`` (CPU), or ``auto``
            (:func:`~geoseg.bundle.engines.choose_engine`);
            the engine actually used is :attr:`engine` once the first batch ran.
        work_pixels: the run's total window pixels, which ``auto`` weighs against the export's cost.
        auto_bf16: whether ``auto`` may take ``torch-bf16`` (its map agrees with float32's, its
            scores not to the last digit: the evaluator keeps float32's exact scores).

    Raises:
        ConfigError: the device is not available, or the engine cannot run here.
        CheckpointError: the bundle's channels, normalisation and model disagree.
    """

    def __init__(self, bundle: ModelBundle, device: str | torch.device = "auto", fp16: bool = True,
                 tta: bool = False, *, cpu_precision: Literal["float32", "bfloat16"] = "float32",
                 compile: bool = False, engine: EngineName = "torch", work_pixels: int | None = None,
                 auto_bf16: bool = True):
        cfg = bundle.config
        self.device = resolve_device(device)
        self.cuda = self.device.type == "cuda"
        self.precision: Precision = resolve_precision(self.device, fp16, cpu_precision)
        if fp16 and self.precision == "float32":
            log.debug("fp16 applies to CUDA only; running float32 on %s", self.device)
        self.tta = tta
        self.num_classes = len(cfg.classes)
        self.in_channels = len(cfg.channel_names)
        self.mask_channels = cfg.mask_channels
        self.norm = cfg.normalization
        where = bundle.path or "model bundle"
        recipe_channels = cfg.recipe.num_channels
        if not (recipe_channels == self.in_channels == len(self.norm.mean) == len(self.norm.std)):
            raise CheckpointError(
                f"inconsistent bundle: recipe has {recipe_channels} channels, channel_names "
                f"{self.in_channels}, normalization {len(self.norm.mean)}/{len(self.norm.std)}",
                path=where, hint="re-export the bundle with geoseg train",
            )
        model_in = getattr(bundle.model, "in_channels", self.in_channels)
        model_k = getattr(bundle.model, "num_classes", self.num_classes)
        if model_in != self.in_channels or model_k != self.num_classes:
            raise CheckpointError(
                f"model takes {model_in} channels / {model_k} classes, config says "
                f"{self.in_channels} / {self.num_classes}", path=where,
            )
        self.model = bundle.model.to(self.device).eval()
        if self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
        # static: a graph per batch shape, as in training (geoseg/train/module.py)
        self.torch_forward = torch.compile(self.model, dynamic=False) if compile else self.model
        self.bundle = bundle
        self.requested_engine: EngineName = engine
        self.series = bool(getattr(bundle.model, "takes_series", False))  # input (N, T, C, H, W)
        if self.series and engine == "onnxruntime":
            raise ConfigError("--engine onnxruntime runs single-date models only: its graph takes one date "
                              "(N, C, H, W), a series model takes (N, T, C, H, W)", hint="use --engine torch or auto")
        self.work_pixels = work_pixels
        self.auto_bf16 = auto_bf16
        self.choice: EngineChoice | None = None
        choose_engine(engine, self.device)  # an impossible explicit engine fails before any work
        self._forwards: dict[tuple[int, int], Callable[[torch.Tensor], torch.Tensor]] = {}
        self._lock = threading.Lock()

    @property
    def engine(self) -> str:
        """The engine the batches ran on (``torch``, ``torch-bf16`` or ``onnxruntime``; the request before the first batch)."""
        return self.choice.name if self.choice is not None else self.requested_engine

    def _forward_for(self, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """The forward pass for batches of ``x``'s window size (the engine is chosen on the first)."""
        shape = (int(x.shape[-2]), int(x.shape[-1]))
        forward = self._forwards.get(shape)
        if forward is not None:
            return forward
        with self._lock:
            if shape not in self._forwards:
                self._forwards[shape] = self._build_forward(shape, x)
            return self._forwards[shape]

    def _build_forward(self, shape: tuple[int, int], x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        choice = self.choice or choose_engine(self.requested_engine, self.device, self.work_pixels,
                                              bundle=self.bundle, window=shape, bf16=self.auto_bf16)
        if choice.name != "torch" and self.precision != "float32":  # evaluate --fp16 on the CPU: bf16 already
            choice = EngineChoice("torch", "reduced precision runs on torch")
        if choice.name == "torch-bf16":
            forward, rejected = self._bf16_forward(choice, x)
            if forward is not None:
                return forward
            fallback = choose_engine(self.requested_engine, self.device, self.work_pixels, bundle=self.bundle,
                                     window=shape, bf16=False)
            choice = EngineChoice(fallback.name, f"{fallback.reason}; {rejected}")
        if choice.name == "onnxruntime" and self.series:  # the engines' cached graph takes one date
            choice = EngineChoice("torch", "auto: a series model runs on torch")
        if choice.name == "torch":
            self.choice = choice
            return self.torch_forward
        from geoseg.bundle.engines import OnnxForward, probe_agreement

        explicit = self.requested_engine == "onnxruntime"
        try:
            forward = OnnxForward(self.bundle, *shape)
            agree, diff = probe_agreement(self.bundle, forward, *shape)
        except Exception as err:  # an architecture the exporter cannot trace
            if explicit:
                raise ModelError(f"the model does not export to ONNX: {str(err).splitlines()[0][:160]}",
                                 hint="use --engine torch") from None
            self.choice = EngineChoice("torch", f"auto: the model does not export to ONNX ({type(err).__name__})")
            log.info("%s", self.choice.reason)
            return self.torch_forward
        if agree < PROBE_AGREEMENT or diff > PROBE_ATOL:
            reason = f"ONNX output differs from torch (argmax agreement {agree:.4f}, logit difference {diff:.1e})"
            if explicit:
                raise ModelError(reason, hint="use --engine torch")
            self.choice = EngineChoice("torch", f"auto: {reason}")
            log.warning("%s; running torch", reason)
            return self.torch_forward
        self.choice = choice
        log.info("engine: onnxruntime (%s; probe agreement %.4f, logit difference %.1e)", choice.reason, agree, diff)
        return forward

    def _bf16_forward(self, choice: EngineChoice, x: torch.Tensor
                      ) -> tuple[Callable[[torch.Tensor], torch.Tensor] | None, str]:
        """``(forward, "")`` if the bfloat16 map agrees with float32 torch's on the first batch ``x``.

        ``auto`` needs :data:`BF16_AGREEMENT` of the valid pixels (else ``(None, why)``: another
        engine); ``--engine torch-bf16`` needs the 99.9 % every engine promises, else a ModelError.
        """
        forward = BFloat16Forward(self.model, channels_last=not self.series)
        with torch.inference_mode():
            reference = self.torch_forward(x)
            reference = reference[0] if isinstance(reference, tuple | list) else reference
            same = reference.argmax(1) == forward(x).argmax(1)
        # (N, H, W): a series pixel is valid when any date is
        valid = valid_mask(x, self.mask_channels, channel_dim=-3).flatten(1, -3).any(1)
        agree = float(same[valid].float().mean()) if int(valid.sum()) >= 1024 else float(same.float().mean())
        explicit = self.requested_engine == "torch-bf16"
        needed = PROBE_AGREEMENT if explicit else BF16_AGREEMENT
        if agree < needed:
            rejected = (f"the bfloat16 map agrees with float32 torch's on {agree:.4f} of the first batch's valid "
                        f"pixels, below {needed}")
            if explicit:
                raise ModelError(rejected, hint="use --engine torch (or auto, which checks this first)")
            log.info("auto: %s; not using bfloat16", rejected)
            self.model.to(memory_format=torch.contiguous_format)  # float32 torch exactly as without the probe
            return None, rejected
        self.choice = EngineChoice(choice.name, f"{choice.reason} (map agreement with float32 on the first "
                                                f"batch: {agree:.4f})")
        log.info("engine: torch-bf16 (%s)", self.choice.reason)
        return forward, ""

    @property
    def fp16(self) -> bool:
        """Whether the model runs in reduced precision."""
        return self.precision != "float32"

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Float32 logits ``(N, K, H, W)`` of a normalised batch already on :attr:`device`."""
        if self.cuda and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        forward = self._forward_for(x)
        with autocast(self.device, self.precision):
            out = forward(x)
        if isinstance(out, (tuple, list)):  # (mask, label) with an aux classification head
            out = out[0]
        if out.ndim != 4 or out.shape[1] != self.num_classes or out.shape[-2:] != x.shape[-2:]:
            raise CheckpointError(
                f"model returned {tuple(out.shape)} for input {tuple(x.shape)}; expected "
                f"(N, {self.num_classes}, H, W) logits at input resolution"
            )
        return out.float()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The bundle's normalisation of raw features (any device); invalid pixels stay 0."""
        return normalize(x, self.norm, self.mask_channels)

    @torch.inference_mode()
    def prepare(self, features: np.ndarray) -> torch.Tensor:
        """Normalise raw features ``(C, H, W)`` or ``(N, C, H, W)`` on the CPU (any thread)."""
        if features.ndim not in (3, 4) or features.shape[-3] != self.in_channels:
            raise ValueError(f"expected ({self.in_channels}, H, W) features, got {features.shape}")
        x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        return self.normalize(x)

    @torch.inference_mode()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities ``(N, K, H, W)`` of a normalised batch on :attr:`device` (TTA-averaged)."""
        if not self.tta:
            return torch.softmax(self.logits(x), dim=1)
        out = torch.zeros((x.shape[0], self.num_classes, *x.shape[-2:]), device=x.device)
        for k, flip in dihedral_transforms():
            out += _invert(torch.softmax(self.logits(_apply(x, k, flip)), dim=1), k, flip)
        return out / len(dihedral_transforms())

    @torch.inference_mode()
    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The model on a normalised CPU batch ``(N, C, H, W)``; returns a CPU tensor for :meth:`finish`.

        Only the forward pass happens here (plus softmax on the GPU and the TTA transforms), so
        the calling thread is free for the next batch as soon as possible.
        """
        if self.cuda:
            x = x.pin_memory().to(self.device, non_blocking=True)
        elif x.device != self.device:
            x = x.to(self.device)
        out = self.logits(x) if self._softmax_in_finish else self.probabilities(x)
        return out.cpu()

    @property
    def _softmax_in_finish(self) -> bool:
        return not self.cuda and not self.tta

    @torch.inference_mode()
    def finish(self, out: torch.Tensor) -> np.ndarray:
        """Probabilities float32 ``(N, K, H, W)`` from :meth:`run`'s output (CPU softmax here)."""
        if self._softmax_in_finish:
            out = torch.softmax(out, dim=1)
        return out.numpy()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities float32 ``(N, K, H, W)`` for a raw feature batch ``(N, C, H, W)``."""
        if batch.ndim != 4:
            raise ValueError(f"expected (N, {self.in_channels}, H, W) features, got {batch.shape}")
        return self.finish(self.run(self.prepare(batch)))
