"""Building blocks shared by both architectures: equalized-lr layers and FIR resampling (upfirdn2d).

Equalized learning rate (ProGAN, Karras et al. 2018): parameters are stored as N(0, 1) draws and scaled
at run time by `gain * lr_mul / sqrt(fan_in)`, so Adam's per-parameter step is the same for every layer.

FIR resampling follows the StyleGAN2 formulation: upsample by zero insertion, pad, convolve with a
normalised low-pass filter, keep every n-th pixel. `conv2d_resample` fuses a convolution with an up/down
step the cheap way (transposed / strided conv); `conv2d_resample_reference` is the plain composition
the tests compare it to. `make_filter`, `conv_resample` and `upsample` pick the 2-D functions here or
their 3-D counterparts in `layers3d.py` by the number of spatial dimensions, so `EqualConv` and the StyleGAN2
synthesis layers are one class each for slices (`dims=2`) and volumes (`dims=3`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stylemri.networks.layers3d import conv3d_resample, setup_filter1d, upsample3d

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)  # keeps the second moment of N(0,1) inputs through leaky ReLU (He init)

FILTER_BOX = (1.0, 1.0)  # with up=2: nearest-neighbour upsampling; with down=2: 2x2 average pooling
FILTER_STYLEGAN = (1.0, 2.0, 1.0)  # StyleGAN (2019) blur
FILTER_STYLEGAN2 = (1.0, 3.0, 3.0, 1.0)  # StyleGAN2 FIR up/down-sampling filter

Padding = int | Sequence[int]


def setup_filter(taps: Sequence[float]) -> torch.Tensor:
    """Outer product of a 1-D tap list, normalised to unit DC gain: a separable 2-D low-pass filter."""
    f = torch.as_tensor(list(taps), dtype=torch.float32)
    if f.ndim != 1 or f.numel() == 0:
        raise ValueError(f"filter taps {taps!r}: expected a non-empty 1-D sequence")
    f = torch.outer(f, f)
    return f / f.sum()


def _pad4(padding: Padding) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    p = [int(v) for v in padding]
    if len(p) == 2:
        return p[0], p[0], p[1], p[1]
    if len(p) == 4:
        return p[0], p[1], p[2], p[3]
    raise ValueError(f"padding {padding!r}: expected an int, [x, y] or [x0, x1, y0, y1]")


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: int = 1, down: int = 1, padding: Padding = 0,
              gain: float = 1.0) -> torch.Tensor:
    """Upsample (zero insertion), pad (negative = crop), FIR-filter (true convolution), downsample.

    `padding` is [x0, x1, y0, y1] in the upsampled image; `gain` scales the filter (use up**2 after
    zero insertion so a constant image keeps its value).
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d: expected a (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    px0, px1, py0, py1 = _pad4(padding)
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    # A symmetric, non-negative pad goes into the filter's conv (no padded copy of x: 5 % of a demo step
    # was constant_pad_nd); any other pad is its own op (negative pads crop, which TorchScript and ONNX keep).
    same = f is not None and px0 == px1 >= 0 and py0 == py1 >= 0
    if not same:
        x = F.pad(x, [px0, px1, py0, py1])
    if f is None:
        return x[:, :, ::down, ::down] if down > 1 else x
    # conv2d is a correlation: flip the filter to get a true convolution (matters for odd/asymmetric use).
    k = (f * gain).flip([0, 1]).to(dtype=x.dtype, device=x.device)
    channels = int(c)  # a plain int: a traced/exported graph keeps a kernel of known shape
    k = k[None, None].expand(channels, 1, *k.shape)
    return F.conv2d(x, k, stride=down, groups=channels, padding=(py0, px0) if same else 0)


def filter2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Blur keeping the size (StyleGAN's [1,2,1] blur)."""
    fh, fw = f.shape
    return upfirdn2d(x, f, padding=[fw // 2, (fw - 1) // 2, fh // 2, (fh - 1) // 2])


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """FIR upsampling to exactly `up` times the size (StyleGAN2 skip-generator image path)."""
    fh, fw = f.shape
    p = [(fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=p, gain=up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    """FIR downsampling to exactly 1/`down` of the size."""
    fh, fw = f.shape
    p = [(fw - down + 1) // 2, (fw - down) // 2, (fh - down + 1) // 2, (fh - down) // 2]
    return upfirdn2d(x, f, down=down, padding=p)


def _resample_pads(kernel: int, f: torch.Tensor | None, up: int, down: int) -> list[int]:
    """Total [x0, x1, y0, y1] padding of a 'same' kernel x kernel conv combined with FIR up/down."""
    p = int(kernel) // 2  # plain ints (also under torch.jit.trace: weight and filter sizes are fixed)
    fw = 1 if f is None else int(f.shape[-1])
    px0 = px1 = p
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
    return [px0, px1, px0, px1]


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1,
                    down: int = 1, groups: int = 1) -> torch.Tensor:
    """'Same' convolution (odd square kernel) fused with FIR upsampling or downsampling, the fast way.

    up: transposed conv (stride 2, no wasted multiplications on inserted zeros) then the FIR filter;
    down: FIR filter then strided conv. Equals `conv2d_resample_reference` (tests check it).
    """
    if up > 1 and down > 1:
        raise ValueError("conv2d_resample: up and down together are not supported")
    out_ch, in_per_group, kh, kw = (int(s) for s in w.shape)
    if kh != kw or kh % 2 != 1:
        raise ValueError(f"conv2d_resample: expected an odd square kernel, got {kh}x{kw}")
    px0, px1, _, _ = _resample_pads(kw, f, up, down)
    w = w.to(x.dtype)
    if up == 1 and down == 1:
        return F.conv2d(x, w, padding=kw // 2, groups=groups)
    if down > 1:
        if kw == 1:  # filter+decimate first: the 1x1 conv then runs at the low resolution
            x = upfirdn2d(x, f, down=down, padding=[px0, px1, px0, px1])
            return F.conv2d(x, w, groups=groups)
        x = upfirdn2d(x, f, padding=[px0, px1, px0, px1])
        return F.conv2d(x, w, stride=down, groups=groups)
    # up > 1. A true convolution of the zero-inserted input with w is conv_transpose2d with w as is.
    if kw == 1:
        x = F.conv2d(x, w.flip([2, 3]), groups=groups)
        return upfirdn2d(x, f, up=up, padding=[px0, px1, px0, px1], gain=up * up)
    if groups == 1:
        wt = w.transpose(0, 1)
    else:
        wt = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
        wt = wt.reshape(groups * in_per_group, out_ch // groups, kh, kw)
    x = F.conv_transpose2d(x, wt, stride=up, groups=groups)
    q0, q1 = px0 - (kw - 1), px1 - (kw - up)
    return upfirdn2d(x, f, padding=[q0, q1, q0, q1], gain=up * up)


def conv2d_resample_reference(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1,
                              down: int = 1, groups: int = 1) -> torch.Tensor:
    """Plain composition: zero-insert + pad + filter, true convolution, then filter + decimate."""
    kw = w.shape[-1]
    px0, px1, _, _ = _resample_pads(kw, f, up, down)
    w = w.to(x.dtype)
    if up > 1:
        x = upfirdn2d(x, f, up=up, padding=[px0, px1, px0, px1], gain=up * up)
        return F.conv2d(x, w.flip([2, 3]), groups=groups)
    if down > 1:
        x = upfirdn2d(x, f, padding=[px0, px1, px0, px1])
        x = F.conv2d(x, w, groups=groups)
        return x[:, :, ::down, ::down]
    return F.conv2d(x, w, padding=kw // 2, groups=groups)


def bias_act(x: torch.Tensor, b: torch.Tensor | None, activation: str = "linear", gain: float = 1.0,
             clamp: float | None = None) -> torch.Tensor:
    """Add a per-channel bias, apply the activation with its He gain times `gain`, optionally clamp."""
    if b is not None:
        shape = [1, -1] + [1] * (x.ndim - 2)
        x = x + b.to(x.dtype).reshape(shape)
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
        gain = gain * LRELU_GAIN
    elif activation != "linear":
        raise ValueError(f"activation {activation!r}: expected 'linear' or 'lrelu'")
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


class EqualLinear(nn.Module):
    """Fully connected layer with equalized learning rate and an optional learning-rate multiplier."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_mul: float = 1.0, bias_init: float = 0.0, gain: float = 1.0) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init) / lr_mul)) if bias else None
        self.weight_gain = gain * lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.weight_gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias * self.bias_gain if self.bias is not None else None
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.to(x.dtype).unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, self.activation)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, activation={self.activation}, lr_mul={self.bias_gain:g}"


def make_filter(taps: Sequence[float], dims: int = 2) -> torch.Tensor:
    """The low-pass filter in the form the resampling functions of `dims` take: 2-D, the normalised outer
    product (`upfirdn2d`); 3-D, the normalised 1-D taps (`upfirdn3d` applies them on each axis)."""
    if dims not in (2, 3):
        raise ValueError(f"dims {dims}: expected 2 (images) or 3 (volumes)")
    return setup_filter(taps) if dims == 2 else setup_filter1d(taps)


def conv_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1, down: int = 1,
                  groups: int = 1) -> torch.Tensor:
    """`conv2d_resample` for (N, C, H, W) images, `layers3d.conv3d_resample` for (N, C, D, H, W) volumes."""
    resample = conv2d_resample if x.ndim == 4 else conv3d_resample
    return resample(x, w, f, up=up, down=down, groups=groups)


def upsample(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """`upsample2d` for images, `layers3d.upsample3d` for volumes (`f` from `make_filter` of the same dims)."""
    return upsample2d(x, f, up) if x.ndim == 4 else upsample3d(x, f, up)


class EqualConv(nn.Module):
    """Conv layer with equalized learning rate, optional FIR up/down-sampling, bias, activation, clamp;
    `dims=2` for images (k x k kernels), `dims=3` for volumes (k x k x k kernels, the same parameter names)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1,
                 resample_filter: Sequence[float] = FILTER_STYLEGAN2, conv_clamp: float | None = None,
                 gain: float = 1.0, dims: int = 2) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.activation, self.up, self.down, self.conv_clamp, self.dims = activation, up, down, conv_clamp, dims
        self.register_buffer("resample_filter", make_filter(resample_filter, dims), persistent=False)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, *[kernel_size] * dims))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = gain / math.sqrt(in_channels * kernel_size**dims)

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.weight_gain

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        x = conv_resample(x, self.weight * self.weight_gain, self.resample_filter, up=self.up, down=self.down)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, self.activation, gain=gain, clamp=clamp)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"activation={self.activation}, up={self.up}, down={self.down}" + (", dims=3" if self.dims == 3 else ""))


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Pixel norm: scale each vector to unit root-mean-square."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


__all__ = [
    "FILTER_BOX", "FILTER_STYLEGAN", "FILTER_STYLEGAN2", "LRELU_GAIN", "EqualConv", "EqualLinear", "bias_act",
    "conv2d_resample", "conv2d_resample_reference", "conv_resample", "downsample2d", "filter2d", "make_filter",
    "normalize_2nd_moment", "setup_filter", "upfirdn2d", "upsample", "upsample2d",
]
