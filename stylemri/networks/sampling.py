"""Seeds -> images: the one generation path every tool shares (training grids and metrics, `stylemri
generate`, `evaluate`, the analysis commands, `stylemri.load(...).generate`).

Latents follow NVlabs: seed s gives z = np.random.RandomState(s).randn(z_dim), so a seed names the same
image across runs, machines and tools. An image depends only on its own seed and class, never on what
else is in its batch: with noise "random" each image draws its noise from its own seed.

It lives in `networks` (below training) because training's sample grids and metrics must use it too,
and training may not import the trained-model layer (`stylemri.model`) above it.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch

from stylemri.errors import UserError
from stylemri.networks.stylegan2 import NOISE_MODES


def seed_latents(seeds: Iterable[int], z_dim: int) -> torch.Tensor:
    """One z per seed, drawn as NVlabs does: RandomState(seed).randn(z_dim); (N, z_dim) float32 on the CPU."""
    z = [np.random.RandomState(int(s) % 2**32).randn(z_dim) for s in seeds]
    return torch.from_numpy(np.stack(z).astype(np.float32)) if z else torch.zeros(0, z_dim)


def one_hot(indices: Sequence[int | None] | torch.Tensor, c_dim: int,
            device: torch.device | str | None = None) -> torch.Tensor:
    """Class indices (a list, or an integer tensor) -> one-hot (N, c_dim) float32 on `device` (default: the
    tensor's, else the CPU). The one label encoding of the package.

    An unconditional model (c_dim 0) gets an empty (N, 0) tensor whatever the indices (None or not):
    every network reads it as "no labels" (`mapping.check_labels`), and unlike None it batches by slicing,
    moves with `.to()` and concatenates with a covariate vector (`condition`) like any label tensor."""
    if device is None:
        device = indices.device if isinstance(indices, torch.Tensor) else "cpu"
    n = len(indices)
    if not c_dim or not n:
        return torch.zeros(n, c_dim, device=device)
    if isinstance(indices, torch.Tensor):  # training's labels: no host round trip to check them
        idx = indices.to(device=device, dtype=torch.long)
    else:
        if any(k is None for k in indices):
            raise ValueError("a conditional model needs a class for every latent")
        bad = [int(k) for k in indices if not 0 <= int(k) < c_dim]
        if bad:
            raise ValueError(f"class index {bad[0]}: expected 0 to {c_dim - 1}")
        idx = torch.tensor([int(k) for k in indices], dtype=torch.long, device=device)
    return torch.nn.functional.one_hot(idx.reshape(n), c_dim).float()


def condition(class_part: torch.Tensor, covariates: torch.Tensor | None, cov_dim: int) -> torch.Tensor:
    """The networks' condition vector: class one-hot (N, c_dim) then the covariate vector (N, cov_dim)."""
    if cov_dim == 0:
        if covariates is not None and covariates.numel() > 0:
            raise ValueError("covariates given to a model trained without covariates")
        return class_part
    n = len(class_part)
    if covariates is None or tuple(covariates.shape) != (n, cov_dim):
        got = None if covariates is None else tuple(covariates.shape)
        raise ValueError(f"a covariate model needs covariate vectors of shape ({n}, {cov_dim}), got {got}")
    return torch.cat([class_part, covariates.to(class_part.device, torch.float32)], dim=1)



def condition_for(G: torch.nn.Module, classes: Sequence[int | None],
                  covariates: torch.Tensor | None = None) -> torch.Tensor:
    """G's condition vectors for these class indices (None for an unconditional G) and encoded covariates."""
    return condition(one_hot(classes, G.c_dim), covariates, int(getattr(G, "cov_dim", 0)))

def model_device(module: torch.nn.Module) -> torch.device:
    """Where a module's parameters (or buffers) live; CPU for an empty module."""
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


def check_noise(noise: str) -> str:
    if noise not in NOISE_MODES:
        raise UserError(f"--noise {noise}: expected one of {', '.join(NOISE_MODES)}")
    return noise


@torch.no_grad()
def map_latents(G: torch.nn.Module, z: torch.Tensor, c: torch.Tensor | None = None, *, psi: float = 1.0,
                cutoff: int | None = None, batch: int = 64) -> torch.Tensor:
    """z (N, z_dim), c (N, c_dim) -> ws (N, num_ws, w_dim) on G's device, truncated by psi, in batches."""
    dev = model_device(G)
    c = one_hot([None] * len(z), 0) if c is None else c
    out = [G.mapping(z[i:i + batch].to(dev), c[i:i + batch].to(dev), psi=psi, cutoff=cutoff)
           for i in range(0, len(z), max(int(batch), 1))]
    return torch.cat(out) if out else torch.zeros(0, G.num_ws, G.w_dim, device=dev)


@torch.no_grad()
def synthesize(G: torch.nn.Module, ws: torch.Tensor, *, noise: str = "const", batch: int = 32,
               noise_seeds: Sequence[int] | None = None) -> torch.Tensor:
    """ws (N, num_ws, w_dim) or (N, w_dim) -> images (N, C, R, R) float32 on the CPU, raw output (~[-1, 1]).

    noise "random" needs `noise_seeds` (one per image) so that an image does not depend on its batch."""
    check_noise(noise)
    dev = model_device(G)
    ws = ws.to(dev)
    if ws.ndim == 2:
        ws = ws.unsqueeze(1).repeat(1, G.num_ws, 1)
    if noise == "random":
        if noise_seeds is None or len(noise_seeds) != len(ws):
            raise ValueError("noise 'random' needs one noise seed per image")
        out = []
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            for w, s in zip(ws, noise_seeds):
                torch.manual_seed(int(s))
                out.append(G.synthesis(w[None], noise_mode="random").float().cpu())
    else:
        step = max(int(batch), 1)
        out = [G.synthesis(ws[i:i + step], noise_mode=noise).float().cpu() for i in range(0, len(ws), step)]
    if not out:
        return torch.zeros(0, G.img_channels, G.resolution, G.resolution)
    return torch.cat(out)


@torch.no_grad()
def generate_images(G: torch.nn.Module, seeds: Sequence[int], classes: Sequence[int | None] | None = None, *,
                    psi: float = 1.0, noise: str = "const", batch: int = 32,
                    covariates: torch.Tensor | None = None) -> torch.Tensor:
    """One image per seed (and class index, for a conditional G): (N, C, R, R) float32 on the CPU.

    `covariates`: a covariate model's encoded vectors (N, G.cov_dim), one per seed (stylemri.data.covariates).
    Seed s (with class k) gives the same image whatever else is asked for: its own z, its own noise."""
    seeds = [int(s) for s in seeds]
    check_noise(noise)
    if classes is None:
        classes = [None] * len(seeds)
    if len(classes) != len(seeds):
        raise ValueError(f"{len(classes)} classes for {len(seeds)} seeds: expected one per seed")
    z = seed_latents(seeds, G.z_dim)
    c = condition_for(G, classes, covariates)
    step = max(int(batch), 1)
    out = []
    for i in range(0, len(seeds), step):  # map and synthesise batch by batch: memory stays flat with N
        ws = map_latents(G, z[i:i + step], c[i:i + step], psi=psi, batch=step)
        out.append(synthesize(G, ws, noise=noise, batch=step, noise_seeds=seeds[i:i + step]))
    if not out:
        return torch.zeros(0, G.img_channels, G.resolution, G.resolution)
    return torch.cat(out)


MAX_CLASS_SAMPLES = 100_000  # latents per class mean (--w-samples): it bounds the run time of the mean


@torch.no_grad()
def class_w_stats(G: torch.nn.Module, num_samples: int = 2000, seed: int = 0,
                  batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean w of each class (num_classes, w_dim) over `num_samples` random z per class (untruncated), and
    the spread of those ws around their class mean (num_classes,): the root-mean-square distance.

    For an unconditional model this is one row: the model's mean w. `project` starts from the mean and
    scales its exploration noise by the spread; the class means are the anchors of `edit` and `interpolate`."""
    if not 1 <= num_samples <= MAX_CLASS_SAMPLES:
        raise UserError(f"--w-samples {num_samples}: expected 1 to {MAX_CLASS_SAMPLES:,} latents per class mean")
    gen = torch.Generator().manual_seed(seed)
    means, spreads = [], []
    for k in range(max(G.c_dim, 1)):
        total = torch.zeros(G.w_dim, dtype=torch.float64)
        squares = torch.zeros((), dtype=torch.float64)
        for i in range(0, num_samples, batch):
            n = min(batch, num_samples - i)
            z = torch.randn(n, G.z_dim, generator=gen)
            w = map_latents(G, z, one_hot([k] * n, G.c_dim))[:, 0].double()
            total += w.sum(0).cpu()
            squares += w.square().sum().cpu()
        mean = total / num_samples
        means.append(mean.float())
        spreads.append(float(max(squares / num_samples - mean.square().sum(), 0.0)) ** 0.5)
    return torch.stack(means), torch.tensor(spreads, dtype=torch.float32)


def class_mean_ws(G: torch.nn.Module, num_samples: int = 2000, seed: int = 0, batch: int = 256) -> torch.Tensor:
    """Mean w of each class (num_classes, w_dim) over `num_samples` random z per class (untruncated);
    one row for an unconditional model (`class_w_stats` without the spread)."""
    return class_w_stats(G, num_samples, seed, batch)[0]


__all__ = ["MAX_CLASS_SAMPLES", "NOISE_MODES", "seed_latents", "one_hot", "condition", "model_device", "check_noise",
           "map_latents", "synthesize",
           "generate_images", "class_mean_ws", "class_w_stats"]
