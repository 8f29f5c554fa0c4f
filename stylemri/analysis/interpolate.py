"""Latent walks: lerp in W, slerp in Z (z is Gaussian, so straight lines in Z leave the typical shell),
and, for conditional models, walks between class means (mean w of each class): the "progression
from CN to AD" picture. Written as an animated GIF and a PNG strip.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from stylemri import io
from stylemri.errors import UserError
from stylemri.generate import class_labels, class_mean_ws, map_latents, seed_latents, synthesize

SPACES = ("w", "z")


def lerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    return a + (b - a) * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation along the last axis (norms interpolated linearly); lerp when a ∥ b."""
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / na.clamp_min(eps), b / nb.clamp_min(eps)
    cos = (ua * ub).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    so = torch.sin(omega)
    parallel = so.abs() < 1e-6
    so = torch.where(parallel, torch.ones_like(so), so)
    wa = torch.where(parallel, torch.full_like(so, 1.0 - t), torch.sin((1.0 - t) * omega) / so)
    wb = torch.where(parallel, torch.full_like(so, float(t)), torch.sin(t * omega) / so)
    direction = wa * ua + wb * ub
    return direction / direction.norm(dim=-1, keepdim=True).clamp_min(eps) * lerp(na, nb, t)


def _steps(frames: int) -> torch.Tensor:
    if frames < 2:
        raise UserError(f"--frames {frames}: expected at least 2 frames per segment")
    return torch.linspace(0.0, 1.0, frames)


def _chain(keys: torch.Tensor, frames: int, fn) -> torch.Tensor:
    """Keyframes (K, ...) -> (frames * (K - 1) - (K - 2), ...), consecutive pairs joined without repeats."""
    ts = _steps(frames)
    out = [keys[0:1]]
    for a, b in zip(keys[:-1], keys[1:]):
        out += [fn(a, b, float(t)).unsqueeze(0) for t in ts[1:]]
    return torch.cat(out)


@torch.no_grad()
def interpolate_seeds(G: torch.nn.Module, seeds: Sequence[int], space: str = "w", frames: int = 16,
                      psi: float = 1.0, noise_mode: str = "const", class_index: int | None = None) -> torch.Tensor:
    """Walk through the seeds in order: returns frames (T, C, H, W), `frames` per consecutive pair."""
    if space not in SPACES:
        raise UserError(f"--space {space}: expected w or z")
    if len(seeds) < 2:
        raise UserError(f"--seeds {','.join(map(str, seeds))}: expected at least two seeds to interpolate between")
    if G.c_dim and class_index is None:
        raise ValueError("a conditional model needs class_index")
    z = seed_latents(seeds, G.z_dim)
    if space == "z":
        zs = _chain(z, frames, slerp)
        c = class_labels([class_index] * len(zs) if G.c_dim else [None] * len(zs), G.c_dim)
        ws = map_latents(G, zs, c, psi=psi)
    else:
        c = class_labels([class_index] * len(z) if G.c_dim else [None] * len(z), G.c_dim)
        ws = _chain(map_latents(G, z, c, psi=psi).cpu(), frames, lerp)
    return synthesize(G, ws, noise_mode)


@torch.no_grad()
def class_walk(G: torch.nn.Module, classes: Sequence[int], frames: int = 16, seeds: Sequence[int] = (),
               noise_mode: str = "const", num_samples: int = 2000, sample_seed: int = 0) -> torch.Tensor:
    """Walk between class means in W: row 0 from the mean w of each class to the next; one more row per
    seed, walking that seed's own w(z, class) from class to class. Returns (rows, T, C, H, W)."""
    if not G.c_dim:
        raise UserError("--classes: this model is unconditional; class walks need a conditional model")
    if len(classes) < 2:
        raise UserError("--classes: expected at least two classes, e.g. NC,AD")
    means = class_mean_ws(G, num_samples=num_samples, seed=sample_seed)
    rows = [_chain(means[list(classes)], frames, lerp)]
    if seeds:
        z = seed_latents(seeds, G.z_dim)
        per_class = [map_latents(G, z, class_labels([k] * len(z), G.c_dim))[:, 0].cpu() for k in classes]
        keys = torch.stack(per_class, dim=1)  # (S, K, w_dim)
        rows += [_chain(keys[i], frames, lerp) for i in range(len(seeds))]
    ws = torch.stack(rows)  # (rows, T, w_dim)
    imgs = synthesize(G, ws.reshape(-1, G.w_dim), noise_mode)
    return imgs.reshape(ws.shape[0], ws.shape[1], *imgs.shape[1:])


def _frames_uint8(rows: torch.Tensor, pad: int, zoom: int) -> list[np.ndarray]:
    """(rows, T, C, H, W) -> T frames, each the rows stacked vertically as (H', W', C) uint8."""
    if rows.ndim == 4:
        rows = rows.unsqueeze(0)
    arr = io.to_uint8(rows)
    if zoom > 1:
        arr = arr.repeat(zoom, axis=-1).repeat(zoom, axis=-2)
    return [io.make_grid(arr[:, t], ncols=1, pad=pad if arr.shape[0] > 1 else 0) for t in range(arr.shape[1])]


def write_gif(path: str | os.PathLike, rows: torch.Tensor, duration_ms: int = 80, zoom: int = 1,
              bounce: bool = True) -> Path:
    """Animated GIF (looping; forwards then back when `bounce`) of frames (T, C, H, W) or (rows, T, C, H, W)."""
    frames = _frames_uint8(rows, pad=2, zoom=zoom)
    if bounce and len(frames) > 2:
        frames = frames + frames[-2:0:-1]
    pils = [Image.fromarray(f[:, :, 0] if f.shape[2] == 1 else f) for f in frames]
    path = Path(path)
    with io.atomic_write(path) as f:
        pils[0].save(f, format="GIF", save_all=True, append_images=pils[1:], duration=duration_ms, loop=0,
                     optimize=False)
    return path


def write_strip(path: str | os.PathLike, rows: torch.Tensor, zoom: int = 1) -> Path:
    """All frames side by side as one PNG, one row per walk."""
    if rows.ndim == 4:
        rows = rows.unsqueeze(0)
    arr = io.to_uint8(rows)
    if zoom > 1:
        arr = arr.repeat(zoom, axis=-1).repeat(zoom, axis=-2)
    return io.save_image(path, io.make_grid(arr.reshape(-1, *arr.shape[2:]), ncols=arr.shape[1]))


__all__ = ["SPACES", "lerp", "slerp", "interpolate_seeds", "class_walk", "write_gif", "write_strip"]
