"""A covariate walk: the same seed and noise, only one covariate moving (age 60 -> 90), and what changed.

`stylemri interpolate RUN --walk age=60:90 --frames 7` writes a strip and a GIF of the frames and a figure of
each frame's difference to the first one, so the change the covariate makes is visible apart from the
anatomy all frames share. Every frame is checked against the training range before anything is generated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from stylemri.errors import UserError
from stylemri.model import TrainedModel


@dataclass(frozen=True)
class CovariateWalk:
    """Frames (seeds, frames, C, R, R) float32 in [-1, 1] for `values` of covariate `name`."""

    name: str
    values: tuple[float, ...]
    seeds: tuple[int, ...]
    frames: torch.Tensor
    fixed: dict[str, Any]  # the other covariates, as given


def walk_values(model: TrainedModel, name: str, start: float, stop: float, frames: int) -> tuple[str, list[float]]:
    """The covariate's spelling in the model and `frames` evenly spaced values from start to stop."""
    scaling = model.covariates
    if scaling is None:
        raise UserError(f"--walk {name}: this model was trained without covariates (no --condition)")
    cols = {c.name.lower(): c for c in scaling.columns}
    col = cols.get(name.lower())
    if col is None:
        raise UserError(f"--walk {name}: the model was not trained with {name} (its covariates: "
                        f"{', '.join(scaling.names)})")
    if col.kind != "continuous":
        raise UserError(f"--walk {name}: {col.name} is categorical ({', '.join(col.categories)}); expected a "
                        "continuous covariate (compare categories with generate --set instead)")
    if frames < 2:
        raise UserError(f"--frames {frames}: expected at least 2 frames")
    return col.name, [float(v) for v in np.linspace(start, stop, frames)]


def covariate_walk(model: TrainedModel, seeds: Sequence[int], name: str, start: float, stop: float, frames: int,
                   fixed: Mapping[str, Any] | None = None, *, psi: float = 1.0, noise: str = "const",
                   class_name: str | int | None = None) -> CovariateWalk:
    """Generate every seed at every value of `name` (other covariates `fixed`); all values checked first."""
    name, values = walk_values(model, name, start, stop, frames)
    fixed = dict(fixed or {})
    if any(k.lower() == name.lower() for k in fixed):
        raise UserError(f"--set {name}: {name} is the walked covariate; set only the others")
    settings = [{**fixed, name: v} for v in values]
    model.covariate_vectors(len(settings), settings, flag="--walk")  # every frame in range, before any work
    rows = []
    for seed in seeds:
        rows.append(model.generate([seed] * len(values), covariates=settings, trunc=psi, noise=noise,
                                   class_name=class_name))
    return CovariateWalk(name, tuple(values), tuple(int(s) for s in seeds), torch.stack(rows), fixed)


def difference_figure(walk: CovariateWalk) -> Any:
    """Frames (top row per seed) and their difference to the first frame (below, red = brighter)."""
    from matplotlib.figure import Figure

    frames = walk.frames.float().mean(dim=2).numpy()  # (S, F, R, R), channels averaged
    n_seeds, n_frames = frames.shape[:2]
    fig = Figure(figsize=(1.3 * n_frames + 0.6, 2.7 * n_seeds + 0.5))
    axes = fig.subplots(2 * n_seeds, n_frames, squeeze=False)
    diffs = frames - frames[:, :1]
    limit = max(float(np.abs(diffs).max()), 1e-6)
    for s in range(n_seeds):
        for f in range(n_frames):
            top, bottom = axes[2 * s, f], axes[2 * s + 1, f]
            top.imshow(frames[s, f], cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
            im = bottom.imshow(diffs[s, f], cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
            top.set_title(f"{walk.name} {walk.values[f]:g}", fontsize=8)
            for ax in (top, bottom):
                ax.set_xticks([])
                ax.set_yticks([])
        axes[2 * s, 0].set_ylabel(f"seed {walk.seeds[s]}", fontsize=8)
        axes[2 * s + 1, 0].set_ylabel("minus first", fontsize=8)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="difference to the first frame ([-1, 1] units)")
    fixed = ", ".join(f"{k}={v}" for k, v in walk.fixed.items())
    fig.suptitle(f"{walk.name} walk, same seed and noise" + (f" ({fixed})" if fixed else ""), fontsize=9)
    return fig


__all__ = ["CovariateWalk", "walk_values", "covariate_walk", "difference_figure"]
