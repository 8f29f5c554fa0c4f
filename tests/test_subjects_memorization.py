"""Per-subject memorization: a generator that copies a patient's slices is flagged, noise is not."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from stylemri.metrics.subject_memorization import (
    SUBJECT_TABLE_HEADER,
    cross_subject_nn_distance,
    save_worst_cases,
    subject_memorization,
    write_subject_table,
)


def _patients(num_subjects: int = 6, slices: int = 5, res: int = 16, seed: int = 0):
    """Brain-like toy slices: each subject a smooth random field, its slices small drifts of it."""
    g = torch.Generator().manual_seed(seed)
    images, subjects = [], []
    for s in range(num_subjects):
        base = F.interpolate(torch.rand(1, 1, 4, 4, generator=g) * 1.6 - 0.8, size=res, mode="bilinear",
                             align_corners=False)
        drift = F.interpolate(torch.rand(1, 1, 4, 4, generator=g) - 0.5, size=res, mode="bilinear",
                              align_corners=False)
        for k in range(slices):
            images.append((base + 0.08 * k * drift).clamp(-1, 1)[0])
            subjects.append(f"S{s:02d}")
    return torch.stack(images), subjects


class CopyingGenerator:
    """A fake generator that returns training slices verbatim (what memorization must catch)."""

    def __init__(self, train: torch.Tensor, picks: list[int]):
        self.train, self.picks = train, picks

    def __call__(self, n: int) -> torch.Tensor:
        return self.train[[self.picks[i % len(self.picks)] for i in range(n)]].clone()


class NoiseGenerator:
    def __init__(self, shape: tuple[int, ...], seed: int = 1):
        self.shape, self.g = shape, torch.Generator().manual_seed(seed)

    def __call__(self, n: int) -> torch.Tensor:
        return torch.rand((n, *self.shape), generator=self.g) * 2 - 1


def test_copying_generator_is_flagged_per_subject():
    train, subjects = _patients()
    picks = [subjects.index("S03") + k for k in range(5)] + [subjects.index("S01")]
    fake = CopyingGenerator(train, picks)(12)
    result = subject_memorization(fake, train, subjects)
    assert result.threshold > 0
    assert result.flagged.all() and result.fraction_flagged == 1.0
    assert np.allclose(result.nearest_distance, 0.0, atol=1e-4)
    assert [subjects[i] for i in result.nearest_index] == list(result.nearest_subject)
    assert set(result.nearest_subject) == {"S03", "S01"}
    top = result.table[0]
    assert top.subject == "S03" and top.generated_nearest == 10 and top.training_slices == 5
    assert top.generated_close >= 10 and top.min_distance < 1e-4
    assert "S03" in result.flagged_subjects and "S01" in result.flagged_subjects
    untouched = [r for r in result.table if r.subject not in ("S01", "S03")]
    assert all(r.generated_nearest == 0 for r in untouched)


def test_noise_generator_is_not_flagged():
    train, subjects = _patients()
    noise = NoiseGenerator(tuple(train.shape[1:]))(12)
    result = subject_memorization(noise, train, subjects)
    assert not result.flagged.any() and result.flagged_subjects == ()
    assert all(r.generated_close == 0 for r in result.table)
    assert result.nearest_distance.min() > result.threshold


def test_threshold_ignores_same_subject_neighbours():
    train, subjects = _patients()
    codes = torch.tensor([int(s[1:]) for s in subjects])
    flat = train.reshape(len(train), -1)
    cross = cross_subject_nn_distance(flat, codes, chunk=7)
    brute = torch.cdist(flat, flat)
    brute[codes[:, None] == codes[None, :]] = float("inf")
    assert torch.allclose(cross, brute.min(dim=1).values)
    # slices of one patient are closer to each other than to other patients: a per-image yardstick
    # (each image its own subject) would be far smaller and miss a copy of a neighbouring slice
    per_image = subject_memorization(train[:1], train, None)
    per_subject = subject_memorization(train[:1], train, subjects)
    assert per_image.threshold < per_subject.threshold


def test_chunking_does_not_change_results():
    train, subjects = _patients(num_subjects=4, slices=3)
    gen = NoiseGenerator(tuple(train.shape[1:]))(5) * 0.3 + train[:5]
    a = subject_memorization(gen, train, subjects, chunk=2)
    b = subject_memorization(gen, train, subjects, chunk=1000)
    assert a.threshold == pytest.approx(b.threshold)
    assert np.array_equal(a.nearest_index, b.nearest_index) and a.table == b.table


def test_table_csv_and_worst_case_figure(tmp_path):
    train, subjects = _patients()
    fake = torch.cat([CopyingGenerator(train, [7])(2), NoiseGenerator(tuple(train.shape[1:]))(3)])
    result = subject_memorization(fake, train, subjects)
    path = write_subject_table(tmp_path / "memorization_subjects.csv", result)
    rows = list(csv.reader(path.open()))
    assert tuple(rows[0]) == SUBJECT_TABLE_HEADER and len(rows) == 1 + 6
    assert rows[1][0] == subjects[7] and int(rows[1][2]) >= 2
    fig = save_worst_cases(tmp_path / "worst.png", fake, train, result, k=3)
    with Image.open(fig) as im:
        assert im.size[0] > 100 and im.size[1] > 100
    assert list(result.worst(2)) == [0, 1]


def test_bad_inputs():
    train, subjects = _patients(num_subjects=2, slices=2)
    with pytest.raises(ValueError, match="one ID per training image"):
        subject_memorization(train, train, subjects[:-1])
    with pytest.raises(ValueError, match="differ in size"):
        subject_memorization(train[:, :, :8], train, subjects)
    with pytest.raises(ValueError, match="at least two subjects"):
        subject_memorization(train, train, ["same"] * len(train))


def test_yardstick_sampling_estimates_the_full_median():
    train, subjects = _patients(num_subjects=40, slices=5, seed=3)
    full = subject_memorization(train[:2], train, subjects, yardstick_queries=None)
    sampled = subject_memorization(train[:2], train, subjects, yardstick_queries=100, seed=1)
    again = subject_memorization(train[:2], train, subjects, yardstick_queries=100, seed=1)
    assert sampled.threshold == again.threshold  # reproducible by seed
    assert sampled.threshold == pytest.approx(full.threshold, rel=0.15)
    queries = torch.tensor([0, 7, 150])
    codes = torch.tensor([int(s[1:]) for s in subjects])
    flat = train.reshape(len(train), -1)
    assert torch.allclose(cross_subject_nn_distance(flat, codes, queries=queries),
                          cross_subject_nn_distance(flat, codes)[queries])
