"""Feature networks the audit measures in, registered by name.

`inception` is the clean-fid protocol of `stylemri.metrics` (Inception-v3 pool3, cached per image set in
the metrics cache, so a second audit of the same data costs nothing); `pixels16` (area-downsampled
16x16 pixels) needs no weights and is fast, for smoke tests and machines without the weights: its
numbers are not comparable with published FIDs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from stylemri.errors import UserError


@dataclass
class FeatureNet:
    """uint8 (N, C, R, R) -> float32 (N, D), with what the protocol record needs."""

    name: str
    fn: Callable[[np.ndarray], np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    images: int = 0
    from_cache: int = 0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        import time

        t = time.perf_counter()
        out = self.fn(images)
        self.seconds += time.perf_counter() - t
        self.images += len(images)
        return out


def _pixels16(images: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(images)).float() / 255.0
    size = min(16, x.shape[-1])
    return torch.nn.functional.adaptive_avg_pool2d(x, size).reshape(len(x), -1).numpy().astype(np.float32)


def _inception(inception: str | None, device: str, cache_dir: str | None) -> FeatureNet:
    from stylemri.metrics.inception import load_inception
    from stylemri.metrics.metric_utils import default_cache_dir, protocol_description, source_features, source_from_array

    extractor = load_inception(inception, device=device)
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    net = FeatureNet("inception", lambda x: x, protocol_description(extractor))

    def fn(images: np.ndarray) -> np.ndarray:
        feats, cached = source_features(source_from_array(images, fingerprint=True), extractor, cache_dir=cache)
        net.from_cache += len(images) if cached else 0
        return feats

    net.fn = fn
    return net


FEATURES: dict[str, Callable[[str | None, str, str | None], FeatureNet]] = {
    "inception": _inception,
    "pixels16": lambda _inc, _dev, _cache: FeatureNet(
        "pixels16", _pixels16, {"name": "pixels16", "features": "area-downsampled 16x16 pixels in [0, 1], "
                                "flattened (no network; not comparable with published FIDs)"}),
}


def feature_net(name: str, *, inception: str | os.PathLike | None = None, device: str = "cpu",
                cache_dir: str | os.PathLike | None = None) -> FeatureNet:
    if name not in FEATURES:
        raise UserError(f"--features {name}: expected one of {', '.join(FEATURES)}")
    return FEATURES[name](None if inception is None else str(inception), device,
                          None if cache_dir is None else str(cache_dir))
