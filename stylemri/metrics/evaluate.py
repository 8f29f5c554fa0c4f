"""One entry point for all metrics: generated images (from a callable) vs real images -> a results dict.

`stylemri evaluate RUN` (and training-time metrics) wrap this: they turn a generator into a
`GenerateFn` and a dataset (class subset) into an `ImageSource`, then write the dict as JSON.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from stylemri.errors import UserError
from stylemri.io import write_csv
from stylemri.metrics import fid as fid_mod
from stylemri.metrics import kid as kid_mod
from stylemri.metrics import memorization as mem_mod
from stylemri.metrics import precision_recall, swd as swd_mod
from stylemri.metrics import subject_memorization as subj_mod
from stylemri.metrics import volumes as vol_mod
from stylemri.metrics.inception import InceptionFeatures, load_inception
from stylemri.metrics.metric_utils import (
    ImageSource, Progress, check_uint8_batch, extract_features, protocol_description, source_features,
)

GenerateFn = Callable[[int, int], np.ndarray]  # (start, count) -> uint8 (count, C, R, R); image i is fixed by i


@dataclass
class MetricInputs:
    """What a metric may use: the generated images, the real (and training) images, their features."""

    fake: np.ndarray
    real: ImageSource
    training: ImageSource
    real_features: np.ndarray | None
    fake_features: np.ndarray | None
    extractor: InceptionFeatures | None
    subject_ids: np.ndarray | None
    device: str | torch.device
    batch_size: int
    cache_dir: str | os.PathLike | None
    seed: int
    kid_subsets: int
    swd_config: swd_mod.SWDConfig | None
    out_dir: Path | None
    progress: Progress | None
    notes: list[str]  # what a metric could not do as asked, said in the results' "notes"


@dataclass
class VolumeInputs:
    """What a metric of a 3-D run may use: uint8 (N, C, R, R, R) volumes and the volumes' subjects."""

    real: np.ndarray
    fake: np.ndarray
    subjects: np.ndarray | None
    extractor: InceptionFeatures | None
    seed: int
    slices_per_volume: int


MetricFn = Callable[[MetricInputs], Any]
VolumeFn = Callable[[VolumeInputs], dict[str, Any]]  # -> entries of the 3-D results' "metrics"


@dataclass(frozen=True)
class Scalar:
    """One number of a metric's result that training logs (metrics.jsonl, stats.jsonl, TensorBoard, the
    plot): `key` in the log, `field` of the result (None: the result is the number)."""

    key: str
    field: str | None = None
    lower_is_better: bool = True


@dataclass(frozen=True)
class Metric:
    """A registry entry: everything the package knows about a metric, so a new metric is one entry.

    training: `train --metrics` may evaluate it at checkpoints; inception: needs Inception features (the
    weights must be found); inception_optional: uses them when found; volume: its 3-D form (metrics/volumes.py),
    None when not defined for 3-D runs; scalars: the numbers training logs, the first lower-is-better one of
    the first requested metric that has one ranks checkpoints; min_resolution: the smallest image it takes;
    writes_files: it writes files when `evaluate` is given an `out_dir`."""

    name: str
    fn: MetricFn
    training: bool = False
    inception: bool = False
    inception_optional: bool = False
    volume: VolumeFn | None = None
    scalars: tuple[Scalar, ...] = ()
    min_resolution: int = 4
    writes_files: bool = False

    @property
    def score(self) -> Scalar | None:
        """The scalar that ranks checkpoints (lower is better), if any."""
        return next((s for s in self.scalars if s.lower_is_better), None)

    def flat(self, result: Any) -> dict[str, float]:
        """This metric's scalars from its result (missing ones left out)."""
        out = {}
        for s in self.scalars:
            value = result if s.field is None else (result or {}).get(s.field)
            if value is not None:
                out[s.key] = float(value)
        return out


REGISTRY: dict[str, Metric] = {}


def register_metric(name: str, **properties: Any) -> Callable[[MetricFn], MetricFn]:
    """Add a metric under `name` (as NVlabs' metric_main.register_metric): `evaluate` runs it by name;
    `properties` are the fields of `Metric`. The registry is the only list of metric names."""
    def add(fn: MetricFn) -> MetricFn:
        REGISTRY[name] = Metric(name, fn, **properties)
        return fn
    return add


def metric_names(kind: str | None = None) -> tuple[str, ...]:
    """Registered names in registration order; with `kind` (training, volumes, inception) only those."""
    def has(m: Metric) -> bool:
        return kind is None or bool(m.volume is not None if kind == "volumes" else getattr(m, kind))
    return tuple(n for n, m in REGISTRY.items() if has(m))


def training_scalars() -> tuple[Scalar, ...]:
    """Every scalar training may log, in registry order (the panels of plots/metrics.png)."""
    return tuple(s for m in REGISTRY.values() if m.training for s in m.scalars)


def flat_scalars(results: dict[str, Any]) -> dict[str, float]:
    """{metric name: result} (evaluate's "metrics") -> the logged scalars, e.g. {"fid": 12.3, "precision": 0.7}."""
    out: dict[str, float] = {}
    for name, result in results.items():
        out.update(REGISTRY[name].flat(result))
    return out


def checkpoint_score(names: Sequence[str], flat: dict[str, float]) -> float | None:
    """The value that ranks checkpoints (lower is better): the score of the first of `names` that has one."""
    for name in names:
        score = REGISTRY[name].score
        if score is not None and score.key in flat:
            return flat[score.key]
    return None


def _volume_swd(x: VolumeInputs) -> dict[str, Any]:
    return {"swd": vol_mod.swd3d(x.real, x.fake, swd_mod.SWDConfig(seed=x.seed))}


def _volume_slices(x: VolumeInputs) -> dict[str, Any]:
    """FID and KID of slices, per axis: one computation for both."""
    return {"slices": vol_mod.slice_fid_kid(x.real, x.fake, x.extractor, slices_per_volume=x.slices_per_volume,
                                            seed=x.seed)}


def _volume_memorization(x: VolumeInputs) -> dict[str, Any]:
    return {"memorization": vol_mod.nearest_real(x.fake, x.real, x.subjects)}


@register_metric("fid", training=True, inception=True, volume=_volume_slices, scalars=(Scalar("fid"),))
def _fid(x: MetricInputs) -> float:
    return fid_mod.fid_from_features(x.real_features, x.fake_features)


@register_metric("kid", training=True, inception=True, volume=_volume_slices, scalars=(Scalar("kid", "mean"),))
def _kid(x: MetricInputs) -> dict[str, float]:
    return kid_mod.kid(x.real_features, x.fake_features, num_subsets=x.kid_subsets, seed=x.seed).to_dict()


@register_metric("pr", training=True, inception=True,
                 scalars=(Scalar("precision", "precision", False), Scalar("recall", "recall", False)))
def _pr(x: MetricInputs) -> dict[str, float]:
    return precision_recall.prdc(x.real_features, x.fake_features)


@register_metric("swd", training=True, volume=_volume_swd, scalars=(Scalar("swd", "mean"),),
                 min_resolution=swd_mod.SWDConfig.min_resolution)
def _swd(x: MetricInputs) -> dict[str, Any]:
    cfg = x.swd_config or swd_mod.SWDConfig(seed=x.seed)
    return swd_mod.swd(x.real.batches(max(x.batch_size, 64)), iter([x.fake]), cfg)


@register_metric("memorization", inception_optional=True, volume=_volume_memorization, writes_files=True)
def _memorization(x: MetricInputs) -> dict[str, Any]:
    """Nearest training image of each generated one; per subject when subjects are known; files in out_dir."""
    train_feats = None
    if x.extractor is not None:
        train_feats = x.real_features if x.training is x.real else source_features(
            x.training, x.extractor, cache_dir=x.cache_dir, batch_size=x.batch_size, progress=x.progress)[0]
    subject_ids = x.subject_ids if x.subject_ids is not None else x.training.subjects
    mem = mem_mod.memorization(
        x.fake, x.training, generated_features=x.fake_features if train_feats is not None else None,
        training_features=train_feats, subject_ids=subject_ids, seed=x.seed, device=x.device,
    )
    out = mem.summary()
    x.notes.extend(f"memorization: {note}" for note in mem.notes)
    tables = {}
    if mem.subject_ids is not None:  # per patient: which subjects does the generator reproduce?
        tables = {space: subj_mod.subject_table(mem, x.fake, x.training, space=space,
                                                generated_features=x.fake_features, training_features=train_feats,
                                                device=x.device)
                  for space in mem.spaces}
        out["subjects"] = {space: t.summary() for space, t in tables.items()}
    if x.out_dir is not None:
        mem_mod.closest_pairs_figure(x.out_dir / "memorization_closest.png", mem, x.fake, x.training)
        rows = mem.rows()
        write_csv(x.out_dir / "memorization.csv", list(rows[0]) if rows else [], rows)
        out["files"] = ["memorization_closest.png", "memorization.csv"]
        if tables:
            subj_mod.write_subject_csv(x.out_dir / "memorization_subjects.csv", tables)
            subj_mod.subjects_figure(x.out_dir / "memorization_subjects.png", tables["pixel"], x.fake, x.training)
            out["files"] += ["memorization_subjects.csv", "memorization_subjects.png"]
    return out


METRICS = metric_names()  # canonical order: the order of registration
INCEPTION_METRICS = metric_names("inception")
TRAINING_METRICS = metric_names("training")  # at checkpoints; `checkpoint_score` ranks them
VOLUME_METRICS = metric_names("volumes")


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
    `memorization_subjects.csv` and `memorization_subjects.png`. Returns a JSON-able dict with the protocol and
    per-metric results.

    Long because its signature names every protocol setting one keyword each (the body is 40 lines)."""
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
    want_features = any(REGISTRY[m].inception for m in names)
    may_use = want_features or any(REGISTRY[m].inception_optional for m in names)
    if extractor is None and may_use:
        try:
            extractor = load_inception(inception, device=device)
        except UserError:
            if want_features:
                raise
            notes.extend(f"{m} in feature space skipped: no Inception weights"
                         for m in names if REGISTRY[m].inception_optional)
    results["protocol"] = protocol_description(extractor)

    real_feats = fake_feats = None
    if extractor is not None and may_use:
        t = time.perf_counter()
        real_feats, cached = source_features(real, extractor, cache_dir=cache_dir, batch_size=batch_size,
                                             progress=progress)
        results["real_features_from_cache"] = cached
        fake_feats = extract_features(iter([fake]), extractor, batch_size=batch_size, total=num, progress=progress)
        timings["features"] = time.perf_counter() - t

    inputs = MetricInputs(fake, real, training, real_feats, fake_feats, extractor, subject_ids, device, batch_size,
                          cache_dir, seed, kid_subsets, swd_config, Path(out_dir) if out_dir is not None else None,
                          progress, notes)
    for name in names:
        t = time.perf_counter()
        results["metrics"][name] = REGISTRY[name].fn(inputs)
        timings[name] = time.perf_counter() - t
    if notes:
        results["notes"] = notes
    results["seconds"] = {k: round(v, 3) for k, v in timings.items()}
    return results


def evaluate_volumes(real: np.ndarray, fake: np.ndarray, metrics: Sequence[str], *,
                     subjects: np.ndarray | None = None, extractor: InceptionFeatures | None = None, seed: int = 0,
                     slices_per_volume: int = 8) -> dict[str, Any]:
    """The 3-D forms of the registered metrics named (fid / kid as slice metrics, computed once for both)."""
    out: dict[str, Any] = {"num_real": int(len(real)), "num_generated": int(len(fake)), "metrics": {}}
    inputs = VolumeInputs(real, fake, subjects, extractor, seed, slices_per_volume)
    done: list[VolumeFn] = []
    for name in metrics:
        fn = REGISTRY[name].volume
        if fn is None:
            raise ValueError(f"metric {name}: not defined for 3-D runs")
        if fn not in done:
            out["metrics"].update(fn(inputs))
            done.append(fn)
    return out
