"""Arguments shared by several commands, and the one place that turns them into configs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

from stylemri.config import DataConfig, check_resolution
from stylemri.errors import UserError


def add_data_args(parser: argparse.ArgumentParser, *, positional: bool = False, resolution: int | None = 64) -> None:
    """--data SOURCE (or a positional SOURCE) and the options that shape the images."""
    if positional:
        parser.add_argument("source", metavar="SOURCE", help="image folder, NIfTI file/folder, or builtin:mni152")
    else:
        parser.add_argument("--data", dest="source", default="builtin:mni152", metavar="SOURCE",
                            help="image folder, NIfTI file/folder, or builtin:mni152 (default: %(default)s)")
    parser.add_argument("--resolution", type=int, default=resolution, metavar="R",
                        help="square output size in pixels, a power of two (default: %(default)s)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=1, help="image channels (default: 1)")
    parser.add_argument("--split", choices=("train", "validate", "val", "test", "all"), default="train",
                        help="split to use: a split folder (train/validate/test folders), or a split of --split-file; "
                             "val = validate (default: train)")
    parser.add_argument("--classes", default=None, metavar="A,B",
                        help="keep only these classes (comma-separated class folder names)")
    parser.add_argument("--axis", choices=("axial", "coronal", "sagittal"), default="axial",
                        help="NIfTI slicing axis (default: axial)")
    parser.add_argument("--min-content", type=float, default=0.1, metavar="F",
                        help="NIfTI: keep slices whose fraction of brain voxels is at least F (default: 0.1)")
    parser.add_argument("--no-xflip", dest="xflip", action="store_false", help="turn off random horizontal flips")
    parser.add_argument("--cache-dir", default=None, metavar="DIR",
                        help="prepared-data cache folder (default: the user cache folder)")
    add_subject_args(parser)


def add_subject_args(parser: argparse.ArgumentParser) -> None:
    """Patients, not slices: subject IDs, a subject-level split file and labels from a table (docs/subjects.md)."""
    group = parser.add_argument_group("subjects (patients), splits and labels from tables")
    group.add_argument("--subject-pattern", default=None, metavar="REGEX",
                       help="regex with exactly one capture group giving a file's subject (patient) ID, searched "
                            "in the file name, then the path (default: the ADNI, OASIS, BIDS and NIfTI rules)")
    group.add_argument("--split-file", default=None, metavar="FILE.csv",
                       help="subject-level split file from 'stylemri data split'; --split train|val|test picks "
                            "from it instead of the split folders")
    group.add_argument("--labels", default=None, metavar="FILE.csv",
                       help="class labels from a table with a 'subject' or 'file' column (replaces class folders)")
    group.add_argument("--label-column", default=None, metavar="NAME",
                       help="the column of --labels that holds the class (needed when it has several)")


def data_config_from_args(args: argparse.Namespace) -> DataConfig:
    resolution = args.resolution if args.resolution is None else check_resolution(args.resolution)
    if not 0.0 <= args.min_content <= 1.0:
        raise UserError(f"--min-content {args.min_content}: expected a fraction between 0 and 1")
    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip()) if args.classes else None
    return DataConfig(
        source=args.source,
        resolution=resolution if resolution is not None else 64,
        channels=args.channels,
        split=args.split,
        classes=classes,
        axis=args.axis,
        min_content=args.min_content,
        xflip=args.xflip,
        cache_dir=args.cache_dir,
        **subject_options_from_args(args),
    )


def subject_options_from_args(args: argparse.Namespace) -> dict[str, str | None]:
    """The DataConfig fields of `add_subject_args`, checked early (regex, files) for one-line errors."""
    from stylemri.data.subjects import compile_subject_pattern

    pattern = getattr(args, "subject_pattern", None)
    if pattern is not None:
        compile_subject_pattern(pattern)
    out: dict[str, str | None] = {"subject_pattern": pattern}
    for flag, name in (("--split-file", "split_file"), ("--labels", "labels")):
        value = getattr(args, name, None)
        if value is not None:
            path = Path(value).expanduser()
            if not path.is_file():
                raise UserError(f"{flag} {value}: no such file; expected a CSV file")
            value = str(path.resolve())
        out[name] = value
    label_column = getattr(args, "label_column", None)
    if label_column is not None and out["labels"] is None:
        raise UserError(f"--label-column {label_column}: expected --labels FILE.csv with it")
    out["label_column"] = label_column
    return out


def print_data_warnings(report: object) -> None:
    """One `warning:` line on stderr per data-layer warning (upsampled images, skipped files, ...)."""
    for line in getattr(report, "warnings", ()):
        print(f"stylemri: warning: {line}", file=sys.stderr)


def cache_progress(desc: str = "preparing data") -> Callable[[int, int], None]:
    """A progress callback for `load_dataset` that draws a bar on stderr only when a cache is being built."""
    bar: list[Any] = []

    def update(done: int, total: int) -> None:
        if not bar:
            from tqdm import tqdm

            bar.append(tqdm(total=total, desc=desc, unit="file", file=sys.stderr, leave=False,
                            disable=not sys.stderr.isatty()))
        bar[0].update(done - bar[0].n)
        if done >= total:
            bar[0].close()

    return update
