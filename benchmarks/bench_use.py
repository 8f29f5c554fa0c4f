"""Speed of the tools that use a trained model: generation (batch 1, the reproducible default, vs batched),
one projection step (W, noise maps optimised, pixel + MS-SSIM loss), and the MS-SSIM loss alone.

    python benchmarks/bench_use.py                          # CPU (and CUDA when present), 64 and 256 px
    python benchmarks/bench_use.py --resolutions 64 --device cuda --reps 20

Networks are the default StyleGAN2 NetworkConfig at each resolution (randomly initialised: speed does not
depend on training). Figures are medians over --reps timed runs after one warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stylemri.analysis import project  # noqa: E402
from stylemri.analysis.ssim import ms_ssim  # noqa: E402
from stylemri.config import NetworkConfig  # noqa: E402
from stylemri.networks import build_generator  # noqa: E402
from stylemri.networks.sampling import generate_images  # noqa: E402


def median_seconds(fn: Callable[[], object], reps: int, device: torch.device) -> float:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(res: int, device: torch.device, reps: int, batch: int) -> dict[str, float]:
    torch.manual_seed(0)
    G = build_generator(NetworkConfig(arch="stylegan2", resolution=res)).to(device).eval().requires_grad_(False)
    seeds = list(range(batch))
    one = median_seconds(lambda: generate_images(G, seeds, batch=1), reps, device)
    many = median_seconds(lambda: generate_images(G, seeds, batch=batch), reps, device)
    target = torch.zeros(1, res, res)
    steps = 4
    proj = median_seconds(lambda: project.project(G, target, steps=steps, w_avg_samples=256), max(1, reps // 2), device)
    base = median_seconds(lambda: project.project(G, target, steps=1, w_avg_samples=256), max(1, reps // 2), device)
    x = torch.rand(1, 1, res, res, device=device, requires_grad=True)
    y = torch.rand(1, 1, res, res, device=device)

    def ssim_step() -> None:
        ms_ssim(x, y).sum().backward()

    ssim = median_seconds(ssim_step, reps, device)
    return {"gen_b1": batch / one, "gen_bN": batch / many, "proj_step": (proj - base) / (steps - 1), "ssim": ssim}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolutions", default="64,256")
    ap.add_argument("--batch", type=int, default=16, help="images per generation run / batched pass")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default=None, help="cpu, cuda (default: cpu, plus cuda when present)")
    args = ap.parse_args()
    devices = [torch.device(args.device)] if args.device else \
        [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; StyleGAN2 default config; "
          f"median of {args.reps}")
    print(f"{'device':>6} {'res':>4} {'gen img/s b=1':>14} {'gen img/s b=' + str(args.batch):>15} {'ratio':>6} "
          f"{'proj s/step':>12} {'MS-SSIM fwd+bwd ms':>19}")
    for device in devices:
        for res in (int(r) for r in args.resolutions.split(",")):
            r = bench(res, device, args.reps, args.batch)
            ratio = r["gen_bN"] / r["gen_b1"]
            print(f"{device.type:>6} {res:>4} {r['gen_b1']:>14.1f} {r['gen_bN']:>15.1f} {ratio:>6.2f} "
                  f"{r['proj_step']:>12.4f} {1000 * r['ssim']:>19.2f}")


if __name__ == "__main__":
    main()
