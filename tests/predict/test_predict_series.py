"""Prediction of a time series: streaming window by window equals one pass over the whole series.

Three multi-band GeoTIFFs on one grid (different fields, a shared nodata box, a cloud on the
second date only) carry their acquisition time in a tag; a per-pixel series model (1x1
convolutions, dates pooled over the valid ones) makes stitching exact, as the single-date
stitch test does (tests/predict/test_predict_exact.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from geoseg.bundle import ModelBundle, normalize, save_bundle
from geoseg.cli.main import main
from geoseg.errors import ConfigError
from geoseg.features import get_recipe
from geoseg.predict import series_from_scenes, stream_predictions
from geoseg.tiling.series import read_series
from tests.predict._predict_helpers import (
    DEMO_CLASSES,
    CollectSink,
    bundle_config,
    input_grid,
    unet_bundle,
    write_multiband_scene,
)

H, W = 150, 131
TIMES = ("2023-04-15T10:15:59", "2023-06-12T10:15:59", "2023-08-20T10:15:59")
CLOUD = (slice(90, 120), slice(20, 60))  # invalid on the second date only


class PointwiseSeriesNet(torch.nn.Module):
    """A per-pixel series model: 1x1 convolutions per date, mean over the valid dates, 1x1 classifier."""

    takes_series = True

    def __init__(self, in_channels: int, num_classes: int, mask_channels: int, hidden: int = 16) -> None:
        super().__init__()
        self.in_channels, self.num_classes, self.mask_channels = in_channels, num_classes, mask_channels
        self.embed = torch.nn.Conv2d(in_channels, hidden, 1)
        self.head = torch.nn.Conv2d(hidden, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        valid = (x[:, :, : self.mask_channels].abs().sum(2, keepdim=True) > 0).float()  # (N, T, 1, H, W)
        feats = torch.relu(self.embed(x.flatten(0, 1))).unflatten(0, x.shape[:2]) * valid
        return self.head(feats.sum(1) / valid.sum(1).clamp(min=1.0))


def _series_bundle(seed: int = 0) -> ModelBundle:
    torch.manual_seed(seed)
    r = get_recipe("s2_24")
    model = PointwiseSeriesNet(r.num_channels, len(DEMO_CLASSES), r.num_mask_channels)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    spec = {"name": "pointwise", "in_channels": r.num_channels, "num_classes": len(DEMO_CLASSES),
            "options": {"temporal": "attention", "time_steps": None}}
    return ModelBundle(model.eval(), bundle_config(DEMO_CLASSES, model_spec=spec))


def _dated_scene(path: Path, seed: int, when: str, cloud: bool = False, **kwargs) -> Path:
    write_multiband_scene(path, kwargs.pop("height", H), kwargs.pop("width", W), seed=seed, **kwargs)
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(datetime=when)
        if cloud:
            for band in range(1, ds.count + 1):
                data = ds.read(band)
                data[CLOUD] = 0
                ds.write(data, band)
    return path


@pytest.fixture(scope="module")
def dates(tmp_path_factory) -> list[Path]:
    """The three dates, listed newest first (predict orders them by acquisition time)."""
    root = tmp_path_factory.mktemp("series")
    paths = [_dated_scene(root / f"d{k}.tif", seed=k + 1, when=t, cloud=k == 1) for k, t in enumerate(TIMES)]
    return paths[::-1]


@pytest.fixture(scope="module")
def series_unet(tmp_path_factory) -> Path:
    """A small real series model (UNet with the temporal-attention front end) saved as a bundle."""
    from geoseg.models import create_model

    torch.manual_seed(0)
    r = get_recipe("s2_24")
    model = create_model("unet", in_channels=r.num_channels, num_classes=len(DEMO_CLASSES), encoder="test_resnet",
                         encoder_depth=3, decoder_channels=[16, 16, 16], channel_names=list(r.channel_names),
                         temporal="attention", mask_channels=r.num_mask_channels)
    cfg = bundle_config(DEMO_CLASSES, model_spec=model.spec).model_copy(update={"time_steps": 3})
    return save_bundle(model.eval(), cfg, tmp_path_factory.mktemp("bundle") / "series_unet")


def _run(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out + captured.err


def test_series_is_ordered_by_acquisition_time(dates):
    series = series_from_scenes(dates)
    assert series.acquired == TIMES and series.time_steps == 3
    assert [s.path for s in series.scenes] == [str(p) for p in dates[::-1]]


@pytest.mark.parametrize("overlap", [0, 20])
def test_streaming_series_equals_whole_series_in_memory(dates, overlap):
    series = series_from_scenes(dates)
    bundle = _series_bundle()
    sink = CollectSink()
    stats = stream_predictions(series, bundle, sink, window=64, overlap=overlap, batch_size=3, device="cpu",
                               progress=False)
    recipe = bundle.config.recipe
    features, date_valid = read_series(series.scenes, Window(0, 0, W, H), recipe)  # (T, C, H, W): the whole series
    x = normalize(torch.from_numpy(features)[None], bundle.config.normalization, bundle.config.mask_channels)
    with torch.inference_mode():
        ref = torch.softmax(bundle.model(x), dim=1)[0].numpy()
    valid = date_valid.any(axis=0)
    probs = sink.probs()
    assert probs.shape == ref.shape == (6, H, W) and stats.windows_run == len(stats.layout) > 1
    np.testing.assert_array_equal(sink.valid(), valid)
    assert date_valid[1][CLOUD].sum() == 0 and valid[CLOUD].all()  # cloudy on one date: still classified
    assert (~valid).sum() > 0  # the shared nodata box stays nodata
    assert np.abs(probs - ref)[:, valid].max() < 1e-5
    np.testing.assert_array_equal(probs.argmax(0)[valid], ref.argmax(0)[valid])
    assert np.all(probs[:, ~valid] == 0) and len(np.unique(ref.argmax(0)[valid])) >= 3


def test_predict_series_cli_writes_one_map_on_the_input_grid(dates, series_unet, tmp_path, capsys):
    out, summary = tmp_path / "landcover.tif", tmp_path / "summary.json"
    args = ["predict", "-m", str(series_unet), "--series", *[a for p in dates for a in ("-s", str(p))],
            "--out", str(out), "--confidence", str(tmp_path / "conf.tif"), "--summary-json", str(summary),
            "--device", "cpu", "--no-progress"]
    code, text = _run(args, capsys)
    assert code == 0, text
    assert input_grid(out) == input_grid(dates[0])  # the exact input grid
    with rasterio.open(out) as ds:
        classes = ds.read(1)
    assert (tmp_path / "landcover.qml").is_file() and (tmp_path / "conf.tif").is_file()
    assert classes[CLOUD].min() > 0 and (classes == 0).sum() == 7 * 11  # only the box invalid on every date is nodata
    record = json.loads(summary.read_text())[0]
    assert record["dates"] == list(TIMES) and record["date_sources"] == [str(p) for p in dates[::-1]]
    assert "dates     2023-04-15T10:15:59" in text


def test_refusals_exit_2_and_write_nothing(dates, series_unet, tmp_path, capsys):
    other = _dated_scene(tmp_path / "shifted.tif", seed=9, when="2023-09-01T10:00:00", origin=(500100.0, 5800000.0))
    channels_dir = tmp_path / "channels"
    from geoseg.models import create_model

    r = get_recipe("s2_24")
    model = create_model("unet", in_channels=24, num_classes=6, encoder="test_resnet", encoder_depth=3,
                         decoder_channels=[16, 16, 16], temporal="channels", time_steps=3,
                         channel_names=list(r.channel_names))
    save_bundle(model.eval(), bundle_config(DEMO_CLASSES, model_spec=model.spec), channels_dir)
    single = unet_bundle(tmp_path / "single")
    scenes = [a for p in dates for a in ("-s", str(p))]
    cases = {
        "not on one grid": [str(series_unet), "--series", *scenes, "-s", str(other)],
        "needs exactly 3 dates, the series has 2": [str(channels_dir), "--series", *scenes[:4]],
        "takes one date but the series is a time series of 3 dates": [str(single), "--series", *scenes],
        "takes a time series but the scene has one date": [str(series_unet), *scenes[:2]],
        "--engine onnxruntime runs single-date models only": [str(series_unet), "--series", *scenes,
                                                              "--engine", "onnxruntime"],
    }
    for k, (message, args) in enumerate(cases.items()):
        out = tmp_path / f"out{k}.tif"
        code, text = _run(["predict", "--device", "cpu", "--no-progress", "-m", *args, "--out", str(out)], capsys)
        assert code == 2 and message in text and "Traceback" not in text, (message, text)
        assert not out.exists() and not out.with_suffix(".qml").exists()


def test_series_from_scenes_needs_several_dates(dates):
    with pytest.raises(ConfigError, match="--series needs the scenes of several dates"):
        series_from_scenes(dates[:1])


def test_onnx_export_of_a_series_model_matches_torch(series_unet, tmp_path):
    from geoseg.export import export_onnx

    result = export_onnx(series_unet, tmp_path / "series.onnx")
    assert result.input_shape == ["batch", 72, 64, 64] and result.metadata["geoseg_time_steps"] == 3
    assert len(result.metadata["standardization_mean"]) == 72
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-4
    assert any("3 dates" in n for n in result.notes)


def test_catalog_series_dataset_predicts_the_same_map_as_series_scenes(dates, series_unet, tmp_path, capsys):
    from tests.tiling.test_tiler_series import _catalog

    catalog = _catalog(tmp_path / "catalog.yaml", dates, None)  # one location "site", time_steps 3
    base = ["predict", "-m", str(series_unet), "--device", "cpu", "--no-progress", "--window", "64"]
    code, text = _run([*base, "--catalog", str(catalog), "--dataset", "season", "--out", str(tmp_path / "maps")],
                      capsys)
    assert code == 0, text
    code, text = _run([*base, "--series", *[a for p in dates for a in ("-s", str(p))], "--out",
                       str(tmp_path / "flag.tif")], capsys)
    assert code == 0, text
    with rasterio.open(tmp_path / "maps" / "site.tif") as a, rasterio.open(tmp_path / "flag.tif") as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))
        assert a.transform == b.transform and a.crs == b.crs
