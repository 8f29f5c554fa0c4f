"""Metrics of whole generated volumes against real ones (`--dims 3` runs).

- MS-SWD in 3-D: the 2-D protocol of `swd.py` with a 3-D Laplacian pyramid (separable 5-tap binomial,
  mirrored borders) and random 7x7x7 neighbourhoods as descriptors (343-d for one channel), normalised
  per channel, compared by `swd.sliced_wasserstein`. Needs no weights; values x1e3 per level and mean.
- Slice FID / KID: Inception features of 2-D slices cut the same way from real and generated volumes:
  `slices_per_volume` slices per volume and axis, at fixed positions spread over the central half of the
  axis (where the brain is), display-oriented as `volumes_io.mid_slices`. Results are per axis (axial,
  coronal, sagittal) with the number of slices and volumes stated, since few volumes give few slices.
- Nearest real volume of each generated one (RMS over voxels, also against the left-right mirror),
  grouped per subject, with the real-vs-real floor (each real volume's nearest other-subject volume):
  a generated volume far closer to a training subject than real subjects are to each other is a copy.

`evaluate.evaluate_volumes` runs them by metric name: each registry entry names its 3-D form.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stylemri.config import AXES
from stylemri.metrics.fid import fid_from_features
from stylemri.metrics.kid import kid as kid_metric
from stylemri.metrics.swd import SWDConfig, finalize_descriptors, pyramid_resolutions, sliced_wasserstein

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64) / 16.0


def check_volumes(vols: Any, what: str = "volumes") -> np.ndarray:
    """Metrics take quantized volumes: uint8 (N, C, R, R, R)."""
    arr = vols.detach().cpu().numpy() if isinstance(vols, torch.Tensor) else np.asarray(vols)
    if arr.dtype != np.uint8 or arr.ndim != 5 or len(set(arr.shape[2:])) != 1:
        raise ValueError(f"{what}: expected uint8 (N, C, R, R, R) volumes, got {arr.dtype} {arr.shape}")
    return arr


# ---------------------------------------------------------------------------------------------- MS-SWD 3-D
def _filter3d(x: torch.Tensor, gain: float) -> torch.Tensor:
    n, c = x.shape[:2]
    k = (_BINOMIAL * gain ** (1 / 3)).to(x.dtype)
    y = F.pad(x.reshape(n * c, 1, *x.shape[2:]), (2, 2, 2, 2, 2, 2), mode="reflect")
    y = F.conv3d(y, k.view(1, 1, 5, 1, 1))
    y = F.conv3d(y, k.view(1, 1, 1, 5, 1))
    y = F.conv3d(y, k.view(1, 1, 1, 1, 5))
    return y.reshape(x.shape)


def laplacian_pyramid3d(vols: torch.Tensor, num_levels: int) -> list[torch.Tensor]:
    """Full-resolution band-pass levels first, the low-pass residual last (3-D pyrDown/pyrUp)."""
    pyramid = [vols.to(torch.float32)]
    for _ in range(1, num_levels):
        low = _filter3d(pyramid[-1], 1.0)[:, :, ::2, ::2, ::2]
        up = torch.zeros_like(pyramid[-1])
        up[:, :, ::2, ::2, ::2] = low
        pyramid[-1] = pyramid[-1] - _filter3d(up, 8.0)
        pyramid.append(low)
    return pyramid


def sample_descriptors3d(level: np.ndarray, k: int, per_volume: int, seeds: list[list[int]]) -> np.ndarray:
    """Random k^3 neighbourhoods, `per_volume` per volume (each volume's own seeded generator): (n, C, k, k*k)."""
    n, c, d, h, w = level.shape
    half = k // 2
    out = np.empty((n * per_volume, c, k, k * k), np.float32)
    for i, seed in enumerate(seeds):
        centres = np.random.default_rng(seed).integers(half, (d - half, h - half, w - half), size=(per_volume, 3))
        for j, (z, y, x) in enumerate(centres):
            patch = level[i, :, z - half:z + half + 1, y - half:y + half + 1, x - half:x + half + 1]
            out[i * per_volume + j] = patch.reshape(c, k, k * k)
    return out


def swd3d(real: np.ndarray, fake: np.ndarray, cfg: SWDConfig = SWDConfig()) -> dict[str, Any]:
    """MS-SWD x1e3 between two uint8 volume sets (N, C, R, R, R): per pyramid level and mean."""
    real, fake = check_volumes(real, "real volumes"), check_volumes(fake, "generated volumes")
    res = real.shape[-1]
    if fake.shape[1:] != real.shape[1:] or res < cfg.min_resolution:
        raise ValueError(f"swd3d: expected two sets of equal size >= {cfg.min_resolution}^3, got "
                         f"{real.shape[1:]} and {fake.shape[1:]}")
    resolutions = pyramid_resolutions(res, cfg.min_resolution)
    descs = []
    for vols in (real, fake):
        levels = laplacian_pyramid3d(torch.from_numpy(vols), len(resolutions))
        descs.append([finalize_descriptors([sample_descriptors3d(lv.numpy(), cfg.nhood_size, cfg.nhoods_per_image,
                                                                 [[cfg.seed, lod, i] for i in range(len(vols))])])
                      for lod, lv in enumerate(levels)])
    rng = np.random.default_rng([cfg.seed, 1])
    per_res: dict[str, float] = {}
    for r, da, db in zip(resolutions, *descs):
        n = min(len(da), len(db))
        da = da[np.sort(rng.choice(len(da), n, replace=False))] if len(da) > n else da
        db = db[np.sort(rng.choice(len(db), n, replace=False))] if len(db) > n else db
        per_res[str(r)] = 1e3 * sliced_wasserstein(da, db, cfg.dir_repeats, cfg.dirs_per_repeat, rng)
    return {"per_resolution": per_res, "mean": float(np.mean(list(per_res.values()))), "scale": 1e3,
            "num_real": int(len(real)), "num_generated": int(len(fake)), "descriptor": f"{cfg.nhood_size}^3 voxels",
            "config": asdict(cfg)}


# ------------------------------------------------------------------------------------------ slice FID / KID
def slice_positions(resolution: int, count: int) -> np.ndarray:
    """`count` slice indices at the centres of `count` equal bins of the central half of an axis (the same
    for every volume); one slice is the mid-slice R // 2."""
    centres = resolution * 0.25 + (np.arange(count) + 0.5) * (resolution * 0.5 / count)
    return np.unique(np.floor(centres).astype(np.int64))


def volume_slices(vols: np.ndarray, axis: str, count: int) -> np.ndarray:
    """uint8 (N, C, R, R, R) -> (N * k, C, R, R) display-oriented slices along `axis` (see mid_slices)."""
    idx = slice_positions(vols.shape[-1], count)
    if axis == "axial":
        s = vols[:, :, idx]  # (N, C, k, H, W)
    elif axis == "coronal":
        s = vols[:, :, :, idx].transpose(0, 1, 3, 2, 4)  # (N, C, k, D, W)
    elif axis == "sagittal":
        s = vols[:, :, :, :, idx].transpose(0, 1, 4, 2, 3)  # (N, C, k, D, H)
    else:
        raise ValueError(f"axis {axis!r}: expected one of {', '.join(AXES)}")
    s = s[..., ::-1, :]  # anterior (axial) / superior (coronal, sagittal) up
    n, c, k, h, w = s.shape
    return np.ascontiguousarray(s.transpose(0, 2, 1, 3, 4).reshape(n * k, c, h, w))


def slice_fid_kid(real: np.ndarray, fake: np.ndarray, extractor: Any, *, slices_per_volume: int = 8,
                  axes: tuple[str, ...] = AXES, seed: int = 0, batch_size: int = 32) -> dict[str, Any]:
    """Per axis: FID and KID of Inception features of slices cut the same way from both sets."""
    from stylemri.metrics.metric_utils import extract_features

    real, fake = check_volumes(real, "real volumes"), check_volumes(fake, "generated volumes")
    out: dict[str, Any] = {}
    for axis in axes:
        rs, fs = volume_slices(real, axis, slices_per_volume), volume_slices(fake, axis, slices_per_volume)
        fr = extract_features(iter([rs]), extractor, batch_size=batch_size)
        ff = extract_features(iter([fs]), extractor, batch_size=batch_size)
        entry: dict[str, Any] = {"num_real_slices": int(len(rs)), "num_generated_slices": int(len(fs)),
                                 "slices_per_volume": int(len(rs) // max(len(real), 1)),
                                 "positions": slice_positions(real.shape[-1], slices_per_volume).tolist()}
        entry["fid"] = fid_from_features(fr, ff) if min(len(fr), len(ff)) >= 2 else None
        entry["kid"] = kid_metric(fr, ff, num_subsets=100, seed=seed).to_dict() if min(len(fr), len(ff)) >= 2 else None
        out[axis] = entry
    return out


# ------------------------------------------------------------------------------------- nearest real volume
def _rms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, V) x (m, V) float -> (n, m) root-mean-square differences in [0, 255] units."""
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(d2, 0) / a.shape[1])


def nearest_real(fake: np.ndarray, real: np.ndarray, subjects: np.ndarray | None = None) -> dict[str, Any]:
    """Nearest real volume (and its subject) of each generated one, vs the real-vs-real floor between subjects."""
    fake, real = check_volumes(fake, "generated volumes"), check_volumes(real, "real volumes")
    subjects = np.asarray(subjects if subjects is not None else [f"volume {i}" for i in range(len(real))], object)
    subjects = np.where(subjects == "", np.array([f"volume {i}" for i in range(len(real))], object), subjects)
    fv = fake.reshape(len(fake), -1).astype(np.float64)
    rv = real.reshape(len(real), -1).astype(np.float64)
    mirrored = real[..., ::-1].reshape(len(real), -1).astype(np.float64)
    d = np.minimum(_rms(fv, rv), _rms(fv, mirrored))
    nearest = d.argmin(1)
    rows = [{"generated": i, "nearest_real": int(j), "subject": str(subjects[j]), "rms": float(d[i, j])}
            for i, j in enumerate(nearest)]
    floor = None
    rr = _rms(rv, rv)
    other = subjects[:, None] != subjects[None, :]
    if other.any(axis=1).any():
        rr = np.where(other, rr, np.inf)
        per_real = rr.min(1)
        floor = float(np.median(per_real[np.isfinite(per_real)]))
    per_subject: dict[str, dict[str, float]] = {}
    for row in rows:
        s = per_subject.setdefault(row["subject"], {"count": 0, "min_rms": np.inf})
        s["count"] += 1
        s["min_rms"] = min(s["min_rms"], row["rms"])
    fake_rms = np.array([r["rms"] for r in rows])
    return {"rows": rows, "per_subject": per_subject, "real_floor_rms": floor,
            "median_rms": float(np.median(fake_rms)) if len(rows) else None,
            "fraction_closer_than_floor": float((fake_rms < floor).mean()) if floor is not None and len(rows) else None,
            "num_real": int(len(real)), "num_generated": int(len(fake)),
            "distance": "RMS over voxels (0-255), min of direct and left-right mirrored"}


__all__ = ["AXES", "laplacian_pyramid3d", "nearest_real", "slice_fid_kid", "slice_positions",
           "swd3d", "volume_slices"]
