"""The 2-D and 3-D twins merged by `dims` (layers.EqualConv, stylegan2.modulated_conv, SynthesisBlock) build
exactly the networks they built before: the same state_dict keys and shapes (old checkpoints load), the same
parameter counts, and the same outputs for the same seeds (the same noise draws, in the same order).

EXPECTED was computed with the code before the merge (commit 70d8068) and is stored here as literal values;
the test fails on any change of a key, a shape, a count or an output checksum (relative 1e-5)."""

from __future__ import annotations

import pytest
import torch

from stylemri.config import NetworkConfig
from stylemri.networks import build_discriminator, build_generator

TINY = dict(resolution=8, img_channels=1, c_dim=2, z_dim=8, w_dim=8, channel_base=32, channel_max=8,
            mbstd_group=2, map_layers=2, d_map_layers=2)
CONFIGS = {
    "stylegan2_2d": NetworkConfig(arch="stylegan2", **TINY),
    "stylegan_2d": NetworkConfig(arch="stylegan", **TINY),
    "stylegan2_3d": NetworkConfig(arch="stylegan2", dims=3, conv_clamp=256.0, **TINY),
    "stylegan2_3d_uncond": NetworkConfig(arch="stylegan2", dims=3, **dict(TINY, c_dim=0, img_channels=2)),
}


def checksum(t: torch.Tensor) -> list[float]:
    """Sum, absolute sum and a ramp-weighted sum: a permutation or a sign flip changes one of them."""
    t = t.detach().double().flatten()
    w = torch.linspace(-1, 1, t.numel(), dtype=torch.float64)
    return [round(float(t.sum()), 9), round(float(t.abs().sum()), 9), round(float((t * w).sum()), 9)]


def fingerprint(cfg: NetworkConfig) -> dict:
    """Keys and shapes, parameter counts, output checksums of G (every noise mode, both modconv paths) and D."""
    torch.manual_seed(0)
    G, D = build_generator(cfg), build_discriminator(cfg)
    keys = {name: [f"{k} {tuple(v.shape)}" for k, v in m.state_dict().items()] for name, m in (("G", G), ("D", D))}
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in (("G", G), ("D", D))}
    with torch.no_grad():  # zero at init: without this the noise inputs would not reach the outputs
        for k, p in G.named_parameters():
            if k.endswith("noise_strength"):
                p.fill_(0.3)
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(3, cfg.z_dim, generator=gen)
    c = torch.nn.functional.one_hot(torch.tensor([0, 1, 1]), cfg.c_dim).float() if cfg.c_dim else None
    out = {}
    with torch.no_grad():
        ws = G.mapping(z, c)
        for mode in ("random", "const", "none"):
            kwargs = [{}] if cfg.arch == "stylegan" else [dict(fused_modconv=False), dict(fused_modconv=True)]
            for kw in kwargs:
                torch.manual_seed(2)
                img = G.synthesis(ws, noise_mode=mode, **kw)
                out[f"G {mode} {'fused' if kw.get('fused_modconv') else 'plain'}"] = checksum(img)
        out["D"] = checksum(D(img, c))
        if cfg.arch == "stylegan":
            torch.manual_seed(2)
            small = G.synthesis(ws, noise_mode="random", stage=0, alpha=1.0)
            out["G stage0"] = checksum(small)
            out["D stage1 alpha0.5"] = checksum(D(img, c, stage=1, alpha=0.5))
    return {"keys": keys, "counts": counts, "outputs": out}


EXPECTED = {
    'stylegan2_2d': {
        'keys': {
            'G': [
                'synthesis.b4.const (8, 4, 4)',
                'synthesis.b4.conv1.weight (8, 8, 3, 3)',
                'synthesis.b4.conv1.noise_strength ()',
                'synthesis.b4.conv1.bias (8,)',
                'synthesis.b4.conv1.noise_const (4, 4)',
                'synthesis.b4.conv1.affine.weight (8, 8)',
                'synthesis.b4.conv1.affine.bias (8,)',
                'synthesis.b4.torgb.weight (1, 8, 1, 1)',
                'synthesis.b4.torgb.bias (1,)',
                'synthesis.b4.torgb.affine.weight (8, 8)',
                'synthesis.b4.torgb.affine.bias (8,)',
                'synthesis.b8.conv0.weight (4, 8, 3, 3)',
                'synthesis.b8.conv0.noise_strength ()',
                'synthesis.b8.conv0.bias (4,)',
                'synthesis.b8.conv0.noise_const (8, 8)',
                'synthesis.b8.conv0.affine.weight (8, 8)',
                'synthesis.b8.conv0.affine.bias (8,)',
                'synthesis.b8.conv1.weight (4, 4, 3, 3)',
                'synthesis.b8.conv1.noise_strength ()',
                'synthesis.b8.conv1.bias (4,)',
                'synthesis.b8.conv1.noise_const (8, 8)',
                'synthesis.b8.conv1.affine.weight (4, 8)',
                'synthesis.b8.conv1.affine.bias (4,)',
                'synthesis.b8.torgb.weight (1, 4, 1, 1)',
                'synthesis.b8.torgb.bias (1,)',
                'synthesis.b8.torgb.affine.weight (4, 8)',
                'synthesis.b8.torgb.affine.bias (4,)',
                'mapping.w_avg (8,)',
                'mapping.embed.weight (8, 2)',
                'mapping.embed.bias (8,)',
                'mapping.fc0.weight (8, 16)',
                'mapping.fc0.bias (8,)',
                'mapping.fc1.weight (8, 8)',
                'mapping.fc1.bias (8,)',
            ],
            'D': [
                'b8.fromrgb.weight (4, 1, 1, 1)',
                'b8.fromrgb.bias (4,)',
                'b8.conv0.weight (4, 4, 3, 3)',
                'b8.conv0.bias (4,)',
                'b8.conv1.weight (8, 4, 3, 3)',
                'b8.conv1.bias (8,)',
                'b8.skip.weight (8, 4, 1, 1)',
                'mapping.embed.weight (8, 2)',
                'mapping.embed.bias (8,)',
                'mapping.fc0.weight (8, 8)',
                'mapping.fc0.bias (8,)',
                'mapping.fc1.weight (8, 8)',
                'mapping.fc1.bias (8,)',
                'b4.conv.weight (8, 9, 3, 3)',
                'b4.conv.bias (8,)',
                'b4.fc.weight (8, 128)',
                'b4.fc.bias (8,)',
                'b4.out.weight (8, 8)',
                'b4.out.bias (8,)',
            ],
        },
        'counts': {'G': 1689, 'D': 2412},
        'outputs': {
            'G random plain': [-481.602957804, 501.691903252, 233.750732579],
            'G random fused': [-481.602983061, 501.691928808, 233.750741],
            'G const plain': [-514.047865115, 532.568471186, 255.882555014],
            'G const fused': [-514.047878381, 532.568484109, 255.882553303],
            'G none plain': [-439.256380711, 457.972169165, 202.054301112],
            'G none fused': [-439.256414983, 457.972204942, 202.054315015],
            'D': [-7.37531127, 7.37531127, 6.541614562],
        },
    },
    'stylegan_2d': {
        'keys': {
            'G': [
                'synthesis.torgb.4.weight (1, 8, 1, 1)',
                'synthesis.torgb.4.bias (1,)',
                'synthesis.torgb.8.weight (1, 4, 1, 1)',
                'synthesis.torgb.8.bias (1,)',
                'synthesis.b4.const (8, 4, 4)',
                'synthesis.b4.conv0.noise_strength (8,)',
                'synthesis.b4.conv0.bias (8,)',
                'synthesis.b4.conv0.noise_const (4, 4)',
                'synthesis.b4.conv0.affine.weight (16, 8)',
                'synthesis.b4.conv0.affine.bias (16,)',
                'synthesis.b4.conv1.noise_strength (8,)',
                'synthesis.b4.conv1.bias (8,)',
                'synthesis.b4.conv1.noise_const (4, 4)',
                'synthesis.b4.conv1.conv.weight (8, 8, 3, 3)',
                'synthesis.b4.conv1.affine.weight (16, 8)',
                'synthesis.b4.conv1.affine.bias (16,)',
                'synthesis.b8.conv0.noise_strength (4,)',
                'synthesis.b8.conv0.bias (4,)',
                'synthesis.b8.conv0.noise_const (8, 8)',
                'synthesis.b8.conv0.conv.weight (4, 8, 3, 3)',
                'synthesis.b8.conv0.affine.weight (8, 8)',
                'synthesis.b8.conv0.affine.bias (8,)',
                'synthesis.b8.conv1.noise_strength (4,)',
                'synthesis.b8.conv1.bias (4,)',
                'synthesis.b8.conv1.noise_const (8, 8)',
                'synthesis.b8.conv1.conv.weight (4, 4, 3, 3)',
                'synthesis.b8.conv1.affine.weight (8, 8)',
                'synthesis.b8.conv1.affine.bias (8,)',
                'mapping.w_avg (8,)',
                'mapping.embed.weight (8, 2)',
                'mapping.embed.bias (8,)',
                'mapping.fc0.weight (8, 16)',
                'mapping.fc0.bias (8,)',
                'mapping.fc1.weight (8, 8)',
                'mapping.fc1.bias (8,)',
            ],
            'D': [
                'fromrgb.4.weight (8, 1, 1, 1)',
                'fromrgb.4.bias (8,)',
                'fromrgb.8.weight (4, 1, 1, 1)',
                'fromrgb.8.bias (4,)',
                'b8.conv0.weight (4, 4, 3, 3)',
                'b8.conv0.bias (4,)',
                'b8.conv1.weight (8, 4, 3, 3)',
                'b8.conv1.bias (8,)',
                'mapping.embed.weight (8, 2)',
                'mapping.embed.bias (8,)',
                'mapping.fc0.weight (8, 8)',
                'mapping.fc0.bias (8,)',
                'mapping.fc1.weight (8, 8)',
                'mapping.fc1.bias (8,)',
                'b4.conv.weight (8, 9, 3, 3)',
                'b4.conv.bias (8,)',
                'b4.fc.weight (8, 128)',
                'b4.fc.bias (8,)',
                'b4.out.weight (8, 8)',
                'b4.out.bias (8,)',
            ],
        },
        'counts': {'G': 1862, 'D': 2396},
        'outputs': {
            'G random plain': [42.671878607, 122.96136205, -25.171793156],
            'G const plain': [42.671873197, 124.295303732, -26.019050632],
            'G none plain': [42.671870449, 124.670704178, -20.983671985],
            'D': [-0.778417215, 0.778417215, -0.033654943],
            'G stage0': [16.393317237, 56.4948861, -5.43169934],
            'D stage1 alpha0.5': [-0.632169943, 0.723743875, -0.465019215],
        },
    },
    'stylegan2_3d': {
        'keys': {
            'G': [
                'synthesis.b4.const (8, 4, 4, 4)',
                'synthesis.b4.conv1.weight (8, 8, 3, 3, 3)',
                'synthesis.b4.conv1.noise_strength ()',
                'synthesis.b4.conv1.bias (8,)',
                'synthesis.b4.conv1.noise_const (4, 4, 4)',
                'synthesis.b4.conv1.affine.weight (8, 8)',
                'synthesis.b4.conv1.affine.bias (8,)',
                'synthesis.b4.torgb.weight (1, 8, 1, 1, 1)',
                'synthesis.b4.torgb.bias (1,)',
                'synthesis.b4.torgb.affine.weight (8, 8)',
                'synthesis.b4.torgb.affine.bias (8,)',
                'synthesis.b8.conv0.weight (4, 8, 3, 3, 3)',
                'synthesis.b8.conv0.noise_strength ()',
                'synthesis.b8.conv0.bias (4,)',
                'synthesis.b8.conv0.noise_const (8, 8, 8)',
                'synthesis.b8.conv0.affine.weight (8, 8)',
                'synthesis.b8.conv0.affine.bias (8,)',
                'synthesis.b8.conv1.weight (4, 4, 3, 3, 3)',
                'synthesis.b8.conv1.noise_strength ()',
                'synthesis.b8.conv1.bias (4,)',
                'synthesis.b8.conv1.noise_const (8, 8, 8)',
                'synthesis.b8.conv1.affine.weight (4, 8)',
                'synthesis.b8.conv1.affine.bias (4,)',
                'synthesis.b8.torgb.weight (1, 4, 1, 1, 1)',
                'synthesis.b8.torgb.bias (1,)',
                'synthesis.b8.torgb.affine.weight (4, 8)',
                'synthesis.b8.torgb.affine.bias (4,)',
                'mapping.w_avg (8,)',
                'mapping.embed.weight (8, 2)',
                'mapping.embed.bias (8,)',
                'mapping.fc0.weight (8, 16)',
                'mapping.fc0.bias (8,)',
                'mapping.fc1.weight (8, 8)',
                'mapping.fc1.bias (8,)',
            ],
            'D': [
                'b8.fromrgb.weight (4, 1, 1, 1, 1)',
                'b8.fromrgb.bias (4,)',
                'b8.conv0.weight (4, 4, 3, 3, 3)',
                'b8.conv0.bias (4,)',
                'b8.conv1.weight (8, 4, 3, 3, 3)',
                'b8.conv1.bias (8,)',
                'b8.skip.weight (8, 4, 1, 1, 1)',
                'mapping.embed.weight (8, 2)',
                'mapping.embed.bias (8,)',
                'mapping.fc0.weight (8, 8)',
                'mapping.fc0.bias (8,)',
                'mapping.fc1.weight (8, 8)',
                'mapping.fc1.bias (8,)',
                'b4.conv.weight (8, 9, 3, 3, 3)',
                'b4.conv.bias (8,)',
                'b4.fc.weight (8, 512)',
                'b4.fc.bias (8,)',
                'b4.out.weight (8, 8)',
                'b4.out.bias (8,)',
            ],
        },
        'counts': {'G': 4089, 'D': 7644},
        'outputs': {
            'G random plain': [6.49283092, 550.582454283, 13.788601288],
            'G random fused': [6.492879073, 550.582438217, 13.788561302],
            'G const plain': [21.789372555, 507.387595122, -22.08173011],
            'G const fused': [21.789431222, 507.387602438, -22.081770624],
            'G none plain': [22.50660324, 515.503013584, -11.294120093],
            'G none fused': [22.506669533, 515.503013689, -11.294159069],
            'D': [0.098308635, 0.098308635, 0.059826414],
        },
    },
    'stylegan2_3d_uncond': {
        'keys': {
            'G': [
                'synthesis.b4.const (8, 4, 4, 4)',
                'synthesis.b4.conv1.weight (8, 8, 3, 3, 3)',
                'synthesis.b4.conv1.noise_strength ()',
                'synthesis.b4.conv1.bias (8,)',
                'synthesis.b4.conv1.noise_const (4, 4, 4)',
                'synthesis.b4.conv1.affine.weight (8, 8)',
                'synthesis.b4.conv1.affine.bias (8,)',
                'synthesis.b4.torgb.weight (2, 8, 1, 1, 1)',
                'synthesis.b4.torgb.bias (2,)',
                'synthesis.b4.torgb.affine.weight (8, 8)',
                'synthesis.b4.torgb.affine.bias (8,)',
                'synthesis.b8.conv0.weight (4, 8, 3, 3, 3)',
                'synthesis.b8.conv0.noise_strength ()',
                'synthesis.b8.conv0.bias (4,)',
                'synthesis.b8.conv0.noise_const (8, 8, 8)',
                'synthesis.b8.conv0.affine.weight (8, 8)',
                'synthesis.b8.conv0.affine.bias (8,)',
                'synthesis.b8.conv1.weight (4, 4, 3, 3, 3)',
                'synthesis.b8.conv1.noise_strength ()',
                'synthesis.b8.conv1.bias (4,)',
                'synthesis.b8.conv1.noise_const (8, 8, 8)',
                'synthesis.b8.conv1.affine.weight (4, 8)',
                'synthesis.b8.conv1.affine.bias (4,)',
                'synthesis.b8.torgb.weight (2, 4, 1, 1, 1)',
                'synthesis.b8.torgb.bias (2,)',
                'synthesis.b8.torgb.affine.weight (4, 8)',
                'synthesis.b8.torgb.affine.bias (4,)',
                'mapping.w_avg (8,)',
                'mapping.fc0.weight (8, 8)',
                'mapping.fc0.bias (8,)',
                'mapping.fc1.weight (8, 8)',
                'mapping.fc1.bias (8,)',
            ],
            'D': [
                'b8.fromrgb.weight (4, 2, 1, 1, 1)',
                'b8.fromrgb.bias (4,)',
                'b8.conv0.weight (4, 4, 3, 3, 3)',
                'b8.conv0.bias (4,)',
                'b8.conv1.weight (8, 4, 3, 3, 3)',
                'b8.conv1.bias (8,)',
                'b8.skip.weight (8, 4, 1, 1, 1)',
                'b4.conv.weight (8, 9, 3, 3, 3)',
                'b4.conv.bias (8,)',
                'b4.fc.weight (8, 512)',
                'b4.fc.bias (8,)',
                'b4.out.weight (1, 8)',
                'b4.out.bias (1,)',
            ],
        },
        'counts': {'G': 4015, 'D': 7417},
        'outputs': {
            'G random plain': [1009.535451866, 2602.625639067, 491.917198579],
            'G random fused': [1009.535560347, 2602.62559167, 491.91711399],
            'G const plain': [798.567923251, 2159.660465846, 308.971122237],
            'G const fused': [798.56796953, 2159.660456067, 308.971061532],
            'G none plain': [914.438313795, 2385.052983506, 376.398572062],
            'G none fused': [914.438389423, 2385.052959004, 376.398504218],
            'D': [-0.78927201, 0.78927201, -0.172261149],
        },
    },
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_merged_twins_build_the_same_networks(name: str) -> None:
    got, want = fingerprint(CONFIGS[name]), EXPECTED[name]
    assert got["keys"] == want["keys"]  # names, order and shapes: a checkpoint of the old code loads
    assert got["counts"] == want["counts"]
    assert got["outputs"].keys() == want["outputs"].keys()
    for key, values in want["outputs"].items():
        assert got["outputs"][key] == pytest.approx(values, rel=1e-5, abs=1e-5), key
