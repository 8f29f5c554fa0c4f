"""StyleGAN2 (Karras et al. 2020): modulated convolution with weight demodulation, skip generator,
residual discriminator, FIR [1,3,3,1] resampling, projection conditioning, optional conv_clamp.

Layout follows the paper's config E/F as implemented by NVlabs (stylegan2-ada), so a paper config named
by `channel_base`, `channel_max`, `map_layers` has the same layers and parameter counts.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from stylemri.networks.heads import DiscriminatorEpilogue, labels_for
from stylemri.networks.layers import (
    FILTER_STYLEGAN2,
    EqualConv,
    EqualLinear,
    bias_act,
    conv2d_resample_reference,
    conv_resample,
    make_filter,
    upsample,
)
from stylemri.networks.layers3d import conv3d_resample_reference
from stylemri.networks.mapping import MappingNetwork
from stylemri.networks.precision import block_precision

NOISE_MODES = ("const", "random", "none")  # the synthesis networks' noise inputs; `--noise` offers the same


def check_noise_mode(noise_mode: str) -> None:
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode {noise_mode!r}: expected one of {', '.join(NOISE_MODES)}")


def channels_at(res: int, channel_base: int, channel_max: int) -> int:
    """NVlabs' channel rule: min(channel_base / res, channel_max)."""
    return max(1, min(channel_base // res, channel_max))


def modulated_conv(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                   up: int = 1, resample_filter: torch.Tensor | None = None, fused: bool = False,
                   eps: float = 1e-8) -> torch.Tensor:
    """Per-sample modulated (and demodulated) conv of the whole batch: images with a (O, I, k, k) `weight`,
    volumes with a (O, I, k, k, k) one (`resample_filter` from `layers.make_filter` of the same dims).

    fused=True: one grouped convolution with a (N*out, in, k, ...) weight (the StyleGAN2 formulation);
    fused=False: scale the activations by the styles, share one conv, scale the outputs by the
    demodulation coefficients (same maths, cheaper backward for large batches).
    Both equal `modulated_conv_reference`. The effective weight is s_i * w_oik, so an equalized-lr
    gain may be folded into either `weight` or `styles`.
    The default is fused=False for both dims (the 2-D function used to default to True, the 3-D one to
    False): it is what training and CPU inference use (`SynthesisNetwork.forward` passes its choice
    explicitly), it never builds the per-sample weight (N x k^3 times the weight for volumes), and it
    accepts any batch size with the same memory as one sample.
    """
    n = x.shape[0]
    out_ch, in_ch = weight.shape[:2]
    ones = [1] * (weight.ndim - 2)  # one per spatial dimension
    if styles.shape != (n, in_ch):
        raise ValueError(f"modulated_conv: styles {tuple(styles.shape)} do not match ({n}, {in_ch})")
    styles = styles.float()
    weight = weight.float()
    dcoefs = None
    if demodulate:
        # sum_ik (s_i w_oik)^2 = sum_i s_i^2 sum_k w_oik^2: a small matmul instead of an (N, O, I, k, k) tensor.
        dcoefs = (styles.square() @ weight.square().sum(dim=list(range(2, weight.ndim))).t() + eps).rsqrt()  # (N, O)
    if not fused:
        x = x * styles.to(x.dtype).reshape(n, in_ch, *ones)
        x = conv_resample(x, weight, resample_filter, up=up)
        if dcoefs is not None:
            x = x * dcoefs.to(x.dtype).reshape(n, out_ch, *ones)
        return x
    coefs = styles.reshape(n, 1, in_ch)  # (N, O, I) per-sample scale, built small: one big multiply below
    if dcoefs is not None:
        coefs = coefs * dcoefs.reshape(n, out_ch, 1)
    w = weight.unsqueeze(0) * coefs.reshape(n, -1, in_ch, *ones)  # (N, O, I, k, k[, k])
    x = x.reshape(1, n * in_ch, *x.shape[2:])
    x = conv_resample(x, w.reshape(n * out_ch, in_ch, *weight.shape[2:]), resample_filter, up=up, groups=n)
    return x.reshape(n, out_ch, *x.shape[2:])


def modulated_conv_reference(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                             demodulate: bool = True, up: int = 1, resample_filter: torch.Tensor | None = None,
                             eps: float = 1e-8) -> torch.Tensor:
    """The paper's equations one sample at a time: w'_ijk = s_i w_ijk; w'' = w' / sqrt(sum w'^2 + eps)."""
    ones = [1] * (weight.ndim - 2)
    reference = conv2d_resample_reference if weight.ndim == 4 else conv3d_resample_reference
    outs = []
    for i in range(x.shape[0]):
        w = weight * styles[i].reshape(1, -1, *ones)
        if demodulate:
            w = w / (w.square().sum(dim=list(range(1, weight.ndim)), keepdim=True) + eps).sqrt()
        outs.append(reference(x[i:i + 1], w, resample_filter, up=up))
    return torch.cat(outs, dim=0)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x up), per-pixel noise with a learned strength, bias, lrelu;
    with `dims=3` a 3x3x3 conv and per-voxel noise (the 3-D network, stylegan2_3d.py)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: int = 1,
                 kernel_size: int = 3, conv_clamp: float | None = None, dims: int = 2) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.resolution, self.up = in_channels, out_channels, resolution, up
        self.conv_clamp, self.dims = conv_clamp, dims
        self.register_buffer("resample_filter", make_filter(FILTER_STYLEGAN2, dims), persistent=False)
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, *[kernel_size] * self.dims))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** self.dims)
        self.register_buffer("noise_const", torch.randn(*[resolution] * self.dims))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", fused: bool = False,
                gain: float = 1.0) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain  # (g s_i) w_oik = s_i (g w_oik): equalized lr, folded in
        x = modulated_conv(x, self.weight, styles, up=self.up, resample_filter=self.resample_filter, fused=fused)
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, *[self.resolution] * self.dims, device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength.to(x.dtype)
        elif noise_mode == "const":
            x = x + (self.noise_const * self.noise_strength).to(x.dtype)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, "lrelu", gain=gain, clamp=clamp)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to image channels, no demodulation, linear output (1x1x1 with `dims=3`)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None,
                 dims: int = 2) -> None:
        super().__init__()
        self.conv_clamp, self.dims = conv_clamp, dims
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, *[1] * self.dims))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool = False) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv(x, self.weight, styles, demodulate=False, fused=fused)
        return bias_act(x, self.bias, "linear", clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: (const | 2x-up conv) + conv, toRGB added to the upsampled image
    (the upsampled volume with `dims=3`)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 conv_clamp: float | None = None, dims: int = 2) -> None:
        super().__init__()
        self.in_channels, self.resolution, self.img_channels, self.dims = in_channels, resolution, img_channels, dims
        self.register_buffer("resample_filter", make_filter(FILTER_STYLEGAN2, dims), persistent=False)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, *[resolution] * dims))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp,
                                        dims=dims)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp, dims=dims)
        self.torgb = ToRGB(out_channels, img_channels, w_dim, conv_clamp=conv_clamp, dims=dims)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, noise_mode: str,
                fused: bool) -> tuple[torch.Tensor, torch.Tensor]:
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat(ws.shape[0], *[1] * (1 + self.dims))
        else:
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused=fused)
        x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused=fused)
        y = self.torgb(x, next(w_iter), fused=fused).float()
        img = y if img is None else upsample(img, self.resample_filter) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws (N, num_ws, w_dim) -> image; the toRGB outputs of all resolutions are upsampled and summed."""

    dims = 2  # 3 in the 3-D network (stylegan2_3d.py): every block is built for volumes

    def __init__(self, w_dim: int, resolution: int, img_channels: int, channel_base: int = 16384,
                 channel_max: int = 512, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.w_dim, self.resolution, self.img_channels = w_dim, resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]
        self.num_ws = 0
        for res in self.block_resolutions:
            in_ch = channels_at(res // 2, channel_base, channel_max) if res > 4 else 0
            block = SynthesisBlock(in_ch, channels_at(res, channel_base, channel_max), w_dim, res, img_channels,
                                   conv_clamp=conv_clamp, dims=self.dims)
            setattr(self, f"b{res}", block)
            self.num_ws += block.num_conv
        self.num_ws += 1  # the last toRGB; each other toRGB shares the w of the next block's first conv

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", stage: int | None = None, alpha: float = 1.0,
                fused_modconv: bool | None = None, force_fp32: bool = False) -> torch.Tensor:
        """`stage`/`alpha` are accepted for interface parity with progressive StyleGAN and ignored.

        fused_modconv: True = one grouped conv, False = activation scaling (same result). None = grouped
        only for CUDA inference; training (cheaper backward) and CPU (measured faster) use scaling.
        force_fp32: ignore the blocks' reduced precision (`networks.precision`), for regularization passes.
        """
        check_noise_mode(noise_mode)
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"synthesis: expected ws of shape (N, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")
        fused = (not self.training and ws.is_cuda) if fused_modconv is None else fused_modconv
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            ctx, x = block_precision(block, x, ws.device.type, force_fp32)
            with ctx:
                x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + block.num_torgb), noise_mode, fused)
            w_idx += block.num_conv
        return img


class DiscriminatorBlock(nn.Module):
    """Residual block: two 3x3 convs (the second with 2x FIR down) plus a 1x1 down skip, both * sqrt(1/2);
    3x3x3 convs for volumes (`dims=3`)."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, img_channels: int,
                 conv_clamp: float | None = None, dims: int = 2) -> None:
        super().__init__()
        self.in_channels = in_channels
        if in_channels == 0:
            self.fromrgb = EqualConv(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp, dims=dims)
        self.conv0 = EqualConv(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp, dims=dims)
        self.conv1 = EqualConv(tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp,
                               dims=dims)
        self.skip = EqualConv(tmp_channels, out_channels, 1, bias=False, down=2, dims=dims)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None) -> torch.Tensor:
        if self.in_channels == 0:
            x = self.fromrgb(img)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator with a projection-conditional 4x4 head."""

    dims = 2  # 3 in the 3-D network (stylegan2_3d.py): 3x3x3 convs

    def __init__(self, c_dim: int, resolution: int, img_channels: int, channel_base: int = 16384,
                 channel_max: int = 512, mbstd_group: int | None = 4, mbstd_features: int = 1,
                 conv_clamp: float | None = None, map_layers: int = 8, map_lr_mul: float = 0.01, cov_dim: int = 0) -> None:
        super().__init__()
        self.c_dim, self.resolution, self.img_channels = c_dim, resolution, img_channels
        self.cov_dim = cov_dim
        self.block_resolutions = [2 ** i for i in range(int(math.log2(resolution)), 2, -1)]
        for res in self.block_resolutions:
            tmp = channels_at(res, channel_base, channel_max)
            block = DiscriminatorBlock(0 if res == resolution else tmp, tmp, channels_at(res // 2, channel_base, channel_max),
                                       img_channels, conv_clamp=conv_clamp, dims=self.dims)
            setattr(self, f"b{res}", block)
        ch4 = channels_at(4, channel_base, channel_max)
        cmap_dim = ch4 if c_dim + cov_dim > 0 else 0
        if c_dim + cov_dim > 0:  # projection: score = <features, embed(class one-hot, covariates)>
            self.mapping = MappingNetwork(0, c_dim, cmap_dim, num_ws=None, num_layers=map_layers, lr_mul=map_lr_mul,
                                          w_avg_beta=None, cov_dim=cov_dim)
        if resolution == 4:
            self.fromrgb4 = EqualConv(img_channels, ch4, 1, activation="lrelu", conv_clamp=conv_clamp, dims=self.dims)
        self.b4 = DiscriminatorEpilogue(ch4, cmap_dim, 4, mbstd_group, mbstd_features, conv_clamp=conv_clamp,
                                        dims=self.dims)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None, stage: int | None = None,
                alpha: float = 1.0, force_fp32: bool = False) -> torch.Tensor:
        """Logits (N, 1); `stage`/`alpha` are accepted for parity with progressive StyleGAN and ignored.
        force_fp32: ignore the blocks' reduced precision, for regularization passes."""
        expected = (self.img_channels, *[self.resolution] * self.dims)
        if img.ndim != 2 + self.dims or img.shape[1:] != expected:
            what = "images" if self.dims == 2 else "volumes"
            raise ValueError(f"discriminator: expected {what} of shape (N, {', '.join(map(str, expected))}), "
                             f"got {tuple(img.shape)}")
        cmap = labels_for(self, c, img.shape[0])
        x = None
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            ctx, x = block_precision(block, x, img.device.type, force_fp32)
            with ctx:
                x = block(x, img)
        if x is None:
            x = self.fromrgb4(img)
        return self.b4(x.float(), cmap)


__all__ = [
    "Discriminator", "DiscriminatorBlock", "SynthesisBlock", "SynthesisLayer", "SynthesisNetwork", "ToRGB",
    "NOISE_MODES", "channels_at", "check_noise_mode", "modulated_conv", "modulated_conv_reference",
]
