"""The sample grid every run writes (fixed seeds, one row per class when conditional) and the
progress-across-resolutions figure. Images come from `networks.sampling.generate_images`, the path
`stylemri generate` uses: a run's last grid shows the images `generate --seeds` gives for its checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from stylemri.io import save_figure
from stylemri.networks.sampling import generate_images
from stylemri.networks.staged import at_stage
from stylemri.training.run_dir import RunLayout


def grid_seeds(c_dim: int, resolution: int) -> tuple[list[int], list[int | None], int]:
    """Seeds and classes of the grid every sample PNG of a run shows; (seeds, classes, columns).

    Unconditional: seeds 0..63 as 8x8 up to 128 px, 0..31 as 8x4 up to 512 px, 0..15 as 4x4 beyond.
    Conditional: one row per class, seeds 0..cols-1 in each (the order `stylemri generate` uses)."""
    cols = 8 if resolution <= 512 else 4
    if c_dim:
        return [s for _ in range(c_dim) for s in range(cols)], [k for k in range(c_dim) for _ in range(cols)], cols
    rows = 8 if resolution <= 128 else 4
    return list(range(rows * cols)), [None] * (rows * cols), cols


def covariate_grid(ds: Any, labels: np.ndarray | None, resolution: int
                   ) -> tuple[list[int], list[int | None], torch.Tensor, int]:
    """A covariate run's grid: one row per real sample spread from the lowest to the highest first covariate
    (its class and covariates), seeds 0..cols-1 in each row; (seeds, classes, covariate vectors, columns)."""
    from stylemri.data.covariates import ordering

    cols = 8 if resolution <= 512 else 4
    order = ordering(ds.covariates)
    picks = order[np.linspace(0, len(order) - 1, min(8, len(order))).round().astype(int)]
    seeds = [s for _ in picks for s in range(cols)]
    classes = [int(labels[r]) if labels is not None else None for r in picks for _ in range(cols)]
    vectors = torch.from_numpy(np.repeat(ds.covariates.vectors[picks], cols, axis=0))
    return seeds, classes, vectors, cols


def render_grid(G: torch.nn.Module, seeds: list[int], classes: list[int | None], stage: int | None = None,
                alpha: float = 1.0, batch: int = 16, covariates: torch.Tensor | None = None) -> torch.Tensor:
    """The grid's images from G (normally G_ema) at a progressive stage; constant noise, no RNG consumed."""
    return generate_images(at_stage(G, stage, alpha), seeds, classes, noise="const", batch=batch,
                           covariates=covariates)


def save_progress_figure(layout: RunLayout) -> Path | None:
    """One row per resolution reached (the run's progress strips), upscaled to the largest, labelled."""
    from matplotlib.figure import Figure

    strips = layout.progress_strips()
    if not strips:
        return None
    images = [np.asarray(Image.open(p).convert("L")) for _, p in strips]
    width = max(im.shape[1] for im in images)
    fig = Figure(figsize=(10, 1.4 * len(images) + 0.4))
    axes = fig.subplots(len(images), 1, squeeze=False)
    for ax, im, (resolution, _) in zip(axes[:, 0], images, strips):
        scale = max(width // im.shape[1], 1)
        ax.imshow(np.kron(im, np.ones((scale, scale), dtype=im.dtype)), cmap="gray", vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set_ylabel(f"{resolution} px", rotation=0, ha="right", va="center")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Progress across image sizes (same latents, end of each resolution)")
    fig.tight_layout()
    save_figure(fig, layout.progress_figure, dpi=100, tight=False)
    return layout.progress_figure


__all__ = ["grid_seeds", "covariate_grid", "render_grid", "save_progress_figure"]
