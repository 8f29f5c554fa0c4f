"""`--compile` (torch.compile of the main G and D passes, inductor on CPU) against its eager reference twin:
the same phases on the same tiny networks give the same losses and the same gradients."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from conftest import phase_rng, take_grads
from stylemri.config import NetworkConfig, TrainConfig
from stylemri.networks import build_discriminator, build_generator
from stylemri.training.loss import StyleGANLoss, main_passes
from stylemri.training.schedule import Phase

N = 4
PHASE = Phase(resolution=8, stage=None, alpha=1.0, batch=N, fading=False)


def phase_grads(loss: StyleGANLoss, name: str, real: torch.Tensor, real_c: torch.Tensor
                ) -> tuple[dict, list[torch.Tensor]]:
    torch.manual_seed(5)  # the networks' per-pixel noise
    stats = loss.accumulate_gradients(name, real=real, real_c=real_c, sample_c=lambda p, t: real_c, phase=PHASE,
                                      rng=phase_rng, total=N)
    return stats, take_grads(loss.G) + take_grads(loss.D)


def test_main_passes_without_compile_are_the_networks_themselves() -> None:
    net = NetworkConfig(resolution=8, z_dim=8, w_dim=8, channel_base=32, channel_max=8, mbstd_group=2)
    G, D = build_generator(net), build_discriminator(net)
    assert main_passes(G, D, False) == (G, D)


@pytest.mark.parametrize("loss_name", ["ns", "r3gan"])
def test_compiled_main_passes_match_eager(loss_name: str, one_thread) -> None:
    inductor = pytest.importorskip("torch._inductor.config")
    # Inductor draws random numbers with its own generator unless told to call torch's: the noise inputs of
    # the synthesis layers must be the same draws on both sides for the comparison to mean anything.
    torch._dynamo.reset()
    with inductor.patch(fallback_random=True):
        compare_phases(loss_name)
    torch._dynamo.reset()


def compare_phases(loss_name: str) -> None:
    torch.manual_seed(0)
    net = NetworkConfig(resolution=8, c_dim=2, z_dim=8, w_dim=8, channel_base=32, channel_max=8, mbstd_group=2)
    G, D = build_generator(net), build_discriminator(net)
    G2, D2 = copy.deepcopy(G), copy.deepcopy(D)
    cfg = TrainConfig(loss=loss_name, r1_gamma=0.5, style_mixing=0.0, aug="none", batch=N)
    eager = StyleGANLoss(G, D, cfg)
    G_main, D_main = main_passes(G2, D2, True)
    compiled = StyleGANLoss(G2, D2, cfg, G_main=G_main, D_main=D_main)
    assert compiled.G_main is not G2 and compiled.D_main is not D2
    real = torch.randn(N, 1, 8, 8)
    real_c = F.one_hot(torch.tensor([0, 1, 1, 0]), 2).float()
    for name in ("Gmain", "Dmain"):
        stats_e, grads_e = phase_grads(eager, name, real, real_c)
        stats_c, grads_c = phase_grads(compiled, name, real, real_c)
        assert stats_e.keys() == stats_c.keys()
        for key in stats_e:
            assert float(stats_c[key]) == pytest.approx(float(stats_e[key]), rel=1e-4, abs=1e-5), (name, key)
        assert len(grads_e) == len(grads_c)
        for ge, gc in zip(grads_e, grads_c):
            torch.testing.assert_close(gc, ge, rtol=1e-4, atol=1e-5)
