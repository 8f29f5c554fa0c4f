"""StyleGAN2 on whole volumes: the 2-D model of `stylegan2.py` with every convolution, noise input and
resampling filter made 3-D (as 3D-StyleGAN, Hong et al. 2021, did in TensorFlow).

Modulated / demodulated 3x3x3 convolution, per-voxel noise with a learned strength, skip generator
(toRGB of every resolution upsampled and summed), residual discriminator, minibatch stddev, projection
conditioning; the mapping network and `Generator` wrapper are the 2-D ones. Volumes are (N, C, D, H, W)
with D = inferior->superior, H = posterior->anterior, W = left->right (RAS voxel order reversed), so a
flip of the last axis is a left-right flip exactly as for slices.

Channel counts follow the same rule, min(channel_base / res, channel_max); the 3-D defaults
(`VOLUME_CHANNEL_BASE`, `VOLUME_CHANNEL_MAX`) are smaller because a 3x3x3 conv costs 3x a 3x3 one per
voxel and there are R times more voxels: at 64^3 the largest activations are 32 channels x 64^3.
"""

from __future__ import annotations

import torch
from torch import nn

from stylemri.networks.layers import FILTER_STYLEGAN2
from stylemri.networks.layers3d import EqualConv3d, conv3d_resample, conv3d_resample_reference, setup_filter1d, upsample3d
from stylemri.networks.stylegan2 import Discriminator, SynthesisLayer, SynthesisNetwork, ToRGB

VOLUME_CHANNEL_BASE = 2048  # channels(res) = min(2048 / res, 256): 256 at 4-8, 128 at 16, 64 at 32, 32 at 64
VOLUME_CHANNEL_MAX = 256


def modulated_conv3d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     up: int = 1, resample_filter: torch.Tensor | None = None, fused: bool = False,
                     eps: float = 1e-8) -> torch.Tensor:
    """Per-sample modulated (and demodulated) 3-D conv of the whole batch; equals `modulated_conv3d_reference`.

    fused=True: one grouped conv with a (N*O, I, k, k, k) weight; fused=False: scale the activations by
    the styles, share one conv, scale the outputs by the demodulation coefficients (same maths).
    """
    n = x.shape[0]
    out_ch, in_ch, k = weight.shape[0], weight.shape[1], weight.shape[-1]
    if styles.shape != (n, in_ch):
        raise ValueError(f"modulated_conv3d: styles {tuple(styles.shape)} do not match ({n}, {in_ch})")
    styles, weight = styles.float(), weight.float()
    dcoefs = None
    if demodulate:  # sum_ik (s_i w_oik)^2 = sum_i s_i^2 sum_k w_oik^2
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3, 4]).t() + eps).rsqrt()  # (N, O)
    if not fused:
        x = x * styles.to(x.dtype).reshape(n, in_ch, 1, 1, 1)
        x = conv3d_resample(x, weight, resample_filter, up=up)
        return x * dcoefs.to(x.dtype).reshape(n, out_ch, 1, 1, 1) if dcoefs is not None else x
    coefs = styles.reshape(n, 1, in_ch)
    if dcoefs is not None:
        coefs = coefs * dcoefs.reshape(n, out_ch, 1)
    w = weight.unsqueeze(0) * coefs.reshape(n, out_ch if dcoefs is not None else 1, in_ch, 1, 1, 1)
    w = w.expand(n, out_ch, in_ch, k, k, k).reshape(n * out_ch, in_ch, k, k, k)
    x = conv3d_resample(x.reshape(1, n * in_ch, *x.shape[2:]), w, resample_filter, up=up, groups=n)
    return x.reshape(n, out_ch, *x.shape[2:])


def modulated_conv3d_reference(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                               up: int = 1, resample_filter: torch.Tensor | None = None,
                               eps: float = 1e-8) -> torch.Tensor:
    """The paper's equations one sample at a time: w'_ijk = s_i w_ijk; w'' = w' / sqrt(sum w'^2 + eps)."""
    outs = []
    for i in range(x.shape[0]):
        w = weight * styles[i].reshape(1, -1, 1, 1, 1)
        if demodulate:
            w = w / (w.square().sum(dim=[1, 2, 3, 4], keepdim=True) + eps).sqrt()
        outs.append(conv3d_resample_reference(x[i:i + 1], w, resample_filter, up=up))
    return torch.cat(outs, dim=0)


class SynthesisLayer3d(SynthesisLayer):
    """Modulated 3x3x3 conv (optionally 2x up), per-voxel noise with a learned strength, bias, lrelu."""

    dims = 3
    modconv = staticmethod(modulated_conv3d)
    make_filter = staticmethod(setup_filter1d)


class ToRGB3d(ToRGB):
    """Modulated 1x1x1 conv to image channels, no demodulation, linear output."""

    dims = 3
    modconv = staticmethod(modulated_conv3d)


class SynthesisBlock3d(nn.Module):
    """One resolution of the skip generator: (const | 2x-up conv) + conv, toRGB added to the upsampled volume."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 conv_clamp: float | None = None) -> None:
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        self.register_buffer("resample_filter", setup_filter1d(FILTER_STYLEGAN2), persistent=False)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer3d(in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer3d(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.torgb = ToRGB3d(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, noise_mode: str,
                fused: bool) -> tuple[torch.Tensor, torch.Tensor]:
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1, 1)
        else:
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused=fused)
        x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused=fused)
        y = self.torgb(x, next(w_iter), fused=fused).float()
        img = y if img is None else upsample3d(img, self.resample_filter) + y
        return x, img


class SynthesisNetwork3d(SynthesisNetwork):
    """ws (N, num_ws, w_dim) -> volume (N, C, R, R, R): the 2-D network's layout and w indexing, 3-D blocks."""

    dims = 3
    block_class = SynthesisBlock3d

    def __init__(self, w_dim: int, resolution: int, img_channels: int, channel_base: int = VOLUME_CHANNEL_BASE,
                 channel_max: int = VOLUME_CHANNEL_MAX, conv_clamp: float | None = None) -> None:
        super().__init__(w_dim, resolution, img_channels, channel_base, channel_max, conv_clamp=conv_clamp)


class Discriminator3d(Discriminator):
    """Residual 3-D StyleGAN2 discriminator (3x3x3 convs) with a projection-conditional 4^3 head."""

    dims = 3
    conv_class = EqualConv3d

    def __init__(self, c_dim: int, resolution: int, img_channels: int, channel_base: int = VOLUME_CHANNEL_BASE,
                 channel_max: int = VOLUME_CHANNEL_MAX, mbstd_group: int | None = 4, mbstd_features: int = 1,
                 conv_clamp: float | None = None, map_layers: int = 8, map_lr_mul: float = 0.01,
                 cov_dim: int = 0) -> None:
        super().__init__(c_dim, resolution, img_channels, channel_base, channel_max, mbstd_group, mbstd_features,
                         conv_clamp, map_layers, map_lr_mul, cov_dim=cov_dim)


__all__ = [
    "Discriminator3d", "SynthesisBlock3d", "SynthesisLayer3d", "SynthesisNetwork3d",
    "ToRGB3d", "VOLUME_CHANNEL_BASE", "VOLUME_CHANNEL_MAX", "modulated_conv3d", "modulated_conv3d_reference",
]
