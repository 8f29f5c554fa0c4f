"""Data-parallel training across processes started by `torchrun` (one process per GPU, or CPU + gloo).

Each rank holds full copies of G, D and G_ema, trains on its share of the global batch and averages
gradients with one flat all-reduce per phase before the optimizer step, as StyleGAN3's training loop
does: unlike wrapping the modules in DistributedDataParallel this works with the double backward of R1
and path-length regularization and with the unused blocks of progressive growing. Rank 0 alone writes.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist

from stylemri.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(device_preference: str = "auto") -> DistInfo:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK; start the process group when there is more than one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    device = resolve_device(device_preference, local_rank)
    if world_size > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                    timeout=datetime.timedelta(minutes=30))
    return DistInfo(rank, world_size, local_rank, device)


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        t = t.clone()
        dist.all_reduce(t)
    return t


def all_reduce_mean(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    return all_reduce_sum(t, info) / info.world_size if info.enabled else t


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True when any rank says True (e.g. one of them received SIGTERM)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def broadcast_string(text: str, info: DistInfo, max_bytes: int = 4096) -> str:
    """Rank 0's string on every rank (e.g. the run directory it created), as bytes in a tensor: no pickle."""
    if not info.enabled:
        return text
    buf = torch.zeros(max_bytes + 4, dtype=torch.uint8, device=info.device)
    if info.is_main:
        data = text.encode()[:max_bytes]
        buf[:4] = torch.tensor(list(len(data).to_bytes(4, "little")), dtype=torch.uint8)
        buf[4 : 4 + len(data)] = torch.tensor(list(data), dtype=torch.uint8)
    dist.broadcast(buf, src=0)
    raw = bytes(buf.cpu().tolist())
    n = int.from_bytes(raw[:4], "little")
    return raw[4 : 4 + n].decode()


def broadcast_modules(modules: Iterable[torch.nn.Module], info: DistInfo) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if not info.enabled:
        return
    for module in modules:
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def all_finite(x: torch.Tensor) -> bool:
    """Whether every element of `x` is finite, from its sum in the common case.

    A sum is non-finite whenever an element is (nan propagates, inf - inf is nan), and reading the
    gradients once is ~25x cheaper on a CPU than the elementwise isfinite; only a sum that overflowed
    from finite values needs the elementwise check, which then decides."""
    return bool(torch.isfinite(x.sum())) or all_finite_reference(x)


def all_finite_reference(x: torch.Tensor) -> bool:
    """The elementwise twin of `all_finite`."""
    return bool(torch.isfinite(x).all())


def reduce_gradients(params: Iterable[torch.nn.Parameter], info: DistInfo,
                     extra: torch.Tensor | None = None) -> tuple[bool, torch.Tensor | None]:
    """Average gradients (and `extra` values, e.g. losses) over ranks in one flat all-reduce.

    Returns (all finite, averaged extra): one synchronisation decides, identically on every rank,
    whether the optimizer step may run.
    """
    params = [p for p in params if p.grad is not None and p.numel() > 0]
    parts = [p.grad.reshape(-1) for p in params]
    if extra is not None:
        parts.append(extra.reshape(-1).to(parts[0].dtype if parts else extra.dtype))
    if not parts:
        return True, extra
    flat = torch.cat(parts)
    if info.enabled:
        dist.all_reduce(flat)
        flat /= info.world_size
        sizes = [p.numel() for p in params]
        for p, g in zip(params, flat.split(sizes + [flat.numel() - sum(sizes)])):  # the last piece: `extra`
            p.grad = g.view_as(p)
    finite = all_finite(flat)
    reduced = flat[flat.numel() - extra.numel():].view_as(extra) if extra is not None else None
    return finite, reduced
