"""Training and evaluation on a multi-date store: the input form picked from the store, one epoch per mode.

The store is three 240 px demo scenes (seeds 1-3: clouds in different places) renamed to three
acquisition dates of one location and tiled as a series (64 px cubes, T = 3), as the tiler's
series tests build it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from geoseg.bundle import load_bundle
from geoseg.bundle.series import check_series_input
from geoseg.data.augment import random_crop, random_dihedral, resize_nearest
from geoseg.demo import generate_demo_scene
from geoseg.errors import ConfigError
from geoseg.tiling import CubeStore, tile_dataset
from geoseg.train import evaluate, train
from geoseg.train.series import series_model_options
from tests.predict._predict_helpers import unet_bundle
from tests.tiling.test_tiler_series import DATES, PARAMS, _catalog, _redated
from tests.train._helpers import tiny_config

SERIES_PARAMS = {**PARAMS, "split_block": 1}  # 64 px cubes, overlap 16: train, val and test cubes
DEEPLAB3D = {"model_options": {"aspp_channels": 16, "decoder_channels": 16, "low_level_channels": 8}}


@pytest.fixture(scope="module")
def season(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A series store (T=3) and a single-date store of the first date."""
    root = tmp_path_factory.mktemp("train-season")
    demos = [generate_demo_scene(root / f"demo{seed}", size=240, seed=seed, progress=False) for seed in (1, 2, 3)]
    scenes = [_redated(d.scene, date, root / "dates") for d, date in zip(demos, DATES, strict=True)]
    series = _catalog(root / "series.yaml", scenes, demos[0].labels)
    tile_dataset(series, "season", root / "series_store", workers=1, progress=False, **SERIES_PARAMS)
    single = _catalog(root / "single.yaml", scenes[:1], demos[0].labels, time_steps=None)
    tile_dataset(single, "season", root / "single_store", workers=1, progress=False, **SERIES_PARAMS)
    return {"root": root, "series": root / "series_store", "single": root / "single_store"}


@pytest.mark.parametrize(("arch", "extra", "mode"), [
    ("unet", {}, "attention"),
    pytest.param("unet", {"model_options": {"temporal": "channels", "decoder_channels": [16, 16, 8, 8, 8]}},
                 "channels", marks=pytest.mark.slow),  # the default tier trains the attention form end to end
    pytest.param("deeplabv3plus3d", DEEPLAB3D, "3d", marks=pytest.mark.slow),
])
def test_train_and_evaluate_on_a_series_store(season, tmp_path, arch, extra, mode):
    store = CubeStore.open(season["series"])
    assert store.time_steps == 3 and min((store.index["split"] == s).sum() for s in ("train", "val", "test")) >= 1
    out = tmp_path / "model"
    result = train(tiny_config(season["series"], out, arch, epochs=1, batch_size=4, **extra))
    assert result.epochs == 1 and np.isfinite(result.history[-1]["train_loss"])

    bundle = load_bundle(out / "best")
    options = bundle.config.model.options
    assert options["temporal"] == mode and bundle.config.time_steps == 3
    assert options["time_steps"] == (3 if mode == "channels" else None)  # attention and 3d take any T
    assert bundle.config.predict_window_costs and 64 in bundle.config.predict_window_costs  # measured on (N, T, C, h, w)
    assert bundle.model.takes_series
    logits = bundle.model.eval()(torch.zeros(1, 3, 24, 64, 64))
    assert logits.shape == (1, 6, 64, 64)

    ev = evaluate(out / "best", season["series"], tmp_path / "eval", save_examples=2)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["num_cubes"] == int((store.index["split"] == "test").sum()) and 0.0 <= ev.scores.miou <= 1.0
    assert ev.examples and all(p.is_file() and p.stat().st_size > 1000 for p in ev.examples)


def test_augmentation_is_identical_across_the_dates_of_a_cube():
    """Each date is a multiple of date 1: after every transform it still is (same flip, turn, crop, resize)."""
    gen = torch.Generator().manual_seed(3)
    base = torch.rand(6, 1, 2, 16, 16)
    x = torch.cat([base * (t + 1) for t in range(3)], dim=1)  # (N, T=3, C=2, H, W)
    y = (base[:, 0, 0] * 5).to(torch.uint8)
    for xs, ys in (random_dihedral(x, y, generator=gen), random_crop(x, y, 9, generator=gen),
                   resize_nearest(x, y, 24)):
        assert xs.shape[:3] == (6, 3, 2) and xs.shape[-2:] == ys.shape[-2:]
        for t in range(3):
            torch.testing.assert_close(xs[:, t], xs[:, 0] * (t + 1))
        assert torch.equal((xs[:, 0, 0] * 5).to(torch.uint8), ys)  # labels moved with the image


def test_input_form_is_picked_from_the_store():
    assert series_model_options("unet", {}, 3)["temporal"] == "attention"
    assert series_model_options("unet", {"temporal": "channels"}, 3)["time_steps"] == 3
    assert series_model_options("deeplabv3plus3d", {}, 3)["temporal"] == "3d"
    assert series_model_options("unet", {"decoder_channels": [8]}, None) == {"decoder_channels": [8]}
    with pytest.raises(ConfigError, match="needs a time-series store"):
        series_model_options("deeplabv3plus3d", {}, None)
    with pytest.raises(ConfigError, match="needs a time-series store"):
        series_model_options("unet", {"temporal": "attention"}, None)
    with pytest.raises(ConfigError, match="time_steps=4 but the CubeStore has 3"):
        series_model_options("unet", {"temporal": "channels", "time_steps": 4}, 3)
    with pytest.raises(ConfigError, match="needs exactly 3 dates"):
        check_series_input({"name": "unet", "options": {"temporal": "channels", "time_steps": 3}}, 2, None)


def test_series_model_on_a_single_date_store_is_refused_before_anything_is_written(season, tmp_path):
    out = tmp_path / "model"
    with pytest.raises(ConfigError, match="needs a time-series store") as err:
        train(tiny_config(season["single"], out, "deeplabv3plus3d", epochs=1, **DEEPLAB3D))
    assert "\n" not in str(err.value) and not (out / "best").exists()


def test_single_date_bundle_on_a_series_store_is_refused(season, tmp_path):
    bundle = unet_bundle(tmp_path / "bundle")
    with pytest.raises(ConfigError, match="takes one date but the CubeStore is a time series of 3 dates"):
        evaluate(bundle, season["series"], tmp_path / "eval")
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_cli_train_on_a_series_store_exits_2_for_a_contradicting_option(season, tmp_path, capsys):
    from geoseg.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(season["series"]), "--out", str(tmp_path / "m"), "--encoder", "test_resnet",
              "--epochs", "1", "--model-option", "temporal=channels", "--model-option", "time_steps=2"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "time_steps=2 but the CubeStore has 3 dates" in err
    assert "Traceback" not in err and not Path(tmp_path / "m" / "best").exists()
