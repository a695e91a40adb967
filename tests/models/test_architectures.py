"""Architecture-specific behaviour: UNet++ nodes, UNet 3+ skips, DeepLabV3+ depth table,
PSPNet pyramid/dilation/aux head, PointRend training and inference."""

from __future__ import annotations

import pytest
import torch
from segmentation_models_pytorch.base.modules import SCSEModule

from geoseg.errors import ModelError
from geoseg.models import PointHead, create_model, describe_models
from geoseg.models.pointrend import PointRendOptions, calculate_uncertainty, point_sample


def _record(store: dict, key: str, inputs: bool = False):
    """A forward hook storing the input or output shape (returns None: output unchanged)."""

    def hook(module, args, output) -> None:
        store[key] = (args[0] if inputs else output).shape

    return hook


# ----------------------------------------------------------------- RSPRUNet++
def test_rsprunetpp_nested_decoder_structure() -> None:
    model = create_model("rsprunetpp", in_channels=24, num_classes=3, encoder="test_resnet",
                         decoder_channels=[32, 32, 16, 16], deep_supervision=True)
    n = len(model.encoder.channels)
    assert n == 5
    assert sorted(model.decoder.blocks) == sorted(f"x_{i}_{j}" for j in range(1, n) for i in range(n - j))
    # scSE in every decoder block (on the concatenation and on the output)
    for block in model.decoder.blocks.values():
        assert isinstance(block.attention1, SCSEModule) and isinstance(block.attention2, SCSEModule)
    # dense skips: X(0,4) sees X(0,0..3) plus up(X(1,3))
    x04 = model.decoder.blocks["x_0_4"].conv1[0]
    assert x04.in_channels == model.encoder.channels[0] + 3 * 16 + 16
    assert len(model.heads) == 4 and model.fusion.in_channels == 4 * 3
    out = model.forward_train(torch.randn(2, 24, 64, 64))
    assert len(out.deep) == 4
    # the fusion starts as the average of the four X(0,j) heads
    torch.testing.assert_close(out.mask, torch.stack(out.deep).mean(0), atol=1e-5, rtol=1e-5)


def test_rsprunetpp_defaults_follow_the_seed() -> None:
    info = describe_models()["rsprunetpp"]
    assert info["default_encoder"] == "resnest101e"
    assert info["capabilities"]["deep_supervision"]
    model = create_model("rsprunetpp", in_channels=24, num_classes=3, encoder="resnest14d",
                         decoder_channels=[32, 32, 16, 16])
    assert type(model.encoder.model.layer1[0]).__name__ == "ResNestBottleneck"
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 24, 64, 64)).shape == (1, 3, 64, 64)


def test_deep_supervision_off_returns_no_deep_outputs() -> None:
    for name in ("rsprunetpp", "unet3plus"):
        model = create_model(name, in_channels=4, encoder="test_resnet")
        assert model.supports_deep_supervision and not model.deep_supervision
        assert model.forward_train(torch.randn(2, 4, 64, 64)).deep == []


# ----------------------------------------------------------------- UNet 3+
def test_unet3plus_full_scale_skips() -> None:
    model = create_model("unet3plus", in_channels=5, num_classes=2, encoder="test_resnet",
                         cat_channels=8, deep_supervision=True)
    n = len(model.encoder.channels)
    assert len(model.decoder.stages) == n - 1
    for stage in model.decoder.stages.values():  # every stage aggregates all n scales
        assert len(stage) == n and all(b[0].out_channels == 8 for b in stage)
    # stage 0 receives encoder features 0 and 4 and decoder stages 1..3 (8*n channels)
    stage0 = model.decoder.stages["0"]
    assert stage0[0][0].in_channels == model.encoder.channels[0]
    assert stage0[1][0].in_channels == 8 * n
    assert stage0[n - 1][0].in_channels == model.encoder.channels[-1]
    out = model.forward_train(torch.randn(2, 5, 64, 64))
    assert len(out.deep) == n - 1 and all(d.shape == (2, 2, 64, 64) for d in out.deep)


def test_unet3plus_freeze_backbone() -> None:
    model = create_model("unet3plus", in_channels=5, encoder="test_convnext", freeze_backbone=True,
                         cat_channels=8)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.decoder.parameters())
    model.train()
    assert not model.encoder.training and model.decoder.training
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    out = model.forward_train(torch.randn(2, 5, 64, 64))
    out.mask.mean().backward()
    assert all(torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())


# ----------------------------------------------------------------- DeepLabV3+
@pytest.mark.parametrize(("depth", "level", "aspp_side"), [(5, 5, 4), (4, 4, 4), (3, 3, 8)])
def test_deeplab_encoder_depth_picks_the_documented_feature(depth: int, level: int, aspp_side: int) -> None:
    model = create_model("deeplabv3plus", in_channels=3, num_classes=2, encoder="test_resnet",
                         encoder_depth=depth)
    channels = {5: 96, 4: 192, 3: 48, 2: 32}  # test_resnet P1..P5 = 32, 32, 48, 192, 96
    assert model.encoder.levels[model.deep_index] == level
    assert model.encoder.levels[model.low_index] == 2
    assert model.aspp.branches[0][0].in_channels == channels[level]
    assert model.low_level[0].in_channels == channels[2]
    seen = {}
    model.aspp.register_forward_hook(_record(seen, "aspp_in", inputs=True))
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 2, 64, 64)
    assert seen["aspp_in"][-1] == aspp_side  # stride 16 (or 8 for depth 3)


def test_deeplab_output_stride_and_rates() -> None:
    os8 = create_model("deeplabv3plus", in_channels=3, encoder="test_resnet", output_stride=8)
    assert os8.encoder.reductions[-1] == 8 and os8.options.rates == (12, 24, 36)
    os16 = create_model("deeplabv3plus", in_channels=3, encoder="test_resnet")
    assert os16.encoder.reductions[-1] == 16 and os16.options.rates == (6, 12, 18)
    assert os16.aspp.branches[1][0][0].dilation == (6, 6)
    with pytest.raises(ModelError, match="output_stride"):
        create_model("deeplabv3plus", encoder="test_resnet", output_stride=12)
    with pytest.raises(ModelError, match="encoder_depth"):
        create_model("deeplabv3plus", encoder="test_resnet", encoder_depth=2)


# ----------------------------------------------------------------- PSPNet
def test_pyramid_sizes_change_the_module_structure() -> None:
    a = create_model("pspnet", in_channels=3, encoder="test_resnet", psp_channels=32)
    b = create_model("pspnet", in_channels=3, encoder="test_resnet", psp_channels=32,
                     pyramid_sizes=[1, 3, 5, 6, 8])
    assert a.psp.sizes == (1, 2, 3, 6) and len(a.psp.branches) == 4
    assert [br[0].output_size for br in b.psp.branches] == [1, 3, 5, 6, 8]
    c = a.encoder.channels[-1]
    assert a.psp.bottleneck[0].in_channels == c + 4 * (c // 4)
    assert b.psp.bottleneck[0].in_channels == c + 5 * (c // 5)
    assert sum(p.numel() for p in a.parameters()) != sum(p.numel() for p in b.parameters())
    assert b(torch.randn(2, 3, 64, 64))[0].shape == (3, 64, 64)


def test_pspnet_dilation_and_decoders() -> None:
    plain = create_model("pspnet", in_channels=3, num_classes=2, encoder="test_resnet", use_unet=False)
    assert plain.encoder.reductions == [2, 4, 8, 8, 8] and plain.decoder is None
    unet = create_model("pspnet", in_channels=3, num_classes=2, encoder="test_resnet")
    assert unet.encoder.reductions == [2, 4, 8, 16, 32] and unet.decoder is not None
    kept = create_model("pspnet", in_channels=3, num_classes=2, encoder="test_resnet", keep_dilation=True)
    assert kept.encoder.reductions == [2, 4, 8, 8, 8] and kept.decoder is not None
    x = torch.randn(2, 3, 64, 64)
    for model in (plain, unet, kept):
        out = model.forward_train(x)
        assert out.mask.shape == (2, 2, 64, 64) and out.aux_mask.shape == (2, 2, 64, 64)
    seen = {}
    plain.segmentation_head.register_forward_hook(_record(seen, "logits"))
    plain.eval()(x)
    assert seen["logits"][-1] == 8  # the plain head predicts at stride 8, upsampled x8
    no_aux = create_model("pspnet", in_channels=3, encoder="test_resnet", aux_mask_head=False)
    assert no_aux.forward_train(x).aux_mask is None and not no_aux.has_aux_mask_head


# ----------------------------------------------------------------- PointRend
def _point_model(name: str = "pspnet", **kw):
    return create_model(name, in_channels=4, num_classes=3, encoder="test_resnet", pointrend=True,
                        point_train_points=96, point_subdivision_points=50, point_fc_dim=32, **kw)


@pytest.mark.parametrize("name", ["pspnet", "deeplabv3plus", "unet", "unet3plus", "rsprunetpp"])
def test_pointrend_training_outputs(name: str) -> None:
    model = _point_model(name, **({"use_unet": False} if name == "pspnet" else {}))
    out = model.forward_train(torch.randn(2, 4, 60, 52))  # padded internally to 64x64
    assert out.point_logits.shape == (2, 3, 96) and out.point_coords.shape == (2, 96, 2)
    assert out.point_coords.min() >= 0 and out.point_coords.max() <= 1
    assert out.mask.shape == (2, 3, 60, 52)
    out.point_logits.square().mean().backward()
    assert model.point_head.predictor.weight.grad.abs().sum() > 0
    assert model.encoder.model.layer1[0].conv1.weight.grad is not None  # fine features get grads


def test_pointrend_training_points_prefer_uncertain_regions() -> None:
    torch.manual_seed(1)
    coarse = torch.full((1, 2, 16, 16), 5.0)
    coarse[:, 1, :, 8:] = 5.0 - 1e-3  # right half: two classes nearly tied -> uncertain
    coarse[:, 1, :, :8] = -5.0
    head = PointHead(8, 2, PointRendOptions(point_train_points=200, point_importance_ratio=0.75))
    _, coords = head.forward_train(coarse, torch.randn(1, 8, 16, 16))
    importance = coords[0, :150, 0]
    assert (importance >= 0.5).float().mean() > 0.95  # beta*N points from the uncertain half
    assert 0.2 < (coords[0, 150:, 0] >= 0.5).float().mean() < 0.8  # the rest uniform


def test_subdivision_refines_exactly_the_selected_points() -> None:
    head = PointHead(8, 3, PointRendOptions(point_subdivision_points=20, point_fc_dim=16))
    coarse, fine = torch.randn(2, 3, 8, 8), torch.randn(2, 8, 32, 32)
    with torch.no_grad():
        refined, idx = head.subdivision_step(coarse, coarse, fine, (16, 16))
    up = torch.nn.functional.interpolate(coarse, size=(16, 16), mode="bilinear", align_corners=False)
    changed = (refined != up).any(dim=1).reshape(2, -1)
    selected = torch.zeros_like(changed)
    selected.scatter_(1, idx, True)
    assert idx.shape == (2, 20)
    assert torch.equal(changed, selected)  # only, and all of, the selected cells changed
    # the selected cells are the 20 most uncertain of the upsampled map
    unc = calculate_uncertainty(up).reshape(2, -1)
    assert torch.equal(idx.sort(1).values, unc.topk(20, dim=1).indices.sort(1).values)
    # and hold the point head's prediction at the cell centres
    cols, rows = idx % 16, idx // 16
    coords = torch.stack([(cols + 0.5) / 16, (rows + 0.5) / 16], dim=-1)
    with torch.no_grad():
        expected = head.point_logits(point_sample(fine, coords), point_sample(coarse, coords))
    got = refined.reshape(2, 3, -1).gather(2, idx[:, None].expand(-1, 3, -1))
    torch.testing.assert_close(got, expected)


def test_pointrend_inference_subdivides_up_to_the_input_size(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _point_model(use_unet=False).eval()
    steps = []
    original = model.point_head.subdivision_step

    def spy(logits, coarse, fine, size, valid=None):
        refined, idx = original(logits, coarse, fine, size, valid)
        up = torch.nn.functional.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        steps.append((tuple(size), (refined != up).any(dim=1).sum().item(), idx.shape[1], valid))
        return refined, idx

    monkeypatch.setattr(model.point_head, "subdivision_step", spy)
    with torch.no_grad():
        out = model(torch.randn(1, 4, 60, 64))  # padded to 64x64, cropped back
    assert out.shape == (1, 3, 60, 64)
    assert [s[0] for s in steps] == [(16, 16), (32, 32), (64, 64)]  # stride 8 -> 1
    assert all(0 < changed <= n == 50 for _, changed, n, _ in steps)
    assert steps[-1][3] == (60, 64)  # padding rows are never refined


def test_pointrend_is_supported_by_every_architecture() -> None:
    from geoseg.models import list_models

    info = describe_models()
    assert all(info[name]["capabilities"]["pointrend"] for name in list_models())
    assert all(any(o["name"] == "pointrend" for o in info[name]["options"]) for name in list_models())


def test_pointrend_is_refused_where_unsupported() -> None:
    from geoseg.models.unet import UNet, UNetOptions

    class NoPoints(UNet):
        supports_pointrend = False

    with pytest.raises(ModelError, match="does not support pointrend"):
        NoPoints(4, 3, "test_resnet", UNetOptions(pointrend=True))


@pytest.mark.parametrize(("name", "encoder", "steps"), [
    ("unet", "test_resnet", [(64, 64)]),                    # full-resolution logits: one pass
    ("unet3plus", "test_convnext", [(32, 32), (64, 64)]),   # D_0 at stride 4
    ("unet3plus", "test_resnet", [(64, 64)]),               # D_0 at stride 2
    ("rsprunetpp", "test_resnet", [(64, 64)]),              # the X(0, j) grid at stride 2
])
def test_pointrend_on_the_unet_family_refines_the_decoder_logits(name, encoder, steps, monkeypatch) -> None:
    model = create_model(name, in_channels=4, num_classes=3, encoder=encoder, pointrend=True,
                         point_subdivision_points=50, point_fc_dim=16).eval()
    seen = []
    original = model.point_head.subdivision_step

    def spy(logits, coarse, fine, size, valid=None):
        refined, idx = original(logits, coarse, fine, size, valid)
        up = torch.nn.functional.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        seen.append((tuple(size), (refined != up).any(dim=1).sum().item(), valid))
        return refined, idx

    monkeypatch.setattr(model.point_head, "subdivision_step", spy)
    with torch.no_grad():
        out = model(torch.randn(1, 4, 60, 64))
    assert out.shape == (1, 3, 60, 64)
    assert [s[0] for s in seen] == steps
    assert all(0 < changed <= 50 for _, changed, _ in seen)
    assert seen[-1][2] == (60, 64)  # padding rows are never refined


def test_inference_at_full_resolution_refines_the_most_uncertain_cells_once() -> None:
    head = PointHead(8, 3, PointRendOptions(point_subdivision_points=20, point_fc_dim=16))
    coarse, fine = torch.randn(2, 3, 16, 16), torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        refined = head.inference(coarse, fine, (16, 16))
    changed = (refined != coarse).any(dim=1).reshape(2, -1)
    unc = calculate_uncertainty(coarse).reshape(2, -1)
    assert torch.equal(changed.nonzero()[:, 1].reshape(2, -1).sort(1).values,
                       unc.topk(20, dim=1).indices.sort(1).values)


def test_rsprunetpp_pointrend_keeps_the_fused_mask() -> None:
    """With PointRend the heads are fused on their own grid: the same mask as fusing upsampled heads."""
    kw = dict(in_channels=4, num_classes=3, encoder="test_resnet", decoder_channels=[16, 16, 8, 8])
    plain = create_model("rsprunetpp", **kw)
    points = create_model("rsprunetpp", pointrend=True, point_fc_dim=16, **kw)
    missing, unexpected = points.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and all(k.startswith("point_head.") for k in missing)
    x = torch.randn(2, 4, 64, 64)
    torch.testing.assert_close(points.forward_train(x).mask, plain.forward_train(x).mask, atol=1e-5, rtol=1e-4)
