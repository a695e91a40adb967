"""Encoders: the timm adapter, custom encoders (smp-style list / P-level dict), errors."""

from __future__ import annotations

import pytest
import torch
from _model_helpers import model_input
from torch import nn

from geoseg.errors import ModelError
from geoseg.models import (
    create_encoder,
    create_model,
    list_models,
    register_encoder,
    unregister_encoder,
)


class TinySmpEncoder(nn.Module):
    """A custom encoder in segmentation_models_pytorch's style."""

    def __init__(self, in_channels: int = 3, depth: int = 5, width: int = 8,
                 output_stride: int = 32) -> None:
        super().__init__()
        self._in_channels = in_channels
        self._depth = depth
        self._out_channels = [in_channels] + [width * (i + 1) for i in range(depth)]
        chans = self._out_channels
        stages = []
        for i in range(depth):  # stages past output_stride keep the resolution and dilate
            dil = max(1, 2 ** (i + 1) // output_stride)
            stride = 1 if dil > 1 else 2
            stages.append(nn.Sequential(
                nn.Conv2d(chans[i], chans[i + 1], 3, stride=stride, padding=dil, dilation=dil),
                nn.BatchNorm2d(chans[i + 1]), nn.ReLU()))
        self.stages = nn.ModuleList(stages)

    @property
    def out_channels(self) -> list[int]:
        return self._out_channels

    @property
    def depth(self) -> int:
        return self._depth

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [x]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        return feats


class PyramidEncoder(nn.Module):
    """A custom encoder exposing P1..P4 as a dict (KerasHub's pyramid_outputs convention)."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.inner = TinySmpEncoder(in_channels, depth=4, width=6)
        self.depth = 4

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {f"P{i}": f for i, f in enumerate(self.inner(x)) if i > 0}


def test_timm_adapter_reads_feature_info() -> None:
    enc = create_encoder("test_convnext", in_channels=7, depth=5)
    assert enc.reductions == [4, 8, 16, 32] and enc.levels == [2, 3, 4, 5]
    enc3 = create_encoder("test_resnet", in_channels=7, depth=3)
    assert enc3.reductions == [2, 4, 8] and enc3.levels == [1, 2, 3]
    assert sum(p.numel() for p in enc3.parameters()) < sum(
        p.numel() for p in create_encoder("test_resnet", 7).parameters()
    )  # deeper stages are really dropped
    dil = create_encoder("test_resnet", in_channels=7, depth=5, output_stride=8)
    assert dil.reductions == [2, 4, 8, 8, 8] and dil.levels == [1, 2, 3, 4, 5]
    feats = dil(torch.randn(1, 7, 64, 64))
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 8, 8]


def test_unknown_encoder_suggests_the_closest_name() -> None:
    with pytest.raises(ModelError, match="did you mean.*resnet34"):
        create_model("unet", encoder="resnet43")


def test_undilatable_encoder_is_reported() -> None:
    """Only an explicit keep_dilation=True is refused (the default falls back with a note)."""
    with pytest.raises(ModelError, match="output_stride=8.*or keep_dilation=False"):
        create_model("pspnet", in_channels=3, encoder="hrnet_w18_small", use_unet=False, keep_dilation=True)


@pytest.fixture
def tiny_registered():
    register_encoder("tiny_smp", TinySmpEncoder, {"width": 4})
    yield "tiny_smp"
    unregister_encoder("tiny_smp")


@pytest.mark.parametrize("name", list_models())
def test_registered_custom_encoder_works_everywhere(name: str, tiny_registered: str) -> None:
    model = create_model(name, in_channels=6, num_classes=3, encoder=tiny_registered)
    assert model.encoder.channels == [4, 8, 12, 16, 20]
    x = model_input(model, 2, 6, 40, 40)  # a series for deeplabv3plus3d (temporal blocks on the outputs)
    out = model.forward_train(x)
    assert out.mask.shape == (2, 3, 40, 40)
    out.mask.mean().backward()
    assert model.spec["encoder"] == "tiny_smp"
    rebuilt = create_model(**model.spec)  # rebuilt by the registered name
    assert type(rebuilt.encoder.module) is TinySmpEncoder


def test_register_errors() -> None:
    with pytest.raises(ModelError, match="already"):
        register_encoder("resnet34", TinySmpEncoder)
    with pytest.raises(ModelError, match="nn.Module subclass"):
        register_encoder("not_a_module", object)  # type: ignore[arg-type]


def test_custom_encoder_instance_and_declared_channels() -> None:
    model = create_model("unet", in_channels=4, encoder=TinySmpEncoder(in_channels=4))
    assert model.spec["encoder"].startswith("custom:")
    with pytest.raises(ModelError, match="register"):
        create_model(**model.spec)

    class Liar(TinySmpEncoder):
        @property
        def out_channels(self) -> list[int]:
            return [4, 1, 2, 3, 4, 5]

    with pytest.raises(ModelError, match="declares out_channels"):
        create_model("unet", in_channels=4, encoder=Liar(in_channels=4))


class NoDilationEncoder(TinySmpEncoder):
    def __init__(self, in_channels: int = 3, depth: int = 5) -> None:
        super().__init__(in_channels, depth)


def test_custom_encoder_dilation(caplog: pytest.LogCaptureFixture) -> None:
    register_encoder("tiny_nodil", NoDilationEncoder)
    try:
        with pytest.raises(ModelError, match="coarser than output_stride=16"):  # asked for explicitly
            create_model("deeplabv3plus", in_channels=3, encoder="tiny_nodil", output_stride=16)
        with caplog.at_level("WARNING", logger="geoseg.models.encoders"):  # only the default: a note
            model = create_model("deeplabv3plus", in_channels=3, encoder="tiny_nodil")
        assert model.encoder.reductions[-1] == 32 and "cannot be dilated to output_stride=16" in caplog.text
        model = create_model("deeplabv3plus", in_channels=3, encoder="tiny_nodil", output_stride=32)
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 3, 64, 64)
    finally:
        unregister_encoder("tiny_nodil")
    model = create_model("deeplabv3plus", in_channels=3, encoder=TinySmpEncoder(output_stride=8),
                         output_stride=8)
    assert model.encoder.reductions == [2, 4, 8, 8, 8]


def test_pyramid_dict_encoder_with_head_upsample() -> None:
    """A custom encoder with P1..P4, encoder_depth=4 and a manual head_upsample."""
    model = create_model("deeplabv3plus", in_channels=3, num_classes=2, encoder=PyramidEncoder(),
                         encoder_depth=4, head_upsample=4)
    assert model.encoder.levels == [1, 2, 3, 4]
    assert model.deep_index == 3 and model.low_index == 1
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 2, 64, 64)
    wrong = create_model("deeplabv3plus", in_channels=3, encoder=PyramidEncoder(), encoder_depth=4,
                         head_upsample=8)
    with pytest.raises(ModelError, match="head_upsample=4"):
        wrong(torch.randn(2, 3, 64, 64))
    with pytest.raises(ModelError, match="encoder_depth"):
        create_model("deeplabv3plus", in_channels=3, encoder=PyramidEncoder(), encoder_depth=3)
