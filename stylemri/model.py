"""Opening a trained run for use: which checkpoint (latest | best | KIMG), the EMA generator at the stage
the run reached, the discriminator when a tool wants its features, and the output folder named after
the checkpoint (like the seeds' `predict.py --epoch`), so outputs of different checkpoints never mix.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import stylemri
from stylemri.errors import UserError


class StagedGenerator(nn.Module):
    """A progressive generator frozen at the stage (and fade-in alpha) its run reached, so every tool sees
    the generator contract with `resolution` = what it actually produces."""

    def __init__(self, G: nn.Module, stage: int, alpha: float = 1.0) -> None:
        super().__init__()
        self.G = G
        self.stage, self.alpha = int(stage), float(alpha)
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = G.z_dim, G.c_dim, G.w_dim, G.num_ws
        self.img_channels = G.img_channels
        self.resolution = 4 * 2**self.stage

    @property
    def mapping(self) -> nn.Module:
        return self.G.mapping

    @property
    def w_avg(self) -> torch.Tensor:
        return self.G.w_avg

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "random", **_: Any) -> torch.Tensor:
        return self.G.synthesis(ws, noise_mode=noise_mode, stage=self.stage, alpha=self.alpha)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, psi: float = 1.0, cutoff: int | None = None,
                noise_mode: str = "random") -> torch.Tensor:
        return self.synthesis(self.mapping(z, c, psi=psi, cutoff=cutoff), noise_mode=noise_mode)


class StagedDiscriminator(nn.Module):
    """The discriminator of a progressive run at the stage (and alpha) its generator reached."""

    def __init__(self, D: nn.Module, stage: int, alpha: float = 1.0) -> None:
        super().__init__()
        self.D = D
        self.stage, self.alpha = int(stage), float(alpha)
        self.c_dim = D.c_dim

    def forward(self, img: torch.Tensor, c: torch.Tensor | None, **_: Any) -> torch.Tensor:
        return self.D(img, c, stage=self.stage, alpha=self.alpha)


@dataclass
class UsableModel:
    """A checkpoint opened for the tools: G (eval, no grad), the run config, class names, where it came from."""

    G: nn.Module
    config: Any  # stylemri.config.RunConfig
    class_names: list[str]
    checkpoint: Path
    kimg: float
    device: torch.device
    stage: int | None = None
    alpha: float = 1.0
    _D: nn.Module | None = field(default=None, repr=False)

    @property
    def tag(self) -> str:
        """Output sub-folder for this checkpoint, e.g. 'kimg-4.5'."""
        return f"kimg-{self.kimg:g}"

    @property
    def conditional(self) -> bool:
        return self.G.c_dim > 0

    @property
    def run_name(self) -> str:
        run = self.checkpoint.parent.parent if self.checkpoint.parent.name == "checkpoints" else self.checkpoint.parent
        return run.name

    def discriminator(self) -> nn.Module:
        """The run's discriminator from the same checkpoint (eval, no grad); loaded on first use."""
        if self._D is None:
            from stylemri.networks import build_discriminator
            from stylemri.training import checkpoint as ckpt

            tensors, _ = ckpt.read_checkpoint(self.checkpoint, verify=False, prefixes=("D",))
            state = ckpt.unpack_module("D", tensors)
            if not state:
                raise UserError(f"{self.checkpoint}: this checkpoint holds no discriminator weights (D)")
            D = build_discriminator(self.config.network)
            D.load_state_dict(state)
            D = D.to(self.device).eval().requires_grad_(False)
            self._D = D if self.stage is None else StagedDiscriminator(D, self.stage, self.alpha)
        return self._D


def checkpoint_kimg(json_path: Path) -> float:
    m = re.match(r"^ckpt-(\d+)$", json_path.stem)
    return int(m.group(1)) / 1000 if m else math.nan


def resolve_checkpoint(run: str | os.PathLike, which: str = "latest") -> Path:
    """A run directory + 'latest' | 'best' | KIMG -> the checkpoint's JSON record; a checkpoint file as is."""
    from stylemri.training.checkpoint import CheckpointManager

    path = Path(run)
    which = str(which).strip().lower()
    if path.is_file():
        if which != "latest":
            raise UserError(f"--checkpoint {which}: {path} is already one checkpoint; give the run folder to choose")
        return path.with_suffix(".json") if path.suffix == ".safetensors" else path
    if not path.exists():
        raise UserError(f"{path}: no such run directory")
    if path.name == "checkpoints":
        path = path.parent
    manager = CheckpointManager(path / "checkpoints")
    whole = manager.checkpoints()
    if not whole:
        records = sorted((path / "checkpoints").glob("ckpt-*.json"))
        if records:  # there are checkpoints, but none this version can read whole: say why
            from stylemri.training.checkpoint import read_meta

            read_meta(records[-1])  # raises for a foreign or older format
            raise UserError(f"{records[-1]}: checkpoint incomplete (its tensor file is missing or truncated)")
        raise UserError(f"{path}: expected a training run with at least one checkpoint in checkpoints/; found none")
    if which == "latest":
        found = manager.latest()
    elif which == "best":
        found = manager.best()
        if found is None:
            raise UserError(f"--checkpoint best: {path} has no best checkpoint (no metric was tracked); "
                            f"use latest or a kimg")
    else:
        try:
            kimg = float(which)
        except ValueError:
            raise UserError(f"--checkpoint {which}: expected latest, best, or a kimg number") from None
        matches = [p for p in whole if math.isclose(checkpoint_kimg(p), kimg, rel_tol=0, abs_tol=5e-4)]
        if not matches:
            have = ", ".join(f"{checkpoint_kimg(p):g}" for p in whole)
            raise UserError(f"--checkpoint {which}: no checkpoint at {kimg:g} kimg in {path}; available: {have}")
        found = matches[-1]
    assert found is not None
    return found


def open_model(run: str | os.PathLike, which: str = "latest", device: str = "cpu") -> UsableModel:
    """Load the EMA generator of `run` at checkpoint `which` (see `resolve_checkpoint`)."""
    dev = pick_device(device)
    json_path = resolve_checkpoint(run, which)
    try:
        loaded = stylemri.load(json_path, device=dev)
    except (RuntimeError, KeyError) as exc:  # state dict does not fit the network the config describes
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{json_path}: the weights do not fit the network its config describes "
                        f"(checkpoint from an incompatible stylemri version?): {first[:200]}") from None
    G = loaded.G
    stage = getattr(loaded, "stage", None)
    alpha = float(getattr(loaded, "alpha", 1.0))
    if stage is not None:
        G = StagedGenerator(G, stage, alpha)
    names = list(loaded.class_names)
    kimg = float(getattr(loaded, "kimg", checkpoint_kimg(json_path)))
    return UsableModel(G=G, config=loaded.config, class_names=names,
                       checkpoint=Path(getattr(loaded, "checkpoint", json_path)), kimg=kimg, device=dev, stage=stage,
                       alpha=alpha)


def pick_device(device: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is a user error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA device is available here; use cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"--device {device}: expected auto, cpu or cuda")
    return torch.device(device)


__all__ = ["StagedGenerator", "StagedDiscriminator", "UsableModel", "resolve_checkpoint", "open_model", "pick_device",
           "checkpoint_kimg"]
