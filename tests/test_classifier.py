"""The slice classifier behind class consistency (and train-on-synthetic / test-on-real): it learns shapes
that differ by class, is deterministic, and counts consistency exactly as its predictions say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stylemri.errors import UserError
from stylemri.metrics.classifier import (
    ClassifierConfig, as_float_images, class_consistency, evaluate_classifier, train_classifier,
)

R = 16


def _shapes(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (3n, 1, R, R): class 0 a wide ellipse, 1 a tall ellipse, 2 a ring; random position, size, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:R, 0:R].astype(np.float64)
    images, labels = [], []
    for c in range(3):
        for _ in range(n_per_class):
            cy, cx = R / 2 + rng.uniform(-2, 2, size=2)
            s = rng.uniform(0.8, 1.1)
            if c == 0:
                inside = ((yy - cy) / (2.5 * s)) ** 2 + ((xx - cx) / (6 * s)) ** 2 <= 1
            elif c == 1:
                inside = ((yy - cy) / (6 * s)) ** 2 + ((xx - cx) / (2.5 * s)) ** 2 <= 1
            else:
                rad = np.hypot(yy - cy, xx - cx)
                inside = (rad >= 3.5 * s) & (rad <= 5.5 * s)
            img = 0.8 * inside + 0.15 * rng.random((R, R))
            images.append(np.clip(img * 255, 0, 255).astype(np.uint8))
            labels.append(c)
    return np.stack(images)[:, None], np.array(labels)


FAST = ClassifierConfig(epochs=12, batch=16, seed=0)


@pytest.fixture(scope="module")
def trained():
    x, y = _shapes(24, seed=0)
    return train_classifier(x, y, num_classes=3, config=FAST)


def test_learns_held_out_shapes(trained):
    x, y = _shapes(20, seed=1)
    result = evaluate_classifier(trained, x, y)
    assert trained.train_accuracy >= 0.95
    assert result["num"] == 60 and result["accuracy"] >= 0.9
    assert all(a >= 0.8 for a in result["per_class_accuracy"].values())
    assert result["auc_ovr_macro"] >= 0.95
    # A classifier that knows nothing (labels shuffled) does not score like that: the test can fail.
    shuffled = np.random.default_rng(0).permutation(y)
    assert evaluate_classifier(trained, x, shuffled)["accuracy"] < 0.6


def test_predict_proba_is_a_distribution_and_accepts_float_images(trained):
    x, _ = _shapes(4, seed=2)
    p = trained.predict_proba(x)
    assert p.shape == (12, 3) and p.dtype == np.float64
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    p_float = trained.predict_proba(torch.from_numpy(x).float() / 127.5 - 1.0)  # [-1, 1] floats, as generators give
    np.testing.assert_allclose(p_float, p, atol=1e-6)
    np.testing.assert_array_equal(trained.predict(x), p.argmax(axis=1))


def test_deterministic_for_a_seed_and_leaves_global_rng_alone():
    x, y = _shapes(8, seed=3)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    threads = torch.get_num_threads()
    a = train_classifier(x, y, config=ClassifierConfig(epochs=2, batch=8, seed=5))
    assert torch.equal(torch.get_rng_state(), before) and torch.get_num_threads() == threads
    b = train_classifier(x, y, config=ClassifierConfig(epochs=2, batch=8, seed=5))
    c = train_classifier(x, y, config=ClassifierConfig(epochs=2, batch=8, seed=6))
    for pa, pb in zip(a.net.state_dict().values(), b.net.state_dict().values()):
        assert torch.equal(pa, pb)
    assert not np.array_equal(a.predict_proba(x), c.predict_proba(x))


def test_class_consistency_counts_what_the_classifier_predicts(trained):
    x, _ = _shapes(6, seed=4)
    pred = trained.predict(x)
    requested = np.array([0, 1, 2] * 6)  # deliberately not the true classes for most images
    out = class_consistency(trained, x, requested, ["wide", "tall", "ring"])
    assert out["num"] == 18 and out["class_names"] == ["wide", "tall", "ring"]
    for c, name in enumerate(["wide", "tall", "ring"]):
        sel = requested == c
        assert out["per_class"][name]["num"] == 6
        assert out["per_class"][name]["consistency"] == pytest.approx(float((pred[sel] == c).mean()))
    assert out["overall"] == pytest.approx(float((pred == requested).mean()))
    confusion = np.array(out["confusion"])
    assert confusion.sum() == 18 and np.array_equal(confusion.sum(axis=1), [6, 6, 6])
    assert np.trace(confusion) == int((pred == requested).sum())


def test_bad_input_is_one_clear_error(trained):
    x, y = _shapes(2, seed=5)
    with pytest.raises(UserError, match="expected 6 labels"):
        train_classifier(x, y[:-1])
    with pytest.raises(UserError, match=r"labels: expected integers in \[0, 2\)"):
        train_classifier(x, y, num_classes=2)
    with pytest.raises(UserError, match="2 classes"):
        train_classifier(x, np.zeros(6, int))
    with pytest.raises(UserError, match="trained on"):
        trained.predict_proba(np.zeros((2, 1, 8, 8), np.uint8))
    with pytest.raises(UserError, match="shape"):
        as_float_images(np.zeros((2, 16, 16), np.uint8))
    with pytest.raises(UserError, match="class names"):
        class_consistency(trained, x, y, ["a", "b"])
