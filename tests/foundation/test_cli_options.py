"""Each stage's options are declared once (its options model); the CLI is generated from it.

For every command built with ``geoseg.cli.options.options_from``: each field of the stage's
model is a generated option or one of the command's few hand-made forms, each generated
option defaults to None (the model's default is the only default), its bounds are the
field's, and its value reaches the model unchanged. The data catalog declares the scene
options it shares with ``SceneOptions`` by the same fields.
"""

from __future__ import annotations

import types

import click
import pytest
import yaml
from click.testing import CliRunner

from geoseg.cli.export_cmds import export_cmd
from geoseg.cli.options import option_fields
from geoseg.cli.predict_cmds import predict_cmd
from geoseg.cli.scene_cmds import features_cmd, inspect_cmd
from geoseg.cli.tile_cmds import tile_cmd
from geoseg.cli.train_cmds import _BY_HAND, evaluate_cmd, train_cmd
from geoseg.errors import ConfigError
from geoseg.export.options import ExportOptions
from geoseg.features.options import FeatureOptions
from geoseg.io.options import SceneOptions
from geoseg.predict.options import PredictOptions
from geoseg.tiling.options import TileOptions
from geoseg.train.config import TrainConfig
from geoseg.train.evaluate_options import EvaluateOptions

# command, one of its options models, fields of that model it leaves out or declares by hand
COMMANDS = [
    (tile_cmd, TileOptions, {"group"}),  # a speed knob of the Python API
    (train_cmd, TrainConfig, set(_BY_HAND)),
    (evaluate_cmd, EvaluateOptions, set()),
    (predict_cmd, PredictOptions, set()),
    (predict_cmd, SceneOptions, {"resolution", "offset", "invalid_scl"}),  # --scene files: their scale and date
    (export_cmd, ExportOptions, set()),
    (inspect_cmd, SceneOptions, set()),
    (features_cmd, SceneOptions, set()),
    (features_cmd, FeatureOptions, set()),
]


def _limits(metadata) -> list:
    return [getattr(b, k) for b in metadata for k in ("ge", "gt", "le", "lt") if hasattr(b, k)]


@pytest.mark.parametrize(("command", "model", "by_hand"), COMMANDS,
                         ids=[f"{c.name}-{m.__name__}" for c, m, _ in COMMANDS])
def test_every_field_is_an_option_defaulting_to_the_model(command, model, by_hand):
    generated = set(option_fields(command)) & set(model.model_fields)
    assert generated | by_hand == set(model.model_fields), "a field has no option (or an option no field)"
    models = {m for c, m, _ in COMMANDS if c is command}
    assert set(option_fields(command)) <= {f for m in models for f in m.model_fields}, "an option of no model"
    params = {p.name: p for p in command.params if isinstance(p, click.Option)}
    for name in generated:
        option = params[name]
        assert option.default is None, f"--{name} has its own default; the model's is the only one"
        info = model.model_fields[name]
        limits = _limits(info.metadata)
        if name == "patience":  # 0 on the command line means off (None in the model)
            continue
        if name == "invalid_scl":  # a list of bounded items: the items' bounds
            limits = _limits(m for item in info.annotation.__args__[0].__metadata__ for m in item.metadata)
            assert limits == [0, 11]
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


def test_scene_and_feature_flags_reach_their_models(monkeypatch, tmp_path):
    import geoseg.features
    import geoseg.io

    seen: dict = {}

    def fake_open(path, options, mask=None):
        seen["scene"] = options
        return types.SimpleNamespace(require_bands=lambda *a: None)

    def fake_write(scene, out, recipe, options):
        seen["features"] = options
        raise SystemExit(0)

    monkeypatch.setattr(geoseg.io, "open_scene", fake_open)
    monkeypatch.setattr(geoseg.features, "write_feature_stack", fake_write, raising=False)
    args = ["s.tif", "--out", str(tmp_path / "f.tif"), "--resolution", "20", "--offset", "-1000", "--scale", "1",
            "--invalid-scl", "3,8", "--datetime", "20240612", "--block", "64", "--workers", "2", "--compress",
            "lzw", "--no-progress"]
    assert CliRunner().invoke(features_cmd, args).exit_code == 0
    assert seen["scene"] == SceneOptions(resolution=20, offset=-1000, scale=1, invalid_scl=(3, 8), date="20240612")
    assert seen["features"] == FeatureOptions(block=64, workers=2, compress="lzw", progress=False)
    assert CliRunner().invoke(features_cmd, ["s.tif", "--out", str(tmp_path / "f.tif")]).exit_code == 0
    assert (seen["scene"], seen["features"]) == (SceneOptions(), FeatureOptions())


def test_the_catalog_declares_its_scene_options_with_the_model_s_fields(tmp_path):
    from geoseg.config.catalog import Dataset, SceneEntry, load_catalog

    for model, name in ((SceneEntry, "offset"), (SceneEntry, "scale"), (SceneEntry, "date"), (Dataset, "invalid_scl")):
        assert repr(model.model_fields[name]) == repr(SceneOptions.model_fields[name]), name
    # one bound for the catalog, the Python API and the CLI (the catalog's offset was unbounded)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({"datasets": {"d": {"scenes": [{"id": "s", "path": "s.tif", "offset": 1e5}]}}}))
    with pytest.raises(ConfigError, match=r"datasets\.d\.scenes\.0\.offset: Input should be less than or equal to 10000"):
        load_catalog(catalog)
    with pytest.raises(ConfigError, match="option offset: Input should be less than or equal to 10000"):
        SceneOptions(offset=1e5)
    catalog.write_text(yaml.safe_dump({"datasets": {"d": {"invalid_scl": [3, 12], "scenes": [{"id": "s", "path": "s"}]}}}))
    with pytest.raises(ConfigError, match=r"datasets\.d\.invalid_scl\.1: Input should be less than or equal to 11"):
        load_catalog(catalog)


def test_hand_written_train_help_takes_its_defaults_from_train_config():
    from pathlib import Path

    import geoseg.cli.train_cmds as train_cmds

    helps = {p.name: p.help for p in train_cmd.params if isinstance(p, click.Option)}
    patience, encoder = TrainConfig.model_fields["patience"].default, TrainConfig.model_fields["encoder"].default
    assert helps["patience"].endswith(f"0 = off [{patience}]") and helps["encoder"].endswith(f"own [{encoder}]")
    assert "(needs the network) [no-pretrained]" in helps["pretrained"]
    assert TrainConfig.model_fields["pretrained"].default is False
    source = Path(train_cmds.__file__).read_text()
    for copied in (f"[{patience}]", f"[{encoder}]", "[no-pretrained]", f"--patience {patience}"):
        assert copied not in source, f"{copied} is copied into train_cmds.py; read it from TrainConfig"
