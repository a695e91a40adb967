"""Weights: band-aware first conv, local/pretrained backbones, torchgeo mapping, checkpoints.

No test touches the network: hub downloads are simulated by patching ``timm.create_model``.
"""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path

import pytest
import timm
import torch
from _model_helpers import S2_24
from safetensors.torch import save_file

import geoseg.models
from geoseg.errors import CheckpointError, ModelError
from geoseg.models import (
    adapt_first_conv_weight,
    create_model,
    load_model,
    load_torchgeo_weights,
    load_weights,
    normalize_band_name,
    read_state_dict,
    save_weights,
)

# torchgeo's spelling of the 13 Sentinel-2 TOA bands (weights.meta["bands"])
TORCHGEO_S2 = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8a", "B9", "B10", "B11", "B12"]


def _conv0(model) -> torch.Tensor:
    return next(p for p in model.encoder.parameters() if p.ndim == 4).detach()


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [("B4", "B04"), ("b04", "B04"), ("red", "B04"), ("B8a", "B8A"), ("b8A", "B8A"),
     ("B12", "B12"), ("ndvi", "NDVI"), ("B1", "B01")],
)
def test_normalize_band_name(raw: str, canonical: str) -> None:
    assert normalize_band_name(raw) == canonical


def test_rgb_filters_land_on_b04_b03_b02(caplog: pytest.LogCaptureFixture) -> None:
    w = torch.randn(8, 3, 3, 3)
    with caplog.at_level(logging.INFO, logger="geoseg.models.first_conv"):
        out, mapping = adapt_first_conv_weight(w, ["B04", "B03", "B02"], S2_24)
    scale = 3 / 24
    assert out.shape == (8, 24, 3, 3)
    torch.testing.assert_close(out[:, S2_24.index("B04")], w[:, 0] * scale)
    torch.testing.assert_close(out[:, S2_24.index("B03")], w[:, 1] * scale)
    torch.testing.assert_close(out[:, S2_24.index("B02")], w[:, 2] * scale)
    for c in ("B01", "B08", "NDVI", "DRS"):
        torch.testing.assert_close(out[:, S2_24.index(c)], w.mean(dim=1) * scale)
    assert mapping.matched == {"B02": 2, "B03": 1, "B04": 0}
    # not "the first three channels": channel 0 is B01, which gets the mean filter
    assert not torch.allclose(out[:, 0], w[:, 0] * scale)
    assert "B04<-B04" in caplog.text and "21 channel(s) mean-initialised" in caplog.text


def test_expected_activation_is_preserved() -> None:
    w = torch.randn(16, 3, 7, 7)
    out, _ = adapt_first_conv_weight(w, ["B04", "B03", "B02"], S2_24)
    x = torch.ones(1, 3, 7, 7)
    ref = torch.nn.functional.conv2d(x, w)
    got = torch.nn.functional.conv2d(torch.ones(1, 24, 7, 7), out)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)  # uniform input: same response


def test_torchgeo_13_band_mapping() -> None:
    w = torch.randn(4, 13, 3, 3)
    out, mapping = adapt_first_conv_weight(w, TORCHGEO_S2, S2_24)
    scale = 13 / 24
    for i, band in enumerate(S2_24[:11]):  # the 11 reflectances exist in the source
        j = [normalize_band_name(b) for b in TORCHGEO_S2].index(band)
        torch.testing.assert_close(out[:, i], w[:, j] * scale)
    torch.testing.assert_close(out[:, S2_24.index("NDVI")], w.mean(dim=1) * scale)
    assert len(mapping.matched) == 11


def test_mapping_errors() -> None:
    with pytest.raises(ModelError, match="3 source bands"):
        adapt_first_conv_weight(torch.randn(4, 4, 3, 3), ["B04", "B03", "B02"], S2_24)
    with pytest.raises(ModelError, match="duplicated"):
        adapt_first_conv_weight(torch.randn(4, 3, 3, 3), ["B04", "B03", "B02"], ["B04", "b4"])


def _timm_backbone_file(tmp_path: Path, name: str = "test_resnet", in_chans: int = 3,
                        bands: list[str] | None = None, fmt: str = "safetensors") -> tuple[Path, dict]:
    sd = timm.create_model(name, in_chans=in_chans).state_dict()
    path = tmp_path / f"backbone.{'safetensors' if fmt == 'safetensors' else 'pth'}"
    if fmt == "safetensors":
        save_file(sd, str(path), metadata={"bands": json.dumps(bands)} if bands else None)
    else:
        torch.save(sd, path)
    return path, sd


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_local_rgb_backbone_file_is_band_mapped(tmp_path: Path, fmt: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    path, sd = _timm_backbone_file(tmp_path, fmt=fmt)
    with caplog.at_level(logging.INFO, logger="geoseg.models"):
        model = create_model("unet", in_channels=24, encoder="test_resnet", pretrained=path,
                             channel_names=S2_24)
    w, src = _conv0(model), sd["conv1.0.weight"]
    for rgb_index, band in enumerate(["B04", "B03", "B02"]):
        torch.testing.assert_close(w[:, S2_24.index(band)], src[:, rgb_index] * 3 / 24)
    torch.testing.assert_close(w[:, S2_24.index("B8A")], src.mean(dim=1) * 3 / 24)
    # the rest of the backbone is the file's
    torch.testing.assert_close(model.encoder.model.state_dict()["layer1.0.conv1.weight"],
                               sd["layer1.0.conv1.weight"])
    assert "first conv" in caplog.text or "conv1.0" in caplog.text


def test_local_13_band_file_with_band_metadata(tmp_path: Path) -> None:
    path, sd = _timm_backbone_file(tmp_path, in_chans=13, bands=TORCHGEO_S2)
    model = create_model("deeplabv3plus", in_channels=24, encoder="test_resnet", pretrained=path,
                         channel_names=S2_24)
    w, src = _conv0(model), sd["conv1.0.weight"]
    torch.testing.assert_close(w[:, S2_24.index("B8A")], src[:, TORCHGEO_S2.index("B8a")] * 13 / 24)
    torch.testing.assert_close(w[:, S2_24.index("B12")], src[:, 12] * 13 / 24)


def test_same_layout_file_loads_unchanged(tmp_path: Path) -> None:
    path, sd = _timm_backbone_file(tmp_path, in_chans=24)
    model = create_model("unet", in_channels=24, encoder="test_resnet", pretrained=path)
    torch.testing.assert_close(_conv0(model), sd["conv1.0.weight"])


def _notes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("in_channels", [24, 1, 2])
def test_rgb_weights_on_unnamed_channels_are_cycled_as_smp_does(tmp_path: Path, in_channels: int,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """No channel_names: smp's set_in_channels (RGB filters cycled, scaled 3/C; 1 channel: their sum)."""
    from segmentation_models_pytorch.encoders._utils import patch_first_conv

    path, sd = _timm_backbone_file(tmp_path)
    with caplog.at_level(logging.WARNING, logger="geoseg.models"):
        model = create_model("unet", in_channels=in_channels, encoder="test_resnet", pretrained=path)
    smp_way = timm.create_model("test_resnet", features_only=True)
    smp_way.load_state_dict(sd, strict=False)
    patch_first_conv(smp_way, in_channels, default_in_channels=3, pretrained=True)
    torch.testing.assert_close(_conv0(model), smp_way.conv1[0].weight.detach())
    if in_channels == 24:
        torch.testing.assert_close(_conv0(model)[:, 22], sd["conv1.0.weight"][:, 1] * 3 / 24)  # 22 mod 3
    assert _notes(caplog) == [f"test_resnet.conv1.0.weight: 3 pretrained input filters cycled over {in_channels} "
                              "unnamed channels (smp's set_in_channels), not band-aware: pass channel_names to "
                              "map the bands by name"]
    torch.testing.assert_close(model.encoder.model.state_dict()["layer1.0.conv1.weight"],
                               sd["layer1.0.conv1.weight"])


def test_weights_of_other_bands_need_channel_names(tmp_path: Path) -> None:
    path, _ = _timm_backbone_file(tmp_path, in_chans=13, bands=TORCHGEO_S2)
    with pytest.raises(ModelError, match="weights of 13 bands .* need channel_names for 24 input channels"):
        create_model("unet", in_channels=24, encoder="test_resnet", pretrained=path)


def test_rgb_weights_on_rgb_channels(tmp_path: Path) -> None:
    path, sd = _timm_backbone_file(tmp_path)
    model = create_model("unet", in_channels=3, encoder="test_resnet", pretrained=path)  # RGB
    torch.testing.assert_close(_conv0(model), sd["conv1.0.weight"])
    bgr = create_model("unet", in_channels=3, encoder="test_resnet", pretrained=path,
                       channel_names=["B02", "B03", "B04"])
    torch.testing.assert_close(_conv0(bgr), sd["conv1.0.weight"].flip(1))


def test_hub_download_failure_is_a_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = timm.create_model

    def offline(name: str, *args, pretrained: bool = False, **kwargs):
        if pretrained and not kwargs.get("pretrained_cfg_overlay"):
            raise OSError("Temporary failure in name resolution")
        return real(name, *args, pretrained=pretrained, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ModelError, match="no network") as err:
        create_model("unet", in_channels=24, encoder="test_resnet", pretrained=True, channel_names=S2_24)
    assert "local" in str(err.value)
    with pytest.raises(ModelError, match="no network"):  # unnamed channels: smp's mapping, after the download
        create_model("unet", in_channels=24, encoder="test_resnet", pretrained=True)


def test_torchgeo_band_names_are_checked_before_any_download() -> None:
    class NoDownload(_FakeWeights):
        def get_state_dict(self, progress: bool = True) -> dict[str, torch.Tensor]:
            raise AssertionError("downloaded")

    model = create_model("unet", in_channels=24, encoder="test_resnet")  # no channel_names
    with pytest.raises(ModelError, match="13 bands .* need channel_names"):
        load_torchgeo_weights(model, NoDownload({}))


def test_hub_weights_are_band_mapped(monkeypatch: pytest.MonkeyPatch) -> None:
    """pretrained=True path with the hub replaced by a locally generated RGB state dict."""
    hub_sd = timm.create_model("test_resnet").state_dict()
    real = timm.create_model

    def fake_hub(name: str, *args, pretrained: bool = False, **kwargs):
        if pretrained and not kwargs.get("pretrained_cfg_overlay"):
            kwargs["pretrained_cfg_overlay"] = {"state_dict": dict(hub_sd)}
        return real(name, *args, pretrained=pretrained, **kwargs)

    monkeypatch.setattr(timm, "create_model", fake_hub)
    model = create_model("pspnet", in_channels=24, encoder="test_resnet", pretrained=True,
                         channel_names=S2_24)
    torch.testing.assert_close(_conv0(model)[:, S2_24.index("B04")], hub_sd["conv1.0.weight"][:, 0] * 3 / 24)


def test_pretrained_true_needs_a_timm_encoder() -> None:
    from test_encoders import TinySmpEncoder  # noqa: PLC0415 - shared test encoder

    with pytest.raises(ModelError, match="timm encoder"):
        create_model("unet", in_channels=4, encoder=TinySmpEncoder(in_channels=4), pretrained=True)


class _FakeWeights:
    """Stands in for a torchgeo WeightsEnum member (meta + get_state_dict), no download."""

    def __init__(self, sd: dict[str, torch.Tensor]) -> None:
        self.meta = {"bands": TORCHGEO_S2, "model": "test_resnet"}
        self._sd = sd

    def get_state_dict(self, progress: bool = True) -> dict[str, torch.Tensor]:
        return dict(self._sd)


def test_load_torchgeo_weights_maps_band_by_band() -> None:
    sd = timm.create_model("test_resnet", in_chans=13).state_dict()
    model = create_model("unet3plus", in_channels=24, encoder="test_resnet", channel_names=S2_24,
                         cat_channels=8)
    load_torchgeo_weights(model, _FakeWeights(sd))
    w = _conv0(model)
    for band in ("B02", "B03", "B04", "B08", "B8A", "B11"):
        j = [normalize_band_name(b) for b in TORCHGEO_S2].index(band)
        torch.testing.assert_close(w[:, S2_24.index(band)], sd["conv1.0.weight"][:, j] * 13 / 24)
    torch.testing.assert_close(model.encoder.model.state_dict()["layer2.0.conv2.weight"],
                               sd["layer2.0.conv2.weight"])


def test_geoseg_checkpoint_as_pretrained(tmp_path: Path) -> None:
    src = create_model("unet", in_channels=5, encoder="test_resnet")
    path = save_weights(src, tmp_path / "run.safetensors")
    model = create_model("unet", in_channels=5, encoder="test_resnet", pretrained=path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), src.state_dict().values(), strict=True))


def test_checkpoint_errors(tmp_path: Path) -> None:
    unet = create_model("unet", in_channels=5, encoder="test_resnet")
    path = save_weights(unet, tmp_path / "u.safetensors")
    other = create_model("pspnet", in_channels=5, encoder="test_resnet")
    with pytest.raises(CheckpointError, match="different architecture"):
        load_weights(other, path)
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(unet, tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.pth"
    torch.save({"weights": {"a": torch.zeros(1)}, "opt": object.__new__(_FakeWeights)}, bad)
    with pytest.raises(CheckpointError, match="weights_only"):
        read_state_dict(bad)
    plain = tmp_path / "plain.pth"
    torch.save({"state_dict": {f"model.{k}": v for k, v in unet.state_dict().items()}}, plain)
    sd, meta = read_state_dict(plain)  # lightning-style wrapper + prefix unwrapped
    assert meta == {} and set(sd) == set(unet.state_dict())
    load_weights(create_model("unet", in_channels=5, encoder="test_resnet"), plain)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(CheckpointError):
        read_state_dict(garbage)


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_plain_torch_checkpoint_without_spec_is_a_whole_model(tmp_path: Path) -> None:
    """No geoseg metadata (a Lightning file): whole model when its keys are the model's keys."""
    kw = {"in_channels": 24, "encoder": "test_resnet", "channel_names": S2_24, "psp_channels": 32}
    src = create_model("pspnet", **kw)
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in src.state_dict().items()}}, path)
    assert _same_state(create_model("pspnet", **kw, pretrained=path), src)
    with pytest.raises(CheckpointError, match="do not fit"):  # keys of another architecture
        create_model("pspnet", **{**kw, "psp_channels": 16}, pretrained=path)


def test_model_bundle_directory_as_weights(tmp_path: Path) -> None:
    """A bundle (config.json with the spec + model.safetensors without metadata) loads too."""
    kw = {"in_channels": 24, "num_classes": 3, "encoder": "test_resnet", "channel_names": S2_24,
          "aspp_channels": 16, "decoder_channels": 16}
    src = create_model("deeplabv3plus", **kw)
    bundle = tmp_path / "best"
    bundle.mkdir()
    save_file(src.state_dict(), str(bundle / "model.safetensors"))
    (bundle / "config.json").write_text(json.dumps({"model": src.spec, "window": 64}))
    assert _same_state(create_model("deeplabv3plus", **kw, pretrained=bundle), src)
    assert _same_state(load_model(bundle), src)
    assert _same_state(load_weights(create_model("deeplabv3plus", **kw), bundle), src)
    with pytest.raises(CheckpointError, match="model bundle directory"):
        create_model("deeplabv3plus", **kw, pretrained=tmp_path)


def test_whole_checkpoint_must_fit_the_model(tmp_path: Path) -> None:
    src = create_model("unet3plus", in_channels=24, encoder="test_resnet", channel_names=S2_24,
                       cat_channels=8)
    path = save_weights(src, tmp_path / "u3.safetensors")
    # options that hold no weights may differ (fine-tune with a frozen backbone)
    frozen = create_model("unet3plus", in_channels=24, encoder="test_resnet", channel_names=S2_24,
                          cat_channels=8, freeze_backbone=True, pretrained=path)
    assert _same_state(frozen, src)
    with pytest.raises(CheckpointError, match="architecture differs.*name: file 'unet3plus' vs model 'unet'"):
        create_model("unet", in_channels=24, encoder="test_resnet", channel_names=S2_24, pretrained=path)
    with pytest.raises(CheckpointError, match="architecture differs.*num_classes"):
        create_model("unet3plus", in_channels=24, num_classes=5, encoder="test_resnet",
                     channel_names=S2_24, cat_channels=8, pretrained=path)
    with pytest.raises(CheckpointError, match="trained on channels"):  # never silently shuffled
        create_model("unet3plus", in_channels=24, encoder="test_resnet", channel_names=S2_24[::-1],
                     cat_channels=8, pretrained=path)


def test_models_modules_import_without_cycles() -> None:
    """weights.py reads/writes/maps weights; factories (create_model, load_model) live in registry."""
    root = Path(geoseg.models.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in root.glob("*.py"):
        if path.stem == "__init__":
            continue
        deps = graph.setdefault(path.stem, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # local imports too
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("geoseg.models"):
                assert node.module != "geoseg.models" or all(
                    (root / f"{a.name}.py").is_file() for a in node.names
                ), f"{path.name} imports from the geoseg.models package (its __init__ imports everything)"
                deps.update(node.module.split(".")[2:3] or [a.name for a in node.names])
    seen: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(mod: str, trail: list[str]) -> None:
        assert seen.get(mod) != 1, f"import cycle: {' -> '.join([*trail, mod])}"
        if seen.get(mod) == 2 or mod not in graph:
            return
        seen[mod] = 1
        for dep in sorted(graph[mod]):
            visit(dep, [*trail, mod])
        seen[mod] = 2

    for mod in sorted(graph):
        visit(mod, [])
    assert "registry" not in graph["weights"] and "weights" in graph["registry"]
