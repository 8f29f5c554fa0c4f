"""3-D StyleGAN2: FIR resampling, fused vs reference convs, demodulation, shapes, gradients, `info networks --dims 3`."""

from __future__ import annotations

import pytest
import torch

from stylemri import cli
from stylemri.errors import UserError
from stylemri.networks import build_discriminator, build_generator, parameter_counts, volume_network_config
from stylemri.networks.layers import FILTER_STYLEGAN2
from stylemri.networks.layers3d import (
    conv3d_resample,
    conv3d_resample_reference,
    downsample3d,
    setup_filter1d,
    upfirdn3d,
    upsample3d,
)
from stylemri.networks.stylegan2 import modulated_conv, modulated_conv_reference

F1 = setup_filter1d(FILTER_STYLEGAN2)


def tiny(res: int = 8, **kw) -> object:
    return volume_network_config(res, z_dim=16, w_dim=16, channel_base=64, channel_max=16, map_layers=2,
                                 d_map_layers=2, mbstd_group=2, **kw)


def test_resampling_keeps_constants_and_sizes():
    x = torch.full((2, 3, 8, 8, 8), 0.7)
    up = upsample3d(x, F1)
    down = downsample3d(x, F1)
    assert up.shape == (2, 3, 16, 16, 16) and down.shape == (2, 3, 4, 4, 4)
    # Away from the zero-padded border a constant stays constant (unit DC gain on each axis).
    assert torch.allclose(up[:, :, 4:-4, 4:-4, 4:-4], torch.full_like(up[:, :, 4:-4, 4:-4, 4:-4], 0.7), atol=1e-6)
    assert torch.allclose(down[:, :, 1:-1, 1:-1, 1:-1], torch.full_like(down[:, :, 1:-1, 1:-1, 1:-1], 0.7), atol=1e-6)


def test_separable_filter_equals_full_3d_kernel():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 6, 6, 6)
    k3 = F1[:, None, None] * F1[None, :, None] * F1[None, None, :]
    full = torch.nn.functional.conv3d(torch.nn.functional.pad(x, [2, 1] * 3), k3.flip([0, 1, 2]).expand(2, 1, 4, 4, 4),
                                      groups=2)
    assert torch.allclose(upfirdn3d(x, F1, pad=(2, 1)), full, atol=1e-6)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2)])
@pytest.mark.parametrize("groups", [1, 2])
def test_conv3d_resample_equals_reference(k, up, down, groups):
    torch.manual_seed(1)
    x = torch.randn(2, 4, 6, 6, 6, dtype=torch.float64)
    w = torch.randn(6, 4 // groups, k, k, k, dtype=torch.float64)
    f = F1.double()
    fast = conv3d_resample(x, w, f, up=up, down=down, groups=groups)
    ref = conv3d_resample_reference(x, w, f, up=up, down=down, groups=groups)
    assert fast.shape == ref.shape == (2, 6, *[6 * up // down] * 3)
    assert torch.allclose(fast, ref, atol=1e-10)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("up", [1, 2])
def test_modulated_conv_equals_reference_and_demodulates(fused, up):
    torch.manual_seed(2)
    x = torch.randn(3, 5, 4, 4, 4, dtype=torch.float64)
    w = torch.randn(7, 5, 3, 3, 3, dtype=torch.float64)
    s = torch.rand(3, 5, dtype=torch.float64) * 2 + 0.1
    out = modulated_conv(x, w, s, up=up, resample_filter=F1.double(), fused=fused)
    ref = modulated_conv_reference(x, w, s, up=up, resample_filter=F1.double())
    assert torch.allclose(out, ref, atol=1e-5)  # the modulation runs in float32
    # Demodulation: unit-variance i.i.d. input -> unit-variance output whatever the styles (interior voxels).
    xb = torch.randn(4, 64, 12, 12, 12, dtype=torch.float64)
    wb = torch.randn(16, 64, 3, 3, 3, dtype=torch.float64)
    sb = torch.rand(4, 64, dtype=torch.float64) * 10
    y = modulated_conv(xb, wb, sb, fused=fused)[:, :, 1:-1, 1:-1, 1:-1]
    assert y.std().item() == pytest.approx(1.0, rel=0.05)
    y_no = modulated_conv(xb, wb, sb, demodulate=False, fused=fused)
    assert y_no.std().item() > 5  # without demodulation the styles' scale passes straight through


@pytest.mark.parametrize("res,c_dim", [(8, 0), (16, 2)])
def test_generator_and_discriminator_shapes_and_gradients(res, c_dim):
    torch.manual_seed(3)
    cfg = tiny(res, c_dim=c_dim)
    G, D = build_generator(cfg), build_discriminator(cfg)
    z = torch.randn(4, 16)
    c = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 1]), 2).float() if c_dim else None
    img = G(z, c)
    assert img.shape == (4, 1, res, res, res) and torch.isfinite(img).all()
    logits = D(img, c)
    assert logits.shape == (4, 1)
    logits.sum().backward()
    for name, p in [*G.named_parameters(), *D.named_parameters()]:
        if "noise_strength" in name:
            continue  # zero-initialised scalar: its gradient can be anything, but it must exist
        assert p.grad is not None, name
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in G.synthesis.parameters())
    assert G.synthesis.b4.conv1.weight.grad.abs().sum() > 0 and D.b4.fc.weight.grad.abs().sum() > 0


def test_const_noise_is_deterministic_and_fused_matches():
    torch.manual_seed(4)
    G = build_generator(tiny(8)).eval()
    ws = G.mapping(torch.randn(2, 16), None)
    a = G.synthesis(ws, noise_mode="const", fused_modconv=False)
    b = G.synthesis(ws, noise_mode="const", fused_modconv=True)
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.equal(a, G.synthesis(ws, noise_mode="const", fused_modconv=False))


def test_discriminator_rejects_wrong_shapes_and_config_checks():
    D = build_discriminator(tiny(8))
    with pytest.raises(ValueError, match=r"expected volumes of shape \(N, 1, 8, 8, 8\)"):
        D(torch.zeros(2, 1, 8, 8), None)
    with pytest.raises(UserError, match="dims 4"):
        build_generator(tiny(8, dims=4))
    with pytest.raises(UserError, match="stylegan2"):
        build_generator(tiny(8, arch="stylegan"))


def test_info_networks_dims_3(capsys):
    rc = cli.main(["info", "networks", "--dims", "3", "--resolution", "64"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and len(out) == 2
    n = parameter_counts(volume_network_config(64))
    assert out[1].split()[:3] == ["volume", "stylegan2-3d", "64"]
    assert out[1].split()[-2:] == [f"{n['G']:,}", f"{n['D']:,}"]
    assert n["dims"] == 3 and n["num_ws"] == 10
