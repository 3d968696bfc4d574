"""The resumable sampler: reproducible, sharded without overlap, startable mid-epoch."""

from __future__ import annotations

import torch
from engine_helpers import CountingDataset

from beaver.engine.data import (
    ResumableSampler,
    batches_per_epoch,
    make_loader,
    set_position,
    to_device,
)


def test_same_order_for_same_seed_and_epoch() -> None:
    a = ResumableSampler(50, shuffle=True, seed=3, rank=0, world_size=1)
    b = ResumableSampler(50, shuffle=True, seed=3, rank=0, world_size=1)
    assert list(a) == list(b) and sorted(a) == list(range(50))
    b.set_epoch(1)
    assert list(a) != list(b)  # a new permutation each epoch
    c = ResumableSampler(50, shuffle=False, seed=3, rank=0, world_size=1)
    assert list(c) == list(range(50))


def test_ranks_split_the_epoch_evenly() -> None:
    shards = [
        list(ResumableSampler(10, shuffle=True, seed=0, rank=r, world_size=3)) for r in range(3)
    ]
    assert [len(s) for s in shards] == [4, 4, 4]  # 10 padded to 12 by wrap-around
    flat = [i for s in shards for i in s]
    assert set(flat) == set(range(10)) and len(flat) == 12


def test_skip_resumes_mid_epoch() -> None:
    full = ResumableSampler(30, shuffle=True, seed=1, rank=0, world_size=1)
    full.set_epoch(2)
    part = ResumableSampler(30, shuffle=True, seed=1, rank=0, world_size=1)
    part.set_epoch(2, skip=12)
    assert list(part) == list(full)[12:] and len(part) == 18


def test_loader_position_and_independence_from_global_rng() -> None:
    ds = CountingDataset(20)
    loader = make_loader(ds, 4, shuffle=True, seed=5)
    assert batches_per_epoch(loader) == 5
    set_position(loader, 1, 0)
    torch.manual_seed(0)
    epoch1 = [b["input_ids"] for b in loader]
    set_position(loader, 1, 3)
    torch.manual_seed(123)  # a different global RNG must not change the data order
    tail = [b["input_ids"] for b in loader]
    assert len(tail) == 2 and all(torch.equal(x, y) for x, y in zip(epoch1[3:], tail, strict=True))
    state = torch.get_rng_state()
    iter(loader)
    assert torch.equal(state, torch.get_rng_state())  # creating an iterator draws no global seed


def test_to_device_nested() -> None:
    batch = {"a": torch.ones(2), "b": [torch.zeros(1), "text"], "c": 3}
    moved = to_device(batch, torch.device("cpu"))
    assert moved["b"][1] == "text" and moved["c"] == 3 and torch.equal(moved["a"], batch["a"])
