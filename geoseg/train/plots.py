"""Figures of training and evaluation: curves, confusion matrix, example predictions.

All figures are drawn with matplotlib's Agg backend and written atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geoseg.config.catalog import ClassDef
from geoseg.train.metrics import IGNORE_INDEX
from geoseg.utils.atomic import atomic_path
from geoseg.validity import DEFAULT_MASK_CHANNELS, valid_mask_numpy

__all__ = ["INVALID_RGB", "NATURAL_COLOUR_RANGE", "RGB_CHANNELS", "has_rgb", "plot_confusion", "plot_example",
           "plot_training", "rgb_composite"]

RGB_CHANNELS = ("B04", "B03", "B02")
NATURAL_COLOUR_RANGE = (0.0, 0.3)  # surface reflectance drawn black .. full brightness, for every cube
INVALID_RGB = (128, 128, 128)  # invalid (no data, cloud) pixels: neutral grey
ERROR_RGB = (228, 26, 28)  # errors panel: wrong pixels
CORRECT_RGB = (215, 215, 215)  # errors panel: right pixels


def _figure(*args: Any, **kwargs: Any):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt, plt.subplots(*args, **kwargs)


def _save(plt, fig, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format=Path(path).suffix[1:] or "png", metadata=metadata)
    plt.close(fig)
    return Path(path)


def plot_training(history: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Loss, mIoU and macro F1 per epoch, train and val (``training_plots.png``).

    Args:
        history: One dict per epoch with ``epoch`` and any of ``train_loss``, ``val_loss``,
            ``train_miou``, ``val_miou``, ``train_f1``, ``val_f1`` (missing/None: not drawn).
        path: Output PNG.
    """
    from matplotlib.ticker import MaxNLocator

    plt, (fig, axes) = _figure(1, 3, figsize=(15, 4.2))
    for ax, key, title in zip(axes, ("loss", "miou", "f1"), ("loss", "mIoU", "macro F1 (Dice)"), strict=True):
        for stage, style in (("train", "-o"), ("val", "-s")):
            pts = [(h["epoch"], h.get(f"{stage}_{key}")) for h in history if h.get(f"{stage}_{key}") is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, ms=3, label=stage)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if key != "loss":
            ax.set_ylim(0, 1)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    return _save(plt, fig, path)


def plot_confusion(confusion: np.ndarray, class_names: Sequence[str], path: str | Path) -> Path:
    """Row-normalised confusion matrix (recall per true class) with class names and counts."""
    cm = np.asarray(confusion, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(class_names)
    plt, (fig, ax) = _figure(figsize=(1.2 + 0.75 * k, 1.0 + 0.7 * k))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), [f"{n} ({int(r)})" for n, r in zip(class_names, rows[:, 0], strict=True)])
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth (pixels)")
    for i in range(k):
        for j in range(k):
            if norm[i, j] >= 0.005:
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_title("confusion matrix (row-normalised)")
    return _save(plt, fig, path)


def has_rgb(channel_names: Sequence[str]) -> bool:
    """Whether the channels include B04, B03 and B02 (the natural-colour composite's bands)."""
    return set(RGB_CHANNELS) <= {n.upper() for n in channel_names}


def rgb_composite(image: np.ndarray, channel_names: Sequence[str], mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None, *,
                  reflectance_range: tuple[float, float] = NATURAL_COLOUR_RANGE, gamma: float = 1.0,
                  mask_channels: int = DEFAULT_MASK_CHANNELS) -> np.ndarray:
    """Natural-colour (B04, B03, B02) uint8 (H, W, 3) image of one cube with a fixed reflectance stretch.

    Every cube gets the same stretch (never one fitted to the cube), so a reflectance has one
    colour in every figure: a uniform cube is one colour, a dark one stays dark. Invalid
    pixels are :data:`INVALID_RGB` (neutral grey).

    Args:
        image: (C, H, W) cube of reflectances, normalised when ``mean``/``std`` are given
            (undone here).
        channel_names: Names of the C channels (the RGB bands are looked up by name).
        mean: Normalisation mean per channel, or None for a raw cube.
        std: Normalisation std per channel.
        reflectance_range: Reflectances drawn black and full brightness (clipped beyond).
        gamma: Display gamma applied after the linear stretch (1: linear).
        mask_channels: The cube's mask channels (the recipe's ``num_mask_channels``), which tell
            invalid pixels (:func:`geoseg.validity.valid_mask`).

    Raises:
        ValueError: The channels do not include B04, B03 and B02, or the range is empty.
    """
    if not has_rgb(channel_names):
        raise ValueError(f"channels lack {list(RGB_CHANNELS)} for an RGB composite (have {list(channel_names)})")
    lo, hi = reflectance_range
    if not hi > lo or gamma <= 0:
        raise ValueError(f"reflectance_range {reflectance_range} must rise and gamma {gamma} be positive")
    names = [n.upper() for n in channel_names]
    idx = [names.index(b) for b in RGB_CHANNELS]
    rgb = image[idx].astype(np.float64)
    if mean is not None and std is not None:
        rgb = rgb * np.asarray(std, np.float64)[idx, None, None] + np.asarray(mean, np.float64)[idx, None, None]
    scaled = np.clip((rgb - lo) / (hi - lo), 0.0, 1.0) ** (1.0 / gamma)
    out = np.round(scaled * 255).astype(np.uint8).transpose(1, 2, 0)
    out[~valid_mask_numpy(image, mask_channels, channel_dim=0)[0]] = INVALID_RGB
    return out


def _colour_labels(labels: np.ndarray, classes: Sequence[ClassDef]) -> np.ndarray:
    lut = np.full((256, 3), 255, np.uint8)  # ignored/unknown: white
    for i, c in enumerate(classes):
        lut[i] = c.rgb
    return lut[labels.astype(np.uint8)]


def _unit(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    return (rgb[0] / 255, rgb[1] / 255, rgb[2] / 255)


def _error_map(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    out = np.full(truth.shape + (3,), 255, np.uint8)  # ignored: white
    labelled = truth != IGNORE_INDEX
    out[labelled & (truth == pred)] = CORRECT_RGB
    out[labelled & (truth != pred)] = ERROR_RGB
    return out


def plot_example(rgb: np.ndarray | None, truth: np.ndarray, pred: np.ndarray, classes: Sequence[ClassDef],
                 path: str | Path, title: str = "") -> Path:
    """Natural colour, ground truth, prediction and errors side by side, with a legend.

    ``truth``/``pred`` hold training indices (255 = ignored, drawn white). ``rgb`` is
    :func:`rgb_composite`'s image with the default stretch, or None when the cube has no
    B04/B03/B02 (panel left out). ``title`` is drawn above the panels and stored as the
    PNG's ``Title``.
    """
    from matplotlib.patches import Patch

    lo, hi = NATURAL_COLOUR_RANGE
    panels = [] if rgb is None else [(rgb, f"B04/B03/B02, reflectance {lo:g}–{hi:g}")]
    panels += [(_colour_labels(truth, classes), "ground truth"), (_colour_labels(pred, classes), "prediction"),
               (_error_map(truth, pred), "errors")]
    plt, (fig, axes) = _figure(1, len(panels), figsize=(4 * len(panels), 4.6))
    for ax, (img, name) in zip(axes, panels, strict=True):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    handles = [Patch(color=c.color, label=c.name) for c in classes]
    handles.append(Patch(facecolor="white", edgecolor="grey", label="ignored / no data"))
    if rgb is not None:
        handles.append(Patch(color=_unit(INVALID_RGB), label="invalid pixel (colour)"))
    handles += [Patch(color=_unit(ERROR_RGB), label="error"),
                Patch(color=_unit(CORRECT_RGB), label="correct")]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.1, 1, 0.96))
    return _save(plt, fig, path, metadata={"Title": title} if title else None)
