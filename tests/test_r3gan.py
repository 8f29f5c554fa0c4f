"""`--loss r3gan` (R3GAN, Huang et al. 2024) term by term against its formula, its ADA signal, and the cosine
schedules (training/schedules.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_FLAGS, one_line_error, run_cli
from conftest import phase_rng as rng
from conftest import take_grads as grads
from stylemri.config import NetworkConfig, TrainConfig
from stylemri.errors import UserError
from stylemri.networks import build_discriminator, build_generator
from stylemri.training import presets
from stylemri.training.loss import StyleGANLoss
from stylemri.training.schedule import Phase
from stylemri.training.schedules import cosine, is_scheduled, scheduled

N, GAMMA = 4, 0.7
PHASE = Phase(resolution=8, stage=None, alpha=1.0, batch=N, fading=False)


@pytest.fixture
def parts(one_thread):
    torch.manual_seed(0)
    net = NetworkConfig(resolution=8, c_dim=2, z_dim=8, w_dim=8, channel_base=32, channel_max=8, mbstd_group=2)
    G, D = build_generator(net), build_discriminator(net)
    cfg = TrainConfig(loss="r3gan", r1_gamma=GAMMA, style_mixing=0.0, aug="none", batch=N)
    loss = StyleGANLoss(G, D, cfg)
    real = torch.randn(N, 1, 8, 8)
    real_c = F.one_hot(torch.tensor([0, 1, 1, 0]), 2).float()
    return G, D, loss, real, real_c


def accumulate(loss: StyleGANLoss, name: str, real: torch.Tensor, real_c: torch.Tensor) -> dict:
    torch.manual_seed(5)  # the networks' noise
    return loss.accumulate_gradients(name, real=real, real_c=real_c, sample_c=lambda p, t: None, phase=PHASE,
                                     rng=rng, total=N)


def fake_of(G: torch.nn.Module, purpose: str, c: torch.Tensor) -> torch.Tensor:
    """The fake the loss generates for `purpose`: its z is the first draw of that purpose's generator."""
    torch.manual_seed(5)
    return G.synthesis(G.mapping(rng(purpose, N).randn(G.z_dim), c))


def assert_same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert any(x.abs().sum() > 0 for x in a), "the loss produced no gradient"
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)


def test_d_loss_is_the_relativistic_pairing_loss_and_ada_sees_the_pair_differences(parts):
    G, D, loss, real, real_c = parts
    G.requires_grad_(False)
    stats = accumulate(loss, "Dmain", real, real_c)
    ours = grads(D)
    with torch.no_grad():
        fake = fake_of(G, "Dmain", real_c)  # fake i carries real i's label
    diff = D(real, real_c) - D(fake, real_c)
    expected = F.softplus(-diff).mean()
    expected.backward()
    assert_same(ours, grads(D))
    assert float(stats["D_loss"]) == pytest.approx(float(expected.detach()), rel=1e-5)
    torch.testing.assert_close(loss.last_real_logits, diff.detach(), rtol=1e-5, atol=1e-6)
    assert float(stats["D_real_sign"]) == pytest.approx(float(diff.detach().sign().mean()))


def test_g_loss_is_the_mirrored_pairing_loss(parts):
    G, D, loss, real, real_c = parts
    D.requires_grad_(False)
    stats = accumulate(loss, "Gmain", real, real_c)
    ours = grads(G)
    fake = fake_of(G, "Gmain", real_c)
    expected = F.softplus(-(D(fake, real_c) - D(real, real_c))).mean()
    expected.backward()
    assert_same(ours, grads(G))
    assert float(stats["G_loss"]) == pytest.approx(float(expected.detach()), rel=1e-5)


def test_regularizer_is_r1_on_reals_plus_r2_on_fakes_gamma_half_each(parts):
    G, D, loss, real, real_c = parts
    G.requires_grad_(False)
    stats = accumulate(loss, "Dreg", real, real_c)
    ours = grads(D)
    with torch.no_grad():
        fake = fake_of(G, "Dreg/fake", real_c)

    def penalty(x: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(D(x, real_c).sum(), x, create_graph=True)
        return g.square().flatten(1).sum(1)

    r1, r2 = penalty(real), penalty(fake)
    (GAMMA / 2 * (r1 + r2)).mean().backward()
    assert_same(ours, grads(D))
    assert float(stats["R1"]) == pytest.approx(float(r1.mean()), rel=1e-4)
    assert float(stats["R2"]) == pytest.approx(float(r2.mean()), rel=1e-4)
    assert float(r2.mean()) != pytest.approx(float(r1.mean()), rel=1e-3)  # R2 really looks at the fakes


def test_r3gan_trains_with_ada_by_default_and_wgangp_still_refuses_ada():
    _, train = presets.resolve("auto", net={"resolution": 16}, train={"loss": "r3gan"})
    assert (train.loss, train.aug) == ("r3gan", "ada")
    with pytest.raises(UserError, match="ADA needs a logistic loss"):
        presets.resolve("auto", net={"resolution": 16}, train={"loss": "wgangp", "aug": "ada"})


# ---- schedules -----------------------------------------------------------------------------------------
def test_cosine_runs_from_start_to_end_and_stays():
    assert cosine(1.0, 0.25, 0.0) == 1.0
    assert cosine(1.0, 0.25, 0.5) == pytest.approx(0.625)
    assert cosine(1.0, 0.25, 1.0) == pytest.approx(0.25)
    assert cosine(1.0, 0.25, 3.0) == pytest.approx(0.25)


def test_schedules_are_off_by_default_and_follow_the_images_shown():
    plain = TrainConfig(kimg=10)
    assert not is_scheduled(plain)
    now = scheduled(plain, 5000)
    assert (now.lr_mult, now.r1_gamma, now.beta2, now.aug_p) == (1.0, plain.r1_gamma, 0.99, None)
    cfg = TrainConfig(kimg=10, r1_gamma=2.0, lr_final=0.1, gamma_final=0.5, beta2_start=0.9, aug="fixed", aug_p=0.0,
                      aug_p_final=0.2, schedule_kimg=4)
    assert is_scheduled(cfg)
    mid, end = scheduled(cfg, 2000), scheduled(cfg, 9000)
    assert mid.lr_mult == pytest.approx(0.55) and mid.r1_gamma == pytest.approx(1.5)
    assert mid.beta2 == pytest.approx(0.945) and mid.aug_p == pytest.approx(0.1)
    assert (end.lr_mult, end.r1_gamma, end.beta2, end.aug_p) == pytest.approx((0.1, 1.0, 0.99, 0.2))


def test_scheduled_run_moves_lr_and_beta2_and_saves_r2(tmp_path: Path, capsys, one_thread):
    rc, _, err = run_cli(capsys, "train", "--resolution", "16", "--kimg", "0.064", "--batch", "8", "--tick-kimg",
                         "0.032", "--loss", "r3gan", "--r1-interval", "1", "--lr-final", "0.25", "--beta2-start",
                         "0.9", "--outdir", tmp_path, "--quiet", "--threads", "1", *TINY_FLAGS)
    assert rc == 0, err
    run = next(tmp_path.iterdir())
    events = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    ticks = [e for e in events if e.get("event") == "tick"]
    assert ticks[-1]["R2"] is not None and math.isfinite(ticks[-1]["R2"])
    assert ticks[-1]["lr_G"] < ticks[0]["lr_G"]  # cosine decay towards 0.25 x
    cfg = json.loads((run / "config.json").read_text())["train"]
    assert (cfg["loss"], cfg["lr_final"], cfg["beta2_start"], cfg["threads"]) == ("r3gan", 0.25, 0.9, 1)


@pytest.mark.parametrize("argv, match", [
    (["--aug-p-final", "0.3"], "--aug-p-final 0.3: expected --aug fixed:P"),
    (["--lr-final", "0"], "--lr-final 0: expected a positive number"),
    (["--beta2-start", "1"], "--beta2-start 1: expected a number in [0, 1)"),
    (["--threads", "0"], "--threads 0: expected an integer >= 1"),
])
def test_bad_schedule_values_are_one_line(tmp_path: Path, capsys, argv, match):
    one_line_error(capsys, "train", "--resolution", "16", "--kimg", "0.01", "--outdir", tmp_path, *argv,
                   *TINY_FLAGS, match=match)
    assert not any(tmp_path.iterdir())
