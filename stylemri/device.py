"""The one place a `--device` value becomes a torch device (every command defaults to "auto")."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

from stylemri.errors import UserError

DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N (default: auto)"


def resolve_device(name: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' -> cuda:<local_rank>; CUDA asked but absent -> UserError."""
    if isinstance(name, torch.device):
        return name
    text = str(name).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__}); "
                            f"use cpu or auto")
        if text == "cuda":
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        try:
            index = int(text.split(":", 1)[1])
        except ValueError:
            raise UserError(f"--device {name}: expected auto, cpu, cuda or cuda:N") from None
        if not 0 <= index < torch.cuda.device_count():
            raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    raise UserError(f"--device {name}: expected auto, cpu, cuda or cuda:N")


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str  # why this many: printed at the start of a run


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


def busy_elsewhere(samples: int = 5, interval_s: float = 0.05) -> float:
    """Runnable tasks other than this process right now: the median of a few readings of /proc/loadavg's
    running count (the 1-minute load average lags a minute behind); elsewhere the 1-minute load average."""
    try:
        readings = []
        for i in range(samples):
            with open("/proc/loadavg") as f:
                readings.append(int(f.read().split()[3].split("/")[0]) - 1)
            if i + 1 < samples:
                time.sleep(interval_s)
        return float(sorted(readings)[len(readings) // 2])
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def choose_threads(requested: int | None = None, *, cores: int | None = None,
                   load: float | None = None) -> ThreadChoice:
    """How many CPU threads torch uses: `requested` when given; else every usable core on a quiet machine,
    and 1 when other processes already keep the cores busy (runnable tasks elsewhere >= cores). Why: on a
    saturated machine each step's threads wait for each other at every parallel region while other
    processes hold the cores (benchmarks/bench_threads.py measures both; docs/training.md has the table)."""
    cores = usable_cores() if cores is None else cores
    if requested is not None:
        return ThreadChoice(int(requested), "--threads")
    load = busy_elsewhere() if load is None else load
    if cores > 1 and load >= cores:
        return ThreadChoice(1, f"load {load:.1f} on {cores} cores: 1 thread (--threads to override)")
    return ThreadChoice(cores, f"{cores} usable cores")


def apply_threads(requested: int | None = None) -> ThreadChoice:
    """`choose_threads`, then set torch's intra-op thread count to it (CPU training and inference)."""
    choice = choose_threads(requested)
    torch.set_num_threads(choice.threads)
    return choice


__all__ = ["DEVICE_HELP", "ThreadChoice", "apply_threads", "busy_elsewhere", "choose_threads", "resolve_device", "usable_cores"]
