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
from typing import Literal

import numpy as np
import torch

from geoseg.bundle.device import Precision, autocast, resolve_device, resolve_precision
from geoseg.bundle.files import ModelBundle
from geoseg.bundle.normalization import normalize
from geoseg.errors import CheckpointError

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

    Raises:
        ConfigError: the device is not available.
        CheckpointError: the bundle's channels, normalisation and model disagree.
    """

    def __init__(self, bundle: ModelBundle, device: str | torch.device = "auto", fp16: bool = True,
                 tta: bool = False, *, cpu_precision: Literal["float32", "bfloat16"] = "float32",
                 compile: bool = False):
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
        recipe_channels = cfg.recipe_obj().num_channels
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
        self.forward = torch.compile(self.model, dynamic=False) if compile else self.model

    @property
    def fp16(self) -> bool:
        """Whether the model runs in reduced precision."""
        return self.precision != "float32"

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Float32 logits ``(N, K, H, W)`` of a normalised batch already on :attr:`device`."""
        if self.cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.precision):
            out = self.forward(x)
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
