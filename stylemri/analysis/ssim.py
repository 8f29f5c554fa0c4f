"""Multi-scale SSIM (Wang, Simoncelli & Bovik 2003) in plain torch, differentiable, for any size >= 4 px.

Used as the structural term of projection: no perceptual network has to be downloaded. Windows shrink
with the image (11 px Gaussian, sigma 1.5, at full size; never larger than the image), and the number of
scales is as many as keep the coarsest scale at 4 px or more, up to the standard 5 with the standard
weights renormalised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gaussian_1d(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _ssim_parts(x: torch.Tensor, y: torch.Tensor, data_range: float, window: int,
                sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean SSIM and contrast-structure term, (N,) each, with a valid-mode Gaussian window
    (separable, all five local moments filtered in one grouped convolution per axis)."""
    c = x.shape[1]
    size = min(window, x.shape[-1], x.shape[-2])
    size = max(size if size % 2 else size - 1, 1)
    g = _gaussian_1d(size, sigma * size / window, x.device, x.dtype)
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (N, 5C, H, W)
    stack = F.conv2d(stack, g.view(1, 1, size, 1).expand(5 * c, 1, size, 1), groups=5 * c)
    stack = F.conv2d(stack, g.view(1, 1, 1, size).expand(5 * c, 1, 1, size), groups=5 * c)
    mu_x, mu_y, exx, eyy, exy = stack.split(c, dim=1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    sxx, syy, sxy = exx - mu_x**2, eyy - mu_y**2, exy - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (lum * cs).flatten(1).mean(1), cs.flatten(1).mean(1)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0, window: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Single-scale SSIM per image (N,); images (N, C, H, W), `data_range` 2 for [-1, 1] data."""
    return _ssim_parts(x, y, data_range, window, sigma)[0]


def num_scales(size: int, max_scales: int = 5, min_size: int = 4) -> int:
    """How many dyadic scales keep the coarsest one at `min_size` px or more."""
    n = 1
    while n < max_scales and size // 2**n >= min_size:
        n += 1
    return n


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0, window: int = 11, sigma: float = 1.5,
            max_scales: int = 5) -> torch.Tensor:
    """Multi-scale SSIM per image (N,), in (0, 1] (1 = identical); images (N, C, H, W)."""
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ms_ssim: expected two (N, C, H, W) tensors of one shape, got {tuple(x.shape)}, "
                         f"{tuple(y.shape)}")
    levels = num_scales(min(x.shape[-2:]), max_scales)
    weights = torch.tensor(MS_WEIGHTS[:levels], device=x.device, dtype=x.dtype)
    weights = weights / weights.sum()
    terms = []
    for level in range(levels):
        s, cs = _ssim_parts(x, y, data_range, window, sigma)
        terms.append(s if level == levels - 1 else cs)
        if level < levels - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stacked = torch.stack(terms, dim=1).clamp_min(1e-6)  # negative cs would make the power undefined
    return torch.prod(stacked ** weights, dim=1)


__all__ = ["ssim", "ms_ssim", "num_scales", "MS_WEIGHTS"]
