"""Real vs generated: the side-by-side figure (generated on the left, real on the right, matched by class)
and, for each generated image, its nearest training image in pixel space (mirror images included,
since training flips), a direct check for memorised scans.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from stylemri import io
from stylemri.analysis.figures import save_figure


def nearest_training_images(generated: torch.Tensor, dataset, *, num_baseline: int = 500, seed: int = 0,
                            include_flips: bool = True):
    """Nearest training image (pixel RMS, mirror images included) of each generated image (N, C, R, R) in
    [-1, 1], over the whole dataset, with the real-to-real nearest distance as the yardstick (to another
    patient's image when the dataset knows its subjects): the search of `stylemri.metrics.memorization`,
    at the generator's resolution. Returns its pixel-space `SpaceResult` (nearest_index, distance in
    [0, 1] units, flipped, closer-than-real flags)."""
    from stylemri.metrics.memorization import memorization
    from stylemri.metrics.metric_utils import ImageSource

    res = int(generated.shape[-1])
    source = ImageSource(num=len(dataset), read=lambda idx: _uint8(dataset, idx, res), resolution=res,
                         channels=int(generated.shape[1]), name="training images")
    subjects = getattr(dataset, "subjects", None)
    if subjects is not None and len({str(x) for x in subjects if str(x)}) < 2:
        subjects = None  # one patient (e.g. a template): compare with every other slice instead
    result = memorization(io.to_uint8(generated), source, xflip=include_flips, subject_ids=subjects,
                          num_baseline=min(num_baseline, len(dataset)), seed=seed)
    return result.spaces["pixel"]


def _uint8(dataset, idx: np.ndarray, resolution: int) -> np.ndarray:
    exact = getattr(dataset, "batch_uint8", None)
    if exact is not None:
        return np.asarray(exact(idx, resolution=resolution)[0])
    return io.to_uint8(dataset.batch(idx, resolution=resolution)[0])


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


def nearest_figure(path: str | os.PathLike, generated: torch.Tensor, nearest: torch.Tensor, result,
                   captions: Sequence[str] | None = None, max_rows: int = 16) -> Path:
    """One row per generated image: the image, its nearest training image (as matched: mirrored if the
    mirror image was nearer), the distance, and * where it is closer than typical real-to-real pairs."""
    from matplotlib.figure import Figure

    rows = min(len(generated), max_rows)
    fig = Figure(figsize=(6.0, 1.45 * rows + 0.9))
    axes = fig.subplots(rows, 2, squeeze=False, gridspec_kw={"left": 0.05, "right": 0.45, "hspace": 0.12,
                                                             "wspace": 0.08})
    for i in range(rows):
        for j, (img, label) in enumerate(((generated[i], "generated"), (nearest[i], "nearest training image"))):
            arr = io.to_uint8(img)
            ax = axes[i, j]
            ax.imshow(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=255,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label, fontsize=9)
        note = (f"RMS distance {result.distance[i]:.3f}" + (" (mirrored)" if result.flipped[i] else "")
                + (" *" if result.closer[i] else ""))
        if captions:
            note = f"{captions[i]}\n{note}"
        axes[i, 1].text(1.08, 0.5, note, transform=axes[i, 1].transAxes, va="center", ha="left", fontsize=8)
    fig.suptitle("Nearest training image (pixel RMS, [0, 1] scale) per generated image\n"
                 f"* = closer than the median real-to-real nearest distance ({result.threshold:.3f})", fontsize=9)
    return save_figure(fig, path)


__all__ = ["nearest_training_images", "real_vs_generated_figure", "nearest_figure"]
