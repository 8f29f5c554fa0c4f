"""A small CNN slice classifier, and what it measures about generated images.

Why: FID/KID/precision say whether generated slices look like real ones, not whether a conditional model
draws the class it was asked for (a "sagittal" that looks coronal scores fine on unconditional metrics).
A classifier trained on the real slices answers that (`class_consistency`), and the same API trains on
synthetic images and tests on real ones ("train on synthetic, test on real", `evaluate_classifier`).

    clf = train_classifier(real_images, real_labels, num_classes=3, config=ClassifierConfig(seed=0))
    proba = clf.predict_proba(images)                 # (N, 3) float64, rows sum to 1
    evaluate_classifier(clf, test_images, test_labels)  # accuracy, per-class accuracy, macro one-vs-rest AUC
    class_consistency(clf, generated, requested_labels, class_names)

Images are uint8 (N, C, R, R) (as the metrics take them) or float (N, C, R, R) in [-1, 1] (as the data
layer and generators give them). The network is fully convolutional with global average pooling, so it is
CPU-fast at 32-64 px (a few seconds for a few hundred images) and the same seed gives the same weights.
Its predictions on images unlike any training image (blobs, noise) are still confident: read class
consistency together with precision / coverage, never alone.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from stylemri.errors import UserError

ImagesLike = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class ClassifierConfig:
    """Training hyper-parameters; the defaults reach ~100% held-out accuracy on MNI152 orientations at 32 px."""

    width: int = 8  # channels of the first block; doubled per block
    blocks: int = 4  # conv blocks; each but the last halves the resolution
    epochs: int = 20
    batch: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    shift: int = 2  # random integer translation (pixels, reflect padding) during training: robustness to placement
    seed: int = 0


class SliceCNN(nn.Module):
    """conv3x3-BatchNorm-LeakyReLU blocks with 2x average pooling, global average pooling, one linear layer
    (about 1M multiply-adds per 32 px image: cheap enough to train on a loaded CPU in seconds)."""

    def __init__(self, channels: int, num_classes: int, width: int = 8, blocks: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = channels
        for i in range(blocks):
            c_out = width * 2**i
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
            if i < blocks - 1:
                layers.append(nn.AvgPool2d(2))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def as_float_images(images: ImagesLike, what: str = "images") -> torch.Tensor:
    """uint8 or float (N, C, R, R) -> float32 tensor in [-1, 1] (uint8 v maps to v / 127.5 - 1)."""
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    x = x.detach().cpu()
    if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[2] != x.shape[3]:
        raise UserError(f"{what}: expected square (N, C, R, R) images with C in (1, 3), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.float() / 127.5 - 1.0
    if not x.is_floating_point():
        raise UserError(f"{what}: expected uint8 or float images, got {x.dtype}")
    return x.float()


def _as_labels(labels: Sequence[int] | np.ndarray | torch.Tensor, n: int, what: str) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
    if y.numel() != n:
        raise UserError(f"{what}: expected {n} labels (one per image), got {y.numel()}")
    return y


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run the tiny network on one intra-op thread: its ops are too small to gain from threads (on a loaded
    2-core machine 2 threads made training 20x slower in wall time), and the result no longer depends on
    the machine's thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _random_shift(x: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by an integer offset in [-shift, shift]^2 (reflect padding, then crop)."""
    if shift <= 0:
        return x
    n, _, r, _ = x.shape
    padded = F.pad(x, (shift,) * 4, mode="reflect")
    off = torch.randint(0, 2 * shift + 1, (n, 2), generator=gen)
    return torch.stack([padded[i, :, dy:dy + r, dx:dx + r] for i, (dy, dx) in enumerate(off.tolist())])


@dataclass
class SliceClassifier:
    """A trained classifier: `predict_proba` / `predict` on images of the shape it was trained on."""

    net: SliceCNN
    num_classes: int
    channels: int
    resolution: int
    config: ClassifierConfig
    train_accuracy: float

    @torch.no_grad()
    def predict_proba(self, images: ImagesLike, batch_size: int = 256) -> np.ndarray:
        """Class probabilities (N, num_classes) float64 (softmax of the logits)."""
        x = as_float_images(images)
        if tuple(x.shape[1:]) != (self.channels, self.resolution, self.resolution):
            raise UserError(f"images of shape {tuple(x.shape[1:])}: this classifier was trained on "
                            f"{(self.channels, self.resolution, self.resolution)}")
        self.net.eval()
        with _one_thread():
            out = [F.softmax(self.net(x[i:i + batch_size]), dim=1) for i in range(0, len(x), batch_size)]
        return torch.cat(out).double().numpy() if out else np.zeros((0, self.num_classes))

    def predict(self, images: ImagesLike) -> np.ndarray:
        """The most probable class of each image, int64 (N,)."""
        return self.predict_proba(images).argmax(axis=1)


def train_classifier(images: ImagesLike, labels: Sequence[int] | np.ndarray | torch.Tensor, *,
                     num_classes: int | None = None, config: ClassifierConfig = ClassifierConfig()) -> SliceClassifier:
    """Train a `SliceCNN` on labelled images (AdamW, cross-entropy, random shifts). Deterministic for a given
    `config.seed` (on one thread, whatever the machine): the global torch RNG is neither used nor changed."""
    x = as_float_images(images)
    y = _as_labels(labels, len(x), "labels")
    k = int(num_classes) if num_classes is not None else int(y.max()) + 1 if len(y) else 0
    if len(x) < 2 or k < 2:
        raise UserError(f"classifier training: expected at least 2 images and 2 classes, got {len(x)} and {k}")
    if int(y.min()) < 0 or int(y.max()) >= k:
        raise UserError(f"labels: expected integers in [0, {k}), got {int(y.min())}..{int(y.max())}")
    with _one_thread():
        net = _fit(x, y, k, config)
    clf = SliceClassifier(net.eval(), k, x.shape[1], x.shape[2], config, train_accuracy=float("nan"))
    clf.train_accuracy = float((torch.from_numpy(clf.predict(x)) == y).float().mean())
    return clf


def _fit(x: torch.Tensor, y: torch.Tensor, k: int, config: ClassifierConfig) -> SliceCNN:
    gen = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = SliceCNN(x.shape[1], k, config.width, config.blocks)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(config.epochs, 1))
    batch = max(2, min(config.batch, len(x)))  # BatchNorm needs 2 images per batch
    net.train()
    for _epoch in range(config.epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x) - batch + 1, batch):  # drop the ragged tail (BatchNorm, equal steps)
            idx = order[start:start + batch]
            loss = F.cross_entropy(net(_random_shift(x[idx], config.shift, gen)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return net


def evaluate_classifier(clf: SliceClassifier, images: ImagesLike,
                        labels: Sequence[int] | np.ndarray | torch.Tensor) -> dict[str, Any]:
    """Accuracy, per-class accuracy (recall) and macro one-vs-rest ROC AUC on labelled images (e.g. real
    test images, for train-on-synthetic / test-on-real). AUC is None when a class is missing from `labels`."""
    from sklearn.metrics import roc_auc_score  # a dependency; imported here to keep `import stylemri` light

    proba = clf.predict_proba(images)
    y = _as_labels(labels, len(proba), "labels").numpy()
    pred = proba.argmax(axis=1)
    per_class = {int(c): (float((pred[y == c] == c).mean()) if (y == c).any() else None)
                 for c in range(clf.num_classes)}
    present = np.unique(y)
    auc = None
    if len(present) == clf.num_classes:
        auc = float(roc_auc_score(y, proba, multi_class="ovr", average="macro") if clf.num_classes > 2
                    else roc_auc_score(y, proba[:, 1]))
    return {"num": int(len(y)), "accuracy": float((pred == y).mean()) if len(y) else None,
            "per_class_accuracy": per_class, "auc_ovr_macro": auc}


def class_consistency(clf: SliceClassifier, images: ImagesLike,
                      requested: Sequence[int] | np.ndarray | torch.Tensor,
                      class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Per requested class, the fraction of generated images the classifier assigns to that class; also the
    overall fraction, the mean probability of the requested class, and the confusion counts
    (rows: requested, columns: predicted). Keys are class names when given, else indices as strings."""
    proba = clf.predict_proba(images, batch_size=256)
    req = _as_labels(requested, len(proba), "requested labels").numpy()
    names = list(class_names) if class_names is not None else [str(i) for i in range(clf.num_classes)]
    if len(names) != clf.num_classes:
        raise UserError(f"class names: expected {clf.num_classes}, got {len(names)}")
    pred = proba.argmax(axis=1)
    per_class: dict[str, Any] = {}
    confusion = np.zeros((clf.num_classes, clf.num_classes), np.int64)
    np.add.at(confusion, (req, pred), 1)
    for c, name in enumerate(names):
        sel = req == c
        per_class[name] = {
            "num": int(sel.sum()),
            "consistency": float((pred[sel] == c).mean()) if sel.any() else None,
            "mean_probability": float(proba[sel, c].mean()) if sel.any() else None,
        }
    return {"num": int(len(req)), "overall": float((pred == req).mean()) if len(req) else None,
            "per_class": per_class, "confusion": confusion.tolist(), "class_names": names}
