"""One entry point for all metrics: generated images (from a callable) vs real images -> a results dict.

`stylemri evaluate RUN` (and training-time metrics) wrap this: they turn a generator into a
`GenerateFn` and a dataset (class subset) into an `ImageSource`, then write the dict as JSON.
"""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from stylemri.errors import UserError
from stylemri.io import atomic_write
from stylemri.metrics import fid as fid_mod
from stylemri.metrics import kid as kid_mod
from stylemri.metrics import memorization as mem_mod
from stylemri.metrics import precision_recall, swd as swd_mod
from stylemri.metrics import subject_memorization as subj_mod
from stylemri.metrics.inception import InceptionFeatures, load_inception
from stylemri.metrics.metric_utils import (
    ImageSource, Progress, check_uint8_batch, extract_features, protocol_description, source_features,
)

GenerateFn = Callable[[int, int], np.ndarray]  # (start, count) -> uint8 (count, C, R, R); image i is fixed by i
METRICS = ("fid", "kid", "pr", "swd", "memorization")
INCEPTION_METRICS = ("fid", "kid", "pr")


def parse_metrics(spec: str | Sequence[str]) -> tuple[str, ...]:
    """'fid,kid' or ['fid', 'kid'] -> validated names in canonical order."""
    names = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    unknown = sorted(set(names) - set(METRICS))
    if unknown or not names:
        raise UserError(f"--metrics {','.join(names) or spec!r}: expected a comma-separated subset of {','.join(METRICS)}")
    return tuple(m for m in METRICS if m in names)


def generate_all(generate: GenerateFn, num: int, batch_size: int) -> np.ndarray:
    """Call `generate` batch by batch and check what it returns."""
    if num < 2:
        raise UserError(f"--num {num}: expected at least 2 generated images")
    out = []
    for start in range(0, num, batch_size):
        count = min(batch_size, num - start)
        batch = check_uint8_batch(generate(start, count), "generated images")
        if len(batch) != count:
            raise ValueError(f"generate({start}, {count}) returned {len(batch)} images")
        out.append(batch)
    return np.concatenate(out, axis=0)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(path, "w") as f:
        f.write(buf.getvalue())


def evaluate(
    generate: GenerateFn,
    num: int,
    real: ImageSource,
    metrics: str | Sequence[str] = ("fid",),
    *,
    training: ImageSource | None = None,
    subject_ids: np.ndarray | None = None,
    extractor: InceptionFeatures | None = None,
    inception: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    kid_subsets: int = 100,
    swd_config: swd_mod.SWDConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Compute `metrics` for `num` generated images against `real` (memorization: against `training`,
    default `real`; `subject_ids` default `training.subjects`). With `out_dir`, memorization also writes
    `memorization_closest.png` and `memorization.csv` there, and with subject IDs the per-subject
    `memorization_subjects.csv` and `memorization_subjects.png`. Returns a JSON-able dict with the protocol and per-metric results."""
    names = parse_metrics(metrics)
    training = training or real
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    fake = generate_all(generate, num, max(batch_size, 1))
    timings["generate"] = time.perf_counter() - t0
    if fake.shape[1:] != (real.channels, real.resolution, real.resolution):
        raise ValueError(f"generated images {fake.shape[1:]} do not match real images "
                         f"{(real.channels, real.resolution, real.resolution)}")

    results: dict[str, Any] = {"num_generated": int(num), "num_real": int(real.num), "metrics": {}}
    notes: list[str] = []
    want_features = any(m in names for m in INCEPTION_METRICS)
    if extractor is None and (want_features or "memorization" in names):
        try:
            extractor = load_inception(inception, device=device)
        except UserError:
            if want_features:
                raise
            notes.append("memorization in feature space skipped: no Inception weights")
    results["protocol"] = protocol_description(extractor)

    real_feats = fake_feats = None
    if extractor is not None and (want_features or "memorization" in names):
        t = time.perf_counter()
        real_feats, cached = source_features(real, extractor, cache_dir=cache_dir, batch_size=batch_size,
                                             progress=progress)
        results["real_features_from_cache"] = cached
        fake_feats = extract_features(iter([fake]), extractor, batch_size=batch_size, total=num, progress=progress)
        timings["features"] = time.perf_counter() - t

    m: dict[str, Any] = results["metrics"]
    if "fid" in names:
        t = time.perf_counter()
        m["fid"] = fid_mod.fid_from_features(real_feats, fake_feats)
        timings["fid"] = time.perf_counter() - t
    if "kid" in names:
        t = time.perf_counter()
        m["kid"] = kid_mod.kid(real_feats, fake_feats, num_subsets=kid_subsets, seed=seed).to_dict()
        timings["kid"] = time.perf_counter() - t
    if "pr" in names:
        t = time.perf_counter()
        m["pr"] = precision_recall.prdc(real_feats, fake_feats)
        timings["pr"] = time.perf_counter() - t
    if "swd" in names:
        t = time.perf_counter()
        cfg = swd_config or swd_mod.SWDConfig(seed=seed)
        m["swd"] = swd_mod.swd(real.batches(max(batch_size, 64)), iter([fake]), cfg)
        timings["swd"] = time.perf_counter() - t
    if "memorization" in names:
        t = time.perf_counter()
        train_feats = None
        if extractor is not None:
            train_feats = real_feats if training is real else source_features(
                training, extractor, cache_dir=cache_dir, batch_size=batch_size, progress=progress)[0]
        if subject_ids is None:
            subject_ids = training.subjects  # a dataset source carries its samples' subjects
        mem = mem_mod.memorization(
            fake, training, generated_features=fake_feats if train_feats is not None else None,
            training_features=train_feats, subject_ids=subject_ids, seed=seed, device=device,
        )
        m["memorization"] = mem.summary()
        notes += [f"memorization: {note}" for note in mem.notes]
        tables = {}
        if mem.subject_ids is not None:  # per patient: which subjects does the generator reproduce?
            tables = {space: subj_mod.subject_table(mem, fake, training, space=space, generated_features=fake_feats,
                                                    training_features=train_feats, device=device)
                      for space in mem.spaces}
            m["memorization"]["subjects"] = {space: t.summary() for space, t in tables.items()}
        if out_dir is not None:
            out = Path(out_dir)
            mem_mod.closest_pairs_figure(out / "memorization_closest.png", mem, fake, training)
            _write_csv(out / "memorization.csv", mem.rows())
            m["memorization"]["files"] = ["memorization_closest.png", "memorization.csv"]
            if tables:
                subj_mod.write_subject_csv(out / "memorization_subjects.csv", tables)
                subj_mod.subjects_figure(out / "memorization_subjects.png", tables["pixel"], fake, training)
                m["memorization"]["files"] += ["memorization_subjects.csv", "memorization_subjects.png"]
        timings["memorization"] = time.perf_counter() - t
    if notes:
        results["notes"] = notes
    results["seconds"] = {k: round(v, 3) for k, v in timings.items()}
    return results
