"""A trained model, opened once for every tool: `stylemri.load(run) -> TrainedModel`.

    model = stylemri.load("runs/00003-stylegan2-mni152-64", checkpoint="latest", device="auto")
    images = model.generate([0, 1, 2], class_name="AD", trunc=0.7)   # (3, 1, 64, 64) float32 in [-1, 1]
    older = model.generate(range(8), covariates={"age": 80, "sex": "F"})  # a --condition run

Which checkpoint (latest | best | KIMG), the EMA generator at the stage the run reached (a progressive
run stopped early generates at the size it reached), the discriminator when a tool wants its features,
and `tag` (e.g. `kimg-40`), the folder every output of this checkpoint goes to, so outputs of different
checkpoints never mix. Weights are read through `stylemri.training.checkpoint` only (safetensors + JSON,
never pickle), so every load gets the same checks.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn

from stylemri.config import CovariateScaling, RunConfig, from_dict
from stylemri.data.covariates import encode_settings
from stylemri.device import resolve_device
from stylemri.errors import UserError
from stylemri.networks import build_discriminator, build_generator
from stylemri.networks.sampling import check_noise, generate_images
from stylemri.networks.staged import StagedDiscriminator, at_stage
from stylemri.training import checkpoint as ckpt
from stylemri.training.run_dir import RunLayout, find_checkpoint, run_dir_of


@dataclass(eq=False)
class TrainedModel:
    """One checkpoint of a run: G (EMA, eval, no grad; staged for progressive runs), its config and classes."""

    G: nn.Module
    config: RunConfig
    class_names: tuple[str, ...]
    checkpoint: Path  # the checkpoint's JSON record
    kimg: float
    device: torch.device
    stage: int | None = None  # progressive runs stopped before full size: the stage they reached
    alpha: float = 1.0
    _D: nn.Module | None = field(default=None, repr=False)

    @property
    def resolution(self) -> int:
        """Pixels of the generated images (a progressive run stopped early gives fewer than configured)."""
        return int(self.G.resolution)

    @property
    def tag(self) -> str:
        """The output sub-folder of this checkpoint, e.g. 'kimg-4.5': every command writes under it."""
        return f"kimg-{self.kimg:g}"

    @property
    def conditional(self) -> bool:
        return self.G.c_dim > 0

    @property
    def run_dir(self) -> Path:
        return run_dir_of(self.checkpoint)

    @property
    def layout(self) -> RunLayout:
        """Where each file of the run folder lives (the one place that knows: training/run_dir.py)."""
        return RunLayout(self.run_dir)

    @property
    def run_name(self) -> str:
        return self.run_dir.name

    def class_index(self, name: str | int | None) -> int | None:
        """A class by name (exact, else the one case-insensitive match) or index -> its index; None stays None."""
        if name is None:
            return None
        if not self.conditional:
            raise UserError(f"--class {name}: this model is unconditional (trained on one class); drop --class")
        names = list(self.class_names)
        if isinstance(name, int) and not isinstance(name, bool):
            if not 0 <= name < len(names):
                raise UserError(f"--class {name}: expected a class index below {len(names)}")
            return int(name)
        if str(name) in names:
            return names.index(str(name))
        lowered = [n.lower() for n in names]
        if lowered.count(str(name).lower()) == 1:
            return lowered.index(str(name).lower())
        raise UserError(f"--class {name}: the model has no such class; expected one of {', '.join(names) or '(none)'}")

    @property
    def covariates(self) -> CovariateScaling | None:
        """A --condition run's covariates and their scaling (None for a class-only or unconditional model)."""
        scaling = getattr(self.config, "covariates", None)  # a model built by hand may have no config
        return scaling if scaling is not None and scaling.columns else None

    def covariate_vectors(self, n: int, covariates: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
                          flag: str = "covariates") -> torch.Tensor | None:
        """The encoded covariate vector of each of `n` images: one setting for all, or one per image; every
        value checked (a covariate the model lacks, a value outside its training range: one UserError)."""
        scaling = self.covariates
        if scaling is None:
            if covariates:
                raise UserError(f"{flag}: this model was trained without covariates (no --condition); drop them")
            return None
        if covariates is None:
            example = ",".join(f"{c.name}={c.categories[0] if c.categories else f'{(c.low + c.high) / 2:g}'}"
                               for c in scaling.columns)
            raise UserError(f"{flag}: this model is conditioned on {', '.join(scaling.names)}; expected a value for "
                            f"each, e.g. {example}")
        settings = [covariates] * n if isinstance(covariates, Mapping) else list(covariates)
        if len(settings) != n:
            raise UserError(f"{flag}: expected one setting or {n} (one per seed), got {len(settings)}")
        return torch.from_numpy(encode_settings(scaling, settings, flag))

    def generate(self, seeds: Iterable[int], *, class_name: str | int | Sequence[str | int] | None = None,
                 trunc: float = 1.0, noise: str = "const", batch: int = 1,
                 covariates: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None) -> torch.Tensor:
        """One image per seed, (N, C, R, R) float32 in [-1, 1] (not clipped) on the CPU.

        Seed s names the same image whatever else is generated with it. `class_name`: one class for all
        seeds, or one per seed; None on a conditional model gives seed s the class s mod num_classes.
        `noise`: const (stored maps, reproducible), random (drawn from each seed) or none. `batch`: images
        per forward pass; 1 (default) keeps every image bit-identical whatever else is generated, larger is
        faster but may change the last bit (batched kernels sum in another order). `covariates` (a
        --condition run): one {name: value} setting for every seed, or one per seed, e.g. {"age": 80}."""
        if isinstance(seeds, (int, str)):
            raise TypeError(f"seeds {seeds!r}: expected a sequence of seeds, e.g. [3] or range(16)")
        seeds = [int(s) for s in seeds]
        check_noise(noise)
        if not math.isfinite(trunc):
            raise UserError(f"trunc {trunc}: expected a finite truncation psi (1 = none)")
        vectors = self.covariate_vectors(len(seeds), covariates)
        return generate_images(self.G, seeds, self.classes_for(seeds, class_name), psi=trunc, noise=noise,
                               batch=batch, covariates=vectors)

    def classes_for(self, seeds: Sequence[int], class_name: str | int | Sequence[str | int] | None
                    ) -> list[int | None]:
        """The class index of each seed (None for an unconditional model)."""
        if not self.conditional:
            if class_name is not None:
                raise UserError(f"class {class_name}: this model is unconditional; it was trained without classes")
            return [None] * len(seeds)
        if class_name is None:
            return [s % self.G.c_dim for s in seeds]
        if isinstance(class_name, (str, int)):
            return [self.class_index(class_name)] * len(seeds)
        names = list(class_name)
        if len(names) != len(seeds):
            raise UserError(f"class_name: expected one class or {len(seeds)} (one per seed), got {len(names)}")
        return [self.class_index(n) for n in names]

    def discriminator(self) -> nn.Module:
        """The run's discriminator from the same checkpoint (eval, no grad, same stage); loaded on first use."""
        if self._D is None:
            tensors, _ = ckpt.read_checkpoint(self.checkpoint, prefixes=("D",))
            state = ckpt.unpack_module("D", tensors)
            if not state:
                raise UserError(f"{self.checkpoint}: this checkpoint holds no discriminator weights (D)")
            D = _fit(build_discriminator(self.config.network), state, self.checkpoint)
            D = D.to(self.device).eval().requires_grad_(False)
            self._D = D if self.stage is None else StagedDiscriminator(D, self.stage, self.alpha)
        return self._D


def load(run_or_checkpoint: str | os.PathLike, checkpoint: str = "latest", device: str | torch.device = "auto"
         ) -> TrainedModel:
    """Open a run folder (its `checkpoint`: latest, best or a kimg), its checkpoints/ folder, or one
    checkpoint's .json/.safetensors, on `device` (auto: CUDA when available)."""
    dev = resolve_device(device)
    json_path = find_checkpoint(run_or_checkpoint, checkpoint)
    tensors, meta = ckpt.read_checkpoint(json_path, prefixes=("G_ema",))
    try:
        cfg = from_dict(RunConfig, meta["config"])
    except (KeyError, ValueError, TypeError) as exc:
        raise UserError(f"{json_path}: expected a training checkpoint with its run configuration ({exc})") from None
    state = ckpt.unpack_module("G_ema", tensors)
    if not state:
        raise UserError(f"{json_path}: expected generator weights (G_ema) in the checkpoint; found none")
    G = _fit(build_generator(cfg.network), state, json_path).to(dev).eval().requires_grad_(False)
    phase = meta.get("phase") or {}
    stage = phase.get("stage") if cfg.train.progressive else None
    alpha = float(phase.get("alpha", 1.0)) if stage is not None else 1.0
    if stage is not None and stage == int(math.log2(cfg.network.resolution)) - 2 and alpha == 1.0:
        stage = None  # fully grown: the plain generator
    kimg = int(meta.get("nimg", 0)) / 1000
    return TrainedModel(G=at_stage(G, stage, alpha), config=cfg, class_names=tuple(cfg.class_names),
                        checkpoint=json_path, kimg=kimg, device=dev, stage=stage, alpha=alpha)


def _fit(module: nn.Module, state: dict[str, torch.Tensor], source: Path) -> nn.Module:
    """Load a state dict, turning a mismatch (an incompatible stylemri version) into one clear line."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{source}: the weights do not fit the network its config describes "
                        f"(checkpoint from an incompatible stylemri version?): {first[:200]}") from None
    return module


__all__ = ["TrainedModel", "load"]
