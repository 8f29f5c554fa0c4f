"""The three image sets an audit compares: training reals, holdout reals, synthetic images.

Each is held in memory as uint8 (N, C, R, R) with labels (class indices), class names and per-image subject
(patient) IDs. Before anything is measured the training and holdout sets are checked against each other:
patients present in both (or identical images, when patients are unknown) would make every privacy figure
read "no leak", so they are reported and removed from the holdout; a holdout that is the training data is
an error.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from stylemri.config import DataConfig
from stylemri.errors import UserError


@dataclass(frozen=True)
class ImageSet:
    """uint8 images of one set with their classes and patients."""

    name: str
    images: np.ndarray  # uint8 (N, C, R, R)
    labels: np.ndarray  # int64 (N,), index into class_names
    class_names: tuple[str, ...]
    subjects: np.ndarray = field(repr=False)  # (N,) str; an image without a known patient is its own
    fingerprint: str | None = None  # cache key of the images (None: never cached)

    def __len__(self) -> int:
        return len(self.images)

    def of_class(self, name: str) -> "ImageSet":
        """The images of class `name` ("all" for an unlabelled audit: every image)."""
        if name == "all" and "all" not in self.class_names:
            return self
        keep = self.labels == self.class_names.index(name)
        return self.select(np.flatnonzero(keep))

    def select(self, idx: np.ndarray) -> "ImageSet":
        idx = np.asarray(idx, np.int64)
        fp = None if self.fingerprint is None else f"{self.fingerprint}:{hashlib.sha1(idx.tobytes()).hexdigest()[:16]}"
        return replace(self, images=self.images[idx], labels=self.labels[idx], subjects=self.subjects[idx],
                       fingerprint=fp)

    def sample(self, n: int, seed: int) -> "ImageSet":
        """A seeded subset of n images without replacement (all of them, in order, when n >= len)."""
        if n >= len(self):
            return self
        rng = np.random.default_rng(seed)
        return self.select(np.sort(rng.choice(len(self), n, replace=False)))

    def class_counts(self) -> dict[str, int]:
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.class_names)}


def from_arrays(name: str, images: np.ndarray, labels: Sequence[int] | np.ndarray, class_names: Sequence[str],
                subjects: Sequence[str] | np.ndarray | None = None) -> ImageSet:
    """An ImageSet from arrays (tests, generated images); images without subjects are their own patient."""
    imgs = np.ascontiguousarray(images)
    if imgs.dtype != np.uint8 or imgs.ndim != 4 or imgs.shape[1] not in (1, 3) or imgs.shape[2] != imgs.shape[3]:
        raise ValueError(f"{name}: expected uint8 (N, C, R, R) images with C in (1, 3), got {imgs.dtype} {imgs.shape}")
    subj = (np.array([f"{name}-{i}" for i in range(len(imgs))]) if subjects is None
            else np.asarray(subjects).astype(str))
    return ImageSet(name, imgs, np.asarray(labels, np.int64), tuple(class_names), subj,
                    hashlib.sha1(imgs.tobytes()).hexdigest())


def from_dataset(name: str, ds: Any) -> ImageSet:
    """An `MRIDataset` (stored pixels, never flipped) as an ImageSet."""
    images = ds.batch_uint8(np.arange(len(ds)))[0].numpy()
    # no patient known: each image counts as its own patient (built as a list: a fixed-width str array
    # of empty IDs would truncate the new names)
    subj = np.array([str(s) if s else f"{name}-{i}" for i, s in enumerate(ds.subjects)])
    return ImageSet(name, images, np.asarray(ds.labels, np.int64), tuple(ds.class_names), subj,
                    f"{ds.fingerprint}")


def load_data(name: str, cfg: DataConfig, covariates: Any = None) -> Any:
    """The `MRIDataset` of a set (never flipped); `covariates`: a run's stored scaling to encode its
    --condition columns with (the training set of a covariate run, for the covariate proof)."""
    from stylemri.data import load_dataset

    ds = load_dataset(replace(cfg, xflip=False), covariates=covariates)
    if len(ds) == 0:
        raise UserError(f"{cfg.source}: no images for the {name} set")
    return ds


def load_set(name: str, cfg: DataConfig) -> ImageSet:
    """Load a data source through the data layer (class folders / tables / split files as everywhere)."""
    return from_dataset(name, load_data(name, cfg))


def holdout_config(data: DataConfig, holdout: str | None, holdout_split: str | None) -> DataConfig:
    """Where the holdout patients come from: a folder (or split folder), a split file of the data source
    (`stylemri data split`), or `--holdout-split test` of the data source itself. A covariate run's
    --condition columns are not asked of the holdout (the covariate proof's floor is held-out training
    subjects), so its images need no row in the covariate table; a class table stays for --label-column."""
    if data.condition:
        data = replace(data, condition=(), missing="drop", labels=data.labels if data.label_column else None)
    if holdout is None and holdout_split is None:
        raise UserError("no holdout: expected --holdout SOURCE (real images of patients never trained on) or "
                        "--holdout-split test")
    if holdout is not None and holdout.lower().endswith(".csv"):
        path = Path(holdout).expanduser()
        if not path.is_file():
            raise UserError(f"--holdout {holdout}: no such split file; expected a CSV from 'stylemri data split'")
        return replace(data, split_file=str(path.resolve()), split=holdout_split or "test", classes=None)
    if holdout is None:
        return replace(data, split=holdout_split or "test", classes=None)
    if not holdout.startswith("builtin:") and not Path(holdout).expanduser().exists():
        raise UserError(f"--holdout {holdout}: no such folder or file; expected real images of held-out patients")
    return replace(data, source=holdout, split=holdout_split or "all", split_file=None, classes=None)


@dataclass(frozen=True)
class Overlap:
    """Patients (or identical images) found in both the training and the holdout set."""

    subjects: tuple[str, ...]
    identical_images: int
    removed: int  # holdout images removed because of the overlap
    holdout_left: int

    def to_dict(self) -> dict[str, Any]:
        return {"shared_patients": list(self.subjects[:50]), "num_shared_patients": len(self.subjects),
                "identical_images": self.identical_images, "holdout_images_removed": self.removed,
                "holdout_images_left": self.holdout_left}


def _image_hashes(images: np.ndarray) -> np.ndarray:
    return np.array([hashlib.sha1(im.tobytes()).hexdigest() for im in images])


def check_overlap(train: ImageSet, holdout: ImageSet) -> tuple[ImageSet, Overlap]:
    """Remove from the holdout every image of a patient also in training, and every image identical to a
    training image; a holdout with nothing left is the training data: an error."""
    if train.images.shape[1:] != holdout.images.shape[1:]:
        raise UserError(f"holdout images {holdout.images.shape[1:]} and training images {train.images.shape[1:]} "
                        "differ in shape; expected the same resolution and channels")
    own = np.char.startswith(holdout.subjects.astype(str), f"{holdout.name}-")  # unknown patients: no ID to match
    shared = sorted(set(holdout.subjects[~own].tolist()) & set(train.subjects.tolist()))
    same_patient = np.isin(holdout.subjects, shared) & ~own
    identical = np.isin(_image_hashes(holdout.images), _image_hashes(train.images))
    drop = same_patient | identical
    left = holdout.select(np.flatnonzero(~drop))
    overlap = Overlap(tuple(shared), int(identical.sum()), int(drop.sum()), len(left))
    if len(left) == 0:
        raise UserError("--holdout: every holdout image is a training image or belongs to a training patient "
                        "(holdout = training data); expected real images of patients never trained on")
    return left, overlap
