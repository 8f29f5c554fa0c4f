"""Cost of the patient bookkeeping that every `load_dataset` call now does, at ADNI scale and beyond.

    python benchmarks/bench_subjects.py [--subjects 1000] [--slices 30] [--repeats 5]

Synthetic ADNI-named paths (`AD_NC/<split>/<class>/<subject>_<slice>.jpeg`); prints the median time of
subject derivation, the leak report, a stratified split, and applying a split file; then the cost of
the per-subject memorization table next to the memorization metric it extends (pixel space, CPU).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from stylemri.data.leaks import subject_report
from stylemri.data.splits import assign_splits, make_split, read_split_file
from stylemri.data.subjects import derive_subjects
from stylemri.metrics.memorization import memorization
from stylemri.metrics.metric_utils import source_from_array
from stylemri.metrics.subject_memorization import subject_table


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=1000)
    ap.add_argument("--slices", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    paths, classes, splits = [], [], []
    for s in range(args.subjects):
        cls, split = ("AD", "NC")[s % 2], ("train", "test")[int(rng.random() < 0.2)]
        for k in range(args.slices):
            paths.append(f"/data/AD_NC/{split}/{cls}/{100000 + s}_{k}.jpeg")
            classes.append(cls)
            splits.append(split)
    n = len(paths)
    ids = derive_subjects(paths)
    print(f"{n} files, {ids.num_subjects} subjects (median of {args.repeats} runs)")
    t = median_seconds(lambda: derive_subjects(paths), args.repeats)
    print(f"derive_subjects:   {t * 1e3:8.1f} ms  ({n / t:,.0f} files/s)")
    t = median_seconds(lambda: subject_report(ids.subjects, classes, splits), args.repeats)
    print(f"subject_report:    {t * 1e3:8.1f} ms  ({n / t:,.0f} samples/s)")
    t = median_seconds(lambda: make_split(paths, ids.subjects, classes, seed=0, root="/data/AD_NC"), args.repeats)
    print(f"make_split:        {t * 1e3:8.1f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        table = make_split(paths, ids.subjects, classes, seed=0, root="/data/AD_NC")
        table.write(Path(tmp) / "split.csv")
        t = median_seconds(lambda: read_split_file(Path(tmp) / "split.csv"), args.repeats)
        print(f"read_split_file:   {t * 1e3:8.1f} ms")
        back = read_split_file(Path(tmp) / "split.csv")
        t = median_seconds(lambda: assign_splits(paths, back), args.repeats)
        print(f"assign_splits:     {t * 1e3:8.1f} ms")
    # memorization (pixel space) vs. the per-subject table on top of it: same data, same device
    for gen_n, train_n, res in ((1000, 5000, 32), (3000, 20000, 32)):
        rng = np.random.default_rng(1)
        train = rng.integers(0, 256, (train_n, 1, res, res), dtype=np.uint8)
        gen = rng.integers(0, 256, (gen_n, 1, res, res), dtype=np.uint8)
        subj = np.array([str(i // args.slices) for i in range(train_n)])
        src = source_from_array(train)
        t0 = time.perf_counter()
        result = memorization(gen, src, subject_ids=subj)
        t1 = time.perf_counter()
        subject_table(result, gen, src)
        t2 = time.perf_counter()
        print(f"G={gen_n} N={train_n} {res}px ({train_n // args.slices} subjects): memorization {t1 - t0:6.2f} s, "
              f"per-subject table {t2 - t1:6.2f} s ({(t2 - t1) / (t1 - t0):.2f}x)")


if __name__ == "__main__":
    main()
