"""Geometry-safe batch augmentation, applied on the device after transfer.

Every transform moves image and label pixels together (flips, 90° rotations, crops and
nearest-neighbour resizes), so labels stay exact and the masked-cube convention holds:
an invalid pixel (0 in every channel) stays 0 and keeps its 255 label. Random numbers are
drawn on the CPU from ``generator`` (or torch's global generator) and only the index work
runs on the device, so results do not depend on the device's RNG.

Images are ``(N, C, H, W)`` or series ``(N, T, C, H, W)``: every transform acts on the last two
dims only, so all dates of a cube get the same flip, rotation, crop or resize.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["dihedral", "random_dihedral", "random_crop", "center_crop", "resize_nearest"]


def dihedral(x: Tensor, code: int) -> Tensor:
    """One of the 8 symmetries of the square on the last two dims: ``code = 4·flip + k``.

    ``k`` quarter turns (counter-clockwise) follow an optional horizontal flip.
    """
    if code >= 4:
        x = x.flip(-1)
    k = code % 4
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


def random_dihedral(x: Tensor, y: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Apply an independent random flip/rotation to each sample of a batch.

    Args:
        x: Images (N, C, H, W) or series (N, T, C, H, W) (one draw per sample, shared by its dates).
        y: Labels (N, H, W).
        generator: CPU generator for the draws (None: torch's global generator).

    Returns:
        The transformed ``(x, y)``. Non-square batches only get flips and 180° turns.
    """
    n, square = x.shape[0], x.shape[-1] == x.shape[-2]
    codes = torch.randint(0, 8, (n,), generator=generator)
    if not square:
        codes = codes - codes % 2  # k in {0, 2}: keeps H and W
    if not bool((codes != 0).any()):
        return x, y
    x_out, y_out = x.clone(), y.clone()
    for code in codes.unique().tolist():
        if code == 0:
            continue
        idx = (codes == code).nonzero().squeeze(1).to(x.device)
        x_out[idx] = dihedral(x[idx], code)
        y_out[idx] = dihedral(y[idx], code)
    return x_out, y_out


def random_crop(x: Tensor, y: Tensor, size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """A random ``size``×``size`` crop per sample (the same window for image and label).

    Raises:
        ValueError: ``size`` is larger than the cubes.
    """
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    if size > h or size > w:
        raise ValueError(f"crop size {size} is larger than the cubes ({h}x{w})")
    if size == h and size == w:
        return x, y
    oy = torch.randint(0, h - size + 1, (n,), generator=generator).tolist()
    ox = torch.randint(0, w - size + 1, (n,), generator=generator).tolist()
    xs = torch.stack([x[i, ..., a:a + size, b:b + size] for i, (a, b) in enumerate(zip(oy, ox, strict=True))])
    ys = torch.stack([y[i, a:a + size, b:b + size] for i, (a, b) in enumerate(zip(oy, ox, strict=True))])
    return xs, ys


def center_crop(x: Tensor, y: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """The central ``size``×``size`` window of every sample."""
    h, w = x.shape[-2], x.shape[-1]
    a, b = (h - size) // 2, (w - size) // 2
    return x[..., a:a + size, b:b + size], y[..., a:a + size, b:b + size]


def resize_nearest(x: Tensor, y: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Nearest-neighbour resize of images and labels to ``size``×``size``.

    Nearest keeps reflectance values and labels exact and invalid pixels exactly 0.
    """
    if x.shape[-2:] == (size, size):
        return x, y
    xr = F.interpolate(x.flatten(0, -4), size=(size, size), mode="nearest-exact").unflatten(0, x.shape[:-3])
    yr = F.interpolate(y.unsqueeze(1).float(), size=(size, size), mode="nearest-exact").squeeze(1)
    return xr, yr.round().to(y.dtype)
