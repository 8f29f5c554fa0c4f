"""Dmain's one D pass over fakes and reals (`score_pair`) against its two-pass reference twin."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import phase_rng as rng
from conftest import take_grads as grads
from stylemri.config import NetworkConfig, TrainConfig
from stylemri.networks import build_discriminator, build_generator
from stylemri.training.loss import StyleGANLoss, pair_order, score_pair, score_separately
from stylemri.training.schedule import Phase


def disc(mbstd_group: int | None, c_dim: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    net = NetworkConfig(resolution=8, c_dim=c_dim, z_dim=8, w_dim=8, channel_base=64, channel_max=8,
                        mbstd_group=mbstd_group)
    return build_discriminator(net).double()


def batches(n: int, channels_last: bool = False) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    a, b = (torch.randn(n, 1, 8, 8, generator=g, dtype=torch.float64) for _ in range(2))
    if channels_last:
        a, b = (x.contiguous(memory_format=torch.channels_last) for x in (a, b))
    c = F.one_hot(torch.randint(0, 3, (2 * n,), generator=g), 3).double()
    return a, c[:n], b, c[n:]


@pytest.mark.parametrize("group,n,channels_last", [(4, 8, True), (4, 16, False), (2, 6, False), (8, 8, True)])
def test_one_pass_gives_the_logits_and_gradients_of_two(one_thread, group, n, channels_last):
    # Unconditional, float64 convolutions: the 4x4 head runs in float32 (NVlabs), so its weight gradients,
    # summed over 16 rows instead of 2 x 8, agree to float32 rounding (a wrong grouping moves logits by > 1e-3).
    D = disc(group, c_dim=0)
    a, _, b, _ = batches(n, channels_last)
    a_c = b_c = None
    assert pair_order(n, [group]) is not None  # these sizes take the one-pass path
    pa, pb = score_pair(D, a, a_c, b, b_c, [group])
    (pa.square().sum() + pb.sum()).backward()
    paired = grads(D)
    ra, rb = score_separately(D, a, a_c, b, b_c, [group])
    (ra.square().sum() + rb.sum()).backward()
    torch.testing.assert_close(pa, ra, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(pb, rb, rtol=1e-6, atol=1e-7)
    for x, y in zip(paired, grads(D)):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-7)


def test_a_plain_concatenation_would_mix_fakes_and_reals_in_the_stddev_groups(one_thread):
    # Why the row order exists: cat([a, b]) in one pass groups rows of a with rows of b.
    D = disc(4)
    a, a_c, b, b_c = batches(8)
    ra, _ = score_separately(D, a, a_c, b, b_c, [4])
    naive = D(torch.cat([a, b]), torch.cat([a_c, b_c]))[:8]
    assert (naive - ra).abs().max() > 1e-3


@pytest.mark.parametrize("groups,n", [([None], 8), ([4], 6), ([4], 2), ([4, 2], 8)])
def test_sizes_without_a_matching_order_fall_back_to_two_passes(one_thread, groups, n):
    # A group of the whole batch, 6 rows (groups of 3 alone, of 4 in 12 rows), 2 rows (groups of 2 vs 4).
    assert pair_order(n, groups) is None
    D = disc(groups[0])
    a, a_c, b, b_c = batches(n)
    pa, pb = score_pair(D, a, a_c, b, b_c, groups)
    ra, rb = score_separately(D, a, a_c, b, b_c, groups)
    assert torch.equal(pa, ra) and torch.equal(pb, rb)


def test_without_minibatch_stddev_any_order_is_exact():
    assert torch.equal(pair_order(3, []), torch.arange(6))


def _tiny_loss(loss_name: str, n: int) -> tuple[StyleGANLoss, torch.nn.Module, torch.Tensor, torch.Tensor, Phase]:
    torch.manual_seed(0)
    net = NetworkConfig(resolution=8, c_dim=2, z_dim=8, w_dim=8, channel_base=32, channel_max=8, mbstd_group=4)
    G, D = build_generator(net), build_discriminator(net)
    cfg = TrainConfig(loss=loss_name, r1_gamma=0.5, style_mixing=0.0, aug="none", batch=n)
    G.requires_grad_(False)
    real = torch.randn(n, 1, 8, 8)
    real_c = F.one_hot(torch.arange(n) % 2, 2).float()
    return StyleGANLoss(G, D, cfg), D, real, real_c, Phase(resolution=8, stage=None, alpha=1.0, batch=n, fading=False)


def _paired_and_separate(loss_name: str, phase_name: str, n: int = 8) -> dict[bool, tuple]:
    """One phase's D gradients, stats and last real logits with the paired pass and with its two-pass twin,
    after checking that the gradients are not all zero and agree."""
    loss, D, real, real_c, phase = _tiny_loss(loss_name, n)
    out = {}
    for paired in (True, False):
        loss.pair_passes = paired
        torch.manual_seed(5)  # the generator's noise
        stats = loss.accumulate_gradients(phase_name, real=real, real_c=real_c, sample_c=lambda p, t: real_c,
                                          phase=phase, rng=rng, total=n)
        signal = loss.last_real_logits  # Dmain's ADA signal; Dreg leaves it unset
        out[paired] = (grads(D), {k: float(v) for k, v in stats.items()}, None if signal is None else signal.clone())
    assert any(g.abs().sum() > 0 for g in out[True][0])
    for x, y in zip(out[True][0], out[False][0]):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)
    return out


@pytest.mark.parametrize("loss_name", ["ns", "r3gan", "wgangp"])
def test_dmain_gradients_equal_the_two_pass_reference(one_thread, loss_name):
    out = _paired_and_separate(loss_name, "Dmain")
    assert out[True][1] == pytest.approx(out[False][1], rel=1e-5, abs=1e-6)
    torch.testing.assert_close(out[True][2], out[False][2], rtol=1e-5, atol=1e-6)


def test_r1_and_r2_from_one_pass_equal_one_penalty_per_batch(one_thread):
    # The paired penalty against the plain formula: gradient_penalty on the reals, then on the fakes.
    loss, D, real, real_c, phase = _tiny_loss("r3gan", 8)
    fake = torch.randn_like(real)
    (r1, r2), logits = loss.gradient_penalty_pair(real, fake, real_c, phase, rng("a", 8), rng("b", 8))
    ref_r1, ref_real_logits = loss.gradient_penalty(real, real_c, phase, rng("a", 8))
    ref_r2, ref_fake_logits = loss.gradient_penalty(fake, real_c, phase, rng("b", 8))
    assert float(r1.detach().min()) > 0 and float(r2.detach().min()) > 0
    assert (r1 - r2).abs().max() > 1e-4  # the two batches' penalties are told apart, not swapped or mixed
    torch.testing.assert_close(r1, ref_r1, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(r2, ref_r2, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(logits, ref_real_logits + ref_fake_logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss_name", ["ns", "r3gan"])
def test_dreg_gradients_equal_the_two_pass_reference(one_thread, loss_name):
    out = _paired_and_separate(loss_name, "Dreg")
    assert set(out[True][1]) == ({"R1", "R2"} if loss_name == "r3gan" else {"R1"})
    assert out[True][1] == pytest.approx(out[False][1], rel=1e-5, abs=1e-7)
