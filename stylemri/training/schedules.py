"""Hyper-parameters that move during training (R3GAN, Huang et al. 2024): cosine decay of the learning
rates and of the gradient-penalty weight, a ramp of Adam's beta2, a ramp of a fixed augmentation probability.

Every value is a pure function of the images shown so far (`nimg`) and the config, so a resumed run
continues the same curves without saving anything. All curves are half-cosines over `schedule_kimg`
(default: the run's `kimg`) from the start value to the final one, then flat. With the defaults
(`lr_final = gamma_final = 1`, no `beta2_start`, no `aug_p_final`) nothing moves and the values are
exactly the constant ones of StyleGAN2-ADA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stylemri.config import TrainConfig


@dataclass(frozen=True)
class Scheduled:
    """The moving values at one point of training."""

    lr_mult: float  # multiplies --g-lr and --d-lr
    r1_gamma: float  # weight of R1 (and of R2 for r3gan)
    beta2: float  # Adam beta2 (before the lazy-regularization correction)
    aug_p: float | None  # fixed augmentation probability, or None when not scheduled


def cosine(start: float, end: float, progress: float) -> float:
    """start at progress 0, end at progress >= 1, a half-cosine between (R3GAN's schedule shape)."""
    t = min(max(progress, 0.0), 1.0)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * t))


def is_scheduled(cfg: TrainConfig) -> bool:
    """True when any value moves (the loop then updates the optimizers every step)."""
    return cfg.lr_final != 1.0 or cfg.gamma_final != 1.0 or cfg.beta2_start is not None \
        or cfg.aug_p_final is not None


def horizon_nimg(cfg: TrainConfig) -> int:
    return max(int(round((cfg.schedule_kimg if cfg.schedule_kimg is not None else cfg.kimg) * 1000)), 1)


def scheduled(cfg: TrainConfig, nimg: int) -> Scheduled:
    """The values after `nimg` images: cosine from the start value to the final one over the horizon."""
    progress = nimg / horizon_nimg(cfg)
    beta2 = cfg.betas[1] if cfg.beta2_start is None else cosine(cfg.beta2_start, cfg.betas[1], progress)
    aug_p = None if cfg.aug_p_final is None else cosine(cfg.aug_p, cfg.aug_p_final, progress)
    return Scheduled(lr_mult=cosine(1.0, cfg.lr_final, progress),
                     r1_gamma=cfg.r1_gamma * cosine(1.0, cfg.gamma_final, progress), beta2=beta2, aug_p=aug_p)
