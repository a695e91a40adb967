"""Seed 003 (medicai's DeepLabV3Plus): its 2D and 3D models, encoder depth and custom encoder.

The seed's code blocks are quoted below and checked against the seed's text. They run with
``medicai.models`` replaced by ``geoseg.models``; the custom-encoder example's Keras
``ConvNeXtBackbone`` is a small PyTorch stand-in built from timm's ConvNeXt (the same
depths and projection dims, 2D, returning ``{"P1": ..., "P4": ...}`` with P1 at stride 4).
Inputs are tiny (64 px). The 3D examples build ``deeplabv3plus3d`` (the volume's depth D is the
series' dates T) with medicai's ``seresnext50`` spelled as timm does (``seresnext50_32x4d``);
their forward pass runs on 32 px dates. docs/seeds.md maps every name.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from geoseg.errors import ModelError

SEED = Path(__file__).resolve().parents[2].parent / "shared" / "seeds" / "003_3cab615a640b9e50.txt"

INIT_2D = '''
from medicai.models import DeepLabV3Plus

# build 2D model with resnet backbone
model = DeepLabV3Plus(
    encoder_name='resnet50',
    input_shape=(224, 224, 3),
    num_classes=1,
    classifier_activation="sigmoid",
)
'''

INIT_3D = '''
# build 3D model with se-resnext backbone
model = DeepLabV3Plus(
    encoder_name='seresnext50',
    input_shape=(96, 96, 96, 3),
    num_classes=1,
    classifier_activation="sigmoid",
)
'''

PYRAMID_3D = '''
model = DeepLabV3Plus(
    encoder_name='seresnext50',
    input_shape=(96, 96, 96, 3)
)
model.encoder.pyramid_outputs
'''

CUSTOM = '''
from medicai.models import ConvNeXtBackbone

# build custom encoder
backbone = ConvNeXtBackbone(
    input_shape=(64,64,64,1),
    depths=[3, 3, 9, 3],
    projection_dims=[96, 192, 384, 768],
)
# gives 4 feature vectors, i.e. `P1` to `P4`.
backbone.pyramid_outputs

# build deeplabv3plus with custom encoder
model = DeepLabV3Plus(
    encoder=backbone,
    num_classes=1,
    classifier_activation="sigmoid",
    encoder_depth=4,
    head_upsample=8,
)
'''


class ConvNeXtBackbone(nn.Module):
    """A 2D PyTorch stand-in for medicai's Keras ConvNeXtBackbone: ``{"P1": ..., "P4": ...}``.

    Args:
        input_shape: ``(H, W, C)`` (channels last, as Keras); H and W are not needed.
        depths: Blocks per stage.
        projection_dims: Channels per stage.
    """

    def __init__(self, input_shape: tuple[int, ...], depths: list[int], projection_dims: list[int]) -> None:
        super().__init__()
        self.body = timm.create_model("convnext_tiny", features_only=True, in_chans=input_shape[-1],
                                      depths=depths, dims=projection_dims)
        info = self.body.feature_info
        self.pyramid_outputs = {f"P{i}": (c, r) for i, (c, r) in
                                enumerate(zip(info.channels(), info.reduction(), strict=True), start=1)}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {f"P{i}": f for i, f in enumerate(self.body(x), start=1)}


def _lines(text: str) -> str:
    """Code lines without indentation, trailing blanks and empty lines (the seed is Markdown)."""
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def _run(code: str, **names: object) -> dict:
    code = textwrap.dedent(code).replace("from medicai.models import", "from geoseg.models import")
    code = code.replace("from geoseg.models import ConvNeXtBackbone", "")  # the stand-in above
    scope: dict = {"__name__": "seed_003", "ConvNeXtBackbone": ConvNeXtBackbone, **names}
    exec(compile(code, "seed_003_example", "exec"), scope)  # the seed's own text
    return scope


def test_the_examples_are_the_seeds() -> None:
    if not SEED.is_file():
        pytest.skip(f"{SEED} is not available")
    seed = _lines(SEED.read_text())
    for snippet in (INIT_2D, INIT_3D, PYRAMID_3D, CUSTOM):
        assert _lines(snippet) in seed


def test_2d_model_with_resnet_backbone() -> None:
    model = _run(INIT_2D)["model"].eval()
    assert model.spec["name"] == "deeplabv3plus" and model.spec["encoder"] == "resnet50"
    assert model.in_channels == 3 and model.num_classes == 1  # input_shape=(224, 224, 3)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))  # any size: the 224 of input_shape is not required
    assert out.shape == (1, 1, 64, 64) and ((out > 0) & (out < 1)).all()  # classifier_activation
    # model.encoder.pyramid_outputs: P1 (earliest) .. P5; dilated to output stride 16 by default
    assert {k: v.channels for k, v in model.encoder.pyramid_outputs.items()} == {
        "P1": 64, "P2": 256, "P3": 512, "P4": 1024, "P5": 2048}
    assert [v.stride for v in model.encoder.pyramid_outputs.values()] == [2, 4, 8, 16, 16]
    from geoseg.models import list_models  # the seed's medicai.models.list_models()

    assert "deeplabv3plus" in list_models()


def _timm_names(code: str) -> str:
    return code.replace("'seresnext50'", "'seresnext50_32x4d'")  # medicai's name -> timm's (docs/seeds.md)


def test_3d_models() -> None:
    """input_shape=(D, H, W, C) builds the 3D DeepLabV3+: D dates of (H, W, C), one 2D map out."""
    scope = _run(_timm_names(INIT_2D + INIT_3D))
    model = scope["model"].eval()
    assert model.spec["name"] == "deeplabv3plus3d" and model.spec["encoder"] == "seresnext50_32x4d"
    assert (model.in_channels, model.num_classes, model.options.time_steps) == (3, 1, 96)
    assert model.temporal_stages.interleaved  # a temporal block after each stage of the backbone
    with torch.no_grad():
        out = model(torch.randn(1, 96, 3, 32, 32))  # 96 dates (the seed's D), small dates
    assert out.shape == (1, 1, 32, 32) and ((out > 0) & (out < 1)).all()  # classifier_activation
    with pytest.raises(ModelError, match="T=96"):
        model(torch.randn(1, 4, 3, 32, 32))


def test_3d_pyramid_outputs() -> None:
    """model.encoder.pyramid_outputs: P1..P5 of the per-date encoder (time is never strided)."""
    model = _run("from medicai.models import DeepLabV3Plus\n" + _timm_names(PYRAMID_3D))["model"]
    assert {k: v.channels for k, v in model.encoder.pyramid_outputs.items()} == {
        "P1": 64, "P2": 256, "P3": 512, "P4": 1024, "P5": 2048}
    assert [v.stride for v in model.encoder.pyramid_outputs.values()] == [2, 4, 8, 16, 16]
    levels = list(model.encoder.pyramid_outputs)
    assert levels[model.deep_index] == "P5" and levels[model.low_index] == "P2"


@pytest.mark.parametrize(("encoder_depth", "deep"), [(5, "P5"), (4, "P4"), (3, "P3")])
def test_encoder_depth_table(encoder_depth: int, deep: str) -> None:
    """| Encoder Depth | Deep Feature (ASPP Input) | Low-Level Feature (Skip) |: P(depth), P2."""
    from geoseg.models import DeepLabV3Plus

    model = DeepLabV3Plus(encoder_name="test_resnet", input_shape=(64, 64, 3), num_classes=1,
                          encoder_depth=encoder_depth)
    levels = list(model.encoder.pyramid_outputs)
    assert levels[model.deep_index] == deep and levels[model.low_index] == "P2"


def test_custom_convnext_encoder_with_p1_to_p4() -> None:
    code = CUSTOM.replace("input_shape=(64,64,64,1)", "input_shape=(64,64,1)")  # 2D: (H, W, C)
    scope = _run("from medicai.models import DeepLabV3Plus  # the seed's first example\n" + code)
    backbone, model = scope["backbone"], scope["model"].eval()
    assert list(backbone.pyramid_outputs) == ["P1", "P2", "P3", "P4"]  # 4 feature vectors
    assert model.in_channels == 1  # the backbone's
    pyramid = model.encoder.pyramid_outputs
    assert pyramid == {"P1": (96, 4), "P2": (192, 8), "P3": (384, 16), "P4": (768, 32)}
    assert list(pyramid)[model.deep_index] == "P4" and list(pyramid)[model.low_index] == "P2"
    with torch.no_grad():
        out = model(torch.randn(2, 1, 64, 64))  # P2 at stride 8, head_upsample=8: the input size
    assert out.shape == (2, 1, 64, 64) and ((out > 0) & (out < 1)).all()


def test_densenet_backbone_falls_back_to_a_valid_output_stride(caplog: pytest.LogCaptureFixture) -> None:
    """The seed lists the densenet family; DenseNet cannot be dilated to output stride 16."""
    with caplog.at_level(logging.WARNING, logger="geoseg.models.encoders"):
        model = _run(INIT_2D.replace("resnet50", "densenet121"))["model"]
    assert "encoder 'densenet121' cannot be dilated to output_stride=16; using it at output stride 32" in caplog.text
    assert model.encoder.pyramid_outputs["P5"].stride == 32
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_medicai_encoder_names_are_timms() -> None:
    """The seed's ``encoder_name='seresnext50'`` (its 3D example, here 2D) and medicai's other spellings."""
    from geoseg.models import DeepLabV3Plus
    from geoseg.models.constructors import medicai_encoder_name

    model = _run(INIT_3D.replace("(96, 96, 96, 3)", "(96, 96, 3)"), DeepLabV3Plus=DeepLabV3Plus)["model"]
    assert model.spec["encoder"] == "seresnext50_32x4d" and model.in_channels == 3
    names = {"seresnext101": "seresnext101_32x4d", "resnext50": "resnext50_32x4d", "efficientnetb0": "efficientnet_b0",
             "EfficientNetB3": "efficientnet_b3", "resnet50v2": "resnetv2_50", "resnet50vd": "resnet50d",
             "convnext_v2_atto": "convnextv2_atto", "efficientnetv2s": "efficientnetv2_s"}
    assert {name: medicai_encoder_name(name) for name in names} == names
    for known in ("resnet50", "densenet121", "efficientnet_b0", "mit_b0", "seresnet50v2"):  # timm/smp, or no match
        assert medicai_encoder_name(known) == known
