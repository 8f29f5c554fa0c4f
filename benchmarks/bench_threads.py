"""Speed of the demo recipe as users run it (`stylemri train`, the Makefile's DEMO_TRAIN), quiet and under load.

    python benchmarks/bench_threads.py                          # threads 1 / 2 / policy, load 0 and 4, 3 rounds
    python benchmarks/bench_threads.py --load 0 4 --rounds 5 --kimg 4
    python benchmarks/bench_threads.py --variants "policy=" "t2=--threads 2" "passive=OMP_WAIT_POLICY=PASSIVE --threads 2"
    python benchmarks/bench_threads.py --load 0 --variants "t2=--threads 2" "ddp2=NPROC=2 --threads 1"   # torchrun x2
    python benchmarks/bench_threads.py --load 0 --base "--resolution 32 --conditional ..." \
        --variants "head=" "old=CHECKOUT=/tmp/old"         # another checkout (git archive REV) on the same flags

Each variant is `NAME=[ENV=VALUE ...] [train flags]`; the flags are added to DEMO_TRAIN (read from the
Makefile, so the benchmark follows the recipe); NPROC=N runs it as `torchrun --nproc_per_node=N` (CPU data
parallel, gloo: the same global batch split over N processes); CHECKOUT=PATH runs the stylemri of another
checkout (e.g. `git archive a34cdca | tar -x -C /tmp/old`: a speed regression between two commits), and
`--base` replaces DEMO_TRAIN by flags both versions accept. After the table, the resolved values
(config.json) in which each variant's run differs from the first's: the defaults that changed. One measurement = one `stylemri train --json-log` run of
`--kimg` on builtin:mni152 with ticks of 0.5 kimg: img/s is the median tick after the first (warm-up).
Load L = L busy single-thread processes started before and stopped after each measurement. Rounds
interleave the variants (A B C A B C ...) so slow drifts of the machine hit them alike; the table prints
medians over rounds and the ratio to the first variant at the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.recipes import makefile_flags  # noqa: E402

BUSY = "while True: pass"


def demo_flags() -> list[str]:
    """DEMO_TRAIN from the Makefile, without --kimg and the tick/sample/checkpoint cadence (set here)."""
    flags = makefile_flags("DEMO_TRAIN")
    drop = {"--kimg", "--tick-kimg", "--sample-ticks", "--checkpoint-ticks"}
    out, skip = [], False
    for f in flags:
        if skip:
            skip = False
        elif f in drop:
            skip = True
        else:
            out.append(f)
    return out


def parse_variant(text: str) -> tuple[str, dict[str, str], list[str]]:
    name, _, rest = text.partition("=")
    env, flags = {}, []
    for tok in shlex.split(rest):
        if re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", tok):
            key, _, value = tok.partition("=")
            env[key] = value
        else:
            flags.append(tok)
    return name, env, flags


def measure(env_extra: dict[str, str], base: list[str], flags: list[str], kimg: float, load: int
            ) -> tuple[float, str, dict]:
    """img/s (median tick after the first) of one short training run beside `load` busy processes, the
    threads it chose and its resolved config.json (flattened)."""
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(load)]
    try:
        with tempfile.TemporaryDirectory() as out:
            env = {**os.environ, **env_extra}
            env["PYTHONPATH"] = env.pop("CHECKOUT", str(ROOT))
            nproc = env.pop("NPROC", None)  # data parallel over N CPU processes (gloo), as torchrun runs it
            launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc else []
            cmd = [sys.executable, *launch, "-m", "stylemri", "train", "--data", "builtin:mni152", *base, *flags,
                   "--kimg", str(kimg), "--tick-kimg", "0.5", "--sample-ticks", "1000", "--checkpoint-ticks", "1000",
                   "--out", out, "--json-log"]
            # cwd: `python -m` puts the working directory first on sys.path, before PYTHONPATH
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=env["PYTHONPATH"])
            if proc.returncode != 0:
                raise SystemExit(f"training failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
            rates, threads = [], "?"
            for line in proc.stdout.splitlines():
                event = json.loads(line)
                if event.get("event") == "start":
                    threads = str(event.get("threads", "?"))
                elif "img_per_s" in event and event.get("tick", 0) > 1:
                    rates.append(float(event["img_per_s"]))
            (config,) = Path(out).glob("*/config.json")
            resolved = flatten(json.loads(config.read_text()))
            return (statistics.median(rates) if rates else float("nan")), threads, resolved
    finally:
        for p in busy:
            p.kill()
            p.wait()


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"train": {"lr": 1}} -> {"train.lr": 1}: config values by dotted name, to compare two runs."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(first: dict, other: dict) -> list[str]:
    """`key: first -> other` for every resolved value the two runs do not share (paths and times left out)."""
    skip = ("data.cache", "data.source", "fingerprint", "created", "run_dir")
    keys = sorted(k for k in set(first) | set(other) if not any(s in k for s in skip))
    return [f"{k}: {first.get(k, '-')!r} -> {other.get(k, '-')!r}" for k in keys if first.get(k, "-") != other.get(k, "-")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=["policy=", "t1=--threads 1", "t2=--threads 2"])
    ap.add_argument("--load", type=int, nargs="+", default=[0, 4], help="busy processes beside the run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kimg", type=float, default=3.0, help="images per measurement (ticks of 0.5 kimg)")
    ap.add_argument("--base", help="training flags instead of the Makefile's DEMO_TRAIN (e.g. an old recipe "
                                   "that every CHECKOUT accepts)")
    args = ap.parse_args()
    base = shlex.split(args.base) if args.base is not None else demo_flags()
    variants = [parse_variant(v) for v in args.variants]
    print(f"recipe: {shlex.join(base)}\n{os.cpu_count()} CPUs; {args.rounds} interleaved rounds",
          flush=True)
    results: dict[tuple[int, str], list[float]] = {}
    used: dict[tuple[int, str], str] = {}
    configs: dict[str, dict] = {}
    for r in range(args.rounds):
        for load in args.load:
            for name, env, flags in variants:
                rate, threads, configs[name] = measure(env, base, flags, args.kimg, load)
                results.setdefault((load, name), []).append(rate)
                used[(load, name)] = threads
                print(f"round {r + 1} load {load} {name:12s} {rate:7.1f} img/s (threads {threads})", flush=True)
    print(f"\n{'load':>4s}  {'variant':12s} {'threads':>7s} {'median img/s':>12s} {'ratio':>6s}  rounds")
    for load in args.load:
        first = statistics.median(results[(load, variants[0][0])])
        for name, _, _ in variants:
            med = statistics.median(results[(load, name)])
            rounds = " ".join(f"{v:.1f}" for v in results[(load, name)])
            print(f"{load:4d}  {name:12s} {used[(load, name)]:>7s} {med:12.1f} {med / first:6.2f}  {rounds}")

    first = variants[0][0]
    for name, _, _ in variants[1:]:
        diffs = config_differences(configs[first], configs[name])
        print(f"\nresolved values of {name} that differ from {first}: {len(diffs)}")
        for line in diffs:
            print(f"  {line}")


if __name__ == "__main__":
    main()
