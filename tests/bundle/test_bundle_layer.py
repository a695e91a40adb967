"""geoseg.bundle: typed config (old bundles still load), one invalid-pixel rule, one device policy,
one runner, run readers — and a predictor that imports no Lightning."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from geoseg.bundle import (
    BundleConfig,
    ModelRunner,
    load_bundle,
    load_model_bundle,
    normalize,
    read_bundle_config,
    resolve_bundle_dir,
    resolve_device,
    run_bundle_dir,
    save_bundle,
)
from geoseg.bundle.config import ModelSpec, recipe_model_options
from geoseg.errors import CheckpointError, ConfigError
from geoseg.features.recipes import DEFAULT_RECIPE, get_recipe
from geoseg.validity import DEFAULT_MASK_CHANNELS, valid_mask, valid_mask_numpy
from tests.predict._predict_helpers import DEMO_CLASSES, bundle_config, unet_bundle

REPO = Path(__file__).resolve().parents[2]


def test_default_mask_channels_are_the_default_recipes():
    assert get_recipe(DEFAULT_RECIPE).num_mask_channels == DEFAULT_MASK_CHANNELS


def test_one_invalid_pixel_rule_everywhere():
    from geoseg.export.onnx import VALID_TOLERANCE, DeepnessGraph
    from geoseg.models.masked_batchnorm import valid_pixel_mask

    torch.manual_seed(0)
    x = torch.randn(2, 24, 8, 8)
    x[:, :, :3, :3] = 0  # invalid block
    x[0, 11:, 5, 5] = 0  # index channels 0 alone: still valid
    x[1, :11, 6, 6] = 0  # mask channels 0: invalid even with non-zero indices
    expected = valid_mask(x)
    assert expected.shape == (2, 1, 8, 8) and expected.dtype == torch.bool
    assert not expected[:, :, :3, :3].any() and expected[0, 0, 5, 5] and not expected[1, 0, 6, 6]
    assert torch.equal(valid_pixel_mask(x).bool(), expected)
    cfg = bundle_config(DEMO_CLASSES)
    y = normalize(x, cfg.normalization, cfg.mask_channels)
    assert torch.equal((y != 0).any(1, keepdim=True), expected)
    assert torch.equal(valid_mask(x[0], channel_dim=0), expected[0])
    assert (valid_mask_numpy(x.numpy()) == expected.numpy()).all()  # the numpy twin
    assert (valid_mask_numpy(x[1].numpy(), channel_dim=0) == expected[1].numpy()).all()
    # the ONNX graph recovers raw values from standardised ones: same rule, with a tolerance
    mean, std = torch.full((24,), 0.15), torch.full((24,), 0.1)
    graph = DeepnessGraph(torch.nn.Identity(), mean.tolist(), std.tolist(), 11)
    standard = (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    raw = standard[:, :11] * std.view(1, -1, 1, 1)[:, :11] + mean.view(1, -1, 1, 1)[:, :11]
    assert torch.equal(valid_mask(raw, 11, tolerance=VALID_TOLERANCE), expected)
    assert torch.equal((graph(standard) != 0).any(1, keepdim=True), expected)


def test_old_bundles_load_and_new_ones_are_typed(tmp_path):
    new = unet_bundle(tmp_path / "new")
    raw = json.loads((new / "config.json").read_text())
    assert raw["schema_version"] == 2 and raw["target_mode"] == "crop" and raw["target_size"] is None
    # a schema-1 bundle: target_size/target_mode only in extra
    old = tmp_path / "old"
    old.mkdir()
    (old / "model.safetensors").write_bytes((new / "model.safetensors").read_bytes())
    legacy = {k: v for k, v in raw.items() if k not in ("target_size", "target_mode")}
    legacy.update(schema_version=1, extra={"target_size": 48, "target_mode": "resize", "epoch": 3})
    (old / "config.json").write_text(json.dumps(legacy))
    cfg = load_bundle(old).config
    assert (cfg.schema_version, cfg.target_size, cfg.target_mode, cfg.eval_resize) == (1, 48, "resize", 48)
    assert read_bundle_config(old).mask_channels == 11
    legacy["extra"]["target_mode"] = "crop"
    (old / "config.json").write_text(json.dumps(legacy))
    assert read_bundle_config(old).eval_resize is None  # crops: evaluation keeps whole cubes
    # mask_channels comes from the recipe when a config does not say
    r = get_recipe("rgb")
    cfg = BundleConfig.model_validate({**bundle_config(DEMO_CLASSES, "rgb").model_dump(exclude={"mask_channels"})})
    assert cfg.mask_channels == r.num_mask_channels == 3



def test_model_spec_and_recipe_are_typed_and_stored_as_before(tmp_path):
    bundle = unet_bundle(tmp_path / "bundle")
    raw = json.loads((bundle / "config.json").read_text())
    cfg = read_bundle_config(bundle)
    assert isinstance(cfg.model, ModelSpec) and (cfg.model.name, cfg.model.encoder) == ("unet", "test_resnet")
    assert cfg.model.options == raw["model"]["options"] and cfg.recipe == get_recipe(DEFAULT_RECIPE)
    assert json.loads(json.dumps(cfg.model_dump(mode="json"))) == raw  # the file's form is unchanged
    broken = [
        ("model", {**raw["model"], "nmae": "unet"}, r"unknown key 'model.nmae'.*did you mean 'name'"),
        ("recipe", {**raw["recipe"], "bands": ["B99"]}, r"recipe: recipe 's2_24': unknown bands \['B99'\]"),
        ("recipe", {"name": "s2_24"}, r"recipe: the recipe has no 'bands'"),
    ]
    for key, value, message in broken:  # one line naming the file and the key
        (bundle / "config.json").write_text(json.dumps({**raw, key: value}))
        with pytest.raises(ConfigError, match=message):
            read_bundle_config(bundle)

def test_run_readers(tmp_path):
    run = tmp_path / "model"
    final = unet_bundle(run / "final")
    assert run_bundle_dir(run, "best") == final  # no validation ran: final stands in
    assert resolve_bundle_dir(run) == final and resolve_bundle_dir(final) == final
    best = unet_bundle(run / "best")
    assert run_bundle_dir(run, "best") == best and run_bundle_dir(run, "final") == final
    assert resolve_bundle_dir(run) == best
    assert load_model_bundle(run).path == best
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model_bundle(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="not a model directory"):
        read_bundle_config(tmp_path)


def test_store_manifest_reader(tmp_path):
    from geoseg.tiling.store import store_is_complete

    assert not store_is_complete(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    assert not store_is_complete(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"complete": False}))
    assert not store_is_complete(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"complete": True}))
    assert store_is_complete(tmp_path)


def test_mask_channels_of_rsprunetpp_come_from_the_recipe():
    assert recipe_model_options("rsprunetpp", {}, 4) == {"mask_channels": 4}
    assert recipe_model_options("rsprunetpp", {"mask_channels": 7}, 4) == {"mask_channels": 7}  # explicit wins
    assert recipe_model_options("unet", {"encoder_depth": 3}, 4) == {"encoder_depth": 3, "mask_channels": 4}  # every model: series validity


def test_training_builds_rsprunetpp_with_the_recipes_mask_channels():
    from geoseg.train import SegmentationTask, TrainConfig

    cfg = TrainConfig(model="rsprunetpp", encoder="test_resnet", model_options={"encoder_depth": 3})
    names = list(get_recipe("rgb").channel_names)
    task = SegmentationTask(cfg.model_dump(mode="json"), 3, names, ["a", "b"], mask_channels=3)
    assert task.model.input_norm.mask_channels == 3
    assert task.model.spec["options"]["mask_channels"] == 3  # the bundle rebuilds it the same way


def _no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_device_policy(monkeypatch):
    _no_cuda(monkeypatch)
    assert resolve_device("auto") == torch.device("cpu") == resolve_device("CPU")
    with pytest.raises(ConfigError, match="no CUDA GPU is available"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="no CUDA GPU is available"):
        resolve_device("cuda:1")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("gpu0")


def test_evaluate_and_predict_refuse_a_missing_gpu_alike(monkeypatch, tmp_path, capsys):
    from geoseg.cli.main import main
    from geoseg.train import evaluate

    _no_cuda(monkeypatch)
    model = unet_bundle(tmp_path / "model")
    cubes = tmp_path / "cubes"
    cubes.mkdir()
    with pytest.raises(ConfigError) as predict_err:
        ModelRunner(load_bundle(model), device="cuda")  # the predictor's runner
    with pytest.raises(ConfigError) as eval_err:
        evaluate(model, cubes, tmp_path / "eval", device="cuda")
    assert str(eval_err.value) == str(predict_err.value)
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(model), str(cubes), "--out", str(tmp_path / "e"), "--device", "cuda"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.startswith("error: ") and "no CUDA GPU is available" in err
    assert len(err.splitlines()) == 1, err


def unet_bundle_loaded(tmp_path):
    return load_bundle(unet_bundle(tmp_path / "model"))


def test_evaluate_step_device_is_validated():
    from geoseg.errors import ConfigError
    from geoseg.pipeline.schema import EvaluateStep

    assert EvaluateStep(device="cuda:1").device == "cuda:1"
    assert EvaluateStep().device == "auto"
    with pytest.raises(ConfigError, match="unknown device"):  # one line, as for every options model
        EvaluateStep(device="gpu")


def test_runner_is_the_reference_of_export(tmp_path):
    from geoseg.export import reference_probabilities

    bundle = unet_bundle_loaded(tmp_path)
    torch.manual_seed(1)
    raw = torch.rand(2, 24, 64, 64) * 0.3
    raw[:, :, :10, :10] = 0
    runner = ModelRunner(bundle, device="cpu")
    probs = torch.from_numpy(runner(raw.numpy()))
    ref = reference_probabilities(bundle, raw, mask_invalid=False)
    torch.testing.assert_close(probs, ref)
    masked = reference_probabilities(bundle, raw)
    assert (masked[:, :, :10, :10] == 0).all()
    torch.testing.assert_close(masked[:, :, 20:, 20:], ref[:, :, 20:, 20:])


def test_bundle_config_round_trip(tmp_path):
    bundle = unet_bundle_loaded(tmp_path)
    cfg = bundle.config.model_copy(update={"target_size": 32, "target_mode": "resize"})
    save_bundle(bundle.model, cfg, tmp_path / "copy")
    again = read_bundle_config(tmp_path / "copy")
    assert again == cfg and again.eval_resize == 32


@pytest.mark.slow  # two fresh interpreters (~7 s): .ci/run runs the slow tier after the default suite
def test_predictor_bundle_and_exporter_import_no_lightning():
    code = ("import sys, geoseg.predict, geoseg.bundle, geoseg.export; "
            "print(sorted(m for m in ('lightning', 'torchmetrics', 'geoseg.train') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
    out = subprocess.run([sys.executable, "-c", "import sys, geoseg.data; print('geoseg.train' in sys.modules)"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "False", out.stderr[-2000:]



class _TimedModel(torch.nn.Module):
    """Sleeps ``scale * pixels ** power`` per forward pass: a model whose cost per pixel we know."""

    required_divisor = 32

    def __init__(self, power: float):
        super().__init__()
        self.power = power

    def forward(self, x):
        import time

        time.sleep(1e-3 * (x.shape[-1] * x.shape[-2] / 64**2) ** self.power)
        return x


@pytest.mark.parametrize(("power", "expected"), [(0.5, 256), (1.6, 64)])
def test_prediction_window_is_the_fastest_per_pixel(power, expected):
    """Overhead-bound models get large windows, cache-bound ones stay at the training size."""
    from geoseg.bundle.window_choice import measure_predict_window

    model = _TimedModel(power).train()
    state = torch.random.get_rng_state()
    choice = measure_predict_window(model, 3, 64, candidates=(128, 256))
    assert choice.window == expected and set(choice.seconds_per_mpx) == {64, 128, 256}
    assert model.training and torch.equal(torch.random.get_rng_state(), state)  # training is not disturbed
    assert measure_predict_window(model, 3, 96, candidates=(64, 128)).window in (96, 128)  # never below training


def test_default_prediction_window_is_recorded_and_used(demo_small, tmp_path):
    """Predict's default window is the bundle's ``predict_window``; older bundles keep their training size."""
    from geoseg.predict import predict_scene

    base = bundle_config(DEMO_CLASSES, window=64).model_dump(exclude={"predict_window"})
    assert BundleConfig.model_validate(base).predict_window == 64  # written before the field existed
    saved = unet_bundle(tmp_path / "model", window=64)
    raw = json.loads((saved / "config.json").read_text())
    assert raw["predict_window"] == 64
    raw["predict_window"] = 256
    (saved / "config.json").write_text(json.dumps(raw))
    runs = {w: predict_scene(demo_small.scene, saved, tmp_path / f"map_{w}.tif", device="cpu", progress=False,
                             **({} if w is None else {"window": w})) for w in (None, 64)}
    assert runs[None].windows == 1 < runs[64].windows == 25  # a 240 px scene: one 256 px window


def test_a_scene_gets_the_window_of_least_total_cost():
    """Measured costs per size x the window pixels each layout runs: a scene just over 512 px gets 256 px."""
    from types import SimpleNamespace

    from geoseg.predict import plan_windows

    costs = {64: 1.0, 128: 0.6, 256: 0.5, 512: 0.45}  # seconds per Mpx: 512 is the cheapest per pixel
    bundle = SimpleNamespace(config=SimpleNamespace(predict_window=512, predict_window_costs=costs))

    def scene(side: int) -> SimpleNamespace:
        return SimpleNamespace(grid=SimpleNamespace(height=side, width=side))

    assert plan_windows(scene(600), bundle).window_height == 256  # 9 x 256² px beats 4 x 512²
    assert plan_windows(scene(10980), bundle).window_height == 512  # a full tile: the cheapest per pixel
    assert plan_windows(scene(600), bundle, window=128).window_height == 128  # asked for
    legacy = SimpleNamespace(config=SimpleNamespace(predict_window=64, predict_window_costs=None))
    assert plan_windows(scene(600), legacy).window_height == 64
