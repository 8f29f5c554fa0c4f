"""Transfer learning on builtin:mni152 at 32 px: coronal slices fine-tuned from an axial-only run
(`train --init`) beside coronal from scratch at equal kimg, scored like bench_quality (same floor).

    python benchmarks/bench_finetune.py                          # axial 10 kimg, then coronal 6 kimg twice
    python benchmarks/bench_finetune.py --pre-kimg 10 --kimg 6 --freeze-d 0 --out runs/bench_finetune

The three runs use the demo's small StyleGAN2 recipe (Makefile DEMO_TRAIN), unconditional. The scores
are bench_quality's: coronal half A of the real slices is the reference, the generated set has as many
images as half B, and half B against A is the floor; consistency uses the same 3-orientation classifier.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_quality import COLUMNS, RealReference, floor_rows, run_speed, score_images, train  # noqa: E402

from stylemri.data import load_dataset  # noqa: E402
from stylemri.config import DataConfig  # noqa: E402
from stylemri.io import to_uint8  # noqa: E402
from stylemri.metrics.inception import load_inception  # noqa: E402
from stylemri.metrics.metric_utils import default_cache_dir  # noqa: E402
from stylemri.model import load  # noqa: E402

RECIPE = ("--preset auto --arch stylegan2 --resolution 32 --seed 0 --batch 16 --channel-base 1024 --channel-max 64 "
          "--z-dim 64 --w-dim 64 --map-layers 2 --mbstd-group 4 --loss ns --g-lr 0.0025 --d-lr 0.0025 "
          "--betas 0,0.99 --r1-gamma 0.1 --r1-interval 16 --pl-weight 0 --style-mixing 0.9 --ema-kimg 5 "
          "--ema-rampup 0.05 --aug ada --aug-p 0 --ada-target 0.6 --ada-interval 4 --ada-kimg 50 --precision fp32 "
          "--workers 0 --tick-kimg 2 --sample-ticks 100 --checkpoint-ticks 100")


def coronal_row(run: Path, real: RealReference, extractor, seed: int) -> dict[str, float]:
    model = load(run, device="cpu")
    c = real.class_names.index("coronal")
    n = real.num_eval("coronal")
    fake = to_uint8(model.generate(range(seed, seed + n), trunc=1.0, noise="const", batch=16))
    return score_images(real, extractor, c, fake, seed)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pre-kimg", type=float, default=10, help="axial-only pretraining (default 10)")
    ap.add_argument("--kimg", type=float, default=6, help="coronal training, fine-tune and scratch (default 6)")
    ap.add_argument("--freeze-d", type=int, default=0, help="--freeze-d for the fine-tune (default 0)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_finetune"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    axial, t_axial = train(f"{RECIPE} --classes axial --kimg {args.pre_kimg:g}", args.out, None)
    tuned, t_tuned = train(f"{RECIPE} --classes coronal --kimg {args.kimg:g} --init {axial} "
                           f"--freeze-d {args.freeze_d}", args.out, None)
    scratch, t_scratch = train(f"{RECIPE} --classes coronal --kimg {args.kimg:g}", args.out, None)
    ds = load_dataset(DataConfig(source="builtin:mni152", resolution=32, xflip=False))
    extractor = load_inception(device="cpu")
    real = RealReference(ds, extractor, args.seed, default_cache_dir())
    floor = floor_rows(real, args.seed)["coronal"]
    rows = {"fine-tuned from axial": coronal_row(tuned, real, extractor, args.seed),
            "from scratch": coronal_row(scratch, real, extractor, args.seed)}
    print(f"\ncoronal at {args.kimg:g} kimg (fine-tune: from {args.pre_kimg:g} kimg axial, --freeze-d {args.freeze_d});"
          f" N ref/gen {len(real.a_idx['coronal'])}/{real.num_eval('coronal')}")
    print(f"{'run':<22} " + " ".join(f"{c:>11}" for c in COLUMNS))
    for name, row in {**rows, "floor (real B vs A)": floor}.items():
        print(f"{name:<22} " + " ".join(f"{row[c]:11.3f}" for c in COLUMNS))
    facts = {"axial": {**t_axial, **run_speed(axial)}, "fine-tuned": {**t_tuned, **run_speed(tuned)},
             "scratch": {**t_scratch, **run_speed(scratch)}}
    for k in facts.values():
        k.pop("wall_s_at_kimg", None)
    print(json.dumps({"rows": rows, "floor": floor, "runs": {"axial": str(axial), "fine-tuned": str(tuned),
                      "scratch": str(scratch)}, "timing": facts, "total_s": round(time.perf_counter() - t0, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
