"""Low-level pieces: equalized lr, FIR resampling, fused vs reference resampled conv, modulated conv."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from stylemri.networks.layers import (
    FILTER_BOX,
    FILTER_STYLEGAN,
    FILTER_STYLEGAN2,
    EqualConv,
    EqualLinear,
    conv2d_resample,
    conv2d_resample_reference,
    downsample2d,
    filter2d,
    setup_filter,
    upfirdn2d,
    upsample2d,
)
from stylemri.networks.heads import MinibatchStd
from stylemri.networks.stylegan2 import modulated_conv, modulated_conv_reference


@pytest.mark.parametrize("lr_mul", [1.0, 0.01])
@pytest.mark.parametrize("gain", [1.0, math.sqrt(2)])
def test_equalized_lr_effective_std_linear(lr_mul, gain):
    torch.manual_seed(0)
    fan_in = 384
    layer = EqualLinear(fan_in, 512, lr_mul=lr_mul, gain=gain)
    w = layer.effective_weight()
    assert w.std().item() == pytest.approx(gain / math.sqrt(fan_in), rel=0.02)
    # The stored parameter is the N(0,1) draw divided by lr_mul: Adam's step size is what lr_mul scales.
    assert layer.weight.std().item() == pytest.approx(1.0 / lr_mul, rel=0.02)


@pytest.mark.parametrize("k", [1, 3])
def test_equalized_lr_effective_std_conv(k):
    torch.manual_seed(0)
    layer = EqualConv(96, 256, k, gain=math.sqrt(2))
    fan_in = 96 * k * k
    assert layer.effective_weight().std().item() == pytest.approx(math.sqrt(2) / math.sqrt(fan_in), rel=0.03)
    assert layer.weight.std().item() == pytest.approx(1.0, rel=0.03)


def test_equal_linear_lr_mul_applies_to_bias_and_output():
    torch.manual_seed(0)
    layer = EqualLinear(16, 8, lr_mul=0.01, bias_init=0.5)
    x = torch.randn(4, 16)
    ref = x @ (layer.weight * 0.01 / 4.0).t() + layer.bias * 0.01
    assert torch.allclose(layer(x), ref, atol=1e-6)
    assert torch.allclose(layer.bias * 0.01, torch.full((8,), 0.5))


def test_filters_normalised():
    for taps in (FILTER_BOX, FILTER_STYLEGAN, FILTER_STYLEGAN2):
        f = setup_filter(taps)
        assert f.shape == (len(taps), len(taps)) and f.sum().item() == pytest.approx(1.0)
    assert torch.allclose(setup_filter(FILTER_STYLEGAN2)[0], torch.tensor([1, 3, 3, 1]) / 64.0)


def test_resampling_preserves_constants_and_shapes():
    x = torch.full((2, 3, 8, 8), 0.7)
    f = setup_filter(FILTER_STYLEGAN2)
    up, down = upsample2d(x, f), downsample2d(x, f)
    assert up.shape == (2, 3, 16, 16) and down.shape == (2, 3, 4, 4)
    # Away from the zero-padded border a constant stays constant (unit DC gain, gain=4 after zero insertion).
    assert torch.allclose(up[:, :, 2:-2, 2:-2], torch.full_like(up[:, :, 2:-2, 2:-2], 0.7), atol=1e-6)
    assert torch.allclose(down[:, :, 1:-1, 1:-1], torch.full_like(down[:, :, 1:-1, 1:-1], 0.7), atol=1e-6)
    blurred = filter2d(x, setup_filter(FILTER_STYLEGAN))
    assert blurred.shape == x.shape and torch.allclose(blurred[:, :, 1:-1, 1:-1], x[:, :, 1:-1, 1:-1])


def test_box_filter_is_nearest_upsampling_and_average_pooling():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 6)
    box = setup_filter(FILTER_BOX)
    assert torch.allclose(upsample2d(x, box), F.interpolate(x, scale_factor=2, mode="nearest"), atol=1e-6)
    assert torch.allclose(downsample2d(x, box), F.avg_pool2d(x, 2), atol=1e-6)


def test_upfirdn2d_matches_a_hand_computed_1d_case():
    x = torch.tensor([1.0, 2.0, 3.0]).reshape(1, 1, 1, 3)
    f = torch.tensor([[1.0, 2.0]])  # asymmetric on purpose: checks it is a true convolution
    y = upfirdn2d(x, f, padding=[1, 1, 0, 0])  # pad -> [0,1,2,3,0]; y[n] = sum f[k] xp[n - k + 1]
    assert y.flatten().tolist() == [1.0, 4.0, 7.0, 6.0]


@pytest.mark.parametrize("pads,down", [([2, 2, 2, 2], 1), ([1, 1, 2, 2], 2), ([2, 2, 2, 2], 2), ([0, 0, 0, 0], 2)])
def test_upfirdn2d_padding_inside_the_conv_equals_a_padded_copy(pads, down):
    # The symmetric pad is the filter conv's own padding (no padded copy of x); it must equal F.pad + conv,
    # in values, gradients and the second-order gradients R1 takes.
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64, requires_grad=True)
    f = setup_filter(FILTER_STYLEGAN2).double()
    fast = upfirdn2d(x, f, down=down, padding=pads, gain=1.5)
    ref = upfirdn2d(F.pad(x, pads), f, down=down, gain=1.5)
    assert fast.shape == ref.shape and torch.allclose(fast, ref, atol=1e-12)
    (g_fast,) = torch.autograd.grad(fast.square().sum(), x, create_graph=True)
    (g_ref,) = torch.autograd.grad(ref.square().sum(), x, create_graph=True)
    assert torch.allclose(g_fast, g_ref, atol=1e-12)
    (h_fast,) = torch.autograd.grad(g_fast.square().sum(), x)
    (h_ref,) = torch.autograd.grad(g_ref.square().sum(), x)
    assert torch.allclose(h_fast, h_ref, atol=1e-10)


@pytest.mark.parametrize("taps", [FILTER_STYLEGAN2, FILTER_BOX])
@pytest.mark.parametrize("kernel,up,down,groups", [
    (3, 2, 1, 1), (3, 1, 2, 1), (1, 2, 1, 1), (1, 1, 2, 1), (3, 1, 1, 1), (3, 2, 1, 3), (3, 1, 2, 3),
])
def test_conv2d_resample_fast_path_equals_reference(taps, kernel, up, down, groups):
    torch.manual_seed(0)
    x = torch.randn(2, 6, 8, 8)
    w = torch.randn(9, 6 // groups, kernel, kernel)
    f = setup_filter(taps)
    fast = conv2d_resample(x, w, f, up=up, down=down, groups=groups)
    ref = conv2d_resample_reference(x, w, f, up=up, down=down, groups=groups)
    assert fast.shape == (2, 9, 8 * up // down, 8 * up // down)
    assert torch.allclose(fast, ref, atol=1e-5)


def test_box_up_conv_is_nearest_upsample_then_convolution():
    torch.manual_seed(0)
    x, w = torch.randn(2, 4, 5, 5), torch.randn(3, 4, 3, 3)
    fast = conv2d_resample(x, w, setup_filter(FILTER_BOX), up=2)
    ref = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w.flip([2, 3]), padding=1)
    assert torch.allclose(fast, ref, atol=1e-5)
    down = conv2d_resample(x[..., :4, :4], w, setup_filter(FILTER_BOX), down=2)
    assert torch.allclose(down, F.avg_pool2d(F.conv2d(x[..., :4, :4], w, padding=1), 2), atol=1e-5)


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("fused", [True, False])
def test_modulated_conv_grouped_equals_reference(up, demodulate, fused):
    torch.manual_seed(0)
    x = torch.randn(3, 8, 8, 8)
    weight = torch.randn(5, 8, 3, 3) / math.sqrt(72)
    styles = torch.randn(3, 8) + 1.0
    f = setup_filter(FILTER_STYLEGAN2)
    fast = modulated_conv(x, weight, styles, demodulate=demodulate, up=up, resample_filter=f, fused=fused)
    ref = modulated_conv_reference(x, weight, styles, demodulate=demodulate, up=up, resample_filter=f)
    assert fast.shape == ref.shape == (3, 5, 8 * up, 8 * up)
    assert (fast - ref).abs().max().item() < 1e-5


def test_demodulation_gives_unit_variance_outputs():
    torch.manual_seed(0)
    n, cin, cout, r = 4, 64, 32, 32
    x = torch.randn(n, cin, r, r)
    weight = torch.randn(cout, cin, 3, 3)
    styles = torch.rand(n, cin) * 3 + 0.1  # very uneven styles: without demodulation variance would vary wildly
    y = modulated_conv(x, weight, styles, demodulate=True)[:, :, 1:-1, 1:-1]  # skip zero-padded border
    var = y.var(dim=[2, 3])
    assert var.mean().item() == pytest.approx(1.0, abs=0.05)
    assert var.min().item() > 0.8 and var.max().item() < 1.2
    raw = modulated_conv(x, weight, styles, demodulate=False)[:, :, 1:-1, 1:-1].var(dim=[2, 3])
    assert raw.mean().item() > 10  # the check above is not trivially satisfied


def test_minibatch_std_feature_and_odd_batches():
    torch.manual_seed(0)
    x = torch.randn(8, 4, 4, 4)
    y = MinibatchStd(group_size=4, num_channels=1)(x)
    assert y.shape == (8, 5, 4, 4)
    groups = x.reshape(4, 2, 4, 4, 4)  # sample i belongs to group i % 2
    expect = (groups.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=[1, 2, 3])
    assert torch.allclose(y[0, 4, 0, 0], expect[0]) and torch.allclose(y[1, 4, 0, 0], expect[1])
    assert MinibatchStd(4, 2)(torch.randn(6, 4, 4, 4)).shape == (6, 6, 4, 4)  # 6 % 4 != 0: group of 3
    assert MinibatchStd(4, 1)(torch.randn(1, 4, 4, 4)).shape == (1, 5, 4, 4)
