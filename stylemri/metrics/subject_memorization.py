"""Memorization per patient: does the generator reproduce a particular subject's slices?

The yardstick is how far a real slice is from the nearest slice of a *different* patient (slices of one
patient are near-copies of each other, so same-patient neighbours would make the yardstick useless).
A generated image closer than the median of that real-to-real distance to some subject's slice sits
"inside" that patient. Works on any flattened representation (pixels or Inception features).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from stylemri.data.tables import write_csv
from stylemri.io import atomic_write, to_uint8

SUBJECT_TABLE_HEADER: tuple[str, ...] = (
    "subject", "training_slices", "generated_close", "generated_nearest", "min_distance", "nearest_generated",
)


@dataclass(frozen=True)
class SubjectRow:
    subject: str
    training_slices: int
    generated_close: int  # generated images closer than the threshold to one of this subject's slices
    generated_nearest: int  # generated images whose overall nearest training image is this subject's
    min_distance: float  # smallest distance from any generated image to this subject's slices
    nearest_generated: int  # index of the generated image achieving `min_distance`


@dataclass(frozen=True)
class SubjectMemorization:
    threshold: float  # median nearest real-to-real distance between different subjects
    nearest_index: np.ndarray  # (G,) nearest training image of each generated image
    nearest_distance: np.ndarray  # (G,)
    nearest_subject: tuple[str, ...]  # (G,) that training image's subject
    table: tuple[SubjectRow, ...]  # one row per training subject, most copied first

    @property
    def flagged(self) -> np.ndarray:
        """(G,) bool: generated images closer to a training slice than the threshold."""
        return self.nearest_distance < self.threshold

    @property
    def fraction_flagged(self) -> float:
        return float(self.flagged.mean()) if self.flagged.size else 0.0

    @property
    def flagged_subjects(self) -> tuple[str, ...]:
        return tuple(r.subject for r in self.table if r.generated_close > 0)

    def worst(self, k: int) -> np.ndarray:
        """Indices of the `k` generated images closest to a training image, closest first."""
        return np.argsort(self.nearest_distance, kind="stable")[:k]


def _flat(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    return t.detach().reshape(t.shape[0], -1).to(torch.float64 if t.dtype == torch.float64 else torch.float32)


def _subject_codes(subjects: Sequence[str] | None, n: int) -> tuple[list[str], torch.Tensor]:
    """Distinct subjects (first-seen order) and each training image's code; None: each image its own."""
    if subjects is None:
        names = [str(i) for i in range(n)]
        return names, torch.arange(n)
    if len(subjects) != n:
        raise ValueError(f"subjects: expected one ID per training image ({n}), got {len(subjects)}")
    lookup: dict[str, int] = {}
    codes = [lookup.setdefault(str(s), len(lookup)) for s in subjects]
    return list(lookup), torch.tensor(codes, dtype=torch.int64)


def cross_subject_nn_distance(train: torch.Tensor, codes: torch.Tensor, *, queries: torch.Tensor | None = None,
                              chunk: int = 1024) -> torch.Tensor:
    """For each training image (or each of `queries`, indices into it), the distance to its nearest training
    image of another subject (inf if none)."""
    q = torch.arange(train.shape[0]) if queries is None else queries
    out = torch.empty(len(q), dtype=train.dtype)
    for start in range(0, len(q), chunk):
        rows = q[start:start + chunk]
        d = torch.cdist(train[rows], train)
        same = codes[rows, None] == codes[None, :]
        out[start:start + chunk] = d.masked_fill(same, float("inf")).amin(dim=1)
    return out


def subject_memorization(
    generated: torch.Tensor | np.ndarray,
    train: torch.Tensor | np.ndarray,
    subjects: Sequence[str] | None = None,
    *,
    threshold: float | None = None,
    yardstick_queries: int | None = 5000,
    seed: int = 0,
    chunk: int = 1024,
) -> SubjectMemorization:
    """Nearest training image (and its subject) of each generated image, and the per-subject table.

    `generated` (G, ...) and `train` (N, ...) are flattened; `subjects` has one ID per training image.
    `threshold` overrides the median cross-subject real-to-real nearest distance; that median is estimated
    from `yardstick_queries` training images drawn with `seed` (each searched against all of them; None:
    every training image; the N x N search dominates the cost on large sets).
    """
    gen, ref = _flat(generated), _flat(train)
    if gen.shape[1] != ref.shape[1]:
        raise ValueError(f"generated {tuple(gen.shape)} and training {tuple(ref.shape)} differ in size")
    ref = ref.to(gen.dtype)
    names, codes = _subject_codes(subjects, ref.shape[0])
    if threshold is None:
        if len(names) < 2:
            raise ValueError("memorization per subject needs training images of at least two subjects")
        queries = None
        if yardstick_queries is not None and ref.shape[0] > yardstick_queries:
            g = torch.Generator().manual_seed(seed)
            queries = torch.randperm(ref.shape[0], generator=g)[:yardstick_queries].sort().values
        threshold = float(cross_subject_nn_distance(ref, codes, queries=queries, chunk=chunk).median())
    num_subjects = len(names)
    nn_dist = torch.empty(gen.shape[0], dtype=gen.dtype)
    nn_idx = torch.empty(gen.shape[0], dtype=torch.int64)
    per_subject = torch.empty(gen.shape[0], num_subjects, dtype=gen.dtype)
    for start in range(0, gen.shape[0], chunk):
        d = torch.cdist(gen[start:start + chunk], ref)
        nn_dist[start:start + chunk], nn_idx[start:start + chunk] = d.min(dim=1)
        index = codes[None, :].expand_as(d)
        init = torch.full((d.shape[0], num_subjects), float("inf"), dtype=d.dtype)
        per_subject[start:start + chunk] = init.scatter_reduce(1, index, d, reduce="amin")
    slices = torch.bincount(codes, minlength=num_subjects)
    close = (per_subject < threshold).sum(dim=0)
    nearest_counts = torch.bincount(codes[nn_idx], minlength=num_subjects)
    if gen.shape[0]:
        min_dist, min_gen = per_subject.min(dim=0)
    else:
        min_dist = torch.full((num_subjects,), float("inf"), dtype=gen.dtype)
        min_gen = torch.full((num_subjects,), -1, dtype=torch.int64)
    # cdist's matrix-product form loses precision near 0; recompute the reported distances exactly
    if gen.shape[0]:
        nn_dist = (gen - ref[nn_idx]).norm(dim=1)
        for s in range(num_subjects):
            members = ref[codes == s]
            min_dist[s] = (members - gen[min_gen[s]]).norm(dim=1).min()
    rows = [
        SubjectRow(names[s], int(slices[s]), int(close[s]), int(nearest_counts[s]), float(min_dist[s]), int(min_gen[s]))
        for s in range(num_subjects)
    ]
    rows.sort(key=lambda r: (-r.generated_close, r.min_distance, r.subject))
    return SubjectMemorization(
        threshold=threshold,
        nearest_index=nn_idx.numpy(),
        nearest_distance=nn_dist.numpy(),
        nearest_subject=tuple(names[int(codes[i])] for i in nn_idx),
        table=tuple(rows),
    )


def write_subject_table(path: str | os.PathLike, result: SubjectMemorization) -> Path:
    """The per-subject table as CSV (most copied subjects first), atomically."""
    return write_csv(
        path,
        SUBJECT_TABLE_HEADER,
        ((r.subject, r.training_slices, r.generated_close, r.generated_nearest, f"{r.min_distance:.6g}",
          r.nearest_generated) for r in result.table),
    )


def save_worst_cases(
    path: str | os.PathLike,
    generated: torch.Tensor | np.ndarray,
    train: torch.Tensor | np.ndarray,
    result: SubjectMemorization,
    *,
    k: int = 8,
    space: str = "pixel",
) -> Path:
    """A figure of the `k` closest pairs: generated (left) next to its nearest real slice, subject, distance.

    Images are (N, C, H, W) in [-1, 1].
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    idx = result.worst(k)
    gen8, ref8 = to_uint8(generated), to_uint8(train)
    rows = max(len(idx), 1)
    fig = Figure(figsize=(4.2, 2.1 * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 2, squeeze=False)
    for r, g in enumerate(idx):
        t = int(result.nearest_index[g])
        flagged = result.nearest_distance[g] < result.threshold
        for c, (img, title) in enumerate((
            (gen8[g], f"generated #{int(g)}" + (" (flagged)" if flagged else "")),
            (ref8[t], f"subject {result.nearest_subject[g]}  d={result.nearest_distance[g]:.3g}"),
        )):
            ax = axes[r][c]
            ax.imshow(img.transpose(1, 2, 0).squeeze(-1) if img.shape[0] == 1 else img.transpose(1, 2, 0),
                      cmap="gray", vmin=0, vmax=255)
            ax.set_title(title, fontsize=7, color="red" if flagged and c == 0 else "black")
            ax.axis("off")
    if not len(idx):
        axes[0][0].axis("off")
        axes[0][1].axis("off")
    fig.suptitle(f"closest to training ({space}); threshold {result.threshold:.3g}", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=100)
    return path


__all__ = ["SUBJECT_TABLE_HEADER", "SubjectRow", "SubjectMemorization", "cross_subject_nn_distance",
           "subject_memorization", "write_subject_table", "save_worst_cases"]
