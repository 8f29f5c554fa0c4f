"""`stylemri train` end to end on tiny configs: every arch/loss/preset, progressive growing, exact resume,
NaN guard, loading, bad arguments. Subprocess tests (kill -9, SIGTERM, 2-process DDP) are in
test_training_processes.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import stylemri
from stylemri import cli
from stylemri.config import DataConfig, RunConfig
from stylemri.data import load_dataset
from stylemri.errors import UserError
from stylemri.training import checkpoint as ckpt
from stylemri.training import presets
from stylemri.training.training_loop import Callbacks, Trainer

TINY_NET = {"channel_base": 128, "channel_max": 16, "z_dim": 16, "w_dim": 16}
TINY_FLAGS = ["--channel-base", "128", "--channel-max", "16", "--z-dim", "16", "--w-dim", "16", "--workers", "0"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks: one intra-op thread is fastest and immune to oversubscription on shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def ds16(cache_dir):
    return load_dataset(DataConfig(resolution=16, cache_dir=cache_dir))


def tiny_config(ds, *, preset="auto", net=None, **train) -> RunConfig:
    net = {"resolution": ds.resolution, **TINY_NET, **(net or {})}
    train = {"batch": 8, "kimg": 0.032, "tick_kimg": 0.016, "num_workers": 0, **train}
    net_cfg, train_cfg = presets.resolve(preset, net=net, train=train)
    return RunConfig(data=ds.config, network=net_cfg, train=train_cfg, class_names=tuple(ds.class_names),
                     fingerprint=ds.fingerprint, num_images=len(ds), name="t")


class Recorder(Callbacks):
    def __init__(self):
        self.ticks, self.events, self.steps = [], [], []

    def tick(self, stats):
        self.ticks.append(stats)

    def event(self, event):
        self.events.append(event)

    def step(self, progress):
        self.steps.append(progress)


def params(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("arch,loss,conditional", [
    ("stylegan2", "ns", False), ("stylegan2", "wgangp", True), ("stylegan", "wgangp", False), ("stylegan", "ns", True),
])
def test_one_tick_each_arch_and_loss(tmp_path, ds16, arch, loss, conditional):
    cfg = tiny_config(ds16, net={"arch": arch, "c_dim": 3 if conditional else 0}, loss=loss, kimg=0.016,
                      progressive=False, pl_weight=2.0, aug="fixed", aug_p=0.5)
    rec = Recorder()
    trainer = Trainer(cfg, tmp_path, ds16, callbacks=rec)
    g0, d0 = params(trainer.G), params(trainer.D)
    result = trainer.run()
    assert result.tick == 1 and result.nimg == 16 and not result.interrupted and result.nonfinite_steps == 0
    tick = rec.ticks[0]
    for key in ("G_loss", "D_loss", "path_length"):
        assert math.isfinite(tick[key]), key
    assert (tick["R1"] is not None) == (loss == "ns")
    changed = [k for k, v in params(trainer.G).items() if not torch.equal(v, g0[k])]
    assert any(k.startswith("mapping") for k in changed) and any(k.startswith("synthesis") for k in changed)
    assert any(not torch.equal(v, d0[k]) for k, v in params(trainer.D).items())
    ema_differs = [k for k, v in params(trainer.G_ema).items() if not torch.equal(v, params(trainer.G)[k])]
    assert ema_differs  # the EMA lags G
    assert (tmp_path / "losses.csv").read_text().count("\n") == 2
    grid = np.asarray(Image.open(result.samples[-1]))
    rows = 3 if conditional else 8
    assert grid.shape == (rows * 18 + 2, 8 * 18 + 2)  # 16 px tiles, 2 px padding, one row per class
    model = stylemri.load(tmp_path)
    imgs = model.generate(seeds=[1, 2, 3], labels="coronal" if conditional else None)
    assert imgs.shape == (3, 1, 16, 16) and torch.isfinite(imgs).all()
    assert torch.allclose(model.generate(seeds=[2], labels="coronal" if conditional else None), imgs[1:2], atol=1e-5)


@pytest.mark.parametrize("preset", ["auto", "stylegan-adni", "stylegan2-adni"])
def test_one_tick_each_preset_from_the_cli(tmp_path, cache_dir, preset, capsys):
    rc = cli.main(["train", "--preset", preset, "--resolution", "16", "--batch", "8", "--kimg", "0.016",
                   "--tick-kimg", "0.016", "--out", str(tmp_path), "--cache-dir", cache_dir, "--quiet",
                   "--fade-kimg", "1", "--stable-kimg", "1", "--batch-per-res", "4:8,8:8,16:8", *TINY_FLAGS])
    assert rc == 0
    (run,) = tmp_path.iterdir()
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["preset"] == preset and cfg["network"]["resolution"] == 16
    assert cfg["class_names"] == ["axial", "coronal", "sagittal"] and cfg["fingerprint"] and cfg["version"]
    expected_arch = "stylegan" if preset == "stylegan-adni" else "stylegan2"
    assert cfg["network"]["arch"] == expected_arch and run.name == f"00000-{expected_arch}-mni152-16"
    if preset == "stylegan-adni":
        assert cfg["train"]["loss"] == "wgangp" and cfg["train"]["progressive"] and cfg["train"]["g_lr"] == 0.001
        rows = (run / "losses.csv").read_text().splitlines()
        assert rows[1].split(",")[2] == "4"  # the first tick trains at 4 px
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("stylemri: trained 0.016 kimg")
    assert (run / "plots" / "losses.png").exists() and any(run.glob("events.out.tfevents.*"))


def test_progressive_growing_switches_resolution_and_draws_progress_figure(tmp_path, ds16):
    cfg = tiny_config(ds16, net={"arch": "stylegan"}, progressive=True, start_res=4, fade_kimg=0.016,
                      stable_kimg=0.016, batch_per_res=((4, 16), (8, 8), (16, 8)), kimg=0.128, tick_kimg=0.016)
    rec = Recorder()
    result = Trainer(cfg, tmp_path, ds16, callbacks=rec).run()
    switches = [e for e in rec.events if e["event"] == "resolution"]
    assert [(e["previous"], e["resolution"], e["kimg"]) for e in switches] == [(4, 8, 0.016), (8, 16, 0.048)]
    res_seen = [t["resolution"] for t in rec.ticks]
    assert res_seen[0] == 4 and 8 in res_seen and res_seen[-1] == 16
    alphas = [s["alpha"] for s in rec.steps if s["resolution"] == 8]
    assert min(alphas) < 0.5 and max(alphas) == 1.0  # faded in, then stable
    for r in (4, 8, 16):
        assert (tmp_path / "samples" / f"progress-{r:04d}px.png").exists()
    fig = np.asarray(Image.open(tmp_path / "plots" / "progress_resolutions.png"))
    assert fig.shape[0] > 200 and fig.std() > 0
    assert result.nimg >= 128 and stylemri.load(tmp_path).generate(2).shape == (2, 1, 16, 16)
    # A run stopped during the 8 px phase generates 8 px images from the stage it reached.
    early = ckpt.CheckpointManager(tmp_path / "checkpoints", keep=100)
    assert early.latest() is not None


def test_stopped_progressive_run_loads_at_the_stage_reached(tmp_path, ds16):
    cfg = tiny_config(ds16, net={"arch": "stylegan"}, progressive=True, fade_kimg=0.016, stable_kimg=0.016,
                      batch_per_res=((4, 8), (8, 8), (16, 8)), kimg=1.0)
    trainer = Trainer(cfg, tmp_path, ds16)
    calls = iter(range(100))
    trainer.run(should_stop=lambda: next(calls) >= 3)  # stop after 4 steps = 0.032 kimg: 8 px fading in
    model = stylemri.load(tmp_path)
    assert model.resolution == 8 and 0 < model.alpha < 1
    assert model.generate(2).shape == (2, 1, 8, 8)


def test_ada_p_follows_the_sign_of_real_logits_in_the_loop(tmp_path, ds16):
    cfg = tiny_config(ds16, aug="ada", ada_interval=1, ada_kimg=0.08, kimg=0.064)
    rec = Recorder()
    trainer = Trainer(cfg, tmp_path, ds16, callbacks=rec)
    trainer.run()
    p, moves = 0.0, []
    for step in rec.steps:  # interval 1: after each step p moves by batch / (ada_kimg * 1000) = 0.1
        rt = step["D_real_sign"]
        p = min(max(p + math.copysign(0.1, rt - 0.6) if rt != 0.6 else p, 0.0), 1.0)
        moves.append(rt > 0.6)
        assert step["ada_p"] == pytest.approx(p)
    assert any(moves) and trainer.ada.p == pytest.approx(p)
    meta = ckpt.read_meta(trainer.ckpt.latest())
    assert meta["ada"]["p"] == trainer.ada.p
    header, *rows = (tmp_path / "losses.csv").read_text().splitlines()
    assert float(rows[-1].split(",")[header.split(",").index("ada_p")]) == pytest.approx(p)


def _final_tensors(run):
    tensors, meta = ckpt.read_checkpoint(ckpt.CheckpointManager(run / "checkpoints").latest())
    return tensors, meta


def test_resume_gives_identical_weights(tmp_path, cache_dir):
    common = ["--resolution", "16", "--batch", "8", "--tick-kimg", "0.024", "--cache-dir", cache_dir, "--quiet",
              "--conditional", "--aug", "ada", "--ada-kimg", "0.1", "--ada-interval", "4", "--r1-interval", "4",
              "--pl-interval", "2", "--checkpoint-ticks", "1", *TINY_FLAGS]
    assert cli.main(["train", "--kimg", "0.096", "--out", str(tmp_path / "straight"), *common]) == 0
    assert cli.main(["train", "--kimg", "0.048", "--out", str(tmp_path / "split"), *common]) == 0
    (split_run,) = (tmp_path / "split").iterdir()
    assert cli.main(["train", "--resume", str(split_run), "--kimg", "0.096", "--quiet"]) == 0
    (straight_run,) = (tmp_path / "straight").iterdir()
    a, meta_a = _final_tensors(straight_run)
    b, meta_b = _final_tensors(split_run)
    assert meta_a["nimg"] == meta_b["nimg"] == 96
    assert set(a) == set(b)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == []
    assert meta_a["ada"] == meta_b["ada"] and meta_a["ada"]["p"] > 0
    assert meta_a["counters"] == meta_b["counters"] and meta_a["rng"] == meta_b["rng"]
    rows_a = [r.split(",")[:11] for r in (straight_run / "losses.csv").read_text().splitlines()]
    rows_b = [r.split(",")[:11] for r in (split_run / "losses.csv").read_text().splitlines()]
    assert rows_a == rows_b  # the resumed log reads as one run
    assert json.loads((split_run / "config.json").read_text())["train"]["kimg"] == 0.096


def test_nan_guard_skips_then_reloads_and_halves_lr(tmp_path, ds16):
    cfg = tiny_config(ds16, kimg=0.2, nan_patience=3, checkpoint_ticks=1, tick_kimg=0.016)
    rec = Recorder()
    trainer = Trainer(cfg, tmp_path, ds16, callbacks=rec)
    d_forward = trainer.D.forward
    poisoned_calls = {11, 12, 13, 25}  # 3 bad steps in a row (= patience), later a single one
    plan = {"calls": 0}

    def forward(img, c, stage=None, alpha=1.0):
        out = d_forward(img, c, stage=stage, alpha=alpha)
        return out * float("nan") if plan["calls"] in poisoned_calls else out

    trainer.D.forward = forward
    lr0 = trainer.opt_G.param_groups[0]["lr"], trainer.opt_D.param_groups[0]["lr"]
    snapshots = []
    orig_step = trainer._train_step

    def step():
        plan["calls"] += 1
        before = params(trainer.G)
        orig_step()
        snapshots.append((rec.steps[-1]["skipped"], before, params(trainer.G)))

    trainer._train_step = step
    result = trainer.run()
    skipped = [s for s in snapshots if s[0]]
    assert len(skipped) == 4 and result.nonfinite_steps == 4 and result.recoveries == 1
    _, before, after = skipped[-1]  # the single bad step: skipped, G untouched
    assert all(torch.equal(before[k], after[k]) for k in before)
    recovery = [e for e in rec.events if e["event"] == "nan_recovery"]
    assert len(recovery) == 1 and recovery[0]["lr_scale"] == 0.5 and recovery[0]["kimg"] < recovery[0]["at_kimg"]
    assert trainer.opt_G.param_groups[0]["lr"] == pytest.approx(lr0[0] / 2)
    assert trainer.opt_D.param_groups[0]["lr"] == pytest.approx(lr0[1] / 2)
    assert all(torch.isfinite(v).all() for v in params(trainer.G).values())
    events = [json.loads(line)["event"] for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert "nan_recovery" in events
    assert sum(t["nonfinite"] for t in rec.ticks) >= 1 and result.nimg >= 200
    meta = ckpt.read_meta(trainer.ckpt.latest())
    assert meta["counters"]["lr_scale"] == 0.5 and meta["counters"]["recoveries"] == 1


def _run_cli(argv, capsys):
    with pytest.raises(SystemExit) as e:
        rc = cli.main(argv)
        raise SystemExit(rc)
    err = capsys.readouterr().err.strip().splitlines()
    return e.value.code, err


def test_bad_arguments_exit_2_with_one_line(tmp_path, cache_dir, capsys):
    base = ["train", "--out", str(tmp_path / "runs"), "--cache-dir", cache_dir, "--quiet", *TINY_FLAGS]
    code, err = _run_cli([*base, "--preset", "stylegan3-ffhq"], capsys)
    assert code == 2 and len(err) == 1 and "--preset stylegan3-ffhq" in err[0] and "stylegan2-adni" in err[0]
    code, err = _run_cli([*base, "--resolution", "48"], capsys)
    assert code == 2 and len(err) == 1 and "--resolution 48: expected a power of two" in err[0]
    not_run = tmp_path / "not_a_run"
    not_run.mkdir()
    code, err = _run_cli(["train", "--resume", str(not_run)], capsys)
    assert code == 2 and len(err) == 1 and str(not_run) in err[0] and "run directory" in err[0]
    code, err = _run_cli(["train", "--resume", str(tmp_path / "missing")], capsys)
    assert code == 2 and len(err) == 1 and "no such run directory" in err[0]
    code, err = _run_cli([*base, "--arch", "stylegan2", "--progressive", "--resolution", "16"], capsys)
    assert code == 2 and len(err) == 1 and "--progressive" in err[0]
    code, err = _run_cli([*base, "--aug", "fixed:7", "--resolution", "16"], capsys)
    assert code == 2 and len(err) == 1 and "--aug fixed:7" in err[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_incompatible_resume_names_the_mismatch(tmp_path, cache_dir, capsys):
    assert cli.main(["train", "--resolution", "16", "--batch", "8", "--kimg", "0.008", "--tick-kimg", "0.008",
                     "--out", str(tmp_path), "--cache-dir", cache_dir, "--quiet", *TINY_FLAGS]) == 0
    capsys.readouterr()
    (run,) = tmp_path.iterdir()
    code, err = _run_cli(["train", "--resume", str(run), "--channel-base", "256", "--batch", "16"], capsys)
    assert code == 2 and len(err) == 1
    assert "network.channel_base is 128 in the run, 256 requested" in err[0] and "train.batch" in err[0]
    code, err = _run_cli(["train", "--resume", str(run), "--resolution", "32"], capsys)
    assert code == 2 and "network.resolution is 16" in err[0]
    code, err = _run_cli(["train", "--resume", str(run)], capsys)  # nothing left to do: a clear message, exit 0
    assert code == 0 and "already trained" in err[-1]
    cfg = json.loads((run / "config.json").read_text())
    cfg["fingerprint"] = "0" * 40
    (run / "config.json").write_text(json.dumps(cfg))
    code, err = _run_cli(["train", "--resume", str(run), "--kimg", "0.016"], capsys)
    assert code == 2 and "data changed" in err[0] and "--allow-data-change" in err[0]


def test_load_accepts_run_checkpoints_and_files_and_never_unpickles(tmp_path, ds16):
    cfg = tiny_config(ds16, net={"c_dim": 3}, kimg=0.016)
    Trainer(cfg, tmp_path, ds16).run()
    latest = ckpt.CheckpointManager(tmp_path / "checkpoints").latest()
    for target in (tmp_path, tmp_path / "checkpoints", latest, latest.with_suffix(".safetensors")):
        model = stylemri.load(target)
        assert not model.G.training and all(not p.requires_grad for p in model.G.parameters())
        assert model.class_names == ("axial", "coronal", "sagittal") and model.kimg == 0.016
    imgs = model.generate(seeds=range(6), labels=["axial", "coronal", "sagittal", 0, 1, 2], psi=0.5)
    assert imgs.shape == (6, 1, 16, 16)
    with pytest.raises(UserError, match="class nope"):
        model.generate(seeds=[0], labels="nope")
    assert not any(p.suffix in (".pt", ".pkl", ".pth") for p in tmp_path.rglob("*"))


def test_training_time_metric_keeps_the_best_checkpoint(tmp_path, ds16):
    cfg = tiny_config(ds16, metrics=("swd",), metric_num=32, kimg=0.048, checkpoint_ticks=1, keep_checkpoints=1)
    rec = Recorder()
    Trainer(cfg, tmp_path, ds16, callbacks=rec).run()
    evaluated = [e for e in rec.events if e["event"] == "metrics"]
    assert [e["kimg"] for e in evaluated] == [0.016, 0.032, 0.048] and all(e["swd"] > 0 for e in evaluated)
    manager = ckpt.CheckpointManager(tmp_path / "checkpoints")
    best = min(evaluated, key=lambda e: e["swd"])
    assert ckpt.read_meta(manager.best())["nimg"] == round(best["kimg"] * 1000)
    kept = {p.stem for p in manager.checkpoints()}
    assert kept == {manager.best().stem, manager.latest().stem}  # last K (1) plus the best
    assert ckpt.read_meta(manager.best())["score"] == pytest.approx(best["swd"])


def test_metrics_every_writes_metrics_jsonl_and_curve(tmp_path, ds16):
    """Checkpoints every 3 ticks, metrics every 0.016 kimg (each tick): every tick evaluates and checkpoints."""
    cfg = tiny_config(ds16, metrics=("swd",), metric_num=32, kimg=0.048, checkpoint_ticks=3, metrics_every=0.016)
    rec = Recorder()
    Trainer(cfg, tmp_path, ds16, callbacks=rec).run()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["kimg"] for r in lines] == [0.016, 0.032, 0.048] and all(r["swd"] > 0 for r in lines)
    assert (tmp_path / "plots" / "metrics.png").stat().st_size > 0
    best = min(lines, key=lambda r: r["swd"])
    manager = ckpt.CheckpointManager(tmp_path / "checkpoints")
    assert ckpt.read_meta(manager.best())["nimg"] == round(best["kimg"] * 1000)
    plain = tiny_config(ds16, metrics=("swd",), metric_num=32, kimg=0.048, checkpoint_ticks=3)
    Trainer(plain, tmp_path / "plain", ds16).run()
    assert [json.loads(x)["kimg"] for x in (tmp_path / "plain" / "metrics.jsonl").read_text().splitlines()] == [0.048]


def test_json_log_and_epochs(tmp_path, cache_dir, capsys):
    rc = cli.main(["train", "--resolution", "16", "--batch", "8", "--epochs", "0.04", "--tick-kimg", "0.008",
                   "--out", str(tmp_path), "--cache-dir", cache_dir, "--json-log", *TINY_FLAGS])
    assert rc == 0
    out = capsys.readouterr().out.strip().splitlines()
    events = [json.loads(line) for line in out]  # every stdout line is one JSON object
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and "tick" in kinds and "checkpoint" in kinds
    (run,) = tmp_path.iterdir()
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["epochs"] == 0.04 and cfg["train"]["kimg"] == pytest.approx(0.04 * cfg["num_images"] / 1000)
    assert events[-1]["kimg"] * 1000 >= round(0.04 * cfg["num_images"])


def test_progressive_resume_mid_fade_gives_identical_weights(tmp_path, cache_dir):
    common = ["--arch", "stylegan", "--resolution", "16", "--batch", "8", "--batch-per-res", "4:8,8:8,16:8",
              "--fade-kimg", "0.016", "--stable-kimg", "0.016", "--tick-kimg", "0.008", "--cache-dir", cache_dir,
              "--quiet", "--aug", "fixed:0.3", *TINY_FLAGS]
    assert cli.main(["train", "--kimg", "0.072", "--out", str(tmp_path / "straight"), *common]) == 0
    assert cli.main(["train", "--kimg", "0.024", "--out", str(tmp_path / "split"), *common]) == 0  # 8 px, mid fade
    (split_run,) = (tmp_path / "split").iterdir()
    assert ckpt.read_meta(ckpt.CheckpointManager(split_run / "checkpoints").latest())["phase"]["alpha"] == 0.0
    assert cli.main(["train", "--resume", str(split_run), "--kimg", "0.072", "--quiet"]) == 0
    (straight_run,) = (tmp_path / "straight").iterdir()
    a, meta_a = _final_tensors(straight_run)
    b, meta_b = _final_tensors(split_run)
    assert meta_a["phase"] == meta_b["phase"] and meta_a["phase"]["resolution"] == 16
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
