"""Fixed-latent sample grids (per class when conditional) and the progress-across-resolutions figure."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from PIL import Image

from stylemri.io import save_figure
from stylemri.training.rng import derive_seed


def seed_latents(seeds: Iterable[int], z_dim: int) -> torch.Tensor:
    """One z per seed, as NVlabs draws it: RandomState(seed).randn(z_dim) (a seed names the same image everywhere)."""
    z = [np.random.RandomState(int(s) % 2**32).randn(z_dim) for s in seeds]
    return torch.from_numpy(np.stack(z)).float() if z else torch.zeros(0, z_dim)


def grid_latents(z_dim: int, c_dim: int, resolution: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Latents (and one-hot labels) of the grid every sample PNG of a run shows; (z, c, columns).

    Unconditional: 8x8 images up to 128 px, 8x4 up to 512 px, 4x4 beyond. Conditional: one row per class.
    """
    cols = 8 if resolution <= 512 else 4
    if c_dim:
        rows = c_dim
        c = torch.nn.functional.one_hot(torch.arange(rows).repeat_interleave(cols), c_dim).float()
    else:
        rows = 8 if resolution <= 128 else 4
        c = None
    g = torch.Generator().manual_seed(derive_seed(seed, "grid"))
    z = torch.randn(rows * cols, z_dim, generator=g)
    return z, c, cols


@torch.no_grad()
def render(G: torch.nn.Module, z: torch.Tensor, c: torch.Tensor | None, stage: int | None, alpha: float,
           device: torch.device | str, batch: int = 16, psi: float = 1.0, noise_mode: str = "const") -> torch.Tensor:
    """Images from G (normally G_ema) in [-1, 1] on the CPU; constant noise, so no RNG is consumed."""
    out = []
    for i in range(0, len(z), batch):
        zi = z[i : i + batch].to(device)
        ci = None if c is None else c[i : i + batch].to(device)
        ws = G.mapping(zi, ci, psi=psi)
        out.append(G.synthesis(ws, noise_mode=noise_mode, stage=stage, alpha=alpha).float().cpu())
    return torch.cat(out)


def save_progress_figure(samples_dir: Path, out_path: Path) -> Path | None:
    """One row per resolution reached (samples/progress-XXXXpx.png), upscaled to the largest, labelled."""
    strips = sorted(samples_dir.glob("progress-*px.png"), key=_resolution_of)
    if not strips:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    images = [np.asarray(Image.open(p).convert("L")) for p in strips]
    width = max(im.shape[1] for im in images)
    fig, axes = plt.subplots(len(images), 1, figsize=(10, 1.4 * len(images) + 0.4), squeeze=False)
    for ax, im, path in zip(axes[:, 0], images, strips):
        scale = max(width // im.shape[1], 1)
        ax.imshow(np.kron(im, np.ones((scale, scale), dtype=im.dtype)), cmap="gray", vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set_ylabel(f"{_resolution_of(path)} px", rotation=0, ha="right", va="center")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Progress across image sizes (same latents, end of each resolution)")
    fig.tight_layout()
    save_figure(fig, out_path, dpi=100, tight=False)
    plt.close(fig)
    return out_path


def _resolution_of(path: Path) -> int:
    return int(re.findall(r"\d+", path.name)[0])
