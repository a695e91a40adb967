"""Seams: a real CNN disagrees with itself near window borders; blending removes the border pattern.

A small UNet (timm ``test_resnet``) is fitted for a fixed 30 Adam steps (seed 0) on seeded crops of
the demo scene's labels, so that its map has structure (85 % pixel accuracy). The module runs torch
on one intra-op thread with deterministic kernels, and the model is built once before seeding (the
first build in a process draws extra random numbers): the float reductions happen in one fixed
order, so the weights and every figure below are the same bit for bit whatever the machine's load
or the tests that ran before (the fit is checked to be reproducible). Reference: one forward pass
over the whole 240 × 240 scene (no window borders at all). Window 64; "border" = within 3 px of an
internal window edge. Figures (printed by the tests; see docs/predict.md):

* two windows overlapping by 32 px disagree on 8.98 % of the pixels within 4 px of a window edge,
  on 0.20 % in the middle of their overlap;
* overlap 0: the stitched classes differ from the reference on 7.83 % of border pixels vs 1.25 %
  elsewhere (ratio 6.3), mean |Δp| 0.126 vs 0.008 (ratio 15.4): a visible grid of seams;
* blended, overlap 16: classes 0.63 % vs 1.33 % (ratio 0.47), |Δp| 0.0026 vs 0.0022 (ratio 1.19);
  overlap 32: classes 0.53 % vs 0.37 % (ratio 1.44), |Δp| 0.0018 vs 0.0012 (ratio 1.46): the
  border error is 50-70× smaller and no longer stands out. Seeds 1-5 give the same picture
  (overlap 0: |Δp| ratio 13-20; blended: 1.1-1.8) and pass the same blending assertions.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from geoseg.bundle import ModelBundle, ModelRunner, Normalization, normalize
from geoseg.features import read_features
from geoseg.io import open_scene
from geoseg.predict import stream_predictions, window_layout
from tests.predict._predict_helpers import DEMO_CLASSES, CollectSink, bundle_config, full_forward

WINDOW = 64


def _fit_unet(scene, labels: np.ndarray, steps: int = 30) -> ModelBundle:
    from geoseg.models import create_model

    feats, valid = read_features(scene, Window(0, 0, scene.grid.width, scene.grid.height))
    cfg = bundle_config(DEMO_CLASSES, window=WINDOW)
    cfg.normalization = Normalization(mean=feats[:, valid].mean(1).tolist(), std=(feats[:, valid].std(1) + 1e-6).tolist())
    def build() -> torch.nn.Module:
        return create_model("unet", in_channels=24, num_classes=6, encoder="test_resnet", encoder_depth=3,
                            decoder_channels=[16, 16, 16])

    # The first model built in a process draws more random numbers (one-time lazy set-up), so
    # seeded weights would depend on which tests ran before: build once, then seed and build.
    build()
    torch.manual_seed(0)
    model = build()
    x = normalize(torch.from_numpy(feats)[None], cfg.normalization, cfg.mask_channels)[0]
    y = torch.from_numpy(labels.astype(np.int64) - 1)
    y[~torch.from_numpy(valid)] = -1
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    rng = np.random.default_rng(0)
    h, w = labels.shape
    for _ in range(steps):
        rs, cs = rng.integers(0, h - WINDOW, 8), rng.integers(0, w - WINDOW, 8)
        xb = torch.stack([x[:, r : r + WINDOW, c : c + WINDOW] for r, c in zip(rs, cs, strict=True)])
        yb = torch.stack([y[r : r + WINDOW, c : c + WINDOW] for r, c in zip(rs, cs, strict=True)])
        loss = torch.nn.functional.cross_entropy(model(xb), yb, ignore_index=-1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return ModelBundle(model.eval(), cfg)


def _border_band(layout, d: int) -> np.ndarray:
    """Pixels within ``d`` px of an internal window edge of ``layout``."""
    band = np.zeros((layout.height, layout.width), bool)
    for r in layout.rows:
        for edge in (r, r + layout.window_height):
            if 0 < edge < layout.height:
                band[max(edge - d, 0) : edge + d] = True
    for c in layout.cols:
        for edge in (c, c + layout.window_width):
            if 0 < edge < layout.width:
                band[:, max(edge - d, 0) : edge + d] = True
    return band


@pytest.fixture(scope="module")
def deterministic_torch():
    """One intra-op thread + deterministic kernels: a fixed summation order, hence fixed figures."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(deterministic)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup(demo_small, deterministic_torch):
    scene = open_scene(demo_small.scene)
    with rasterio.open(demo_small.labels) as ds:
        labels = ds.read(1)
    bundle = _fit_unet(scene, labels)
    again = _fit_unet(scene, labels).model.state_dict()
    for name, value in bundle.model.state_dict().items():  # the fit itself is reproducible, bit for bit
        assert torch.equal(value, again[name]), name
    ref, valid = full_forward(scene, bundle)
    return scene, bundle, ref.argmax(0), valid


def test_overlapping_windows_disagree_at_their_edges(setup):
    scene, bundle, _, valid = setup
    runner = ModelRunner(bundle, device="cpu")
    recipe = bundle.config.recipe
    overlap = 32
    edge, middle = [], []
    for row in (0, 96, 176):
        for col in (0, 64, 128):
            a, b = Window(col, row, WINDOW, WINDOW), Window(col + overlap, row, WINDOW, WINDOW)
            (fa, va), (fb, _) = read_features(scene, a, recipe), read_features(scene, b, recipe)
            ca, cb = runner(np.stack([fa, fb])).argmax(1)
            # the overlap: columns [overlap, WINDOW) of a == columns [0, WINDOW - overlap) of b
            disagree = (ca[:, overlap:] != cb[:, : WINDOW - overlap]) & va[:, overlap:]
            ok = va[:, overlap:]
            edge_cols = np.r_[0:4, overlap - 4 : overlap]  # b's left edge, a's right edge
            edge.append((disagree[:, edge_cols].sum(), ok[:, edge_cols].sum()))
            mid = slice(overlap // 2 - 4, overlap // 2 + 4)
            middle.append((disagree[:, mid].sum(), ok[:, mid].sum()))
    edge_rate = sum(d for d, _ in edge) / sum(n for _, n in edge)
    middle_rate = sum(d for d, _ in middle) / sum(n for _, n in middle)
    print(f"\noverlapping windows disagree: {edge_rate:.2%} within 4 px of an edge, {middle_rate:.2%} mid-overlap")
    assert edge_rate > 0.01  # a real CNN is unsure near its borders ...
    assert edge_rate > 2 * middle_rate  # ... much more than away from them


def test_blending_removes_the_border_pattern(setup):
    scene, bundle, ref, valid = setup
    ref_probs, _ = full_forward(scene, bundle)
    rates = {}
    for overlap in (0, 16, 32):
        sink = CollectSink()
        stream_predictions(scene, bundle, sink, window=WINDOW, overlap=overlap, batch_size=8, device="cpu",
                           progress=False)
        probs = sink.probs()
        band = _border_band(window_layout(*ref.shape, WINDOW, overlap), 3)
        wrong = probs.argmax(0) != ref
        delta = np.abs(probs - ref_probs).sum(0)  # L1 distance of the class probabilities
        border, interior = wrong[band & valid].mean(), wrong[~band & valid].mean()
        p_border, p_interior = delta[band & valid].mean(), delta[~band & valid].mean()
        rates[overlap] = (border, interior, p_border, p_interior)
        print(f"\noverlap {overlap:2d}: classes differ from the single pass on {border:.2%} of border pixels, "
              f"{interior:.2%} elsewhere (ratio {border / max(interior, 1e-9):.2f}); mean |dp| "
              f"{p_border:.4f} vs {p_interior:.4f} (ratio {p_border / p_interior:.2f})")
    hard_border, hard_interior, hard_p_border, hard_p_interior = rates[0]
    assert hard_border > 3 * hard_interior  # no overlap: a visible grid of seams ...
    assert hard_p_border > 8 * hard_p_interior  # ... in the probabilities too
    for overlap in (16, 32):
        border, interior, p_border, p_interior = rates[overlap]
        assert border < hard_border / 5
        assert border <= 1.5 * interior + 1e-3  # blended: borders look like anywhere else
        assert p_border < hard_p_border / 20
        assert p_border < 2 * p_interior
