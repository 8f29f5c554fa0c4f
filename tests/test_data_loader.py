"""Batches, multi-resolution access and the deterministic, resumable, rank-sharded InfiniteLoader."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from conftest import write_png8

from stylemri.config import DataConfig
from stylemri.data import InfiniteLoader, StreamOrder, area_downsample, load_dataset


@pytest.fixture
def ds(tmp_path):
    for i in range(10):
        write_png8(tmp_path / "src" / ("AD" if i < 6 else "NC") / f"{i}.png", 16, 12 + i % 3, seed=i)
    return load_dataset(DataConfig(source=str(tmp_path / "src"), resolution=16, xflip=True))  # the flip stream too


def _take(loader, steps):
    return [next(loader) for _ in range(steps)]


def test_getitem_and_batch_agree(ds):
    idx = [3, 0, 9, 3]
    images, labels = ds.batch(idx)
    assert images.dtype == torch.float32 and images.shape == (4, 1, 16, 16) and labels.dtype == torch.int64
    assert images.min() >= -1 and images.max() <= 1
    for k, i in enumerate(idx):
        x, y = ds[i]
        assert torch.equal(images[k], x) and labels[k].item() == y == ds.labels[i]
    assert ds.batch(torch.tensor(idx))[0].equal(images)
    assert ds.batch([])[0].shape == (0, 1, 16, 16)
    with pytest.raises(IndexError):
        ds[10]
    with pytest.raises(IndexError):
        ds.batch([10])


def test_xflip_mask_flips_horizontally_only(ds):
    plain, _ = ds.batch([1, 2])
    flipped, _ = ds.batch([1, 2], xflip=[True, False])
    assert torch.equal(flipped[0], plain[0].flip(-1)) and torch.equal(flipped[1], plain[1])
    assert not torch.equal(plain[0], plain[0].flip(-1))


@pytest.mark.parametrize("r", [8, 4])
def test_stored_levels_match_reference_area_downsampling(ds, r):
    idx, mask = np.arange(10), np.arange(10) % 3 == 0
    fast, labels = ds.batch(idx, resolution=r, xflip=mask)
    ref, ref_labels = ds.batch_reference(idx, resolution=r, xflip=mask)
    assert fast.shape == (10, 1, r, r) and torch.equal(labels, ref_labels)
    # levels are area averages of the float image, the reference averages the uint8 image: <= 1 LSB apart
    assert (fast - ref).abs().max() <= 1 / 127.5 + 1e-6
    assert ds.resolutions == (4, 8, 16)
    with pytest.raises(ValueError):
        ds.batch(idx, resolution=32)
    with pytest.raises(ValueError):
        area_downsample(fast, 3)


def test_loader_is_deterministic_and_covers_each_epoch(ds):
    a = _take(InfiniteLoader(ds, 4, seed=7), 5)
    b = _take(InfiniteLoader(ds, 4, seed=7), 5)
    c = _take(InfiniteLoader(ds, 4, seed=8), 5)
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(a, c))
    order = StreamOrder(len(ds), seed=7)
    idx, flips = order.take(0, 20)
    assert sorted(idx[:10].tolist()) == list(range(10)) and sorted(idx[10:].tolist()) == list(range(10))
    expected, _ = ds.batch(idx[:4], xflip=flips[:4])
    assert torch.equal(a[0][0], expected)


def test_resume_continues_the_identical_stream(ds):
    full = _take(InfiniteLoader(ds, 3, seed=1), 7)
    first = InfiniteLoader(ds, 3, seed=1)
    _take(first, 4)
    assert first.position == 12
    resumed = _take(InfiniteLoader(ds, 3, seed=1, start=first.position), 3)
    for x, y in zip(full[4:], resumed):
        assert torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])
    odd = next(InfiniteLoader(ds, 3, seed=1, start=5))  # any position, not only batch boundaries
    idx, flips = StreamOrder(len(ds), 1).take(5, 3)
    assert torch.equal(odd[0], ds.batch(idx, xflip=flips)[0])


def test_ranks_take_disjoint_shares_of_the_global_batch(ds):
    single = _take(InfiniteLoader(ds, 4, seed=3), 3)
    r0 = InfiniteLoader(ds, 2, seed=3, rank=0, world_size=2)
    r1 = InfiniteLoader(ds, 2, seed=3, rank=1, world_size=2)
    for step in range(3):
        (x0, y0), (x1, y1) = next(r0), next(r1)
        assert torch.equal(torch.cat([x0, x1]), single[step][0]) and torch.equal(torch.cat([y0, y1]), single[step][1])
    assert r0.position == r1.position == 12
    with pytest.raises(ValueError):
        InfiniteLoader(ds, 2, rank=2, world_size=2)


def test_flip_default_follows_config_and_resolution(tmp_path, ds):
    no_flip = load_dataset(DataConfig(source=ds.config.source, resolution=16))  # the default: no flips
    assert InfiniteLoader(no_flip, 2).xflip is False and InfiniteLoader(ds, 2).xflip is True
    idx, _ = StreamOrder(len(ds), 0).take(0, 10)
    images, _ = next(InfiniteLoader(no_flip, 10, seed=0))
    assert torch.equal(images, ds.batch(idx)[0])
    flipped, _ = next(InfiniteLoader(ds, 10, seed=0))
    assert not torch.equal(flipped, images)
    low, _ = next(InfiniteLoader(ds, 10, seed=0, resolution=4))
    assert low.shape == (10, 1, 4, 4)


def test_workers_produce_the_same_stream(ds):
    plain = _take(InfiniteLoader(ds, 4, seed=2, start=6), 4)
    with InfiniteLoader(ds, 4, seed=2, start=6, num_workers=2) as loader:
        parallel = _take(loader, 4)
        assert loader.position == 6 + 16
    for x, y in zip(plain, parallel):
        assert torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])


def test_dataset_works_with_torch_dataloader_and_pickles(ds):
    images, labels = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert images.shape == (4, 1, 16, 16) and labels.tolist() == ds.labels[:4].tolist()
    clone = pickle.loads(pickle.dumps(ds))
    assert len(pickle.dumps(ds)) < 20_000  # memmaps are reopened, not copied
    assert torch.equal(clone[5][0], ds[5][0])
