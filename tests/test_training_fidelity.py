"""Training fidelity to TF StyleGAN / NVlabs StyleGAN2-ADA (issue 11, items 1, 2, 4-7): faded reals and
Adam resets in progressive growing, consistent WGAN-GP labels, ADA only with a logistic D, mixed precision
in the top resolutions only, gradient accumulation, guarded path-length mean, appended logs, bounded
TensorBoard images, metrics as NVlabs generates them, exact resume with data-loader workers, x-flips off."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stylemri import cli
from stylemri.config import NetworkConfig, TrainConfig
from stylemri.errors import UserError
from stylemri.networks import build_discriminator, build_generator
from stylemri.networks.precision import set_precision
from stylemri.training import logs, presets
from stylemri.training import checkpoint as ckpt
from stylemri.training.loss import StyleGANLoss
from stylemri.training.rng import BatchRandom
from stylemri.training.schedule import Phase, fade_reals, resets_optimizer
from stylemri.training.training_loop import Trainer

# The tiny configs and fixtures of the training tests (one intra-op thread, a private data cache, 16 px data).
from conftest import TINY_FLAGS  # noqa: E402
from test_training import cache_dir, ds16, tiny_config  # noqa: E402,F401


# ---- 1. progressive StyleGAN: faded reals, Adam resets, WGAN-GP labels ---------------------------------
def test_fade_reals_is_tf_process_reals():
    x = torch.randn(2, 1, 8, 8)
    # TF StyleGAN: y = mean over 2x2, tiled back; x = lerp(x, y, lod - floor(lod)) with lod fraction 1 - alpha.
    y = x.reshape(2, 1, 4, 2, 4, 2).mean(dim=[3, 5], keepdim=True).repeat(1, 1, 1, 2, 1, 2).reshape(2, 1, 8, 8)
    for alpha in (0.0, 0.3, 0.75):
        out = fade_reals(x, Phase(8, 1, alpha, 4, True))
        assert torch.allclose(out, x + (y - x) * (1 - alpha), atol=1e-6)
    assert fade_reals(x, Phase(8, 1, 1.0, 4, False)) is x
    assert not torch.allclose(fade_reals(x, Phase(8, 1, 0.5, 4, True)), x)


def test_adam_resets_at_start_and_end_of_each_fade(tmp_path, ds16):
    stable = Phase(8, 1, 1.0, 8, False)
    assert resets_optimizer(stable, Phase(16, 2, 0.0, 8, True))  # a new resolution starts fading in
    assert resets_optimizer(Phase(16, 2, 0.9, 8, True), Phase(16, 2, 1.0, 8, False))  # the fade ends
    assert not resets_optimizer(Phase(16, 2, 0.4, 8, True), Phase(16, 2, 0.5, 8, True))
    assert not resets_optimizer(None, stable) and not resets_optimizer(stable, stable)
    # In the loop: 4 px stable for 2 steps, 8 px fading for 2 steps, then 8 px stable: Adam restarts there.
    cfg = tiny_config(ds16, net={"arch": "stylegan", "resolution": 8}, progressive=True, start_res=4,
                      fade_kimg=0.016, stable_kimg=0.016, batch_per_res=((4, 8), (8, 8)), kimg=0.048)
    trainer = Trainer(cfg, tmp_path, ds16)
    steps = []
    for _ in range(5):
        trainer._train_step()
        p = next(iter(trainer.opt_G.state.values()))
        steps.append((trainer._last_phase.fading, int(p["step"])))
    assert steps == [(False, 1), (False, 2), (True, 1), (True, 2), (False, 1)]


def _loss_with_labels(loss_name: str):
    torch.manual_seed(0)
    net = NetworkConfig(resolution=8, channel_base=64, channel_max=8, z_dim=8, w_dim=8, c_dim=3)
    G, D = build_generator(net), build_discriminator(net)
    loss = StyleGANLoss(G, D, TrainConfig(loss=loss_name, pl_weight=0.0))
    seen = []
    mapping = G.mapping.forward
    G.mapping.forward = lambda z, c, **kw: (seen.append(c), mapping(z, c, **kw))[1]
    return loss, seen


@pytest.mark.parametrize("loss_name", ["wgangp", "ns"])
def test_conditional_wgan_gp_generates_fakes_with_the_reals_labels(loss_name):
    loss, seen = _loss_with_labels(loss_name)
    real_c = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()
    drawn = torch.nn.functional.one_hot(torch.tensor([2, 2, 2, 2]), 3).float()
    loss.accumulate_gradients("Dmain", real=torch.rand(4, 1, 8, 8) * 2 - 1, real_c=real_c,
                              sample_c=lambda purpose, total: drawn, phase=Phase(8, None, 1.0, 4, False),
                              rng=lambda purpose, total: BatchRandom(7, total), total=4)
    expected = real_c if loss_name == "wgangp" else drawn  # the logistic loss keeps NVlabs' drawn labels
    assert seen and all(torch.equal(c, expected) for c in seen)


# ---- 2. ADA needs a logistic D ------------------------------------------------------------------------
def test_ada_with_wgan_gp_is_refused_and_wgan_presets_default_to_no_augmentation(tmp_path, capsys):
    with pytest.raises(UserError, match="--aug ada: ADA needs a logistic loss"):
        presets.resolve("auto", train={"loss": "wgangp", "aug": "ada"})
    assert presets.resolve("auto", net={"arch": "stylegan"})[1].aug == "none"
    assert presets.resolve("auto", train={"loss": "wgangp"})[1].aug == "none"
    assert presets.resolve("stylegan2-adni", train={"loss": "wgangp"})[1].aug == "none"
    assert presets.resolve("auto", net={"arch": "stylegan"}, train={"loss": "ns"})[1].aug == "ada"
    assert presets.resolve("stylegan-adni")[1].aug == "none"
    assert cli.main(["train", "--loss", "wgangp", "--aug", "ada", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--aug ada" in err[0] and "Traceback" not in err[0]


# ---- 4. mixed precision as NVlabs -----------------------------------------------------------------------
def _pair(dtype, arch="stylegan2"):
    torch.manual_seed(0)
    net = NetworkConfig(arch=arch, resolution=32, channel_base=256, channel_max=32, z_dim=16, w_dim=16)
    G, D = build_generator(net), build_discriminator(net)
    if dtype is not None:
        assert set_precision(G, dtype, 2) == [16, 32] and set_precision(D, dtype, 2) == [16, 32]
    return G, D


def test_bf16_keeps_path_length_and_r1_within_1_percent_of_fp32():
    phase = Phase(32, None, 1.0, 8, False)
    rng = lambda purpose, total: BatchRandom(3, total)  # noqa: E731
    real = torch.rand(8, 1, 32, 32) * 2 - 1
    values = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        G, D = _pair(dtype)
        loss = StyleGANLoss(G, D, TrainConfig(style_mixing=0.0, r1_gamma=1.0))
        torch.manual_seed(1)
        lengths, _ = loss.path_lengths(lambda p, t: None, phase, rng, 16)
        r1 = loss.accumulate_gradients("Dreg", real=real, real_c=None, sample_c=lambda p, t: None, phase=phase,
                                       rng=rng, total=8)["R1"]
        torch.manual_seed(1)
        img = G.synthesis(G.mapping(torch.randn(4, 16), None), noise_mode="const")
        values[name] = (lengths.detach(), float(r1), img.detach())
    (l32, r32, img32), (l16, r16, img16) = values["fp32"], values["bf16"]
    assert torch.allclose(l16, l32, rtol=0.01) and (l16 - l16.mean()).sub(l32 - l32.mean()).abs().max() \
        <= 0.01 * (l32 - l32.mean()).abs().max()
    assert r16 == pytest.approx(r32, rel=0.01)
    assert not torch.equal(img16, img32)  # ...while the main pass really ran its top blocks in bf16


def test_reduced_precision_only_in_the_top_blocks_and_mapping_fp32():
    G, D = _pair(torch.bfloat16)
    dtypes = {}
    for name, module in list(G.synthesis.named_children()) + [("mapping", G.mapping)]:
        module.register_forward_hook(lambda m, i, o, name=name: dtypes.setdefault(
            name, (o[0] if isinstance(o, tuple) else o).dtype) and None)
    G(torch.randn(2, 16), None)
    assert dtypes == {"b4": torch.float32, "b8": torch.float32, "b16": torch.bfloat16, "b32": torch.bfloat16,
                      "mapping": torch.float32}
    img = G.synthesis(G.mapping(torch.randn(2, 16), None), force_fp32=True)
    assert img.dtype == torch.float32 and torch.isfinite(D(img, None, force_fp32=True)).all()
    Gs, Ds = _pair(torch.bfloat16, arch="stylegan")
    assert torch.isfinite(Ds(Gs(torch.randn(2, 16), None, stage=2, alpha=0.5), None, stage=2, alpha=0.5)).all()


def test_precision_flags_and_conv_clamp():
    net, train = presets.resolve("auto", train={"precision": "bf16"})
    assert net.conv_clamp == 256 and train.fp16_res == 4 and train.tf32 is False
    assert presets.resolve("auto")[0].conv_clamp is None  # auto on a CPU: fp32, no clamp
    assert presets.resolve("auto", device_type="cuda")[0].conv_clamp == 256
    assert presets.resolve("auto", train={"precision": "fp16", "fp16_res": 0})[0].conv_clamp is None
    with pytest.raises(UserError, match="--precision fp8"):
        presets.resolve("auto", train={"precision": "fp8"})


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_run_trains_finite(tmp_path, ds16, precision):
    cfg = tiny_config(ds16, precision=precision, fp16_res=2, kimg=0.016)
    trainer = Trainer(cfg, tmp_path, ds16)
    result = trainer.run()
    assert result.nonfinite_steps == 0 and trainer.precision == precision
    assert trainer.reduced_resolutions == [8, 16] and trainer.scaler.enabled == (precision == "fp16")
    assert all(torch.isfinite(v).all() for v in trainer.G.state_dict().values())
    meta = ckpt.read_meta(trainer.ckpt.latest())
    assert meta["loss_scaler"]["scale"] == trainer.scaler.scale


# ---- 5. --batch-gpu: gradient accumulation ------------------------------------------------------------
def _grads(module):
    return {k: p.grad.clone() for k, p in module.named_parameters() if p.grad is not None}


def test_batch_8_as_2x4_equals_batch_8_at_once(tmp_path, ds16):
    base = dict(net={"c_dim": 3}, aug="none", pl_weight=2.0, style_mixing=0.9, r1_gamma=1.0)
    whole = Trainer(tiny_config(ds16, **base), tmp_path / "a", ds16)
    split = Trainer(tiny_config(ds16, batch_gpu=4, **base), tmp_path / "b", ds16)
    phase = whole.schedule.at(0)
    assert whole.rounds(phase) == 1 and split.rounds(phase) == 2
    real, labels = ds16.batch(np.arange(8))
    real_c = torch.nn.functional.one_hot(labels, 3).float()
    for name, tol in (("Gmain", 1e-5), ("Dmain", 1e-5), ("Dreg", 1e-5), ("Greg", 0.02)):
        results = []
        for t in (whole, split):
            module = t.G if name.startswith("G") else t.D
            module.zero_grad(set_to_none=True)
            torch.manual_seed(5)
            stats, w_mean, logits = t.accumulate_phase(name, real, real_c, phase, 1)
            results.append((stats, _grads(module), w_mean, logits))
        (s1, g1, w1, l1), (s2, g2, w2, l2) = results
        assert set(g1) == set(g2)
        for k in g1:
            if "noise_strength" in k:  # the networks' noise is drawn per round: its gradient differs
                continue
            scale = g1[k].abs().max().item() + 1e-12
            assert (g1[k] - g2[k]).abs().max().item() <= tol * scale, (name, k)
        for k in s1:
            assert float(s2[k]) == pytest.approx(float(s1[k]), rel=max(tol, 1e-5), abs=1e-7), (name, k)
        if name == "Gmain":
            assert torch.allclose(w1, w2, atol=1e-6)
        if name == "Dmain":
            assert torch.allclose(l1.sort(0).values, l2.sort(0).values, atol=1e-5)


def test_batch_gpu_must_divide_the_batch():
    with pytest.raises(UserError, match="--batch-gpu 3"):
        presets.resolve("auto", train={"batch": 8, "batch_gpu": 3})
    assert presets.resolve("auto", train={"batch": 8, "batch_gpu": 16})[1].batch_gpu == 16  # >= batch: one round


# ---- 6. long runs ---------------------------------------------------------------------------------------
def test_nonfinite_path_length_leaves_pl_mean_finite_and_counts(tmp_path, ds16):
    cfg = tiny_config(ds16, pl_weight=2.0, pl_interval=1, kimg=0.064, nan_patience=2, checkpoint_ticks=1)
    trainer = Trainer(cfg, tmp_path, ds16)
    original = trainer.loss.path_lengths
    bad = {"calls": 0}

    def path_lengths(*args, **kwargs):
        bad["calls"] += 1
        lengths, img = original(*args, **kwargs)
        return (lengths * float("nan") if bad["calls"] in (3, 4) else lengths), img

    trainer.loss.path_lengths = path_lengths
    result = trainer.run()
    assert result.nonfinite_steps == 2 and result.recoveries == 1  # two bad regularization passes: recovery
    assert torch.isfinite(trainer.loss.pl_mean) and float(trainer.loss.pl_mean) > 0


def test_logs_are_appended_not_rewritten(tmp_path, monkeypatch):
    log = logs.RunLog(tmp_path, tensorboard=False)
    log.tick({"tick": 1, "kimg": 0.5, "G_loss": 1.0})

    def no_rewrite(*a, **k):
        raise AssertionError("a log file was rewritten during a tick")

    monkeypatch.setattr(logs, "atomic_write", no_rewrite)
    before_csv = (tmp_path / "losses.csv").read_bytes()
    before_jsonl = (tmp_path / "stats.jsonl").read_bytes()
    log.tick({"tick": 2, "kimg": 1.0, "G_loss": 0.5})
    log.log_event({"event": "checkpoint", "kimg": 1.0})
    assert (tmp_path / "losses.csv").read_bytes().startswith(before_csv)
    assert (tmp_path / "stats.jsonl").read_bytes().startswith(before_jsonl)
    assert len((tmp_path / "losses.csv").read_text().splitlines()) == 3
    monkeypatch.undo()
    with open(tmp_path / "stats.jsonl", "a") as f:  # a line a crash cut short
        f.write('{"event": "tick", "kim')
    logs.RunLog(tmp_path, resume_kimg=0.5, tensorboard=False)
    lines = [json.loads(x) for x in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert [x["kimg"] for x in lines] == [0.5]


def test_tensorboard_images_are_bounded():
    images = torch.rand(64, 1, 256, 256) * 2 - 1
    small = logs.tensorboard_images(images)
    assert small.shape == (logs.TB_MAX_IMAGES, 1, logs.TB_MAX_SIDE, logs.TB_MAX_SIDE)
    assert torch.allclose(small[0, 0, 0, 0], images[0, 0, :2, :2].mean())
    assert logs.tensorboard_images(images[:4, :, :64, :64]).shape == (4, 1, 64, 64)


def test_metric_images_use_random_noise_data_labels_and_leave_the_training_rng(tmp_path, ds16):
    cfg = tiny_config(ds16, net={"c_dim": 3})
    trainer = Trainer(cfg, tmp_path, ds16)
    generate = trainer._metric_images(trainer.schedule.at(0))
    state = torch.get_rng_state()
    a, b = generate(0, 6), generate(0, 6)
    assert torch.equal(state, torch.get_rng_state())  # the training noise stream is untouched
    assert np.array_equal(a, b) and a.dtype == np.uint8 and a.shape == (6, 1, 16, 16)
    assert not np.array_equal(generate(6, 6), a)
    seen = []
    mapping = trainer.G_ema.mapping.forward
    trainer.G_ema.mapping.forward = lambda z, c, **kw: (seen.append(c.argmax(1)), mapping(z, c, **kw))[1]
    generate(0, 300)
    counts = np.bincount(torch.cat(seen).numpy(), minlength=3) / 300
    expected = np.bincount(ds16.labels, minlength=3) / len(ds16)
    assert np.abs(counts - expected).max() < 0.1  # labels drawn from the data's distribution


def test_resume_is_bit_exact_with_loader_workers(tmp_path, cache_dir):
    common = ["--resolution", "16", "--batch", "8", "--tick-kimg", "0.016", "--cache-dir", cache_dir, "--quiet",
              "--checkpoint-ticks", "1", "--pl-interval", "2", "--r1-interval", "2", *TINY_FLAGS[:-2],
              "--workers", "2"]
    assert cli.main(["train", "--kimg", "0.048", "--out", str(tmp_path / "straight"), *common]) == 0
    assert cli.main(["train", "--kimg", "0.016", "--out", str(tmp_path / "split"), *common]) == 0
    (split_run,) = (tmp_path / "split").iterdir()
    assert cli.main(["train", "--resume", str(split_run), "--kimg", "0.048", "--quiet", "--workers", "2"]) == 0
    (straight_run,) = (tmp_path / "straight").iterdir()
    a, _ = ckpt.read_checkpoint(ckpt.CheckpointManager(straight_run / "checkpoints").latest())
    b, _ = ckpt.read_checkpoint(ckpt.CheckpointManager(split_run / "checkpoints").latest())
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


# ---- 7. real x-flips off by default ---------------------------------------------------------------------
@pytest.mark.parametrize("flags,expected", [([], False), (["--xflip"], True), (["--no-xflip"], False),
                                            (["--preset", "stylegan-adni"], True)])
def test_real_xflips_are_off_by_default(tmp_path, cache_dir, flags, expected):
    argv = ["train", "--resolution", "16", "--batch", "8", "--kimg", "0.008", "--tick-kimg", "0.008",
            "--batch-per-res", "4:8,8:8,16:8", "--out", str(tmp_path), "--cache-dir", cache_dir, "--quiet",
            *TINY_FLAGS, *flags]
    assert cli.main(argv) == 0
    (run,) = tmp_path.iterdir()
    assert json.loads((run / "config.json").read_text())["data"]["xflip"] is expected


def test_training_metrics_load_the_extractor_once_and_cache_real_features(tmp_path, ds16, monkeypatch):
    from stylemri.metrics import inception

    loads, rows = [], []

    class Trunk(torch.nn.Module):  # a stand-in feature extractor: 2048 fixed random projections of pooled pixels
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(3 * 16 * 16, 2048)

        def forward(self, x):
            rows.append(len(x))
            return self.proj(torch.nn.functional.adaptive_avg_pool2d(x, 16).flatten(1))

    def fake_load(path=None, device="cpu"):
        loads.append(device)
        torch.manual_seed(0)
        return inception.InceptionFeatures(Trunk(), inception.WeightsInfo("stub.pt", "0" * 40, "stub", None))

    monkeypatch.setattr(inception, "find_weights", lambda path=None: tmp_path / "stub.pt")
    monkeypatch.setattr(inception, "load_inception", fake_load)
    cfg = tiny_config(ds16, metrics=("kid",), metric_num=16, kimg=0.048, checkpoint_ticks=1)
    events = []
    trainer = Trainer(cfg, tmp_path / "run", ds16)
    trainer.cb.event = events.append
    trainer.run()
    evaluated = [e for e in events if e["event"] == "metrics"]
    assert len(evaluated) == 3 and len(loads) == 1  # the extractor is loaded once and kept
    assert [e["real_features_from_cache"] for e in evaluated] == [False, True, True]
    assert sum(rows) == len(ds16) + 3 * 16  # the real images went through the extractor once per run
