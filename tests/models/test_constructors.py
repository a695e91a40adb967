"""Architecture classes called with the source documents' argument names build through the registry."""

from __future__ import annotations

import pytest
import torch

from geoseg.errors import ModelError
from geoseg.models import (
    MODELS,
    DeepLabV3Plus,
    PSPNet,
    RSPRUNetPlusPlus,
    SegmentationModel,
    UNet,
    UNet3Plus,
    create_model,
)
from geoseg.models.unet import UNetOptions


class _Data:
    """What ``data=`` reads of a CubeStore (arcgis.learn's ``data`` argument)."""

    channel_names = ["B02", "B03", "B04", "B08"]
    classes = ["water", "forest", "crops"]


# (class, keywords in a source's spelling, the create_model call it stands for)
CASES = [
    (RSPRUNetPlusPlus, {"num_classes": 3, "input_channels": 24, "encoder": "test_resnet"},
     ("rsprunetpp", {"in_channels": 24, "num_classes": 3, "encoder": "test_resnet"})),
    (UNet3Plus, {"num_classes": 3, "backbone": "test_convnext", "cat_channels": 16, "deep_supervision": True,
                 "in_channels": 3},
     ("unet3plus", {"in_channels": 3, "num_classes": 3, "encoder": "test_convnext", "cat_channels": 16,
                    "deep_supervision": True})),
    (DeepLabV3Plus, {"encoder_name": "test_resnet", "num_classes": 1, "encoder_depth": 4, "in_channels": 3},
     ("deeplabv3plus", {"in_channels": 3, "num_classes": 1, "encoder": "test_resnet", "encoder_depth": 4})),
    (PSPNet, {"data": _Data(), "use_unet": False, "pointrend": True, "encoder": "test_resnet",
              "pyramid_sizes": [1, 3, 5, 6]},
     ("pspnet", {"in_channels": 4, "num_classes": 3, "encoder": "test_resnet", "use_unet": False,
                 "pointrend": True, "pyramid_sizes": [1, 3, 5, 6], "channel_names": _Data.channel_names})),
    (UNet, {"encoder_name": "test_resnet", "encoder_weights": None, "in_channels": 24, "classes": 6},
     ("unet", {"in_channels": 24, "num_classes": 6, "encoder": "test_resnet", "pretrained": False})),
]


@pytest.mark.parametrize(("cls", "kwargs", "same_as"), CASES, ids=[c[0].__name__ for c in CASES])
def test_the_sources_spelling_builds_what_create_model_builds(cls, kwargs, same_as) -> None:
    model = cls(**kwargs)
    assert type(model) is cls is MODELS[same_as[0]]
    assert isinstance(model, SegmentationModel)
    reference = create_model(same_as[0], **same_as[1])
    assert model.spec == reference.spec
    assert [(k, v.shape) for k, v in model.state_dict().items()] == [
        (k, v.shape) for k, v in reference.state_dict().items()]
    model.eval()
    with torch.no_grad():
        y = model(torch.randn(1, model.in_channels, 40, 40))
    assert y.shape == (1, model.num_classes, 40, 40)


def test_registry_models_are_instances_of_the_public_classes() -> None:
    for cls in (RSPRUNetPlusPlus, UNet3Plus, DeepLabV3Plus, PSPNet, UNet):
        assert isinstance(create_model(cls.name, in_channels=3, encoder="test_resnet"), cls)


def test_the_registry_form_is_unchanged() -> None:
    model = UNet(3, 2, "test_resnet", UNetOptions())  # what create_model calls internally
    assert type(model) is UNet and model.spec["num_classes"] == 2


def test_the_encoder_may_be_positional_as_in_smp() -> None:
    model = UNet("test_resnet", encoder_weights=None, in_channels=3, classes=2)  # smp.Unet('resnet34', ...)
    assert model.spec == create_model("unet", encoder="test_resnet", in_channels=3, num_classes=2).spec
    assert DeepLabV3Plus("test_convnext", in_channels=3, encoder_depth=4).encoder.name == "test_convnext"


def test_errors_are_one_line_model_errors() -> None:
    with pytest.raises(ModelError, match="contradicts"):
        UNet(num_classes=3, classes=4, encoder="test_resnet")
    with pytest.raises(ModelError, match="one positional argument, the encoder"):
        UNet(3, 24)
    with pytest.raises(ModelError, match="one positional argument"):
        UNet("test_resnet", 3)
    with pytest.raises(ModelError, match="positionally and as encoder_name="):
        UNet("test_resnet", encoder_name="test_convnext")
    with pytest.raises(ModelError, match="unknown option 'pyramid_size'") as err:
        PSPNet(num_classes=3, encoder="test_resnet", pyramid_size=[1, 2])
    assert "pyramid_sizes" in str(err.value)
    with pytest.raises(ModelError, match="data must be a CubeStore"):
        PSPNet(data=[1, 2, 3])

    class Unregistered(UNet):
        name = "unregistered"

    with pytest.raises(ModelError, match="not a registered architecture"):
        Unregistered(num_classes=3)
