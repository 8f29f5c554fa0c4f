"""StyleGAN and StyleGAN2 generators and discriminators, built from one `NetworkConfig`.

    G = build_generator(cfg); D = build_discriminator(cfg)
    ws = G.mapping(z, c, psi=0.7)                  # (N, G.num_ws, G.w_dim)
    img = G.synthesis(ws, noise_mode="const")      # (N, C, R, R), [-1, 1] scale, linear output
    logits = D(img, c)                             # (N, 1)

`arch="stylegan"` is the progressive 2019 model (`stage`/`alpha` grow it); `arch="stylegan2"` the 2020
skip-G / residual-D model. Labels `c` are one-hot float (N, c_dim), or None when c_dim = 0.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from stylemri.config import NetworkConfig
from stylemri.errors import UserError
from stylemri.networks import stylegan, stylegan2, stylegan2_3d
from stylemri.networks.generator import Generator
from stylemri.networks.presets import PRESETS, preset_config

ARCHS = ("stylegan", "stylegan2")


def validate_config(cfg: NetworkConfig) -> NetworkConfig:
    """Check what only the networks know (which architectures and dims exist, what divides the 4x4 channels);
    returns cfg unchanged. The numeric ranges (resolution, channels, sizes, ...) are `config.NETWORK_RULES`,
    checked when a NetworkConfig is made, so a config with an impossible value never reaches this."""
    if cfg.arch not in ARCHS:
        raise UserError(f"arch {cfg.arch!r}: expected one of {', '.join(ARCHS)}")
    if cfg.dims not in (2, 3):
        raise UserError(f"dims {cfg.dims}: expected 2 (slices) or 3 (whole volumes)")
    if cfg.dims == 3 and cfg.arch != "stylegan2":
        raise UserError(f"arch {cfg.arch} with dims 3: expected stylegan2 (the only 3-D architecture)")
    ch4 = stylegan2.channels_at(4, cfg.channel_base, cfg.channel_max)
    if cfg.mbstd_features and ch4 % cfg.mbstd_features:
        raise UserError(f"mbstd_features {cfg.mbstd_features}: must divide the {ch4} channels at 4x4")
    return cfg


def build_generator(cfg: NetworkConfig) -> Generator:
    """Generator with `.mapping`, `.synthesis`, `num_ws`, `w_avg`, ..., on CPU in float32."""
    validate_config(cfg)
    if cfg.dims == 3:
        synthesis: nn.Module = stylegan2_3d.SynthesisNetwork3d(cfg.w_dim, cfg.resolution, cfg.img_channels,
                                                               cfg.channel_base, cfg.channel_max,
                                                               conv_clamp=cfg.conv_clamp)
    elif cfg.arch == "stylegan":
        synthesis = stylegan.SynthesisNetwork(cfg.w_dim, cfg.resolution, cfg.img_channels,
                                                         cfg.channel_base, cfg.channel_max)
    else:
        synthesis = stylegan2.SynthesisNetwork(cfg.w_dim, cfg.resolution, cfg.img_channels, cfg.channel_base,
                                               cfg.channel_max, conv_clamp=cfg.conv_clamp)
    if cfg.clamp_output:
        synthesis.register_forward_hook(clamp_to_data_range)
    return Generator(synthesis, cfg.z_dim, cfg.c_dim, cfg.w_dim, cfg.map_layers, cfg.map_lr_mul, cov_dim=cfg.cov_dim)


def clamp_to_data_range(module: nn.Module, inputs: Any, img: torch.Tensor) -> torch.Tensor:
    """`clamp_output`: the synthesis output clamped to [-1, 1], on every path that calls G.synthesis (training,
    generation, projection, export). Why: an MRI slice is mostly background at exactly -1 (black), the floor
    of the data range. A linear output has to hit that floor exactly and scatters around it instead, so a
    third of the generated background is faint grey noise in every saved image. Clamped, any value at or
    below -1 is exact black, for D in training as in the saved image, and G can reach it."""
    return img.clamp(-1.0, 1.0)


def build_discriminator(cfg: NetworkConfig) -> nn.Module:
    """Discriminator: forward(img, c, stage=None, alpha=1.0) -> logits (N, 1)."""
    validate_config(cfg)
    common = dict(c_dim=cfg.c_dim, resolution=cfg.resolution, img_channels=cfg.img_channels,
                  channel_base=cfg.channel_base, channel_max=cfg.channel_max, mbstd_group=cfg.mbstd_group,
                  mbstd_features=cfg.mbstd_features, map_layers=cfg.d_map_layers, map_lr_mul=cfg.map_lr_mul,
                  cov_dim=cfg.cov_dim)
    if cfg.dims == 3:
        return stylegan2_3d.Discriminator3d(**common, conv_clamp=cfg.conv_clamp)
    if cfg.arch == "stylegan":
        return stylegan.Discriminator(**common)
    return stylegan2.Discriminator(**common, conv_clamp=cfg.conv_clamp)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameter_counts(cfg: NetworkConfig) -> dict[str, int]:
    """Parameter counts of G (mapping, synthesis) and D, built on the meta device (no memory, instant)."""
    with torch.device("meta"):
        g, d = build_generator(cfg), build_discriminator(cfg)
    return {
        "G": count_parameters(g),
        "G.mapping": count_parameters(g.mapping),
        "G.synthesis": count_parameters(g.synthesis),
        "D": count_parameters(d),
        "num_ws": g.num_ws,
        "stages": int(math.log2(cfg.resolution)) - 2,
        "dims": cfg.dims,
    }


def volume_network_config(resolution: int = 64, **overrides: object) -> NetworkConfig:
    """The 3-D default: StyleGAN2 with the smaller volume channel counts (fits 64^3 on one GPU)."""
    base = NetworkConfig(arch="stylegan2", resolution=resolution, dims=3, channel_base=stylegan2_3d.VOLUME_CHANNEL_BASE,
                         channel_max=stylegan2_3d.VOLUME_CHANNEL_MAX)
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def parameter_breakdown(cfg: NetworkConfig) -> list[tuple[str, int]]:
    """(module name, parameter count) for each top-level part of G and D, in forward order."""
    with torch.device("meta"):
        g, d = build_generator(cfg), build_discriminator(cfg)
    rows = [("G.mapping", count_parameters(g.mapping))]
    rows += [(f"G.synthesis.{name}", count_parameters(m)) for name, m in g.synthesis.named_children()]
    children = dict(d.named_children())
    order = [n for n in children if n.startswith("b") and n != "b4"] + [n for n in children if not n.startswith("b")]
    rows += [(f"D.{name}", count_parameters(children[name])) for name in order + ["b4"]]
    return rows


__all__ = ["ARCHS", "PRESETS", "Generator", "build_discriminator", "build_generator", "count_parameters",
           "parameter_breakdown", "parameter_counts", "preset_config", "validate_config", "volume_network_config"]
