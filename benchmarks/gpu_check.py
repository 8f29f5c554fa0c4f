"""One-command GPU check (issue 11, item 9): speed, memory and stability of the real training step.

    python benchmarks/gpu_check.py                       # one CUDA GPU, <= 8 minutes; prints one table
    python benchmarks/gpu_check.py --device cpu --tiny   # the same code paths on a CPU at toy size (seconds)

For the "auto" config at 64 / 128 / 256 px and each mode (fp32; bf16 in the top --fp16-res resolutions;
bf16 + torch.compile) it times `Trainer._train_step` (data, every phase including lazy R1 / path length,
optimizer, EMA, ADA) after a warm-up, and reports s/kimg (seconds per thousand real images shown: NVlabs'
unit; their published A100 figures are 12.53 s/kimg at 256 px and 6.79 at 128 px, paper256 config at
batch 64) and peak GPU memory. Then it runs a short `stylegan2-adni` job at 256 px with --batch-gpu
(gradient accumulation) through `Trainer.run` and says whether every loss stayed finite.
Without CUDA (and without --device cpu) it prints one line and exits 0.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stylemri.config import DataConfig, RunConfig  # noqa: E402
from stylemri.data import load_dataset  # noqa: E402
from stylemri.training import presets  # noqa: E402
from stylemri.training.distributed import DistInfo  # noqa: E402
from stylemri.training.training_loop import Callbacks, Trainer  # noqa: E402

MODES = {"fp32": {"precision": "fp32"}, "bf16": {"precision": "bf16"},
         "bf16+compile": {"precision": "bf16", "compile": True}}
TINY_NET = {"channel_base": 256, "channel_max": 32, "z_dim": 32, "w_dim": 32}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_trainer(run_dir: str, res: int, device: torch.device, train: dict[str, Any], *, preset: str = "auto",
                 tiny: bool, cache_dir: str | None) -> Trainer:
    ds = load_dataset(DataConfig(resolution=res, cache_dir=cache_dir))
    net = {"resolution": res, **(TINY_NET if tiny else {})}
    train = {"kimg": 1e6, "num_workers": 0 if device.type == "cpu" else 2, **train}
    net_cfg, train_cfg = presets.resolve(preset, net=net, train=train, device_type=device.type)
    cfg = RunConfig(data=ds.config, network=net_cfg, train=train_cfg, class_names=tuple(ds.class_names),
                    fingerprint=ds.fingerprint, num_images=len(ds), name="gpu-check")
    return Trainer(cfg, run_dir, ds, dist=DistInfo(device=device))


def time_steps(res: int, mode: str, device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    """s/kimg and peak memory of the auto config at `res` in `mode` (median over timed chunks of steps)."""
    with tempfile.TemporaryDirectory() as tmp:
        train = {**MODES[mode], **({"batch": 8} if args.tiny else {})}
        trainer = make_trainer(tmp, res, device, train, tiny=args.tiny, cache_dir=args.cache_dir)
        batch = trainer.schedule.at(0).batch
        for _ in range(args.warmup * (3 if "compile" in mode else 1)):
            trainer._train_step()
        sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        chunk = 16 if not args.tiny else 4  # whole cycles of the lazy path-length (4) and R1 (16) intervals
        chunks = []
        t_end = time.perf_counter() + args.seconds
        while len(chunks) < 2 or (time.perf_counter() < t_end and len(chunks) < args.max_chunks):
            t0 = time.perf_counter()
            for _ in range(chunk):
                trainer._train_step()
            sync(device)
            chunks.append((time.perf_counter() - t0) / (chunk * batch / 1000))
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
        return {"res": res, "mode": mode, "batch": batch, "s_per_kimg": statistics.median(chunks),
                "peak_gib": peak, "chunks": len(chunks), "nonfinite": trainer.nonfinite_total,
                "reduced": ",".join(map(str, trainer.reduced_resolutions)) or "-"}


class LossWatch(Callbacks):
    def __init__(self) -> None:
        self.values: list[float] = []

    def step(self, progress: dict[str, Any]) -> None:
        self.values += [float(v) for k, v in progress.items() if k in ("G_loss", "D_loss", "R1", "path_length")]


def stability_run(device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    """A short stylegan2-adni run at 256 px (toy size with --tiny) with --batch-gpu: every loss finite?"""
    res = 32 if args.tiny else 256
    batch, batch_gpu = (8, 4) if args.tiny else (64, 16)
    train = {"batch": batch, "batch_gpu": batch_gpu, "precision": "bf16", "kimg": args.stability_kimg,
             "tick_kimg": args.stability_kimg / 4, "checkpoint_ticks": 1000, "sample_ticks": 1000}
    watch = LossWatch()
    with tempfile.TemporaryDirectory() as tmp:
        net = {"resolution": res, **(TINY_NET if args.tiny else {})}
        ds = load_dataset(DataConfig(resolution=res, cache_dir=args.cache_dir))
        net_cfg, train_cfg = presets.resolve("stylegan2-adni", net=net, train={"num_workers": 0, **train},
                                             device_type=device.type)
        cfg = RunConfig(data=ds.config, network=net_cfg, train=train_cfg, class_names=tuple(ds.class_names),
                        fingerprint=ds.fingerprint, num_images=len(ds), name="gpu-check")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        trainer = Trainer(cfg, tmp, ds, dist=DistInfo(device=device), callbacks=watch)
        result = trainer.run()
        sync(device)
        elapsed = time.perf_counter() - t0
    finite = bool(watch.values) and all(math.isfinite(v) for v in watch.values)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"res": res, "batch": batch, "batch_gpu": batch_gpu, "kimg": result.kimg, "seconds": elapsed,
            "losses": len(watch.values), "finite": finite, "nonfinite_steps": result.nonfinite_steps,
            "peak_gib": peak}


def _gib(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"  # no peak-memory counter on a CPU


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --tiny: check the code paths)")
    p.add_argument("--tiny", action="store_true", help="toy networks at 16/32 px: seconds on a CPU")
    p.add_argument("--res", default=None, help="comma-separated resolutions (default 64,128,256; tiny 16,32)")
    p.add_argument("--modes", default=None, help=f"comma-separated of {','.join(MODES)} (default all; tiny: "
                                                 "fp32,bf16)")
    p.add_argument("--warmup", type=int, default=8, help="untimed steps first (x3 with compile)")
    p.add_argument("--seconds", type=float, default=15.0, help="timed seconds per configuration (at least 2 chunks)")
    p.add_argument("--max-chunks", type=int, default=8, help="at most this many timed chunks of 16 steps")
    p.add_argument("--stability-kimg", type=float, default=None,
                   help="length of the stylegan2-adni --batch-gpu run (default 1.024; tiny 0.032)")
    p.add_argument("--cache-dir", default=None, help="prepared-data cache folder")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device (torch {torch.__version__}); nothing measured")
        return 0
    resolutions = [int(r) for r in (args.res or ("16,32" if args.tiny else "64,128,256")).split(",")]
    modes = (args.modes or ("fp32,bf16" if args.tiny else ",".join(MODES))).split(",")
    if args.stability_kimg is None:
        args.stability_kimg = 0.032 if args.tiny else 1.024
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    rows = []
    t_start = time.perf_counter()
    for res in resolutions:
        for mode in modes:
            rows.append(time_steps(res, mode, device, args))
            print(f"gpu_check: {res} px {mode}: {rows[-1]['s_per_kimg']:.2f} s/kimg", file=sys.stderr, flush=True)
    stab = stability_run(device, args)
    print(f"gpu_check on {name}, torch {torch.__version__}, auto config (NVlabs A100: 12.53 s/kimg at 256 px, "
          f"6.79 at 128 px)")
    print(f"{'res':>5} {'mode':<13} {'batch':>5} {'reduced px':<12} {'s/kimg':>9} {'peak GiB':>9} {'nonfinite':>9}")
    for r in rows:
        print(f"{r['res']:>5} {r['mode']:<13} {r['batch']:>5} {r['reduced']:<12} {r['s_per_kimg']:>9.2f} "
              f"{_gib(r['peak_gib']):>9} {r['nonfinite']:>9}")
    print(f"stylegan2-adni {stab['res']} px, batch {stab['batch']} as --batch-gpu {stab['batch_gpu']}: "
          f"{stab['kimg']:.3f} kimg in {stab['seconds']:.1f} s, {stab['losses']} loss values, "
          f"{'all finite' if stab['finite'] else 'NON-FINITE'} ({stab['nonfinite_steps']} skipped steps), "
          f"peak {_gib(stab['peak_gib'])} GiB; total {time.perf_counter() - t_start:.0f} s")
    return 0 if stab["finite"] and not any(r["nonfinite"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
