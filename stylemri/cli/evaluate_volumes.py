"""`stylemri evaluate RUN` for a 3-D run: MS-SWD 3-D, slice FID/KID per axis, nearest real volume per subject."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from stylemri.errors import UserError
from stylemri.io import to_uint8, write_json
from stylemri.metrics.evaluate import INCEPTION_METRICS, VOLUME_METRICS

MAX_EVALUATE_VOLUMES = 1000  # generated volumes per class, all held in memory (1 GiB of float32 at 64^3)


def evaluate_volume_run(args: argparse.Namespace, model: Any, ds: Any, names: tuple[str, ...], device: str) -> int:
    """`stylemri evaluate` once the model (3-D) and its real volumes `ds` are loaded by cli/evaluate.py."""
    from stylemri.metrics.evaluate import evaluate_volumes

    if args.num > MAX_EVALUATE_VOLUMES:
        raise UserError(f"--num {args.num}: expected at most {MAX_EVALUATE_VOLUMES:,} generated volumes per class "
                        "for a 3-D run (they are held in memory)")
    unsupported = [n for n in names if n not in VOLUME_METRICS]
    if unsupported:
        raise UserError(f"--metrics {','.join(unsupported)}: not defined for 3-D runs; expected a subset of "
                        f"{','.join(VOLUME_METRICS)}")
    extractor = None
    if any(n in INCEPTION_METRICS for n in names):
        from stylemri.metrics.inception import load_inception

        extractor = load_inception(args.inception, device=device)
    classes: list[str | None] = list(model.class_names) if model.conditional else [None]
    if args.class_name is not None:
        if args.class_name not in classes:
            raise UserError(f"--class {args.class_name}: expected one of {', '.join(c for c in classes if c) or '(none)'}")
        classes = [args.class_name]
    results: dict[str, Any] = {"run": str(args.run), "checkpoint": str(model.checkpoint), "kimg": model.kimg,
                               "dims": 3, "truncation_psi": args.trunc, "metrics": list(names), "per_class": {}}
    for cls in classes:
        idx = np.arange(len(ds)) if cls is None else np.flatnonzero(ds.labels == ds.class_names.index(cls))
        real = np.concatenate([to_uint8(ds.batch(idx[i:i + 8])[0]) for i in range(0, len(idx), 8)])
        seeds = range(args.seed, args.seed + args.num)
        fake = to_uint8(model.generate(seeds, class_name=cls, trunc=args.trunc, noise="const", batch=args.batch))
        results["per_class"][cls or "all"] = evaluate_volumes(real, fake, names, subjects=ds.subjects[idx],
                                                             extractor=extractor, seed=args.seed)
    out_dir = (Path(args.outdir) if args.outdir else model.run_dir) / model.tag
    path = out_dir / "metrics.json"
    write_json(path, results)
    _print(results)
    print(f"wrote {path}")
    return 0


def _print(results: dict[str, Any]) -> None:
    for cls, res in results["per_class"].items():
        m = res["metrics"]
        print(f"{cls}: {res['num_generated']} generated vs {res['num_real']} real volumes")
        if "swd" in m:
            levels = ", ".join(f"{r}^3 {v:.2f}" for r, v in m["swd"]["per_resolution"].items())
            print(f"  MS-SWD 3-D x1e3: mean {m['swd']['mean']:.2f} ({levels})")
        for axis, e in m.get("slices", {}).items():
            fid = "-" if e["fid"] is None else f"{e['fid']:.2f}"
            kid = "-" if e["kid"] is None else f"{e['kid']['mean'] * 1e3:.2f}±{e['kid']['std'] * 1e3:.2f}"
            print(f"  {axis:8s} slices: FID {fid}  KID x1e3 {kid}  (N = {e['num_real_slices']} real, "
                  f"{e['num_generated_slices']} generated; {e['slices_per_volume']} per volume)")
        if "memorization" in m:
            mem = m["memorization"]
            floor = "-" if mem["real_floor_rms"] is None else f"{mem['real_floor_rms']:.2f}"
            closer = "-" if mem["fraction_closer_than_floor"] is None else f"{mem['fraction_closer_than_floor']:.1%}"
            print(f"  nearest real volume: median RMS {mem['median_rms']:.2f} vs real-vs-real floor {floor}; "
                  f"{closer} closer than the floor; per subject: "
                  + ", ".join(f"{s} {v['count']}" for s, v in mem["per_subject"].items()))
