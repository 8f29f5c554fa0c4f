"""Progressive-growing schedule: which resolution, fade-in alpha and batch size apply after n images.

StyleGAN (2019) / ProGAN: the first resolution trains for `stable_kimg`; every later one fades in over
`fade_kimg` (alpha 0 -> 1, the new block blended with the upsampled previous output), then stabilizes for
`stable_kimg`. The final resolution stays until the run ends. Without progressive growing there is one
phase at full resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stylemri.config import TrainConfig


@dataclass(frozen=True)
class Phase:
    resolution: int  # pixels of the images D sees in this phase
    stage: int | None  # doublings from 4x4 (networks' `stage`); None without progressive growing
    alpha: float  # fade-in of the newest block, 1.0 when stable
    batch: int  # global batch size in this phase
    fading: bool

    @property
    def label(self) -> str:
        if self.stage is None:
            return f"{self.resolution}px"
        return f"{self.resolution}px fade {self.alpha:.2f}" if self.fading else f"{self.resolution}px stable"


def fade_reals(real: torch.Tensor, phase: Phase) -> torch.Tensor:
    """During a fade-in D sees reals blended the way G's output is: lerp(nearest-up(avg-pool(x)), x, alpha),
    as TF StyleGAN's `process_reals`; otherwise D could tell reals from fakes by their missing blur."""
    if not phase.fading or phase.alpha >= 1.0:
        return real
    low = F.interpolate(F.avg_pool2d(real, 2), scale_factor=2, mode="nearest")
    return torch.lerp(low, real, phase.alpha)


def resets_optimizer(previous: Phase | None, current: Phase) -> bool:
    """TF StyleGAN resets Adam whenever the level of detail crosses an integer: at the start of a fade-in
    (a new resolution) and at its end (the new block alone)."""
    if previous is None:
        return False
    return previous.resolution != current.resolution or (previous.fading and not current.fading)


class Schedule:
    """Maps images shown (nimg) to the training phase; pure function of the config, so resume is exact."""

    def __init__(self, train: TrainConfig, final_resolution: int) -> None:
        self.progressive = train.progressive
        self.final_resolution = final_resolution
        self.fade_nimg = int(round(train.fade_kimg * 1000))
        self.stable_nimg = int(round(train.stable_kimg * 1000))
        per_res = dict(train.batch_per_res)
        start = train.start_res if train.progressive else final_resolution
        self.resolutions = [start * 2**k for k in range(int(math.log2(final_resolution // start)) + 1)]
        self.batches = {r: per_res.get(r, train.batch) for r in self.resolutions}
        if not self.progressive:
            self.batches = {final_resolution: train.batch}

    def start_nimg(self, resolution: int) -> int:
        """Images shown when `resolution` first appears (its fade-in starts)."""
        k = self.resolutions.index(resolution)
        return 0 if k == 0 else self.stable_nimg + (k - 1) * (self.fade_nimg + self.stable_nimg)

    def end_nimg(self, resolution: int) -> int | None:
        """Images shown when the next resolution starts; None for the final one (it never ends)."""
        k = self.resolutions.index(resolution)
        return None if k + 1 == len(self.resolutions) else self.start_nimg(self.resolutions[k + 1])

    def at(self, nimg: int) -> Phase:
        if not self.progressive:
            return Phase(self.final_resolution, None, 1.0, self.batches[self.final_resolution], False)
        resolution = self.resolutions[0]
        for r in self.resolutions[1:]:
            if nimg >= self.start_nimg(r):
                resolution = r
        k = self.resolutions.index(resolution)
        into = nimg - self.start_nimg(resolution)
        fading = k > 0 and into < self.fade_nimg
        alpha = min(max(into / self.fade_nimg, 0.0), 1.0) if fading and self.fade_nimg > 0 else 1.0
        stage = int(math.log2(resolution)) - 2
        return Phase(resolution, stage, alpha, self.batches[resolution], fading)

    def switches_kimg(self) -> list[tuple[float, int]]:
        """(kimg, resolution) where each resolution after the first starts: the lines on the loss plots."""
        return [(self.start_nimg(r) / 1000, r) for r in self.resolutions[1:]] if self.progressive else []

    def full_resolution_kimg(self) -> float:
        """kimg at which the final resolution is fully faded in."""
        if not self.progressive or len(self.resolutions) == 1:
            return 0.0
        return (self.start_nimg(self.final_resolution) + self.fade_nimg) / 1000
