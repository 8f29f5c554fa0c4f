"""Patient-level audit of a dataset: subjects per class and split, slices per subject, and leaks.

A *split leak* is a subject whose slices sit in more than one split (train and test share a patient, so
test scores are optimistic); a *class leak* is a subject with slices in more than one class (a
labelling error: one patient cannot be both AD and NC).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class SubjectReport:
    num_samples: int
    num_subjects: int
    subjects_per_class: dict[str, int]
    subjects_per_split: dict[str, int]
    subjects_per_split_class: dict[str, dict[str, int]]  # split -> class -> subjects
    slices_min: int
    slices_median: float
    slices_max: int
    split_leaks: tuple[tuple[str, tuple[str, ...]], ...]  # (subject, its splits), worst first
    class_leaks: tuple[tuple[str, tuple[str, ...]], ...]  # (subject, its classes), worst first

    @property
    def has_leaks(self) -> bool:
        return bool(self.split_leaks or self.class_leaks)


def subject_report(
    subjects: Sequence[str],
    classes: Sequence[str] | None = None,
    splits: Sequence[str | None] | None = None,
) -> SubjectReport:
    """Audit per-sample subject IDs against per-sample class names and split names (None: not in a split)."""
    n = len(subjects)
    classes = list(classes) if classes is not None else [""] * n
    splits = list(splits) if splits is not None else [None] * n
    if not (len(classes) == len(splits) == n):
        raise ValueError("subject_report: subjects, classes and splits must have one entry per sample")
    slices = Counter(subjects)
    subj_classes: dict[str, set[str]] = defaultdict(set)
    subj_splits: dict[str, set[str]] = defaultdict(set)
    per_class: dict[str, set[str]] = defaultdict(set)
    per_split: dict[str, set[str]] = defaultdict(set)
    per_split_class: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for subj, cls, split in zip(subjects, classes, splits):
        subj_classes[subj].add(cls)
        per_class[cls].add(subj)
        if split is not None:
            subj_splits[subj].add(split)
            per_split[split].add(subj)
            per_split_class[split][cls].add(subj)
    counts = np.array(list(slices.values()), dtype=np.int64) if slices else np.zeros(0, np.int64)

    def leaks(groups: dict[str, set[str]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
        found = [(s, tuple(sorted(g))) for s, g in groups.items() if len(g) > 1]
        return tuple(sorted(found, key=lambda item: (-len(item[1]), -slices[item[0]], item[0])))

    return SubjectReport(
        num_samples=n,
        num_subjects=len(slices),
        subjects_per_class={c: len(s) for c, s in sorted(per_class.items())},
        subjects_per_split={k: len(s) for k, s in sorted(per_split.items(), key=lambda kv: _split_order(kv[0]))},
        subjects_per_split_class={
            k: {c: len(s) for c, s in sorted(v.items())}
            for k, v in sorted(per_split_class.items(), key=lambda kv: _split_order(kv[0]))
        },
        slices_min=int(counts.min()) if counts.size else 0,
        slices_median=float(np.median(counts)) if counts.size else 0.0,
        slices_max=int(counts.max()) if counts.size else 0,
        split_leaks=leaks(subj_splits),
        class_leaks=leaks(subj_classes),
    )


def _split_order(name: str) -> tuple[int, str]:
    order = {"train": 0, "val": 1, "validate": 1, "validation": 1, "test": 2}
    return (order.get(name, 3), name)


__all__ = ["SubjectReport", "subject_report"]
