"""Each stage's options are declared once (its options model); the CLI is generated from it.

For every command built with ``geoseg.cli.options.options_from``: each field of the stage's
model is a generated option or one of the command's few hand-made forms, each generated
option defaults to None (the model's default is the only default), its bounds are the
field's, and its value reaches the model unchanged.
"""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from geoseg.cli.export_cmds import export_cmd
from geoseg.cli.options import option_fields
from geoseg.cli.predict_cmds import predict_cmd
from geoseg.cli.tile_cmds import tile_cmd
from geoseg.cli.train_cmds import _BY_HAND, evaluate_cmd, train_cmd
from geoseg.export.options import ExportOptions
from geoseg.predict.options import PredictOptions
from geoseg.tiling.options import TileOptions
from geoseg.train.config import TrainConfig
from geoseg.train.evaluate_options import EvaluateOptions

# command, its options model, fields it leaves out or declares by hand
COMMANDS = [
    (tile_cmd, TileOptions, {"group"}),  # a speed knob of the Python API
    (train_cmd, TrainConfig, set(_BY_HAND)),
    (evaluate_cmd, EvaluateOptions, set()),
    (predict_cmd, PredictOptions, set()),
    (export_cmd, ExportOptions, set()),
]


@pytest.mark.parametrize(("command", "model", "by_hand"), COMMANDS, ids=lambda x: getattr(x, "name", ""))
def test_every_field_is_an_option_defaulting_to_the_model(command, model, by_hand):
    generated = set(option_fields(command))
    assert generated | by_hand == set(model.model_fields), "a field has no option (or an option no field)"
    params = {p.name: p for p in command.params if isinstance(p, click.Option)}
    for name in generated:
        option = params[name]
        assert option.default is None, f"--{name} has its own default; the model's is the only one"
        info = model.model_fields[name]
        limits = [getattr(b, k) for b in info.metadata for k in ("ge", "gt", "le", "lt") if hasattr(b, k)]
        if name == "patience":  # 0 on the command line means off (None in the model)
            continue
        for limit in limits:  # the field's bounds reach the click type
            assert limit in (getattr(option.type, "min", None), getattr(option.type, "max", None)), (name, limit)


def _capture(monkeypatch) -> dict:
    """Replace tile_dataset by a stub that records the options it receives."""
    seen: dict = {}

    def fake(catalog, dataset, out, options):
        seen["options"] = options
        raise SystemExit(0)

    monkeypatch.setattr("geoseg.tiling.tile_dataset", fake)
    return seen


def test_tile_flags_reach_the_options_model(monkeypatch, tmp_path):
    seen = _capture(monkeypatch)
    result = CliRunner().invoke(tile_cmd, ["--dataset", "d", "--out", str(tmp_path / "s"), "--cube-size", "128",
                                           "--overlap", "16", "--split", "0.6,0.2,0.2", "--no-progress", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert seen["options"] == TileOptions(cube_size=128, overlap=16, split=(0.6, 0.2, 0.2), progress=False,
                                          overwrite=True)


def test_an_untouched_command_line_gives_the_model_defaults(monkeypatch, tmp_path):
    seen = _capture(monkeypatch)
    assert CliRunner().invoke(tile_cmd, ["--dataset", "d", "--out", str(tmp_path / "s")]).exit_code == 0
    assert seen["options"] == TileOptions()


def test_help_shows_the_model_defaults_and_ranges():
    text = CliRunner().invoke(tile_cmd, ["--help"]).output
    assert "[256]" in text and "8<=x<=10980" in text and "[0.7,0.15,0.15]" in text


def test_the_fields_own_spelling_works_too_and_stays_out_of_help(monkeypatch, tmp_path):
    seen = _capture(monkeypatch)
    result = CliRunner().invoke(tile_cmd, ["--dataset", "d", "--out", str(tmp_path / "s"), "--cube_size", "128",
                                           "--split_block", "2", "--min_valid", "0.5", "--no_progress"])
    assert result.exit_code == 0, result.output
    assert seen["options"] == TileOptions(cube_size=128, split_block=2, min_valid=0.5, progress=False)
    text = CliRunner().invoke(tile_cmd, ["--help"]).output
    assert "--cube-size" in text and "--cube_size" not in text and "--no_progress" not in text


def test_export_flags_reach_export_onnx_unchanged(monkeypatch, tmp_path):
    """``geoseg export`` and the pipeline's export step hand export_onnx one ExportOptions, as typed."""
    import geoseg.export
    from geoseg.pipeline.schema import ExportStep

    seen: dict = {}

    def fake(model, out, options):
        seen["options"] = options
        raise SystemExit(0)

    monkeypatch.setattr(geoseg.export, "export_onnx", fake, raising=False)  # the CLI's lazy import finds it
    args = ["m", "--out", str(tmp_path / "m.onnx"), "--opset", "18", "--overlap", "10", "--resolution", "20",
            "--seg-thresh", "0.5", "--batch", "2", "--no-mask-invalid", "--exporter", "dynamo", "--no-check"]
    assert CliRunner().invoke(export_cmd, args).exit_code == 0
    typed = ExportOptions(opset=18, overlap=10, resolution=20.0, seg_thresh=0.5, batch=2, mask_invalid=False,
                          exporter="dynamo", check=False)
    assert seen["options"] == typed
    step = ExportStep(opset=18, overlap=10, resolution=20.0, seg_thresh=0.5, batch=2, mask_invalid=False,
                      exporter="dynamo", check=False)
    assert step.options(ExportOptions) == typed
    assert "check" not in step.content_params() and step.content_params()["bundle"] == "best"
    assert ExportStep().options(ExportOptions) == ExportOptions()
