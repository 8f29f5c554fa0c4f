"""3-D training throughput and peak memory: volumes/s of a full G+D step with lazy regularization amortized.

    python benchmarks/bench_volumes.py                                   # 16^3, 32^3, 64^3, volume defaults
    python benchmarks/bench_volumes.py --res 16 32 --batch 4 --channel-base 512 --channel-max 64 --z-dim 128

Each resolution runs in its own subprocess (so the peak memory is that configuration's alone) on
builtin:mni152 as one whole volume (`--dims 3`), through the real training step (`Trainer._train_step`:
data, phases, optimizer, EMA, 3-D ADA at p = 0.2). Step kinds are timed separately (median of
`--repeats`): main (Gmain + Dmain), + path length, + R1; the amortized step is main + PL/4 + R1/16 and
volumes/s = batch / amortized step. Peak memory: CUDA max allocated, or the process's peak RSS on CPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stylemri.config import DataConfig, RunConfig  # noqa: E402
from stylemri.data import load_dataset  # noqa: E402
from stylemri.networks import volume_network_config  # noqa: E402
from stylemri.training import presets  # noqa: E402
from stylemri.training.training_loop import Trainer  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_kind(trainer: Trainer) -> str:
    names = {n for n, *_ in trainer._phases()}
    if "Dreg" in names:
        return "pl+r1" if "Greg" in names else "r1"
    return "pl" if "Greg" in names else "main"


def bench_one(res: int, batch: int, repeats: int, device: str, cache_dir: str | None, precision: str,
              net_overrides: dict) -> dict:
    ds = load_dataset(DataConfig(resolution=res, dims=3, cache_dir=cache_dir))
    defaults = volume_network_config(res)
    net = {"resolution": res, "dims": 3, "channel_base": defaults.channel_base, "channel_max": defaults.channel_max,
           **net_overrides}
    train = {"kimg": 1e6, "num_workers": 0, "r1_interval": 4, "pl_interval": 2, "aug": "ada", "aug_p": 0.2,
             "precision": precision, "batch": batch}
    net_cfg, tr = presets.resolve("auto", net=net, train=train)
    cfg = RunConfig(data=ds.config, network=net_cfg, train=tr, class_names=tuple(ds.class_names),
                    voxel_mm=ds.voxel_mm)
    dev = torch.device(device)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp, ds)
        times: dict[str, list[float]] = {k: [] for k in ("main", "pl", "pl+r1")}
        trainer._train_step()  # warm-up (first calls of every kernel)
        trainer._train_step()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        while min(len(v) for v in times.values()) < repeats:
            kind = step_kind(trainer)
            sync(dev)
            t0 = time.perf_counter()
            trainer._train_step()
            sync(dev)
            times.setdefault(kind, []).append(time.perf_counter() - t0)
        g_params = sum(p.numel() for p in trainer.G.parameters())
        d_params = sum(p.numel() for p in trainer.D.parameters())
    med = {k: statistics.median(v) for k, v in times.items() if v}
    pl_cost = max(med["pl"] - med["main"], 0.0)
    r1_cost = max(med["pl+r1"] - med["pl"], 0.0)
    step = med["main"] + pl_cost / 4 + r1_cost / 16
    peak = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"res": res, "batch": batch, "device": str(dev), "precision": trainer.precision, "main_s": med["main"],
            "pl_s": pl_cost, "r1_s": r1_cost, "step_s": step, "vol_per_s": batch / step, "peak_bytes": peak,
            "peak_kind": "cuda max allocated" if dev.type == "cuda" else "peak RSS", "G_params": g_params,
            "D_params": d_params, "channel_base": net_cfg.channel_base, "channel_max": net_cfg.channel_max}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--batch", type=int, default=4, help="global batch (default: 4)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--channel-base", type=int, default=None, help="smaller networks than the 3-D default (2048)")
    ap.add_argument("--channel-max", type=int, default=None, help="(3-D default 256)")
    ap.add_argument("--z-dim", type=int, default=None, help="z_dim = w_dim (default 512)")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: one config, JSON out
    args = ap.parse_args()
    overrides = {k: v for k, v in (("channel_base", args.channel_base), ("channel_max", args.channel_max),
                                   ("z_dim", args.z_dim), ("w_dim", args.z_dim)) if v is not None}
    if args.threads:
        torch.set_num_threads(args.threads)
    from stylemri.device import resolve_device

    device = resolve_device(args.device)
    if args.one:
        print(json.dumps(bench_one(args.res[0], args.batch, args.repeats, str(device), args.cache_dir,
                                   args.precision, overrides)))
        return
    where = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f", {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, device {device}{where}")
    rows = []
    for res in args.res:
        argv = [a for a in sys.argv[1:] if a != "--one"]
        if "--res" in argv:  # replace the resolution list by this one resolution
            i = argv.index("--res")
            j = i + 1
            while j < len(argv) and not argv[j].startswith("--"):
                j += 1
            argv = argv[:i] + argv[j:]
        proc = subprocess.run([sys.executable, __file__, "--one", "--res", str(res), *argv], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            print(f"{res:4d}^3: failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}",
                  flush=True)
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(f"{res:4d}^3 batch {r['batch']:3d} {r['precision']} (base {r['channel_base']}, max {r['channel_max']}): "
              f"main {r['main_s'] * 1e3:9.1f} ms, +PL {r['pl_s'] * 1e3:9.1f} ms, +R1 {r['r1_s'] * 1e3:9.1f} ms -> "
              f"amortized {r['step_s'] * 1e3:9.1f} ms = {r['vol_per_s']:7.2f} volumes/s; {r['peak_kind']} "
              f"{r['peak_bytes'] / 2**30:.2f} GiB (G {r['G_params'] / 1e6:.2f}M, D {r['D_params'] / 1e6:.2f}M)",
              flush=True)
    print(f"\nres     batch  volumes/s  peak GiB   (median of {args.repeats}, regularization amortized)")
    for r in rows:
        print(f"{r['res']:3d}^3  {r['batch']:5d}  {r['vol_per_s']:9.2f}  {r['peak_bytes'] / 2**30:8.2f}")


if __name__ == "__main__":
    main()
