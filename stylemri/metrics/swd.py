"""Multi-scale sliced Wasserstein distance (Karras et al. 2018, ProGAN's `sliced_wasserstein.py`): no weights.

Each image is decomposed into a Laplacian pyramid (cv2.pyrDown/pyrUp's 5x5 binomial filter, mirrored
borders) down to 16x16; at every level 128 random 7x7 neighbourhoods per image become descriptors, which
are normalized per channel over the whole set; the distance between the two descriptor sets is the mean
1-D Wasserstein distance over 4x128 random unit directions. Values are reported x1e3 per resolution,
plus their mean. Unlike ProGAN's 3-channel-only code, C channels are used as they are (grayscale MRI:
49-d descriptors). Patch positions come from generators seeded by (seed, level, image index) and the
directions from one seeded generator, so two identical sets give exactly 0, results do not depend on
batching, and a run is reproducible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from stylemri.metrics.metric_utils import check_uint8_batch

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64) / 16.0


@dataclass(frozen=True)
class SWDConfig:
    nhood_size: int = 7
    nhoods_per_image: int = 128
    dir_repeats: int = 4
    dirs_per_repeat: int = 128
    min_resolution: int = 16
    seed: int = 0


def _filter2d(x: torch.Tensor, gain: float) -> torch.Tensor:
    """Separable 5x5 binomial filter (x gain) with mirrored borders, per channel: scipy 'mirror' == 'reflect'."""
    n, c, h, w = x.shape
    k = (_BINOMIAL * gain ** 0.5).to(x.dtype)
    y = F.pad(x.reshape(n * c, 1, h, w), (2, 2, 2, 2), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, 5))
    y = F.conv2d(y, k.view(1, 1, 5, 1))
    return y.reshape(n, c, h, w)


def pyr_down(x: torch.Tensor) -> torch.Tensor:
    """Blur and keep every second pixel (ProGAN's pyr_down, which matches cv2.pyrDown)."""
    return _filter2d(x, 1.0)[:, :, ::2, ::2]


def pyr_up(x: torch.Tensor) -> torch.Tensor:
    """Insert zeros between pixels and blur x4 (ProGAN's pyr_up, which matches cv2.pyrUp)."""
    n, c, h, w = x.shape
    up = torch.zeros((n, c, h * 2, w * 2), dtype=x.dtype, device=x.device)
    up[:, :, ::2, ::2] = x
    return _filter2d(up, 4.0)


def laplacian_pyramid(images: torch.Tensor, num_levels: int) -> list[torch.Tensor]:
    """Full-resolution band-pass levels first, the low-pass residual last."""
    pyramid = [images.to(torch.float32)]
    for _ in range(1, num_levels):
        pyramid.append(pyr_down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - pyr_up(pyramid[-1])
    return pyramid


def pyramid_resolutions(resolution: int, min_resolution: int = 16) -> list[int]:
    res, out = resolution, []
    while res >= min_resolution:
        out.append(res)
        res //= 2
    return out


def sample_descriptors(level: np.ndarray, nhood_size: int, nhoods_per_image: int,
                       image_seeds: list[list[int]]) -> np.ndarray:
    """Random nhood_size^2 patches, `nhoods_per_image` per image: (N * per_image, C, k, k) float32.

    Image i draws its patch centres from its own generator seeded with `image_seeds[i]`, so the result
    does not depend on how the images were batched."""
    n, c, h, w = level.shape
    half = nhood_size // 2
    count = nhoods_per_image * n
    centres = np.empty((2, count), np.int64)
    for i, seed in enumerate(image_seeds):
        g = np.random.default_rng(seed)
        centres[:, i * nhoods_per_image:(i + 1) * nhoods_per_image] = g.integers(
            half, (h - half, w - half), size=(nhoods_per_image, 2)).T
    nhood, chan, y, x = np.ogrid[0:count, 0:c, -half:half + 1, -half:half + 1]
    img = nhood // nhoods_per_image
    y = y + centres[0].reshape(count, 1, 1, 1)
    x = x + centres[1].reshape(count, 1, 1, 1)
    idx = ((img * c + chan) * h + y) * w + x
    return np.ascontiguousarray(level).reshape(-1)[idx]


def finalize_descriptors(desc: list[np.ndarray]) -> np.ndarray:
    """Concatenate, normalize per channel over the set (zero mean, unit std), flatten to (n, C*k*k)."""
    d = np.concatenate(desc, axis=0).astype(np.float32)
    d -= d.mean(axis=(0, 2, 3), keepdims=True, dtype=np.float64).astype(np.float32)
    std = d.std(axis=(0, 2, 3), keepdims=True, dtype=np.float64).astype(np.float32)
    d /= np.maximum(std, 1e-8)
    return d.reshape(d.shape[0], -1)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, dir_repeats: int, dirs_per_repeat: int,
                       rng: np.random.Generator) -> float:
    """Mean over random unit directions of the 1-D Wasserstein-1 distance between projected sets."""
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"sliced_wasserstein expects two (n, d) arrays of equal shape, got {a.shape}, {b.shape}")
    at, bt = np.ascontiguousarray(a.T, np.float32), np.ascontiguousarray(b.T, np.float32)
    results = []
    for _ in range(dir_repeats):
        dirs = rng.standard_normal((a.shape[1], dirs_per_repeat))
        dirs /= np.sqrt(np.sum(np.square(dirs), axis=0, keepdims=True))
        dt = np.ascontiguousarray(dirs.T, np.float32)  # (direction, component)
        proj_a = np.sort(dt @ at, axis=1)  # (direction, neighbourhood), sorted per direction
        proj_b = np.sort(dt @ bt, axis=1)
        results.append(float(np.mean(np.abs(proj_a - proj_b), dtype=np.float64)))
    return float(np.mean(results))


def collect_descriptors(batches: Iterable[np.ndarray], cfg: SWDConfig) -> tuple[int, list[np.ndarray]]:
    """Per pyramid level, the finalized descriptors of every image in `batches` (same size, square)."""
    levels: list[list[np.ndarray]] | None = None
    done = 0
    resolution = None
    for batch in batches:
        batch = check_uint8_batch(batch, "swd images")
        if resolution is None:
            resolution = batch.shape[2]
            if batch.shape[2] != batch.shape[3] or resolution < cfg.min_resolution:
                raise ValueError(f"swd needs square images of at least {cfg.min_resolution} px, got {batch.shape[2:]}")
            levels = [[] for _ in pyramid_resolutions(resolution, cfg.min_resolution)]
        elif batch.shape[2:] != (resolution, resolution):
            raise ValueError(f"swd: all images must be {resolution}x{resolution}, got {batch.shape[2:]}")
        assert levels is not None
        pyramid = laplacian_pyramid(torch.from_numpy(batch), len(levels))
        for lod, level in enumerate(pyramid):
            seeds = [[cfg.seed, lod, done + i] for i in range(len(batch))]
            levels[lod].append(sample_descriptors(level.numpy(), cfg.nhood_size, cfg.nhoods_per_image, seeds))
        done += len(batch)
    if levels is None or resolution is None:
        raise ValueError("swd: no images")
    return resolution, [finalize_descriptors(d) for d in levels]


def swd(batches_a: Iterable[np.ndarray], batches_b: Iterable[np.ndarray],
        cfg: SWDConfig = SWDConfig()) -> dict[str, Any]:
    """MS-SWD x1e3 between two image sets given as uint8 (N, C, R, R) batches; per resolution and mean."""
    res_a, desc_a = collect_descriptors(batches_a, cfg)
    res_b, desc_b = collect_descriptors(batches_b, cfg)
    if res_a != res_b:
        raise ValueError(f"swd: the two sets have different resolutions ({res_a} vs {res_b})")
    rng = np.random.default_rng([cfg.seed, 1])
    per_res: dict[str, float] = {}
    for res, da, db in zip(pyramid_resolutions(res_a, cfg.min_resolution), desc_a, desc_b):
        n = min(len(da), len(db))  # equal counts: subsample the larger set (seeded)
        if len(da) > n:
            da = da[np.sort(rng.choice(len(da), n, replace=False))]
        if len(db) > n:
            db = db[np.sort(rng.choice(len(db), n, replace=False))]
        per_res[str(res)] = 1e3 * sliced_wasserstein(da, db, cfg.dir_repeats, cfg.dirs_per_repeat, rng)
    return {"per_resolution": per_res, "mean": float(np.mean(list(per_res.values()))), "scale": 1e3,
            "config": asdict(cfg)}
