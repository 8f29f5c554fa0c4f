"""The style-based generator: a mapping network (z + condition -> w) in front of a synthesis network (w ->
image). Both architectures use it: `arch="stylegan2"` with `stylegan2.SynthesisNetwork` (or the 3-D
`stylegan2_3d.SynthesisNetwork3d`), `arch="stylegan"` with the progressive `stylegan.SynthesisNetwork`;
`networks.build_generator` picks the synthesis network from the config."""

from __future__ import annotations

import math

import torch
from torch import nn

from stylemri.networks.mapping import MappingNetwork


class Generator(nn.Module):
    """z (+ label) -> mapping -> ws -> synthesis -> image in [-1, 1] scale; any synthesis with `num_ws`."""

    def __init__(self, synthesis: nn.Module, z_dim: int, c_dim: int, w_dim: int, map_layers: int,
                 map_lr_mul: float, cov_dim: int = 0) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.cov_dim = z_dim, c_dim, w_dim, cov_dim
        self.img_channels = synthesis.img_channels
        self.resolution = synthesis.resolution
        self.synthesis = synthesis
        self.num_ws = synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, num_layers=map_layers, lr_mul=map_lr_mul,
                                      cov_dim=cov_dim)

    @property
    def w_avg(self) -> torch.Tensor:
        """The tracked average w (a buffer of the mapping network; saved in the state dict)."""
        return self.mapping.w_avg

    @property
    def num_stages(self) -> int:
        """Doublings from 4x4 to full resolution; `stage` runs from 0 to this."""
        return int(math.log2(self.resolution)) - 2

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, psi: float = 1.0, cutoff: int | None = None,
                noise_mode: str = "random", stage: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        ws = self.mapping(z, c, psi=psi, cutoff=cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, stage=stage, alpha=alpha)


__all__ = ["Generator"]
