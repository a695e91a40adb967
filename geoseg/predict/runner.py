"""Run a bundle's model on batches of feature windows: device, precision, TTA, softmax.

:class:`ModelRunner` turns a float32 ``(N, C, H, W)`` numpy batch (the raw feature stack,
invalid pixels 0) into float32 ``(N, K, H, W)`` class probabilities on the CPU. On CUDA the
batch goes through pinned memory, channels-last layout and float16 autocast; on the CPU the
model runs in float32. Normalisation is the bundle's own :func:`geoseg.train.bundle.normalize`.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Literal

import numpy as np
import torch

from geoseg.errors import CheckpointError, ConfigError
from geoseg.train.bundle import ModelBundle, normalize

__all__ = ["Device", "resolve_device", "ModelRunner", "dihedral_transforms"]

log = logging.getLogger(__name__)

Device = Literal["auto", "cpu", "cuda"]


def resolve_device(device: Device | str | torch.device) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error.

    Raises:
        ConfigError: unknown device name, or CUDA requested but not available.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was requested but no CUDA GPU is available",
                              hint="use --device auto or --device cpu")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"unknown device {device!r}", hint="use auto, cpu or cuda")


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
    """Softmax probabilities of a bundle's model for feature batches.

    Args:
        bundle: the loaded model bundle (model + config).
        device: ``auto``, ``cpu``, ``cuda`` (or ``cuda:N``).
        fp16: float16 autocast on CUDA (ignored on the CPU, which runs float32).
        tta: average the probabilities over the 8 flips and 90° rotations.

    Raises:
        CheckpointError: the bundle's channels, normalisation and model disagree.
    """

    def __init__(self, bundle: ModelBundle, device: Device | str = "auto", fp16: bool = True, tta: bool = False):
        cfg = bundle.config
        self.device = resolve_device(device)
        self.cuda = self.device.type == "cuda"
        self.fp16 = bool(fp16 and self.cuda)
        if fp16 and not self.cuda:
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

    def _autocast(self):
        if self.fp16:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            out = self.model(x)
        if isinstance(out, (tuple, list)):  # (mask, label) with an aux classification head
            out = out[0]
        if out.ndim != 4 or out.shape[1] != self.num_classes or out.shape[-2:] != x.shape[-2:]:
            raise CheckpointError(
                f"model returned {tuple(out.shape)} for input {tuple(x.shape)}; expected "
                f"(N, {self.num_classes}, H, W) logits at input resolution"
            )
        return out.float()

    @torch.inference_mode()
    def prepare(self, features: np.ndarray) -> torch.Tensor:
        """Normalise raw features ``(C, H, W)`` or ``(N, C, H, W)`` on the CPU (any thread)."""
        if features.ndim not in (3, 4) or features.shape[-3] != self.in_channels:
            raise ValueError(f"expected ({self.in_channels}, H, W) features, got {features.shape}")
        x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        return normalize(x, self.norm, self.mask_channels)

    @torch.inference_mode()
    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The model on a normalised CPU batch ``(N, C, H, W)``; returns a CPU tensor for :meth:`finish`.

        Only the forward pass happens here (plus softmax on the GPU and the TTA transforms), so
        the calling thread is free for the next batch as soon as possible.
        """
        if self.cuda:
            x = x.pin_memory().to(self.device, non_blocking=True)
        if self.tta:
            out = torch.zeros((x.shape[0], self.num_classes, *x.shape[-2:]), device=self.device)
            for k, flip in dihedral_transforms():
                out += _invert(torch.softmax(self._logits(_apply(x, k, flip)), dim=1), k, flip)
            out /= len(dihedral_transforms())
        else:
            out = self._logits(x)
            if self.cuda:
                out = torch.softmax(out, dim=1)
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
