"""A progressive (StyleGAN 2019) network frozen at one stage and fade-in alpha.

Wrapped, it keeps the plain generator / discriminator contract (`G.synthesis(ws, noise_mode=...)`,
`G.resolution` = what it actually produces), so every tool can use a run stopped mid-growth, and
training's sample grids can use the same generation path at the phase they are in.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class StagedGenerator(nn.Module):
    """A progressive generator at `stage` (output 4 * 2**stage px) with the newest block faded in by `alpha`."""

    def __init__(self, G: nn.Module, stage: int, alpha: float = 1.0) -> None:
        super().__init__()
        self.G = G
        self.stage, self.alpha = int(stage), float(alpha)
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = G.z_dim, G.c_dim, G.w_dim, G.num_ws
        self.cov_dim = getattr(G, "cov_dim", 0)
        self.img_channels = G.img_channels
        self.resolution = 4 * 2**self.stage

    @property
    def mapping(self) -> nn.Module:
        return self.G.mapping

    @property
    def w_avg(self) -> torch.Tensor:
        return self.G.w_avg

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "random", **_: Any) -> torch.Tensor:
        return self.G.synthesis(ws, noise_mode=noise_mode, stage=self.stage, alpha=self.alpha)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, psi: float = 1.0, cutoff: int | None = None,
                noise_mode: str = "random") -> torch.Tensor:
        return self.synthesis(self.mapping(z, c, psi=psi, cutoff=cutoff), noise_mode=noise_mode)


class StagedDiscriminator(nn.Module):
    """The discriminator of a progressive run at the stage (and alpha) its generator reached."""

    def __init__(self, D: nn.Module, stage: int, alpha: float = 1.0) -> None:
        super().__init__()
        self.D = D
        self.stage, self.alpha = int(stage), float(alpha)
        self.c_dim = D.c_dim
        self.cov_dim = getattr(D, "cov_dim", 0)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None, **_: Any) -> torch.Tensor:
        return self.D(img, c, stage=self.stage, alpha=self.alpha)


def at_stage(G: nn.Module, stage: int | None, alpha: float = 1.0) -> nn.Module:
    """G itself when `stage` is None (fully grown, or StyleGAN2), else G frozen at that stage and alpha."""
    return G if stage is None else StagedGenerator(G, stage, alpha)


__all__ = ["StagedGenerator", "StagedDiscriminator", "at_stage"]
