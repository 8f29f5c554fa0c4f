"""Latency of `stylemri explore` under load: N concurrent `GET /api/generate` calls (distinct seeds) against
the real server (uvicorn on 127.0.0.1, loopback only), on CPU.

    python benchmarks/bench_explore.py                      # 64 px, 50 concurrent calls, 3 rounds
    python benchmarks/bench_explore.py --concurrent 50 --rounds 5 --channel-max 64

The generator is StyleGAN2 at --resolution, randomly initialised (speed does not depend on training),
conditional with two classes; --channel-max/--z-dim shrink it to demo size. The server runs one model
behind one lock, so requests queue: p95 is about N times the single-image time. Prints p50 / p95 / max
latency per round, then the median over rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stylemri.config import NetworkConfig, RunConfig  # noqa: E402
from stylemri.explore import ModelService, bind, create_app  # noqa: E402
from stylemri.explore.server import url_of  # noqa: E402
from stylemri.model import TrainedModel  # noqa: E402
from stylemri.networks import build_generator  # noqa: E402


def make_service(resolution: int, channel_max: int, z_dim: int) -> ModelService:
    net = NetworkConfig(arch="stylegan2", resolution=resolution, c_dim=2, z_dim=z_dim, w_dim=z_dim,
                        channel_max=channel_max)
    torch.manual_seed(0)
    G = build_generator(net).eval().requires_grad_(False)
    cfg = RunConfig(network=net, class_names=("AD", "NC"))
    model = TrainedModel(G=G, config=cfg, class_names=("AD", "NC"), checkpoint=Path("bench/ckpt-0.json"), kimg=0.0,
                         device=torch.device("cpu"))
    return ModelService(model)


def start(service: ModelService) -> tuple[str, threading.Thread, object]:
    import uvicorn

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning", access_log=False,
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return url_of(sock), thread, server


def one_round(url: str, n: int, first_seed: int) -> list[float]:
    import httpx

    with httpx.Client(base_url=url, timeout=300, limits=httpx.Limits(max_connections=n)) as client:
        def call(seed: int) -> float:
            t0 = time.perf_counter()
            r = client.get("/api/generate", params={"seed": seed, "class": "AD" if seed % 2 else "NC", "trunc": 0.7})
            elapsed = time.perf_counter() - t0
            if r.status_code != 200 or r.headers["content-type"] != "image/png":
                raise RuntimeError(f"seed {seed}: {r.status_code} {r.text[:200]}")
            return elapsed

        barrier = threading.Barrier(n)

        def at_once(seed: int) -> float:
            barrier.wait()
            return call(seed)

        with ThreadPoolExecutor(max_workers=n) as pool:
            return list(pool.map(at_once, range(first_seed, first_seed + n)))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--concurrent", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--channel-max", type=int, default=512, help="network width cap (512 = NVlabs' default)")
    ap.add_argument("--z-dim", type=int, default=512)
    args = ap.parse_args()
    service = make_service(args.resolution, args.channel_max, args.z_dim)
    url, _, server = start(service)
    one_round(url, 4, 10_000)  # warm-up
    t0 = time.perf_counter()
    service.generate(0, 0, 0.7)
    single = time.perf_counter() - t0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; StyleGAN2 {args.resolution} px, "
          f"channel_max {args.channel_max}, z/w {args.z_dim}; server {url} (loopback)")
    print(f"one image in-process: {single * 1000:.1f} ms")
    print(f"{'round':>5} {'calls':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'wall s':>7} {'img/s':>6}")
    p50s, p95s = [], []
    for r in range(args.rounds):
        t0 = time.perf_counter()
        lat = one_round(url, args.concurrent, r * args.concurrent)
        wall = time.perf_counter() - t0
        p50, p95 = percentile(lat, 0.5), percentile(lat, 0.95)
        p50s.append(p50)
        p95s.append(p95)
        print(f"{r:>5} {len(lat):>6} {p50 * 1000:>8.1f} {p95 * 1000:>8.1f} {max(lat) * 1000:>8.1f} {wall:>7.2f} "
              f"{len(lat) / wall:>6.1f}")
    print(f"median over {args.rounds} rounds: p50 {statistics.median(p50s) * 1000:.1f} ms, "
          f"p95 {statistics.median(p95s) * 1000:.1f} ms for {args.concurrent} concurrent /api/generate calls")
    server.should_exit = True


if __name__ == "__main__":
    main()
