"""A seeded, sharded, resumable sampler and the data loaders built on it.

Every rank draws the same permutation (seeded by `seed` and the epoch, never by the global RNG)
and takes every world-size-th index of it, so the order is reproducible and a resumed run can
start in the middle of an epoch without reading the batches it skips.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from beaver.engine import dist


class ResumableSampler(Sampler[int]):
    """Indices of this rank for one epoch, optionally starting after `skip` of them.

    The epoch's permutation is padded by wrap-around to a multiple of the world size, so every
    rank yields the same number of indices (ZeRO-3 needs every rank in every forward).
    """

    def __init__(
        self,
        num_samples: int,
        *,
        shuffle: bool,
        seed: int,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if num_samples <= 0:
            raise ValueError("ResumableSampler needs at least one sample")
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.rank = dist.rank() if rank is None else rank
        self.world = dist.world_size() if world_size is None else world_size
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Start `epoch` after its first `skip` indices (of this rank)."""
        self.epoch, self.skip = epoch, skip

    def per_rank(self) -> int:
        """Indices of one rank in a whole epoch."""
        return math.ceil(self.num_samples / self.world)

    def _epoch_indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        total = self.per_rank() * self.world
        order += order[: total - len(order)]  # pad by wrap-around
        return order[self.rank :: self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self._epoch_indices()[self.skip :])

    def __len__(self) -> int:
        return self.per_rank() - self.skip


def make_loader(
    dataset: Any,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> DataLoader:
    """A DataLoader over `dataset` with a `ResumableSampler` (uses `dataset.collate` if present).

    It gets its own generator: a loader's iterator otherwise draws a seed from the global torch
    RNG, which would shift dropout between a straight and a resumed run.
    """
    collate = collate_fn or getattr(dataset, "collate", None)
    sampler = ResumableSampler(len(dataset), shuffle=shuffle, seed=seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=0,
        generator=torch.Generator(),
    )


def batches_per_epoch(loader: DataLoader) -> int:
    """Micro-batches of one rank in a whole epoch (the last one may be smaller)."""
    sampler = loader.sampler
    assert isinstance(sampler, ResumableSampler), "use make_loader()"
    assert loader.batch_size is not None
    return math.ceil(sampler.per_rank() / loader.batch_size)


def set_position(loader: DataLoader, epoch: int, batches_done: int) -> None:
    """Make the loader's next iterator start at micro-batch `batches_done` of `epoch`."""
    sampler = loader.sampler
    assert isinstance(sampler, ResumableSampler), "use make_loader()"
    assert loader.batch_size is not None
    sampler.set_epoch(epoch, batches_done * loader.batch_size)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move the tensors of a (nested) batch to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
