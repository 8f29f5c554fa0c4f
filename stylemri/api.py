"""`stylemri.load`: the trained EMA generator of a run (or one checkpoint) for every downstream tool.

    model = stylemri.load("runs/00003-stylegan2-mni152-64")
    images = model.generate(seeds=range(16), labels="axial", psi=0.7)  # (16, 1, 64, 64) in [-1, 1]

Loading reads safetensors + JSON only (never pickle) and builds the generator from the saved config.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from stylemri.config import RunConfig, from_dict
from stylemri.errors import UserError
from stylemri.networks import build_generator
from stylemri.training import checkpoint as ckpt
from stylemri.training.run_dir import CONFIG_NAME, find_run
from stylemri.training.samples import render, seed_latents


@dataclass
class LoadedModel:
    """The EMA generator (eval mode, no grad) with what is needed to use it."""

    G: torch.nn.Module
    config: RunConfig
    class_names: tuple[str, ...]
    checkpoint: Path
    kimg: float
    stage: int | None  # progressive runs stopped early generate at the stage they reached
    alpha: float
    device: torch.device

    @property
    def resolution(self) -> int:
        """Pixels of the generated images (a progressive run stopped early gives fewer than configured)."""
        return self.config.network.resolution if self.stage is None else 4 * 2**self.stage

    @property
    def conditional(self) -> bool:
        return self.config.network.c_dim > 0

    def latents(self, seeds: Iterable[int]) -> torch.Tensor:
        """One z per seed (seed s always gives the same z, whatever the batch), (N, z_dim) float32."""
        return seed_latents(seeds, self.G.z_dim)

    def labels(self, labels: int | str | Sequence[int | str] | None, n: int) -> torch.Tensor | None:
        """Class names or indices (one, or one per image) -> one-hot (n, c_dim); cycles classes when None."""
        c_dim = self.config.network.c_dim
        if c_dim == 0:
            if labels is not None:
                raise UserError("labels: this model is unconditional; it was trained without classes")
            return None
        if labels is None:
            idx = [i % c_dim for i in range(n)]
        else:
            items = [labels] * n if isinstance(labels, (int, str)) else list(labels)
            if len(items) != n:
                raise UserError(f"labels: expected one label or {n}, got {len(items)}")
            idx = [self._class_index(x) for x in items]
        return torch.nn.functional.one_hot(torch.tensor(idx, dtype=torch.long), c_dim).float()

    def _class_index(self, label: int | str) -> int:
        if isinstance(label, str):
            if label not in self.class_names:
                raise UserError(f"class {label}: expected one of {', '.join(self.class_names)}")
            return self.class_names.index(label)
        if not 0 <= int(label) < len(self.class_names):
            raise UserError(f"class {label}: expected an index below {len(self.class_names)}")
        return int(label)

    @torch.no_grad()
    def generate(self, n: int | None = None, *, seeds: Iterable[int] | None = None, seed: int = 0,
                 labels: int | str | Sequence[int | str] | None = None, psi: float = 1.0, cutoff: int | None = None,
                 noise_mode: str = "const", batch_size: int = 32) -> torch.Tensor:
        """Images (N, C, R, R) float32 in [-1, 1] (not clipped) on the CPU; `seeds` or `n` from `seed`."""
        if seeds is None:
            if n is None or n < 1:
                raise UserError(f"n {n}: expected a positive number of images (or seeds=...)")
            seeds = range(seed, seed + n)
        z = self.latents(seeds)
        c = self.labels(labels, len(z))
        out = []
        for i in range(0, len(z), batch_size):
            zi = z[i : i + batch_size].to(self.device)
            ci = None if c is None else c[i : i + batch_size].to(self.device)
            ws = self.G.mapping(zi, ci, psi=psi, cutoff=cutoff)
            out.append(self.G.synthesis(ws, noise_mode=noise_mode, stage=self.stage, alpha=self.alpha).float().cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def render(self, z: torch.Tensor, c: torch.Tensor | None = None, psi: float = 1.0) -> torch.Tensor:
        """Images for given latents (and one-hot labels)."""
        return render(self.G, z, c, self.stage, self.alpha, self.device, psi=psi)


def load(run_or_checkpoint: str | os.PathLike, *, device: str | torch.device = "cpu") -> LoadedModel:
    """A run directory (its latest checkpoint), its checkpoints/ folder, or one checkpoint's .json/.safetensors."""
    path = Path(run_or_checkpoint)
    if path.suffix in (".json", ".safetensors") and path.is_file():
        json_path = path.with_suffix(".json")
        meta = ckpt.read_meta(json_path)
        try:
            cfg = from_dict(RunConfig, meta["config"])
        except (KeyError, ValueError, TypeError) as exc:
            raise UserError(f"{json_path}: expected a training checkpoint with its run configuration ({exc})") from None
    else:
        if path.is_file():
            raise UserError(f"{path}: expected a run directory or a checkpoint (.json or .safetensors)")
        _, cfg, json_path = find_run(path)
    tensors, meta = ckpt.read_checkpoint(json_path, verify=False, prefixes=("G_ema",))
    G = build_generator(cfg.network)
    state = ckpt.unpack_module("G_ema", tensors)
    if not state:
        raise UserError(f"{json_path}: expected generator weights (G_ema) in the checkpoint; found none")
    G.load_state_dict(state)
    device = torch.device(device)
    G = G.to(device).eval().requires_grad_(False)
    phase = meta.get("phase") or {}
    stage = phase.get("stage") if cfg.train.progressive else None
    alpha = float(phase.get("alpha", 1.0)) if stage is not None else 1.0
    if stage is not None and stage == int(math.log2(cfg.network.resolution)) - 2 and alpha == 1.0:
        stage = None
    return LoadedModel(G, cfg, tuple(cfg.class_names), json_path, int(meta.get("nimg", 0)) / 1000, stage, alpha, device)


__all__ = ["LoadedModel", "load", "CONFIG_NAME"]
