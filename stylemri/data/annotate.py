"""Per-file subject, class and split from the options `--subject-pattern`, `--labels`, `--split-file`.

The data layer calls `annotate_files` once per load with the files of the prepared cache; everything it
cannot match is counted and turned into report lines, never silently dropped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from stylemri.data.labels import LabelAssignment, LabelTable, apply_labels, read_label_table, subjects_from_table
from stylemri.data.leaks import SubjectReport, subject_report
from stylemri.data.splits import SplitAssignment, assign_splits, read_split_file
from stylemri.data.subjects import SubjectIDs, derive_subjects
from stylemri.errors import UserError

EXAMPLES = 3  # names quoted in a report line


@dataclass(frozen=True)
class FileAnnotations:
    """One entry per file (in the order given); `classes[i]` is None for a file the label table drops."""

    subject_ids: SubjectIDs
    classes: tuple[str | None, ...]
    splits: tuple[str, ...]  # split-file split (train/val/test), else the folder split; "" = none / unlisted
    class_names: tuple[str, ...]
    labels: LabelAssignment | None
    split_file: SplitAssignment | None
    notes: tuple[str, ...]  # what did not match, for the report

    @property
    def subjects(self) -> tuple[str, ...]:
        return self.subject_ids.subjects


def _examples(items: Sequence[str]) -> str:
    shown = ", ".join(os.path.basename(x) if os.sep in x or "/" in x else x for x in items[:EXAMPLES])
    return shown + (", ..." if len(items) > EXAMPLES else "")


def annotate_files(
    paths: Sequence[str],
    folder_classes: Sequence[str],
    folder_splits: Sequence[str],
    *,
    subject_pattern: str | None = None,
    labels: str | None = None,
    label_column: str | None = None,
    split_file: str | None = None,
) -> FileAnnotations:
    """Subjects, classes and splits of the files at `paths` (absolute), from folders and the options."""
    if not (len(paths) == len(folder_classes) == len(folder_splits)):
        raise ValueError("annotate_files: one class and one split per file")
    if label_column is not None and labels is None:
        raise UserError(f"--label-column {label_column}: expected --labels FILE.csv with it")
    notes: list[str] = []
    table = read_label_table(labels, label_column) if labels else None
    overrides = subjects_from_table(paths, table) if table is not None else {}
    ids = derive_subjects(paths, pattern=subject_pattern, table=overrides)
    classes: list[str | None] = list(folder_classes)
    class_names = tuple(sorted(set(folder_classes)))
    assignment = None
    if table is not None and table.label_column is not None:
        assignment = _labels_from_table(paths, ids, table)
        classes = list(assignment.labels)
        class_names = assignment.class_names
        notes += _label_notes(table, assignment)
    elif table is not None and not overrides:
        raise UserError(f"{labels}: no file row matches a file of the source (e.g. {_examples(list(table.file_subjects))})")
    splits = list(folder_splits)
    split_assignment = None
    if split_file:
        split_assignment, split_notes = _splits_from_file(paths, split_file)
        splits = [s or "" for s in split_assignment.splits]
        notes += split_notes
    if ids.fallback_count and not ids.none_derived:
        notes.append(f"{ids.fallback_count} file(s) match no subject rule; each counts as its own subject")
    return FileAnnotations(
        subject_ids=ids,
        classes=tuple(classes),
        splits=tuple(splits),
        class_names=class_names,
        labels=assignment,
        split_file=split_assignment,
        notes=tuple(notes),
    )


def _labels_from_table(paths: Sequence[str], ids: SubjectIDs, table: LabelTable) -> LabelAssignment:
    """The `--labels` class of every file; a table that labels no file of the source is refused."""
    assignment = apply_labels(paths, ids.subjects, table)
    if not assignment.class_names:
        raise UserError(
            f"{table.path}: no row matches a file of the source (keys are {table.key_kind} IDs, "
            f"e.g. {_examples(list(table.labels))}; the source's subjects are e.g. "
            f"{_examples(list(dict.fromkeys(ids.subjects)))})"
        )
    return assignment


def _label_notes(table: LabelTable, assignment: LabelAssignment) -> list[str]:
    """Report lines for the rows of the label table that were repeated, empty, unmatched or conflicting."""
    name = os.path.basename(table.path)
    notes = []
    if table.duplicate_rows:
        notes.append(f"{name}: {table.duplicate_rows} repeated row(s) with the same label (fine)")
    if table.empty_label_rows:
        notes.append(f"{name}: {table.empty_label_rows} row(s) with an empty {table.label_column} ignored")
    if assignment.unmatched_rows:
        notes.append(f"{name}: {len(assignment.unmatched_rows)} row(s) match no file "
                     f"(e.g. {_examples(assignment.unmatched_rows)})")
    if assignment.conflicting:
        shown = "; ".join(f"{k}: {'/'.join(table.conflicts[k])}" for k in assignment.conflicting[:EXAMPLES])
        notes.append(f"{name}: {len(assignment.conflicting)} {table.key_kind}(s) with conflicting rows left "
                     f"unlabelled ({shown})")
    if assignment.unlabelled_files:
        notes.append(f"{name}: {len(assignment.unlabelled_files)} file(s) match no row and are left out "
                     f"(e.g. {_examples(assignment.unlabelled_files)})")
    return notes


def _splits_from_file(paths: Sequence[str], split_file: str) -> tuple[SplitAssignment, list[str]]:
    """The `--split-file` split of every file, and report lines for unlisted files and stale rows."""
    split_table = read_split_file(split_file)
    split_assignment = assign_splits(paths, split_table)
    if all(s is None for s in split_assignment.splits):
        raise UserError(
            f"{split_file}: none of its {len(split_table.rows)} files is in the source "
            f"(e.g. {_examples([r.source for r in split_table.rows])}); expected the split file of this data"
        )
    name = os.path.basename(str(split_file))
    notes = []
    if split_assignment.unlisted_files:
        notes.append(f"{name}: {len(split_assignment.unlisted_files)} file(s) of the source are in no split "
                     f"and left out (e.g. {_examples(split_assignment.unlisted_files)})")
    if split_assignment.stale_rows:
        notes.append(f"{name}: {len(split_assignment.stale_rows)} row(s) match no file of the source "
                     f"(e.g. {_examples(split_assignment.stale_rows)})")
    return split_assignment, notes


@dataclass(frozen=True)
class SubjectSummary:
    """The patient-level view of a source, for `data inspect` and the run logs."""

    rules: dict[str, int]  # subject rule -> files it named
    none_derived: bool  # no file matched a subject rule: every file is its own subject
    fallback_files: int
    selected_subjects: int  # distinct subjects in the selected samples
    whole: SubjectReport  # whole source (every split, every class): per class/split counts and leaks


@dataclass(frozen=True)
class SampleAnnotations:
    """Per-sample arrays for the cache's samples (whole source, before split/class selection)."""

    subjects: np.ndarray  # object array of str
    labels: np.ndarray  # int64 code into `class_names`; -1: the label table drops the sample
    class_names: tuple[str, ...]
    splits: np.ndarray  # object array of split names ("" = none / not in the split file)
    files: FileAnnotations

    def summary(self, selected_rows: np.ndarray) -> SubjectSummary:
        keep = self.labels >= 0
        names = np.asarray(self.class_names, dtype=object)
        whole = subject_report(
            self.subjects[keep].tolist(),
            names[self.labels[keep]].tolist(),
            [s or None for s in self.splits[keep].tolist()],
        )
        ids = self.files.subject_ids
        return SubjectSummary(
            rules=ids.rule_counts(),
            none_derived=ids.none_derived,
            fallback_files=ids.fallback_count,
            selected_subjects=len(set(self.subjects[selected_rows].tolist())),
            whole=whole,
        )


def annotate_samples(
    paths: Sequence[str],
    folder_classes: Sequence[str],
    folder_splits: Sequence[str],
    sample_files: np.ndarray,
    sample_labels: np.ndarray,
    class_names: Sequence[str],
    *,
    subject_pattern: str | None = None,
    labels: str | None = None,
    label_column: str | None = None,
    split_file: str | None = None,
) -> SampleAnnotations:
    """`annotate_files`, then spread over the samples (`sample_files`: each sample's file index)."""
    files = annotate_files(paths, folder_classes, folder_splits, subject_pattern=subject_pattern, labels=labels,
                           label_column=label_column, split_file=split_file)
    subjects = np.asarray(files.subjects, dtype=object)[sample_files]
    if files.labels is not None:
        code = {c: i for i, c in enumerate(files.class_names)}
        per_file = np.array([code[c] if c is not None else -1 for c in files.classes], np.int64)
        out_labels, out_names = per_file[sample_files], files.class_names
    else:
        out_labels, out_names = np.asarray(sample_labels, np.int64), tuple(class_names)
    splits = np.asarray(files.splits, dtype=object)[sample_files]
    return SampleAnnotations(subjects, out_labels, out_names, splits, files)


__all__ = ["FileAnnotations", "annotate_files", "SubjectSummary", "SampleAnnotations", "annotate_samples"]
