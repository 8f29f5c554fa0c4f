"""`InfiniteLoader`: an endless, deterministic, resumable and rank-sharded stream of training batches.

The global stream is a concatenation of epochs; epoch e is a permutation of the dataset drawn from
(seed, e), with one flip bit per position drawn alongside it. Global batch t covers stream positions
[start + t*B*W, start + (t+1)*B*W); rank r takes its own B of them. Everything is a function of
(seed, position), so a loader created with `start=old.position` continues the identical stream.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from stylemri.data.dataset import MRIDataset, to_float


class StreamOrder:
    """Position in the global stream -> (dataset index, flip bit), derived from (seed, position) only."""

    def __init__(self, n: int, seed: int, memo: int = 4):
        if n <= 0:
            raise ValueError("the dataset is empty")
        if seed < 0:
            raise ValueError(f"seed {seed}: expected a non-negative integer")
        self.n, self.seed, self._memo_size = n, seed, memo
        self._memo: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def epoch(self, e: int) -> tuple[np.ndarray, np.ndarray]:
        if e in self._memo:
            self._memo.move_to_end(e)
            return self._memo[e]
        rng = np.random.Generator(np.random.PCG64([self.seed, e]))
        entry = (rng.permutation(self.n), rng.random(self.n) < 0.5)
        self._memo[e] = entry
        if len(self._memo) > self._memo_size:
            self._memo.popitem(last=False)
        return entry

    def take(self, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Dataset indices and flip bits of stream positions start .. start+count-1."""
        pos = np.arange(start, start + count, dtype=np.int64)
        epochs, offsets = np.divmod(pos, self.n)
        idx = np.empty(count, np.int64)
        flips = np.empty(count, bool)
        for e in np.unique(epochs):
            sel = epochs == e
            perm, bits = self.epoch(int(e))
            idx[sel] = perm[offsets[sel]]
            flips[sel] = bits[offsets[sel]]
        return idx, flips


class _RankBatches(Dataset):
    """Batch k of this rank as one item, so a DataLoader's workers can build whole batches in parallel."""

    def __init__(self, ds: MRIDataset, order: StreamOrder, batch_size: int, world_size: int, rank: int,
                 start: int, resolution: int, xflip: bool, conditions: np.ndarray | None = None):
        self.ds, self.order, self.conditions = ds, order, conditions
        self.batch_size, self.world_size, self.rank, self.start = batch_size, world_size, rank, start
        self.resolution, self.xflip = resolution, xflip

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        first = self.start + k * self.batch_size * self.world_size + self.rank * self.batch_size
        idx, flips = self.order.take(first, self.batch_size)
        pixels, labels = self.ds.batch_uint8(idx, self.resolution, flips if self.xflip else None)
        if self.conditions is not None:  # covariate runs: each image's condition vector instead of its label
            return pixels, torch.from_numpy(self.conditions[idx])
        return pixels, labels


class _Count(Sampler[int]):
    def __init__(self) -> None:
        pass

    def __iter__(self) -> Iterator[int]:
        return itertools.count()


class InfiniteLoader:
    """Endless (images (B, C, r, r) float32 in [-1, 1], labels int64 (B,)) on `device`; B is per rank.

    `conditions` (N, D) float32, one row per sample (a covariate run's class one-hot + covariate vector):
    yielded in place of the labels, so each real image travels with its own condition."""

    def __init__(self, ds: MRIDataset, batch_size: int, *, seed: int = 0, start: int = 0,
                 resolution: int | None = None, xflip: bool | None = None, rank: int = 0, world_size: int = 1,
                 num_workers: int = 0, device: str | torch.device = "cpu", conditions: np.ndarray | None = None):
        if batch_size <= 0:
            raise ValueError(f"batch_size {batch_size}: expected a positive integer")
        if world_size <= 0 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} of world_size {world_size}: expected 0 <= rank < world_size")
        if start < 0:
            raise ValueError(f"start {start}: expected a non-negative stream position")
        if num_workers < 0:
            raise ValueError(f"num_workers {num_workers}: expected >= 0")
        self.dataset = ds
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.resolution = ds.resolution if resolution is None else int(resolution)
        if self.resolution not in ds.resolutions:
            raise ValueError(f"resolution {self.resolution}: expected one of {ds.resolutions}")
        self.xflip = ds.config.xflip if xflip is None else bool(xflip)
        self.num_workers = num_workers
        self.device = torch.device(device)
        self.start = start
        self.position = start  # samples of the global stream consumed so far (all ranks together)
        if conditions is not None and len(conditions) != len(ds):
            raise ValueError(f"conditions: expected one row per sample ({len(ds)}), got {len(conditions)}")
        self._batches = _RankBatches(ds, StreamOrder(len(ds), seed), batch_size, world_size, rank, start,
                                     self.resolution, self.xflip, conditions)
        self._step = 0
        self._iter: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def __iter__(self) -> InfiniteLoader:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.num_workers == 0:
            pixels, labels = self._batches[self._step]
        else:
            if self._iter is None:
                self._iter = iter(self._make_loader())
            pixels, labels = next(self._iter)
        self._step += 1
        self.position += self.global_batch
        if self.device.type != "cpu":
            non_blocking = pixels.is_pinned()
            pixels = pixels.to(self.device, non_blocking=non_blocking)
            labels = labels.to(self.device, non_blocking=non_blocking)
        return to_float(pixels), labels  # uint8 travels, the float conversion runs on the target device

    def _make_loader(self) -> DataLoader:
        return DataLoader(self._batches, batch_size=None, sampler=_Count(), num_workers=self.num_workers,
                          pin_memory=self.device.type == "cuda", prefetch_factor=4, persistent_workers=False)

    def close(self) -> None:
        """Stop worker processes now (they also stop when the loader is garbage-collected)."""
        self._iter = None

    def __enter__(self) -> InfiniteLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"InfiniteLoader(batch_size={self.batch_size}, seed={self.seed}, position={self.position}, "
                f"resolution={self.resolution}, xflip={self.xflip}, rank={self.rank}/{self.world_size}, "
                f"num_workers={self.num_workers}, device={self.device})")
