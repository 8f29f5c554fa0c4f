"""With `--data`: the nearest training image of whatever the page shows, and the real-to-real scale.

Uses stylemri.metrics.memorization unchanged: the same pixel distance (RMS intensity difference on the
[0, 1] scale, flipped training images included, as training used flips), the same real-to-real yardstick
(each of a seeded sample of training images against its nearest other training image, another
patient's when patient IDs are known). The yardstick is computed once at start-up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from stylemri import io
from stylemri.errors import UserError
from stylemri.metrics.memorization import memorization
from stylemri.metrics.metric_utils import ImageSource, source_from_dataset


@dataclass
class TrainingNeighbours:
    """The training images as uint8 and the real-to-real nearest distances that give a distance its scale."""

    source: ImageSource
    description: str
    baseline: np.ndarray  # real-to-real nearest distances of the baseline sample
    by_subject: bool  # the baseline excluded images of the same patient
    quantile: float = 0.5

    @classmethod
    def from_source(cls, source: ImageSource, description: str, num_baseline: int = 1000) -> "TrainingNeighbours":
        """Compute the real-to-real yardstick once (memorization's baseline, by patient when possible)."""
        if source.num < 2:
            raise UserError(f"--data {description}: {source.num} image(s); the nearest-image panel needs at least 2")
        probe = source.read(np.array([0], dtype=np.int64))
        subjects = source.subjects
        by_subject = subjects is not None and len(set(map(str, subjects))) > 1
        result = memorization(probe, source, subject_ids=subjects if by_subject else None,
                              num_baseline=num_baseline)
        return cls(source, description, result.spaces["pixel"].baseline, by_subject)

    @property
    def threshold(self) -> float:
        return float(np.quantile(self.baseline, self.quantile))

    def info(self) -> dict[str, Any]:
        subjects = self.source.subjects
        return {"source": self.description, "images": int(self.source.num),
                "subjects": None if subjects is None else int(len(set(map(str, subjects)))),
                "real_nn_median": float(np.median(self.baseline)),
                "baseline_images": int(self.baseline.size),
                "baseline_excludes_same_subject": self.by_subject}

    def nearest(self, image: torch.Tensor) -> dict[str, Any]:
        """Nearest training image of one (C, R, R) image in [-1, 1]: index, distance, patient, and the scale."""
        query = io.to_uint8(image)[None]
        result = memorization(query, self.source, num_baseline=1)
        space = result.spaces["pixel"]
        index = int(space.nearest_index[0])
        distance = float(space.distance[0])
        subject = None if self.source.subjects is None else str(self.source.subjects[index])
        return {"index": index, "distance": distance, "flipped": bool(space.flipped[0]), "subject": subject,
                "unit": space.unit, "real_nn_median": float(np.median(self.baseline)),
                "threshold": self.threshold, "threshold_quantile": self.quantile,
                "closer_than_real": distance < self.threshold,
                "baseline_excludes_same_subject": self.by_subject, "num_training": int(self.source.num),
                "image": f"/api/training?index={index}" + ("&flip=1" if space.flipped[0] else "")}

    def image(self, index: int, flip: bool = False) -> np.ndarray:
        """Training image `index` as uint8 (C, R, R), as training saw it (optionally mirrored)."""
        if not 0 <= index < self.source.num:
            raise IndexError(index)
        img = self.source.read(np.array([index], dtype=np.int64))[0]
        return np.ascontiguousarray(img[..., ::-1]) if flip else img


def load_training(source: str, model_config: Any, resolution: int, cache_dir: str | None = None,
                  num_baseline: int = 1000) -> TrainingNeighbours:
    """The `--data SOURCE` images prepared as the run's training data was (its axis, split, channels), at
    the model's resolution, never flipped."""
    from stylemri.data import load_dataset

    changes: dict[str, Any] = {"source": source, "resolution": resolution, "xflip": False, "classes": None}
    if cache_dir is not None:
        changes["cache_dir"] = cache_dir
    ds = load_dataset(dataclasses.replace(model_config.data, **changes))
    return TrainingNeighbours.from_source(source_from_dataset(ds, name=source), source, num_baseline)


__all__ = ["TrainingNeighbours", "load_training"]
