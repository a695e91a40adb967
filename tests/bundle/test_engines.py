"""Inference engines: onnxruntime and torch-bf16 give torch's map, ``auto`` chooses and says why, the graph is cached.

The bfloat16 map of a trained model on the demo and a real sample: tests/pipeline/test_shipped_runs.py (slow).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch

from geoseg.bundle import ModelRunner, load_bundle
from geoseg.bundle import engines as engines_module
from geoseg.bundle import runner as runner_module
from geoseg.bundle.engines import AUTO_MIN_PIXELS, BFloat16Forward, choose_engine, onnx_cache_path
from geoseg.errors import ConfigError, ModelError
from geoseg.predict import predict_scene
from tests.conftest import shared
from tests.predict._predict_helpers import DEMO_CLASSES, unet_bundle
from tests.reliability.conftest import run_inproc

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return unet_bundle(tmp_path_factory.mktemp("engines") / "model", DEMO_CLASSES, window=64)


@pytest.fixture
def no_native_bf16(monkeypatch):
    """A CPU without native bfloat16, where ``auto`` weighs onnxruntime against torch."""
    monkeypatch.setattr(engines_module, "cpu_has_native_bf16", lambda: False)


def _agreement(a, b) -> float:
    with rasterio.open(a) as ra, rasterio.open(b) as rb:
        x, y = ra.read(1), rb.read(1)
    valid = x != 0
    assert valid.any() and np.array_equal(valid, y != 0)
    return float((x[valid] == y[valid]).mean())


@pytest.mark.parametrize("scene", ["demo", "real"])
def test_onnxruntime_map_equals_torch(scene, model_dir, demo_small, tmp_path):
    path = demo_small.scene if scene == "demo" else shared("terramind_examples", "S2L2A", "282D_485L_3_3.tif")
    runs = {e: predict_scene(path, model_dir, tmp_path / f"{e}.tif", engine=e, device="cpu", progress=False,
                             window=128) for e in ("torch", "onnxruntime")}
    assert runs["torch"].engine == "torch" and runs["onnxruntime"].engine == "onnxruntime"
    assert _agreement(tmp_path / "torch.tif", tmp_path / "onnxruntime.tif") >= 0.999
    cached = onnx_cache_path(load_bundle(model_dir), 128, 128)[0]
    assert cached.is_file() and cached.parent == model_dir / ".engines"


def test_auto_chooses_and_says_why(model_dir, monkeypatch, no_native_bf16):
    cpu = torch.device("cpu")
    bundle = load_bundle(model_dir)
    assert choose_engine("auto", torch.device("cuda")).name == "torch"
    small = choose_engine("auto", cpu, AUTO_MIN_PIXELS - 1, bundle=bundle, window=(96, 96))
    assert small.name == "torch" and "too little work" in small.reason
    assert choose_engine("auto", cpu, AUTO_MIN_PIXELS, bundle=bundle, window=(96, 96)).name == "onnxruntime"
    with pytest.raises(ConfigError, match="runs on the CPU"):
        choose_engine("onnxruntime", torch.device("cuda"))
    monkeypatch.setattr(engines_module, "_onnxruntime_installed", lambda: False)
    assert "not installed" in choose_engine("auto", cpu, AUTO_MIN_PIXELS).reason
    with pytest.raises(ConfigError, match="pip install onnxruntime"):
        choose_engine("onnxruntime", cpu)


def test_a_cached_graph_is_used_without_exporting(model_dir, monkeypatch, no_native_bf16):
    bundle = load_bundle(model_dir)
    x = torch.randn(2, 24, 64, 64)
    first = ModelRunner(bundle, device="cpu", engine="onnxruntime")
    reference = first.logits(x)
    assert onnx_cache_path(bundle, 64, 64)[0].is_file()

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(engines_module, "_export", no_export)
    runner = ModelRunner(bundle, device="cpu", engine="auto", work_pixels=1)  # tiny run, but cached
    torch.testing.assert_close(runner.logits(x), reference)
    assert runner.engine == "onnxruntime" and "cached" in runner.choice.reason


def test_a_bundle_folder_that_is_not_writable_caches_in_the_user_cache(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    bundle = load_bundle(model_dir)
    bundle.path = tmp_path / "not-a-folder"  # where no .engines/ can be made (root ignores chmod)
    bundle.path.write_text("mine")
    runner = ModelRunner(bundle, device="cpu", engine="onnxruntime")
    runner.logits(torch.randn(1, 24, 32, 32))
    assert list((tmp_path / "cache" / "geoseg" / "onnx").glob("model-*-32x32-*.onnx"))
    assert bundle.path.read_text() == "mine"


@pytest.mark.parametrize("failure", ["export", "disagree"])
def test_auto_falls_back_to_torch_and_explicit_onnxruntime_refuses(failure, model_dir, monkeypatch, no_native_bf16):
    bundle = load_bundle(model_dir)
    if failure == "export":
        def broken(*args, **kwargs):
            raise RuntimeError("Unsupported: aten::some_op")

        monkeypatch.setattr(engines_module, "_load_or_export", broken)
    else:
        monkeypatch.setattr(engines_module, "probe_agreement", lambda *a, **k: (0.5, 1.0))
    x = torch.randn(1, 24, 48, 48)
    auto = ModelRunner(bundle, device="cpu", engine="auto", work_pixels=AUTO_MIN_PIXELS)
    torch.testing.assert_close(auto.logits(x), bundle.model(x))
    assert auto.engine == "torch" and ("does not export" in auto.choice.reason or "differs" in auto.choice.reason)
    with pytest.raises(ModelError, match="--engine torch"):
        ModelRunner(bundle, device="cpu", engine="onnxruntime").logits(x)


def test_cli_engine_in_summary_json(model_dir, demo_small, tmp_path):
    summary = tmp_path / "run.json"
    result = run_inproc("predict", "--model", model_dir, "--scene", demo_small.scene, "--out", tmp_path / "map.tif",
                        "--engine", "onnxruntime", "--window", "128", "--device", "cpu", "--no-progress",
                        "--summary-json", summary)
    assert result.returncode == 0, result.stderr
    (data,) = json.loads(summary.read_text())  # one summary per scene
    assert data["engine"] == "onnxruntime" and data["engine_reason"].startswith("asked for")
    assert "onnxruntime" in result.stdout
    bad = run_inproc("predict", "--model", model_dir, "--scene", demo_small.scene, "--out", tmp_path / "b.tif",
                     "--engine", "tensorrt")
    assert bad.returncode == 2 and "tensorrt" in bad.stderr and not (tmp_path / "b.tif").exists()


# ------------------------------------------------------------------------------------------ torch-bf16
def test_bf16_forward_is_float32_within_bfloat16_precision(model_dir):
    bundle = load_bundle(model_dir)
    x = torch.randn(2, 24, 64, 64)
    with torch.inference_mode():
        reference = bundle.model(x)
        got = BFloat16Forward(bundle.model)(x)
    assert got.dtype == torch.float32 and got.shape == reference.shape
    scale = float(reference.abs().max())
    assert 0 < float((got - reference).abs().max()) <= 0.05 * scale  # bfloat16: 8 mantissa bits, not float32


def test_auto_uses_bf16_only_when_its_map_agrees_on_the_first_batch(model_dir, demo_small, tmp_path, monkeypatch):
    monkeypatch.setattr(engines_module, "cpu_has_native_bf16", lambda: True)
    assert choose_engine("auto", torch.device("cpu"), 1).name == "torch-bf16"
    assert choose_engine("auto", torch.device("cpu"), 1, bf16=False).name == "torch"  # too little for ONNX
    torch_run = predict_scene(demo_small.scene, model_dir, tmp_path / "torch.tif", engine="torch", device="cpu",
                              progress=False, window=128)
    # the random test model's classes are near-tied: its bfloat16 map differs from float32's on ~0.5 % of the
    # pixels, so auto refuses bfloat16 and takes the next engine (onnxruntime: its graph is cached by now)
    refused = predict_scene(demo_small.scene, model_dir, tmp_path / "refused.tif", engine="auto", device="cpu",
                            progress=False, window=128)
    assert refused.engine in ("torch", "onnxruntime")
    assert "bfloat16 map agrees with float32 torch's on 0.99" in refused.engine_reason
    assert _agreement(tmp_path / "torch.tif", tmp_path / "refused.tif") >= 0.9999
    with pytest.raises(ModelError, match="below 0.999"):  # asked for: the 99.9 % every engine promises
        predict_scene(demo_small.scene, model_dir, tmp_path / "asked.tif", engine="torch-bf16", device="cpu",
                      progress=False, window=128)
    assert not (tmp_path / "asked.tif").exists()
    # with a lower bar (as a model with clear margins passes the real one), auto runs bfloat16
    monkeypatch.setattr(runner_module, "BF16_AGREEMENT", 0.9)
    bf16 = predict_scene(demo_small.scene, model_dir, tmp_path / "bf16.tif", engine="auto", device="cpu",
                         progress=False, window=128)
    assert bf16.engine == "torch-bf16" and "map agreement with float32 on the first batch: 0.99" in bf16.engine_reason
    assert 0.98 <= _agreement(tmp_path / "torch.tif", tmp_path / "bf16.tif") < 1.0
    assert torch_run.engine == "torch"


def test_bf16_runs_series_models_and_refuses_a_gpu(tmp_path):
    from geoseg.models import create_model

    torch.manual_seed(0)
    model = create_model("deeplabv3plus3d", in_channels=24, num_classes=3, encoder="test_resnet",
                         aspp_channels=32, decoder_channels=32, low_level_channels=16).eval()
    x = torch.randn(1, 3, 24, 32, 32)
    with torch.inference_mode():
        reference = model(x)
        got = BFloat16Forward(model, channels_last=False)(x)
    assert got.shape == reference.shape and float((got - reference).abs().max()) <= 0.05 * float(reference.abs().max())
    with pytest.raises(ConfigError, match="runs on the CPU"):
        choose_engine("torch-bf16", torch.device("cuda"))


def test_cli_torch_bf16_in_summary_json_and_refusal(model_dir, demo_small, tmp_path, monkeypatch):
    summary = tmp_path / "run.json"
    monkeypatch.setattr(runner_module, "PROBE_AGREEMENT", 0.9)  # the random test model's margins (see above)
    result = run_inproc("predict", "--model", model_dir, "--scene", demo_small.scene, "--out", tmp_path / "map.tif",
                        "--engine", "torch-bf16", "--window", "128", "--device", "cpu", "--no-progress",
                        "--summary-json", summary)
    assert result.returncode == 0, result.stderr
    (data,) = json.loads(summary.read_text())
    assert data["engine"] == "torch-bf16" and data["engine_reason"].startswith("asked for (--engine torch-bf16)")
    monkeypatch.setattr(runner_module, "PROBE_AGREEMENT", 0.999)
    refused = run_inproc("predict", "--model", model_dir, "--scene", demo_small.scene, "--out", tmp_path / "no.tif",
                         "--engine", "torch-bf16", "--window", "128", "--device", "cpu", "--no-progress")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "bfloat16 map agrees" in refused.stderr and "--engine torch" in refused.stderr
    assert not list(tmp_path.glob("no.*"))


def test_evaluation_keeps_float32_scores_under_auto(model_dir, monkeypatch):
    """The evaluator's ``auto`` never takes bfloat16: its scores must reproduce the training log's."""
    monkeypatch.setattr(engines_module, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(runner_module, "BF16_AGREEMENT", 0.0)  # even a model bfloat16 would pass
    bundle = load_bundle(model_dir)
    x = torch.randn(2, 24, 32, 32)
    runner = ModelRunner(bundle, device="cpu", engine="auto", work_pixels=1, auto_bf16=False)
    torch.testing.assert_close(runner.logits(x), bundle.model(x))
    assert runner.engine == "torch"
    predictor = ModelRunner(bundle, device="cpu", engine="auto", work_pixels=1)  # the predictor's default
    predictor.logits(x)
    assert predictor.engine == "torch-bf16"
