"""Class-direction edits: move a (projected) latent along mean_w(A) - mean_w(B) of a conditional model.

Step 1 adds exactly one class-mean difference, so step 0 is the scan itself and step 1 moves it as far
as the average B image is from the average A image in W; negative steps go the other way.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from stylemri.errors import UserError
from stylemri.networks.sampling import class_mean_ws, synthesize

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"


def parse_direction(spec: str, class_names: Sequence[str], c_dim: int,
                    resolve_class: Callable[[str], int | None]) -> tuple[int, int]:
    """'AD-NC' -> (index of AD, index of NC): the direction points from NC towards AD. `resolve_class`
    (a model's `class_index`) finds a class by name when the exact split finds none."""
    if not c_dim:
        raise UserError(f"--direction {spec}: this model is unconditional; class directions need a conditional model")
    names = list(class_names)
    # class names may themselves contain '-': try every split point
    for i, ch in enumerate(spec):
        if ch == "-" and 0 < i < len(spec) - 1:
            a, b = spec[:i], spec[i + 1:]
            if a in names and b in names:
                if a == b:
                    raise UserError(f"--direction {spec}: expected two different classes")
                return names.index(a), names.index(b)
    parts = spec.split("-")
    if len(parts) == 2:
        a, b = (resolve_class(p.strip()) for p in parts)  # errors name the classes
        if a == b:
            raise UserError(f"--direction {spec}: expected two different classes")
        return int(a), int(b)  # type: ignore[arg-type]
    raise UserError(f"--direction {spec}: expected TO-FROM naming two of the classes {', '.join(names)}")


def parse_steps(spec: str) -> list[float]:
    """'-3..3' (step 1), '-3..3:0.5', or a list '-2,0,2' -> the multiples of the direction to apply."""
    text = str(spec).strip()
    m = re.fullmatch(rf"({_NUM})\s*\.\.\s*({_NUM})(?:\s*:\s*({_NUM}))?", text)
    if m:
        lo, hi = float(m.group(1)), float(m.group(2))
        step = float(m.group(3)) if m.group(3) else 1.0
        if step <= 0 or hi < lo:
            raise UserError(f"--multiples {spec}: expected LO..HI[:STEP] with LO <= HI and STEP > 0")
        count = math.floor((hi - lo) / step + 1e-9) + 1
        if count > 1000:
            raise UserError(f"--multiples {spec}: {count} steps; expected at most 1000")
        return [round(lo + k * step, 10) for k in range(count)]
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        raise UserError(f"--multiples {spec}: expected LO..HI[:STEP] like -3..3, or a list like -2,0,2")
    return list(dict.fromkeys(values))  # a step given twice is drawn (and written) once


def load_latent(path: str | os.PathLike, num_ws: int, w_dim: int) -> torch.Tensor:
    """A latent .npy of shape (w_dim,), (num_ws, w_dim) or (1, num_ws, w_dim) -> ws (num_ws, w_dim)."""
    p = Path(path)
    try:
        arr = np.load(p, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; expected a latent .npy written by 'stylemri project'") from None
    except (ValueError, OSError):
        raise UserError(f"{path}: not a .npy array; expected a latent written by 'stylemri project'") from None
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.shape == (w_dim,):
        arr = np.repeat(arr[None], num_ws, axis=0)
    if arr.shape != (num_ws, w_dim):
        raise UserError(f"{path}: latent of shape {arr.shape}; this model expects ({num_ws}, {w_dim}) or ({w_dim},)")
    if not np.isfinite(arr).all():
        raise UserError(f"{path}: the latent contains NaN or infinite values")
    return torch.from_numpy(arr)


def class_direction(G: torch.nn.Module, to_class: int, from_class: int, num_samples: int = 2000,
                    seed: int = 0) -> torch.Tensor:
    """mean w(to_class) - mean w(from_class), (w_dim,)."""
    means = class_mean_ws(G, num_samples=num_samples, seed=seed)
    return means[to_class] - means[from_class]


@torch.no_grad()
def edit_sequence(G: torch.nn.Module, ws: torch.Tensor, direction: torch.Tensor, steps: Sequence[float],
                  layers: Sequence[int] | None = None, noise_mode: str = "const") -> tuple[torch.Tensor, torch.Tensor]:
    """Images (S, C, R, R) and latents (S, num_ws, w_dim) of ws + step * direction (in `layers`, default all)."""
    if ws.shape != (G.num_ws, G.w_dim):
        raise ValueError(f"ws must be ({G.num_ws}, {G.w_dim}), got {tuple(ws.shape)}")
    mask = torch.zeros(G.num_ws, 1)
    mask[list(range(G.num_ws)) if layers is None else list(layers)] = 1.0
    alphas = torch.tensor(list(steps), dtype=torch.float32).view(-1, 1, 1)
    edited = ws.float().cpu().unsqueeze(0) + alphas * mask.unsqueeze(0) * direction.float().cpu().view(1, 1, -1)
    return synthesize(G, edited, noise=noise_mode, noise_seeds=[0] * len(edited)), edited


__all__ = ["parse_direction", "parse_steps", "load_latent", "class_direction", "edit_sequence"]
