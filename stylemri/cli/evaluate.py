"""`stylemri evaluate RUN`: FID/KID/precision-recall/SWD/memorization of a trained generator, per class."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from stylemri.cli.options import (
    add_batch, add_class, add_device, add_flag, add_num, add_outdir, add_run, add_seed, add_trunc,
)
from stylemri.write_generated import check_seed
from stylemri.config import replace
from stylemri.errors import UserError
from stylemri.io import to_uint8, write_json
from stylemri.metrics.evaluate import METRICS, REGISTRY, evaluate, parse_metrics


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "evaluate", help="metrics of a trained run against real images (FID, KID, PR, SWD, memorization)",
        description="Generate --num images per class from a run's EMA generator and compare them with real "
                    "images of the same class: FID and KID (clean-fid protocol, offline Inception-v3), "
                    "precision/recall/density/coverage, MS-SWD (needs no weights) and memorization (nearest "
                    "training image of each generated one, per subject when subjects are known). Prints a "
                    "table and writes metrics.json (and the memorization CSV/figures) into RUN/kimg-<K>/ (or --outdir).",
    )
    add_run(p, help="run directory (or one checkpoint's .json)")
    add_flag(p, "--data", dest="source", default=None,
             help="real images to compare with (default: the run's training data)")
    add_flag(p, "--split", default=None, help="split of the real data (default: the run's)")
    p.add_argument("--metrics", default="fid,kid", metavar="M,...",
                   help=f"comma-separated subset of {','.join(METRICS)} (default: %(default)s)")
    add_num(p, 3000, "generated images per class (default: 3000)")
    add_class(p, "evaluate this class only (conditional models; default: every class)", dest="class_name")
    add_flag(p, "--checkpoint", default="latest")
    add_trunc(p, "truncation psi (default: 1, none)")
    add_seed(p, "first seed of the generated images (default: 0)")
    add_flag(p, "--inception", default=None, help="Inception TorchScript file (see `stylemri fid`)")
    add_device(p)
    add_batch(p, 32, "images per batch (default: 32)")
    add_flag(p, "--cache-dir", default=None, help="prepared-data and feature cache folder")
    add_outdir(p, "output folder (default: the run folder); metrics.json and the memorization files go to "
                  "DIR/kimg-<K>/ for the checkpoint used")
    p.set_defaults(func=cmd_evaluate)


MAX_EVALUATE_NUM = 50_000  # generated images per class: the FID50k protocol; held as uint8 (3.3 GB at 256 px)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from stylemri.metrics.metric_utils import source_from_dataset
    import stylemri

    names = parse_metrics(args.metrics)
    if not 2 <= args.num <= MAX_EVALUATE_NUM:
        raise UserError(f"--num {args.num}: expected 2 to {MAX_EVALUATE_NUM:,} generated images per class "
                        "(they are held in memory)")
    check_seed(args.seed, args.num)  # the last of --num consecutive seeds < 2^32 too; --batch checked while parsing
    model = stylemri.load(args.run, checkpoint=args.checkpoint, device=args.device)
    device = model.device
    for name in names:
        if model.resolution < REGISTRY[name].min_resolution:
            raise UserError(f"--metrics {name}: needs images of at least {REGISTRY[name].min_resolution} px; "
                            f"{args.run} generates {model.resolution} px")
    ds = _real_data(args, model)
    if model.config.network.dims == 3:  # whole volumes: 3-D SWD, slice FID/KID per axis, nearest volume
        from stylemri.cli.evaluate_volumes import evaluate_volume_run

        return evaluate_volume_run(args, model, ds, names, device)

    out_dir = (Path(args.outdir) if args.outdir else model.run_dir) / model.tag
    results: dict[str, Any] = {"run": str(args.run), "checkpoint": str(model.checkpoint), "kimg": model.kimg,
                               "truncation_psi": args.trunc,
                               "data": str(model.config.data.source if args.source is None else args.source),
                               "metrics": list(names), "per_class": {}}
    for cls in _classes_to_evaluate(args, model):
        real_idx = np.arange(len(ds)) if cls is None else _class_indices(ds, cls)
        real = source_from_dataset(ds, real_idx, name=cls or "all")

        def generate(start: int, count: int, cls: str | None = cls) -> np.ndarray:
            seeds = range(args.seed + start, args.seed + start + count)
            return to_uint8(model.generate(seeds, class_name=cls, trunc=args.trunc, noise="const", batch=args.batch,
                                           covariates=_real_settings(model, ds, seeds)))

        tag = cls or "all"
        results["per_class"][tag] = evaluate(
            generate, args.num, real, names, inception=args.inception, device=device,
            batch_size=args.batch, cache_dir=args.cache_dir, seed=args.seed,
            out_dir=out_dir / "evaluate" / tag if any(REGISTRY[n].writes_files for n in names) else None,
        )
    if model.covariates is not None:
        results["covariates"] = _covariate_proof(args, model, ds, out_dir)
    path = out_dir / "metrics.json"
    write_json(path, results)
    _print_table(results)
    if "covariates" in results:
        _print_proof(results["covariates"])
    for tag, res in results["per_class"].items():
        for note in res.get("notes", ()):
            print(f"note ({tag}): {note}")
    print(f"wrote {path}")
    return 0


def _real_data(args: argparse.Namespace, model: Any) -> Any:
    """The real images to compare with: the run's data (or --data, --split, --cache-dir) at the model's
    resolution, unflipped."""
    from stylemri.data import load_dataset

    changes: dict[str, Any] = {"resolution": model.resolution, "xflip": False}
    if args.source is not None:
        changes.update(source=args.source, classes=None)
    if args.split is not None:
        changes["split"] = args.split
    if args.cache_dir is not None:
        changes["cache_dir"] = args.cache_dir
    return load_dataset(replace(model.config.data, **changes), covariates=model.covariates)


def _classes_to_evaluate(args: argparse.Namespace, model: Any) -> list[str | None]:
    """--class, else every class of a conditional model; [None] (all images) for an unconditional one."""
    if model.conditional:
        if args.class_name is not None:
            return [model.class_names[model.class_index(args.class_name)]]  # type: ignore[index]
        return list(model.class_names)
    if args.class_name is not None:
        raise UserError(f"--class {args.class_name}: {args.run} is an unconditional model (trained without classes)")
    return [None]


def _real_settings(model: Any, ds: Any, seeds: range) -> list[dict[str, Any]] | None:
    """A covariate model's settings for these seeds: each seed requests the covariates of a real sample
    (drawn by the seed), so the generated set has the real joint distribution of the covariates."""
    if model.covariates is None:
        return None
    from stylemri.audit.covariate_proof import settings_for_seeds

    return settings_for_seeds(ds, seeds)


def _covariate_proof(args: argparse.Namespace, model: Any, ds: Any, out_dir: Path) -> dict[str, Any]:
    """Is each covariate learned? The predictor and morphometry checks (audit.covariate_proof), with a figure."""
    from stylemri.audit.covariate_proof import proof_figure, prove_covariates, public
    from stylemri.io import save_figure

    result = prove_covariates(model, ds, args.num, seed=args.seed, batch=args.batch, trunc=args.trunc)
    figure = save_figure(proof_figure(result), out_dir / "covariates.png")
    return {**public(result), "figure": str(figure)}


def _print_proof(proof: dict[str, Any]) -> None:
    for name, col in proof["columns"].items():
        csf = col["morphometry"]["csf_fraction"]
        if col["kind"] == "continuous":
            print(f"covariate {name}: predicted from generated images r {_fmt(col['generated']['r'])} vs requested "
                  f"(real held-out floor r {_fmt(col['real_holdout']['r'])}); dark-CSF fraction slope "
                  f"{_fmt(csf['generated']['slope'], '{:.3g}')} generated, {_fmt(csf['real']['slope'], '{:.3g}')} real; "
                  f"curve r {_fmt(csf['curve_r'])}")
        else:
            print(f"covariate {name}: classified from generated images, accuracy {_fmt(col['generated']['accuracy'])} "
                  f"(real held-out floor {_fmt(col['real_holdout']['accuracy'])}, chance {_fmt(col['chance'])})")
    print(f"covariate figure: {proof['figure']}")


def _class_indices(ds: Any, cls: str) -> np.ndarray:
    if cls not in ds.class_names:
        raise UserError(f"class {cls}: the real data has no such class; it has {', '.join(ds.class_names)}")
    idx = np.flatnonzero(np.asarray(ds.labels) == ds.class_names.index(cls))
    if len(idx) < 2:
        raise UserError(f"class {cls}: expected at least 2 real images, found {len(idx)}")
    return idx


def _print_table(results: dict[str, Any]) -> None:
    cols = ["class", "real", "FID", "KID x1e3", "precision", "recall", "density", "coverage", "SWD x1e3",
            "memorized"]
    rows = []
    for cls, res in results["per_class"].items():
        m = res["metrics"]
        kid = m.get("kid")
        pr = m.get("pr", {})
        mem = m.get("memorization", {}).get("pixel", {})
        rows.append([cls, str(res["num_real"]), _fmt(m.get("fid")),
                     f"{kid['mean'] * 1e3:.2f}±{kid['std'] * 1e3:.2f}" if kid else "-",
                     _fmt(pr.get("precision")), _fmt(pr.get("recall")), _fmt(pr.get("density")),
                     _fmt(pr.get("coverage")), _fmt(m.get("swd", {}).get("mean")),
                     _fmt(mem.get("fraction_closer"), "{:.1%}")])
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths)))


def _fmt(value: Any, spec: str = "{:.3f}") -> str:
    return "-" if value is None else spec.format(value)
