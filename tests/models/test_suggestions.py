"""Closest-match hints: one implementation (geoseg.utils.closest), one cutoff, used by the models."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import geoseg
from geoseg.errors import ModelError
from geoseg.models import create_model, get_model_class
from geoseg.utils.closest import CUTOFF, close_matches, closest, did_you_mean, suggestion


def test_closest_helpers() -> None:
    assert 0 < CUTOFF < 1
    assert closest("unet3pls", ["unet", "unet3plus"]) == "unet3plus"
    assert closest("xyz", ["unet", "pspnet"]) is None
    assert close_matches("resnet43", ["vit", "resnet34", "resnet50"], n=2)[0] == "resnet34"
    assert suggestion("dropuot", ["dropout", "pooling"]) == "did you mean 'dropout'?"
    assert suggestion("resnet", ["resnet123", "resnet1", "resnet12"], n=3) == \
        "did you mean 'resnet1', 'resnet12' or 'resnet123'?"
    assert suggestion("xyz", ["abc"]) is None
    assert did_you_mean("recipie", ["recipe", "cube_size"]) == "did you mean 'recipe'? (valid: cube_size, recipe)"
    assert did_you_mean("xyz", ["b", "a"]) == "valid: a, b"


@pytest.mark.parametrize(
    ("call", "hint"),
    [
        (lambda: get_model_class("unet3pls"), "did you mean 'unet3plus'?"),
        (lambda: create_model("unet3plus", encoder="test_resnet", cat_chanels=8), "did you mean 'cat_channels'?"),
        (lambda: create_model("unet", encoder="test_resnet", aux_params={"dropuot": 0.1}), "did you mean 'dropout'?"),
        (lambda: create_model("unet", encoder="resnet43"), "did you mean 'resnet34'"),
    ],
    ids=["model", "option", "aux_params", "encoder"],
)
def test_model_errors_name_the_closest_match(call, hint: str) -> None:
    with pytest.raises(ModelError) as err:
        call()
    assert hint in str(err.value)


def test_difflib_is_used_in_one_place_only() -> None:
    root = Path(geoseg.__file__).parent
    users = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                   if re.search(r"\bdifflib\b", p.read_text(encoding="utf-8")))
    assert users == ["utils/closest.py"]
