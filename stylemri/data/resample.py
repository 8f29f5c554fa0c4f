"""Multi-resolution access: the plain-PyTorch area downsampling that the stored pyramid levels reproduce."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def area_downsample(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """(B, C, R, R) -> (B, C, r, r) by averaging blocks (volumes (B, C, R, R, R) too); R / r a power of two."""
    size = images.shape[-1]
    if resolution == size:
        return images
    if resolution > size or size % resolution or (size // resolution) & (size // resolution - 1):
        raise ValueError(f"resolution {resolution}: expected {size} divided by a power of two")
    pool = F.avg_pool3d if images.ndim == 5 else F.avg_pool2d
    return pool(images.float(), kernel_size=size // resolution)
