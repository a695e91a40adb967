"""Scores from a known confusion matrix, and the losses' handling of ignored pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from geoseg.models import ModelOutput
from geoseg.train.losses import (
    SegmentationLoss,
    class_presence,
    class_weights_from_counts,
    dice_loss,
    focal_loss,
    weighted_ce,
)
from geoseg.train.metrics import confusion_scores

# rows = truth, cols = prediction. Class 2 is absent from truth and prediction;
# class 4 is predicted once but never true.
CM = np.array([
    [8, 1, 0, 0, 1],
    [2, 6, 0, 0, 0],
    [0, 0, 0, 0, 0],
    [0, 1, 0, 5, 0],
    [0, 0, 0, 0, 0],
])


def _pixels_from(cm: np.ndarray, ignored: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    truth, pred = [], []
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            truth += [i] * int(cm[i, j])
            pred += [j] * int(cm[i, j])
    truth += [255] * ignored  # ignored pixels with arbitrary predictions
    pred += [k % cm.shape[0] for k in range(ignored)]
    order = torch.randperm(len(truth), generator=torch.Generator().manual_seed(0))
    return torch.tensor(pred)[order].view(1, -1, 1), torch.tensor(truth)[order].view(1, -1, 1)


def test_scores_equal_hand_computation_with_ignored_pixels_and_absent_class():
    pred, truth = _pixels_from(CM)
    metric = MulticlassConfusionMatrix(5, ignore_index=255)
    # accumulated over two "batches", as over an epoch
    metric.update(pred[:, :15], truth[:, :15])
    metric.update(pred[:, 15:], truth[:, 15:])
    cm = metric.compute()
    assert cm.numpy().tolist() == CM.tolist()  # the 7 ignored pixels are excluded
    s = confusion_scores(cm)
    # IoU = TP / (TP + FP + FN)
    assert s.iou[0] == pytest.approx(8 / 12)
    assert s.iou[1] == pytest.approx(6 / 10)
    assert math.isnan(s.iou[2])  # absent from truth and prediction: not scored
    assert s.iou[3] == pytest.approx(5 / 6)
    assert s.iou[4] == 0.0  # predicted but never true: counts as 0
    assert s.miou == pytest.approx((8 / 12 + 0.6 + 5 / 6 + 0) / 4)
    assert s.f1_macro == pytest.approx((16 / 20 + 12 / 16 + 10 / 11 + 0) / 4)
    assert s.oa == pytest.approx(19 / 24)
    assert s.kappa == pytest.approx((456 - 194) / (576 - 194))
    assert s.support.tolist() == [10, 8, 0, 6, 0]
    assert math.isnan(s.recall[4]) and s.precision[4] == 0.0
    d = s.to_dict(["a", "b", "c", "d", "e"])
    assert d["per_class"]["c"]["iou"] is None and d["classes_scored"] == 4
    assert d["miou"] == pytest.approx(0.525) and d["num_pixels"] == 24


def test_scores_of_a_perfect_and_an_empty_matrix():
    s = confusion_scores(np.diag([3, 0, 5]))
    assert s.miou == 1.0 and s.oa == 1.0 and s.kappa == 1.0 and s.f1_macro == 1.0
    empty = confusion_scores(np.zeros((3, 3)))
    assert all(math.isnan(v) for v in empty.summary().values())
    with pytest.raises(ValueError, match="square"):
        confusion_scores(np.zeros((2, 3)))


def test_losses_ignore_255_and_never_return_nan():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    target = torch.randint(0, 4, (2, 8, 8))
    masked = target.clone()
    masked[:, :4] = 255
    # ignored pixels do not matter: changing their logits leaves the loss unchanged
    bumped = logits.detach().clone()
    bumped[:, :, :4] += 10 * torch.randn(2, 4, 4, 8)
    for fn in (weighted_ce, dice_loss, focal_loss):
        assert fn(logits, masked).item() == pytest.approx(fn(bumped, masked).item(), rel=1e-6)
    # cross entropy equals torch's with ignore_index
    ref = torch.nn.functional.cross_entropy(logits, masked, ignore_index=255)
    assert weighted_ce(logits, masked).item() == pytest.approx(ref.item(), rel=1e-6)
    w = torch.tensor([1.0, 2.0, 0.5, 3.0])
    ref_w = torch.nn.functional.cross_entropy(logits, masked, weight=w, ignore_index=255)
    assert weighted_ce(logits, masked, w).item() == pytest.approx(ref_w.item(), rel=1e-6)
    # focal with gamma 0 is cross entropy
    assert focal_loss(logits, masked, gamma=0.0).item() == pytest.approx(ref.item(), rel=1e-6)
    # a batch without labelled pixels gives 0 (not NaN) and a usable gradient
    allign = torch.full_like(target, 255)
    loss = SegmentationLoss(4)(ModelOutput(mask=logits), allign)[0]
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_dice_loss_is_zero_for_a_perfect_prediction():
    target = torch.randint(0, 3, (1, 6, 6))
    logits = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 100
    assert dice_loss(logits, target, smooth=0.0).item() == pytest.approx(0.0, abs=1e-6)


def test_full_loss_combines_every_head():
    torch.manual_seed(1)
    k = 3
    target = torch.randint(0, k, (2, 8, 8))
    target[0, 0] = 255
    out = ModelOutput(
        mask=torch.randn(2, k, 8, 8), deep=[torch.randn(2, k, 8, 8), torch.randn(2, k, 8, 8)],
        aux_mask=torch.randn(2, k, 8, 8), label=torch.randn(2, k),
        point_logits=torch.randn(2, k, 5), point_coords=torch.rand(2, 5, 2),
    )
    crit = SegmentationLoss(k, "ce", deep_weight=0.4, aux_weight=0.4, label_weight=0.4, point_weight=1.0)
    total, parts = crit(out, target)
    ce = lambda x: torch.nn.functional.cross_entropy(x, target, ignore_index=255)  # noqa: E731
    assert parts["mask"].item() == pytest.approx(ce(out.mask).item(), rel=1e-6)
    assert parts["deep"].item() == pytest.approx(0.4 * (ce(out.deep[0]) + ce(out.deep[1])).item(), rel=1e-6)
    assert parts["aux"].item() == pytest.approx(0.4 * ce(out.aux_mask).item(), rel=1e-6)
    present = class_presence(target, k)
    assert present.tolist() == [[float((target[n][target[n] != 255] == c).any()) for c in range(k)] for n in range(2)]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(out.label, present)
    assert parts["label"].item() == pytest.approx(0.4 * bce.item(), rel=1e-6)
    # PointRend: ground truth sampled nearest at the points (x, y in [0, 1])
    cols = (out.point_coords[..., 0] * 8).floor().long().clamp(0, 7)
    rows = (out.point_coords[..., 1] * 8).floor().long().clamp(0, 7)
    pt = torch.stack([target[n, rows[n], cols[n]] for n in range(2)])
    ref = torch.nn.functional.cross_entropy(out.point_logits, pt, ignore_index=255)
    assert parts["points"].item() == pytest.approx(ref.item(), rel=1e-5)
    assert total.item() == pytest.approx(sum(p.item() for p in parts.values()), rel=1e-6)


def test_median_frequency_class_weights():
    w = class_weights_from_counts([100, 300, 0, 600])
    # frequencies 0.1, 0.3, -, 0.6 → median 0.3; unseen class gets 1
    assert w.tolist() == pytest.approx([3.0, 1.0, 1.0, 0.5])
    assert class_weights_from_counts([1, 10**9, 10**9])[0] == 50.0  # clipped
