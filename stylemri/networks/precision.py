"""Mixed precision the way NVlabs' StyleGAN2-ADA does it: reduced precision only in the top resolutions.

The blocks of G's synthesis and of D at the top `fp16_res` resolutions run under autocast in bf16 or
fp16; the low resolutions, the mapping networks, the 4x4 head and every regularization pass
(`force_fp32=True`: R1, path length, WGAN-GP penalty) stay in float32, where the small, well-conditioned
numbers of the gradients-of-gradients need the precision. Nothing is marked by default, so models built
for inference run in float32; the trainer marks its networks once with `set_precision`.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn


def fp16_resolution(resolution: int, fp16_res: int) -> int:
    """Lowest resolution that runs in reduced precision (NVlabs: max(2^(log2 R + 1 - n), 8))."""
    return max(2 ** (int(math.log2(resolution)) + 1 - fp16_res), 8)


def set_precision(net: nn.Module, dtype: torch.dtype | None, fp16_res: int = 4) -> list[int]:
    """Mark the blocks of a generator (its synthesis) or discriminator: those at the top `fp16_res`
    resolutions run in `dtype` (None or fp16_res 0: everything float32). Returns the reduced resolutions."""
    target = getattr(net, "synthesis", net)
    lowest = fp16_resolution(target.resolution, fp16_res)
    reduced = []
    for res in target.block_resolutions:
        block = getattr(target, f"b{res}", None)
        if block is None:
            continue
        use = dtype is not None and fp16_res > 0 and res >= lowest
        block.amp_dtype = dtype if use else None
        if use:
            reduced.append(res)
    return sorted(reduced)


def block_precision(block: nn.Module, x: torch.Tensor | None, device_type: str,
                    force_fp32: bool = False) -> tuple[contextlib.AbstractContextManager, torch.Tensor | None]:
    """(context to run `block` in, its input): autocast for a reduced block, a float32 input otherwise."""
    dtype = getattr(block, "amp_dtype", None)
    if dtype is None or force_fp32:
        return contextlib.nullcontext(), (None if x is None else x.float())
    return torch.autocast(device_type, dtype=dtype), x


__all__ = ["block_precision", "fp16_resolution", "set_precision"]
