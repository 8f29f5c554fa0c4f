"""Known-answer covariate benchmark: does a model conditioned on age make older brains with more CSF?

    python benchmarks/bench_covariates.py                      # ~7 min on a 2-core CPU
    python benchmarks/bench_covariates.py --kimg 40 --device cuda

Builds the atrophy data set (stylemri.data.atrophy: builtin:mni152 slices whose ventricles dilate with a
made-up age, M heads 8% larger), trains a small StyleGAN2 with `--condition age,sex` (the demo's recipe at
32 px), then runs the covariate proof (stylemri.audit.covariate_proof) and an age walk. Prints the
correlation of the generated dark-CSF fraction with the requested age beside the real one, the correlation
of the generated CSF-vs-age curve with the real curve (target >= 0.8), the predictor checks, and the paths of
the walk strip and difference map. Everything goes under --outdir (default runs/bench_covariates).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}

RECIPE = ["--preset", "auto", "--arch", "stylegan2", "--seed", "0", "--batch", "16", "--channel-base", "1024",
          "--channel-max", "64", "--z-dim", "64", "--w-dim", "64", "--map-layers", "2", "--loss", "ns",
          "--r1-gamma", "0.1", "--pl-weight", "0", "--ema-kimg", "5", "--aug", "ada", "--ada-kimg", "50",
          "--precision", "fp32", "--workers", "0", "--tick-kimg", "2", "--sample-ticks", "5",
          "--checkpoint-ticks", "100"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outdir", default="runs/bench_covariates")
    ap.add_argument("--subjects", type=int, default=256)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--kimg", type=float, default=20.0)
    ap.add_argument("--num", type=int, default=512, help="generated images for the proof")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from stylemri.data.atrophy import write_atrophy_dataset

    out = Path(args.outdir)
    shutil.rmtree(out, ignore_errors=True)
    data = write_atrophy_dataset(out / "data", subjects=args.subjects, resolution=args.resolution, seed=0)
    cmd = [sys.executable, "-m", "stylemri", "train", "--data", str(data.folder), "--labels", str(data.table),
           "--condition", "age,sex", "--resolution", str(args.resolution), "--kimg", str(args.kimg),
           "--outdir", str(out / "runs"), "--name", "atrophy", "--cache-dir", str(out / "cache"),
           "--device", args.device, "--quiet", *RECIPE]
    t0 = time.time()
    subprocess.run(cmd, check=True, env=ENV)
    train_s = time.time() - t0
    run = out / "runs" / "00000-atrophy"
    result = proof(run, args.num, args.device)
    walk = subprocess.run([sys.executable, "-m", "stylemri", "interpolate", str(run), "--walk", "age=56:89",
                           "--frames", "7", "--seeds", "0-3", "--set", "sex=F", "--zoom", "4", "--device",
                           args.device, "--outdir", str(out / "walk")], check=True, capture_output=True, text=True, env=ENV)
    report(result, train_s, args, walk.stdout)
    return 0


def proof(run: Path, num: int, device: str) -> dict:
    import stylemri
    from stylemri.audit.covariate_proof import proof_figure, prove_covariates, public
    from stylemri.config import replace
    from stylemri.data import load_dataset
    from stylemri.io import save_figure, write_json

    model = stylemri.load(run, device=device)
    ds = load_dataset(replace(model.config.data, xflip=False), covariates=model.covariates)
    result = prove_covariates(model, ds, num, seed=0, batch=64)
    write_json(run / "covariate_proof.json", public(result))
    save_figure(proof_figure(result), run / "covariate_proof.png")
    return public(result)


def report(result: dict, train_s: float, args: argparse.Namespace, walk_out: str) -> None:
    age, sex = result["columns"]["age"], result["columns"]["sex"]
    csf = age["morphometry"]["csf_fraction"]
    print(f"trained {args.kimg:g} kimg at {args.resolution} px on {args.subjects} subjects in {train_s:.0f} s")
    print(f"dark-CSF fraction vs age: real r {csf['real']['r']:.3f} slope {csf['real']['slope']:.5f}/yr; "
          f"generated (requested age) r {csf['generated']['r']:.3f} slope {csf['generated']['slope']:.5f}/yr")
    print(f"generated CSF-vs-age curve vs real curve ({len(csf['real_curve'])} age bins): r {csf['curve_r']:.3f} "
          f"(target >= 0.8)")
    print(f"age predictor (ridge on 16 px, real half): generated r {age['generated']['r']:.3f} vs requested; "
          f"real held-out floor r {age['real_holdout']['r']:.3f}")
    print(f"sex classifier: generated accuracy {sex['generated']['accuracy']:.3f}; real held-out "
          f"{sex['real_holdout']['accuracy']:.3f}; chance {sex['chance']:.3f}")
    print(walk_out.strip())
    print(json.dumps({"csf_r_generated": csf["generated"]["r"], "csf_r_real": csf["real"]["r"],
                      "csf_curve_r": csf["curve_r"]}))


if __name__ == "__main__":
    raise SystemExit(main())
