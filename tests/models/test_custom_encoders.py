"""Custom encoders the smp and medicai ways (seeds 002 and 003): found by name in smp's dict,
adapted to any input channels (band-aware with weights), P1..Pn dicts with their own levels,
smp's ``encoder_weights`` / ``pretrained_settings``, output-stride fallback, ``input_shape``
and ``classifier_activation``. No network: downloads are replaced by local state dicts."""

from __future__ import annotations

import logging
from pathlib import Path

import huggingface_hub
import pytest
import safetensors.torch
import segmentation_models_pytorch as smp
import torch
from _model_helpers import S2_24
from segmentation_models_pytorch.encoders._base import EncoderMixin
from torch import nn

from geoseg.errors import CheckpointError, ModelError
from geoseg.models import create_encoder, create_model, load_model, register_encoder, save_weights
from geoseg.models import unregister_encoder as unregister

SMALL = {"aspp_channels": 16, "decoder_channels": 16, "low_level_channels": 8}


class TemplateEncoder(nn.Module, EncoderMixin):
    """smp's template: built for 3 channels whatever it is asked (``**kwargs`` ignored)."""

    def __init__(self, width: int = 4, **kwargs: object) -> None:
        super().__init__()
        self._out_channels = [3] + [width * 2**i for i in range(5)]
        self._depth = 5
        self._in_channels = 3
        chans = self._out_channels
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(chans[i], chans[i + 1], 3, 2, 1), nn.BatchNorm2d(chans[i + 1]), nn.ReLU())
            for i in range(5)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [x]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        return feats


class ConvNeXtStyle(nn.Module):
    """A ConvNeXt-like backbone returning ``{"P1": stride 4, ..., "P4": stride 32}``."""

    def __init__(self, in_channels: int = 3, dims: tuple[int, ...] = (8, 16, 24, 32), strides=(4, 2, 2, 2)):
        super().__init__()
        chans = [in_channels, *dims]
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(chans[i], chans[i + 1], s, s), nn.GELU()) for i, s in enumerate(strides)
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for i, stage in enumerate(self.stages, start=1):
            x = stage(x)
            out[f"P{i}"] = x
        return out


def _first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.encoder.modules() if isinstance(m, nn.Conv2d))


@pytest.fixture
def smp_registered(monkeypatch: pytest.MonkeyPatch):
    """Register TemplateEncoder in smp's own dict (removed again after the test)."""

    def register(name: str = "tpl_enc", settings: dict | None = None, trailing_comma: bool = False) -> str:
        entry = {"encoder": TemplateEncoder, "pretrained_settings": settings or {}, "params": {"width": 4}}
        monkeypatch.setitem(smp.encoders.encoders, name, (entry,) if trailing_comma else entry)
        return name

    return register


def _rgb_state_dict() -> dict[str, torch.Tensor]:
    return {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in TemplateEncoder().state_dict().items()}


# ------------------------------------------------------------------ seed 002: smp registry
@pytest.mark.parametrize("trailing_comma", [False, True])
def test_smp_dict_encoder_is_found_and_set_to_24_channels(smp_registered, trailing_comma: bool) -> None:
    name = smp_registered(trailing_comma=trailing_comma)
    model = create_model("unet", in_channels=24, num_classes=3, encoder=name)
    conv = _first_conv(model)
    assert conv.in_channels == 24 and conv.weight.shape[1] == 24
    module = model.encoder.module
    assert module._in_channels == 24 and module.out_channels[0] == 24  # smp's bookkeeping follows
    assert model(torch.randn(2, 24, 40, 40)).shape == (2, 3, 40, 40)
    assert model.spec["encoder"] == name
    assert type(create_model(**model.spec).encoder.module) is TemplateEncoder  # rebuilt by name


def test_geoseg_registered_template_is_adapted_too() -> None:
    register_encoder("tpl_geoseg", TemplateEncoder)
    try:
        model = create_model("deeplabv3plus", in_channels=7, encoder="tpl_geoseg", output_stride=32, **SMALL)
        assert _first_conv(model).in_channels == 7
        assert model(torch.randn(2, 7, 64, 64)).shape == (2, 3, 64, 64)
    finally:
        unregister("tpl_geoseg")


def test_smp_builtin_encoder_is_dilated_by_make_dilated() -> None:
    """An smp-only name (not a timm model) goes through smp's set_in_channels/make_dilated path."""
    model = create_model("deeplabv3plus", in_channels=24, encoder="mobilenet_v2", **SMALL)
    assert model.spec["encoder"] == "mobilenet_v2"
    assert model.encoder.reductions == [2, 4, 8, 16, 16] and model.encoder.levels == [1, 2, 3, 4, 5]
    assert model(torch.randn(2, 24, 48, 48)).shape == (2, 3, 48, 48)


def test_tu_prefix_is_timm_and_bad_entries_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    enc = create_encoder("tu-test_resnet", in_channels=5)
    assert enc.name == "test_resnet" and enc.levels == [1, 2, 3, 4, 5]
    monkeypatch.setitem(smp.encoders.encoders, "broken_enc", {"params": {}})
    with pytest.raises(ModelError, match="must be a dict with keys 'encoder'"):
        create_model("unet", encoder="broken_enc")
    with pytest.raises(ModelError, match="unknown encoder.*did you mean"):
        create_model("unet", encoder="mobilenet_v3")


def test_encoder_instance_with_other_channels_is_refused() -> None:
    with pytest.raises(ModelError, match="takes 3 input channels.*register its class"):
        create_model("unet", in_channels=24, encoder=TemplateEncoder())
    model = create_model("unet", encoder=TemplateEncoder())  # in_channels taken from the instance
    assert model.in_channels == 3


# ------------------------------------------------------------------ seed 002: weights
def test_imagenet_settings_from_a_local_file_are_band_mapped(smp_registered, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    sd = _rgb_state_dict()
    path = tmp_path / "rgb.safetensors"
    safetensors.torch.save_file(sd, str(path))
    name = smp_registered(settings={"imagenet": {"url": str(path), "input_space": "RGB"},
                                    "bgr": {"url": f"file://{path}", "input_space": "BGR"}})
    with caplog.at_level(logging.INFO, logger="geoseg.models.first_conv"):
        model = create_model("unet", in_channels=24, encoder=name, pretrained=True, channel_names=S2_24)
    w = _first_conv(model).weight.detach()
    src = sd["stages.0.0.weight"]
    for band, i in (("B04", 0), ("B03", 1), ("B02", 2)):  # RGB filters land by name, scaled 3/24
        torch.testing.assert_close(w[:, S2_24.index(band)], src[:, i] * 3 / 24)
    torch.testing.assert_close(w[:, S2_24.index("NDVI")], src.mean(1) * 3 / 24)
    torch.testing.assert_close(model.encoder.module.stages[1][0].weight, sd["stages.1.0.weight"])
    assert "copied [B02<-B02, B03<-B03, B04<-B04]; 21 channel(s) mean-initialised" in caplog.text
    bgr = create_model("unet", in_channels=24, encoder=name, pretrained="bgr", channel_names=S2_24)
    torch.testing.assert_close(_first_conv(bgr).weight[:, S2_24.index("B04")].detach(), src[:, 2] * 3 / 24)
    unnamed = create_model("unet", in_channels=24, encoder=name, pretrained=True)  # smp's set_in_channels
    torch.testing.assert_close(_first_conv(unnamed).weight[:, 4].detach(), src[:, 1] * 3 / 24)  # 4 mod 3
    with pytest.raises(ModelError, match=r"no 'ssl' weights.*\['bgr', 'imagenet'\]"):  # smp's tag spelling
        create_model("unet", in_channels=3, encoder=name, pretrained="ssl")


def test_downloads_go_through_torch_hub_and_the_hf_hub(smp_registered, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    """The call path up to the download, with the download replaced (no network in tests)."""
    sd = _rgb_state_dict()
    calls: list[tuple] = []

    def fake_url(url: str, **kwargs: object) -> dict:
        calls.append(("url", url, kwargs.get("weights_only")))
        return {"state_dict": dict(sd)}  # a Lightning-style wrapper is unwrapped

    def fake_hf(repo_id: str, filename: str, revision: str | None = None) -> str:
        calls.append(("hf", repo_id, filename, revision))
        path = tmp_path / filename
        safetensors.torch.save_file(sd, str(path))
        return str(path)

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_url)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_hf)
    name = smp_registered(settings={"imagenet": {"url": "https://some-url.com/my-model-weights"},
                                    "hub": {"repo_id": "org/enc", "revision": "abc"}})
    a = create_model("unet", in_channels=3, encoder=name, pretrained=True)
    b = create_model("unet", in_channels=3, encoder=name, pretrained="hub")
    assert calls == [("url", "https://some-url.com/my-model-weights", True),
                     ("hf", "org/enc", "model.safetensors", "abc")]
    for model in (a, b):  # 3 channels named RGB by default: loaded unchanged
        torch.testing.assert_close(_first_conv(model).weight, sd["stages.0.0.weight"])

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(ModelError, match="could not download.*no network"):
        create_model("unet", in_channels=3, encoder=name, pretrained=True)


def test_declared_bands_are_checked_before_any_download(smp_registered, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings of 13-band weights on 24 unnamed channels: refused before anything is fetched."""
    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("downloaded")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    s2 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
    name = smp_registered(settings={"imagenet": {"url": "https://some-url.com/s2-weights", "bands": s2}})
    with pytest.raises(ModelError, match="weights of 13 bands for 'tpl_enc' need channel_names"):
        create_model("unet", in_channels=24, encoder=name, pretrained=True)


def test_local_backbone_file_for_a_registered_encoder(smp_registered, tmp_path: Path) -> None:
    """pretrained=<file> holding the encoder's own 3-channel weights: loaded, then band-mapped."""
    sd = _rgb_state_dict()
    path = tmp_path / "enc.pth"
    torch.save(sd, path)
    name = smp_registered()
    model = create_model("unet", in_channels=24, encoder=name, pretrained=path, channel_names=S2_24)
    torch.testing.assert_close(_first_conv(model).weight[:, S2_24.index("B03")].detach(),
                               sd["stages.0.0.weight"][:, 1] * 3 / 24)
    bad = tmp_path / "bad.pth"
    torch.save({"stages.0.0.weight": torch.zeros(4, 3, 3, 3)}, bad)
    with pytest.raises(CheckpointError, match="do not fit encoder"):
        create_model("unet", in_channels=24, encoder=name, pretrained=bad, channel_names=S2_24)


# ------------------------------------------------------------------ seed 003: P1..Pn dicts
def test_pyramid_dict_keys_are_the_levels() -> None:
    """ConvNeXt-style: P1 at stride 4. The keys are honoured, not re-derived from strides."""
    model = create_model("deeplabv3plus", num_classes=1, encoder=ConvNeXtStyle(), encoder_depth=4,
                         head_upsample=8, **SMALL)
    assert model.in_channels == 3  # taken from the encoder (its first convolution)
    enc = model.encoder
    assert enc.levels == [1, 2, 3, 4] and enc.reductions == [4, 8, 16, 32]
    assert enc.pyramid_outputs == {"P1": (8, 4), "P2": (16, 8), "P3": (24, 16), "P4": (32, 32)}
    assert model.deep_index == 3 and model.low_index == 1
    x = torch.randn(2, 3, 64, 64)
    assert {k: v.shape[1] for k, v in enc.pyramid(x).items()} == {"P1": 8, "P2": 16, "P3": 24, "P4": 32}
    assert model(x).shape == (2, 1, 64, 64)
    assert [b[0][0].dilation for b in model.aspp.branches[1:]] == [(3, 3), (6, 6), (9, 9)]  # stride 32
    with pytest.raises(ModelError, match="encoder_depth=4"):  # the default depth 5: P5 is missing
        create_model("deeplabv3plus", encoder=ConvNeXtStyle(), **SMALL)


@pytest.mark.parametrize(("encoder", "match"), [
    (ConvNeXtStyle(strides=(2, 4, 2, 2)), "P2 has stride 8 after P1 at stride 2"),
    (ConvNeXtStyle(strides=(4, 2, 1, 2)), None),  # a dilated-like level keeps the resolution: fine
])
def test_pyramid_strides_are_checked_against_the_levels(encoder: nn.Module, match: str | None) -> None:
    if match is None:
        model = create_model("deeplabv3plus", encoder=encoder, encoder_depth=4, **SMALL)
        assert model.encoder.reductions == [4, 8, 8, 16]
        return
    with pytest.raises(ModelError, match=match):
        create_model("deeplabv3plus", encoder=encoder, encoder_depth=4, **SMALL)


def test_unet_names_the_level_that_is_not_at_its_stride() -> None:
    """smp's U-Net decoder needs P_l at stride 2**l: a ConvNeXt-style P1 at stride 4 is named, with the fix."""
    with pytest.raises(ModelError, match=r"unet needs each level P_l at stride 2\*\*l, but encoder .* has P1 at "
                                         r"stride 4 .* key its features by stride \(P2, P3, P4, P5 with "
                                         r"encoder_depth=5\)"):
        create_model("unet", encoder=ConvNeXtStyle(), encoder_depth=4)

    class ByStride(ConvNeXtStyle):  # the hint followed
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
            return {f"P{int(k[1:]) + 1}": v for k, v in super().forward(x).items()}

    model = create_model("unet", encoder=ByStride(), encoder_depth=5)
    assert model.encoder.levels == [2, 3, 4, 5] and model(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_pyramid_keys_must_be_levels() -> None:
    class Named(ConvNeXtStyle):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
            return {"stem" if k == "P1" else k: v for k, v in super().forward(x).items()}

    with pytest.raises(ModelError, match="returned keys.*expected P1..Pn"):
        create_model("deeplabv3plus", encoder=Named(), encoder_depth=4, **SMALL)


# ------------------------------------------------------------------ seed 003: output stride
def test_undilatable_encoder_falls_back_at_the_default_stride(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="geoseg.models.encoders"):
        model = create_model("deeplabv3plus", in_channels=3, encoder="densenet121", **SMALL)
    assert model.encoder.reductions[-1] == 32
    notes = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert notes == ["encoder 'densenet121' cannot be dilated to output_stride=16; using it at output stride 32"]
    assert [b[0][0].dilation for b in model.aspp.branches[1:]] == [(3, 3), (6, 6), (9, 9)]
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 3, 64, 64)
    with pytest.raises(ModelError, match="cannot be built with output_stride=16"):  # asked for: refused
        create_model("deeplabv3plus", in_channels=3, encoder="densenet121", output_stride=16, **SMALL)


PSP_8X = {"use_unet": False, "psp_channels": 16, "pyramid_sizes": (1, 2)}


@pytest.mark.parametrize("encoder", ["densenet121", "template"])
def test_pspnet_8x_head_falls_back_when_the_encoder_cannot_dilate(
    encoder: str, caplog: pytest.LogCaptureFixture
) -> None:
    """PSPNet's plain head dilates by default (keep_dilation=None): a wish, like DeepLabV3+'s 16."""
    enc = TemplateEncoder() if encoder == "template" else encoder
    name = "custom:test_custom_encoders.TemplateEncoder" if encoder == "template" else encoder
    with caplog.at_level(logging.WARNING, logger="geoseg.models.encoders"):
        model = create_model("pspnet", in_channels=3, num_classes=2, encoder=enc, **PSP_8X)
    notes = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert notes == [f"encoder {name!r} cannot be dilated to output_stride=8; using it at output stride 32"]
    assert model.encoder.reductions == [2, 4, 8, 16, 32]
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 2, 64, 64)
    # keep_dilation=True asked for: refused, naming PSPNet's own setting (it has no output_stride)
    with pytest.raises(ModelError, match=r"output_stride=8.*keep_dilation=False$") as err:
        create_model("pspnet", in_channels=3, num_classes=2, encoder=enc, keep_dilation=True, **PSP_8X)
    assert "output_stride=32" not in str(err.value)


# ------------------------------------------------------------------ seed 003: options
def test_input_shape_gives_the_channels() -> None:
    model = create_model("deeplabv3plus", input_shape=(224, 224, 5), encoder="test_resnet", **SMALL)
    assert model.in_channels == 5
    assert create_model("unet", input_shape=(None, None, 4), encoder="test_resnet").in_channels == 4
    series = create_model("deeplabv3plus", input_shape=(4, 96, 96, 3), encoder="test_resnet", **SMALL)
    assert series.name == "deeplabv3plus3d" and (series.in_channels, series.options.time_steps) == (3, 4)
    with pytest.raises(ModelError, match="has 3 channels but in_channels=24"):
        create_model("deeplabv3plus", input_shape=(64, 64, 3), in_channels=24, encoder="test_resnet")
    with pytest.raises(ModelError, match=r"\(H, W, C\) or a series \(T, H, W, C\)"):
        create_model("deeplabv3plus", input_shape=(64, 64), encoder="test_resnet")
    with pytest.raises(ModelError, match=r"looks channels-first \(C, H, W\).*64 channels — give \(64, 64, 3\)"):
        create_model("deeplabv3plus", input_shape=(3, 64, 64), encoder="test_resnet")
    assert create_model("unet", input_shape=(128, 64, 64), encoder="test_resnet").in_channels == 64  # H > W: as given


@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_classifier_activation(activation: str, tmp_path: Path) -> None:
    model = create_model("deeplabv3plus", in_channels=3, num_classes=2, encoder="test_resnet",
                         classifier_activation=activation, aux_params={"classes": 2}, **SMALL).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        mask, label = model(x)
        logits = model.forward_train(x).mask  # the losses keep logits
    expected = torch.sigmoid(logits) if activation == "sigmoid" else torch.softmax(logits, 1)
    torch.testing.assert_close(mask, expected)
    assert label.shape == (2, 2)
    rebuilt = load_model(save_weights(model, tmp_path / "m.safetensors"))
    assert rebuilt.options.classifier_activation == activation
    with pytest.raises(ModelError, match="classifier_activation"):
        create_model("deeplabv3plus", encoder="test_resnet", classifier_activation="relu")
