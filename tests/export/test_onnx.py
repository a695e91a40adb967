"""``geoseg export --format onnx``: the model Deepness runs equals the PyTorch model on the same 24 bands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from geoseg.export import read_metadata, reference_probabilities, run_like_deepness
from geoseg.export.onnx import DeepnessGraph

TILE = 64


def _main(args: list[str]) -> int:
    from geoseg.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return int(exit_info.value.code or 0)


@pytest.fixture(scope="module")
def stack(demo_small, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 24-channel feature stack GeoTIFF of the demo scene: what the analyst loads into QGIS."""
    from geoseg.features import write_feature_stack
    from geoseg.io import open_scene

    out = tmp_path_factory.mktemp("stack") / "stack.tif"
    return write_feature_stack(open_scene(demo_small.scene), out, progress=False)


@pytest.fixture(scope="module")
def window(stack: Path) -> Window:
    """A tile of the stack holding valid and invalid (no-data edge, cloud, shadow) pixels, about half each."""
    with rasterio.open(stack) as ds:
        valid = np.abs(ds.read(list(range(1, 12)))).sum(0) > 0
    starts = range(0, valid.shape[0] - TILE + 1, 16)
    fraction = {(r, c): valid[r:r + TILE, c:c + TILE].mean() for r in starts for c in starts}
    row, col = min(fraction, key=lambda k: abs(fraction[k] - 0.5))
    return Window(col, row, TILE, TILE)


@pytest.fixture(scope="module")
def bundle_dir(stack: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small UNet bundle with decisive weights, real BatchNorm statistics and the stack's normalisation."""
    from geoseg.bundle import BundleConfig, Normalization, normalize, save_bundle
    from geoseg.config.catalog import ClassDef
    from geoseg.features import get_recipe
    from geoseg.models import create_model

    recipe = get_recipe("s2_24")
    with rasterio.open(stack) as ds:
        data = ds.read()
    valid = np.abs(data[:11]).sum(0) > 0
    norm = Normalization(mean=[float(v) for v in data[:, valid].mean(1)],
                         std=[float(v) for v in data[:, valid].std(1)])
    torch.manual_seed(0)
    model = create_model("unet", in_channels=24, num_classes=4, encoder="test_resnet", encoder_depth=3,
                         decoder_channels=[16, 16, 16], channel_names=list(recipe.channel_names))
    x = normalize(torch.from_numpy(data[None, :, :128, :128].copy()), norm)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
        model.train()
        for _ in range(3):  # running BatchNorm statistics of real features
            model(x)
    classes = [ClassDef(code=c, name=n, color=col) for c, n, col in
               [(1, "water", "#1f78b4"), (2, "forest", "#1b7837"), (3, "cropland", "#f1c232"), (5, "built-up", "#d7301f")]]
    config = BundleConfig(model=model.spec, recipe=recipe.to_dict(), channel_names=list(recipe.channel_names),
                          classes=classes, normalization=norm, window=TILE, mask_channels=recipe.num_mask_channels)
    return save_bundle(model.eval(), config, tmp_path_factory.mktemp("bundle") / "best")


@pytest.fixture(scope="module")
def exported(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert _main(["export", str(bundle_dir), "--format", "onnx", "--out", str(out)]) == 0
    return out


def _tile_and_reference(stack: Path, bundle_dir: Path, window: Window, mask_invalid: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from geoseg.bundle import load_bundle

    with rasterio.open(stack) as ds:
        raw = ds.read(window=window)  # (24, 64, 64), as QGIS reads the layer
    valid = np.abs(raw[:11]).sum(0) > 0
    bundle = load_bundle(bundle_dir)
    with torch.inference_mode():
        ref = reference_probabilities(bundle, torch.from_numpy(raw[None].copy()), mask_invalid).numpy()
    return raw.transpose(1, 2, 0), ref, valid  # Deepness hands the model H x W x C tiles


def test_graph_shape_opset_and_metadata_are_what_deepness_reads(exported: Path, bundle_dir: Path) -> None:
    import json

    import onnx

    model = onnx.load(str(exported))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) <= 20
    [inp], [out] = model.graph.input, model.graph.output
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 24, TILE, TILE]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 4, TILE, TILE]
    meta = read_metadata(exported)
    config = json.loads((bundle_dir / "config.json").read_text())
    assert meta["model_type"] == "Segmentor"
    assert meta["class_names"] == {"0": "water", "1": "forest", "2": "cropland", "3": "built-up"}
    assert meta["geoseg_class_codes"] == [1, 2, 3, 5]
    assert meta["resolution"] == 1000 and meta["tile_size"] == meta["tiles_size"] == TILE
    assert meta["tiles_overlap"] == 25
    assert np.allclose(meta["standardization_mean"], np.array(config["normalization"]["mean"]) / 255, rtol=1e-12)
    assert np.allclose(meta["standardization_std"], np.array(config["normalization"]["std"]) / 255, rtol=1e-12)
    assert all(isinstance(p.value, str) for p in model.metadata_props)  # JSON-encoded values


def test_onnx_run_as_deepness_equals_pytorch_on_the_feature_stack(exported: Path, stack: Path,
                                                                  bundle_dir: Path, window: Window) -> None:
    tile, ref, valid = _tile_and_reference(stack, bundle_dir, window)
    assert 0.05 < valid.mean() < 0.95  # the window holds valid and invalid pixels
    probs = run_like_deepness(exported, tile)
    assert probs.shape == (1, 4, TILE, TILE)
    assert np.abs(probs - ref).max() <= 1e-4
    assert np.allclose(probs[0].sum(0)[valid], 1.0, atol=1e-5)  # softmax in the graph
    assert (probs[0][:, ~valid] == 0).all()  # invalid pixels: probability 0 everywhere
    assert len(np.unique(probs[0].argmax(0)[valid])) >= 2  # decisive, not a constant map
    # a batch of two tiles (dynamic batch dimension)
    batch = run_like_deepness(exported, np.stack([tile, tile[::-1].copy()]))
    assert batch.shape == (2, 4, TILE, TILE) and np.abs(batch[0] - ref[0]).max() <= 1e-4


def test_without_the_zero_mask_invalid_pixels_change_the_answer(stack: Path, bundle_dir: Path, window: Window,
                                                                 tmp_path: Path) -> None:
    """Deepness standardises invalid pixels to -mean/std; only the in-graph mask restores training's zeros."""
    out = tmp_path / "nomask.onnx"
    assert _main(["export", str(bundle_dir), "--out", str(out), "--no-mask-invalid", "--no-check"]) == 0
    tile, ref, valid = _tile_and_reference(stack, bundle_dir, window, mask_invalid=False)
    probs = run_like_deepness(out, tile)
    assert np.abs(probs - ref)[:, :, ~valid].max() > 1e-2  # differs from training's view of invalid pixels


def test_deepness_graph_module_matches_reference_in_pytorch(stack: Path, bundle_dir: Path, window: Window) -> None:
    from geoseg.bundle import load_bundle
    from geoseg.export import deepness_preprocess

    bundle = load_bundle(bundle_dir)
    cfg = bundle.config
    tile, ref, _ = _tile_and_reference(stack, bundle_dir, window)
    x = deepness_preprocess(tile, np.array(cfg.normalization.mean) / 255, np.array(cfg.normalization.std) / 255)
    graph = DeepnessGraph(bundle.model, cfg.normalization.mean, cfg.normalization.std, cfg.mask_channels).eval()
    with torch.inference_mode():
        out = graph(torch.from_numpy(x)).numpy()
    assert np.abs(out - ref).max() <= 1e-4


@pytest.mark.parametrize(("args", "message"), [
    (["--opset", "21"], "--opset: 21 is not <= 20"),  # refused by the CLI's option types, before any work
    (["--tile-size", "4"], "--tile-size: 4 is not >= 8"),
    (["--overlap", "100"], "--overlap: 100 is not < 100"),
])
def test_bad_options_are_one_line_errors(bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         args: list[str], message: str) -> None:
    out = tmp_path / "model.onnx"
    assert _main(["export", str(bundle_dir), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing half-written


def test_not_a_model_directory_or_not_onnx(tmp_path: Path, bundle_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["export", str(tmp_path), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "not a model directory" in capsys.readouterr().err
    assert _main(["export", str(bundle_dir), "--out", str(tmp_path / "m.txt")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err


@pytest.mark.parametrize("tile", [64, 96])
def test_pspnet_exports_at_any_window(stack: Path, bundle_dir: Path, tmp_path: Path, tile: int) -> None:
    """The pyramid's 3 × 3 and 6 × 6 bins do not divide a 64 or 96 px window's deepest map, which torch's
    exporter refuses for adaptive pooling: geoseg's pooling exports as averaging matrices, equal to PyTorch."""
    from geoseg.bundle import BundleConfig, ModelRunner, load_bundle, save_bundle
    from geoseg.models import create_model

    reference = load_bundle(bundle_dir)
    torch.manual_seed(0)
    model = create_model("pspnet", in_channels=24, num_classes=4, encoder="test_efficientnet", psp_channels=64,
                         decoder_channels=[32, 32, 16, 16], channel_names=reference.config.channel_names).eval()
    config = BundleConfig(**{**reference.config.model_dump(), "model": model.spec, "window": tile})
    model_dir = save_bundle(model, config, tmp_path / "pspnet")
    out = tmp_path / "pspnet.onnx"
    assert _main(["export", str(model_dir), "--format", "onnx", "--out", str(out)]) == 0
    tile_array, ref, valid = _tile_and_reference(stack, model_dir, Window(0, 0, tile, tile))
    probs = run_like_deepness(out, tile_array)
    assert probs.shape == (1, 4, tile, tile) and np.abs(probs - ref).max() <= 1e-4
    x = torch.randn(2, 24, tile, tile)  # and the onnxruntime inference engine takes it
    runner = ModelRunner(load_bundle(model_dir), device="cpu", engine="onnxruntime")
    torch.testing.assert_close(runner.logits(x), ModelRunner(load_bundle(model_dir), device="cpu").logits(x),
                               atol=1e-4, rtol=1e-4)
    assert runner.engine == "onnxruntime"
