"""Loader throughput from the prepared cache, cache build time, and the multi-resolution choice.

    python benchmarks/bench_loader.py [--data SOURCE] [--batch 64] [--repeats 5] [--seconds 1.0]

Prints images/s (median of --repeats timed runs) for InfiniteLoader at 64, 128 and 256 px with 0 and 2
workers, then compares the two ways to serve lower resolutions for progressive training: gathering
the stored pyramid level vs. area-downsampling the full-resolution batch on the fly.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from stylemri.config import DataConfig
from stylemri.data import InfiniteLoader, area_downsample, load_dataset


def rate(fn, batch: int, seconds: float, repeats: int) -> float:
    """Median images/s of `repeats` runs, each calling fn() for about `seconds`."""
    fn()  # warm-up (page cache, worker start)
    rates = []
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            fn()
            n += batch
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="builtin:mni152")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--resolutions", default="64,128,256")
    ap.add_argument("--scan-files", type=int, default=1000,
                    help="also time a cache build over this many synthetic ADNI-like 256x240 JPEGs (0: skip)")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch intra-op threads for the on-the-fly avg-pool path (default 1: on a shared "
                         "machine more threads mostly wait on each other)")
    args = ap.parse_args()
    torch.set_num_threads(args.torch_threads)
    resolutions = [int(r) for r in args.resolutions.split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, batch {args.batch}")

    with tempfile.TemporaryDirectory() as cache:
        datasets = {}
        print("\ncache build (fresh cache, decode + resize + pyramid) and reuse:")
        for r in resolutions:
            cfg = DataConfig(source=args.data, resolution=r, cache_dir=cache)
            t0 = time.perf_counter()
            ds = load_dataset(cfg)
            built = time.perf_counter() - t0
            t0 = time.perf_counter()
            load_dataset(cfg)
            reused = time.perf_counter() - t0
            datasets[r] = ds
            print(f"  {r:4d} px: {len(ds)} samples built in {built:6.2f} s, second load_dataset {reused * 1000:6.1f} ms")

        print("\nInfiniteLoader images/s (median of repeats), float32 [-1, 1] on CPU, random order + flips:")
        print(f"  {'res':>5} {'workers=0':>12} {'workers=2':>12}")
        for r, ds in datasets.items():
            row = []
            for workers in (0, 2):
                loader = InfiniteLoader(ds, args.batch, seed=0, num_workers=workers)
                row.append(rate(lambda: next(loader), args.batch, args.seconds, args.repeats))
                loader.close()
            print(f"  {r:5d} {row[0]:12,.0f} {row[1]:12,.0f}")

        top = max(datasets)
        ds = datasets[top]
        rng = np.random.default_rng(0)
        print(f"\nmulti-resolution access from the {top} px cache, images/s (0 workers):")
        print(f"  {'res':>5} {'stored level':>13} {'on-the-fly':>12} {'ratio':>7}")
        r = top // 2
        while r >= 4:
            idx = lambda: rng.integers(0, len(ds), args.batch)  # noqa: E731
            stored = rate(lambda: ds.batch(idx(), resolution=r), args.batch, args.seconds, args.repeats)
            fly = rate(lambda: area_downsample(ds.batch(idx())[0], r), args.batch, args.seconds, args.repeats)
            print(f"  {r:5d} {stored:13,.0f} {fly:12,.0f} {stored / fly:6.1f}x")
            r //= 2

    if args.scan_files:
        scan_speed(args.scan_files)


def scan_speed(n: int) -> None:
    """Build a cache from `n` ADNI-shaped JPEGs (AD_NC/train/{AD,NC}/*.jpeg, 256x240 RGB)."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:240, 0:256]
        brain = (((yy - 120) / 100.0) ** 2 + ((xx - 128) / 90.0) ** 2 <= 1).astype(np.float32)
        for i in range(n):
            img = (brain * (120 + 80 * rng.random((240, 256)))).astype(np.uint8)
            folder = Path(tmp, "AD_NC", "train", "AD" if i % 2 else "NC")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.stack([img] * 3, -1)).save(folder / f"{i}_{i % 40}.jpeg", quality=90)
        print(f"\ncache build from {n} ADNI-like 256x240 JPEGs (decode, pad, area-resize, pyramid):")
        for r in (64, 256):
            t0 = time.perf_counter()
            ds = load_dataset(DataConfig(source=str(Path(tmp, "AD_NC")), resolution=r, cache_dir=str(Path(tmp, "c"))))
            dt = time.perf_counter() - t0
            t0 = time.perf_counter()
            load_dataset(DataConfig(source=str(Path(tmp, "AD_NC")), resolution=r, cache_dir=str(Path(tmp, "c"))))
            again = time.perf_counter() - t0
            print(f"  {r:4d} px: {len(ds)} images in {dt:5.2f} s = {len(ds) / dt:6,.0f} files/s; "
                  f"reuse (stat + index) {again * 1000:5.1f} ms")


if __name__ == "__main__":
    main()
