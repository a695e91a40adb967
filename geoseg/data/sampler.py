"""A resumable, rank-aware sampler: the order of epoch ``e`` depends only on ``(seed, e)``.

Unlike ``RandomSampler`` (global RNG) the shuffle does not depend on what else consumed
random numbers, so a run resumed from an epoch checkpoint sees exactly the batches of an
uninterrupted run. Lightning calls :meth:`ShardSampler.set_epoch` before every epoch.
With several processes each rank takes every ``world_size``-th index of the shuffled order;
training shards are truncated to equal length (every rank runs the same number of steps),
evaluation shards are not padded (every cube is scored exactly once).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["ShardSampler"]


class ShardSampler(Sampler[int]):
    """Indices ``0..n-1`` for one rank.

    Args:
        n: Dataset length.
        shuffle: Shuffle with a generator seeded by ``(seed, epoch)``.
        seed: Base seed.
        rank: This process's rank.
        world_size: Number of processes.
        equal_shards: Truncate shards to ``n // world_size`` (training).
    """

    def __init__(self, n: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1,
                 equal_shards: bool = False) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size, self.equal_shards = rank, world_size, equal_shards
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds the next shuffle (as ``DistributedSampler.set_epoch``)."""
        self.epoch = int(epoch)

    def indices(self) -> list[int]:
        """This rank's indices for the current epoch."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        shard = order[self.rank::self.world_size]
        if self.equal_shards:
            shard = shard[: self.n // self.world_size]
        return shard

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def __len__(self) -> int:
        if self.equal_shards:
            return self.n // self.world_size
        return len(range(self.rank, self.n, self.world_size))
