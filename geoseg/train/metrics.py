"""Segmentation scores computed from one global confusion matrix.

``cm[i, j]`` counts pixels of true class ``i`` predicted as class ``j`` (torchmetrics'
convention). Ignored pixels (label 255) never enter the matrix: the trainer and the
evaluator accumulate it with ``torchmetrics.classification.MulticlassConfusionMatrix(
num_classes=K, ignore_index=255)`` over a whole epoch / split, and the scores below are
computed once from the accumulated matrix (never averaged over batches).

Definitions (``TP_c = cm[c, c]``, ``FP_c`` = column sum − TP, ``FN_c`` = row sum − TP):

* ``iou[c] = TP / (TP + FP + FN)``; ``f1[c] = 2 TP / (2 TP + FP + FN)`` (= Dice).
* A class that is absent from both the ground truth and the prediction has no IoU/F1
  (NaN, ``null`` in JSON). **Macro mIoU and macro F1 average over the classes present in
  the ground truth or the prediction**: a class missing from a split neither counts as a
  perfect 1 nor as a 0, and a class that is predicted but never true counts as 0.
* ``oa = trace / total``; Cohen's ``kappa = (po − pe) / (1 − pe)`` with
  ``pe = Σ_c row_c · col_c / total²`` (NaN when ``pe == 1``, as scikit-learn).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Scores", "confusion_scores", "IGNORE_INDEX"]

IGNORE_INDEX = 255


@dataclass(frozen=True)
class Scores:
    """Scores of one confusion matrix (see the module docstring for the definitions).

    Attributes:
        confusion: The (K, K) matrix, rows = ground truth, columns = prediction.
        iou: Per-class IoU (NaN for classes absent from ground truth and prediction).
        f1: Per-class F1 / Dice (same NaN rule).
        precision: Per-class precision (NaN when never predicted).
        recall: Per-class recall (NaN when absent from the ground truth).
        support: Ground-truth pixels per class.
        miou: Macro IoU over classes present in ground truth or prediction.
        f1_macro: Macro F1 over the same classes.
        oa: Overall accuracy.
        kappa: Cohen's kappa.
    """

    confusion: np.ndarray
    iou: np.ndarray
    f1: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    support: np.ndarray
    miou: float
    f1_macro: float
    oa: float
    kappa: float

    @property
    def num_pixels(self) -> int:
        """Pixels scored (the confusion matrix total)."""
        return int(self.confusion.sum())

    def summary(self) -> dict[str, float]:
        """The scalar scores: ``miou``, ``oa``, ``f1``, ``kappa``."""
        return {"miou": self.miou, "oa": self.oa, "f1": self.f1_macro, "kappa": self.kappa}

    def to_dict(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-ready dict: scalars, per-class scores keyed by class name, the matrix.

        NaN becomes ``None`` (JSON ``null``).
        """
        k = len(self.iou)
        names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
        per_class = {
            names[i]: {
                "index": i,
                "iou": _num(self.iou[i]),
                "f1": _num(self.f1[i]),
                "precision": _num(self.precision[i]),
                "recall": _num(self.recall[i]),
                "support": int(self.support[i]),
            }
            for i in range(k)
        }
        return {
            **{key: _num(value) for key, value in self.summary().items()},
            "num_pixels": self.num_pixels,
            "classes_scored": int(np.isfinite(self.iou).sum()),
            "per_class": per_class,
            "confusion_matrix": self.confusion.astype(np.int64).tolist(),
        }


def _num(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def confusion_scores(confusion: Any) -> Scores:
    """All scores of a (K, K) confusion matrix (numpy array or torch tensor).

    Args:
        confusion: Counts, rows = ground truth, columns = prediction; ignored pixels
            must already be excluded.

    Returns:
        The :class:`Scores`; with an empty matrix every score is NaN.

    Raises:
        ValueError: The matrix is not square.
    """
    if hasattr(confusion, "detach"):
        confusion = confusion.detach().cpu().numpy()
    cm = np.asarray(confusion, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square (K, K), got shape {cm.shape}")
    tp = np.diag(cm)
    gt = cm.sum(axis=1)
    pred = cm.sum(axis=0)
    fp, fn = pred - tp, gt - tp
    iou = _ratio(tp, tp + fp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    total = cm.sum()
    nan = float("nan")
    if total > 0:
        po = tp.sum() / total
        pe = float((gt * pred).sum() / total**2)
        kappa = (po - pe) / (1 - pe) if pe < 1 else nan
        oa = float(po)
    else:
        oa = kappa = nan
    scored = np.isfinite(iou)
    return Scores(
        confusion=cm.astype(np.int64),
        iou=iou,
        f1=f1,
        precision=_ratio(tp, pred),
        recall=_ratio(tp, gt),
        support=gt.astype(np.int64),
        miou=float(iou[scored].mean()) if scored.any() else nan,
        f1_macro=float(f1[scored].mean()) if scored.any() else nan,
        oa=oa,
        kappa=float(kappa),
    )
