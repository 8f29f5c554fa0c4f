"""Subject-level splits: every patient's slices land on one side only, stratified by class, by seed.

A split file is a CSV `source,subject,class,split` with one row per file (a NIfTI volume is one row);
`source` is the file's path below the dataset folder, so the file stays valid when the data moves.
"""

from __future__ import annotations

import math
import os
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from stylemri.data.tables import SourceIndex, read_csv, relative_keys
from stylemri.io import write_csv
from stylemri.errors import UserError

SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_HEADER: tuple[str, ...] = ("source", "subject", "class", "split")
SPLIT_ALIASES: dict[str, str] = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validate": "val", "validation": "val",
    "test": "test", "testing": "test",
}  # fmt: skip


def canonical_split(name: str) -> str | None:
    """`train`, `val` or `test` for any usual spelling (OASIS says `validate`); None when unknown."""
    return SPLIT_ALIASES.get(name.strip().lower())


@dataclass(frozen=True)
class SplitRow:
    source: str
    subject: str
    class_name: str
    split: str


@dataclass(frozen=True)
class SplitTable:
    """The rows of a split file, in file order."""

    rows: tuple[SplitRow, ...]
    path: str | None = None

    def subjects(self, split: str) -> set[str]:
        return {r.subject for r in self.rows if r.split == split}

    def counts(self) -> dict[str, dict[str, tuple[int, int]]]:
        """split -> class -> (subjects, files)."""
        subj: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        files: Counter[tuple[str, str]] = Counter()
        for r in self.rows:
            subj[r.split][r.class_name].add(r.subject)
            files[(r.split, r.class_name)] += 1
        return {
            split: {c: (len(subj[split][c]), files[(split, c)]) for c in sorted(subj[split])}
            for split in SPLITS
            if split in subj
        }

    def write(self, path: str | os.PathLike) -> Path:
        """Write as CSV, atomically."""
        return write_csv(path, SPLIT_HEADER, ((r.source, r.subject, r.class_name, r.split) for r in self.rows))


@dataclass(frozen=True)
class SplitAssignment:
    """A split file applied to a dataset: the split of every sample, and what did not match."""

    splits: tuple[str | None, ...]  # per sample; None when the file is not in the split file
    unlisted_files: tuple[str, ...]  # dataset files the split file does not mention
    stale_rows: tuple[str, ...]  # split-file sources that match no dataset file

    def indices(self, split: str) -> list[int]:
        name = canonical_split(split)
        if name is None:
            raise UserError(f"--split {split}: expected one of {', '.join(SPLITS)} with --split-file")
        return [i for i, s in enumerate(self.splits) if s == name]


def check_fractions(val: float, test: float) -> None:
    for name, value in (("--val", val), ("--test", test)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value < 1.0):
            raise UserError(f"{name} {value}: expected a fraction in [0, 1)")
    if val + test >= 1.0:
        raise UserError(f"--val {val} + --test {test}: expected a sum below 1 so that training keeps subjects")


def allocate(n: int, val: float, test: float) -> tuple[int, int, int]:
    """(train, val, test) subject counts for one stratum of `n` subjects.

    Rounded to nearest; a requested split gets at least one subject when the stratum has three or
    more, and training always keeps at least one.
    """
    n_test = int(math.floor(n * test + 0.5))
    n_val = int(math.floor(n * val + 0.5))
    if n >= 3:
        n_test = max(n_test, 1 if test > 0 else 0)
        n_val = max(n_val, 1 if val > 0 else 0)
    while n > 0 and n - n_test - n_val < 1:
        if n_val >= n_test and n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    return n - n_val - n_test, n_val, n_test


def make_split(
    sources: Sequence[str],
    subjects: Sequence[str],
    classes: Sequence[str],
    *,
    val: float = 0.1,
    test: float = 0.2,
    seed: int = 0,
    stratify: bool = True,
    root: str | os.PathLike | None = None,
) -> SplitTable:
    """Assign whole subjects to train/val/test; per-sample inputs (sources may repeat for volumes).

    With `stratify`, each class is split separately (a subject belongs to its most frequent class), so
    every split keeps the class balance. The same inputs and seed always give the same table.
    """
    check_fractions(val, test)
    if not (len(sources) == len(subjects) == len(classes)):
        raise ValueError("make_split: sources, subjects and classes must have one entry per sample")
    if not sources:
        raise UserError("no samples to split")
    file_info: dict[str, tuple[str, str]] = {}
    subject_classes: dict[str, Counter[str]] = defaultdict(Counter)
    for src, subj, cls in zip(sources, subjects, classes):
        file_info.setdefault(src, (subj, cls))
        subject_classes[subj][cls] += 1
    strata: dict[str, list[str]] = defaultdict(list)
    for subj in sorted(subject_classes):
        counts = subject_classes[subj]
        main_class = min(counts, key=lambda c: (-counts[c], c))
        strata[main_class if stratify else ""].append(subj)
    split_of: dict[str, str] = {}
    for stratum, members in sorted(strata.items()):
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(stratum.encode("utf-8"))])
        order = [members[i] for i in rng.permutation(len(members))]
        n_train, n_val, n_test = allocate(len(order), val, test)
        for i, subj in enumerate(order):
            split_of[subj] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    keys = relative_keys(list(file_info), root)
    keyed = sorted((key, subj, cls) for key, (subj, cls) in zip(keys, file_info.values()))
    rows = [SplitRow(key, subj, cls, split_of[subj]) for key, subj, cls in keyed]
    return SplitTable(rows=tuple(rows))


def read_split_file(path: str | os.PathLike) -> SplitTable:
    """Read a split file back, with a one-line UserError for anything malformed."""
    table = read_csv(path, what="split file (CSV: source,subject,class,split)")
    idx = {name: table.column(name) for name in SPLIT_HEADER}
    missing = [name for name in ("source", "subject", "split") if idx[name] < 0]
    if missing:
        raise UserError(
            f"{path}: missing column(s) {', '.join(missing)}; expected a split file with columns "
            f"{','.join(SPLIT_HEADER)} (see 'stylemri data split')"
        )
    if not table.rows:
        raise UserError(f"{path}: no rows (expected one row per file)")
    rows: list[SplitRow] = []
    seen: dict[str, tuple[str, int]] = {}
    for cells, line in zip(table.rows, table.line_numbers):
        source, subject, split = cells[idx["source"]], cells[idx["subject"]], canonical_split(cells[idx["split"]])
        cls = cells[idx["class"]] if idx["class"] >= 0 else ""
        if not source:
            raise UserError(f"{path}:{line}: empty source (expected a file path)")
        if not subject:
            raise UserError(f"{path}:{line}: empty subject for {source}")
        if split is None:
            raise UserError(f"{path}:{line}: split {cells[idx['split']]!r}, expected one of {', '.join(SPLITS)}")
        if source in seen:
            if seen[source][0] != split:
                raise UserError(
                    f"{path}:{line}: {source} is in split {split} here and in {seen[source][0]} on line {seen[source][1]}"
                )
            continue
        seen[source] = (split, line)
        rows.append(SplitRow(source, subject, cls, split))
    return SplitTable(rows=tuple(rows), path=str(path))


def assign_splits(sources: Sequence[str], table: SplitTable) -> SplitAssignment:
    """The split of every sample, matching split-file sources to dataset files by path suffix."""
    index = SourceIndex(sources)
    split_of: dict[str, str] = {}
    stale: set[str] = set()
    # Longer (more specific) keys last, so they win where a short key also matches.
    for row in sorted(table.rows, key=lambda r: len(r.source)):
        matches = index.match(row.source)
        if not matches:
            stale.add(row.source)
        for src in matches:
            split_of[src] = row.split
    unlisted = tuple(src for src in dict.fromkeys(sources) if src not in split_of)
    return SplitAssignment(
        splits=tuple(split_of.get(src) for src in sources),
        unlisted_files=unlisted,
        stale_rows=tuple(r.source for r in table.rows if r.source in stale),
    )


__all__ = ["SPLITS", "SPLIT_HEADER", "SPLIT_ALIASES", "canonical_split", "SplitRow", "SplitTable", "SplitAssignment", "check_fractions", "allocate",
           "make_split", "read_split_file", "assign_splits"]
