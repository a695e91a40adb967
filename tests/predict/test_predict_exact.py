"""Stitching is exact: with a 1×1-convolution model, windows + blending == one pass over the scene."""

from __future__ import annotations

import numpy as np
import pytest

from geoseg.io import open_scene
from geoseg.predict import stream_predictions
from tests.predict._predict_helpers import (
    CollectSink,
    full_forward,
    pointwise_bundle,
    write_multiband_scene,
)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("exact")
    return {
        (192, 128): open_scene(write_multiband_scene(root / "mult.tif", 192, 128, seed=1)),  # multiple of 64
        (201, 157): open_scene(write_multiband_scene(root / "odd.tif", 201, 157, seed=2)),  # not a multiple
    }


@pytest.mark.parametrize("shape", [(192, 128), (201, 157)])
@pytest.mark.parametrize("overlap", [0, 20])
def test_stitched_equals_one_forward_pass(scenes, shape, overlap):
    scene = scenes[shape]
    bundle = pointwise_bundle(window=64)
    sink = CollectSink()
    stats = stream_predictions(scene, bundle, sink, window=64, overlap=overlap, batch_size=3, device="cpu",
                               progress=False)
    ref, valid = full_forward(scene, bundle)
    probs = sink.probs()
    assert probs.shape == ref.shape == (6, *shape)
    np.testing.assert_array_equal(sink.valid(), valid)
    assert 0 < (~valid).sum() < valid.size  # the nodata box is there
    diff = np.abs(probs - ref)[:, valid]
    assert diff.max() < 1e-5
    np.testing.assert_array_equal(probs.argmax(0)[valid], ref.argmax(0)[valid])
    assert np.all(probs[:, ~valid] == 0)
    assert len(np.unique(ref.argmax(0)[valid])) >= 3  # a decisive model: several classes present
    assert stats.windows_run == len(stats.layout)


def test_tta_keeps_a_pointwise_model_exact(scenes):
    """Flips/rotations do not change a per-pixel model: TTA output equals the plain pass."""
    scene = scenes[(201, 157)]
    bundle = pointwise_bundle(window=64)
    sink = CollectSink()
    stream_predictions(scene, bundle, sink, window=64, overlap=16, batch_size=4, device="cpu", tta=True,
                       progress=False)
    ref, valid = full_forward(scene, bundle)
    assert np.abs(sink.probs() - ref)[:, valid].max() < 1e-5


def test_window_larger_than_scene(scenes):
    scene = scenes[(201, 157)]
    bundle = pointwise_bundle(window=512)
    sink = CollectSink()
    stats = stream_predictions(scene, bundle, sink, device="cpu", progress=False)
    assert len(stats.layout) == 1 and (stats.layout.window_height, stats.layout.window_width) == (201, 157)
    ref, valid = full_forward(scene, bundle)
    assert np.abs(sink.probs() - ref)[:, valid].max() < 1e-5


def test_each_run_of_windows_is_read_once(scenes, monkeypatch):
    from geoseg.predict import predictor

    calls = []

    def counting(scene, window, recipe):
        calls.append(window)
        return read_features(scene, window, recipe)

    read_features = predictor.read_features
    monkeypatch.setattr(predictor, "read_features", counting)
    scene = scenes[(201, 157)]
    stats = stream_predictions(scene, pointwise_bundle(window=64), CollectSink(), window=64, overlap=20,
                               batch_size=3, device="cpu", progress=False)
    runs = stats.layout.runs(predictor.RUN)
    assert len(calls) == len(runs) < len(stats.layout)
    assert [(w.col_off, w.row_off) for w in calls] == [(r[0].col_off, r[0].row_off) for r in runs]
