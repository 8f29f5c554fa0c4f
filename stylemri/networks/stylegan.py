"""StyleGAN (Karras et al. 2019) with ProGAN-style progressive growing (Karras et al. 2018).

Generator: learned constant 4x4 input; per layer conv -> [1,2,1] blur (after upsampling) -> noise with
per-channel strength -> bias -> lrelu -> AdaIN (instance norm, then scale/bias from an affine of w); a toRGB
per resolution. Discriminator: fromRGB per resolution, conv -> blur -> conv + 2x2 average pool per
block, minibatch stddev in the 4x4 head. `stage` k runs the networks at 4 * 2**k pixels and `alpha`
fades the newest block in against the (nearest-upsampled / average-pooled) previous resolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stylemri.networks.heads import DiscriminatorEpilogue, labels_for
from stylemri.networks.layers import (
    FILTER_BOX,
    FILTER_STYLEGAN,
    LRELU_GAIN,
    LRELU_SLOPE,
    EqualConv,
    EqualLinear,
    filter2d,
    setup_filter,
)
from stylemri.networks.mapping import MappingNetwork
from stylemri.networks.precision import block_precision
from stylemri.networks.stylegan2 import channels_at, check_noise_mode


def resolve_stage(stage: int | None, num_stages: int, alpha: float) -> tuple[int, float]:
    """Validate (stage, alpha); stage None means the full network with every block faded in (alpha ignored)."""
    if stage is None:
        return num_stages, 1.0
    stage = int(stage)
    if not 0 <= stage <= num_stages:
        raise ValueError(f"stage {stage}: expected 0..{num_stages} (stage k runs at {4}*2**k px)")
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha {alpha}: expected a value in [0, 1]")
    return stage, alpha


def instance_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    x = x - x.mean(dim=[2, 3], keepdim=True)
    return x * (x.square().mean(dim=[2, 3], keepdim=True) + eps).rsqrt()


class StyleLayer(nn.Module):
    """[conv (optionally 2x nearest-up, then [1,2,1] blur)] -> noise -> bias -> lrelu -> AdaIN(w)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: int = 1,
                 conv: bool = True) -> None:
        super().__init__()
        self.resolution, self.up = resolution, up
        if conv:
            # Weight gain sqrt(2) as in the paper (He init for the lrelu that follows).
            self.conv = EqualConv(in_channels, out_channels, 3, bias=False, up=up, resample_filter=FILTER_BOX,
                                    gain=LRELU_GAIN)
        self.register_buffer("blur_filter", setup_filter(FILTER_STYLEGAN), persistent=False)
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.zeros(out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.affine = EqualLinear(w_dim, 2 * out_channels)  # style (scale - 1, bias) per channel

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str) -> torch.Tensor:
        if hasattr(self, "conv"):
            x = self.conv(x)
            if self.up > 1:
                x = filter2d(x, self.blur_filter)
        strength = self.noise_strength.to(x.dtype).reshape(1, -1, 1, 1)
        if noise_mode == "random":
            x = x + torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype) * strength
        elif noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * strength
        x = F.leaky_relu(x + self.bias.to(x.dtype).reshape(1, -1, 1, 1), LRELU_SLOPE)
        x = instance_norm(x)
        scale, shift = self.affine(w).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return x * (scale + 1).to(x.dtype) + shift.to(x.dtype)


class SynthesisBlock(nn.Module):
    """Two style layers at one resolution (the 4x4 block starts from the learned constant)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        if in_channels == 0:
            self.const = nn.Parameter(torch.ones(out_channels, resolution, resolution))
            self.conv0 = StyleLayer(out_channels, out_channels, w_dim, resolution, conv=False)
        else:
            self.conv0 = StyleLayer(in_channels, out_channels, w_dim, resolution, up=2)
        self.conv1 = StyleLayer(out_channels, out_channels, w_dim, resolution)
        self.num_conv = 2

    def forward(self, x: torch.Tensor | None, ws: torch.Tensor, noise_mode: str) -> torch.Tensor:
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
        x = self.conv0(x, ws[:, 0], noise_mode)
        return self.conv1(x, ws[:, 1], noise_mode)


class SynthesisNetwork(nn.Module):
    """Progressive StyleGAN synthesis: ws (N, num_ws, w_dim) -> image at stage resolution 4 * 2**stage."""

    def __init__(self, w_dim: int, resolution: int, img_channels: int, channel_base: int = 16384,
                 channel_max: int = 512) -> None:
        super().__init__()
        self.w_dim, self.resolution, self.img_channels = w_dim, resolution, img_channels
        self.block_resolutions = [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]
        self.num_stages = len(self.block_resolutions) - 1
        self.torgb = nn.ModuleDict()
        for res in self.block_resolutions:
            out_ch = channels_at(res, channel_base, channel_max)
            in_ch = channels_at(res // 2, channel_base, channel_max) if res > 4 else 0
            setattr(self, f"b{res}", SynthesisBlock(in_ch, out_ch, w_dim, res))
            self.torgb[str(res)] = EqualConv(out_ch, img_channels, 1)
        self.num_ws = 2 * len(self.block_resolutions)

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", stage: int | None = None,
                alpha: float = 1.0, force_fp32: bool = False) -> torch.Tensor:
        """Image (N, C, 4*2**stage, 4*2**stage); ws of layers above the stage are unused.
        force_fp32: ignore the blocks' reduced precision (`networks.precision`), for regularization passes."""
        check_noise_mode(noise_mode)
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"synthesis: expected ws of shape (N, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")
        stage, alpha = resolve_stage(stage, self.num_stages, alpha)
        fading = stage > 0 and alpha < 1.0
        x = None
        device = ws.device.type
        for k, res in enumerate(self.block_resolutions[: stage + 1]):
            if k == stage and fading:
                prev = F.interpolate(self._torgb(res // 2, x, device, force_fp32), scale_factor=2, mode="nearest")
                if alpha == 0.0:
                    return prev
            block = getattr(self, f"b{res}")
            ctx, x = block_precision(block, x, device, force_fp32)
            with ctx:
                x = block(x, ws[:, 2 * k: 2 * k + 2], noise_mode)
        img = self._torgb(self.block_resolutions[stage], x, device, force_fp32)
        return prev + (img - prev) * alpha if fading else img

    def _torgb(self, res: int, x: torch.Tensor, device: str, force_fp32: bool) -> torch.Tensor:
        """toRGB of resolution `res`, in that resolution's precision; the image is float32."""
        ctx, x = block_precision(getattr(self, f"b{res}"), x, device, force_fp32)
        with ctx:
            return self.torgb[str(res)](x).float()


class DiscriminatorBlock(nn.Module):
    """conv 3x3 -> [1,2,1] blur -> conv 3x3 + 2x2 average pool (one fused strided conv), lrelu after each."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.register_buffer("blur_filter", setup_filter(FILTER_STYLEGAN), persistent=False)
        self.conv0 = EqualConv(in_channels, in_channels, 3, activation="lrelu")
        self.conv1 = EqualConv(in_channels, out_channels, 3, activation="lrelu", down=2, resample_filter=FILTER_BOX)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(filter2d(self.conv0(x), self.blur_filter))


class Discriminator(nn.Module):
    """Progressive discriminator mirroring the generator; projection-conditional 4x4 head."""

    def __init__(self, c_dim: int, resolution: int, img_channels: int, channel_base: int = 16384,
                 channel_max: int = 512, mbstd_group: int | None = 4, mbstd_features: int = 1,
                 map_layers: int = 8, map_lr_mul: float = 0.01, cov_dim: int = 0) -> None:
        super().__init__()
        self.c_dim, self.resolution, self.img_channels = c_dim, resolution, img_channels
        self.cov_dim = cov_dim
        self.block_resolutions = [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]  # ascending
        self.num_stages = len(self.block_resolutions) - 1
        self.fromrgb = nn.ModuleDict()
        for res in self.block_resolutions:
            ch = channels_at(res, channel_base, channel_max)
            self.fromrgb[str(res)] = EqualConv(img_channels, ch, 1, activation="lrelu")
            if res > 4:
                setattr(self, f"b{res}", DiscriminatorBlock(ch, channels_at(res // 2, channel_base, channel_max)))
        ch4 = channels_at(4, channel_base, channel_max)
        cmap_dim = ch4 if c_dim + cov_dim > 0 else 0
        if c_dim + cov_dim > 0:  # projection: score = <features, embed(class one-hot, covariates)>
            self.mapping = MappingNetwork(0, c_dim, cmap_dim, num_ws=None, num_layers=map_layers, lr_mul=map_lr_mul,
                                          w_avg_beta=None, cov_dim=cov_dim)
        self.b4 = DiscriminatorEpilogue(ch4, cmap_dim, 4, mbstd_group, mbstd_features)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None, stage: int | None = None,
                alpha: float = 1.0, force_fp32: bool = False) -> torch.Tensor:
        """Logits (N, 1). Images larger than the stage resolution are average-pooled down to it.
        force_fp32: ignore the blocks' reduced precision, for regularization passes."""
        stage, alpha = resolve_stage(stage, self.num_stages, alpha)
        res = self.block_resolutions[stage]
        if img.ndim != 4 or img.shape[1] != self.img_channels or img.shape[2] != img.shape[3] \
                or img.shape[2] < res or img.shape[2] % res:
            raise ValueError(f"discriminator: expected images (N, {self.img_channels}, R, R) with R a multiple of "
                             f"the stage resolution {res}, got {tuple(img.shape)}")
        if img.shape[2] > res:
            img = F.avg_pool2d(img, img.shape[2] // res)
        cmap = labels_for(self, c, img.shape[0])
        fading = stage > 0 and alpha < 1.0
        device = img.device.type
        if fading and alpha == 0.0:
            x = self._fromrgb(res // 2, F.avg_pool2d(img, 2), device, force_fp32)
        else:
            ctx, _ = block_precision(getattr(self, f"b{res}", self.b4), None, device, force_fp32)
            with ctx:
                x = self.fromrgb[str(res)](img)
                if stage > 0:
                    x = getattr(self, f"b{res}")(x)
            if fading:
                y = self._fromrgb(res // 2, F.avg_pool2d(img, 2), device, force_fp32)
                x = y.float() + (x.float() - y.float()) * alpha
        for r in reversed(self.block_resolutions[1:stage]):
            block = getattr(self, f"b{r}")
            ctx, x = block_precision(block, x, device, force_fp32)
            with ctx:
                x = block(x)
        return self.b4(x.float(), cmap)

    def _fromrgb(self, res: int, img: torch.Tensor, device: str, force_fp32: bool) -> torch.Tensor:
        """fromRGB of resolution `res`, in that resolution's precision."""
        ctx, _ = block_precision(getattr(self, f"b{res}", self.b4), None, device, force_fp32)
        with ctx:
            return self.fromrgb[str(res)](img)


__all__ = ["Discriminator", "DiscriminatorBlock", "StyleLayer", "SynthesisBlock", "SynthesisNetwork",
           "instance_norm", "resolve_stage"]
