"""Training throughput: images/s of a full G+D step with lazy regularization amortized.

    python benchmarks/bench_training.py                      # both archs, 32/64/256 px, CPU or CUDA
    python benchmarks/bench_training.py --res 32 --arch stylegan2 --batch 16 --repeats 5
    python benchmarks/bench_training.py --res 32 --batch 16 --channel-base 1024 --channel-max 64 --z-dim 64  # demo size

Each configuration is the "auto" config at that resolution (StyleGAN: its last resolution, fully grown),
trained on builtin:mni152 by the real training step (`Trainer._train_step`: data, phases, optimizer,
EMA, ADA). Step kinds are timed separately (median of `--repeats`): main (Gmain + Dmain), main + path
length, main + path length + R1. The amortized step is main + PL/4 + R1/16 (the lazy intervals), and
images/s = batch / amortized step. Prints one line per configuration and a summary table.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stylemri.config import DataConfig, RunConfig  # noqa: E402
from stylemri.data import load_dataset  # noqa: E402
from stylemri.training import presets  # noqa: E402
from stylemri.training.training_loop import Trainer  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(arch: str, res: int, batch: int | None, repeats: int, device: str, cache_dir: str | None,
          precision: str, compile_: bool, net_overrides: dict | None = None) -> dict:
    ds = load_dataset(DataConfig(resolution=res, cache_dir=cache_dir))
    # Short intervals so that every kind of step comes round quickly (R1 steps are also PL steps); the
    # amortization below uses the real intervals.
    train = {"kimg": 1e6, "num_workers": 0, "r1_interval": 4, "pl_interval": 2, "aug": "ada", "aug_p": 0.2,
             "precision": precision, "compile": compile_}
    if batch is not None:
        train["batch"] = batch
    net, tr = presets.resolve("auto", net={"arch": arch, "resolution": res, **(net_overrides or {})}, train=train)
    if arch == "stylegan":  # time the fully grown network at `res`
        tr = dataclasses.replace(tr, progressive=False)
    cfg = RunConfig(data=ds.config, network=net, train=tr, class_names=tuple(ds.class_names))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp, ds)
        dev = trainer.device
        kinds = ["main"] + (["pl"] if trainer.g_reg else []) + (["r1"] if trainer.d_reg_lazy else [])
        if trainer.g_reg and trainer.d_reg_lazy:
            kinds[-1] = "pl+r1"  # R1 steps (every 4th) are also path-length steps (every 2nd)
        times: dict[str, list[float]] = {k: [] for k in kinds}
        trainer._train_step()  # warm-up: first calls of every kernel (and compilation)
        trainer._train_step()
        while min(len(v) for v in times.values()) < repeats:
            names = {n for n, *_ in trainer._phases()}
            kind = ("pl+r1" if "Greg" in names else "r1") if "Dreg" in names else "pl" if "Greg" in names else "main"
            sync(dev)
            t0 = time.perf_counter()
            trainer._train_step()
            sync(dev)
            times[kind].append(time.perf_counter() - t0)
        if trainer.log is not None:
            trainer.log.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    pl_cost = max(med["pl"] - med["main"], 0.0) if "pl" in med else 0.0
    r1_cost = 0.0
    if "pl+r1" in med:
        r1_cost = max(med["pl+r1"] - med["pl"], 0.0)
    elif "r1" in med:
        r1_cost = max(med["r1"] - med["main"], 0.0)
    step = med["main"] + pl_cost / 4 + r1_cost / 16  # NVlabs intervals: PL every 4 G steps, R1 every 16 D steps
    return {"arch": arch, "res": res, "batch": tr.batch, "device": str(dev), "precision": trainer.precision,
            "main_s": med["main"], "pl_s": pl_cost, "r1_s": r1_cost, "step_s": step, "img_per_s": tr.batch / step,
            "G_params": sum(p.numel() for p in trainer.G.parameters()),
            "D_params": sum(p.numel() for p in trainer.D.parameters())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", nargs="+", default=["stylegan2", "stylegan"])
    ap.add_argument("--res", type=int, nargs="+", default=[32, 64, 256])
    ap.add_argument("--batch", type=int, default=None, help="global batch (default: auto; CPU 256 px: 4)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--channel-base", type=int, default=None, help="smaller networks than auto (e.g. the demo's 1024)")
    ap.add_argument("--channel-max", type=int, default=None)
    ap.add_argument("--z-dim", type=int, default=None, help="z_dim = w_dim (default 512)")
    args = ap.parse_args()
    net_overrides = {k: v for k, v in (("channel_base", args.channel_base), ("channel_max", args.channel_max),
                                       ("z_dim", args.z_dim), ("w_dim", args.z_dim)) if v is not None}
    if args.threads:
        torch.set_num_threads(args.threads)
    from stylemri.device import resolve_device

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    where = f" ({torch.cuda.get_device_name(device)})" if cuda else f", {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, device {device}{where}")
    rows = []
    for arch in args.arch:
        for res in args.res:
            batch = args.batch if args.batch is not None else (4 if device.type == "cpu" and res >= 256 else None)
            r = bench(arch, res, batch, args.repeats, str(device), args.cache_dir, args.precision, args.compile,
                      net_overrides)
            rows.append(r)
            print(f"{arch:9s} {res:4d}px batch {r['batch']:3d} {r['precision']}: main {r['main_s'] * 1e3:8.1f} ms, "
                  f"+PL {r['pl_s'] * 1e3:8.1f} ms, +R1 {r['r1_s'] * 1e3:8.1f} ms -> amortized step "
                  f"{r['step_s'] * 1e3:8.1f} ms = {r['img_per_s']:8.1f} img/s  (G {r['G_params'] / 1e6:.2f}M, "
                  f"D {r['D_params'] / 1e6:.2f}M params)", flush=True)
    print("\narch       res  batch   img/s (median of %d, regularization amortized)" % args.repeats)
    for r in rows:
        print(f"{r['arch']:9s} {r['res']:4d}  {r['batch']:5d}  {r['img_per_s']:8.1f}")


if __name__ == "__main__":
    main()
