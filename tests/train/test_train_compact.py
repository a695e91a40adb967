"""Training and evaluation on a compact CubeStore (``geoseg tile --store compact``) read lazily: the
batch transform computes the 24 channels from the DN, so the run equals the one on the default store."""

from __future__ import annotations

import pytest

from geoseg.train import evaluate, train
from tests.conftest import DEMO_STORE_PARAMS
from tests.train._helpers import tiny_config


def test_train_and_evaluate_on_a_compact_store_equal_the_default_store(demo_cubes, tmp_path) -> None:
    import torch

    from geoseg.bundle import load_bundle
    from geoseg.tiling import CubeStore, tile_dataset

    compact = tmp_path / "compact"
    tile_dataset(demo_cubes.parent / "catalog.yaml", "demo", compact, workers=1, progress=False, store="compact",
                 **DEMO_STORE_PARAMS)
    assert CubeStore.open(compact).native_layout is not None
    runs = {}
    for name, cubes in (("features", demo_cubes), ("compact", compact)):
        cfg = tiny_config(cubes, tmp_path / f"model_{name}", "unet", epochs=1, in_memory="no", limit_batches=2)
        result = train(cfg)
        ev = evaluate(result.best, cubes, tmp_path / f"eval_{name}", split="val")
        runs[name] = (result, ev, load_bundle(result.best))
    (a, ev_a, bundle_a), (b, ev_b, bundle_b) = runs["features"], runs["compact"]
    assert bundle_a.config.normalization == bundle_b.config.normalization  # the same stats.json
    assert a.metrics["miou"] == pytest.approx(b.metrics["miou"], abs=0) and ev_a.metrics["oa"] == ev_b.metrics["oa"]
    for key, value in bundle_a.model.state_dict().items():  # the same batches: the same weights
        assert torch.equal(value, bundle_b.model.state_dict()[key]), key
