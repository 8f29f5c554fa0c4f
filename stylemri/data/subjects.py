"""Which patient each file comes from: subject IDs for the known layouts, a user regex, or a table.

Slices of one patient are strongly correlated, so splits and memorization checks must work on patients
(subjects), not on slices. Rules, first match wins:

1. a table mapping files to subjects (a `--labels` CSV with `file` and `subject` columns),
2. `--subject-pattern REGEX` (exactly one capture group), searched in the file name, then the full path,
3. BIDS: a `sub-XXX` folder in the path, or a file name starting with `sub-XXX_`,
4. OASIS: `case_<subject>_slice_<n>.nii.png` (and the `seg_` masks),
5. ADNI: `<subject>_<slice>.<ext>` with a numeric subject (e.g. `218391_78.jpeg`), or an ADNI PTID
   `002_S_0295...`,
6. a NIfTI volume is one subject: its file name without `.nii` / `.nii.gz`,
7. `builtin:<name>`: one subject, `<name>`,
8. otherwise the file is its own subject (rule `file`), and `SubjectIDs.none_derived` says when no
   file at all got a subject.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import PurePath, PurePosixPath
from typing import Mapping, Sequence

from stylemri.errors import UserError

FALLBACK_RULE = "file"
_IMAGE_EXT = r"(?:png|jpe?g|bmp|tiff?)"
_BIDS_FOLDER = re.compile(r"^(sub-[A-Za-z0-9]+)$")
_BIDS_NAME = re.compile(r"^(sub-[A-Za-z0-9]+)_")
_OASIS = re.compile(r"^(?:case|seg)_([A-Za-z0-9]+)_slice_\d+(?:\.nii)?\." + _IMAGE_EXT + r"$", re.IGNORECASE)
_ADNI_PTID = re.compile(r"^(\d{3}_S_\d{4})(?:[_\-.]|$)")
_ADNI = re.compile(r"^(\d+)_\d+\." + _IMAGE_EXT + r"$", re.IGNORECASE)
_NIFTI = re.compile(r"^(.+?)\.nii(?:\.gz)?$", re.IGNORECASE)
# the file-name rules in the order they are tried: the first that matches names the subject
_NAME_RULES = ((_BIDS_NAME, "bids"), (_OASIS, "oasis"), (_ADNI_PTID, "adni"), (_ADNI, "adni"), (_NIFTI, "nifti"))


@dataclass(frozen=True)
class SubjectIDs:
    """Per-sample subject IDs and the rule that produced each one."""

    subjects: tuple[str, ...]
    rules: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.subjects)

    @property
    def fallback_count(self) -> int:
        """Samples whose file matched no rule and therefore counts as its own subject."""
        return sum(r == FALLBACK_RULE for r in self.rules)

    @property
    def none_derived(self) -> bool:
        """True when no sample got a real subject ID (every file is its own subject)."""
        return len(self.rules) > 0 and self.fallback_count == len(self.rules)

    @property
    def num_subjects(self) -> int:
        return len(set(self.subjects))

    def rule_counts(self) -> dict[str, int]:
        """How many samples each rule named, most frequent first."""
        return dict(Counter(self.rules).most_common())


def compile_subject_pattern(pattern: str) -> re.Pattern[str]:
    """`--subject-pattern` as a compiled regex with exactly one capture group, else a UserError."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise UserError(f"--subject-pattern {pattern!r}: not a valid regular expression ({exc})") from None
    if regex.groups != 1:
        raise UserError(
            f"--subject-pattern {pattern!r}: expected exactly one capture group (...) around the subject ID, "
            f"found {regex.groups}"
        )
    return regex


def builtin_rules(path: str) -> tuple[str, str] | None:
    """(subject, rule) from the built-in layout rules, or None when none applies."""
    if path.startswith("builtin:"):
        return path.split(":", 1)[1] or path, "builtin"
    parts = path.replace("\\", "/").split("/") if os.sep == "\\" else path.split("/")
    for part in parts[:-1]:
        m = _BIDS_FOLDER.match(part)
        if m:
            return m.group(1), "bids"
    name = parts[-1]
    for pattern, rule in _NAME_RULES:
        m = pattern.match(name)
        if m:
            return m.group(1), rule
    return None


def subject_from_pattern(path: str, regex: re.Pattern[str]) -> str | None:
    """The capture group of `regex` searched in the file name, then in the whole (posix) path."""
    for text in (os.path.basename(path), path.replace(os.sep, "/")):
        m = regex.search(text)
        if m and m.group(1):
            return m.group(1)
    return None


def derive_subjects(
    sources: Sequence[str],
    *,
    pattern: str | re.Pattern[str] | None = None,
    table: Mapping[str, str] | None = None,
) -> SubjectIDs:
    """Subject ID of every sample (`sources` may repeat: slices of one volume share the file).

    `table` maps a source (as given in `sources`) to its subject and wins over every rule. A pattern that
    matches none of the files is a UserError: it is almost certainly a typo.
    """
    regex = compile_subject_pattern(pattern) if isinstance(pattern, str) else pattern
    unique = list(dict.fromkeys(sources))
    per_file: dict[str, tuple[str, str]] = {}
    unmatched: list[str] = []
    pattern_hits = 0
    for src in unique:
        if table is not None and src in table and table[src]:
            per_file[src] = (table[src], "table")
            continue
        if regex is not None:
            subject = subject_from_pattern(src, regex)
            if subject is not None:
                per_file[src] = (subject, "pattern")
                pattern_hits += 1
                continue
        found = builtin_rules(src)
        if found is None:
            unmatched.append(src)
        else:
            per_file[src] = found
    if unmatched:  # named relative to the common folder of *all* files, so names stay stable and readable
        fallback_ids = _fallback_ids(unique, unmatched)
        for src in unmatched:
            per_file[src] = (fallback_ids[src], FALLBACK_RULE)
    if regex is not None and pattern_hits == 0 and unique:
        example = PurePath(unique[0]).name
        raise UserError(
            f"--subject-pattern {regex.pattern!r}: matched none of the {len(unique)} files (e.g. {example!r}); "
            "expected a capture group that matches part of each file name or path"
        )
    return SubjectIDs(
        subjects=tuple(per_file[s][0] for s in sources),
        rules=tuple(per_file[s][1] for s in sources),
    )


def _fallback_ids(paths: Sequence[str], wanted: Sequence[str]) -> dict[str, str]:
    """Each of `wanted` as its own subject: its path below the common folder of `paths`, without extension."""
    real = [p for p in paths if not p.startswith("builtin:")]
    try:
        common = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in real]) if real else ""
    except ValueError:  # different drives
        common = ""
    out = {}
    for p in wanted:
        rel = os.path.relpath(os.path.abspath(p), common) if common else p
        posix = PurePosixPath(rel.replace(os.sep, "/"))
        name = posix.name
        for suffix in (".nii.gz", ".nii.png"):
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
        else:
            name = posix.stem if posix.suffix else name
        out[p] = str(posix.with_name(name)) if name else str(posix)
    return out


__all__ = ["SubjectIDs", "FALLBACK_RULE", "compile_subject_pattern", "builtin_rules", "subject_from_pattern",
           "derive_subjects"]
