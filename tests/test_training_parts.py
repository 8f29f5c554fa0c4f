"""Training building blocks in isolation: presets, schedule, augmentation + ADA, checkpoints, logs."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from stylemri.config import RunConfig, TrainConfig, from_dict, to_dict
from stylemri.errors import StylemriWarning, UserError
from stylemri.training import augment, checkpoint, logs, presets
from stylemri.training.rng import BatchRandom
from stylemri.training.schedule import Schedule


# ---- presets ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("res,batch,cbase,lr", [(32, 32, 16384, 0.0025), (64, 32, 16384, 0.0025),
                                                 (256, 16, 16384, 0.0025), (512, 8, 32768, 0.0025),
                                                 (1024, 4, 32768, 0.002)])
def test_auto_config_matches_stylegan2_ada(res, batch, cbase, lr):
    net, train = presets.resolve("auto", net={"resolution": res})
    assert train.batch == batch and net.channel_base == cbase and net.map_layers == 2
    assert train.g_lr == train.d_lr == lr and train.betas == (0.0, 0.99)
    assert math.isclose(train.r1_gamma, 0.0002 * res * res / batch)
    assert math.isclose(train.ema_kimg, batch * 10 / 32) and train.ema_rampup == 0.05
    assert net.mbstd_group == min(batch, 4) and train.loss == "ns" and train.pl_weight == 2.0
    assert train.aug == "ada" and not train.progressive


def test_auto_scales_with_gpus_and_follows_overridden_batch():
    _, t8 = presets.resolve("auto", world_size=8, net={"resolution": 256})
    assert t8.batch == 64  # max(min(8 * 16, 64), 8)
    net, t = presets.resolve("auto", net={"resolution": 64}, train={"batch": 8})
    assert t.batch == 8 and math.isclose(t.r1_gamma, 0.0002 * 64 * 64 / 8) and math.isclose(t.ema_kimg, 2.5)
    net, t = presets.resolve("auto", net={"resolution": 64}, train={"batch": 8, "r1_gamma": 3.0})
    assert t.r1_gamma == 3.0


def test_presets_values_and_overrides():
    net, t = presets.resolve("stylegan-adni")
    assert net.arch == "stylegan" and net.resolution == 256 and net.map_layers == 8
    assert t.progressive and t.loss == "wgangp" and t.g_lr == 1e-3 and t.wgan_lambda == 10 and t.wgan_epsilon == 0.001
    assert dict(t.batch_per_res) == {4: 512, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8} and t.batch == 8
    net, t = presets.resolve("stylegan2-adni")
    assert net.arch == "stylegan2" and net.resolution == 256 and t.loss == "ns" and t.pl_weight > 0 and t.r1_gamma > 0
    net, t = presets.resolve("stylegan-adni", net={"resolution": 32}, train={"g_lr": 0.01})
    assert net.resolution == 32 and t.batch == 64 and t.g_lr == 0.01  # batch of the final resolution
    _, t = presets.resolve("stylegan-adni", net={"resolution": 32}, train={"batch": 6})
    assert dict(t.batch_per_res)[32] == 6 and t.batch == 6


@pytest.mark.parametrize("kwargs,match", [
    ({"preset": "nope"}, "--preset nope"),
    ({"net": {"resolution": 48}}, "--resolution 48: expected a power of two"),
    ({"net": {"arch": "biggan"}}, "--arch biggan"),
    ({"train": {"loss": "hinge"}}, "--loss hinge"),
    ({"train": {"progressive": True}}, "--progressive"),
    ({"train": {"batch": 3}, "world_size": 2}, "multiple of the number of processes"),
])
def test_resolve_rejects_bad_values(kwargs, match):
    with pytest.raises(UserError, match=match):
        presets.resolve(kwargs.pop("preset", "auto"), **kwargs)


def test_parse_aug():
    assert presets.parse_aug("fixed:0.25") == ("fixed", 0.25)
    assert presets.parse_aug("ada") == ("ada", 0.0)
    for bad in ("fixed:2", "fixed:x", "colour"):
        with pytest.raises(UserError, match="--aug"):
            presets.parse_aug(bad)


def test_run_config_roundtrip():
    net, t = presets.resolve("stylegan-adni")
    cfg = RunConfig(network=net, train=t, class_names=("AD", "NC"), name="x", version="0", fingerprint="abc")
    assert from_dict(RunConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg


# ---- schedule -----------------------------------------------------------------------------------------
def test_progressive_schedule_phases():
    t = TrainConfig(progressive=True, start_res=4, fade_kimg=2, stable_kimg=1, batch=2,
                    batch_per_res=((4, 16), (8, 8), (16, 4)))
    s = Schedule(t, 16)
    p = s.at(0)
    assert (p.resolution, p.stage, p.alpha, p.batch, p.fading) == (4, 0, 1.0, 16, False)
    p = s.at(1000)  # 8 px fade starts at 1 kimg
    assert (p.resolution, p.stage, p.alpha, p.fading) == (8, 1, 0.0, True)
    assert s.at(2000).alpha == pytest.approx(0.5)
    assert s.at(3000).alpha == 1.0 and not s.at(3000).fading
    p = s.at(4500)  # 16 starts at 1 + 3 = 4 kimg
    assert p.resolution == 16 and p.alpha == pytest.approx(0.25) and p.batch == 4
    assert s.at(10**9).resolution == 16 and s.at(10**9).alpha == 1.0
    assert s.switches_kimg() == [(1.0, 8), (4.0, 16)] and s.full_resolution_kimg() == 6.0


def test_flat_schedule():
    s = Schedule(TrainConfig(batch=12), 64)
    p = s.at(123456)
    assert (p.resolution, p.stage, p.alpha, p.batch) == (64, None, 1.0, 12) and s.switches_kimg() == []


# ---- augmentation -------------------------------------------------------------------------------------
def test_augment_p0_identity_and_p1_changes():
    x = torch.rand(8, 1, 16, 16) * 2 - 1
    pipe = augment.AugmentPipe()
    assert torch.equal(pipe(x, 0.0, BatchRandom(0, 8)), x)
    y = pipe(x, 1.0, BatchRandom(0, 8))
    assert y.shape == x.shape and (y - x).abs().amax(dim=(1, 2, 3)).min() > 1e-3


def test_augment_xflip_and_integer_translation_are_exact():
    """Each image is exactly itself, mirrored, or shifted by whole pixels; and at p = 1 the augmentations
    really happen (an augment that returns its input unchanged fails)."""
    n = 32
    x = torch.rand(n, 1, 16, 16) * 2 - 1
    y = augment.AugmentPipe(("xflip",))(x, 1.0, BatchRandom(1, n))
    flipped = []
    for i in range(n):
        same, mirrored = torch.allclose(y[i], x[i], atol=1e-5), torch.allclose(y[i], x[i].flip(-1), atol=1e-5)
        assert same or mirrored
        flipped.append(mirrored)
    assert 0 < sum(flipped) < n  # about half the images mirrored, not none and not all
    y = augment.AugmentPipe(("xint",))(x, 1.0, BatchRandom(3, n))
    shifts = []
    for i in range(n):
        hits = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                ref = torch.full_like(x[i], -1.0)  # black enters from outside
                ref[:, max(-dy, 0):16 + min(-dy, 0), max(-dx, 0):16 + min(-dx, 0)] = \
                    x[i][:, max(dy, 0):16 + min(dy, 0), max(dx, 0):16 + min(dx, 0)]
                if torch.allclose(ref, y[i], atol=1e-5):
                    hits.append((dy, dx))
        assert len(hits) == 1
        shifts.append(hits[0])
    assert sum(s != (0, 0) for s in shifts) > n // 2  # whole-pixel shifts, mostly non-zero


def test_augment_is_differentiable_and_rank_sliced():
    x = (torch.rand(4, 1, 16, 16) * 2 - 1).requires_grad_(True)
    pipe = augment.AugmentPipe()
    pipe(x, 0.8, BatchRandom(5, 4)).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    full = pipe(x.detach(), 0.8, BatchRandom(7, 4))
    halves = [pipe(x.detach()[r * 2:(r + 1) * 2], 0.8, BatchRandom(7, 4, offset=r * 2, count=2)) for r in range(2)]
    assert torch.allclose(torch.cat(halves), full, atol=1e-6)  # two ranks == one process


def _run_controller(logit_fn, p0: float, steps: int = 64) -> augment.AdaController:
    ada = augment.AdaController(p=p0, target=0.6, interval=4, ada_kimg=0.5)
    for _ in range(steps):
        ada.accumulate(logit_fn())
        ada.step(batch=8)
    return ada


def test_ada_p_rises_for_overfitting_d_and_falls_otherwise():
    g = torch.Generator().manual_seed(0)
    overfit = _run_controller(lambda: torch.rand(8, 1, generator=g) + 0.5, p0=0.1)  # all reals score > 0
    assert overfit.rt == 1.0 and overfit.p > 0.1
    expected = 0.1 + 16 * 8 * 4 / 500  # 16 updates of +batch*interval/(ada_kimg*1000)
    assert overfit.p == pytest.approx(min(expected, 1.0))
    healthy = _run_controller(lambda: torch.randn(8, 1, generator=g), p0=0.5)  # r_t ~ 0 < 0.6
    assert healthy.p < 0.5
    state = healthy.state_dict()
    clone = augment.AdaController()
    clone.load_state_dict(state)
    assert clone.state_dict() == state


# ---- checkpoints --------------------------------------------------------------------------------------
def _tiny_state():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.0, 0.99))
    net(torch.randn(5, 3)).square().sum().backward()
    opt.step()
    return net, opt


def test_checkpoint_roundtrip_and_pointer(tmp_path):
    net, opt = _tiny_state()
    tensors = checkpoint.pack_modules({"G": net})
    opt_t, opt_meta = checkpoint.pack_optimizer("opt_G", opt)
    mgr = checkpoint.CheckpointManager(tmp_path / "checkpoints", keep=2)
    rng = checkpoint.rng_state()
    first = torch.rand(3)  # the RNG state round-trips through base64 JSON
    for nimg in (100, 200, 300):
        mgr.save(nimg, {**tensors, **opt_t}, {"opt_G": opt_meta, "rng": rng, "counters": {"nimg": nimg}})
    names = [p.stem for p in mgr.checkpoints()]
    assert names == ["ckpt-0000000200", "ckpt-0000000300"] and mgr.latest().stem == "ckpt-0000000300"
    loaded, meta = checkpoint.read_checkpoint(mgr.latest())
    net2, opt2 = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)), None
    net2.load_state_dict(checkpoint.unpack_module("G", loaded))
    for a, b in zip(net.state_dict().values(), net2.state_dict().values()):
        assert torch.equal(a, b)
    opt2 = torch.optim.Adam(net2.parameters(), lr=5.0)
    opt2.load_state_dict(checkpoint.unpack_optimizer("opt_G", loaded, meta["opt_G"]))
    assert opt2.param_groups[0]["lr"] == 1e-3 and opt2.param_groups[0]["betas"] == (0.0, 0.99)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(s1[k]["exp_avg_sq"], s2[k]["exp_avg_sq"]) for k in s1)
    torch.manual_seed(123)
    checkpoint.set_rng_state(meta["rng"])
    assert torch.equal(torch.rand(3), first)
    only_g, _ = checkpoint.read_checkpoint(mgr.latest(), prefixes=("G",))
    assert set(only_g) == set(tensors)


def test_checkpoint_damage_is_detected_and_latest_falls_back(tmp_path):
    net, _ = _tiny_state()
    mgr = checkpoint.CheckpointManager(tmp_path, keep=5)
    mgr.save(1, checkpoint.pack_modules({"G": net}), {})
    mgr.save(2, checkpoint.pack_modules({"G": net}), {})
    newest = tmp_path / "ckpt-0000000002.safetensors"
    newest.write_bytes(newest.read_bytes()[:-10])  # truncated: no longer whole
    with pytest.warns(StylemriWarning, match="ckpt-0000000002.json is damaged .*using .*ckpt-0000000001.json"):
        assert mgr.latest().stem == "ckpt-0000000001"
    (tmp_path / "latest").write_text("garbage\n")
    with pytest.warns(StylemriWarning, match="latest names 'garbage'"):
        assert mgr.latest().stem == "ckpt-0000000001"
    data = bytearray((tmp_path / "ckpt-0000000001.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "ckpt-0000000001.safetensors").write_bytes(bytes(data))
    with pytest.raises(UserError, match="damaged"):
        checkpoint.read_checkpoint(tmp_path / "ckpt-0000000001.json")
    with pytest.raises(UserError, match="no whole checkpoint; the newest, ckpt-0000000002, is damaged"):
        mgr.latest()


def test_checkpoint_best_is_kept(tmp_path):
    net, _ = _tiny_state()
    mgr = checkpoint.CheckpointManager(tmp_path, keep=1)
    for nimg, score in ((1, 5.0), (2, 3.0), (3, 4.0), (4, 6.0)):
        mgr.save(nimg, checkpoint.pack_modules({"G": net}), {}, score=score)
    assert [p.stem for p in mgr.checkpoints()] == ["ckpt-0000000002", "ckpt-0000000004"]
    assert mgr.best().stem == "ckpt-0000000002"


# ---- logs ---------------------------------------------------------------------------------------------
def test_run_log_csv_plot_and_resume_truncation(tmp_path):
    log = logs.RunLog(tmp_path, tensorboard=True)
    for i in range(1, 6):
        log.tick({"tick": i, "kimg": i * 0.5, "resolution": 8 if i < 3 else 16, "G_loss": 1.0 / i, "D_loss": 0.5,
                  "R1": float("nan"), "ada_p": 0.1 * i})
    log.log_event({"event": "resolution", "kimg": 1.0, "resolution": 16})
    png = log.plot([(1.0, 16)])
    log.close()
    rows = (tmp_path / "losses.csv").read_text().splitlines()
    assert rows[0].startswith("tick,kimg,resolution") and len(rows) == 6
    img = np.asarray(Image.open(png))
    assert img.shape[0] > 100 and img.std() > 0
    assert any(p.name.startswith("events.out.tfevents") for p in tmp_path.iterdir())
    log = logs.RunLog(tmp_path, resume_kimg=1.5, tensorboard=False)
    assert [float(r["kimg"]) for r in log.rows] == [0.5, 1.0, 1.5]
    events = (tmp_path / "stats.jsonl").read_text().splitlines()  # appended per line, truncated once on resume
    assert events and all(json.loads(e)["kimg"] <= 1.5 for e in events)


# ---- losses, EMA --------------------------------------------------------------------------------------
class LinearD(torch.nn.Module):
    """D(x) = <w, x>: the gradient w.r.t. the input is w everywhere, so penalties have closed forms."""

    def __init__(self, shape):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(shape))

    def forward(self, img, c, stage=None, alpha=1.0):
        return (img * self.w).sum(dim=[1, 2, 3])[:, None]


def _loss_parts(loss_name, **train):
    from stylemri.config import NetworkConfig
    from stylemri.networks import build_generator
    from stylemri.training.loss import StyleGANLoss
    from stylemri.training.schedule import Phase

    torch.manual_seed(0)
    G = build_generator(NetworkConfig(resolution=8, channel_base=64, channel_max=8, z_dim=8, w_dim=8))
    D = LinearD((1, 8, 8))
    cfg = TrainConfig(loss=loss_name, **train)
    loss = StyleGANLoss(G, D, cfg)
    phase = Phase(8, None, 1.0, 4, False)
    rng = lambda purpose, total: BatchRandom(hash(purpose) % 1000, total)  # noqa: E731
    real = torch.rand(4, 1, 8, 8) * 2 - 1
    return G, D, loss, phase, rng, real, (lambda purpose, total: None)


def test_r1_penalty_closed_form():
    G, D, loss, phase, rng, real, no_c = _loss_parts("ns", r1_gamma=3.0)
    stats = loss.accumulate_gradients("Dreg", real=real, real_c=None, sample_c=no_c, phase=phase, rng=rng, total=4,
                                      gain=16)
    w2 = float(D.w.detach().square().sum())
    assert float(stats["R1"]) == pytest.approx(w2, rel=1e-5)  # |grad_x D|^2 = |w|^2
    assert torch.allclose(D.w.grad, 16 * 3.0 / 2 * 2 * D.w.detach(), rtol=1e-4)  # d/dw gain * gamma/2 |w|^2


def test_wgan_gp_closed_form_and_ns_loss():
    G, D, loss, phase, rng, real, no_c = _loss_parts("wgangp")
    stats = loss.accumulate_gradients("Dmain", real=real, real_c=None, sample_c=no_c, phase=phase, rng=rng, total=4)
    norm = float(D.w.detach().norm())
    assert float(stats["GP"]) == pytest.approx(10 * (norm - 1) ** 2, rel=1e-4)
    with torch.no_grad():  # the same draws reproduce the fakes: D_loss = E[D(fake) - D(real) + GP + eps D(real)^2]
        r = rng("Dmain", 4)
        fake, _ = loss.run_G(r.randn(8), None, phase, r)
        real_scores, fake_scores = D(real, None), D(fake, None)
    expected = (fake_scores - real_scores + 10 * (norm - 1) ** 2 + 0.001 * real_scores.square()).mean()
    assert float(stats["D_loss"]) == pytest.approx(float(expected), rel=1e-4)
    G, D, loss, phase, rng, real, no_c = _loss_parts("ns")
    stats = loss.accumulate_gradients("Gmain", real=real, real_c=None, sample_c=no_c, phase=phase, rng=rng, total=4)
    assert float(stats["G_loss"]) > 0 and all(p.grad is not None for p in G.mapping.parameters())


def test_path_length_tracks_its_mean_and_style_mixing_mixes():
    G, D, loss, phase, rng, real, no_c = _loss_parts("ns", pl_weight=2.0, style_mixing=0.0)
    stats = loss.accumulate_gradients("Greg", real=real, real_c=None, sample_c=no_c, phase=phase, rng=rng, total=4,
                                      gain=4)
    first = float(stats["pl_mean"])
    assert first > 0 and float(loss.pl_mean) == 0  # the tracked mean moves only once the step is known finite
    loss.commit()
    assert float(loss.pl_mean) == pytest.approx(first)  # 0 + 0.01 * (mean length - 0)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in G.synthesis.parameters())
    z = torch.randn(4, 8)
    _, ws = loss.run_G(z, None, phase, BatchRandom(1, 4))
    assert torch.equal(ws[:, 0], ws[:, -1])  # no mixing: one w for all layers
    loss.cfg = TrainConfig(style_mixing=1.0)
    _, ws = loss.run_G(z, None, phase, BatchRandom(1, 4))
    assert not torch.equal(ws[:, 0], ws[:, -1])  # mixed at a crossover layer


def test_ema_fused_matches_reference_and_ramps_up():
    from stylemri.training.ema import ema_beta, update_ema, update_ema_reference

    torch.manual_seed(0)
    G = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    a, b = copy.deepcopy(G), copy.deepcopy(G)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn_like(p))
        G[1].running_mean.add_(1.0)
    update_ema(a, G, 0.9)
    update_ema_reference(b, G, 0.9)
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.allclose(x, y, atol=1e-6)
    assert torch.equal(a[1].running_mean, G[1].running_mean)  # buffers copied
    assert ema_beta(32, 10.0, None, 0) == pytest.approx(0.5 ** (32 / 10000))
    assert ema_beta(32, 10.0, 0.05, 1000) == pytest.approx(0.5 ** (32 / 50))  # ramp-up: 0.05 * 1000 images
    assert ema_beta(32, 10.0, 0.05, 10**7) == pytest.approx(0.5 ** (32 / 10000))
