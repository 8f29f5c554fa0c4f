"""Differentiable augmentation of whole volumes (ADA for `--dims 3`), the 3-D twin of `augment.py`.

Each operation is applied to each volume independently with probability p: left-right flip, integer
translation on the three axes, isotropic scaling, small rotations about the three axes (one trilinear
resampling for all geometric ops, black outside the volume), brightness and contrast. Volumes are
(N, C, D, H, W) with W = left-right, so the flip mirrors the last axis, as the slice x-flip does.
Every parameter is drawn for every volume whatever p is, from the step's `BatchRandom`, so a run is
reproducible, resumable and identical across process counts; gradients reach G through augmented fakes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from stylemri.training.rng import BatchRandom

OPS_3D = ("xflip", "translate", "scale", "rotate", "brightness", "contrast")
DIFFAUGMENT_OPS_3D = ("brightness", "contrast", "translate")
GEOMETRIC_3D = ("xflip", "translate", "scale", "rotate")


class AugmentPipe3d(torch.nn.Module):
    """Random, differentiable, per-volume augmentation; `p` is given per call (the ADA controller owns it)."""

    def __init__(self, ops: tuple[str, ...] = OPS_3D, *, translate_max: float = 0.125, scale_std: float = 0.2,
                 rotate_max_deg: float = 10.0, brightness_std: float = 0.2, contrast_std: float = 0.5) -> None:
        super().__init__()
        unknown = set(ops) - set(OPS_3D)
        if unknown:
            raise ValueError(f"unknown 3-D augmentation(s) {sorted(unknown)}; expected some of {OPS_3D}")
        self.ops = tuple(ops)
        self.translate_max, self.scale_std = translate_max, scale_std
        self.rotate_max = math.radians(rotate_max_deg)
        self.brightness_std, self.contrast_std = brightness_std, contrast_std

    def forward(self, images: torch.Tensor, p: float, rand: BatchRandom | None = None) -> torch.Tensor:
        """Augment (N, C, D, H, W) volumes in [-1, 1]."""
        if p <= 0 or not self.ops:
            return images
        if images.ndim != 5:
            raise ValueError(f"AugmentPipe3d: expected (N, C, D, H, W) volumes, got shape {tuple(images.shape)}")
        n = images.shape[0]
        if rand is None:
            rand = BatchRandom(int(torch.randint(0, 2**62, ())), n, device=images.device)
        dt = images.dtype

        def gate(x: torch.Tensor, identity: float) -> torch.Tensor:
            keep = rand.rand(*([1] * (x.ndim - 1))) < p
            return torch.where(keep, x, torch.full_like(x, identity))

        x = images
        if any(op in self.ops for op in GEOMETRIC_3D):
            theta = self._geometry(gate, rand, n, images.shape[2:], images.device)
            grid = F.affine_grid(theta[:, :3, :].to(dt), list(x.shape), align_corners=False)
            x = F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1
        if "brightness" in self.ops:
            x = x + gate(rand.randn(1, 1, 1, 1) * self.brightness_std, 0.0).to(dt)
        if "contrast" in self.ops:
            x = x * gate(torch.exp2(rand.randn(1, 1, 1, 1) * self.contrast_std), 1.0).to(dt)
        return x

    def _geometry(self, gate, rand: BatchRandom, n: int, size: torch.Size, device: torch.device) -> torch.Tensor:
        """(N, 4, 4) matrices from output to input coordinates (x = W, y = H, z = D, normalised to [-1, 1])."""
        theta = torch.eye(4, device=device).repeat(n, 1, 1)
        if "xflip" in self.ops:
            flip = gate(1.0 - 2.0 * torch.floor(rand.rand(1) * 2), 1.0)
            theta = theta @ _scale(torch.cat([flip, torch.ones_like(flip), torch.ones_like(flip)], 1))
        if "translate" in self.ops:  # whole voxels: grid_sample at integer offsets reproduces voxels
            whd = torch.tensor([size[2], size[1], size[0]], device=device, dtype=torch.float32)
            t = gate((rand.rand(3) * 2 - 1) * self.translate_max, 0.0)
            theta = theta @ _translate(torch.round(t * whd) * 2 / whd)
        if "scale" in self.ops:
            s = gate(torch.exp2(rand.randn(1) * self.scale_std), 1.0)
            theta = theta @ _scale((1 / s).repeat(1, 3))
        if "rotate" in self.ops:
            angles = gate((rand.rand(3) * 2 - 1) * self.rotate_max, 0.0)
            for axis in range(3):
                theta = theta @ _rotate(angles[:, axis], axis)
        return theta


def _scale(s: torch.Tensor) -> torch.Tensor:
    m = torch.eye(4, device=s.device).repeat(s.shape[0], 1, 1)
    m[:, 0, 0], m[:, 1, 1], m[:, 2, 2] = s[:, 0], s[:, 1], s[:, 2]
    return m


def _translate(t: torch.Tensor) -> torch.Tensor:
    m = torch.eye(4, device=t.device).repeat(t.shape[0], 1, 1)
    m[:, :3, 3] = t
    return m


def _rotate(a: torch.Tensor, axis: int) -> torch.Tensor:
    """Rotation by `a` about coordinate axis 0 (x), 1 (y) or 2 (z)."""
    i, j = [k for k in range(3) if k != axis]
    m = torch.eye(4, device=a.device).repeat(a.shape[0], 1, 1)
    c, s = torch.cos(a), torch.sin(a)
    m[:, i, i], m[:, i, j], m[:, j, i], m[:, j, j] = c, -s, s, c
    return m


def build_augment3d(mode: str) -> AugmentPipe3d | None:
    """The 3-D pipeline for `--aug`: ADA's ops (ada, fixed), a DiffAugment-style subset, or none."""
    if mode in ("ada", "fixed"):
        return AugmentPipe3d(OPS_3D)
    if mode == "diffaugment":
        return AugmentPipe3d(DIFFAUGMENT_OPS_3D, brightness_std=0.3)
    return None


__all__ = ["AugmentPipe3d", "DIFFAUGMENT_OPS_3D", "OPS_3D", "build_augment3d"]
