"""Training on an (N, C+1, H, W) array, as `geoseg cubes export --with-labels` writes it (seed 000's
form): the bundle is the one a CubeStore gives, evaluation finds the same validation cubes, and
`geoseg predict` classifies a scene with it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from geoseg.bundle import load_bundle
from geoseg.data.arrays import ArrayStore, sidecar_path
from geoseg.tiling import CubeStore
from geoseg.tiling.export import export_npy
from geoseg.train import evaluate, train
from tests.train._helpers import tiny_config


def test_train_on_an_exported_array_then_evaluate_and_predict(demo_cubes, tmp_path) -> None:
    store = CubeStore.open(demo_cubes)
    cubes = export_npy(store, tmp_path / "cubes.npy", with_labels=True)
    sidecar_path(cubes).write_text(yaml.safe_dump({"classes": [c.model_dump() for c in store.classes]}))
    arrays = ArrayStore.open(cubes)

    cfg = tiny_config(cubes, tmp_path / "model", "unet", epochs=1,
                      model_options={"decoder_channels": [32, 16, 16, 8, 8], "pointrend": True,
                                     "point_train_points": 64, "point_subdivision_points": 256, "point_fc_dim": 16})
    result = train(cfg)
    assert result.best is not None and result.epochs == 1

    bundle = load_bundle(result.best)
    c = bundle.config
    assert c.recipe.name == "s2_24" and c.channel_names == store.channel_names and c.mask_channels == 11
    assert c.classes == store.classes and c.window == store.cube_size
    assert c.normalization.mean == pytest.approx(arrays.stats["by_split"]["train"]["mean"])
    assert c.model.options["pointrend"] is True
    assert json.loads((result.best / "config.json").read_text())["extra"]["cubes"] == str(cubes.resolve())
    history = json.loads((tmp_path / "model" / "history.json").read_text())
    assert history[-1]["train_loss"] > 0

    # the array's split rule lives with the array: evaluation scores the same validation cubes
    ev = evaluate(result.best, cubes, tmp_path / "eval", split="val")
    assert ev.metrics["num_cubes"] == len(arrays.ids("val"))
    for key in ("miou", "oa"):
        assert ev.metrics[key] == pytest.approx(result.metrics[key], abs=1e-6), key

    # and the bundle classifies a Sentinel-2 scene (its recipe computed from the bands)
    from geoseg.predict import predict_scene

    scene = store.manifest["sources"][0]["path"]
    predict_scene(scene, result.best, tmp_path / "lc.tif", progress=False)
    import rasterio

    with rasterio.open(tmp_path / "lc.tif") as ds:
        codes = np.unique(ds.read(1))
    assert set(codes.tolist()) <= {0} | {cls.code for cls in store.classes} and codes.max() > 0
