"""The row-band stitcher: exact weighted blending, rows written once in order, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.windows import Window

from geoseg.errors import CRSMismatchError
from geoseg.io.grid import Grid
from geoseg.predict import window_layout
from geoseg.stitch import Stitcher
from geoseg.stitch.output import classes_from_probs
from tests.predict._predict_helpers import CollectSink

TRANSFORM = (10.0, 0.0, 500000.0, 0.0, -10.0, 5800000.0)


def _grid_wkt(epsg: int = 32633) -> Grid:
    return Grid(CRS.from_epsg(epsg).to_wkt(), TRANSFORM, 173, 250)


def test_blending_matches_dense_weighted_mean():
    grid = _grid_wkt()
    rng = np.random.default_rng(0)
    k, h, w = 3, grid.height, grid.width
    layout = window_layout(h, w, 64, 24)
    dense_scores = np.zeros((k, h, w))
    dense_weight = np.zeros((h, w))
    sink = CollectSink()
    stitcher = Stitcher(grid, k, layout.window_height, sink)
    for win in layout:
        p = rng.random((k, 64, 64)).astype(np.float32)
        wts = layout.weights(win)
        r, c = int(win.row_off), int(win.col_off)
        dense_scores[:, r : r + 64, c : c + 64] += p * wts
        dense_weight[r : r + 64, c : c + 64] += wts
        stitcher.add(grid, win, p, wts, np.ones((64, 64), bool))
    stitcher.close()
    rows = [b.row_off for b in sink.blocks]
    heights = [b.height for b in sink.blocks]
    assert rows == list(np.cumsum([0, *heights[:-1]]))  # contiguous, in order, each row once
    assert sum(heights) == h
    np.testing.assert_allclose(sink.probs(), dense_scores / dense_weight, rtol=1e-5, atol=1e-6)
    # the accumulators span one window height × scene width, never the scene
    assert stitcher.nbytes == (k * 4 + 4 + 1) * 64 * w


def test_rows_are_emitted_as_soon_as_complete():
    grid = _grid_wkt()
    sink = CollectSink()
    stitcher = Stitcher(grid, 2, 64, sink)
    ones = np.ones((2, 64, 64), np.float32)
    stitcher.add(grid, Window(0, 0, 64, 64), ones, np.ones((64, 64), np.float32), np.ones((64, 64), bool))
    assert sink.blocks == []
    stitcher.add(grid, Window(0, 48, 64, 64), ones, np.ones((64, 64), np.float32), np.ones((64, 64), bool))
    assert [(b.row_off, b.height) for b in sink.blocks] == [(0, 48)]
    assert stitcher.rows_done == 48


def test_refuses_other_grids_and_out_of_order_windows():
    grid = _grid_wkt()
    stitcher = Stitcher(grid, 2, 64, CollectSink())
    p, wts, v = np.ones((2, 64, 64), np.float32), np.ones((64, 64), np.float32), np.ones((64, 64), bool)
    shifted = Grid(grid.crs_wkt, (10.0, 0.0, 500010.0, 0.0, -10.0, 5800000.0), grid.width, grid.height)
    with pytest.raises(CRSMismatchError, match="cannot be merged"):
        stitcher.add(shifted, Window(0, 0, 64, 64), p, wts, v)
    with pytest.raises(CRSMismatchError):
        stitcher.add(_grid_wkt(32632), Window(0, 0, 64, 64), p, wts, v)
    stitcher.add(grid, Window(0, 100, 64, 64), p, wts, v)
    with pytest.raises(ValueError, match="row order"):
        stitcher.add(grid, Window(0, 50, 64, 64), p, wts, v)
    with pytest.raises(ValueError, match="outside"):
        stitcher.add(grid, Window(150, 100, 64, 64), p, wts, v)


def test_classes_from_probs_maps_indices_to_codes():
    probs = np.array([[[0.1, 0.6]], [[0.7, 0.3]], [[0.2, 0.1]]], np.float32)  # (3, 1, 2)
    valid = np.array([[True, False]])
    codes, best = classes_from_probs(probs, valid, np.array([3, 7, 12], np.uint8))
    assert codes.tolist() == [[7, 0]]
    np.testing.assert_allclose(best, [[0.7, 0.6]])
