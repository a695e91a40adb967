"""Contract over the whole registry: every model × in_channels × input size × aux head.

Checks forward shapes (eval and training), backward with finite non-zero gradients,
deep-supervision outputs, eval determinism, the spec rebuild and a save/load round trip.
Input sizes: 256 (for 13 channels) or 64, and a size not divisible by 32 (200 or 70).
Every architecture variant (aux head, PointRend) also round-trips as ``pretrained=path``.
The time-series models — every 2D architecture with ``temporal="channels"`` and
``"attention"``, and ``deeplabv3plus3d`` — meet the same contract on series of 3 dates
(N, 3, 24, H, W) with masked pixels and a partly masked date.
"""

from __future__ import annotations

import json

import pytest
import torch
from _model_helpers import (
    S2_24,
    SMALL_ENCODER,
    SMALL_OPTIONS,
    model_input,
    series_options,
    series_variants,
    single_date_models,
)

from geoseg.models import (
    ModelOutput,
    SegmentationModel,
    create_model,
    get_model_class,
    list_models,
    load_model,
    load_weights,
    save_weights,
)

K = 4


def _size(in_channels: int, kind: str) -> int:
    if in_channels == 13:  # one in_channels per model runs at the real cube size
        return 256 if kind == "even" else 200
    return 64 if kind == "even" else 70


def _conv0(model: SegmentationModel) -> torch.Tensor:
    return next(p for p in model.encoder.parameters() if p.ndim == 4)


def _build(name: str, in_channels: int, aux: bool, temporal: str | None = None) -> SegmentationModel:
    return create_model(
        name,
        in_channels=in_channels,
        num_classes=K,
        encoder=SMALL_ENCODER[name],
        aux_params={"classes": 3, "dropout": 0.2} if aux else None,
        **series_options(name, temporal),
    )


def _pairings(*leading: tuple) -> list:
    """Each ``leading`` case at (odd, aux) and (even, no aux); the two other pairings run in the slow tier."""
    cases = []
    for case in leading:
        for kind in ("even", "odd"):
            for aux in (False, True):
                marks = () if (kind == "odd") == aux else (pytest.mark.slow,)
                cases.append(pytest.param(*case, kind, aux, marks=marks,
                                          id="-".join([*map(str, case), kind, "aux" if aux else "noaux"])))
    return cases


@pytest.mark.parametrize(("name", "in_channels", "kind", "aux"),
                         _pairings(*((n, c) for n in single_date_models() for c in (3, 13, 24))))
def test_model_contract(name: str, in_channels: int, kind: str, aux: bool, tmp_path) -> None:
    _check_contract(_build(name, in_channels, aux), _size(in_channels, kind), aux, tmp_path)


def _series_cases() -> list:
    """Every series variant at (odd, aux) and (even, no aux); the two other pairings run in the slow tier."""
    return _pairings(*series_variants())


@pytest.mark.parametrize(("name", "temporal", "kind", "aux"), _series_cases())
def test_series_model_contract(name: str, temporal: str, kind: str, aux: bool, tmp_path) -> None:
    model = _build(name, 24, aux, temporal)
    assert model.takes_series and model.options.temporal == temporal
    _check_contract(model, _size(24, kind), aux, tmp_path)


def _check_contract(model: SegmentationModel, size: int, aux: bool, tmp_path) -> None:
    in_channels = model.in_channels
    assert model.required_divisor == 1
    assert model.has_aux_head is aux
    x = model_input(model, 2, in_channels, size, size, invalid_fraction=0.25)

    # training outputs + backward
    model.train()
    out = model.forward_train(x)
    assert isinstance(out, ModelOutput)
    assert out.mask.shape == (2, K, size, size)
    assert torch.isfinite(out.mask).all()
    if model.deep_supervision:
        assert model.supports_deep_supervision
        assert len(out.deep) >= 2
        assert all(d.shape == (2, K, size, size) for d in out.deep)
    else:
        assert out.deep == []
    if model.has_aux_mask_head:
        assert out.aux_mask is not None and out.aux_mask.shape == (2, K, size, size)
    if aux:
        assert out.label is not None and out.label.shape == (2, 3)
    else:
        assert out.label is None
    loss = torch.nn.functional.cross_entropy(out.mask, torch.randint(0, K, (2, size, size)))
    for extra in [*out.deep, out.aux_mask]:
        if extra is not None:
            loss = loss + extra.square().mean()
    if out.label is not None:
        loss = loss + out.label.square().mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    first = _conv0(model)
    assert first.shape[1] == model.encoder_channels and first.grad.abs().sum() > 0
    assert model.encoder_channels == in_channels * (model.options.time_steps if model.options.temporal
                                                    == "channels" else 1)

    # eval: shape, determinism, tuple convention
    model.eval()
    with torch.no_grad():
        y1, y2 = model(x), model(x)
    if aux:
        assert isinstance(y1, tuple) and y1[0].shape == (2, K, size, size) and y1[1].shape == (2, 3)
        mask1, mask2 = y1[0], y2[0]
    else:
        assert isinstance(y1, torch.Tensor)
        mask1, mask2 = y1, y2
    assert mask1.shape == (2, K, size, size) and torch.isfinite(mask1).all()
    assert torch.equal(mask1, mask2)

    # spec is JSON and rebuilds the same architecture; weights round-trip through the file
    spec = json.loads(json.dumps(model.spec))
    path = save_weights(model, tmp_path / "m.safetensors")
    rebuilt = load_model(path).eval()  # create_model(**spec) + load_weights
    assert rebuilt.spec == spec == model.spec
    with torch.no_grad():
        y3 = rebuilt(x)
    torch.testing.assert_close(y3[0] if aux else y3, mask1, rtol=0, atol=0)
    fresh = create_model(**spec, pretrained=False)
    assert [(k, v.shape) for k, v in fresh.state_dict().items()] == [
        (k, v.shape) for k, v in model.state_dict().items()
    ]
    assert not torch.equal(_conv0(fresh), _conv0(model))  # random init differs
    load_weights(fresh, path)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values(), strict=True))

@pytest.mark.parametrize("name", list_models())
def test_features_match_feature_info(name: str) -> None:
    """The 2D encoder (of a 3D model too: its temporal blocks only act on a series)."""
    model = _build(name, 5, aux=False)
    x = torch.randn(1, 5, 64, 64)
    feats = model.encoder(x)
    assert [f.shape[1] for f in feats] == model.encoder.channels
    assert [64 // f.shape[-1] for f in feats] == model.encoder.reductions


def _variants() -> list[tuple[str, str]]:
    """(architecture, variant) for every registered architecture and head it supports."""
    out = []
    for name in list_models():
        out += [(name, "plain"), (name, "aux")]
        if get_model_class(name).supports_pointrend:
            out.append((name, "pointrend"))
    return out + [(name, temporal) for name, temporal in series_variants() if temporal != "3d"]


@pytest.mark.parametrize(("name", "variant"), _variants(), ids=lambda v: v)
def test_whole_checkpoint_as_pretrained(name: str, variant: str, tmp_path) -> None:
    """save_weights → create_model(..., pretrained=path) gives back the same model (issue 13)."""
    temporal = variant if variant in ("channels", "attention") else None
    kwargs = dict(
        in_channels=24, num_classes=K, encoder=SMALL_ENCODER[name], channel_names=S2_24,
        aux_params={"classes": 3} if variant == "aux" else None, **series_options(name, temporal),
    )
    if variant == "pointrend":
        kwargs.update(pointrend=True, point_subdivision_points=64, point_fc_dim=16)
    model = create_model(name, **kwargs)
    path = save_weights(model, tmp_path / f"{name}.safetensors")
    loaded = create_model(name, **kwargs, pretrained=path)
    want, got = model.state_dict(), loaded.state_dict()
    assert list(got) == list(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    x = model_input(model, 1, 24, 40, 40, invalid_fraction=0.25)
    with torch.no_grad():
        y_want, y_got = model.eval()(x), loaded.eval()(x)
    if variant == "aux":
        assert isinstance(y_got, tuple) and torch.equal(y_got[1], y_want[1])
        y_want, y_got = y_want[0], y_got[0]
    assert torch.equal(y_got, y_want)


@pytest.mark.parametrize("name", list_models())
def test_pointrend_contract(name: str, tmp_path) -> None:
    """PointRend on every architecture: training points and their loss, refined eval output, round trip."""
    model = create_model(name, in_channels=24, num_classes=K, encoder=SMALL_ENCODER[name], channel_names=S2_24,
                         aux_params={"classes": 3}, pointrend=True, point_train_points=48,
                         point_subdivision_points=64, point_fc_dim=16, **SMALL_OPTIONS[name])
    assert model.supports_pointrend and model.point_head is not None
    x = model_input(model, 2, 24, 38, 38, invalid_fraction=0.25)  # not a multiple of the encoder stride
    target = torch.randint(0, K, (2, 38, 38))
    out = model.train().forward_train(x)
    assert out.mask.shape == (2, K, 38, 38)
    assert out.point_logits.shape == (2, K, 48) and out.point_coords.shape == (2, 48, 2)
    assert out.point_coords.min() >= 0 and out.point_coords.max() <= 1
    grid = 2.0 * out.point_coords.unsqueeze(2) - 1.0  # the ground truth at the points (outputs.py recipe)
    pt = torch.nn.functional.grid_sample(target[:, None].float(), grid, mode="nearest",
                                         align_corners=False).squeeze(1).squeeze(-1).long()
    loss = (torch.nn.functional.cross_entropy(out.mask, target)
            + torch.nn.functional.cross_entropy(out.point_logits, pt)
            + sum(d.square().mean() for d in out.deep) + out.label.square().mean())
    if out.aux_mask is not None:
        loss = loss + out.aux_mask.square().mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.point_head.predictor.weight.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        (y1, label), (y2, _) = model(x), model(x)
    assert y1.shape == (2, K, 38, 38) and label.shape == (2, 3) and torch.isfinite(y1).all()
    assert torch.equal(y1, y2)
    rebuilt = load_model(save_weights(model, tmp_path / "m.safetensors")).eval()
    assert rebuilt.spec == model.spec and rebuilt.spec["options"]["pointrend"] is True
    with torch.no_grad():
        assert torch.equal(rebuilt(x)[0], y1)
