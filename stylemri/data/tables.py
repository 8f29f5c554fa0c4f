"""CSV tables keyed by file: reading them with clear errors, and matching their keys to dataset files.

Split files and label tables name files by path. A table written for `AD_NC/` must still work when the
user points at `AD_NC/train/`, so a key matches every file whose path *ends with* the key's components
(`train/AD/1_2.jpeg` matches `/data/AD_NC/train/AD/1_2.jpeg`; a bare file name matches it too).
"""

from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from stylemri.errors import UserError


@dataclass(frozen=True)
class CsvTable:
    """A CSV file read as text: header names and rows (each row as long as the header)."""

    path: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    line_numbers: tuple[int, ...]  # 1-based line of each row in the file, for error messages

    def column(self, name: str) -> int:
        """Index of a column, matched case-insensitively; -1 when absent."""
        lowered = [h.lower() for h in self.header]
        return lowered.index(name.lower()) if name.lower() in lowered else -1


def read_csv(path: str | os.PathLike, *, what: str = "CSV file") -> CsvTable:
    """Read a comma/semicolon/tab separated file with a header row (Excel BOM tolerated)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file (expected a {what})")
    if not p.is_file():
        raise UserError(f"{p}: not a file (expected a {what})")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{p}: not a UTF-8 text file (expected a {what})") from None
    except OSError as exc:
        raise UserError(f"{p}: cannot be read ({exc.strerror})") from None
    first = next((line for line in text.splitlines() if line.strip()), "")
    if not first:
        raise UserError(f"{p}: empty (expected a {what} with a header row)")
    delimiter = max(",;\t", key=first.count) if any(d in first for d in ",;\t") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: tuple[str, ...] | None = None
    rows: list[tuple[str, ...]] = []
    lines: list[int] = []
    try:
        for record in reader:
            if not any(cell.strip() for cell in record):
                continue
            cells = [cell.strip() for cell in record]
            if header is None:
                header = tuple(cells)
                if any(not h for h in header):
                    raise UserError(f"{p}: header row has an empty column name (expected a {what})")
                dupes = sorted({h for h in header if [x.lower() for x in header].count(h.lower()) > 1})
                if dupes:
                    raise UserError(f"{p}: column(s) {', '.join(dupes)} appear more than once in the header")
                continue
            if len(cells) > len(header):
                extra = cells[len(header):]
                if any(extra):
                    raise UserError(
                        f"{p}:{reader.line_num}: {len(cells)} fields, expected {len(header)} ({', '.join(header)})"
                    )
                cells = cells[: len(header)]
            cells += [""] * (len(header) - len(cells))
            rows.append(tuple(cells))
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise UserError(f"{p}:{reader.line_num}: malformed CSV ({exc})") from None
    assert header is not None
    return CsvTable(path=str(p), header=header, rows=tuple(rows), line_numbers=tuple(lines))


def relative_key(source: str, root: str | os.PathLike | None) -> str:
    """A file's key for a table: its posix path below `root` (the dataset folder) when inside it."""
    if source.startswith("builtin:") or root is None:
        return source.replace(os.sep, "/")
    root_abs = os.path.abspath(root)
    if os.path.isfile(root_abs):
        root_abs = os.path.dirname(root_abs)
    return _relative(os.path.abspath(source), root_abs.rstrip(os.sep) + os.sep)


def relative_keys(sources: Sequence[str], root: str | os.PathLike | None) -> list[str]:
    """`relative_key` for many files (one check of `root`)."""
    if root is None:
        return [s.replace(os.sep, "/") for s in sources]
    root_abs = os.path.abspath(root)
    if os.path.isfile(root_abs):
        root_abs = os.path.dirname(root_abs)
    prefix = root_abs.rstrip(os.sep) + os.sep
    return [s if s.startswith("builtin:") else _relative(os.path.abspath(s), prefix) for s in sources]


def _relative(src_abs: str, prefix: str) -> str:
    rel = src_abs[len(prefix):] if src_abs.startswith(prefix) else src_abs
    return rel.replace(os.sep, "/")


class SourceIndex:
    """Match table keys (relative paths or bare file names) to the dataset's files by path suffix."""

    def __init__(self, sources: Sequence[str]):
        self._by_name: dict[str, list[tuple[tuple[str, ...], str]]] = defaultdict(list)
        for src in dict.fromkeys(sources):
            parts = _parts(src if src.startswith("builtin:") else os.path.abspath(src))
            if parts:
                self._by_name[parts[-1]].append((parts, src))

    def match(self, key: str) -> list[str]:
        """Every source whose path ends with the components of `key`."""
        parts = _parts(key)
        if not parts:
            return []
        n = len(parts)
        return [src for src_parts, src in self._by_name.get(parts[-1], ()) if src_parts[-n:] == parts]


def _parts(path: str) -> tuple[str, ...]:
    if path.startswith("builtin:"):
        return (path,)
    return tuple(p for p in path.replace("\\", "/").split("/") if p not in ("", "."))


__all__ = ["CsvTable", "read_csv", "relative_key", "relative_keys", "SourceIndex"]
