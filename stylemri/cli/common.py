"""Arguments shared by several commands, and the one place that turns them into configs."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from stylemri.config import DataConfig
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
    parser.add_argument("--split", choices=("train", "validate", "test", "all"), default="train",
                        help="split folder to use when the source has train/validate/test folders (default: train)")
    parser.add_argument("--classes", default=None, metavar="A,B",
                        help="keep only these classes (comma-separated class folder names)")
    parser.add_argument("--axis", choices=("axial", "coronal", "sagittal"), default="axial",
                        help="NIfTI slicing axis (default: axial)")
    parser.add_argument("--min-content", type=float, default=0.1, metavar="F",
                        help="NIfTI: keep slices whose fraction of brain voxels is at least F (default: 0.1)")
    parser.add_argument("--no-xflip", dest="xflip", action="store_false", help="turn off random horizontal flips")
    parser.add_argument("--cache-dir", default=None, metavar="DIR",
                        help="prepared-data cache folder (default: the user cache folder)")


def data_config_from_args(args: argparse.Namespace) -> DataConfig:
    resolution = args.resolution
    if resolution is not None and (resolution < 4 or resolution & (resolution - 1)):
        raise UserError(f"--resolution {resolution}: expected a power of two >= 4")
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
    )


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
