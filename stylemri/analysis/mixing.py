"""Style mixing (Karras et al. 2019, fig. 3): which layers carry anatomy/shape and which carry texture.

Each cell of the grid takes the row seed's w in every layer except the chosen `styles` layers, which
come from the column seed. Layer i works at resolution 4 * 2**(i // 2): coarse = 4-8 px (layers 0-3),
middle = 16-32 px (layers 4-7), fine = 64 px and up (layers 8+), as in the paper. Below 64 px, where the
fine group would be empty, the model's layers are split into three near-equal contiguous groups instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from stylemri import io
from stylemri.errors import UserError
from stylemri.networks.sampling import condition, map_latents, one_hot, seed_latents, synthesize

GROUPS = ("coarse", "middle", "fine")


def style_groups(num_ws: int, resolution: int) -> dict[str, list[int]]:
    """Layer indices of the coarse / middle / fine groups for a model with `num_ws` style inputs."""
    layers = list(range(num_ws))
    if resolution >= 64:
        res = [4 * 2 ** (i // 2) for i in layers]
        return {"coarse": [i for i in layers if res[i] <= 8],
                "middle": [i for i in layers if 16 <= res[i] <= 32],
                "fine": [i for i in layers if res[i] >= 64]}
    parts = np.array_split(np.arange(num_ws), 3)
    return {name: [int(i) for i in part] for name, part in zip(GROUPS, parts)}


def parse_styles(spec: str, num_ws: int, resolution: int) -> list[int]:
    """'coarse' | 'middle' | 'fine' | '0-3' | '0,2,5-6' -> sorted layer indices, checked against num_ws."""
    text = str(spec).strip().lower()
    groups = style_groups(num_ws, resolution)
    if text in groups:
        if not groups[text]:
            raise UserError(f"--layers {spec}: this {resolution} px model has no {text} layers; "
                            f"give layer indices 0-{num_ws - 1}")
        return groups[text]
    layers: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        try:
            lo, hi = (int(m.group(1)), int(m.group(2))) if m else (int(part), int(part))
        except ValueError:
            raise UserError(f"--layers {spec}: expected coarse, middle, fine, or layer indices like 0-3") from None
        if lo > hi or hi >= num_ws:
            raise UserError(f"--layers {spec}: layers must lie in 0-{num_ws - 1} for this model")
        layers.update(range(lo, hi + 1))
    return sorted(layers)


@dataclass
class MixingResult:
    """Row-seed images (R, C, H, W), column-seed images (K, C, H, W), mixed images (R, K, C, H, W)."""

    row_seeds: list[int]
    col_seeds: list[int]
    styles: list[int]
    row_images: torch.Tensor
    col_images: torch.Tensor
    mixed: torch.Tensor


@torch.no_grad()
def style_mixing(G: torch.nn.Module, row_seeds: Sequence[int], col_seeds: Sequence[int], styles: Sequence[int],
                 psi: float = 1.0, noise_mode: str = "const", class_index: int | None = None,
                 covariates: torch.Tensor | None = None) -> MixingResult:
    """Every row seed with the `styles` layers taken from every column seed. `covariates`: a --condition
    model's encoded vector (1, cov_dim), the same for every seed (so only the styles differ between cells)."""
    if not row_seeds or not col_seeds:
        raise UserError("style mixing needs at least one row seed and one column seed")
    if G.c_dim and class_index is None:
        raise ValueError("a conditional model needs class_index")
    seeds = list(dict.fromkeys([*row_seeds, *col_seeds]))
    z = seed_latents(seeds, G.z_dim)
    c = one_hot([class_index] * len(seeds) if G.c_dim else [None] * len(seeds), G.c_dim)
    cov = None if covariates is None else covariates.reshape(1, -1).expand(len(seeds), -1)
    ws = map_latents(G, z, condition(c, cov, getattr(G, "cov_dim", 0)), psi=psi)
    w_of = {s: ws[i] for i, s in enumerate(seeds)}
    rows = torch.stack([w_of[s] for s in row_seeds])
    cols = torch.stack([w_of[s] for s in col_seeds])
    mixed = rows.unsqueeze(1).repeat(1, len(col_seeds), 1, 1)  # (R, K, num_ws, w_dim)
    idx = torch.as_tensor(list(styles), dtype=torch.long, device=mixed.device)
    mixed[:, :, idx] = cols.unsqueeze(0)[:, :, idx].expand(len(row_seeds), -1, -1, -1)
    row_img = synthesize(G, rows, noise=noise_mode, noise_seeds=row_seeds)
    col_img = synthesize(G, cols, noise=noise_mode, noise_seeds=col_seeds)
    mix_seeds = [s for s in row_seeds for _ in col_seeds]  # a cell keeps its row seed's noise, like its other layers
    mix_img = synthesize(G, mixed.reshape(-1, G.num_ws, G.w_dim), noise=noise_mode, noise_seeds=mix_seeds)
    mix_img = mix_img.reshape(len(row_seeds), len(col_seeds), *mix_img.shape[1:])
    return MixingResult(list(row_seeds), list(col_seeds), list(styles), row_img, col_img, mix_img)


def mixing_grid(result: MixingResult, pad: int = 2) -> np.ndarray:
    """The figure as one uint8 (H, W, C) array: top row = column seeds, left column = row seeds, blank corner."""
    r, k = result.mixed.shape[:2]
    c, h, w = result.mixed.shape[2:]
    blank = torch.full((1, c, h, w), -1.0)
    tiles = [blank, result.col_images]
    for i in range(r):
        tiles += [result.row_images[i:i + 1], result.mixed[i]]
    return io.make_grid(io.to_uint8(torch.cat(tiles)), ncols=k + 1, pad=pad)


__all__ = ["GROUPS", "style_groups", "parse_styles", "MixingResult", "style_mixing", "mixing_grid"]
