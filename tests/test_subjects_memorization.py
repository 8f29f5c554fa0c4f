"""Per-subject memorization: a generator that copies a patient's slices is flagged, one returning noise is not."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from stylemri.config import DataConfig
from stylemri.data import load_dataset
from stylemri.metrics import evaluate as evaluate_mod
from stylemri.metrics import memorization as mem
from stylemri.metrics.inception import InceptionFeatures, WeightsInfo
from stylemri.metrics.metric_utils import source_from_array, source_from_dataset
from stylemri.metrics.subject_memorization import (
    ROW_FIELDS,
    per_subject_min_d2,
    subject_table,
    subjects_figure,
    write_subject_csv,
)


def _patients(num_subjects: int = 6, slices: int = 5, res: int = 16, seed: int = 0):
    """uint8 brain-like toy slices: per subject a smooth random field, its slices small drifts of it."""
    g = torch.Generator().manual_seed(seed)
    images, subjects = [], []
    for s in range(num_subjects):
        base = F.interpolate(torch.rand(1, 1, 4, 4, generator=g), size=res, mode="bilinear", align_corners=False)
        drift = F.interpolate(torch.rand(1, 1, 4, 4, generator=g) - 0.5, size=res, mode="bilinear",
                              align_corners=False)
        for k in range(slices):
            images.append((base + 0.04 * k * drift).clamp(0, 1)[0])
            subjects.append(f"S{s:02d}")
    return (torch.stack(images) * 255).round().to(torch.uint8).numpy(), np.array(subjects)


class CopyingGenerator:
    """A fake generator returning training slices verbatim: what memorization must catch."""

    def __init__(self, train: np.ndarray, picks: list[int]):
        self.train, self.picks = train, picks

    def __call__(self, start: int, count: int) -> np.ndarray:
        return self.train[[self.picks[(start + i) % len(self.picks)] for i in range(count)]].copy()


class NoiseGenerator:
    """A fake generator returning uniform noise: nothing like any patient."""

    def __init__(self, shape: tuple[int, ...], seed: int = 1):
        self.shape, self.seed = shape, seed

    def __call__(self, start: int, count: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, start])
        return rng.integers(0, 256, (count, *self.shape), dtype=np.uint8)


class _PoolTrunk(torch.nn.Module):
    """A stand-in for Inception: 8x8 average pooling as a 192-d 'feature' (fast, deterministic)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 8)


def _tiny_extractor() -> InceptionFeatures:
    return InceptionFeatures(_PoolTrunk(), WeightsInfo("pool.pt", "0" * 40, "test stand-in", None))


def test_copying_generator_flags_the_copied_subjects():
    train, subjects = _patients()
    src = source_from_array(train)
    s3 = list(np.flatnonzero(subjects == "S03"))
    fake = CopyingGenerator(train, s3 + [int(np.flatnonzero(subjects == "S01")[0])])(0, 12)
    result = mem.memorization(fake, src, subject_ids=subjects, num_baseline=30)
    table = subject_table(result, fake, src)
    assert table.threshold == result.spaces["pixel"].threshold > 0
    top = table.rows[0]
    assert top.subject == "S03" and top.nearest == 10 and top.training_slices == 5 and top.close >= 10
    assert top.min_distance == 0.0 and subjects[top.nearest_training] == "S03" and not top.flipped
    assert np.array_equal(fake[top.nearest_generated], train[top.nearest_training])
    assert set(table.flagged_subjects) >= {"S03", "S01"}
    by_subject = {r.subject: r for r in table.rows}
    assert by_subject["S01"].nearest == 2 and by_subject["S01"].min_distance == 0.0
    assert all(r.nearest == 0 for r in table.rows if r.subject not in ("S01", "S03"))
    assert sum(r.nearest for r in table.rows) == 12


def test_noise_generator_flags_no_subject():
    train, subjects = _patients()
    src = source_from_array(train)
    noise = NoiseGenerator(train.shape[1:])(0, 12)
    result = mem.memorization(noise, src, subject_ids=subjects, num_baseline=30)
    table = subject_table(result, noise, src)
    assert table.flagged_subjects == () and all(r.close == 0 for r in table.rows)
    assert min(r.min_distance for r in table.rows) > table.threshold


def test_flipped_copies_are_found_per_subject():
    train, subjects = _patients(num_subjects=4, slices=3)
    src = source_from_array(train)
    fake = train[[4, 5]][..., ::-1].copy()  # subject S01, mirrored
    result = mem.memorization(fake, src, subject_ids=subjects, num_baseline=12)
    row = subject_table(result, fake, src).rows[0]
    assert row.subject == "S01" and row.flipped and row.min_distance == 0.0 and row.close == 2
    no_flip = mem.memorization(fake, src, subject_ids=subjects, num_baseline=12, xflip=False)
    assert subject_table(no_flip, fake, src, xflip=False).rows[0].min_distance > 0


def test_per_subject_min_matches_brute_force():
    rng = np.random.default_rng(0)
    queries, refs = rng.random((7, 5), dtype=np.float32), rng.random((23, 5), dtype=np.float32)
    codes = rng.integers(0, 4, 23)
    batches = ((s, refs[s:s + 6], False) for s in range(0, 23, 6))
    got = per_subject_min_d2(queries, batches, codes, 4, query_chunk=3)
    d2 = ((queries[:, None, :].astype(np.float64) - refs[None, :, :]) ** 2).sum(-1)
    want = np.stack([d2[:, codes == s].min(axis=1) for s in range(4)], axis=1)
    assert np.allclose(got, want, atol=1e-5)


def test_evaluate_writes_subject_table_and_figure_from_a_dataset(tmp_path):
    """End to end: an ADNI-named folder -> dataset subjects -> evaluate(memorization) -> CSV + figure + JSON."""
    train, subjects = _patients(num_subjects=5, slices=4)
    for img, subj, k in zip(train, subjects, list(range(4)) * 5):
        path = tmp_path / "adni" / "AD" / f"{100 + int(subj[1:])}_{k}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0]).save(path)
    ds = load_dataset(DataConfig(source=str(tmp_path / "adni"), resolution=16, xflip=False))
    src = source_from_dataset(ds)
    assert src.subjects is not None and sorted(set(src.subjects)) == ["100", "101", "102", "103", "104"]
    victim = [i for i in range(len(ds)) if ds.subjects[i] == "102"]
    res = evaluate_mod.evaluate(CopyingGenerator(src.all(), victim), 8, src, "memorization", extractor=_tiny_extractor(),
                                batch_size=4, out_dir=tmp_path / "out")
    json.dumps(res)
    per_subject = res["metrics"]["memorization"]["subjects"]
    assert set(per_subject) == {"pixel", "feature"}
    for space in ("pixel", "feature"):
        assert per_subject[space]["worst"][0]["subject"] == "102" and per_subject[space]["worst"][0]["nearest"] == 8
        assert per_subject[space]["subjects_with_close"] >= 1 and per_subject[space]["num_subjects"] == 5
    files = res["metrics"]["memorization"]["files"]
    assert "memorization_subjects.csv" in files and "memorization_subjects.png" in files
    with (tmp_path / "out" / "memorization_subjects.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["subject", "training_slices"] + [f"{s}_{c}" for s in ("pixel", "feature") for c in ROW_FIELDS]
    assert len(rows) == 6 and rows[1][:4] == ["102", "4", "8", "8"]
    with Image.open(tmp_path / "out" / "memorization_subjects.png") as im:
        assert im.size[0] > 200 and im.size[1] > 200

    noise = evaluate_mod.evaluate(NoiseGenerator((1, 16, 16)), 8, src, "memorization", extractor=_tiny_extractor(),
                                  batch_size=4)
    assert noise["metrics"]["memorization"]["subjects"]["pixel"]["subjects_with_close"] == 0


def test_table_csv_and_figure_standalone(tmp_path):
    train, subjects = _patients()
    src = source_from_array(train)
    fake = np.concatenate([CopyingGenerator(train, [7])(0, 2), NoiseGenerator(train.shape[1:])(0, 3)])
    result = mem.memorization(fake, src, subject_ids=subjects, num_baseline=30)
    table = subject_table(result, fake, src)
    path = write_subject_csv(tmp_path / "t.csv", {"pixel": table})
    rows = list(csv.reader(path.open()))
    assert rows[1][0] == subjects[7] and int(rows[1][2]) >= 2 and len(rows) == 7
    fig = subjects_figure(tmp_path / "f.png", table, fake, src, num=3)
    with Image.open(fig) as im:
        assert im.size[1] > 300  # three rows


def test_bad_inputs():
    train, subjects = _patients(num_subjects=2, slices=2)
    src = source_from_array(train)
    without = mem.memorization(train, src, num_baseline=4)
    with pytest.raises(ValueError, match="no subject IDs"):
        subject_table(without, train, src)
    with_ids = mem.memorization(train, src, subject_ids=subjects, num_baseline=4)
    with pytest.raises(ValueError, match="no 'feature' space"):
        subject_table(with_ids, train, src, space="feature")
