"""`stylemri data split`: a subject-level train/val/test split file (docs/subjects.md)."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from stylemri.cli.options import SHARED, add_flag, add_outdir, add_seed, add_subject_args, require_outdir
from stylemri.data.annotate import annotate_files
from stylemri.data.sources import scan_source
from stylemri.data.splits import SPLITS, check_fractions, make_split
from stylemri.data.subjects import compile_subject_pattern
from stylemri.errors import UserError

SPLIT_EXAMPLES = """\
examples:
  stylemri data split ~/data/AD_NC --out splits/ --val 0.1 --test 0.2 --seed 0
  stylemri data split ~/data/AD_NC --split train --out splits/ --val 0.15 --test 0   # keep the official test
  stylemri data split ~/adni_flat --labels ADNIMERGE.csv --label-column DX_bl --out splits/
  stylemri data inspect ~/data/AD_NC --split-file splits/split.csv --split all     # check: no leaks
  stylemri train --data ~/data/AD_NC --split-file splits/split.csv --split train ...

Whole subjects (patients) go to one split; with --stratify class (default) each class is split on its
own so every split keeps the class balance. The same data and --seed give the same file.
"""


def register_split(actions: argparse._SubParsersAction) -> None:
    """Add `data split` to the `data` command group."""
    p = actions.add_parser(
        "split", help="write a subject-level train/val/test split file",
        description=textwrap.fill(
            "Assign whole subjects (patients) of SOURCE to train, val and test and write DIR/split.csv "
            "(columns source,subject,class,split; one row per file). Use it anywhere a source is accepted with "
            "--split-file DIR/split.csv --split train|val|test. Only the file list is read; nothing is decoded.",
            100),
        epilog=SPLIT_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SOURCE", help=SHARED["--data"].help)
    add_outdir(p, "folder to write the split file into (required)")
    p.add_argument("--name", default="split.csv", metavar="FILE.csv", help="file name in DIR (default: %(default)s)")
    p.add_argument("--val", type=float, default=0.1, metavar="F", help="fraction of subjects for val (default: 0.1)")
    p.add_argument("--test", type=float, default=0.2, metavar="F", help="fraction of subjects for test (default: 0.2)")
    add_seed(p, "random seed (default: 0)")
    p.add_argument("--stratify", choices=("class", "none"), default="class",
                   help="split each class separately (class, default) or all subjects together (none)")
    add_flag(p, "--split", default="all",
             help="split only the files of this split folder, e.g. re-split 'train' and keep the official "
                  "test folder (default: all files)")
    add_flag(p, "--classes", default=None)
    add_subject_args(p, split_file=False)
    p.set_defaults(func=cmd_split)


def cmd_split(args: argparse.Namespace) -> int:
    check_fractions(args.val, args.test)
    if args.subject_pattern is not None:
        compile_subject_pattern(args.subject_pattern)
    if args.label_column is not None and args.labels is None:
        raise UserError(f"--label-column {args.label_column}: expected --labels FILE.csv with it")
    if not args.name.lower().endswith(".csv") or Path(args.name).name != args.name:
        raise UserError(f"--name {args.name}: expected a plain file name ending in .csv")
    out_dir = require_outdir(args).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--outdir {args.outdir}: exists and is not a folder; expected a folder")
    scan = scan_source(args.source)
    split = "validate" if args.split == "val" else args.split
    files = [f for f in scan.files if split == "all" or f.split == split]
    if not files:
        raise UserError(f"--split {args.split}: {args.source} has no such split folder; expected one of: "
                        f"{', '.join((*scan.splits, 'all'))}")
    ann = annotate_files([f.path for f in files], [f.class_name for f in files], [f.split for f in files],
                         subject_pattern=args.subject_pattern, labels=args.labels, label_column=args.label_column)
    keep = [i for i, c in enumerate(ann.classes) if c is not None]
    if args.classes:
        wanted = [c.strip() for c in args.classes.split(",") if c.strip()]
        missing = [c for c in wanted if c not in ann.class_names]
        if missing:
            raise UserError(f"--classes {','.join(missing)}: no such class in {args.labels or args.source}; "
                            f"expected one of: {', '.join(ann.class_names)}")
        keep = [i for i in keep if ann.classes[i] in wanted]
    table = make_split(
        [files[i].path for i in keep], [ann.subjects[i] for i in keep], [ann.classes[i] or "" for i in keep],
        val=args.val, test=args.test, seed=args.seed, stratify=args.stratify == "class", root=scan.root,
    )
    path = table.write(out_dir / args.name)
    print(f"split file:   {path}")
    where = f" ({scan.root})" if str(Path(args.source).expanduser()) != scan.root else ""
    print(f"source:       {args.source}{where}, {len(table.rows)} file(s), "
          f"{len({r.subject for r in table.rows})} subject(s); seed {args.seed}, "
          f"stratified by {'class' if args.stratify == 'class' else 'nothing'}")
    print(format_split_counts(table.counts()))
    for note in ann.notes:
        print(f"stylemri: warning: {note}", file=sys.stderr)
    counts = table.counts()
    for split, fraction in (("val", args.val), ("test", args.test)):
        if fraction > 0 and split not in counts:
            print(f"stylemri: warning: --{split} {fraction}: no subject went to {split} (too few subjects per "
                  f"class; a split gets one once a class has three)", file=sys.stderr)
    if ann.subject_ids.none_derived:
        print("stylemri: warning: no subject could be derived from the file names: every file is its own subject, "
              "so this split is by file; give --subject-pattern or a --labels table with file and subject columns",
              file=sys.stderr)
    return 0


def format_split_counts(counts: dict[str, dict[str, tuple[int, int]]]) -> str:
    """subjects (files) per split and class, as a small table."""
    classes = sorted({c for per in counts.values() for c in per})
    cells = {(s, c): f"{n} ({f})" for s, per in counts.items() for c, (n, f) in per.items()}
    width = max([len(c) for c in classes] + [len(v) for v in cells.values()] + [5]) + 2
    lines = ["subjects (files) per split and class:",
             f"  {'split':<8}" + "".join(f"{c or '(none)':>{width}}" for c in classes)]
    for split in SPLITS:
        if split in counts:
            lines.append(f"  {split:<8}" + "".join(f"{cells.get((split, c), '0 (0)'):>{width}}" for c in classes))
    return "\n".join(lines)


__all__ = ["register_split", "cmd_split", "format_split_counts"]
