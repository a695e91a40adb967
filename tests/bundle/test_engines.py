"""Inference engines: onnxruntime gives torch's map, ``auto`` chooses and says why, the graph is cached."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch

from geoseg.bundle import ModelRunner, load_bundle
from geoseg.bundle import engines as engines_module
from geoseg.bundle.engines import AUTO_MIN_PIXELS, choose_engine, onnx_cache_path
from geoseg.errors import ConfigError, ModelError
from geoseg.predict import predict_scene
from tests.conftest import shared
from tests.predict._predict_helpers import DEMO_CLASSES, unet_bundle
from tests.reliability.conftest import run_inproc

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return unet_bundle(tmp_path_factory.mktemp("engines") / "model", DEMO_CLASSES, window=64)


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


def test_auto_chooses_and_says_why(model_dir, monkeypatch):
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


def test_a_cached_graph_is_used_without_exporting(model_dir, monkeypatch):
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
def test_auto_falls_back_to_torch_and_explicit_onnxruntime_refuses(failure, model_dir, monkeypatch):
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
