"""Class labels from a clinical table: `--labels FILE.csv [--label-column diagnosis]`.

The table has a `subject` or a `file` column (matched case-insensitively, so an ADNI export's `Subject`
works) and one or more label columns. A table with both `file` and `subject` columns also says which
subject each file belongs to, which overrides the file-name rules. Nothing is silently dropped: rows
that match no file, files that match no row, rows with an empty label and keys with conflicting labels
are all counted and reported.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from stylemri.data.tables import CsvTable, SourceIndex, read_csv
from stylemri.errors import UserError

KEY_COLUMNS: tuple[str, ...] = ("file", "subject")


@dataclass(frozen=True)
class LabelTable:
    """A label table, read and checked: one label per key (conflicting keys set aside)."""

    path: str
    key_kind: str  # "file" or "subject"
    label_column: str | None  # None: a file -> subject table without labels
    labels: dict[str, str]  # key -> label, conflicting keys removed
    file_subjects: dict[str, str]  # file key -> subject (tables with both file and subject columns)
    conflicts: dict[str, tuple[str, ...]]  # key -> the distinct labels (or subjects) its rows disagree on
    num_rows: int
    empty_label_rows: int  # rows whose label cell is empty (ignored)
    duplicate_rows: int  # rows repeating a key with the same label (ADNI: one row per visit)


@dataclass(frozen=True)
class LabelAssignment:
    """A label table applied to a dataset: per-sample label names and what did not match."""

    labels: tuple[str | None, ...]  # per sample; None when no row (or only conflicting rows) gives one
    class_names: tuple[str, ...]  # sorted labels that occur in the dataset
    unmatched_rows: tuple[str, ...]  # table keys that match no file of the dataset
    unlabelled_files: tuple[str, ...]  # dataset files no row labels (conflicting ones included)
    conflicting: tuple[str, ...]  # table keys whose rows disagree, that match dataset files

    def label_ids(self) -> np.ndarray:
        """int64 index into `class_names` per sample, -1 where unlabelled."""
        lookup = {name: i for i, name in enumerate(self.class_names)}
        return np.array([lookup[x] if x is not None else -1 for x in self.labels], dtype=np.int64)


def read_label_table(path: str | os.PathLike, label_column: str | None = None) -> LabelTable:
    """Read `--labels`; `label_column` picks the class column (needed when there are several)."""
    table = read_csv(path, what="label table (CSV with a subject or file column and label columns)")
    file_col, subject_col = table.column("file"), table.column("subject")
    if file_col < 0 and subject_col < 0:
        raise UserError(
            f"{path}: no 'subject' or 'file' column (columns: {', '.join(table.header)}); "
            "expected one of them to say which images each row labels"
        )
    key_kind = "file" if file_col >= 0 else "subject"
    key_col = file_col if file_col >= 0 else subject_col
    col = _label_column(table, path, label_column, key_kind, key_col, subject_col)
    values, subjects, order, empty, duplicates = _read_rows(table, key_kind, key_col, subject_col, col)
    conflicts: dict[str, tuple[str, ...]] = {}
    for key, labels in values.items():
        if len(labels) > 1:
            conflicts[key] = tuple(sorted(labels))
    subject_conflicts = {key for key, subjs in subjects.items() if len(subjs) > 1}
    for key in subject_conflicts:
        conflicts[key] = tuple(sorted(subjects[key]))
    ordered_keys = list(dict.fromkeys(order))
    return LabelTable(
        path=str(path),
        key_kind=key_kind,
        label_column=table.header[col] if col >= 0 else None,
        labels={k: next(iter(values[k])) for k in ordered_keys if k in values and k not in conflicts},
        file_subjects={k: next(iter(s)) for k, s in subjects.items() if k not in subject_conflicts},
        conflicts=conflicts,
        num_rows=len(table.rows),
        empty_label_rows=empty,
        duplicate_rows=duplicates,
    )


def _label_column(table: CsvTable, path: str | os.PathLike, label_column: str | None, key_kind: str, key_col: int,
                  subject_col: int) -> int:
    """The index of the class column: --label-column, else the only non-key column; -1 for a pure
    file -> subject table."""
    candidates = [h for h in table.header if h.lower() not in KEY_COLUMNS]
    if label_column is not None:
        col = table.column(label_column)
        if col < 0:
            raise UserError(
                f"--label-column {label_column}: no such column in {path} "
                f"(label columns: {', '.join(candidates) or 'none'})"
            )
        if table.header[col].lower() in KEY_COLUMNS:
            raise UserError(f"--label-column {label_column}: that column identifies images; expected a label column")
        return col
    if len(candidates) == 1:
        return table.column(candidates[0])
    if not candidates and key_kind == "file" and subject_col >= 0:
        return -1  # a pure file -> subject table
    if not candidates:
        raise UserError(f"{path}: no label column besides {table.header[key_col]}; expected e.g. a diagnosis column")
    raise UserError(
        f"{path}: several label columns ({', '.join(candidates)}); choose one with --label-column"
    )


def _read_rows(table: CsvTable, key_kind: str, key_col: int, subject_col: int, col: int
               ) -> tuple[dict[str, set[str]], dict[str, set[str]], list[str], int, int]:
    """Per key the labels and subjects its rows give, the keys in row order, and the counts of rows with an
    empty key or label and of rows repeating a key with the same label."""
    values: dict[str, set[str]] = defaultdict(set)
    subjects: dict[str, set[str]] = defaultdict(set)
    order: list[str] = []
    empty = duplicates = 0
    for cells in table.rows:
        key = cells[key_col]
        if not key:
            empty += 1
            continue
        if key_kind == "file" and subject_col >= 0 and cells[subject_col]:
            subjects[key].add(cells[subject_col])
        if col < 0:
            order.append(key)
            continue
        label = cells[col]
        if not label:
            empty += 1
            continue
        if key in values and label in values[key]:
            duplicates += 1
        values[key].add(label)
        order.append(key)
    return values, subjects, order, empty, duplicates


def subjects_from_table(sources: Sequence[str], table: LabelTable) -> dict[str, str]:
    """source -> subject for the dataset files a file-keyed table names with a subject."""
    if not table.file_subjects:
        return {}
    index = SourceIndex(sources)
    out: dict[str, str] = {}
    for key in sorted(table.file_subjects, key=len):
        for src in index.match(key):
            out[src] = table.file_subjects[key]
    return out


def apply_labels(sources: Sequence[str], subjects: Sequence[str], table: LabelTable) -> LabelAssignment:
    """Label every sample from the table: by subject ID, or by file path suffix for `file` tables."""
    if len(sources) != len(subjects):
        raise ValueError("apply_labels: sources and subjects must have one entry per sample")
    if table.label_column is None:
        raise ValueError(f"{table.path}: a table without a label column gives subjects, not labels")
    per_source: dict[str, str] = {}
    matched_keys: set[str] = set()
    conflicting_hit: set[str] = set()
    if table.key_kind == "subject":
        present = set(subjects)
        matched_keys = {k for k in table.labels if k in present}
        conflicting_hit = {k for k in table.conflicts if k in present}
        labels = [table.labels.get(s) for s in subjects]
    else:
        index = SourceIndex(sources)
        for key in sorted(table.labels, key=len):  # longer (more specific) keys win
            hits = index.match(key)
            if hits:
                matched_keys.add(key)
            for src in hits:
                per_source[src] = table.labels[key]
        for key in table.conflicts:
            hits = index.match(key)
            if hits:
                conflicting_hit.add(key)
            for src in hits:
                per_source.pop(src, None)
        labels = [per_source.get(src) for src in sources]
    unlabelled = tuple(dict.fromkeys(src for src, lab in zip(sources, labels) if lab is None))
    return LabelAssignment(
        labels=tuple(labels),
        class_names=tuple(sorted({x for x in labels if x is not None})),
        unmatched_rows=tuple(k for k in table.labels if k not in matched_keys),
        unlabelled_files=unlabelled,
        conflicting=tuple(sorted(conflicting_hit)),
    )


__all__ = ["KEY_COLUMNS", "LabelTable", "LabelAssignment", "read_label_table", "subjects_from_table",
           "apply_labels"]
