"""torchgeo's Sentinel-2 weights by name (``pretrained="torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOCO"``).

No network: the weights are generated here with the shape torchgeo's member describes (timm's
``resnet18`` with ``in_chans=13``) and written where torchgeo keeps its downloads (torch hub's
``checkpoints/<file name of the URL>`` under a temporary ``TORCH_HOME``) or to a file given
with ``=<file>``. torchvision's download (``WeightsEnum.get_state_dict``) is replaced by one
that fails as it does offline, and records that it was called.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlparse

import numpy as np
import pytest
import timm
import torch
import torchvision.models
from _model_helpers import S2_24
from safetensors.torch import load_file
from torchgeo.models import ResNet18_Weights

from geoseg.errors import CheckpointError, ModelError
from geoseg.models import create_model, load_torchgeo_weights
from geoseg.models.torchgeo_weights import (
    check_pretrained,
    timm_model_of,
    torchgeo_weight_names,
    torchgeo_weights,
)
from tests.reliability.conftest import assert_refused, run_inproc

NAME = "ResNet18_Weights.SENTINEL2_ALL_MOCO"
WEIGHTS = ResNet18_Weights.SENTINEL2_ALL_MOCO
URL_FILE = Path(urlparse(WEIGHTS.url).path).name  # resnet18_sentinel2_all_moco-59bfdff9.pth
TORCHGEO_BANDS = [str(b) for b in WEIGHTS.meta["bands"]]  # B1 … B8, B8a, B9, B10, B11, B12
SCALE = 13 / 24  # the first conv's rescaling (n_source / n_target)


@pytest.fixture(autouse=True)
def downloads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """A temporary torch hub (TORCH_HOME) and torchgeo's download failing as offline; the URLs tried."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    tried: list[str] = []

    def offline(self, *args, **kwargs):
        tried.append(self.url)
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    return tried


def _torchgeo_state_dict(in_chans: int = 13) -> dict[str, torch.Tensor]:
    """Weights with the shape and keys of torchgeo's file: the timm model it builds, ``in_chans`` bands."""
    torch.manual_seed(1)
    return timm.create_model(timm_model_of(WEIGHTS), in_chans=in_chans).state_dict()


@pytest.fixture
def in_hub_cache(tmp_path: Path) -> dict[str, torch.Tensor]:
    """The generated weights saved where torchgeo would have downloaded them."""
    sd = _torchgeo_state_dict()
    path = tmp_path / "torch_home" / "hub" / "checkpoints" / URL_FILE
    path.parent.mkdir(parents=True)
    torch.save(sd, path)
    assert Path(torch.hub.get_dir()) / "checkpoints" / URL_FILE == path  # where torch hub looks
    return sd


def _first_conv(model) -> torch.Tensor:
    return model.encoder.model.state_dict()["conv1.weight"]


def _assert_band_mapped(first_conv: torch.Tensor, sd: dict[str, torch.Tensor]) -> None:
    """Every Sentinel-2 channel of s2_24 got the filter of its band, by name; indices the mean filter."""
    src = sd["conv1.weight"]
    torchgeo_index = {b.upper(): i for i, b in enumerate(TORCHGEO_BANDS)}
    for channel, band in zip(("B02", "B03", "B04", "B08", "B8A", "B11", "B12"),
                             ("B2", "B3", "B4", "B8", "B8A", "B11", "B12"), strict=True):
        torch.testing.assert_close(first_conv[:, S2_24.index(channel)], src[:, torchgeo_index[band]] * SCALE)
    for index in ("NDVI", "NDWI", "DRS"):
        torch.testing.assert_close(first_conv[:, S2_24.index(index)], src.mean(dim=1) * SCALE)
    # by name, not by position: s2_24's channel 9 is B11, torchgeo's channel 9 is B9
    assert S2_24[9] == "B11" and TORCHGEO_BANDS[9] == "B9"
    assert not torch.allclose(first_conv[:, 9], src[:, 9] * SCALE)


def test_names_resolve_to_torchgeo_members() -> None:
    assert torchgeo_weights(NAME) is WEIGHTS
    assert timm_model_of(WEIGHTS) == "resnet18" and WEIGHTS.meta["in_chans"] == 13
    # resnet152's member says "resnet50" in its meta: the model torchgeo builds is resnet152
    assert timm_model_of(torchgeo_weights("ResNet152_Weights.SENTINEL2_SI_MS_SATLAS")) == "resnet152"
    names = torchgeo_weight_names()
    assert {NAME, "ResNet50_Weights.SENTINEL2_ALL_MOCO"} <= set(names)
    assert not [n for n in names if "SENTINEL2" not in n or n.startswith(("ViT", "Swin", "Unet"))]


@pytest.mark.parametrize(("value", "error", "match"), [
    ("torchgeo:resnet18", ModelError, r"not torchgeo:<Class>\.<MEMBER>"),
    (f"torchgeo:{NAME}=", ModelError, "no file after '='"),
    ("torchgeo:ResNet18_Weights.SENTINEL2_ALL_MOKO", ModelError, f"did you mean '{NAME}'"),
    ("torchgeo:ViTSmall16_Weights.SENTINEL2_ALL_MOCO", ModelError, "plain vision transformer"),
    ("torchgeo:Swin_V2_T_Weights.SENTINEL2_SI_MS_SATLAS", ModelError, "not a timm backbone"),
    ("torchgeo:ViTSmall16_Weights.LANDSAT_TM_TOA_MOCO", ModelError, "not Sentinel-2 weights"),
    (f"torchgeo:{NAME}=/nonexistent/w.pth", CheckpointError, "file not found"),
])
def test_check_pretrained_refuses(value: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        check_pretrained(value)


def test_check_pretrained_accepts_without_download(tmp_path: Path, downloads: list[str]) -> None:
    check_pretrained(f"torchgeo:{NAME}")
    check_pretrained(True)
    check_pretrained(tmp_path / "not-torchgeo.safetensors")  # other values: create_model's job
    with pytest.raises(ModelError, match="for the timm encoder 'resnet18', not 'resnet50'"):
        check_pretrained(f"torchgeo:{NAME}", encoder="resnet50")
    assert downloads == []


def test_create_model_loads_them_from_torch_hub_cache(in_hub_cache: dict[str, torch.Tensor],
                                                      downloads: list[str]) -> None:
    model = create_model("unet", in_channels=24, channel_names=S2_24, pretrained=f"torchgeo:{NAME}")
    assert model.encoder.name == "resnet18"  # the weights' model, as no encoder was given
    _assert_band_mapped(_first_conv(model), in_hub_cache)
    deeper = model.encoder.model.state_dict()
    for key in ("layer3.1.conv2.weight", "layer4.0.downsample.1.running_var"):
        torch.testing.assert_close(deeper[key], in_hub_cache[key])
    assert downloads == []  # read from the cache, as torchgeo's get_state_dict would


def test_local_file_offline(tmp_path: Path, downloads: list[str]) -> None:
    sd = _torchgeo_state_dict()
    path = tmp_path / "elsewhere" / "my_copy.pth"
    path.parent.mkdir()
    torch.save(sd, path)
    model = create_model("unet3plus", in_channels=24, encoder="resnet18", channel_names=S2_24, cat_channels=8,
                         pretrained=f"torchgeo:{NAME}={path}")
    _assert_band_mapped(_first_conv(model), sd)
    # the Python loader takes the same: a name (or the member) and the file
    other = create_model("unet", in_channels=24, encoder="resnet18", channel_names=S2_24)
    load_torchgeo_weights(other, NAME, file=path)
    torch.testing.assert_close(_first_conv(other), _first_conv(model))
    assert downloads == []


def test_file_of_other_weights_refused(tmp_path: Path) -> None:
    path = tmp_path / URL_FILE
    torch.save(_torchgeo_state_dict(in_chans=3), path)  # an RGB resnet18, not the 13-band one
    with pytest.raises(CheckpointError, match=f"not the torchgeo weights {NAME}: a first convolution of 3 "
                                              "channels, those take 13 bands"):
        create_model("unet", in_channels=24, channel_names=S2_24, pretrained=f"torchgeo:{NAME}={path}")


def test_missing_offline_is_one_line(downloads: list[str], tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        create_model("unet", in_channels=24, channel_names=S2_24, pretrained=f"torchgeo:{NAME}")
    message = str(err.value)
    assert "\n" not in message and downloads == [WEIGHTS.url]
    for part in (NAME, WEIGHTS.url, f"torchgeo:{NAME}=/path/to/{URL_FILE}",
                 str(tmp_path / "torch_home" / "hub" / "checkpoints")):
        assert part in message


def _tiny_array(tmp_path: Path) -> Path:
    """8 cubes of the 24 s2_24 channels + labels (0/1), 32 px: an (N, C+1, H, W) training array."""
    rng = np.random.default_rng(0)
    cubes = rng.uniform(0.05, 0.5, (8, 25, 32, 32)).astype(np.float32)
    cubes[:, 24] = (cubes[:, 7] > cubes[:, 3]).astype(np.float32)  # a NIR > red "class"
    path = tmp_path / "cubes.npy"
    np.save(path, cubes)
    return path


def test_cli_missing_offline_exits_2(tmp_path: Path, downloads: list[str]) -> None:
    result = run_inproc("train", _tiny_array(tmp_path), "--pretrained", f"torchgeo:{NAME}", "--epochs", "1",
                        "--out", tmp_path / "run")
    line = assert_refused(result, NAME, WEIGHTS.url, f"torchgeo:{NAME}=/path/to/{URL_FILE}")
    assert "could not be downloaded" in line and downloads == [WEIGHTS.url]
    assert not (tmp_path / "run" / "best").exists()


def test_cli_trains_from_them(tmp_path: Path, downloads: list[str]) -> None:
    """``geoseg train`` with the weights and a frozen backbone: the bundle keeps the band-mapped filters."""
    sd = _torchgeo_state_dict()
    path = tmp_path / URL_FILE
    torch.save(sd, path)
    result = run_inproc("train", _tiny_array(tmp_path), f"--pretrained=torchgeo:{NAME}={path}", "--encoder",
                        "resnet18", "--freeze-backbone", "--epochs", "1", "--batch-size", "4", "--out",
                        tmp_path / "run", "--no-progress")
    assert result.returncode == 0, result.stdout + result.stderr
    bundle = tmp_path / "run" / "final"
    weights = load_file(str(bundle / "model.safetensors"))
    assert json.loads((bundle / "config.json").read_text())["model"]["encoder"] == "resnet18"
    _assert_band_mapped(weights["encoder.model.conv1.weight"], sd)
    torch.testing.assert_close(weights["encoder.model.layer2.0.conv1.weight"], sd["layer2.0.conv1.weight"])
    assert downloads == []
