"""The one place a `--device` value becomes a torch device (every command defaults to "auto")."""

from __future__ import annotations

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


__all__ = ["DEVICE_HELP", "resolve_device"]
