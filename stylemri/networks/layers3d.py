"""3-D FIR resampling for whole volumes: the volume counterparts of `upfirdn2d` and `conv2d_resample`.

The StyleGAN2 low-pass filter is separable, so the 3-D filter is the outer product of the same 1-D taps
on the three axes; `upfirdn3d` applies it as three depthwise 1-D passes (k + k + k multiplications per
voxel instead of k^3). `conv3d_resample` fuses a 'same' convolution with 2x up/down the cheap way
(transposed / strided conv) and equals `conv3d_resample_reference`, the plain composition (tests).
Tensors are (N, C, D, H, W). The layers built on them take `dims` (`layers.EqualConv`, the StyleGAN2
synthesis layers), so one class serves slices and volumes; this module imports nothing of the package.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def setup_filter1d(taps: Sequence[float]) -> torch.Tensor:
    """1-D taps normalised to unit DC gain; applied on each axis, the 3-D filter has unit DC gain too."""
    f = torch.as_tensor(list(taps), dtype=torch.float32)
    if f.ndim != 1 or f.numel() == 0:
        raise ValueError(f"filter taps {taps!r}: expected a non-empty 1-D sequence")
    return f / f.sum()


def upfirdn3d(x: torch.Tensor, f: torch.Tensor | None, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0),
              gain: float = 1.0) -> torch.Tensor:
    """Upsample (zero insertion), pad (negative = crop) by (p0, p1) on every axis, FIR-filter, decimate.

    `f` holds the 1-D taps of a separable filter; `gain` scales the result (up**3 after zero insertion
    keeps a constant volume constant).
    """
    if x.ndim != 5:
        raise ValueError(f"upfirdn3d: expected a (N, C, D, H, W) tensor, got shape {tuple(x.shape)}")
    n, c, d, h, w = x.shape
    p0, p1 = pad
    if up > 1:
        x = x.reshape(n, c, d, 1, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, d * up, h * up, w * up)
    x = F.pad(x, [max(p0, 0), max(p1, 0)] * 3)
    c0, c1 = max(-p0, 0), max(-p1, 0)
    if c0 or c1:
        x = x[:, :, c0: x.shape[2] - c1, c0: x.shape[3] - c1, c0: x.shape[4] - c1]
    if f is None:
        x = x[:, :, ::down, ::down, ::down] if down > 1 else x
        return x * gain if gain != 1 else x
    k = f.flip(0).to(dtype=x.dtype, device=x.device)  # conv is a correlation: flip for a true convolution
    channels = x.shape[1]
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = k.numel()
        stride = [1, 1, 1]
        stride[axis] = down
        x = F.conv3d(x, k.reshape(shape).expand(channels, *shape[1:]), stride=stride, groups=channels)
    return x * gain if gain != 1 else x


def _pads(f: torch.Tensor | None, up: int = 1, down: int = 1) -> tuple[int, int]:
    fw = 1 if f is None else f.numel()
    if up > 1:
        return (fw + up - 1) // 2, (fw - up) // 2
    if down > 1:
        return (fw - down + 1) // 2, (fw - down) // 2
    return fw // 2, (fw - 1) // 2


def upsample3d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """FIR upsampling to exactly `up` times the size (the skip generator's image path)."""
    return upfirdn3d(x, f, up=up, pad=_pads(f, up=up), gain=up**3)


def downsample3d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    """FIR downsampling to exactly 1/`down` of the size."""
    return upfirdn3d(x, f, down=down, pad=_pads(f, down=down))


def conv3d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1, down: int = 1,
                    groups: int = 1) -> torch.Tensor:
    """'Same' convolution (odd cubic kernel) fused with FIR up- or downsampling, the fast way."""
    if up > 1 and down > 1:
        raise ValueError("conv3d_resample: up and down together are not supported")
    out_ch, in_per_group, k = w.shape[0], w.shape[1], w.shape[-1]
    if w.shape[2:] != (k, k, k) or k % 2 != 1:
        raise ValueError(f"conv3d_resample: expected an odd cubic kernel, got {tuple(w.shape[2:])}")
    w = w.to(x.dtype)
    if up == 1 and down == 1:
        return F.conv3d(x, w, padding=k // 2, groups=groups)
    f0, f1 = _pads(f, up=up, down=down)
    p0, p1 = k // 2 + f0, k // 2 + f1
    if down > 1:
        if k == 1:  # filter + decimate first: the 1x1x1 conv then runs at the low resolution
            return F.conv3d(upfirdn3d(x, f, down=down, pad=(p0, p1)), w, groups=groups)
        return F.conv3d(upfirdn3d(x, f, pad=(p0, p1)), w, stride=down, groups=groups)
    if k == 1:
        return upfirdn3d(F.conv3d(x, w, groups=groups), f, up=up, pad=(p0, p1), gain=up**3)
    # A true convolution of the zero-inserted input with w is conv_transpose3d with w as is.
    if groups == 1:
        wt = w.transpose(0, 1)
    else:
        wt = w.reshape(groups, out_ch // groups, in_per_group, k, k, k).transpose(1, 2)
        wt = wt.reshape(groups * in_per_group, out_ch // groups, k, k, k)
    x = F.conv_transpose3d(x, wt, stride=up, groups=groups)
    return upfirdn3d(x, f, pad=(p0 - (k - 1), p1 - (k - up)), gain=up**3)


def conv3d_resample_reference(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1,
                              down: int = 1, groups: int = 1) -> torch.Tensor:
    """Plain composition: zero-insert + pad + filter, true convolution; or filter, convolve, decimate."""
    k = w.shape[-1]
    w = w.to(x.dtype)
    f0, f1 = _pads(f, up=up, down=down)
    pad = (k // 2 + f0, k // 2 + f1)
    if up > 1:
        return F.conv3d(upfirdn3d(x, f, up=up, pad=pad, gain=up**3), w.flip([2, 3, 4]), groups=groups)
    if down > 1:
        return F.conv3d(upfirdn3d(x, f, pad=pad), w, groups=groups)[:, :, ::down, ::down, ::down]
    return F.conv3d(x, w, padding=k // 2, groups=groups)


__all__ = ["conv3d_resample", "conv3d_resample_reference", "downsample3d", "setup_filter1d", "upfirdn3d",
           "upsample3d"]
