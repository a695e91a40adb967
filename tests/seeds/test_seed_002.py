"""Seed 002 (smp insights): its custom-encoder template, smp-dict registration and aux head, as written.

The seed's code blocks are quoted below and checked against the seed's text; they run with
two substitutions: the template's ``...`` (its "Define encoder modules below") is filled in
with five stride-2 convolutions producing the channels it declares, and ``smp.Unet(...)`` is
``geoseg.models.UNet(...)`` (the same arguments; geoseg's default input is the 24-channel
``s2_24`` recipe, and geoseg does not download weights unless asked). Downloads are replaced
by a local state dict: no network. docs/seeds.md maps every name.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import torch

from geoseg.features import get_recipe

SEED = Path(__file__).resolve().parents[2].parent / "shared" / "seeds" / "002_ec197a30eefb6ce7.txt"
S2_24 = list(get_recipe("s2_24").channel_names)

TEMPLATE = '''
class MyEncoder(torch.nn.Module, EncoderMixin):

    def __init__(self, **kwargs):
        super().__init__()

        # A number of channels for each encoder feature tensor, list of integers
        self._out_channels: List[int] = [3, 16, 64, 128, 256, 512]

        # A number of stages in decoder (in other words number of downsampling operations), integer
        # use in in forward pass to reduce number of returning features
        self._depth: int = 5

        # Default number of input channels in first Conv2d layer for encoder (usually 3)
        self._in_channels: int = 3

        # Define encoder modules below
        ...

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Produce list of features of different spatial resolutions, each feature is a 4D torch.tensor of
        shape NCHW (features should be sorted in descending order according to spatial resolution, starting
        with resolution same as input `x` tensor).

        Input: `x` with shape (1, 3, 64, 64)
        Output: [f0, f1, f2, f3, f4, f5] - features with corresponding shapes
                [(1, 3, 64, 64), (1, 64, 32, 32), (1, 128, 16, 16), (1, 256, 8, 8),
                (1, 512, 4, 4), (1, 1024, 2, 2)] (C - dim may differ)

        also should support number of features according to specified depth, e.g. if depth = 5,
        number of feature tensors = 6 (one with same resolution as input and 5 downsampled),
        depth = 3 -> number of feature tensors = 4 (one with same resolution as input and 3 downsampled).
        """

        return [feat1, feat2, feat3, feat4, feat5, feat6]
'''

REGISTER = '''
smp.encoders.encoders["my_awesome_encoder"] = {
    "encoder": MyEncoder, # encoder class here
    "pretrained_settings": {
        "imagenet": {
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "url": "https://some-url.com/my-model-weights",
            "input_space": "RGB",
            "input_range": [0, 1],
        },
    },
    "params": {
        # init params for encoder if any
    },
},
'''

USE = '''
model = smp.Unet(encoder_name="my_awesome_encoder")
'''

AUX = '''
aux_params=dict(
    pooling='avg',             # one of 'avg', 'max'
    dropout=0.5,               # dropout ratio, default is None
    activation='sigmoid',      # activation function, default is None
    classes=4,                 # define number of output labels
)

model = smp.Unet('resnet34', classes=4, aux_params=aux_params)
mask, label = model(x)

mask.shape, label.shape
# (N, 4, H, W), (N, 4)
'''

# the template's "..." and its undefined feat1..feat6, filled in (the only code not the seed's)
MODULES = '''
        # Define encoder modules below
        c = self._out_channels
        self.stages = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.Conv2d(c[i], c[i + 1], 3, 2, 1), torch.nn.BatchNorm2d(c[i + 1]),
                                torch.nn.ReLU()) for i in range(self._depth))
'''
FEATURES = '''
        feats = [x]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        feat1, feat2, feat3, feat4, feat5, feat6 = feats
        return [feat1, feat2, feat3, feat4, feat5, feat6]
'''


def _lines(text: str) -> str:
    """Code lines without indentation, trailing blanks and empty lines (the seed is rST)."""
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def _run(code: str, scope: dict) -> dict:
    exec(compile(textwrap.dedent(code), "seed_002_example", "exec"), scope)  # the seed's own text
    return scope


@pytest.fixture
def scope():
    """The names the seed's snippets use; the smp registration is undone afterwards."""
    from segmentation_models_pytorch.encoders._base import EncoderMixin

    from geoseg.models import UNet

    template = TEMPLATE.replace("\n        # Define encoder modules below\n        ...\n", MODULES)
    template = template.replace("\n        return [feat1, feat2, feat3, feat4, feat5, feat6]\n", FEATURES)
    names = {"__name__": "seed_002", "torch": torch, "smp": smp, "List": list,  # typing.List, as written
             "EncoderMixin": EncoderMixin, "UNet": UNet}
    yield _run(template, names)
    smp.encoders.encoders.pop("my_awesome_encoder", None)


def _geoseg(code: str) -> str:
    """``smp.Unet(...)`` → ``geoseg.models.UNet(...)``, the arguments as written."""
    return code.replace("smp.Unet(", "UNet(")


def test_the_examples_are_the_seeds() -> None:
    if not SEED.is_file():
        pytest.skip(f"{SEED} is not available")
    seed = _lines(SEED.read_text())
    for snippet in (TEMPLATE, REGISTER, USE, AUX):
        assert _lines(snippet) in seed


def test_the_template_registered_in_smps_dict_works_at_24_channels(scope: dict) -> None:
    _run(REGISTER, scope)  # as written: the trailing comma makes the value a 1-tuple
    assert isinstance(smp.encoders.encoders["my_awesome_encoder"], tuple)
    _run(_geoseg(USE), scope)
    model = scope["model"]
    assert model.spec["encoder"] == "my_awesome_encoder" and model.in_channels == 24
    first = model.encoder.module.stages[0][0]
    assert first.in_channels == 24 and first.weight.shape == (16, 24, 3, 3)  # smp's set_in_channels
    assert model.encoder.module._in_channels == 24 and model.encoder.module.out_channels[0] == 24
    assert model.encoder.channels == [16, 64, 128, 256, 512]
    assert model(torch.randn(2, 24, 64, 64)).shape == (2, 3, 64, 64)
    # seed 002's part 1: encoder, decoder, segmentation head (+ the optional classification head)
    assert model.encoder is not None and model.decoder is not None and model.segmentation_head is not None
    assert model.classification_head is None


def test_encoder_weights_imagenet_is_downloaded_from_the_settings_url(scope: dict, monkeypatch, caplog) -> None:
    _run(REGISTER, scope)
    rgb = scope["MyEncoder"]().state_dict()
    urls: list[str] = []

    def download(url: str, **kwargs) -> dict:  # stands in for the network
        urls.append(url)
        return dict(rgb)

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", download)
    code = _geoseg(USE).replace('encoder_name="my_awesome_encoder"',
                                'encoder_name="my_awesome_encoder", encoder_weights="imagenet", channel_names=S2_24')
    model = _run(code, {**scope, "S2_24": S2_24})["model"]
    assert urls == ["https://some-url.com/my-model-weights"]
    w = model.encoder.module.stages[0][0].weight.detach()
    for band, i in (("B04", 0), ("B03", 1), ("B02", 2)):  # the RGB filters, placed by band name
        torch.testing.assert_close(w[:, S2_24.index(band)], rgb["stages.0.0.weight"][:, i] * 3 / 24)
    torch.testing.assert_close(model.encoder.module.stages[3][0].weight, rgb["stages.3.0.weight"])
    none = _run(_geoseg(USE).replace(")", ", encoder_weights=None)"), dict(scope))["model"]
    assert none.encoder.module.stages[0][0].in_channels == 24 and len(urls) == 1  # nothing fetched
    # 24 unnamed channels: smp's set_in_channels (RGB filters cycled, scaled 3/24), with a one-line note
    with caplog.at_level(logging.WARNING, logger="geoseg.models"):
        smp_way = _run(_geoseg(USE).replace(")", ', encoder_weights="imagenet")'), dict(scope))["model"]
    w = smp_way.encoder.module.stages[0][0].weight.detach()
    for channel in (0, 4, 23):
        torch.testing.assert_close(w[:, channel], rgb["stages.0.0.weight"][:, channel % 3] * 3 / 24)
    notes = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(notes) == 1 and "not band-aware: pass channel_names" in notes[0]


def test_aux_classification_output(scope: dict) -> None:
    torch.manual_seed(0)
    out = _run(_geoseg(AUX), {**scope, "x": torch.randn(2, 24, 64, 64)})
    mask, label = out["mask"], out["label"]
    assert (mask.shape, label.shape) == ((2, 4, 64, 64), (2, 4))  # (N, 4, H, W), (N, 4)
    assert out["model"].spec["encoder"] == "resnet34"
    assert ((label > 0) & (label < 1)).all()  # activation='sigmoid'
