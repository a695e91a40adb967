"""Time-series models: dates as channels, the temporal-attention front end and deeplabv3plus3d.

Input (N, T, C, H, W) with per-date validity (the leading ``mask_channels`` channels not all 0),
output 2D logits (N, K, H, W). What is checked: shapes for T = 1 and 3 at odd sizes; gradients
reach every parameter group; an invalid (date, pixel) cannot leak (changing that date's channels
beyond the mask channels leaves the eval output exactly unchanged); a date invalid everywhere
is the same as no date for the attention front end (and for the 3D model when it is the last
date); masked BatchNorm ignores masked dates; band-aware first-layer weights; the registry,
``spec`` and error messages.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import timm
import torch
from _model_helpers import S2_24, SMALL_ENCODER, make_series, series_options, series_variants
from click.testing import CliRunner
from safetensors.torch import save_file

from geoseg.cli.model_cmds import models_cmd
from geoseg.errors import ModelError
from geoseg.models import (
    MaskedBatchNorm2d,
    SegmentationModel,
    create_model,
    date_channel_names,
    describe_models,
    load_model,
    load_weights,
    normalize_band_name,
    save_weights,
)
from geoseg.models.first_conv import band_of
from geoseg.models.temporal_stages import stage_modules
from geoseg.models.weight_files import SPEC_KEY

K = 3
C = 24  # the s2_24 recipe: 11 mask channels


def _model(name: str, temporal: str | None, t: int | None = None, **extra) -> SegmentationModel:
    options = series_options(name, temporal)
    if t is not None and temporal == "channels":
        options["time_steps"] = t
    return create_model(name, in_channels=C, num_classes=K, encoder=SMALL_ENCODER[name],
                        channel_names=S2_24, **{**options, **extra})


ATTENTION = [(name, mode) for name, mode in series_variants() if mode == "attention"]
NO_LEAK = [("unet", "attention"), ("rsprunetpp", "attention"), ("pspnet", "attention"),
           ("unet", "channels"), ("deeplabv3plus3d", "3d")]


@pytest.mark.parametrize("t", [1, 3])
@pytest.mark.parametrize(("name", "temporal"), series_variants(), ids=lambda v: v)
def test_shapes_for_one_and_three_dates_at_odd_sizes(name: str, temporal: str, t: int) -> None:
    model = _model(name, temporal, t)
    x = make_series(2, t, C, 37, 29, invalid_fraction=0.3)
    out = model.train().forward_train(x)
    assert out.mask.shape == (2, K, 37, 29) and torch.isfinite(out.mask).all()
    assert all(d.shape == (2, K, 37, 29) for d in out.deep)
    with torch.no_grad():
        y = model.eval()(x)
    assert y.shape == (2, K, 37, 29) and torch.isfinite(y).all()


@pytest.mark.parametrize(("name", "temporal"), [("unet", "attention"), ("deeplabv3plus", "attention"),
                                                ("rsprunetpp", "channels"), ("deeplabv3plus3d", "3d")])
def test_gradients_reach_every_parameter_group(name: str, temporal: str) -> None:
    model = _model(name, temporal, aux_params={"classes": 2})
    out = model.train().forward_train(make_series(2, 3, C, 40, 40, invalid_fraction=0.25))
    (out.mask.square().mean() + sum(d.mean() for d in out.deep) + out.label.square().mean()).backward()
    groups = {n for n, _ in model.named_parameters()}
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    for group in {n.split(".")[0] for n in groups}:  # encoder, temporal_attention / temporal_stages, decoder, heads
        grads = [p.grad for n, p in model.named_parameters() if n.split(".")[0] == group]
        assert sum(float(g.abs().sum()) for g in grads) > 0, group
    if temporal == "attention":
        assert model.temporal_attention is not None and len(model.temporal_attention.scorers) > 0
    if temporal == "3d":
        assert all(b.pointwise.weight.grad.abs().sum() > 0 for b in model.temporal_stages.blocks)


@pytest.mark.parametrize(("name", "temporal"), NO_LEAK, ids=lambda v: v)
def test_an_invalid_pixel_of_a_date_cannot_leak(name: str, temporal: str) -> None:
    """Changing date 1's channels beyond the mask channels where it is invalid changes nothing."""
    model = _model(name, temporal).eval()
    x = make_series(2, 3, C, 36, 36, invalid_fraction=0.25)  # date 1: bottom rows invalid
    changed = x.clone()
    changed[:, 1, 11:, 27:, :] = torch.randn_like(changed[:, 1, 11:, 27:, :]) * 5  # still invalid
    changed[:, 2, 11:, :9, :9] = 7.0  # top-left block of date 2, invalid too
    with torch.no_grad():
        assert torch.equal(model(x), model(changed))
        valid_change = x.clone()
        valid_change[:, 1, :, 5, 20] += 1.0  # a valid pixel does count
        assert not torch.equal(model(x), model(valid_change))


@pytest.mark.parametrize(("name", "temporal"), ATTENTION, ids=lambda v: v)
def test_a_date_invalid_everywhere_is_no_date_for_attention(name: str, temporal: str) -> None:
    model = _model(name, temporal)
    x = make_series(2, 3, C, 33, 35, invalid_fraction=0.25)
    with_blank = torch.cat([x[:, :1], torch.zeros_like(x[:, :1]), x[:, 1:]], dim=1)
    with_blank[:, 1, 11:] = torch.randn_like(with_blank[:, 1, 11:])  # beyond the mask channels
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(with_blank), model(x), rtol=0, atol=1e-5)
        # the attention pooling does not depend on the order of the dates
        torch.testing.assert_close(model(x.flip(1)), model(x), rtol=0, atol=1e-5)
    if name in ("unet", "rsprunetpp"):  # no dropout: training mode too (the blank date is never run)
        model.train()
        torch.testing.assert_close(model.forward_train(with_blank).mask, model.forward_train(x).mask,
                                   rtol=0, atol=1e-5)


def test_a_blank_last_date_changes_nothing_in_3d() -> None:
    """The 3D model sees a masked date as the zero padding of its temporal convolutions."""
    model = _model("deeplabv3plus3d", "3d").eval()
    x = make_series(1, 3, C, 40, 40, invalid_fraction=0.25)
    blank = torch.cat([x, torch.zeros_like(x[:, :1])], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(blank), model(x), rtol=0, atol=1e-5)
        all_invalid = torch.zeros_like(x)
        assert torch.isfinite(model(all_invalid)).all()  # a pixel invalid on every date: zero features


def test_masked_batchnorm_ignores_masked_dates() -> None:
    x = make_series(2, 3, C, 12, 10, invalid_fraction=0.25)
    blank = torch.cat([x, torch.zeros_like(x[:, :2])], dim=1)  # two dates invalid everywhere
    bn_a, bn_b = MaskedBatchNorm2d(C).train(), MaskedBatchNorm2d(C).train()
    ya, yb = bn_a(x.flatten(0, 1)), bn_b(blank.flatten(0, 1))
    torch.testing.assert_close(bn_a.running_mean, bn_b.running_mean)
    torch.testing.assert_close(bn_a.running_var, bn_b.running_var)
    torch.testing.assert_close(yb.unflatten(0, (2, 5))[:, :3], ya.unflatten(0, (2, 3)))
    assert torch.all(yb.unflatten(0, (2, 5))[:, 3:] == 0)
    # volumes (N, C, T, H, W) with a mask: the same statistics
    vol = MaskedBatchNorm2d(C).train()
    mask = (blank[:, :, :11].abs().sum(2, keepdim=True) > 0).float().transpose(1, 2)
    vol(blank.transpose(1, 2), mask)
    torch.testing.assert_close(vol.running_mean, bn_a.running_mean)
    torch.testing.assert_close(vol.running_var, bn_a.running_var)


@pytest.mark.parametrize(("name", "temporal"), [("rsprunetpp", "attention"), ("rsprunetpp", "channels"),
                                                ("deeplabv3plus3d", "3d")])
def test_the_input_norm_of_a_series_model_ignores_masked_dates(name: str, temporal: str) -> None:
    x = make_series(2, 3, C, 32, 32, invalid_fraction=0.25)
    blank = x.clone()
    blank[:, 2] = 0  # date 2 invalid everywhere
    blank[:, 2, 11:] = 3.0  # values beyond the mask channels do not make it valid
    kept = blank[:, :2] if temporal != "channels" else None
    a, b = _model(name, temporal).train(), _model(name, temporal).train()
    a.forward_train(blank)
    if kept is not None:
        b.forward_train(kept)
    else:  # dates as channels has a fixed T: the same valid pixels, zeros where date 2 was
        b.forward_train(torch.cat([x[:, :2], torch.zeros_like(x[:, 2:])], dim=1))
    assert a.input_norm is not None and b.input_norm is not None
    torch.testing.assert_close(a.input_norm.running_mean, b.input_norm.running_mean)
    torch.testing.assert_close(a.input_norm.running_var, b.input_norm.running_var)


@pytest.mark.parametrize("encoder", ["test_resnet", "test_efficientnet", "test_convnext"])
def test_temporal_blocks_sit_between_the_stages(encoder: str) -> None:
    model = create_model("deeplabv3plus3d", in_channels=5, num_classes=K, encoder=encoder,
                         aspp_channels=16, decoder_channels=16, low_level_channels=8,
                         encoder_depth=4 if encoder == "test_convnext" else 5)
    assert model.temporal_stages.interleaved
    assert len(stage_modules(model.encoder)) == len(model.encoder.channels)
    x = make_series(1, 3, 5, 32, 32)
    with torch.no_grad():
        model.eval()
        before = model(x)
        plain = model.encoder(x[:, 0])  # the encoder alone (one date): the blocks are not applied
        model.temporal_stages.blocks[0].scale.fill_(1.0)  # the first block feeds every later stage
        assert not torch.equal(model(x), before)
        assert all(torch.equal(a, b) for a, b in zip(model.encoder(x[:, 0]), plain, strict=True))
        twin = copy.deepcopy(model)  # hooks follow the copy's own blocks
        twin.temporal_stages.blocks[0].scale.fill_(0.0)
        assert torch.equal(model(x), model(x)) and not torch.equal(twin(x), model(x))


def test_dates_as_channels_are_named_and_band_mapped(tmp_path: Path) -> None:
    assert date_channel_names(["B04", "NDVI"], 2) == ["t0:B04", "t0:NDVI", "t1:B04", "t1:NDVI"]
    assert normalize_band_name("T1:b4") == "t1:B04" and band_of("t12:b8a") == "B8A" and band_of("red") == "B04"
    sd = timm.create_model("test_resnet", in_chans=3).state_dict()
    path = tmp_path / "rgb.safetensors"
    save_file(sd, str(path))
    model = create_model("unet", in_channels=C, encoder="test_resnet", channel_names=S2_24,
                         temporal="channels", time_steps=2, pretrained=path)
    assert model.in_channels == C and model.encoder_channels == 2 * C
    assert model.encoder_channel_names[:2] == ["t0:B01", "t0:B02"] and model.encoder_channel_names[C] == "t1:B01"
    w, src = model.encoder.model.conv1[0].weight, sd["conv1.0.weight"]
    for t in range(2):
        for rgb, band in enumerate(["B04", "B03", "B02"]):
            torch.testing.assert_close(w[:, t * C + S2_24.index(band)], src[:, rgb] * 3 / (2 * C))
    # the 3D model's per-date encoder is band-mapped as a 2D model's
    model3d = create_model("deeplabv3plus3d", in_channels=C, encoder="test_resnet", channel_names=S2_24,
                           pretrained=path, aspp_channels=16, decoder_channels=16, low_level_channels=8)
    torch.testing.assert_close(model3d.encoder.model.conv1[0].weight[:, S2_24.index("B04")], src[:, 0] * 3 / C)


def test_registry_capabilities_and_cli() -> None:
    info = describe_models()
    assert info["deeplabv3plus3d"]["capabilities"]["time_series"] == ["3d"]
    assert not info["deeplabv3plus3d"]["capabilities"]["single_date"]
    for name in ("rsprunetpp", "unet3plus", "deeplabv3plus", "pspnet", "unet"):
        caps = info[name]["capabilities"]
        assert caps["time_series"] == ["channels", "attention"] and caps["single_date"]
    result = CliRunner().invoke(models_cmd, ["--plain"])
    assert result.exit_code == 0
    assert "time_series (channels/attention)" in result.output and "time_series (3d)" in result.output


def test_unknown_temporal_mode_and_input_errors() -> None:
    with pytest.raises(ModelError, match=r"unknown temporal mode 'atention'.*'channels', 'attention'.*"
                                         r"did you mean 'attention'\?"):
        create_model("unet", in_channels=C, encoder="test_resnet", temporal="atention")
    with pytest.raises(ModelError, match=r"valid modes are '3d' — did you mean '3d'"):
        create_model("deeplabv3plus3d", in_channels=C, encoder="test_resnet", temporal="3D")
    with pytest.raises(ModelError, match="unknown temporal mode None.*'3d'"):
        create_model("deeplabv3plus3d", in_channels=C, encoder="test_resnet", temporal=None)
    with pytest.raises(ModelError, match="needs time_steps"):
        create_model("unet", in_channels=C, encoder="test_resnet", temporal="channels")
    channels = create_model("unet", in_channels=C, encoder="test_resnet", temporal="channels", time_steps=3)
    with pytest.raises(ModelError, match=r"expects a series \(N, T, C, H, W\) with C=24 and T=3, got \(1, 2, 24"):
        channels(torch.randn(1, 2, C, 32, 32))
    with pytest.raises(ModelError, match="a time series needs the option temporal"):
        create_model("unet", in_channels=C, encoder="test_resnet")(torch.randn(1, 2, C, 32, 32))
    with pytest.raises(ModelError, match="takes one with the option temporal"):
        create_model("unet", input_shape=(6, 64, 64, C), encoder="test_resnet")
    attention = create_model("unet", input_shape=(6, 64, 64, C), encoder="test_resnet", temporal="attention")
    assert attention.options.time_steps == 6 and attention.in_channels == C
    with pytest.raises(ModelError, match="T=6 dates but time_steps=4"):
        create_model("deeplabv3plus", input_shape=(6, None, None, C), time_steps=4, encoder="test_resnet")
    anyt = create_model("deeplabv3plus", input_shape=(None, None, None, C), encoder="test_resnet")
    assert anyt.name == "deeplabv3plus3d" and anyt.options.time_steps is None


@pytest.mark.parametrize(("name", "temporal"), [("unet", "attention"), ("pspnet", "channels"),
                                                ("deeplabv3plus3d", "3d")])
def test_spec_round_trip(name: str, temporal: str, tmp_path: Path) -> None:
    model = _model(name, temporal).eval()
    spec = json.loads(json.dumps(model.spec))
    assert spec["options"]["temporal"] == temporal and spec["in_channels"] == C
    rebuilt = create_model(**spec)
    assert type(rebuilt) is type(model) and rebuilt.spec == model.spec
    x = make_series(1, 3, C, 24, 24, invalid_fraction=0.25)
    loaded = load_model(save_weights(model, tmp_path / "m.safetensors")).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_a_checkpoint_written_before_the_series_options_still_loads(tmp_path: Path) -> None:
    model = create_model("unet", in_channels=5, encoder="test_resnet")
    old = json.loads(json.dumps(model.spec))
    for key in ("temporal", "time_steps", "mask_channels"):
        del old["options"][key]
    path = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={SPEC_KEY: json.dumps(old)})
    fresh = create_model("unet", in_channels=5, encoder="test_resnet")
    load_weights(fresh, path)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values(),
                                                 strict=True))
    assert load_model(path).spec == model.spec
