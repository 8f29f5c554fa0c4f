"""Memorization: is any generated image a copy of a training image (a patient)?

For every generated image we find its nearest training image in pixel space (RMS intensity difference in
[0, 1] units; by default also against horizontally flipped training images, since training used flips)
and, when features are given, in Inception feature space (Euclidean). The yardstick is the typical
real-to-real nearest distance: for a seeded sample of training images, the distance to their nearest
*other* training image — another subject's image when subject IDs are given, since adjacent slices of
one subject are near-duplicates by nature. A generated image closer to the training set than that
(the `quantile` of the real-to-real distances, median by default) is flagged; the flagged fraction,
the distances and the closest pairs (a figure) are what to report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

from stylemri.io import atomic_write, make_grid
from stylemri.metrics.metric_utils import ImageSource, check_uint8_batch

# (start index, reference vectors (b, D) float32) for each reference batch
Reference = Callable[[], Iterator[tuple[int, np.ndarray]]]


@dataclass(frozen=True)
class SpaceResult:
    """Nearest-neighbour results in one space (pixel or feature)."""

    nearest_index: np.ndarray  # (N,) training index of each generated image's nearest neighbour
    distance: np.ndarray  # (N,) its distance
    flipped: np.ndarray  # (N,) bool: the nearest was the horizontally flipped training image
    baseline: np.ndarray  # real-to-real nearest distances of the baseline sample
    quantile: float
    unit: str

    @property
    def threshold(self) -> float:
        return float(np.quantile(self.baseline, self.quantile))

    @property
    def closer(self) -> np.ndarray:
        return self.distance < self.threshold

    def summary(self, top: int = 5) -> dict[str, Any]:
        order = np.argsort(self.distance, kind="stable")[:top]
        return {
            "unit": self.unit,
            "threshold": self.threshold,
            "threshold_quantile": self.quantile,
            "baseline_real_nn": {"num": int(self.baseline.size), "min": float(self.baseline.min()),
                                 "median": float(np.median(self.baseline))},
            "fraction_closer": float(self.closer.mean()),
            "num_closer": int(self.closer.sum()),
            "generated_nn": {"min": float(self.distance.min()), "median": float(np.median(self.distance))},
            "closest": [{"generated": int(i), "training": int(self.nearest_index[i]),
                         "distance": float(self.distance[i]), "flipped": bool(self.flipped[i])} for i in order],
        }


@dataclass(frozen=True)
class MemorizationResult:
    spaces: dict[str, SpaceResult]
    num_generated: int
    num_training: int
    subject_ids: np.ndarray | None = field(default=None, repr=False)  # (num_training,) per training image
    notes: tuple[str, ...] = ()  # why a figure is missing or what limits it (one subject only, ...)

    def nearest_subject(self, space: str = "pixel") -> np.ndarray | None:
        if self.subject_ids is None:
            return None
        return self.subject_ids[self.spaces[space].nearest_index]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"num_generated": self.num_generated, "num_training": self.num_training,
                               "baseline_excludes_same_subject": self.subject_ids is not None}
        for name, res in self.spaces.items():
            out[name] = res.summary()
            if self.subject_ids is not None:
                subj = self.nearest_subject(name)
                out[name]["subjects_matched_by_flagged"] = int(np.unique(subj[res.closer]).size)
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One row per generated image (for a CSV): nearest training image, distance, flag, per space."""
        rows = []
        for i in range(self.num_generated):
            row: dict[str, Any] = {"generated": i}
            for name, res in self.spaces.items():
                row[f"{name}_nearest"] = int(res.nearest_index[i])
                row[f"{name}_distance"] = float(res.distance[i])
                row[f"{name}_closer_than_real"] = bool(res.closer[i])
                if self.subject_ids is not None:
                    row[f"{name}_subject"] = str(self.subject_ids[res.nearest_index[i]])
            rows.append(row)
        return rows


def _nearest(
    queries: np.ndarray,
    reference: Reference,
    *,
    exclude_index: np.ndarray | None = None,
    query_subjects: np.ndarray | None = None,
    reference_subjects: np.ndarray | None = None,
    device: str | torch.device = "cpu",
    query_chunk: int = 512,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """argmin over the reference of the Euclidean distance, for float32 queries (N, D).

    A reference batch may be yielded twice with the same start (plain and flipped); `flipped` says which
    pass won. Rows with `exclude_index[i] = j` never match reference j, and never a reference of the same
    subject when subjects are given. Returns (index, squared distance (float32 estimate), flipped)."""
    n = queries.shape[0]
    best_d2 = torch.full((n,), float("inf"), dtype=torch.float32)
    best_idx = torch.full((n,), -1, dtype=torch.int64)
    best_flip = torch.zeros(n, dtype=torch.bool)
    q_all = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(device)  # moved once
    q_sq = (q_all * q_all).sum(dim=1, keepdim=True)
    excl = None if exclude_index is None else torch.from_numpy(np.asarray(exclude_index, np.int64))
    seen: set[int] = set()
    for start, ref in reference():
        flip = start in seen
        seen.add(start)
        r = torch.from_numpy(np.ascontiguousarray(ref, dtype=np.float32)).to(device)
        r2 = (r * r).sum(dim=1)
        ref_idx = torch.arange(start, start + r.shape[0])
        for qs in range(0, n, query_chunk):
            q = q_all[qs:qs + query_chunk]
            d2 = (q_sq[qs:qs + query_chunk] + r2[None, :] - 2.0 * (q @ r.T)).clamp_min_(0).cpu()
            if excl is not None:
                d2[excl[qs:qs + query_chunk, None] == ref_idx[None, :]] = float("inf")
            if query_subjects is not None and reference_subjects is not None:
                qsub = query_subjects[qs:qs + query_chunk, None]
                rsub = reference_subjects[start:start + r.shape[0]][None, :]
                d2[torch.from_numpy(qsub == rsub)] = float("inf")
            val, arg = d2.min(dim=1)
            rows = slice(qs, qs + len(val))
            better = val < best_d2[rows]
            best_d2[rows] = torch.where(better, val, best_d2[rows])
            best_idx[rows] = torch.where(better, arg + start, best_idx[rows])
            best_flip[rows] = torch.where(better, torch.tensor(flip), best_flip[rows])
    return best_idx.numpy(), best_d2.numpy(), best_flip.numpy()


def _pixels(images: np.ndarray, flip: bool = False) -> np.ndarray:
    x = images[..., ::-1] if flip else images
    return x.reshape(len(x), -1).astype(np.float32) / 255.0


def _exact_rms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    diff = a.reshape(len(a), -1).astype(np.float64) - b.reshape(len(b), -1).astype(np.float64)
    return np.sqrt(np.mean(np.square(diff / 255.0), axis=1))


def memorization(
    generated: np.ndarray,
    training: ImageSource,
    *,
    generated_features: np.ndarray | None = None,
    training_features: np.ndarray | None = None,
    subject_ids: np.ndarray | None = None,
    xflip: bool = True,
    num_baseline: int = 1000,
    quantile: float = 0.5,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> MemorizationResult:
    """Nearest training image of every generated image (pixels; features when given), against the
    typical real-to-real nearest distance of `num_baseline` seeded training images."""
    gen = check_uint8_batch(generated, "generated images")
    if gen.shape[1:] != (training.channels, training.resolution, training.resolution):
        raise ValueError(f"generated images {gen.shape[1:]} and training images "
                         f"{(training.channels, training.resolution, training.resolution)} differ in shape")
    if training.num < 2:
        raise ValueError("memorization needs at least 2 training images")
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile {quantile}: expected a value in (0, 1)")
    subjects, notes = _training_subjects(subject_ids, training.num)
    rng = np.random.default_rng(seed)
    base_idx = np.sort(rng.choice(training.num, min(num_baseline, training.num), replace=False))
    # The queries: the generated images, then the baseline sample (which must not find itself, nor its subject).
    n = len(gen)
    excl = np.concatenate([np.full(n, -1, np.int64), base_idx])
    qsub = None if subjects is None else np.concatenate([np.full(n, "\0"), subjects[base_idx]])
    search = dict(exclude_index=excl, query_subjects=qsub, reference_subjects=subjects, device=device)
    spaces = {"pixel": _pixel_space(gen, training, base_idx, search, xflip=xflip, quantile=quantile,
                                    batch_size=batch_size)}
    if generated_features is not None and training_features is not None:
        spaces["feature"] = _feature_space(generated_features, training_features, n, training.num, base_idx,
                                           search, quantile=quantile, batch_size=batch_size)
    return MemorizationResult(spaces=spaces, num_generated=n, num_training=training.num, subject_ids=subjects,
                              notes=notes)


def _training_subjects(subject_ids: np.ndarray | None, num_training: int) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """The training images' subjects as strings (None: every image its own subject) and a note when there
    is only one subject, whose neighbouring slices would otherwise leave the baseline without a neighbour."""
    subjects = None if subject_ids is None else np.asarray(subject_ids).astype(str)
    if subjects is not None and subjects.shape != (num_training,):
        raise ValueError(f"subject_ids: expected one per training image ({num_training}), got {subjects.shape}")
    if subjects is not None and np.unique(subjects).size < 2:  # e.g. builtin:mni152, one template brain
        return None, (f"the training images come from one subject ({subjects[0]}): per-image results only, with a "
                      "real-to-real baseline that excludes just the image itself (neighbouring slices of one brain "
                      "are near-copies: a small yardstick, so the flagged fraction is a lower bound); subject-level "
                      "figures need several subjects",)
    return subjects, ()


def _pixel_space(gen: np.ndarray, training: ImageSource, base_idx: np.ndarray, search: dict[str, Any], *,
                 xflip: bool, quantile: float, batch_size: int) -> SpaceResult:
    """Pixel space: one pass over the training set for the generated images and the baseline sample together."""
    base_imgs = check_uint8_batch(training.read(base_idx), training.name)

    def pixel_reference() -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, training.num, batch_size):
            imgs = check_uint8_batch(training.read(np.arange(start, min(start + batch_size, training.num))))
            yield start, _pixels(imgs)
            if xflip:
                yield start, _pixels(imgs, flip=True)

    n = len(gen)
    queries = np.concatenate([_pixels(gen), _pixels(base_imgs)], axis=0)
    idx, d2, flipped = _nearest(queries, pixel_reference, **search)
    gen_idx, gen_flip = idx[:n], flipped[:n]
    nearest_imgs = check_uint8_batch(training.read(gen_idx))
    nearest_imgs = np.where(gen_flip[:, None, None, None], nearest_imgs[..., ::-1], nearest_imgs)
    gen_dist = _exact_rms(gen, nearest_imgs)  # exact float64 distance of the chosen pair
    base_ok = np.isfinite(d2[n:])
    if not base_ok.any():
        raise ValueError("memorization: no training image has a neighbour from another subject (one subject only?)")
    base_dist = np.sqrt(d2[n:][base_ok].astype(np.float64) / queries.shape[1])
    return SpaceResult(gen_idx, gen_dist, gen_flip, base_dist, quantile, "RMS intensity difference, [0, 1] scale")


def _feature_space(generated_features: np.ndarray, training_features: np.ndarray, n: int, num_training: int,
                   base_idx: np.ndarray, search: dict[str, Any], *, quantile: float, batch_size: int) -> SpaceResult:
    """The same search in a feature space (Inception pool3): no flips, distances as they are."""
    gf = np.asarray(generated_features, np.float32)
    tf = np.asarray(training_features, np.float32)
    if gf.shape[0] != n or tf.shape[0] != num_training or gf.shape[1] != tf.shape[1]:
        raise ValueError(f"features {gf.shape} / {tf.shape} do not match {n} generated / {num_training} training images")

    def feature_reference() -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, num_training, batch_size):
            yield start, tf[start:start + batch_size]

    fq = np.concatenate([gf, tf[base_idx]], axis=0)
    fidx, fd2, _ = _nearest(fq, feature_reference, **search)
    fdist = np.linalg.norm(gf.astype(np.float64) - tf[fidx[:n]].astype(np.float64), axis=1)
    fbase = np.sqrt(fd2[n:][np.isfinite(fd2[n:])].astype(np.float64))
    return SpaceResult(fidx[:n], fdist, np.zeros(n, bool), fbase, quantile, "Inception pool3 Euclidean")


def closest_pairs_figure(
    path: str | os.PathLike,
    result: MemorizationResult,
    generated: np.ndarray,
    training: ImageSource,
    *,
    space: str = "pixel",
    num: int = 8,
) -> None:
    """PNG of the `num` closest (generated, nearest training) pairs: generated on top, training below."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    res = result.spaces[space]
    order = np.argsort(res.distance, kind="stable")[:num]
    gen = check_uint8_batch(generated)[order]
    train = check_uint8_batch(training.read(res.nearest_index[order]))
    train = np.where(res.flipped[order][:, None, None, None], train[..., ::-1], train)
    k = len(order)
    fig = Figure(figsize=(1.6 * k + 0.4, 3.9), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, k, squeeze=False)
    for col in range(k):
        for row, img in enumerate((gen[col], train[col])):
            ax = axes[row][col]
            tile = make_grid(img[None], ncols=1, pad=0)
            ax.imshow(tile[..., 0] if tile.shape[2] == 1 else tile, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        i = int(order[col])
        flag = " *" if res.closer[i] else ""
        axes[0][col].set_title(f"gen {i}\nd={res.distance[i]:.3g}{flag}", fontsize=7)
        subj = "" if result.subject_ids is None else f"\nsubject {result.subject_ids[res.nearest_index[i]]}"
        flip = " (flipped)" if res.flipped[i] else ""
        axes[1][col].set_xlabel(f"train {int(res.nearest_index[i])}{flip}{subj}", fontsize=7)
    fig.suptitle(f"closest pairs ({space}); * = closer than real-to-real q{res.quantile:g} = {res.threshold:.3g}",
                 fontsize=8)
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png")
