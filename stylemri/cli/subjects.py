"""The patient section of `stylemri data inspect` (docs/subjects.md); `data split` is in cli/split.py."""

from __future__ import annotations

from collections import Counter

from stylemri.data.annotate import SubjectSummary

SHOW_LEAKS = 5  # leaks listed by name; the rest are counted


def format_subjects(summary: SubjectSummary | None, layout: str = "") -> list[str]:
    """The patient section of the inspect report: counts, slices per subject, leaks."""
    if summary is None:
        return []
    w = summary.whole
    if summary.none_derived:
        return [f"subjects:     no subject could be derived from the file names: each of the {w.num_subjects} "
                f"file(s) counts as its own subject (give --subject-pattern REGEX or a --labels table with "
                f"file and subject columns)"]
    rules = ", ".join(f"{k} ({v} file(s))" for k, v in summary.rules.items())
    lines = [f"subjects:     {w.num_subjects} in the whole source, {summary.selected_subjects} in this selection; "
             f"IDs from {rules}"]
    if summary.fallback_files:
        lines.append(f"              {summary.fallback_files} file(s) match no subject rule: each is its own subject")
    lines.append(f"slices per subject: min {w.slices_min}, median {w.slices_median:g}, max {w.slices_max}")
    classes = sorted(w.subjects_per_class)
    width = max([len(c) for c in classes] + [5]) + 2
    lines.append("subjects per split and class (whole source):")
    lines.append(f"  {'split':<10}" + "".join(f"{c:>{width}}" for c in classes) + f"{'total':>9}")
    for split, per in w.subjects_per_split_class.items():
        lines.append(f"  {split:<10}" + "".join(f"{per.get(c, 0):>{width}}" for c in classes)
                     + f"{w.subjects_per_split.get(split, 0):>9}")
    lines.append(f"  {'(any)':<10}" + "".join(f"{w.subjects_per_class[c]:>{width}}" for c in classes)
                 + f"{w.num_subjects:>9}")
    lines.append(_leak_line("split leaks", "split", w.split_leaks, w.subjects_per_split))
    if layout == "builtin":
        lines.append("class leaks:  - (the classes are slicing orientations of one template)")
    else:
        lines.append(_leak_line("class leaks", "class", w.class_leaks, w.subjects_per_class))
    return lines


def _leak_line(title: str, what: str, leaks: tuple[tuple[str, tuple[str, ...]], ...], groups: dict) -> str:
    head = f"{title + ':':<14}"
    if len(groups) < 2:
        return head + (f"- (one {what} only)" if groups else f"- (no {what}s)")
    if not leaks:
        return head + f"none (no subject in more than one {what})"
    shown = "; ".join(f"{s} ({', '.join(g)})" for s, g in leaks[:SHOW_LEAKS])
    more = f"; ... {len(leaks) - SHOW_LEAKS} more" if len(leaks) > SHOW_LEAKS else ""
    kinds = Counter(g for _, g in leaks)
    pairs = ", ".join(f"{'/'.join(g)} {n}" for g, n in kinds.most_common(3))
    return head + f"{len(leaks)} subject(s) in more than one {what} [{pairs}]: {shown}{more}"


__all__ = ["format_subjects"]
