"""Memorization per patient: which training subjects does the generator reproduce, and how often?

`memorization.memorization` finds each generated image's nearest training image and the yardstick (the
typical distance from a real slice to the nearest slice of *another* subject). This module adds the
per-subject view: for every training subject, how many generated images sit closer than the yardstick
to one of *its* slices (a generated image can be close to several subjects), how many have their overall
nearest neighbour there, and the closest pair. Distances are those of the memorization result: RMS
intensity difference in [0, 1] units (also against flipped slices when training flipped) in pixel space,
Euclidean in Inception feature space.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from stylemri.io import write_csv
from stylemri.io import atomic_write
from stylemri.metrics.memorization import MemorizationResult
from stylemri.metrics.metric_utils import ImageSource, check_uint8_batch

ROW_FIELDS: tuple[str, ...] = ("close", "nearest", "min_distance", "nearest_generated", "nearest_training", "flipped")


@dataclass(frozen=True)
class SubjectRow:
    subject: str
    training_slices: int
    close: int  # generated images closer than the yardstick to one of this subject's slices
    nearest: int  # generated images whose overall nearest training image is one of this subject's
    min_distance: float  # smallest distance from any generated image to this subject's slices
    nearest_generated: int  # the generated image achieving it
    nearest_training: int  # the training slice (of this subject) achieving it
    flipped: bool  # pixel space: that slice matched horizontally flipped


@dataclass(frozen=True)
class SubjectTable:
    """The per-subject table of one space, most reproduced subject first."""

    space: str
    threshold: float
    rows: tuple[SubjectRow, ...]

    @property
    def flagged_subjects(self) -> tuple[str, ...]:
        return tuple(r.subject for r in self.rows if r.close > 0)

    def summary(self, top: int = 5) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "num_subjects": len(self.rows),
            "subjects_with_close": len(self.flagged_subjects),
            "worst": [asdict(r) for r in self.rows[:top]],
        }


def _codes(subject_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct subjects (sorted) and each training image's index into them."""
    names, codes = np.unique(np.asarray(subject_ids).astype(str), return_inverse=True)
    return names, codes.astype(np.int64)


def _pixel_batches(training: ImageSource, batch_size: int, xflip: bool) -> Iterator[tuple[int, np.ndarray, bool]]:
    for start in range(0, training.num, batch_size):
        imgs = check_uint8_batch(training.read(np.arange(start, min(start + batch_size, training.num))), training.name)
        yield start, imgs.reshape(len(imgs), -1).astype(np.float32) / 255.0, False
        if xflip:
            yield start, imgs[..., ::-1].reshape(len(imgs), -1).astype(np.float32) / 255.0, True


def _feature_batches(features: np.ndarray, batch_size: int) -> Iterator[tuple[int, np.ndarray, bool]]:
    for start in range(0, len(features), batch_size):
        yield start, np.asarray(features[start:start + batch_size], np.float32), False


def per_subject_min_d2(
    queries: np.ndarray,
    batches: Iterator[tuple[int, np.ndarray, bool]],
    codes: np.ndarray,
    num_subjects: int,
    *,
    device: str | torch.device = "cpu",
    query_chunk: int = 512,
) -> np.ndarray:
    """(G, S) smallest squared Euclidean distance from each query to each subject's reference vectors."""
    q_all = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(device)
    q_sq = (q_all * q_all).sum(dim=1, keepdim=True)
    best = torch.full((len(q_all), num_subjects), float("inf"), dtype=torch.float32, device=device)
    codes_t = torch.from_numpy(codes).to(device)
    for start, ref, _flip in batches:
        r = torch.from_numpy(np.ascontiguousarray(ref)).to(device)
        r_sq = (r * r).sum(dim=1)
        index = codes_t[start:start + len(r)]
        for qs in range(0, len(q_all), query_chunk):
            q = q_all[qs:qs + query_chunk]
            d2 = (q_sq[qs:qs + query_chunk] + r_sq[None, :] - 2.0 * (q @ r.T)).clamp_min_(0)
            best[qs:qs + query_chunk].scatter_reduce_(1, index[None, :].expand_as(d2), d2, reduce="amin")
    return best.cpu().numpy()


def _closest_slice(
    gen_vectors: np.ndarray,
    batches: Iterator[tuple[int, np.ndarray, bool]],
    codes: np.ndarray,
    num_subjects: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each subject s, given gen_vectors[s] (its closest generated image): exact float64 squared
    distance, index and flip of the subject's slice closest to it. One cheap pass (no matrix product)."""
    best = np.full(num_subjects, np.inf)
    arg = np.full(num_subjects, -1, np.int64)
    flip = np.zeros(num_subjects, bool)
    for start, ref, flipped in batches:
        subj = codes[start:start + len(ref)]
        d2 = np.square(ref.astype(np.float64) - gen_vectors[subj].astype(np.float64)).sum(axis=1)
        for j in np.flatnonzero(d2 < best[subj]):  # few hits per batch once the minimum is found
            s = subj[j]
            if d2[j] < best[s]:
                best[s], arg[s], flip[s] = d2[j], start + j, flipped
    return best, arg, flip


def subject_table(
    result: MemorizationResult,
    generated: np.ndarray,
    training: ImageSource,
    *,
    space: str = "pixel",
    generated_features: np.ndarray | None = None,
    training_features: np.ndarray | None = None,
    xflip: bool = True,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> SubjectTable:
    """The per-subject table for one space of a memorization result that was computed with subject IDs.

    `xflip` must match the memorization call (pixel space); feature space needs both feature arrays.
    """
    if result.subject_ids is None:
        raise ValueError("subject_table: the memorization result has no subject IDs")
    if space not in result.spaces:
        raise ValueError(f"subject_table: no {space!r} space in the result (has {', '.join(result.spaces)})")
    res = result.spaces[space]
    names, codes = _codes(result.subject_ids)
    gen = check_uint8_batch(generated, "generated images")
    if space == "pixel":
        queries = gen.reshape(len(gen), -1).astype(np.float32) / 255.0
        scale = float(queries.shape[1])  # RMS: sqrt(d2 / D)

        def batches() -> Iterator[tuple[int, np.ndarray, bool]]:
            return _pixel_batches(training, batch_size, xflip)
    else:
        if generated_features is None or training_features is None:
            raise ValueError("subject_table: feature space needs generated_features and training_features")
        queries, tf, scale = np.asarray(generated_features, np.float32), np.asarray(training_features), 1.0

        def batches() -> Iterator[tuple[int, np.ndarray, bool]]:
            return _feature_batches(tf, batch_size)

    d2 = per_subject_min_d2(queries, batches(), codes, len(names), device=device)
    dist = np.sqrt(d2 / scale)
    close = (dist < res.threshold).sum(axis=0)
    nearest = np.bincount(codes[res.nearest_index], minlength=len(names))
    min_gen = dist.argmin(axis=0)
    exact_d2, arg, flipped = _closest_slice(queries[min_gen], batches(), codes, len(names))
    slices = np.bincount(codes, minlength=len(names))
    rows = [
        SubjectRow(str(names[s]), int(slices[s]), int(close[s]), int(nearest[s]), float(np.sqrt(exact_d2[s] / scale)),
                   int(min_gen[s]), int(arg[s]), bool(flipped[s]))
        for s in range(len(names))
    ]
    rows.sort(key=lambda r: (-r.close, -r.nearest, r.min_distance, r.subject))
    return SubjectTable(space=space, threshold=float(res.threshold), rows=tuple(rows))


def write_subject_csv(path: str | os.PathLike, tables: dict[str, SubjectTable]) -> Path:
    """One row per training subject with one column group per space; ordered like the first table."""
    spaces = list(tables)
    first = tables[spaces[0]]
    by_space = {sp: {r.subject: r for r in t.rows} for sp, t in tables.items()}
    header = ["subject", "training_slices"] + [f"{sp}_{f}" for sp in spaces for f in ROW_FIELDS]

    def cells(r: SubjectRow) -> list[object]:
        return [r.close, r.nearest, f"{r.min_distance:.6g}", r.nearest_generated, r.nearest_training, r.flipped]

    rows = ([r.subject, r.training_slices] + [c for sp in spaces for c in cells(by_space[sp][r.subject])]
            for r in first.rows)
    return write_csv(path, header, rows)


def subjects_figure(
    path: str | os.PathLike,
    table: SubjectTable,
    generated: np.ndarray,
    training: ImageSource,
    *,
    num: int = 8,
) -> Path:
    """PNG of the most reproduced subjects, one row each: the closest generated image | that subject's slice."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = list(table.rows[:num])
    gen = check_uint8_batch(generated)
    real = check_uint8_batch(training.read(np.array([r.nearest_training for r in rows], np.int64)))
    fig = Figure(figsize=(4.4, 2.0 * max(len(rows), 1) + 0.4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(len(rows), 1), 2, squeeze=False)
    for k, r in enumerate(rows):
        slice_img = real[k][..., ::-1] if r.flipped else real[k]
        flagged = r.min_distance < table.threshold
        for c, (img, title) in enumerate((
            (gen[r.nearest_generated], f"generated {r.nearest_generated}" + (" *" if flagged else "")),
            (slice_img, f"subject {r.subject}: {r.close} close\ntrain {r.nearest_training}"
                        f"{' (flipped)' if r.flipped else ''}, d={r.min_distance:.3g}"),
        )):
            ax = axes[k][c]
            ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=255,
                      interpolation="nearest")
            ax.set_title(title, fontsize=7, color="red" if flagged and c == 0 else "black")
            ax.set_xticks([])
            ax.set_yticks([])
    if not rows:
        for ax in axes[0]:
            ax.axis("off")
    fig.suptitle(f"most reproduced subjects ({table.space}); * = closer than {table.threshold:.3g}", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_write(path) as f:
        fig.savefig(f, format="png")
    return path


__all__ = ["SubjectRow", "SubjectTable", "per_subject_min_d2", "subject_table", "write_subject_csv",
           "subjects_figure"]
