"""MaskedBatchNorm2d: statistics of valid pixels only, masked output 0, safe when all masked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geoseg.models import MaskedBatchNorm2d, create_model
from geoseg.models.masked_batchnorm import valid_pixel_mask


def _batch(c: int = 14, invalid: bool = True) -> torch.Tensor:
    x = torch.randn(3, c, 9, 7) * 2.0 + 0.5
    if invalid:
        x[0, :, :4, :] = 0  # a no-data strip
        x[2, :11, 5, 3] = 0  # one invalid pixel whose extra channels are not zero
    return x


def test_mask_uses_first_11_channels() -> None:
    x = _batch()
    m = valid_pixel_mask(x)[:, 0]
    assert m.shape == (3, 9, 7)
    assert m[0, :4].sum() == 0 and m[2, 5, 3] == 0
    assert int(m.sum()) == 3 * 63 - 4 * 7 - 1


def test_training_statistics_equal_valid_pixels_by_hand() -> None:
    x = _batch()
    bn = MaskedBatchNorm2d(x.shape[1], momentum=0.1).train()
    y = bn(x)
    xn = x.permute(1, 0, 2, 3).reshape(x.shape[1], -1).numpy().astype(np.float64)
    valid = valid_pixel_mask(x)[:, 0].reshape(-1).numpy().astype(bool)
    v = xn[:, valid]
    mean, var_b, var_u = v.mean(1), v.var(1), v.var(1, ddof=1)
    expected = (xn - mean[:, None]) / np.sqrt(var_b[:, None] + bn.eps) * valid
    got = y.detach().permute(1, 0, 2, 3).reshape(x.shape[1], -1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * mean, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * var_u, atol=1e-5)
    assert bn.num_batches_tracked.item() == 1
    # masked pixels are exactly zero
    assert torch.all(y[0, :, :4] == 0) and torch.all(y[2, :, 5, 3] == 0)


def test_equals_batchnorm2d_when_every_pixel_is_valid() -> None:
    x1, x2 = _batch(invalid=False), _batch(invalid=False)
    ref = torch.nn.BatchNorm2d(x1.shape[1]).train()
    bn = MaskedBatchNorm2d(x1.shape[1]).train()
    for x in (x1, x2):
        torch.testing.assert_close(bn(x), ref(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)
    bn.eval(), ref.eval()
    torch.testing.assert_close(bn(x1), ref(x1), atol=1e-5, rtol=1e-5)


def test_cumulative_average_with_momentum_none() -> None:
    ref = torch.nn.BatchNorm2d(14, momentum=None).train()
    bn = MaskedBatchNorm2d(14, momentum=None).train()
    for _ in range(3):
        x = _batch(invalid=False)
        bn(x), ref(x)
    torch.testing.assert_close(bn.running_var, ref.running_var)
    torch.testing.assert_close(bn.running_mean, ref.running_mean)


@pytest.mark.parametrize("training", [True, False])
def test_masked_values_do_not_change_the_output(training: bool) -> None:
    x = _batch()
    bn = MaskedBatchNorm2d(x.shape[1]).train(training)
    bn.running_mean.fill_(0.3)
    y1 = bn(x)
    x2 = x.clone()
    x2[0, 11:, :4, :] = 1000.0  # garbage in non-mask channels of invalid pixels
    x2[2, 11:, 5, 3] = -55.0
    if training:
        bn.running_mean.fill_(0.3), bn.running_var.fill_(1.0)
    y2 = bn(x2)
    assert torch.equal(y1, y2)


def test_all_masked_batch_is_safe() -> None:
    x = torch.zeros(2, 14, 8, 8, requires_grad=True)
    bn = MaskedBatchNorm2d(14).train()
    bn.running_mean.fill_(0.7)
    bn.running_var.fill_(2.0)
    y = bn(x)
    assert torch.isfinite(y).all() and torch.all(y == 0)
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(bn.weight.grad).all()
    assert torch.all(bn.running_mean == 0.7) and torch.all(bn.running_var == 2.0)
    assert bn.num_batches_tracked.item() == 0


def test_eval_uses_running_statistics() -> None:
    bn = MaskedBatchNorm2d(14).eval()
    bn.running_mean.fill_(1.0)
    bn.running_var.fill_(4.0)
    x = _batch()
    y = bn(x)
    m = valid_pixel_mask(x)
    torch.testing.assert_close(y, (x - 1.0) / torch.sqrt(torch.tensor(4.0) + bn.eps) * m)


def test_rsprunetpp_normalises_its_input_with_masked_bn() -> None:
    model = create_model("rsprunetpp", in_channels=24, num_classes=3, encoder="test_resnet",
                         decoder_channels=[16, 16, 16, 16]).eval()
    assert isinstance(model.input_norm, MaskedBatchNorm2d)
    x = torch.randn(1, 24, 48, 48)
    x[:, :11, :16, :16] = 0  # invalid block; channels 11+ hold junk there
    x2 = x.clone()
    x2[:, 11:, :16, :16] = 123.0
    with torch.no_grad():
        assert torch.equal(model(x), model(x2))
    plain = create_model("rsprunetpp", in_channels=24, encoder="test_resnet", masked_bn=False)
    assert plain.input_norm is None
