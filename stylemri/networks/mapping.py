"""The mapping network z (+ class label, + covariates) -> w, with the tracked average of w for truncation.

The condition `c` is one float vector per sample: the class one-hot (c_dim entries), then the covariate
vector (cov_dim entries: standardised values, one-hots, missing indicators; see stylemri.data.covariates).
The class part is embedded and normalised as in NVlabs; the covariate part goes through its own linear
embedding without normalisation, so that the size of a standardised value (age 60 vs 90) is not divided away.
A class-only model (cov_dim 0) has exactly the parameters and outputs it had before covariates existed.
"""

from __future__ import annotations

import torch
from torch import nn

from stylemri.networks.layers import EqualLinear, normalize_2nd_moment


def check_labels(c: torch.Tensor | None, c_dim: int, batch: int | None, where: str) -> torch.Tensor | None:
    """Validate the one-hot label tensor against `c_dim`; None (or an empty tensor) when unconditional."""
    if c_dim == 0:
        if c is not None and c.numel() > 0:
            raise ValueError(f"{where}: the network is unconditional (c_dim=0) but got labels of shape {tuple(c.shape)}")
        return None
    if c is None or c.ndim != 2 or c.shape[1] != c_dim or (batch is not None and c.shape[0] != batch):
        got = None if c is None else tuple(c.shape)
        raise ValueError(f"{where}: expected one-hot labels of shape ({batch if batch is not None else 'N'}, {c_dim}), got {got}")
    return c


class MappingNetwork(nn.Module):
    """Pixel-normed z, concatenated with a normalised label embedding, through `num_layers` FC + lrelu.

    With `num_ws` set the output is broadcast to one w per synthesis layer, (N, num_ws, w_dim), and a
    moving average `w_avg` is kept for truncation. With `z_dim = 0` it maps labels only (the projection
    discriminator's label embedding).
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int | None, num_layers: int = 8,
                 lr_mul: float = 0.01, w_avg_beta: float | None = 0.995, cov_dim: int = 0) -> None:
        super().__init__()
        if z_dim == 0 and c_dim == 0 and cov_dim == 0:
            raise ValueError("MappingNetwork: needs a latent (z_dim > 0), labels (c_dim > 0) or covariates")
        if num_layers < 1:
            raise ValueError(f"map_layers {num_layers}: expected at least 1")
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.cov_dim = cov_dim
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        embed_features = w_dim if c_dim > 0 else 0
        if c_dim > 0:
            self.embed = EqualLinear(c_dim, embed_features)
        if cov_dim > 0:
            self.cov_embed = EqualLinear(cov_dim, w_dim)
        features = [z_dim + embed_features + (w_dim if cov_dim > 0 else 0)] + [w_dim] * num_layers
        for i in range(num_layers):
            setattr(self, f"fc{i}", EqualLinear(features[i], features[i + 1], activation="lrelu", lr_mul=lr_mul))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor | None, c: torch.Tensor | None, psi: float = 1.0, cutoff: int | None = None,
                update_w_avg: bool = False) -> torch.Tensor:
        """ws (N, num_ws, w_dim), or w (N, w_dim) when num_ws is None; `psi`/`cutoff`: truncation trick."""
        parts = []
        batch = None
        if self.z_dim > 0:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ValueError(f"mapping: expected z of shape (N, {self.z_dim}), got {None if z is None else tuple(z.shape)}")
            batch = z.shape[0]
            parts.append(normalize_2nd_moment(z.float()))
        c = check_labels(c, self.c_dim + self.cov_dim, batch, "mapping")
        if c is not None and self.c_dim > 0:
            parts.append(normalize_2nd_moment(self.embed(c[:, :self.c_dim].float())))
        if c is not None and self.cov_dim > 0:
            parts.append(self.cov_embed(c[:, self.c_dim:].float()))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)

        if update_w_avg:
            if not hasattr(self, "w_avg"):
                raise ValueError("mapping: this network does not track w_avg")
            with torch.no_grad():
                self.w_avg.copy_(torch.lerp(x.detach().float().mean(0), self.w_avg, self.w_avg_beta))
        if self.num_ws is None:
            return x
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if psi != 1:
            if not hasattr(self, "w_avg"):
                raise ValueError("mapping: truncation needs w_avg, which this network does not track")
            w_avg = self.w_avg.to(x.dtype)
            if cutoff is None:
                x = w_avg + psi * (x - w_avg)
            else:
                head = w_avg + psi * (x[:, :cutoff] - w_avg)
                x = torch.cat([head, x[:, cutoff:]], dim=1)
        return x

    def extra_repr(self) -> str:
        cov = f", cov_dim={self.cov_dim}" if self.cov_dim else ""
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}{cov}, w_dim={self.w_dim}, num_ws={self.num_ws}"


__all__ = ["MappingNetwork", "check_labels"]
