"""Where the time of `stylemri audit` goes: N images per set and class, two classes, made-up patients.

    python benchmarks/bench_audit.py [--num 200] [--resolution 64] [--features inception] [--repeats 1]

Builds phantom brain slices (patients with several slices, two classes), runs the whole audit (features,
fidelity with bootstrap intervals, privacy, usefulness CNNs, morphometry) and prints the seconds per stage
(median over repeats; features come from the cache on repeats after the first, which is also printed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stylemri.audit import AuditConfig, audit, feature_net, from_arrays  # noqa: E402


def phantoms(n_patients: int, slices: int, res: int, seed: int, prefix: str):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:res, :res] / (res - 1) * 2 - 1
    imgs, labels, subjects = [], [], []
    for p in range(n_patients):
        pr = np.random.default_rng(int(rng.integers(1 << 30)))
        a, b, vr = pr.uniform(0.55, 0.85), pr.uniform(0.65, 0.95), (0.3 if p % 2 else 0.15) * pr.uniform(0.8, 1.2)
        fx, fy, ph = pr.uniform(3, 9), pr.uniform(3, 9), pr.uniform(0, 6)
        for s in range(slices):
            inside = (xx / a) ** 2 + (yy / b) ** 2 <= 1
            vent = (xx / vr) ** 2 + ((yy + 0.04 * s) / (vr * 1.6)) ** 2 <= 1
            tex = 0.65 + 0.2 * np.sin(xx * fx + ph) * np.cos(yy * fy) + rng.normal(0, 0.02, (res, res))
            img = np.where(inside & vent, 0.08, np.where(inside, tex, 0.0))
            imgs.append(np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)[None])
            labels.append(p % 2)
            subjects.append(f"{prefix}{p}")
    return from_arrays(prefix, np.stack(imgs), labels, ["NC", "AD"], subjects)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=200)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--features", default="inception")
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    slices = 4
    per_class = args.num // slices + 1
    train = phantoms(4 * per_class, slices, args.resolution, 0, "tr")  # 2x the slices needed per class
    holdout = phantoms(2 * per_class, slices, args.resolution, 1, "ho")
    fresh = phantoms(2 * per_class, slices, args.resolution, 2, "x")  # a 'perfect generator'
    synthetic = from_arrays("synthetic", fresh.images, fresh.labels, ["NC", "AD"])
    cfg = AuditConfig(num=args.num, bootstrap=args.bootstrap, device=args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; N = {args.num} per "
          f"set and class, 2 classes, {args.resolution} px, features {args.features}, bootstrap {args.bootstrap}")
    runs = []
    for r in range(args.repeats):
        features = feature_net(args.features, device=args.device)
        t = time.perf_counter()
        res = audit(train, holdout, synthetic, features, cfg)
        total = time.perf_counter() - t
        timing = dict(res.data["protocol"]["timing_seconds"], total=total)
        runs.append(timing)
        print(f"repeat {r}: total {total:.1f} s, features from cache: {res.data['protocol']['feature_images_from_cache']}"
              f" of {res.data['protocol']['feature_images']} images; verdicts "
              + ", ".join(f"{k} {res.data[k]['verdict']}" for k in ("fidelity", "privacy", "utility")))
    for stage in runs[0]:
        print(f"  {stage:28s} {statistics.median(r[stage] for r in runs):8.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
