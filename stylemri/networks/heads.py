"""The discriminator head both architectures share after their convolution stacks: the 4x4 epilogue
(minibatch standard deviation, conv, two FC layers, projection conditioning) and the label embedding."""

from __future__ import annotations

import math

import torch
from torch import nn

from stylemri.networks.layers import EqualConv, EqualLinear
from stylemri.networks.mapping import check_labels


def mbstd_group_size(batch: int, group_size: int | None) -> int:
    """Largest divisor of the batch not above `group_size`, so odd batch sizes never crash."""
    g = batch if group_size is None else max(1, min(group_size, batch))
    while batch % g:
        g -= 1
    return g


class MinibatchStd(nn.Module):
    """Append the standard deviation over groups of samples as extra feature maps (ProGAN; lets D see
    the diversity of a batch). `num_channels` features each average over C / num_channels channels."""

    def __init__(self, group_size: int | None = 4, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, *spatial = x.shape  # (N, C, H, W) images or (N, C, D, H, W) volumes
        g = mbstd_group_size(n, self.group_size)
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, *spatial)
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()
        y = y.mean(dim=list(range(2, y.ndim))).reshape(-1, f, *[1] * len(spatial)).repeat(g, 1, *spatial)
        return torch.cat([x, y.to(x.dtype)], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"


class DiscriminatorEpilogue(nn.Module):
    """4x4 head (4x4x4 with `dims=3`): minibatch stddev, 3x3 conv, FC, output FC; with labels a projection onto cmap."""

    def __init__(self, in_channels: int, cmap_dim: int, resolution: int = 4, mbstd_group: int | None = 4,
                 mbstd_features: int = 1, conv_clamp: float | None = None, dims: int = 2) -> None:
        super().__init__()
        if mbstd_features > 0 and in_channels % mbstd_features:
            raise ValueError(f"mbstd_features {mbstd_features}: must divide the {in_channels} head channels")
        self.in_channels, self.cmap_dim, self.resolution = in_channels, cmap_dim, resolution
        self.mbstd = MinibatchStd(mbstd_group, mbstd_features) if mbstd_features > 0 else None
        self.conv = EqualConv(in_channels + mbstd_features, in_channels, 3, activation="lrelu", conv_clamp=conv_clamp,
                              dims=dims)
        self.fc = EqualLinear(in_channels * resolution**dims, in_channels, activation="lrelu")  # 4x4 or 4x4x4
        self.out = EqualLinear(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, cmap: torch.Tensor | None) -> torch.Tensor:
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if self.cmap_dim > 0:
            # Projection discriminator (Miyato & Koyama 2018): score = <features, embed(label)>.
            x = (x * cmap.to(x.dtype)).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x.float()


def labels_for(d: nn.Module, c: torch.Tensor | None, batch: int) -> torch.Tensor | None:
    """Label (and covariate) embedding for a discriminator, validating shapes; None when unconditional."""
    c = check_labels(c, d.c_dim + getattr(d, "cov_dim", 0), batch, "discriminator")
    return None if c is None else d.mapping(None, c)


__all__ = ["DiscriminatorEpilogue", "MinibatchStd", "labels_for"]
