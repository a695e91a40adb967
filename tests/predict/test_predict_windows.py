"""Window layout and blending weights: full coverage, edge windows shifted in, no zero weight."""

from __future__ import annotations

import numpy as np
import pytest

from geoseg.errors import ConfigError
from geoseg.predict.windows import axis_starts, taper_1d, window_layout, window_weights


@pytest.mark.parametrize(("size", "window", "stride", "expected"), [
    (256, 64, 64, [0, 64, 128, 192]),
    (250, 64, 64, [0, 64, 128, 186]),  # last window shifted inside, not dropped or padded
    (250, 64, 48, [0, 48, 96, 144, 186]),
    (40, 64, 48, [0]),  # scene smaller than the window: one window of the scene's size
    (64, 64, 1, [0]),
])
def test_axis_starts(size, window, stride, expected):
    assert axis_starts(size, window, stride) == expected


@pytest.mark.parametrize(("h", "w", "window", "overlap"), [(250, 173, 64, 16), (128, 128, 64, 0), (40, 300, 64, 32)])
def test_layout_covers_every_pixel_with_positive_weight(h, w, window, overlap):
    layout = window_layout(h, w, window, overlap)
    cover = np.zeros((h, w), dtype=np.int32)
    total = np.zeros((h, w), dtype=np.float64)
    for win in layout:
        r, c = int(win.row_off), int(win.col_off)
        assert (win.height, win.width) == (min(window, h), min(window, w))
        assert r + win.height <= h and c + win.width <= w
        cover[r : r + win.height, c : c + win.width] += 1
        total[r : r + win.height, c : c + win.width] += layout.weights(win)
    assert cover.min() >= 1
    assert total.min() > 0  # edges and corners included
    # scene borders are never tapered: the corner pixel gets the full weight of its window
    assert total[0, 0] == pytest.approx(1.0) and total[-1, -1] >= 1.0
    assert len(layout) == len(layout.rows) * len(layout.cols)


def test_taper_shape_and_floor():
    t = taper_1d(64, 16, False, False, 0.01)
    assert t.dtype == np.float32 and t.shape == (64,)
    assert np.all(t[16:48] == 1.0)
    np.testing.assert_allclose(t[:16], t[::-1][:16])  # symmetric
    assert np.all(np.diff(t[:16]) > 0) and t.min() >= 0.01
    # complementary ramps: two windows overlapping by the ramp length sum to ~1 (no bump or dip)
    np.testing.assert_allclose(t[48:] + t[:16], 1.0, atol=0.02)
    flat = taper_1d(64, 16, True, True, 0.01)
    assert np.all(flat == 1.0)
    assert np.all(taper_1d(10, 0, False, False, 0.5) == 1.0)


def test_window_weights_are_cached_read_only():
    a = window_weights(32, 48, 8, (True, False, False, True))
    b = window_weights(32, 48, 8, (True, False, False, True))
    assert a is b and not a.flags.writeable
    assert a.shape == (32, 48) and a[0, -1] == 1.0 and a[-1, 0] < 0.1


@pytest.mark.parametrize(("window", "overlap"), [(0, 0), (64, 64), (64, -1)])
def test_bad_layouts_raise(window, overlap):
    with pytest.raises(ConfigError):
        window_layout(100, 100, window, overlap)
