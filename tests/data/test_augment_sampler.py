"""Batch augmentation moves image and label together; the sampler is resumable and sharded."""

from __future__ import annotations

import pytest
import torch

from geoseg.data import ShardSampler
from geoseg.data.augment import center_crop, dihedral, random_crop, random_dihedral, resize_nearest


def _batch(n: int = 16, h: int = 12, w: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose pixel values encode their position; labels derived from the image."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, h, w, generator=g)
    x[:, :, :3, :5] = 0  # an invalid (all-zero) corner
    y = (x[:, 0] * 10).long().clamp(max=9)
    y[x.abs().sum(1) == 0] = 255
    return x, y.to(torch.uint8)


def _label_of(x: torch.Tensor) -> torch.Tensor:
    y = (x[:, 0] * 10).long().clamp(max=9)
    y[x.abs().sum(1) == 0] = 255
    return y.to(torch.uint8)


def test_dihedral_group_is_complete_and_invertible():
    x = torch.arange(12.0).view(1, 3, 4)[:, :, :3]  # (1, 3, 3)
    images = {tuple(dihedral(x, c).flatten().tolist()) for c in range(8)}
    assert len(images) == 8  # 8 distinct symmetries of the square
    assert torch.equal(dihedral(dihedral(x, 1), 3), x)  # a quarter turn undone by three more


def test_random_dihedral_keeps_image_and_label_aligned():
    x, y = _batch()
    torch.manual_seed(3)
    xa, ya = random_dihedral(x, y)
    assert not torch.equal(xa, x)  # something moved
    assert torch.equal(ya, _label_of(xa))  # label still sits on its pixel
    assert (xa.abs().sum(1) == 0).sum() == (x.abs().sum(1) == 0).sum()  # invalid pixels stay exactly 0
    # each sample is a symmetry of its own original
    for i in range(x.shape[0]):
        assert any(torch.equal(xa[i], dihedral(x[i], c)) for c in range(8))


def test_random_dihedral_on_non_square_batches_keeps_shape():
    x, y = _batch(h=8, w=12)
    torch.manual_seed(0)
    xa, ya = random_dihedral(x, y)
    assert xa.shape == x.shape and torch.equal(ya, _label_of(xa))


def test_random_crop_resize_and_center_crop():
    x, y = _batch()
    torch.manual_seed(1)
    xc, yc = random_crop(x, y, 5)
    assert xc.shape == (16, 3, 5, 5) and torch.equal(yc, _label_of(xc))
    offsets = set()
    for i in range(16):  # every crop is a window of its own sample
        hits = [(a, b) for a in range(8) for b in range(8) if torch.equal(x[i, :, a:a + 5, b:b + 5], xc[i])]
        assert hits
        offsets.add(hits[0])
    assert len(offsets) > 1  # offsets differ between samples
    xr, yr = resize_nearest(x, y, 6)
    # nearest-exact picks the pixel under each output centre: 1, 3, 5, ...
    assert torch.equal(xr, x[:, :, 1::2, 1::2]) and torch.equal(yr, y[:, 1::2, 1::2])
    xm, ym = center_crop(x, y, 4)
    assert torch.equal(xm, x[:, :, 4:8, 4:8]) and torch.equal(ym, y[:, 4:8, 4:8])
    with pytest.raises(ValueError, match="larger"):
        random_crop(x, y, 13)


def test_sampler_depends_only_on_seed_and_epoch():
    a, b = ShardSampler(20, shuffle=True, seed=5), ShardSampler(20, shuffle=True, seed=5)
    torch.manual_seed(123)
    a.set_epoch(3)
    first = list(a)
    torch.manual_seed(999)  # global RNG state is irrelevant
    b.set_epoch(3)
    assert list(b) == first and sorted(first) == list(range(20))
    b.set_epoch(4)
    assert list(b) != first
    assert list(ShardSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


def test_sampler_shards_ranks():
    train = [ShardSampler(11, shuffle=True, seed=0, rank=r, world_size=3, equal_shards=True) for r in range(3)]
    shards = [list(s) for s in train]
    assert [len(s) for s in shards] == [3, 3, 3] == [len(s) for s in train]
    assert len(set(sum(shards, []))) == 9  # disjoint
    evals = [list(ShardSampler(11, shuffle=False, rank=r, world_size=3)) for r in range(3)]
    assert sorted(sum(evals, [])) == list(range(11))  # every cube exactly once, no padding
    with pytest.raises(ValueError):
        ShardSampler(4, shuffle=False, rank=2, world_size=2)
