"""Shared machinery of the metrics: image sources, clean-fid input protocol, batched features, the cache.

Protocol (clean-fid, "clean" mode): images are uint8 first; each channel is resized to 299x299 with PIL
bicubic on float32 ('F' mode) and clipped to [0, 255] without re-quantizing; a 1-channel image is
replicated to 3 channels; the extractor sees (x - 128) / 128. `protocol_description` states this (and the
weights' SHA-1) in every output so numbers are comparable across tools.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import PIL
import torch
from PIL import Image

from stylemri.io import atomic_write, to_uint8
from stylemri.metrics.inception import FEATURE_DIM, INPUT_SIZE, InceptionFeatures

PROTOCOL_VERSION = 1
Progress = Callable[[int, int], None]  # (done, total)


# ----------------------------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class ImageSource:
    """A finite set of uint8 (n, C, H, W) images read by index, with an identity used as a cache key."""

    num: int
    read: Callable[[np.ndarray], np.ndarray]  # int64 indices -> uint8 (len, C, H, W)
    resolution: int
    channels: int
    fingerprint: str | None = None  # None: never cached (e.g. generated images)
    name: str = "images"
    subjects: np.ndarray | None = field(default=None, repr=False, compare=False)  # per-image subject (patient) IDs

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        for start in range(0, self.num, batch_size):
            idx = np.arange(start, min(start + batch_size, self.num), dtype=np.int64)
            yield check_uint8_batch(self.read(idx), self.name)

    def all(self, batch_size: int = 256) -> np.ndarray:
        if self.num == 0:
            return np.zeros((0, self.channels, self.resolution, self.resolution), np.uint8)
        return np.concatenate(list(self.batches(batch_size)), axis=0)


def check_uint8_batch(images: Any, what: str = "images") -> np.ndarray:
    """Metrics take quantized images: uint8 (N, C, H, W) with C in {1, 3}."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"{what}: expected uint8 images (quantize with stylemri.io.to_uint8), got {images.dtype}")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"{what}: expected (N, C, H, W) with C in (1, 3), got shape {images.shape}")
    return np.ascontiguousarray(images)


def array_fingerprint(images: np.ndarray) -> str:
    h = hashlib.sha1(str(images.shape).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    return h.hexdigest()


def source_from_array(images: np.ndarray | torch.Tensor, name: str = "images", *, fingerprint: bool = False) -> ImageSource:
    """Wrap uint8 (N, C, H, W) images; `fingerprint=True` hashes them so their features can be cached."""
    arr = check_uint8_batch(images, name)
    if arr.shape[2] != arr.shape[3]:
        raise ValueError(f"{name}: expected square images, got {arr.shape[2]}x{arr.shape[3]}")
    return ImageSource(
        num=arr.shape[0], read=lambda idx: arr[idx], resolution=arr.shape[2], channels=arr.shape[1],
        fingerprint=array_fingerprint(arr) if fingerprint else None, name=name,
    )


def source_from_dataset(ds: Any, indices: Iterable[int] | None = None, name: str | None = None) -> ImageSource:
    """An `MRIDataset` (or a subset of it) as uint8 images, exactly as training saw them (no flips)."""
    sel = np.arange(len(ds), dtype=np.int64) if indices is None else np.asarray(list(indices), dtype=np.int64)
    subset = hashlib.sha1(sel.tobytes()).hexdigest()[:16]

    def read(idx: np.ndarray) -> np.ndarray:
        exact = getattr(ds, "batch_uint8", None)  # the stored pixels, when the dataset offers them
        if exact is not None:
            return check_uint8_batch(exact(sel[idx])[0])
        images, _labels = ds.batch(sel[idx])  # xflip=None: never flipped
        return to_uint8(images)

    return ImageSource(
        num=len(sel), read=read, resolution=int(ds.resolution), channels=int(ds.channels),
        fingerprint=f"{ds.fingerprint}:{subset}", name=name or "dataset",
        subjects=np.asarray(ds.subjects)[sel] if getattr(ds, "subjects", None) is not None else None,
    )


# ------------------------------------------------------------------------------------------ the protocol


def resize_for_inception(images: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """uint8 (N, C, H, W) -> float32 (N, 3, size, size) in [0, 255]: clean-fid's PIL bicubic on float."""
    images = check_uint8_batch(images)
    n, c = images.shape[:2]
    out = np.empty((n, c, size, size), np.float32)
    for i in range(n):
        for ch in range(c):
            pil = Image.fromarray(images[i, ch].astype(np.float32), mode="F")
            out[i, ch] = np.asarray(pil.resize((size, size), resample=Image.BICUBIC))
    np.clip(out, 0.0, 255.0, out=out)
    if c == 1:
        out = np.repeat(out, 3, axis=1)
    return out


def protocol_description(extractor: InceptionFeatures | None = None) -> dict[str, Any]:
    """What was measured and how, for the output JSON: enough to tell whether two numbers are comparable."""
    desc: dict[str, Any] = {
        "name": "clean-fid",
        "version": PROTOCOL_VERSION,
        "input": "uint8 images (quantized before any resizing)",
        "resize": f"PIL bicubic per channel on float32 to {INPUT_SIZE}x{INPUT_SIZE}, clipped to [0, 255], not re-quantized",
        "grayscale": "1 channel replicated to 3",
        "normalization": "(x - 128) / 128 -> [-1, 0.9921875]",
        "features": f"Inception-v3 (TF 2015-12-05 weights) pool3, {FEATURE_DIM}-d",
        "pillow": PIL.__version__,
    }
    if extractor is not None:
        desc["weights"] = extractor.info.to_dict()
    return desc


# ---------------------------------------------------------------------------------------------- features


def extract_features(
    batches: Iterable[np.ndarray],
    extractor: InceptionFeatures,
    *,
    batch_size: int = 32,
    total: int | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """uint8 image batches of any size -> (N, 2048) float32 features, evaluated `batch_size` at a time."""
    out: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    pending_n = done = 0

    def flush(chunk: np.ndarray) -> None:
        nonlocal done
        x = torch.from_numpy(resize_for_inception(chunk)).to(extractor.device)
        out.append(extractor(x).cpu().numpy())
        done += len(chunk)
        if progress is not None:
            progress(done, total if total is not None else done)

    for batch in batches:
        batch = check_uint8_batch(batch)
        pending.append(batch)
        pending_n += len(batch)
        while pending_n >= batch_size:
            merged = np.concatenate(pending, axis=0)
            flush(merged[:batch_size])
            rest = merged[batch_size:]
            pending, pending_n = ([rest] if len(rest) else []), len(rest)
    if pending_n:
        flush(np.concatenate(pending, axis=0))
    if not out:
        return np.zeros((0, FEATURE_DIM), np.float32)
    return np.concatenate(out, axis=0)


@dataclass(frozen=True)
class FeatureStats:
    """Mean and covariance of features (float64), what FID compares."""

    mu: np.ndarray
    sigma: np.ndarray
    num: int

    @classmethod
    def from_features(cls, features: np.ndarray) -> "FeatureStats":
        f = np.asarray(features, np.float64)
        if f.ndim != 2 or f.shape[0] < 2:
            raise ValueError(f"need at least 2 feature vectors (N, D) for statistics, got shape {f.shape}")
        return cls(mu=f.mean(axis=0), sigma=np.cov(f, rowvar=False), num=f.shape[0])


# ------------------------------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """$STYLEMRI_CACHE, else $XDG_CACHE_HOME/stylemri, else ~/.cache/stylemri; metrics use its `metrics/`."""
    root = os.environ.get("STYLEMRI_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "stylemri"
    )
    return Path(root)


def feature_cache_key(source: ImageSource, extractor: InceptionFeatures) -> dict[str, Any]:
    return {
        "kind": "inception-features",
        "source": source.fingerprint,
        "num": source.num,
        "resolution": source.resolution,
        "channels": source.channels,
        "protocol": protocol_description(extractor),
    }


def cache_path(cache_dir: str | os.PathLike, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return Path(cache_dir) / "metrics" / f"{key['kind']}-{digest}.npz"


def load_cached(path: Path, key: dict[str, Any]) -> np.ndarray | None:
    """The cached array if the file exists, is readable and was made with exactly this key."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if json.loads(str(data["meta"])) != json.loads(json.dumps(key)):
                return None
            return np.asarray(data["features"])
    except (OSError, KeyError, ValueError):
        return None


def save_cached(path: Path, key: dict[str, Any], features: np.ndarray) -> None:
    with atomic_write(path) as f:
        np.savez(f, features=features, meta=np.array(json.dumps(key, sort_keys=True)))


def source_features(
    source: ImageSource,
    extractor: InceptionFeatures,
    *,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> tuple[np.ndarray, bool]:
    """Features of every image of `source`, reused from / stored in the .npz cache when it has a fingerprint.

    Returns (features, came_from_cache)."""
    key = path = None
    if cache_dir is not None and source.fingerprint is not None:
        key = feature_cache_key(source, extractor)
        path = cache_path(cache_dir, key)
        cached = load_cached(path, key)
        if cached is not None and cached.shape == (source.num, FEATURE_DIM):
            return cached, True
    feats = extract_features(
        source.batches(batch_size), extractor, batch_size=batch_size, total=source.num, progress=progress
    )
    if path is not None and key is not None:
        save_cached(path, key, feats)
    return feats, False
