"""Generators and discriminators: shapes, gradients, progressive growing, truncation, determinism."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stylemri.config import NetworkConfig
from stylemri.errors import UserError
from stylemri.networks import (
    ARCHS, build_discriminator, build_generator, count_parameters, parameter_counts, preset_config,
)
from stylemri.networks.sampling import condition, one_hot


def tiny(arch: str, resolution: int = 16, **kw) -> NetworkConfig:
    """Small but complete networks: every layer type present, a few channels each."""
    base = dict(arch=arch, resolution=resolution, z_dim=16, w_dim=16, channel_base=8 * resolution,
                channel_max=16, map_layers=2, d_map_layers=2, mbstd_group=2)
    base.update(kw)
    return NetworkConfig(**base)


def labels(n: int, c_dim: int) -> torch.Tensor | None:
    return F.one_hot(torch.arange(n) % c_dim, c_dim).float() if c_dim else None


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("resolution", [8, 16, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("c_dim", [0, 3])
def test_shapes(arch, resolution, channels, c_dim):
    torch.manual_seed(0)
    cfg = tiny(arch, resolution, img_channels=channels, c_dim=c_dim, channel_base=4 * resolution, channel_max=8)
    g, d = build_generator(cfg), build_discriminator(cfg)
    z, c = torch.randn(4, 16), labels(4, c_dim)
    ws = g.mapping(z, c)
    assert ws.shape == (4, g.num_ws, g.w_dim)
    assert g.num_ws == 2 * (resolution.bit_length() - 1) - 2  # 18 at 1024 px, as in both papers
    img = g.synthesis(ws)
    assert img.shape == (4, channels, resolution, resolution) and img.dtype == torch.float32
    assert torch.isfinite(img).all()
    logits = d(img, c)
    assert logits.shape == (4, 1) and torch.isfinite(logits).all()
    assert (g.z_dim, g.c_dim, g.w_dim, g.img_channels, g.resolution) == (16, c_dim, 16, channels, resolution)
    assert g.w_avg.shape == (16,)


@pytest.mark.parametrize("arch", ARCHS)
def test_progressive_stage_shapes(arch):
    cfg = tiny(arch, 32, c_dim=2)
    g, d = build_generator(cfg), build_discriminator(cfg)
    ws = g.mapping(torch.randn(2, 16), labels(2, 2))
    for stage in range(4):
        img = g.synthesis(ws, stage=stage, alpha=0.5)
        expected = 4 * 2 ** stage if arch == "stylegan" else 32  # StyleGAN2 ignores stage
        assert img.shape == (2, 1, expected, expected)
        assert d(img, labels(2, 2), stage=stage, alpha=0.5).shape == (2, 1)


@pytest.mark.parametrize("arch", ARCHS)
def test_256_forward(arch):
    torch.manual_seed(0)
    cfg = NetworkConfig(arch=arch, resolution=256, img_channels=1, c_dim=2, z_dim=16, w_dim=16, channel_base=256,
                        channel_max=8, map_layers=1, d_map_layers=1)
    g, d = build_generator(cfg), build_discriminator(cfg)
    with torch.no_grad():
        img = g(torch.randn(2, 16), labels(2, 2), noise_mode="const")
        assert img.shape == (2, 1, 256, 256) and torch.isfinite(img).all()
        assert d(img, labels(2, 2)).shape == (2, 1)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("c_dim", [0, 2])
def test_gradients_reach_every_parameter(arch, c_dim):
    torch.manual_seed(0)
    cfg = tiny(arch, 16, c_dim=c_dim)
    g, d = build_generator(cfg), build_discriminator(cfg)
    with torch.no_grad():  # noise strengths start at zero, which would zero the other factor's gradient
        for m in (g, d):
            for name, p in m.named_parameters():
                if name.endswith("noise_strength"):
                    p.fill_(0.1)
    c = labels(4, c_dim)
    # Progressive StyleGAN only uses a stage's toRGB/fromRGB while that stage is active: visit all.
    stages = range(3) if arch == "stylegan" else [None]
    for stage in stages:
        img = g(torch.randn(4, 16), c, stage=stage, alpha=0.5)
        (d(img, c, stage=stage, alpha=0.5).sum() + img.square().mean()).backward()
    for m in (g, d):
        for name, p in m.named_parameters():
            assert p.grad is not None, name
            assert p.grad.abs().sum() > 0, name


def test_stylegan2_every_w_is_used():
    """Style mixing needs one w per layer: each of the num_ws entries must change the image."""
    torch.manual_seed(0)
    g = build_generator(tiny("stylegan2", 16)).eval()
    ws = g.mapping(torch.randn(1, 16), None)
    with torch.no_grad():
        base = g.synthesis(ws, noise_mode="const")
        for i in range(g.num_ws):
            mixed = ws.clone()
            mixed[:, i] = torch.randn(16)
            assert not torch.allclose(g.synthesis(mixed, noise_mode="const"), base), i


def test_stylegan2_grouped_and_scaled_modconv_give_the_same_image():
    torch.manual_seed(0)
    g = build_generator(tiny("stylegan2", 16, c_dim=2))
    ws = g.mapping(torch.randn(3, 16), labels(3, 2))
    with torch.no_grad():
        a = g.synthesis(ws, noise_mode="const", fused_modconv=True)
        b = g.synthesis(ws, noise_mode="const", fused_modconv=False)
    assert (a - b).abs().max().item() < 1e-5


def test_stylegan_ws_above_the_stage_are_unused():
    torch.manual_seed(0)
    g = build_generator(tiny("stylegan", 16))
    ws = g.mapping(torch.randn(2, 16), None)
    with torch.no_grad():
        a = g.synthesis(ws, noise_mode="const", stage=1)
        ws2 = ws.clone()
        ws2[:, 4:] = torch.randn_like(ws2[:, 4:])
        assert torch.equal(g.synthesis(ws2, noise_mode="const", stage=1), a)
        ws2[:, 3] += 1
        assert not torch.equal(g.synthesis(ws2, noise_mode="const", stage=1), a)


def test_synthesis_is_differentiable_in_ws_with_double_backward():
    """Path-length regularisation: grad of <img, noise> wrt ws, then backprop that into G's weights."""
    torch.manual_seed(0)
    for arch in ARCHS:
        g = build_generator(tiny(arch, 16)).train()
        ws = g.mapping(torch.randn(2, 16), None).detach().requires_grad_(True)
        img = g.synthesis(ws)
        (gw,) = torch.autograd.grad((img * torch.randn_like(img)).sum(), ws, create_graph=True)
        gw.square().sum().backward()
        assert g.synthesis.b8.conv1.affine.weight.grad.abs().sum() > 0


def test_r1_double_backward_through_discriminator():
    torch.manual_seed(0)
    for arch in ARCHS:
        d = build_discriminator(tiny(arch, 16, c_dim=2))
        real = torch.randn(4, 1, 16, 16).requires_grad_(True)
        (gr,) = torch.autograd.grad(d(real, labels(4, 2)).sum(), real, create_graph=True)
        gr.square().sum().backward()
        first = d.b16.fromrgb if arch == "stylegan2" else d.fromrgb["16"]
        assert first.weight.grad.abs().sum() > 0 and d.b4.fc.weight.grad.abs().sum() > 0
        assert d.mapping.embed.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("stage", [1, 2])
def test_progressive_generator_fade_in(stage):
    torch.manual_seed(0)
    g = build_generator(tiny("stylegan", 16))
    ws = g.mapping(torch.randn(3, 16), None)
    syn = g.synthesis
    with torch.no_grad():
        full = syn(ws, "const", stage=stage, alpha=1.0)
        prev = syn(ws, "const", stage=stage - 1, alpha=1.0)
        # alpha = 0: exactly the previous stage, nearest-upsampled.
        assert torch.equal(syn(ws, "const", stage=stage, alpha=0.0), F.interpolate(prev, scale_factor=2, mode="nearest"))
        # alpha = 1: the stage-k network alone; the previous toRGB plays no part.
        old = syn.torgb[str(2 ** (stage + 1))]
        old.weight.add_(5.0)
        assert torch.equal(syn(ws, "const", stage=stage, alpha=1.0), full)
        old.weight.sub_(5.0)
        half = syn(ws, "const", stage=stage, alpha=0.25)
        up = F.interpolate(prev, scale_factor=2, mode="nearest")
        assert torch.allclose(half, up + 0.25 * (full - up), atol=1e-5)
    assert torch.equal(syn(ws, "const", stage=None, alpha=0.3), syn(ws, "const", stage=2, alpha=1.0))
    assert g.num_stages == syn.num_stages == 2


@pytest.mark.parametrize("stage", [1, 2])
def test_progressive_discriminator_fade_in(stage):
    torch.manual_seed(0)
    d = build_discriminator(tiny("stylegan", 16, c_dim=2))
    c = labels(4, 2)
    img = torch.randn(4, 1, 4 * 2 ** stage, 4 * 2 ** stage)
    with torch.no_grad():
        lo = d(F.avg_pool2d(img, 2), c, stage=stage - 1, alpha=1.0)
        assert torch.allclose(d(img, c, stage=stage, alpha=0.0), lo, atol=1e-6)
        hi = d(img, c, stage=stage, alpha=1.0)
        d.fromrgb[str(2 ** (stage + 1))].weight.add_(5.0)
        assert torch.equal(d(img, c, stage=stage, alpha=1.0), hi)
        assert not torch.allclose(d(img, c, stage=stage, alpha=0.5), hi)
        # A full-resolution image at a lower stage is average-pooled to the stage resolution.
        big = F.interpolate(img, scale_factor=4, mode="nearest")
        assert torch.allclose(d(big, c, stage=stage, alpha=1.0), hi, atol=1e-5)
    with pytest.raises(ValueError, match="stage 9"):
        d(img, c, stage=9)
    with pytest.raises(ValueError, match="alpha"):
        d(img, c, stage=1, alpha=1.5)


@pytest.mark.parametrize("arch", ARCHS)
def test_truncation(arch):
    torch.manual_seed(0)
    g = build_generator(tiny(arch, 16, c_dim=2))
    z, c = torch.randn(5, 16), labels(5, 2)
    for _ in range(3):
        g.mapping(torch.randn(64, 16), labels(64, 2), update_w_avg=True)
    assert g.w_avg.abs().sum() > 0
    ws = g.mapping(z, c)
    assert torch.equal(g.mapping(z, c, psi=1.0), ws)
    w0 = g.mapping(z, c, psi=0.0)
    assert torch.allclose(w0, g.w_avg.expand_as(w0), atol=1e-6)
    cut = g.mapping(z, c, psi=0.5, cutoff=2)
    assert torch.allclose(cut[:, :2], g.w_avg + 0.5 * (ws[:, :2] - g.w_avg), atol=1e-6)
    assert torch.equal(cut[:, 2:], ws[:, 2:])


def test_w_avg_tracks_with_beta_0995():
    torch.manual_seed(0)
    g = build_generator(tiny("stylegan2", 16))
    z = torch.randn(8, 16)
    before = g.w_avg.clone()
    ws = g.mapping(z, None, update_w_avg=True)
    assert torch.allclose(g.w_avg, before + (ws[:, 0].mean(0) - before) * 0.005, atol=1e-7)
    after = g.w_avg.clone()
    g.mapping(z, None)  # default: no update
    assert torch.equal(g.w_avg, after)
    assert "mapping.w_avg" in g.state_dict()


@pytest.mark.parametrize("arch", ARCHS)
def test_fixed_seed_and_const_noise_are_reproducible(arch):
    cfg = tiny(arch, 16, c_dim=2)
    torch.manual_seed(1)
    g1 = build_generator(cfg)
    torch.manual_seed(1)
    g2 = build_generator(cfg)
    with torch.no_grad():
        for m in (g1, g2):
            for name, p in m.named_parameters():
                if name.endswith("noise_strength"):
                    p.fill_(0.5)
    z, c = torch.randn(3, 16, generator=torch.Generator().manual_seed(7)), labels(3, 2)
    a = g1(z, c, noise_mode="const")
    assert torch.equal(a, g1(z, c, noise_mode="const"))
    assert torch.equal(a, g2(z, c, noise_mode="const"))
    torch.manual_seed(3)
    r1 = g1(z, c, noise_mode="random")
    torch.manual_seed(3)
    assert torch.equal(r1, g1(z, c, noise_mode="random"))
    assert not torch.allclose(r1, a)
    assert not torch.allclose(g1(z, c, noise_mode="none"), a)
    with pytest.raises(ValueError, match="noise_mode"):
        g1(z, c, noise_mode="fixed")


@pytest.mark.parametrize("arch", ARCHS)
def test_state_dict_round_trip_reproduces_images(arch):
    cfg = tiny(arch, 16)
    torch.manual_seed(0)
    g = build_generator(cfg)
    g.mapping(torch.randn(16, 16), None, update_w_avg=True)
    sd = g.state_dict()
    assert not any("resample_filter" in k or "blur_filter" in k for k in sd)  # constants are not saved
    torch.manual_seed(99)
    h = build_generator(cfg)
    h.load_state_dict(sd)
    z = torch.randn(2, 16)
    assert torch.equal(g(z, None, psi=0.7, noise_mode="const"), h(z, None, psi=0.7, noise_mode="const"))


@pytest.mark.parametrize("arch", ARCHS)
def test_bfloat16_autocast_runs(arch):
    torch.manual_seed(0)
    cfg = tiny(arch, 16, c_dim=2, conv_clamp=256.0)
    g, d = build_generator(cfg), build_discriminator(cfg)
    z, c = torch.randn(4, 16), labels(4, 2)
    with torch.no_grad():
        ref_img = g(z, c, noise_mode="const")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            img = g(z, c, noise_mode="const")
            logits = d(img, c)
    assert img.dtype == torch.float32 and logits.dtype == torch.float32
    assert torch.isfinite(img).all() and torch.isfinite(logits).all()
    assert (img - ref_img).abs().mean() < 0.1 * ref_img.abs().mean() + 1e-3


def test_conv_clamp_bounds_activations():
    torch.manual_seed(0)
    g = build_generator(tiny("stylegan2", 16, conv_clamp=0.05))
    with torch.no_grad():
        img = g(torch.randn(2, 16), None, noise_mode="const")
    # toRGB outputs are clamped to +-0.05 at each of the 3 resolutions; FIR upsampling keeps the sum bounded.
    assert img.abs().max() <= 3 * 0.05 * 1.6
    unclamped = build_generator(tiny("stylegan2", 16))
    unclamped.load_state_dict(g.state_dict())
    assert unclamped(torch.randn(2, 16), None, noise_mode="const").abs().max() > img.abs().max()


@pytest.mark.parametrize("arch", ARCHS)
def test_clamp_output_is_the_linear_image_clamped_on_every_synthesis_path(arch):
    torch.manual_seed(0)
    plain = build_generator(tiny(arch, 16, c_dim=2))
    clamped = build_generator(tiny(arch, 16, c_dim=2, clamp_output=True))
    assert list(clamped.state_dict()) == list(plain.state_dict())  # the same checkpoint format
    z, c = torch.randn(4, 16), labels(4, 2)
    with torch.no_grad():
        while (plain.synthesis(plain.mapping(z, c), noise_mode="const").abs() > 1).float().mean() < 0.2:
            for p in plain.synthesis.parameters():
                p.mul_(1.25)  # until a fifth of the pixels lie outside [-1, 1]
    clamped.load_state_dict(plain.state_dict())
    ws = plain.mapping(z, c).detach().requires_grad_(True)
    linear = plain.synthesis(ws, noise_mode="const")
    assert 0.2 <= (linear.abs() > 1).float().mean() < 1
    img = clamped.synthesis(ws, noise_mode="const")  # the path training, generation and export take
    assert torch.equal(img, linear.clamp(-1, 1))
    assert torch.equal(clamped(z, c, noise_mode="const"), img)
    compiled = torch.compile(clamped.synthesis, backend="eager")  # what --compile trains with
    assert torch.equal(compiled(ws, noise_mode="const"), img)
    (grad,) = torch.autograd.grad(img.sum(), ws)  # gradients flow through the pixels inside the range
    inside = (linear.abs() < 1).float()
    (ref,) = torch.autograd.grad((linear * inside).sum(), ws)
    assert grad.abs().sum() > 0 and torch.allclose(grad, ref, atol=1e-5)


def test_label_and_shape_errors():
    g = build_generator(tiny("stylegan2", 16, c_dim=2))
    d = build_discriminator(tiny("stylegan2", 16, c_dim=2))
    with pytest.raises(ValueError, match="labels"):
        g(torch.randn(2, 16), None)
    with pytest.raises(ValueError, match="labels"):
        g(torch.randn(2, 16), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="images"):
        d(torch.randn(2, 1, 8, 8), labels(2, 2))
    with pytest.raises(ValueError, match="ws"):
        g.synthesis(torch.randn(2, 3, 16))
    uncond = build_generator(tiny("stylegan", 16))
    assert uncond(torch.randn(2, 16), torch.zeros(2, 0)).shape == (2, 1, 16, 16)  # empty labels are fine


@pytest.mark.parametrize("field,value", [("arch", "stylegan3"), ("resolution", 48), ("resolution", 2048),
                                         ("c_dim", -1), ("map_layers", 0), ("mbstd_features", 3)])
def test_config_validation(field, value):
    with pytest.raises(UserError, match=field.replace("_", "[-_]")):  # the field or its flag
        build_generator(NetworkConfig(**{field: value}))


def test_parameter_counts_match_the_official_implementation():
    """Counts measured with NVlabs/stylegan2-ada-pytorch (training/networks.py) for the same configs."""
    auto256 = parameter_counts(preset_config("stylegan2-auto", resolution=256))
    assert (auto256["G"], auto256["G.mapping"], auto256["D"]) == (23_186_516, 525_312, 24_000_961)
    assert auto256["num_ws"] == 14
    cond = parameter_counts(preset_config("stylegan2-auto", resolution=256, c_dim=2))
    assert (cond["G"], cond["D"]) == (23_450_196, 26_365_888)
    f = parameter_counts(preset_config("stylegan2-config-f", img_channels=3))
    assert (f["G"], f["D"]) == (30_370_060, 29_012_513)
    sg1 = parameter_counts(preset_config("stylegan-ffhq", img_channels=3))  # the StyleGAN paper: 26.2M
    assert round(sg1["G"] / 1e6, 1) == 26.2
    cfg = tiny("stylegan", 16, c_dim=2)
    counts = parameter_counts(cfg)
    assert counts["G"] == count_parameters(build_generator(cfg)) and counts["D"] == count_parameters(build_discriminator(cfg))


def test_one_hot_is_empty_for_an_unconditional_model_and_exact_otherwise():
    """One label encoding: (N, 0) for c_dim 0 (what every network reads as no labels, and what batches and
    concatenates with covariates), F.one_hot for a conditional model, from lists or tensors alike."""
    empty = one_hot([None, None, None], 0)
    assert empty.shape == (3, 0) and empty.dtype == torch.float32
    assert one_hot(torch.tensor([1, 0]), 0).shape == (2, 0)  # indices are ignored without classes
    g = build_generator(tiny("stylegan2", 8))
    z = torch.randn(3, 16)
    torch.manual_seed(0)
    with_empty = g(z, empty, noise_mode="const")
    assert torch.equal(with_empty, g(z, None, noise_mode="const"))
    cov = torch.rand(3, 2)
    assert torch.equal(condition(empty, cov, 2), cov)  # a covariate-only model's condition is its covariates
    assert torch.equal(one_hot([2, 0], 3), F.one_hot(torch.tensor([2, 0]), 3).float())
    assert torch.equal(one_hot(torch.tensor([1, 1]), 2), torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="class for every latent"):
        one_hot([0, None], 2)
    with pytest.raises(ValueError, match="class index 2"):
        one_hot([0, 2], 2)
