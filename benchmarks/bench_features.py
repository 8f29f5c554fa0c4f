"""Inception feature throughput (images/s): the clean-fid resize alone, the network alone, and end to end.

    python benchmarks/bench_features.py [--resolution 256] [--batch-size 32] [--repeats 5] [--devices cpu,cuda]

Prints the median over repeats (after one warm-up) per device; CUDA is measured when available.
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

from stylemri.metrics.inception import load_inception  # noqa: E402
from stylemri.metrics.metric_utils import extract_features, resize_for_inception  # noqa: E402


def _median_rate(fn, n_images: int, repeats: int, sync=lambda: None) -> float:
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return n_images / statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--devices", default="cpu,cuda")
    args = p.parse_args()

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.batch_size, 1, args.resolution, args.resolution), dtype=np.uint8)
    n = args.batch_size
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; batch {n} grayscale "
          f"{args.resolution}x{args.resolution} uint8; median of {args.repeats} repeats")
    resize_rate = _median_rate(lambda: resize_for_inception(images), n, args.repeats)
    print(f"resize (PIL bicubic to 299, CPU):       {resize_rate:8.1f} images/s")
    resized = torch.from_numpy(resize_for_inception(images))
    for dev in [d.strip() for d in args.devices.split(",") if d.strip()]:
        if dev.startswith("cuda") and not torch.cuda.is_available():
            print(f"{dev}: not available here, skipped")
            continue
        ext = load_inception(device=dev)
        sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
        x = resized.to(dev)
        net_rate = _median_rate(lambda: ext(x), n, args.repeats, sync)
        e2e_rate = _median_rate(lambda: extract_features(iter([images]), ext, batch_size=n), n, args.repeats, sync)
        name = torch.cuda.get_device_name(dev) if dev.startswith("cuda") else "CPU"
        print(f"{dev} ({name}) Inception forward:  {net_rate:8.1f} images/s")
        print(f"{dev} ({name}) end to end (uint8->features): {e2e_rate:8.1f} images/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
