"""`stylemri data inspect`: what a source holds, what was skipped, and a grid of real samples."""

from __future__ import annotations

import argparse
import json
import textwrap

import numpy as np

from stylemri.cli.options import add_data_args, cache_progress, data_config_from_args, print_data_warnings
from stylemri.cli.split import register_split
from stylemri.cli.subjects import format_subjects
from stylemri.data import DataReport, MRIDataset, load_dataset
from stylemri.errors import UserError
from stylemri.io import save_grid

EXAMPLES = """\
examples:
  stylemri data inspect builtin:mni152 --resolution 64 --grid runs/demo/real_examples.png
  stylemri data inspect ~/data/AD_NC --split test --classes AD
  stylemri data inspect ~/data/keras_png_slices_data --resolution 128 --split all
  stylemri data inspect ~/scans/ --axis coronal --min-content 0.2 --json

The first use of a source at a resolution decodes it once into the prepared cache (see --cache-dir);
later commands load from there. docs/data.md lists the layouts recognised.
"""


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="inspect and prepare training data",
                          description="Inspect and prepare brain-MRI training data.")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION")
    actions.required = True
    inspect = actions.add_parser(
        "inspect", help="show what a data source holds and write a grid of real samples",
        description=textwrap.fill(
            "Scan SOURCE, prepare (or reuse) its cache at --resolution, then print the layout detected, samples "
            "per class and split, the original sizes, bit depths and channels seen, and the files skipped and "
            "why. With --grid, also write a PNG of real samples, one row per class.", 100),
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(inspect, positional=True)
    inspect.add_argument("--grid", metavar="FILE.png", default=None, help="write a grid of real samples to this PNG")
    inspect.add_argument("--grid-per-class", type=int, default=None, metavar="N",
                         help="samples per class in the grid, evenly spaced through the class (default: 8, or 32 "
                              "for a one-class source)")
    inspect.add_argument("--rebuild", action="store_true", help="decode the source again even if a valid cache exists")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON instead of text")
    inspect.set_defaults(func=cmd_inspect)
    register_split(actions)


def cmd_inspect(args: argparse.Namespace) -> int:
    cfg = data_config_from_args(args)
    if args.grid is not None and not args.grid.lower().endswith(".png"):
        raise UserError(f"--grid {args.grid}: expected a file name ending in .png")
    if args.grid_per_class is not None and args.grid_per_class < 1:
        raise UserError(f"--grid-per-class {args.grid_per_class}: expected a positive integer")
    ds = load_dataset(cfg, rebuild=args.rebuild, progress=cache_progress())
    grid_path = None
    per_class = args.grid_per_class or (8 if ds.num_classes > 1 else 32)
    if args.grid:
        grid_path = str(save_grid(args.grid, grid_samples(ds, per_class), ncols=8 if per_class % 8 == 0 else per_class))
    if args.json:
        print(json.dumps({**ds.report.to_dict(), "fingerprint": ds.fingerprint, "grid": grid_path}, indent=2))
    else:
        print(format_report(ds.report, ds.fingerprint))
        if grid_path:
            print(f"grid:         {grid_path} ({per_class} sample(s) per class, classes in order)")
    print_data_warnings(ds.report)
    return 0


def grid_samples(ds: MRIDataset, per_class: int, max_classes: int = 16) -> np.ndarray:
    """uint8 (N, C, R, R): `per_class` samples evenly spaced through each class (deterministic)."""
    picks: list[int] = []
    for label in range(min(ds.num_classes, max_classes)):
        members = np.flatnonzero(ds.labels == label)
        take = np.linspace(0, len(members) - 1, min(per_class, len(members))).round().astype(int)
        chosen = list(members[take]) + [-1] * (per_class - len(take))  # -1: an empty tile keeps rows aligned
        picks += chosen
    real = [i for i in picks if i >= 0]
    pixels = ds.batch_uint8(real)[0].numpy()
    out = np.zeros((len(picks), ds.channels, ds.resolution, ds.resolution), np.uint8)
    out[[k for k, i in enumerate(picks) if i >= 0]] = pixels
    return out


def _counts(d: dict[str, int], limit: int = 6) -> str:
    items = list(d.items())
    text = ", ".join(f"{k} ({v})" for k, v in items[:limit])
    return text + (f", ... {len(items) - limit} more" if len(items) > limit else "") if items else "-"


def format_report(r: DataReport, fingerprint: str) -> str:
    """The human-readable inspect report."""
    cache_state = f"built in {r.build_seconds:.1f} s" if r.cache_built else "reused (nothing decoded)"
    lines = [
        f"source:       {r.source}" + (f" ({r.root})" if r.root != r.source else ""),
        f"layout:       {r.layout}: {r.description}",
        f"cache:        {r.cache_dir} [{cache_state}]",
        f"dataset:      {r.selected} samples at {r.resolution}x{r.resolution}, {r.channels} channel(s), "
        f"split {r.split}, classes {', '.join(r.class_names)} (fingerprint {fingerprint})",
        "samples per split and class (whole source):",
    ]
    width = max([len(c) for c in r.all_classes] + [5])
    lines.append(f"  {'split':<10}" + "".join(f"{c:>{width + 2}}" for c in r.all_classes) + f"{'total':>9}")
    for split, per in r.counts.items():
        row = "".join(f"{per.get(c, 0):>{width + 2}}" for c in r.all_classes)
        lines.append(f"  {split or '(none)':<10}{row}{sum(per.values()):>9}")
    lines += [
        f"files:        {r.files}" + (f" ({r.volumes} NIfTI volume(s), {r.slices_dropped} slice(s) under "
                                     f"--min-content dropped)" if r.volumes else ""),
        f"sizes:        {_counts(r.original_sizes)}",
        f"bit depths:   {_counts(r.bit_depths)}",
        f"channels:     {_counts(r.channels_seen)}",
        f"upsampled:    {r.upsampled}",
        f"skipped:      {r.skipped}" + (f" ({_counts(r.skipped_reasons)})" if r.skipped else ""),
    ]
    for name, why in r.skipped_examples:
        lines.append(textwrap.shorten(f"  - {name}: {why}", 160))
    if r.skipped > len(r.skipped_examples):
        lines.append(f"  ... and {r.skipped - len(r.skipped_examples)} more")
    for folder in r.ignored_folders:
        lines.append(f"ignored:      {folder}")
    lines += format_subjects(r.subjects, r.layout)
    return "\n".join(lines)
