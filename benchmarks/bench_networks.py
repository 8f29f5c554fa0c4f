"""Throughput of the generators and discriminators: images/s, forward and forward+backward.

    python benchmarks/bench_networks.py                       # CPU (and CUDA when present), 32/64/256 px
    python benchmarks/bench_networks.py --resolutions 64 --batch 16 --reps 10 --device cuda

Networks are the default NetworkConfig (channel_base 16384, channel_max 512, 2 mapping layers, 1 channel)
at each resolution, i.e. the StyleGAN2-ADA 'auto' sizes. G forward = mapping + synthesis in eval mode;
G forward+backward = train mode, loss on the image (modulated conv path: the library default, see
docs/networks.md; the last line compares grouped and activation-scaled modconv, interleaved);
D the same with real images as input. Figures are medians over --reps timed runs after a warm-up.
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

from stylemri.config import NetworkConfig  # noqa: E402
from stylemri.networks import build_discriminator, build_generator, count_parameters  # noqa: E402


def time_once(fn: Callable[[], None], device: torch.device) -> float:
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def median_seconds(fn: Callable[[], None], reps: int, device: torch.device) -> float:
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


def bench_pair(arch: str, res: int, batch: int, reps: int, device: torch.device, amp: bool) -> dict[str, float]:
    torch.manual_seed(0)
    cfg = NetworkConfig(arch=arch, resolution=res)
    g, d = build_generator(cfg).to(device), build_discriminator(cfg).to(device)
    z = torch.randn(batch, cfg.z_dim, device=device)
    real = torch.randn(batch, 1, res, res, device=device)
    ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else torch.enable_grad

    def g_fwd() -> None:
        with torch.no_grad(), ctx():
            g(z, None, noise_mode="random")

    def g_train() -> None:
        g.zero_grad(set_to_none=True)
        with ctx():
            loss = g(z, None).float().square().mean()
        loss.backward()

    def d_fwd() -> None:
        with torch.no_grad(), ctx():
            d(real, None)

    def d_train() -> None:
        d.zero_grad(set_to_none=True)
        with ctx():
            loss = d(real, None).float().square().mean()
        loss.backward()

    out = {"G params": count_parameters(g), "D params": count_parameters(d)}
    g.eval(), d.eval()
    out["G fwd"] = batch / median_seconds(g_fwd, reps, device)
    out["D fwd"] = batch / median_seconds(d_fwd, reps, device)
    g.train(), d.train()
    out["G fwd+bwd"] = batch / median_seconds(g_train, reps, device)
    out["D fwd+bwd"] = batch / median_seconds(d_train, reps, device)
    return out


def bench_modconv(res: int, batch: int, reps: int, device: torch.device) -> dict[str, float]:
    """StyleGAN2 synthesis, grouped (fused) vs activation-scaled modulated conv, eval fwd and train fwd+bwd."""
    torch.manual_seed(0)
    g = build_generator(NetworkConfig(arch="stylegan2", resolution=res)).to(device)
    ws = g.mapping(torch.randn(batch, g.z_dim, device=device), None).detach()
    def fwd(fused: bool) -> None:
        with torch.no_grad():
            g.synthesis(ws, fused_modconv=fused)

    def train(fused: bool) -> None:
        g.zero_grad(set_to_none=True)
        g.synthesis(ws, fused_modconv=fused).square().mean().backward()

    out = {}
    for mode, fn in (("fwd", fwd), ("fwd+bwd", train)):
        # Interleaved (grouped, scaled, grouped, ...) so that outside load affects both alike.
        times: dict[bool, list[float]] = {True: [], False: []}
        fn(True), fn(False)  # warm-up
        for _ in range(reps):
            for fused in (True, False):
                times[fused].append(time_once(lambda: fn(fused), device))
        out[f"grouped {mode}"] = batch / statistics.median(times[True])
        out[f"scaled {mode}"] = batch / statistics.median(times[False])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolutions", default="32,64,256", help="comma-separated (default: %(default)s)")
    ap.add_argument("--archs", default="stylegan,stylegan2", help="comma-separated (default: %(default)s)")
    ap.add_argument("--device", default="auto", help="cpu, cuda, or auto = cpu plus cuda when available")
    ap.add_argument("--batch", type=int, default=None,
                    help="images per call (default: CPU 8 below 256 px else 2; CUDA 32)")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions, median reported (default: 3)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--no-modconv", action="store_true", help="skip the grouped vs scaled modconv comparison")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    resolutions = [int(r) for r in args.resolutions.split(",")]
    archs = args.archs.split(",")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    if args.device != "auto":
        devices = [torch.device(args.device)]

    print(f"torch {torch.__version__}; CPU threads {torch.get_num_threads()}; images/s, median of {args.reps}")
    for device in devices:
        modes = [False, True] if device.type == "cuda" else [False]
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        for amp in modes:
            print(f"\n== {name}{' bf16 autocast' if amp else ' float32'}")
            print(f"{'arch':10s} {'res':>4s} {'batch':>5s} {'G params':>11s} {'D params':>11s} "
                  f"{'G fwd':>8s} {'G f+b':>8s} {'D fwd':>8s} {'D f+b':>8s}")
            results: dict[tuple[str, int], dict[str, float]] = {}
            for res in resolutions:
                batch = args.batch or (32 if device.type == "cuda" else (8 if res < 256 else 2))
                for arch in archs:
                    r = bench_pair(arch, res, batch, args.reps, device, amp)
                    results[arch, res] = r
                    print(f"{arch:10s} {res:4d} {batch:5d} {r['G params']:>11,} {r['D params']:>11,} "
                          f"{r['G fwd']:8.1f} {r['G fwd+bwd']:8.1f} {r['D fwd']:8.1f} {r['D fwd+bwd']:8.1f}",
                          flush=True)
            if {"stylegan", "stylegan2"} <= set(archs):
                for res in resolutions:
                    a, b = results["stylegan2", res], results["stylegan", res]
                    ratios = "  ".join(f"{k} {a[k] / b[k]:.2f}x" for k in ("G fwd", "G fwd+bwd", "D fwd", "D fwd+bwd"))
                    print(f"ratio stylegan2/stylegan at {res} px: {ratios}")
        if not args.no_modconv:
            res = 64
            batch = args.batch or (32 if device.type == "cuda" else 8)
            m = bench_modconv(res, batch, args.reps, device)
            print(f"modconv at {res} px, batch {batch} (synthesis only): grouped fwd {m['grouped fwd']:.1f}, "
                  f"scaled fwd {m['scaled fwd']:.1f} ({m['grouped fwd'] / m['scaled fwd']:.2f}x); grouped fwd+bwd "
                  f"{m['grouped fwd+bwd']:.1f}, scaled fwd+bwd {m['scaled fwd+bwd']:.1f} "
                  f"({m['scaled fwd+bwd'] / m['grouped fwd+bwd']:.2f}x)")


if __name__ == "__main__":
    main()
