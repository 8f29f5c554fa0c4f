"""Memorization: copies (also flipped) are found and flagged, fresh samples are not, subjects are honoured."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from stylemri.metrics import memorization as mem
from stylemri.metrics.metric_utils import source_from_array


def _slices(num_subjects: int, per_subject: int, res: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per subject a random smooth 'anatomy'; its slices differ a little from each other, subjects a lot."""
    rng = np.random.default_rng(seed)
    imgs, subj = [], []
    for s in range(num_subjects):
        base = rng.uniform(40, 215, size=(res, res))
        for k in range(per_subject):
            imgs.append(np.clip(base + rng.normal(0, 6, size=(res, res)) + 3 * k, 0, 255))
            subj.append(f"sub-{s:02d}")
    return np.rint(np.stack(imgs))[:, None].astype(np.uint8), np.array(subj)


def test_copies_and_flipped_copies_are_flagged_fresh_samples_are_not():
    train, subjects = _slices(6, 4)
    rng = np.random.default_rng(1)
    fresh = rng.integers(0, 30, size=(3, 1, 16, 16)).astype(np.uint8)  # images unlike any training image
    noisy_copy = np.clip(train[5].astype(int) + rng.integers(-1, 2, train[5].shape), 0, 255).astype(np.uint8)
    generated = np.concatenate([train[[3]], train[[10]][..., ::-1], noisy_copy[None], fresh])
    res = mem.memorization(generated, source_from_array(train), subject_ids=subjects, num_baseline=24)
    px = res.spaces["pixel"]
    assert px.nearest_index[:3].tolist() == [3, 10, 5]
    assert px.flipped[:3].tolist() == [False, True, False]
    assert px.distance[0] == 0.0 and px.distance[1] == 0.0 and 0 < px.distance[2] < 0.01
    assert px.closer.tolist() == [True, True, True, False, False, False]
    summary = res.summary()
    assert summary["pixel"]["fraction_closer"] == pytest.approx(0.5)
    assert res.nearest_subject().tolist()[:3] == ["sub-00", "sub-02", "sub-01"]  # 4 slices per subject
    assert summary["pixel"]["subjects_matched_by_flagged"] == 3
    assert summary["baseline_excludes_same_subject"] is True


def test_baseline_excludes_same_subject_and_self():
    train, subjects = _slices(4, 5)
    src = source_from_array(train)
    gen = train[:2]
    without = mem.memorization(gen, src, num_baseline=20, xflip=False)
    within = mem.memorization(gen, src, subject_ids=subjects, num_baseline=20, xflip=False)
    # Without subject IDs the nearest other image is a slice of the same subject: a much smaller yardstick.
    assert without.spaces["pixel"].threshold < 0.5 * within.spaces["pixel"].threshold
    assert np.all(without.spaces["pixel"].baseline > 0)  # never the image itself
    # One subject (builtin:mni152): the per-image result, exactly as without IDs, and a note saying why.
    one = mem.memorization(gen, src, subject_ids=np.array(["one"] * len(train)), num_baseline=20, xflip=False)
    assert one.subject_ids is None and "one subject (one)" in one.summary()["notes"][0]
    assert np.array_equal(one.spaces["pixel"].baseline, without.spaces["pixel"].baseline)
    with pytest.raises(ValueError, match="one per training image"):
        mem.memorization(gen, src, subject_ids=subjects[:3])


def test_feature_space_and_outputs(tmp_path):
    train, subjects = _slices(3, 3)
    rng = np.random.default_rng(2)
    train_feats = rng.normal(size=(len(train), 8)).astype(np.float32)
    gen = train[[0, 4]]
    gen_feats = np.stack([train_feats[0], train_feats[4] + 10.0])
    src = source_from_array(train)
    res = mem.memorization(gen, src, generated_features=gen_feats, training_features=train_feats,
                           subject_ids=subjects, num_baseline=9)
    feat = res.spaces["feature"]
    assert feat.nearest_index[0] == 0 and feat.distance[0] == 0.0 and feat.closer.tolist() == [True, False]
    rows = res.rows()
    assert rows[1]["pixel_nearest"] == 4 and rows[1]["feature_closer_than_real"] is False
    assert rows[0]["pixel_subject"] == "sub-00"
    path = tmp_path / "pairs.png"
    mem.closest_pairs_figure(path, res, gen, src, num=2)
    with Image.open(path) as im:
        assert im.size[0] > 100 and im.size[1] > 100
    with pytest.raises(ValueError, match="differ in shape"):
        mem.memorization(np.zeros((1, 1, 8, 8), np.uint8), src)
