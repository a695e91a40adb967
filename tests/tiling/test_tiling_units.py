"""Window layout, spatial split and the statistics merge, without reading any scene."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from geoseg.errors import ConfigError
from geoseg.tiling.layout import axis_slots, cube_windows
from geoseg.tiling.split import assign_splits
from geoseg.tiling.stats import ColumnMoments, Moments, cube_moments


def _covered(slots, size: int, cube: int) -> np.ndarray:
    hit = np.zeros(size, int)
    for s in slots:
        hit[s.offset : s.offset + min(cube, s.extent)] += 1
    return hit


@pytest.mark.parametrize("size", [64, 100, 255, 256, 480, 481, 1000, 10980])
@pytest.mark.parametrize(("cube", "overlap", "k"), [(64, 16, 4), (256, 32, 4), (256, 0, 3), (128, 96, 2)])
def test_axis_slots_cover_edges_and_blocks_do_not_overlap(size: int, cube: int, overlap: int, k: int) -> None:
    stride = cube - overlap
    slots = axis_slots(size, cube, stride, k)
    assert (_covered(slots, size, cube) > 0).all()  # every pixel, edges included
    assert all(s.offset + s.extent <= size for s in slots)
    offsets = [s.offset for s in slots]
    assert offsets == sorted(set(offsets))
    for a, b in itertools.combinations(slots, 2):  # cubes of different blocks share no pixel
        if a.block != b.block:
            assert a.offset + cube <= b.offset or b.offset + cube <= a.offset
    regular = [s for s in slots if s.shift == 0]
    for a, b in itertools.pairwise(regular):
        assert b.offset - a.offset in (stride, cube)  # inside a block / across blocks
    if size <= cube:
        assert slots == [type(slots[0])(0, size, 0, 0)]


def test_axis_slots_numbers() -> None:
    # 480 px, 64 px cubes, stride 48, blocks of 4 cubes span 208 px.
    slots = axis_slots(480, 64, 48, 4)
    assert [s.offset for s in slots] == [0, 48, 96, 144, 208, 256, 304, 352, 416]
    assert [s.block for s in slots] == [0, 0, 0, 0, 1, 1, 1, 1, 2]
    # 500 px: the block starting at 416 fits one cube (416..480); the next one is shifted to 436.
    slots = axis_slots(500, 64, 48, 4)
    assert [(s.offset, s.block, s.shift) for s in slots][-2:] == [(416, 2, 0), (436, 2, 28)]
    # a block start beyond the edge: the shifted cube joins the previous block
    slots = axis_slots(230, 64, 48, 4)
    assert [(s.offset, s.block, s.shift) for s in slots] == [(0, 0, 0), (48, 0, 0), (96, 0, 0), (144, 0, 0),
                                                               (166, 0, 42)]
    # shorter than a cube: one padded slot
    assert [(s.offset, s.extent) for s in axis_slots(50, 64, 48, 4)] == [(0, 50)]


def test_cube_windows_record_edges_and_padding() -> None:
    wins = list(cube_windows(3, 50, 500, 64, 16, 4))
    assert all(w.scene == 3 and w.height == 50 and w.padded for w in wins)
    assert wins[-1].col_off == 436 and wins[-1].shift_col == 28 and wins[-1].width == 64
    with pytest.raises(ConfigError, match="overlap"):
        list(cube_windows(0, 100, 100, 64, 64, 4))


def test_assign_splits_reproducible_and_val_not_empty() -> None:
    blocks = [(0, r, c) for r in range(5) for c in range(4)]
    a = assign_splits(blocks, (0.7, 0.15, 0.15), seed=1)
    assert a == assign_splits(list(reversed(blocks)), (0.7, 0.15, 0.15), seed=1)
    counts = {s: sum(1 for v in a.values() if v == s) for s in ("train", "val", "test")}
    assert counts == {"train": 14, "val": 3, "test": 3}
    assert a != assign_splits(blocks, (0.7, 0.15, 0.15), seed=2)
    two = assign_splits([(0, 0, 0), (0, 0, 1)], (0.9, 0.1, 0.0), seed=0)
    assert sorted(two.values()) == ["train", "val"]
    assert set(assign_splits([(0, 0, 0)], (0.7, 0.15, 0.15), seed=0).values()) == {"train"}
    with pytest.raises(ConfigError, match="summing to 1"):
        assign_splits(blocks, (0.5, 0.2, 0.2), seed=0)


def test_moments_merge_matches_numpy_and_is_stable() -> None:
    rng = np.random.default_rng(0)
    # large offset, tiny spread: the naive sum-of-squares formula loses every digit here
    cubes = [(1e4 + rng.normal(0, 1e-3, size=(3, 20, 20))).astype(np.float32) for _ in range(6)]
    masks = [rng.random((20, 20)) > 0.3 for _ in range(6)]
    for cube, mask in zip(cubes, masks, strict=True):
        cube[:, ~mask] = 0.0  # the masked-cube convention cube_moments relies on
    total = Moments.empty(3)
    for cube, mask in zip(cubes, masks, strict=True):
        total = total.merge(cube_moments(cube, mask))
    values = np.concatenate([c[:, m].astype(np.float64) for c, m in zip(cubes, masks, strict=True)], axis=1)
    assert total.count == values.shape[1]
    np.testing.assert_allclose(total.mean, values.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(total.std, values.std(axis=1), rtol=1e-6)
    assert Moments.empty(3).merge(Moments.empty(3)).count == 0
    empty = cube_moments(cubes[0], np.zeros((20, 20), bool))
    assert empty.count == 0 and total.merge(empty).count == total.count


@pytest.mark.parametrize("numba_kernel", [True, False])
def test_column_moments_give_each_cubes_moments(numba_kernel: bool, monkeypatch) -> None:
    import geoseg.tiling.stats as stats

    if not numba_kernel:
        monkeypatch.setattr(stats, "_column_moments_kernel", lambda: None)
    rng = np.random.default_rng(1)
    features = (rng.normal(0.3, 0.05, size=(5, 40, 100)) + np.arange(5)[:, None, None] * 100).astype(np.float32)
    valid = rng.random((40, 100)) > 0.25
    valid[:, 90:] = False
    features[:, ~valid] = 0.0
    sums = ColumnMoments.of(features, valid)
    for cols in (slice(0, 40), slice(30, 70), slice(60, 100), slice(92, 100)):
        got = sums.moments(cols)
        ref = cube_moments(np.ascontiguousarray(features[:, :, cols]), valid[:, cols])
        assert got.count == ref.count
        np.testing.assert_allclose(got.mean, ref.mean, rtol=1e-12)
        np.testing.assert_allclose(got.m2, ref.m2, rtol=1e-6, atol=1e-9)
    assert sums.moments(slice(92, 100)).count == 0
