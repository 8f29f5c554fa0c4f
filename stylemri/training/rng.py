"""Random draws for one global batch, sliced per rank, so N processes see the same numbers as one.

Every training step derives its own generator from (seed, step, purpose); draws are made for the whole
global batch and each rank keeps its rows. Latents, labels, style-mixing cut-offs and augmentation
parameters are therefore independent of the process count and of where a run was resumed.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts: int | str) -> int:
    """A stable 63-bit seed from a tuple (no Python hash randomisation)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class BatchRandom:
    """Draws shaped (global_batch, ...) from one generator and returns rows [offset, offset + count);
    with `round_of=(r, R)` only every R-th of those rows from r (gradient-accumulation round r of R)."""

    def __init__(self, seed: int, total: int, offset: int = 0, count: int | None = None,
                 device: torch.device | str = "cpu", round_of: tuple[int, int] = (0, 1)) -> None:
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.scalar_generator = torch.Generator()  # scalars on CPU: no device round trip
        self.scalar_generator.manual_seed(seed)
        self.total = total
        self.offset = offset
        self.count = total - offset if count is None else count
        self.round, self.rounds = round_of

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        return x[self.offset + self.round : self.offset + self.count : self.rounds]

    def rand(self, *shape: int) -> torch.Tensor:
        return self._rows(torch.rand((self.total, *shape), generator=self.generator, device=self.device))

    def randn(self, *shape: int) -> torch.Tensor:
        return self._rows(torch.randn((self.total, *shape), generator=self.generator, device=self.device))

    def randint(self, low: int, high: int, *shape: int) -> torch.Tensor:
        return self._rows(torch.randint(low, high, (self.total, *shape), generator=self.generator, device=self.device))

    def scalar_rand(self) -> float:
        """One number shared by every row (and rank): e.g. whether this step mixes styles."""
        return float(torch.rand((), generator=self.scalar_generator))

    def scalar_randint(self, low: int, high: int) -> int:
        return int(torch.randint(low, high, (), generator=self.scalar_generator))
