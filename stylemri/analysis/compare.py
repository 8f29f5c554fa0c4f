"""Real vs generated: the side-by-side figure (generated on the left, real on the right, matched by class)
and, for each generated image, its nearest training image in pixel space (mirror images included,
since training flips), a direct check for memorised scans.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from stylemri import io
from stylemri.analysis.figures import save_figure


@dataclass
class NearestResult:
    """For each generated image: index of the nearest training image, its L2 distance (per pixel RMS),
    and whether the match is the mirror image."""

    indices: np.ndarray
    distances: np.ndarray
    flipped: np.ndarray


@torch.no_grad()
def nearest_training_images(generated: torch.Tensor, dataset, batch_size: int = 256,
                            include_flips: bool = True) -> NearestResult:
    """Exhaustive nearest neighbour of each generated image (N, C, R, R) over the whole dataset."""
    n = len(generated)
    gen = generated.float().reshape(n, -1)
    best = torch.full((n,), float("inf"), dtype=torch.float64)
    best_idx = torch.zeros(n, dtype=torch.long)
    best_flip = torch.zeros(n, dtype=torch.bool)
    res = generated.shape[-1]
    for start in range(0, len(dataset), batch_size):
        idx = np.arange(start, min(start + batch_size, len(dataset)))
        real, _ = dataset.batch(idx, resolution=res)
        real = torch.as_tensor(real).float()
        candidates = [(real, False)] + ([(real.flip(-1), True)] if include_flips else [])
        for imgs, flipped in candidates:
            d = torch.cdist(gen, imgs.reshape(len(imgs), -1)).double()  # (N, B)
            dmin, arg = d.min(dim=1)
            better = dmin < best
            best = torch.where(better, dmin, best)
            best_idx = torch.where(better, torch.as_tensor(idx)[arg], best_idx)
            best_flip = torch.where(better, torch.full_like(best_flip, flipped), best_flip)
    rms = best / np.sqrt(gen.shape[1])
    return NearestResult(best_idx.numpy(), rms.numpy(), best_flip.numpy())


def _panel(ax, images: torch.Tensor, ncols: int, title: str) -> None:
    grid = io.make_grid(io.to_uint8(images), ncols=ncols, pad=2, pad_value=255)
    ax.imshow(grid[:, :, 0] if grid.shape[2] == 1 else grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def real_vs_generated_figure(path: str | os.PathLike, generated: torch.Tensor, real: torch.Tensor,
                             ncols: int | None = None, title: str = "") -> Path:
    """Two panels: generated images (left) and real images (right), same layout."""
    from matplotlib.figure import Figure

    ncols = ncols or int(np.ceil(np.sqrt(len(generated))))
    fig = Figure(figsize=(10, 5.4))
    ax_fake, ax_real = fig.subplots(1, 2)
    _panel(ax_fake, generated, ncols, f"generated (n={len(generated)})")
    _panel(ax_real, real, ncols, f"real (n={len(real)})")
    fig.suptitle(title or "Left: generated. Right: real.")
    return save_figure(fig, path)


def nearest_figure(path: str | os.PathLike, generated: torch.Tensor, nearest: torch.Tensor, result: NearestResult,
                   captions: Sequence[str] | None = None, max_rows: int = 16) -> Path:
    """One row per generated image: the image, its nearest training image, the distance and source."""
    from matplotlib.figure import Figure

    rows = min(len(generated), max_rows)
    fig = Figure(figsize=(4.6, 2.0 * rows + 0.6))
    axes = fig.subplots(rows, 2, squeeze=False)
    for i in range(rows):
        for j, (img, label) in enumerate(((generated[i], "generated"), (nearest[i], "nearest training image"))):
            arr = io.to_uint8(img)
            ax = axes[i, j]
            ax.imshow(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=255,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label)
        note = f"RMS distance {result.distances[i]:.3f}" + (" (mirrored)" if result.flipped[i] else "")
        if captions:
            note = f"{captions[i]}\n{note}"
        axes[i, 1].set_xlabel(note, fontsize=7)
        axes[i, 0].set_ylabel(f"#{i}", fontsize=8)
    fig.suptitle("Nearest training image (pixel L2) per generated image")
    return save_figure(fig, path)


__all__ = ["NearestResult", "nearest_training_images", "real_vs_generated_figure", "nearest_figure"]
