"""Clinical covariates (age, sex, MMSE, ...) from the `--labels` table: `--condition age,sex,mmse`.

Rows are matched to images as class labels are (stylemri.data.labels): by the table's `file` column (path
suffix, longer keys win) or else by its `subject` column against the subject IDs of stylemri.data.subjects.
A column is continuous when its values are numbers, categorical otherwise. The model sees one vector per
image: each continuous value standardised with the training mean and std, each categorical value one-hot,
then (with `--missing indicator`) one 0/1 "missing" entry per column. `--missing drop` leaves out images
without a row or with any value missing; both are counted in the data report, never dropped silently.
The scaling (`config.CovariateScaling`) is fitted once on the training selection, stored in the run's
config.json and used unchanged by every later command, which also refuses values outside the training range.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from stylemri.config import CovariateColumn, CovariateScaling, check_missing_mode, parse_condition
from stylemri.data.labels import KEY_COLUMNS
from stylemri.data.tables import SourceIndex, read_csv
from stylemri.errors import UserError

MISSING_MODES = ("drop", "indicator")
MISSING_TOKENS = frozenset({"", "na", "nan", "n/a", "none", "null", "-", "?"})


@dataclass(frozen=True)
class CovariateTable:
    """The `--condition` columns of a table: one value tuple per key (None = missing or conflicting)."""

    path: str
    key_kind: str  # file | subject
    names: tuple[str, ...]  # the columns as the header spells them
    kinds: tuple[str, ...]  # continuous | categorical, per column
    values: dict[str, tuple[Any, ...]]  # key -> per column a float (continuous), a str or None
    conflicting: int  # (key, column) pairs whose rows disagree: treated as missing


@dataclass(frozen=True)
class SampleCovariates:
    """The covariates of a dataset's samples: raw values, encoded vectors and the scaling that encoded them."""

    scaling: CovariateScaling
    vectors: np.ndarray  # (N, scaling.dim) float32: what the networks are fed
    values: dict[str, np.ndarray]  # column -> per sample float (nan = missing) or str (None = missing)


def read_covariate_table(path: str | os.PathLike, columns: Sequence[str]) -> CovariateTable:
    """Read the `columns` of the table at `path`, deciding each column's kind from its values."""
    table = read_csv(path, what="covariate table (CSV with a subject or file column and covariate columns)")
    file_col, subject_col = table.column("file"), table.column("subject")
    if file_col < 0 and subject_col < 0:
        raise UserError(f"{path}: no 'subject' or 'file' column (columns: {', '.join(table.header)}); expected one "
                        "of them to say which images each row describes")
    key_col = file_col if file_col >= 0 else subject_col
    others = [h for h in table.header if h.lower() not in KEY_COLUMNS]
    cols = []
    for name in columns:
        col = table.column(name)
        if col < 0:
            raise UserError(f"--condition {name}: no such column in {path} (columns: {', '.join(others) or 'none'})")
        if table.header[col].lower() in KEY_COLUMNS:
            raise UserError(f"--condition {name}: that column identifies images; expected a covariate column")
        cols.append(col)
    kinds = tuple(_column_kind(table, col) for col in cols)
    seen: dict[str, list[set[Any]]] = defaultdict(lambda: [set() for _ in cols])
    for cells in table.rows:
        key = cells[key_col]
        if not key:
            continue
        for j, (col, kind) in enumerate(zip(cols, kinds)):
            value = _cell(cells[col], kind)
            if value is not None:
                seen[key][j].add(value)
    values: dict[str, tuple[Any, ...]] = {}
    conflicting = 0
    for key, per_col in seen.items():
        conflicting += sum(len(s) > 1 for s in per_col)
        values[key] = tuple(next(iter(s)) if len(s) == 1 else None for s in per_col)
    return CovariateTable(str(path), "file" if file_col >= 0 else "subject", tuple(table.header[c] for c in cols),
                          kinds, values, conflicting)


def _column_kind(table: Any, col: int) -> str:
    """Numbers (most non-missing cells parse) -> continuous, else categorical; a stray word in a numeric
    column is an error naming its line, not a new category."""
    cells = [(cells[col], line) for cells, line in zip(table.rows, table.line_numbers)
             if cells[col].strip().lower() not in MISSING_TOKENS]
    numeric = [_number(v) is not None for v, _ in cells]
    if not cells or sum(numeric) * 2 <= len(cells):
        return "categorical"
    for (value, line), ok in zip(cells, numeric):
        if not ok:
            raise UserError(f"{table.path}:{line}: {table.header[col]} {value!r} is not a number; expected numbers in "
                            f"this numeric column (leave the cell empty, NA or NaN for a missing value)")
    return "continuous"


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _cell(text: str, kind: str) -> Any:
    if text.strip().lower() in MISSING_TOKENS:
        return None
    return _number(text) if kind == "continuous" else text.strip()


def match_covariates(table: CovariateTable, files: Sequence[str], file_subjects: Sequence[str]
                     ) -> tuple[list[tuple[Any, ...] | None], int]:
    """Per file its value tuple (None: no row), by file path suffix or by subject; and the rows matching nothing."""
    if table.key_kind == "subject":
        per_file = [table.values.get(s) for s in file_subjects]
        present = set(file_subjects)
        return per_file, sum(k not in present for k in table.values)
    index = SourceIndex(files)
    found: dict[str, tuple[Any, ...]] = {}
    unmatched = 0
    for key in sorted(table.values, key=len):  # longer (more specific) keys win
        hits = index.match(key)
        unmatched += not hits
        for src in hits:
            found[src] = table.values[key]
    return [found.get(f) for f in files], unmatched


def sample_values(table: CovariateTable, per_file: Sequence[tuple[Any, ...] | None], sample_files: np.ndarray
                  ) -> dict[str, np.ndarray]:
    """column -> per sample value (float with nan, or object with None), spread from the files."""
    out: dict[str, np.ndarray] = {}
    for j, (name, kind) in enumerate(zip(table.names, table.kinds)):
        if kind == "continuous":
            col = np.array([math.nan if v is None or v[j] is None else v[j] for v in per_file], np.float64)
        else:
            col = np.array([None if v is None else v[j] for v in per_file], dtype=object)
        out[name] = col[sample_files]
    return out


def missing_mask(values: Mapping[str, np.ndarray]) -> np.ndarray:
    """(N, columns) bool: which value of which sample is missing."""
    cols = [np.isnan(v) if v.dtype.kind == "f" else np.array([x is None for x in v], bool) for v in values.values()]
    return np.stack(cols, axis=1) if cols else np.zeros((0, 0), bool)


def fit_scaling(table: CovariateTable, values: Mapping[str, np.ndarray], missing: str) -> CovariateScaling:
    """Mean/std/range (continuous) and categories (categorical) of the training selection's values."""
    columns = []
    for name, kind in zip(table.names, table.kinds):
        v = values[name]
        if kind == "continuous":
            known = v[~np.isnan(v)]
            if known.size and float(known.std()) > 0:
                columns.append(CovariateColumn(name, kind, float(known.mean()), float(known.std()), float(known.min()),
                                               float(known.max()), missing=int(np.isnan(v).sum())))
                continue
            shown = f"the same value {known[0]:g}" if known.size else "no value"
        else:
            cats = tuple(sorted({x for x in v if x is not None}))
            if len(cats) > 1:
                columns.append(CovariateColumn(name, kind, categories=cats,
                                               missing=int(sum(x is None for x in v))))
                continue
            shown = f"the same value {cats[0]!r}" if cats else "no value"
        raise UserError(f"--condition {name}: every training image has {shown} in {table.path}; expected at least "
                        "two different values to condition on")
    return CovariateScaling(tuple(columns), missing)


def encode(scaling: CovariateScaling, values: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per sample the covariate vector (N, scaling.dim) float32; unseen categories count as missing."""
    n = len(next(iter(values.values()))) if values else 0
    parts, flags = [], []
    for col in scaling.columns:
        v = values[col.name]
        if col.kind == "continuous":
            known = ~np.isnan(v)
            parts.append(np.where(known, (np.nan_to_num(v) - col.mean) / col.std, 0.0)[:, None])
        else:
            lookup = {c: i for i, c in enumerate(col.categories)}
            hot = np.zeros((n, len(col.categories)))
            codes = np.array([lookup.get(x, -1) if x is not None else -1 for x in v], np.int64)
            known = codes >= 0
            hot[np.flatnonzero(known), codes[known]] = 1.0
            parts.append(hot)
        flags.append((~known).astype(np.float64)[:, None])
    if scaling.missing == "indicator":
        parts += flags
    return np.concatenate(parts, axis=1).astype(np.float32) if parts else np.zeros((n, 0), np.float32)


def parse_setting(text: str, flag: str = "--set") -> dict[str, str]:
    """`age=80,sex=F` -> {"age": "80", "sex": "F"}."""
    out: dict[str, str] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UserError(f"{flag} {text}: expected NAME=VALUE pairs separated by commas, like age=80,sex=F")
        out[name.strip()] = value.strip()
    return out


def parse_walk(text: str) -> tuple[str, float, float]:
    """`--walk age=60:90` -> ("age", 60.0, 90.0)."""
    name, sep, span = text.partition("=")
    start, colon, stop = span.partition(":")
    a, b = _number(start), _number(stop)
    if not sep or not colon or not name.strip() or a is None or b is None:
        raise UserError(f"--walk {text}: expected NAME=START:STOP with numbers, like age=60:90")
    return name.strip(), a, b


def setting_values(scaling: CovariateScaling, setting: Mapping[str, Any], flag: str = "--set"
                   ) -> dict[str, np.ndarray]:
    """One generation setting as one-sample `values` for `encode`, checked against what the model learned."""
    columns = {c.name.lower(): c for c in scaling.columns}
    trained = ", ".join(scaling.names) or "none"
    given: dict[str, Any] = {}
    for name, value in setting.items():
        col = columns.get(str(name).lower())
        if col is None:
            raise UserError(f"{flag} {name}={value}: the model was not trained with {name} (its covariates: {trained})")
        given[col.name] = value
    out: dict[str, np.ndarray] = {}
    for col in scaling.columns:
        value = given.get(col.name)
        if value is None or (isinstance(value, str) and value.strip().lower() in MISSING_TOKENS):
            if scaling.missing != "indicator":
                example = f"{col.categories[0]}" if col.kind == "categorical" else f"{(col.low + col.high) / 2:g}"
                raise UserError(f"{flag}: no value for {col.name}; the model was trained with {trained} and without "
                                f"missing values, expected e.g. {col.name}={example}")
            out[col.name] = np.array([math.nan]) if col.kind == "continuous" else np.array([None], dtype=object)
            continue
        out[col.name] = _checked_value(col, value, flag)
    return out


def _checked_value(col: CovariateColumn, value: Any, flag: str) -> np.ndarray:
    if col.kind == "categorical":
        text = str(value).strip()
        if text not in col.categories:
            lowered = [c.lower() for c in col.categories]
            if lowered.count(text.lower()) != 1:
                raise UserError(f"{flag} {col.name}={value}: expected one of {', '.join(col.categories)} "
                                f"(the values {col.name} had in training)")
            text = col.categories[lowered.index(text.lower())]
        return np.array([text], dtype=object)
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else _number(str(value))
    if number is None or not math.isfinite(float(number)):
        raise UserError(f"{flag} {col.name}={value}: expected a number")
    if not col.low <= float(number) <= col.high:
        raise UserError(f"{flag} {col.name}={value}: outside the training range of {col.name}, {col.low:g} to "
                        f"{col.high:g}; expected a value in it (the model never saw this)")
    return np.array([float(number)])


def encode_settings(scaling: CovariateScaling, settings: Sequence[Mapping[str, Any]], flag: str = "--set"
                    ) -> np.ndarray:
    """(len(settings), scaling.dim) float32: one checked, encoded vector per setting."""
    rows = [encode(scaling, setting_values(scaling, s, flag)) for s in settings]
    return np.concatenate(rows) if rows else np.zeros((0, scaling.dim), np.float32)


def condition_vectors(labels: np.ndarray, c_dim: int, vectors: np.ndarray) -> np.ndarray:
    """(N, c_dim + cov_dim) float32: each sample's class one-hot (when the model has classes), then covariates."""
    hot = np.eye(c_dim, dtype=np.float32)[np.asarray(labels, np.int64)] if c_dim else np.zeros((len(vectors), 0),
                                                                                             np.float32)
    return np.concatenate([hot, np.asarray(vectors, np.float32)], axis=1)


def ordering(covariates: SampleCovariates) -> np.ndarray:
    """Sample indices sorted by the first covariate (missing last): low to high age, say."""
    first = covariates.scaling.columns[0]
    v = covariates.values[first.name]
    if first.kind == "continuous":
        key = np.where(np.isnan(v), np.inf, v)
    else:
        lookup = {c: i for i, c in enumerate(first.categories)}
        key = np.array([lookup.get(x, len(lookup)) for x in v], np.float64)
    return np.argsort(key, kind="stable")


def describe(scaling: CovariateScaling) -> list[str]:
    """One line per covariate for reports and --help-like listings."""
    lines = []
    for c in scaling.columns:
        if c.kind == "continuous":
            lines.append(f"{c.name}: continuous, {c.low:g} to {c.high:g} (mean {c.mean:.3g}, std {c.std:.3g})")
        else:
            lines.append(f"{c.name}: categorical, {', '.join(c.categories)}")
    return lines


__all__ = ["MISSING_MODES", "CovariateTable", "SampleCovariates", "parse_condition", "check_missing_mode",
           "read_covariate_table", "match_covariates", "sample_values", "missing_mask", "fit_scaling", "encode",
           "parse_setting", "parse_walk", "setting_values", "encode_settings", "condition_vectors", "ordering",
           "describe"]
