"""``geoseg models`` lists every registered model with its default encoder and options."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from geoseg.cli.main import main
from geoseg.cli.model_cmds import models_cmd
from geoseg.models import describe_models, list_models


def test_models_plain_lists_everything() -> None:
    result = CliRunner().invoke(models_cmd, ["--plain"])
    assert result.exit_code == 0, result.output
    for name, info in describe_models().items():
        assert f"{name}  (default encoder: {info['default_encoder']})" in result.output
        for option in info["options"]:
            assert f"  {option['name']}: " in result.output
    assert "pyramid_sizes: tuple[int, ...] = 1,2,3,6" in result.output


def test_models_rich_table_and_json() -> None:
    result = CliRunner().invoke(models_cmd, ["pspnet"])
    assert result.exit_code == 0 and "resnet50" in result.output and "pyramid_sizes" in result.output
    data = json.loads(CliRunner().invoke(models_cmd, ["--json"]).output)
    assert list(data) == list_models()
    assert data["unet3plus"]["default_encoder"] == "convnext_tiny"
    options = {o["name"]: o for o in data["unet3plus"]["options"]}
    assert {"name": "cat_channels", "type": "int", "default": 64}.items() <= options["cat_channels"].items()
    assert all(data[name]["capabilities"]["pointrend"] for name in list_models())


def test_unknown_model_is_a_one_line_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["models", "unet3pls"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "did you mean 'unet3plus'" in err and "Traceback" not in err
