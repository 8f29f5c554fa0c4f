"""Differentiable augmentation of everything D sees (ADA, Karras et al. 2020), for grayscale MRI slices.

Each operation is applied to each image independently with probability p: x-flip, integer translation,
isotropic scaling, small rotation (one bilinear resampling for all geometric ops, black outside the
image), brightness, contrast and cutout. No colour operations: MRI is one channel. All of it is
differentiable, so gradients reach G through augmented fakes and R1 sees augmented reals.

`AdaController` moves p toward the overfitting heuristic r_t = E[sign(D(real))] = target (0.6): every
`interval` steps, p += sign(r_t - target) * batch * interval / (ada_kimg * 1000), clamped to [0, 1].
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

from stylemri.training.rng import BatchRandom

ADA_OPS = ("xflip", "translate", "scale", "rotate", "brightness", "contrast", "cutout")
DIFFAUGMENT_OPS = ("brightness", "contrast", "translate", "cutout")
GEOMETRIC = ("xflip", "translate", "scale", "rotate")


class AugmentPipe(torch.nn.Module):
    """Random, differentiable, per-image augmentation; `p` is given per call (the controller owns it)."""

    def __init__(self, ops: tuple[str, ...] = ADA_OPS, *, translate_max: float = 0.125, scale_std: float = 0.2,
                 rotate_max_deg: float = 10.0, brightness_std: float = 0.2, contrast_std: float = 0.5,
                 cutout_size: float = 0.5) -> None:
        super().__init__()
        unknown = set(ops) - set(ADA_OPS)
        if unknown:
            raise ValueError(f"unknown augmentation(s) {sorted(unknown)}; expected some of {ADA_OPS}")
        self.ops = tuple(ops)
        self.translate_max = translate_max
        self.scale_std = scale_std
        self.rotate_max = math.radians(rotate_max_deg)
        self.brightness_std = brightness_std
        self.contrast_std = contrast_std
        self.cutout_size = cutout_size

    def forward(self, images: torch.Tensor, p: float, rand: BatchRandom | None = None) -> torch.Tensor:
        """Augment (N, C, H, W) images in [-1, 1]; parameters are drawn for every image whatever p is."""
        if p <= 0 or not self.ops:
            return images
        n, _, h, w = images.shape
        if rand is None:
            rand = BatchRandom(int(torch.randint(0, 2**62, ())), n, device=images.device)
        dev, dt = images.device, images.dtype

        def gate(x: torch.Tensor, identity: float) -> torch.Tensor:
            keep = rand.rand(*([1] * (x.ndim - 1))) < p
            return torch.where(keep, x, torch.full_like(x, identity))

        x = images
        if any(op in self.ops for op in GEOMETRIC):
            theta = torch.eye(3, device=dev, dtype=torch.float32).repeat(n, 1, 1)
            if "xflip" in self.ops:
                flip = gate(1.0 - 2.0 * torch.floor(rand.rand(1) * 2), 1.0)
                theta = theta @ _diag(flip, torch.ones_like(flip))
            if "translate" in self.ops:  # whole pixels: grid_sample at integer offsets reproduces pixels
                t = gate((rand.rand(2) * 2 - 1) * self.translate_max, 0.0)
                t = torch.round(t * torch.tensor([w, h], device=dev)) * 2 / torch.tensor([w, h], device=dev)
                theta = theta @ _translate(t)
            if "scale" in self.ops:
                s = gate(torch.exp2(rand.randn(1) * self.scale_std), 1.0)
                theta = theta @ _diag(1 / s, 1 / s)
            if "rotate" in self.ops:
                r = gate((rand.rand(1) * 2 - 1) * self.rotate_max, 0.0)
                theta = theta @ _rotate(r[:, 0])
            grid = F.affine_grid(theta[:, :2, :].to(dt), list(x.shape), align_corners=False)
            x = F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1
        if "brightness" in self.ops:
            x = x + gate(rand.randn(1, 1, 1) * self.brightness_std, 0.0).to(dt)
        if "contrast" in self.ops:
            x = x * gate(torch.exp2(rand.randn(1, 1, 1) * self.contrast_std), 1.0).to(dt)
        if "cutout" in self.ops:
            centre = rand.rand(2)
            active = gate(torch.ones(n, 1, device=dev), 0.0)
            ys = (torch.arange(h, device=dev, dtype=torch.float32) + 0.5) / h
            xs = (torch.arange(w, device=dev, dtype=torch.float32) + 0.5) / w
            inside_y = (ys[None, :] - centre[:, 1:2]).abs() < self.cutout_size / 2
            inside_x = (xs[None, :] - centre[:, 0:1]).abs() < self.cutout_size / 2
            box = inside_y[:, :, None] & inside_x[:, None, :] & (active[:, :, None] > 0)
            x = x * (~box)[:, None].to(dt)
        return x


def _diag(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    m = torch.eye(3, device=sx.device).repeat(sx.shape[0], 1, 1)
    m[:, 0, 0] = sx.reshape(-1)
    m[:, 1, 1] = sy.reshape(-1)
    return m


def _translate(t: torch.Tensor) -> torch.Tensor:
    m = torch.eye(3, device=t.device).repeat(t.shape[0], 1, 1)
    m[:, 0, 2] = t[:, 0]
    m[:, 1, 2] = t[:, 1]
    return m


def _rotate(a: torch.Tensor) -> torch.Tensor:
    m = torch.eye(3, device=a.device).repeat(a.shape[0], 1, 1)
    c, s = torch.cos(a), torch.sin(a)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


class AdaController:
    """Adaptive discriminator augmentation: keeps E[sign(D(real))] near `target` by moving p."""

    def __init__(self, *, p: float = 0.0, target: float = 0.6, interval: int = 4, ada_kimg: float = 500.0,
                 adaptive: bool = True) -> None:
        self.p = float(p)
        self.target = target
        self.interval = interval
        self.ada_kimg = ada_kimg
        self.adaptive = adaptive
        self.rt: float | None = None  # last measured r_t (for logs)
        self._sum: torch.Tensor | None = None  # running sum of sign(D(real)) and count, kept on device
        self._count: torch.Tensor | None = None
        self._steps = 0

    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Record sign(D(real)) of one batch; no device synchronisation."""
        signs = real_logits.detach().float().sign()
        s, c = signs.sum(), torch.tensor(float(signs.numel()), device=signs.device)
        self._sum = s if self._sum is None else self._sum + s
        self._count = c if self._count is None else self._count + c

    def step(self, batch: int, all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> bool:
        """Count one training step; every `interval` steps update p. Returns True when p was updated."""
        self._steps += 1
        if self._steps < self.interval:
            return False
        self._steps = 0
        if self._sum is None or self._count is None:
            return False
        stats = torch.stack([self._sum, self._count])
        if all_reduce is not None:
            stats = all_reduce(stats)
        total, count = (float(v) for v in stats.cpu())
        self._sum = self._count = None
        if count == 0:
            return False
        self.rt = total / count
        if self.adaptive:
            adjust = math.copysign(1.0, self.rt - self.target) if self.rt != self.target else 0.0
            self.p = min(max(self.p + adjust * batch * self.interval / (self.ada_kimg * 1000), 0.0), 1.0)
        return True

    def state_dict(self) -> dict[str, Any]:
        pending = None
        if self._sum is not None and self._count is not None:
            pending = [float(self._sum), float(self._count)]
        return {"p": self.p, "rt": self.rt, "steps": self._steps, "pending": pending}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        self.p = float(state["p"])
        self.rt = state.get("rt")
        self._steps = int(state.get("steps", 0))
        pending = state.get("pending")
        if pending:
            self._sum = torch.tensor(pending[0], device=device)
            self._count = torch.tensor(pending[1], device=device)
        else:
            self._sum = self._count = None


def build_augment(mode: str) -> AugmentPipe | None:
    """The pipeline for `--aug`: ADA's MRI ops, a DiffAugment-style policy, or none."""
    if mode in ("ada", "fixed"):
        return AugmentPipe(ADA_OPS)
    if mode == "diffaugment":
        return AugmentPipe(DIFFAUGMENT_OPS, brightness_std=0.3, contrast_std=0.5)
    return None
