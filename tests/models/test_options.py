"""Architecture options: pydantic models, strict values, one-line errors naming the option."""

from __future__ import annotations

from typing import ClassVar, Self

import pytest
from pydantic import BaseModel, model_validator

from geoseg.errors import ModelError
from geoseg.models import get_model_class, list_models
from geoseg.models.base import SegmentationModel
from geoseg.models.deeplabv3plus import DeepLabV3PlusOptions
from geoseg.models.options import ArchOptions, opt
from geoseg.models.unet import UNet, UNetOptions


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"encoder_depth": "5"}, "unet.encoder_depth: expected int, got '5'"),
        ({"encoder_depth": True}, "unet.encoder_depth: expected int, got True"),
        ({"point_train_points": 2.0}, "unet.point_train_points: expected int, got 2.0"),
        ({"freeze_backbone": 1}, "unet.freeze_backbone: expected bool, got 1"),
        ({"decoder_attention": "x"}, "unet.decoder_attention: expected 'none' | 'scse', got 'x'"),
        ({"decoder_channels": []}, "unet.decoder_channels: [] does not match tuple[int, ...] | None"),
        ({"decoder_channels": [1, "a"]}, "unet.decoder_channels: [1, 'a'] does not match tuple[int, ...] | None"),
        ({"encoder_depth": 6}, "unet.encoder_depth must be in 1..5, got 6"),
        ({"decoder_channels": [8, 8]}, "unet.decoder_channels has 2 entries but encoder_depth=5"),
        ({"point_oversample_ratio": 0.5}, "point_oversample_ratio must be >= 1"),
    ],
)
def test_invalid_values_name_the_option(values: dict, message: str) -> None:
    with pytest.raises(ModelError) as err:
        UNetOptions.from_dict(values)
    assert str(err.value).startswith(message)


def test_unknown_option_names_the_closest_match_also_from_the_constructor() -> None:
    with pytest.raises(ModelError, match=r"unknown option 'decoder_chanels' for architecture 'unet'.*"
                                          r"did you mean 'decoder_channels'\?"):
        UNetOptions(decoder_chanels=(8,))  # type: ignore[call-arg]


def test_values_are_coerced_once_and_round_trip() -> None:
    opts = DeepLabV3PlusOptions.from_dict({"atrous_rates": [1, 2], "point_oversample_ratio": 2})
    assert opts.atrous_rates == (1, 2) and opts.point_oversample_ratio == 2.0
    assert isinstance(opts, BaseModel) and hash(opts) == hash(DeepLabV3PlusOptions(**opts.to_dict()))
    assert opts.to_dict()["atrous_rates"] == [1, 2]
    for name in list_models():
        cls = get_model_class(name).Options
        assert cls.from_dict(cls().to_dict()) == cls()
        assert [o["name"] for o in cls.describe()] == list(cls().to_dict())


def test_a_new_architecture_follows_the_pattern() -> None:
    class WideOptions(ArchOptions):
        architecture: ClassVar[str] = "wide"
        width: int = opt(64, "decoder channels")

        @model_validator(mode="after")
        def _check_width(self) -> Self:
            if self.width < 1:
                raise ModelError(f"wide.width must be positive, got {self.width}")
            return self

    class Wide(SegmentationModel[WideOptions]):
        name: ClassVar[str] = "wide"

    assert Wide.Options is WideOptions and UNet.Options is UNetOptions
    assert WideOptions.describe()[-1] == {"name": "width", "type": "int", "default": 64, "help": "decoder channels"}
    with pytest.raises(ModelError, match="wide.width must be positive, got 0"):
        WideOptions(width=0)
    with pytest.raises(ModelError, match="wide.encoder_depth must be in 1..5"):  # the base rule still runs
        WideOptions(encoder_depth=0)
