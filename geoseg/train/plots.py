"""Figures of training and evaluation: curves, confusion matrix, example predictions.

All figures are drawn with matplotlib's Agg backend and written atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geoseg.config.catalog import ClassDef
from geoseg.utils.atomic import atomic_path
from geoseg.validity import DEFAULT_MASK_CHANNELS, valid_mask_numpy

__all__ = ["plot_training", "plot_confusion", "plot_example", "rgb_composite", "RGB_CHANNELS"]

RGB_CHANNELS = ("B04", "B03", "B02")


def _figure(*args: Any, **kwargs: Any):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt, plt.subplots(*args, **kwargs)


def _save(plt, fig, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
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


def rgb_composite(image: np.ndarray, channel_names: Sequence[str], mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None, percentiles: tuple[float, float] = (2.0, 98.0),
                  mask_channels: int = DEFAULT_MASK_CHANNELS) -> np.ndarray:
    """True-colour (B04, B03, B02) uint8 (H, W, 3) image of one cube; invalid pixels are black.

    Args:
        image: (C, H, W) cube, normalised when ``mean``/``std`` are given (undone here).
        channel_names: Names of the C channels (the RGB bands are looked up by name).
        mean: Normalisation mean per channel, or None for a raw cube.
        std: Normalisation std per channel.
        percentiles: Stretch limits over the valid pixels.
        mask_channels: The cube's mask channels (the recipe's ``num_mask_channels``), which tell
            invalid pixels (:func:`geoseg.validity.valid_mask`).

    Raises:
        ValueError: The channels do not include B04, B03 and B02.
    """
    names = [n.upper() for n in channel_names]
    missing = [b for b in RGB_CHANNELS if b not in names]
    if missing:
        raise ValueError(f"channels lack {missing} for an RGB composite (have {list(channel_names)})")
    idx = [names.index(b) for b in RGB_CHANNELS]
    rgb = image[idx].astype(np.float64)
    valid = valid_mask_numpy(image, mask_channels, channel_dim=0)[0]
    if mean is not None and std is not None:
        m, s = np.asarray(mean)[idx, None, None], np.asarray(std)[idx, None, None]
        rgb = np.where(valid, rgb * s + m, 0.0)
    out = np.zeros(rgb.shape[1:] + (3,), np.uint8)
    if valid.any():
        lo, hi = np.percentile(rgb[:, valid], percentiles, axis=1)
        scaled = (rgb - lo[:, None, None]) / np.maximum(hi - lo, 1e-12)[:, None, None]
        out = (np.clip(scaled, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
        out[~valid] = 0
    return out


def _colour_labels(labels: np.ndarray, classes: Sequence[ClassDef]) -> np.ndarray:
    lut = np.full((256, 3), 255, np.uint8)  # ignored/unknown: white
    for i, c in enumerate(classes):
        lut[i] = c.rgb
    return lut[labels.astype(np.uint8)]


def plot_example(rgb: np.ndarray, truth: np.ndarray, pred: np.ndarray, classes: Sequence[ClassDef],
                 path: str | Path, title: str = "") -> Path:
    """RGB, ground truth and prediction side by side in the class colours, with a legend.

    ``truth``/``pred`` hold training indices (255 = ignored, drawn white).
    """
    from matplotlib.patches import Patch

    plt, (fig, axes) = _figure(1, 3, figsize=(12, 4.4))
    for ax, img, name in zip(axes, (rgb, _colour_labels(truth, classes), _colour_labels(pred, classes)),
                             ("RGB (B04, B03, B02)", "ground truth", "prediction"), strict=True):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    handles = [Patch(color=c.color, label=c.name) for c in classes]
    handles.append(Patch(facecolor="white", edgecolor="grey", label="ignored / no data"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return _save(plt, fig, path)
