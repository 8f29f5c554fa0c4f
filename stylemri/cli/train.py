"""`stylemri train`: the main job. Resolve one config, create (or resume) a run directory, train, report."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from stylemri import __version__
from stylemri.cli.common import add_data_args, cache_progress, data_config_from_args, print_data_warnings
from stylemri.cli.options import add_device, add_outdir
from stylemri.config import RunConfig, flag
from stylemri.device import resolve_device
from stylemri.errors import UserError, describe_oserror

EXAMPLES = """\
examples:
  stylemri train                                            # StyleGAN2, builtin:mni152, 64 px, auto config
  stylemri train --data ~/data/AD_NC --resolution 128 --conditional --kimg 5000
  stylemri train --data ~/data/AD_NC --classes AD --preset stylegan2-adni   # one model per class
  stylemri train --data ~/data/AD_NC --preset stylegan-adni                 # progressive StyleGAN, WGAN-GP
  stylemri train --resume runs/00003-stylegan2-AD_NC-256 --kimg 10000       # continue, or train longer
  torchrun --nproc_per_node=4 -m stylemri train --data ~/data/AD_NC --batch 64   # 4 GPUs, global batch 64

Values come from --preset (default auto: StyleGAN2-ADA's heuristics from resolution and process count),
then from any flag given. Ctrl-C or SIGTERM finishes the current step, writes a checkpoint and exits 130
(SIGINT) or 143 (SIGTERM); 0 only when the requested kimg is reached.
docs/training.md explains every option and the files of a run.
"""

# Flags that override config fields: (flag, field, type, help). Defaults are None = "not given".
NET_FLAGS: list[tuple[str, str, Callable[[str], Any], str]] = [
    ("--z-dim", "z_dim", int, "latent size (default 512)"),
    ("--w-dim", "w_dim", int, "intermediate latent size (default 512)"),
    ("--map-layers", "map_layers", int, "mapping network depth (auto: 2 for StyleGAN2, 8 for StyleGAN)"),
    ("--channel-base", "channel_base", int, "channels = min(channel_base / resolution, channel_max) (auto: 16384, "
                                            "32768 from 512 px)"),
    ("--channel-max", "channel_max", int, "maximum channels per layer (default 512)"),
    ("--mbstd-group", "mbstd_group", int, "minibatch-stddev group size (auto: min(batch per process, 4))"),
    ("--mbstd-features", "mbstd_features", int, "minibatch-stddev features (default 1)"),
    ("--conv-clamp", "conv_clamp", float, "clamp conv outputs to +-N (for reduced precision; default off)"),
]
TRAIN_FLAGS: list[tuple[str, str, Callable[[str], Any], str]] = [
    ("--batch", "batch", int, "global batch over all processes (auto: max(min(4096 / res, 32) * gpus ...))"),
    ("--loss", "loss", str, "ns (non-saturating + R1), wgangp (WGAN-GP + drift) or r3gan (R3GAN's relativistic "
                            "pairing loss + R1 + R2, gamma/2 each); default by --arch"),
    ("--g-lr", "g_lr", float, "G learning rate (auto: 0.0025; StyleGAN 0.001)"),
    ("--d-lr", "d_lr", float, "D learning rate (auto: 0.0025; StyleGAN 0.001)"),
    ("--r1-gamma", "r1_gamma", float, "R1 weight (auto: 0.0002 * res^2 / batch); 0 = off"),
    ("--r1-interval", "r1_interval", int, "lazy R1 every N D steps (default 16)"),
    ("--pl-weight", "pl_weight", float, "path-length regularization weight (StyleGAN2: 2, StyleGAN: 0 = off)"),
    ("--pl-interval", "pl_interval", int, "lazy path length every N G steps (default 4)"),
    ("--pl-decay", "pl_decay", float, "decay of the path-length mean (default 0.01)"),
    ("--pl-batch-shrink", "pl_batch_shrink", int, "path-length batch = batch / N (default 2)"),
    ("--style-mixing", "style_mixing", float, "style-mixing probability (default 0.9)"),
    ("--wgan-lambda", "wgan_lambda", float, "WGAN-GP gradient-penalty weight (default 10)"),
    ("--wgan-epsilon", "wgan_epsilon", float, "WGAN-GP drift weight (default 0.001)"),
    ("--ema-kimg", "ema_kimg", float, "EMA half-life of G in kimg (auto: batch * 10 / 32)"),
    ("--ada-target", "ada_target", float, "ADA target for E[sign(D(real))] (default 0.6)"),
    ("--ada-interval", "ada_interval", int, "adjust ADA p every N steps (default 4)"),
    ("--ada-kimg", "ada_kimg", float, "ADA p can go from 0 to 1 in this many kimg (default 500)"),
    ("--augpipe", "augpipe", str, "ADA pipe: bgc (default), bg, bgcf, bgcfn (+ filter, noise), bgcfnc (+ cutout)"),
    ("--start-res", "start_res", int, "progressive: first resolution (default 4)"),
    ("--fade-kimg", "fade_kimg", float, "progressive: fade-in kimg per resolution (default 600)"),
    ("--stable-kimg", "stable_kimg", float, "progressive: stabilization kimg per resolution (default 600)"),
    ("--tick-kimg", "tick_kimg", float, "log line, losses.csv row every N kimg (default 4)"),
    ("--sample-ticks", "sample_ticks", int, "sample grid every N ticks (default 10)"),
    ("--checkpoint-ticks", "checkpoint_ticks", int, "checkpoint every N ticks (default 50)"),
    ("--keep-checkpoints", "keep_checkpoints", int, "keep the last N checkpoints (default 5)"),
    ("--metrics-every", "metrics_every", float, "with --metrics: also checkpoint and evaluate every N kimg "
                                                "(default 0: at the checkpoints only)"),
    ("--nan-patience", "nan_patience", int, "non-finite steps in a row before reloading the last checkpoint "
                                            "with halved learning rates (default 4)"),
    ("--precision", "precision", str, "fp32, bf16 or fp16 (with a loss scaler) in the top --fp16-res resolutions; "
                                      "mapping, R1 and path length stay fp32 (default auto: bf16 on CUDA, fp32 on CPU)"),
    ("--fp16-res", "fp16_res", int, "reduced precision only in the top N resolutions of G and D, conv outputs "
                                    "clamped to +-256 (default 4, as NVlabs; 0 = all fp32)"),
    ("--batch-gpu", "batch_gpu", int, "images per process and round: the batch is accumulated over "
                                      "batch / (batch-gpu * processes) rounds, same gradient (default: all at once)"),
    ("--workers", "num_workers", int, "data-loader processes per GPU (default: 2 on CUDA, 0 on CPU)"),
    ("--threads", "threads", int, "CPU threads of torch (default: the cores this process may use, 1 when the machine "
                                  "is already busier than its cores; printed at the start)"),
    ("--schedule-kimg", "schedule_kimg", float, "length of the cosine schedules below (default: --kimg)"),
    ("--lr-final", "lr_final", float, "cosine decay of both learning rates to this multiple (R3GAN; default 1 = "
                                      "constant)"),
    ("--gamma-final", "gamma_final", float, "cosine decay of the R1 (and R2) weight to this multiple (default 1)"),
    ("--beta2-start", "beta2_start", float, "Adam beta2 rises (cosine) from this to the second --betas value "
                                            "(R3GAN: 0.9; default: constant)"),
    ("--aug-p-final", "aug_p_final", float, "with --aug fixed:P: p moves (cosine) from P to this value"),
]
# Fields that may change when resuming (they do not change what the weights are trained towards).
RESUMABLE = {"kimg", "epochs", "tick_kimg", "sample_ticks", "checkpoint_ticks", "keep_checkpoints", "nan_patience",
             "precision", "tf32", "channels_last", "compile", "num_workers", "metrics", "metric_num",
             "metrics_every", "fp16_res", "batch_gpu", "threads"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a StyleGAN / StyleGAN2 model on MRI slices (the main job)",
        description=textwrap.fill(
            "Train StyleGAN2 (default) or progressive StyleGAN on brain-MRI slices. Each run gets "
            "RUNS_DIR/<number>-<name>/ with config.json (every resolved value), checkpoints/ (safetensors + "
            "JSON, resumable), losses.csv, stats.jsonl, TensorBoard events, samples/ and plots/.", 100),
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p, resolution=None)
    for action in p._actions:
        if action.dest == "resolution":
            action.help = "image size in pixels, a power of two (default: 64, or the preset's: 256)"
        if "--no-xflip" in action.option_strings:  # kept as a hidden alias: flips are off by default now
            action.help, action.default = argparse.SUPPRESS, None
    p.add_argument("--xflip", dest="xflip", action="store_true", default=None,
                   help="randomly mirror real images left-right (default off: a mirrored sagittal slice faces the "
                        "other way and axial asymmetry is real; the stylegan-adni preset keeps the seeds' flips; "
                        "ADA's own xflip is separate)")
    g = p.add_argument_group("run")
    add_outdir(g, "parent folder of run directories (default: runs)", default="runs")
    g.add_argument("--name", default=None, metavar="NAME",
                   help="run name after the number (default: arch-data-resolution)")
    g.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue RUN_DIR from its latest checkpoint (same weights, optimizer, EMA, ADA p, RNG)")
    g.add_argument("--allow-data-change", action="store_true",
                   help="resume even if the data's fingerprint (file list, sizes, times) changed")
    g.add_argument("--preset", default=None, metavar="NAME", help="auto (default), stylegan-adni or stylegan2-adni")
    g.add_argument("--arch", choices=("stylegan", "stylegan2"), default=None, help="architecture (default: stylegan2)")
    g.add_argument("--dims", type=int, choices=(2, 3), default=None,
                   help="2 = slices (default); 3 = whole NIfTI volumes, 3-D StyleGAN2 (docs/volumes.md)")
    g.add_argument("--conditional", action="store_true", default=None,
                   help="one model for all classes (labels from the data); default: unconditional")
    dur = g.add_mutually_exclusive_group()
    dur.add_argument("--kimg", type=float, default=None, metavar="K",
                     help="duration in thousands of images shown (default 25000)")
    dur.add_argument("--epochs", type=float, default=None, metavar="E", help="duration in passes over the data")
    g.add_argument("--seed", type=int, default=None, metavar="S", help="random seed (default 0)")
    add_device(g)
    g.add_argument("--quiet", action="store_true", help="no progress bar or tick lines; only the final summary")
    g.add_argument("--json-log", action="store_true", help="print one JSON object per tick and event on stdout")
    n = p.add_argument_group("network")
    for flag, dest, typ, help_ in NET_FLAGS:
        n.add_argument(flag, dest=f"net_{dest}", type=typ, default=None, help=help_, metavar=_metavar(typ))
    t = p.add_argument_group("training")
    for flag, dest, typ, help_ in TRAIN_FLAGS:
        t.add_argument(flag, dest=f"train_{dest}", type=typ, default=None, help=help_, metavar=_metavar(typ))
    t.add_argument("--lr", type=float, default=None, metavar="X", help="set both --g-lr and --d-lr")
    t.add_argument("--betas", default=None, metavar="B1,B2", help="Adam betas (default 0,0.99)")
    t.add_argument("--ema-rampup", default=None, metavar="R|none", help="EMA ramp-up ratio (auto 0.05) or none")
    t.add_argument("--aug", default=None, metavar="MODE",
                   help="ada, fixed:P, diffaugment or none (augmentation of everything D sees); default ada with "
                        "--loss ns, none with --loss wgangp (ADA needs a logistic D: ada + wgangp is refused)")
    t.add_argument("--aug-p", type=float, default=None, metavar="P", help="initial ADA probability (default 0)")
    t.add_argument("--progressive", action=argparse.BooleanOptionalAction, default=None,
                   help="progressive growing (StyleGAN only; on by default for --arch stylegan)")
    t.add_argument("--batch-per-res", default=None, metavar="R:B,...",
                   help="progressive: global batch per resolution, e.g. 4:512,8:256,16:128")
    t.add_argument("--metrics", default=None, metavar="M,...",
                   help="evaluate G_ema at every checkpoint: fid, kid, swd, pr (needs Inception weights except swd); "
                        "the first of fid/kid/swd keeps the best checkpoint")
    t.add_argument("--metric-num", type=int, default=None, metavar="N", help="generated images per evaluation (5000)")
    t.add_argument("--compile", action="store_true", default=None, help="torch.compile the main G and D passes")
    t.add_argument("--channels-last", action="store_true", default=None, help="channels_last memory format")
    t.add_argument("--tf32", dest="tf32", action="store_true", default=None,
                   help="allow TF32 matmuls and convolutions on CUDA (default off, as NVlabs: TF32 changes fp32 "
                        "results)")
    t.add_argument("--no-tf32", dest="tf32", action="store_false", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_train)


def _metavar(typ: Callable[[str], Any]) -> str:
    return {int: "N", float: "X"}.get(typ, "NAME")  # type: ignore[call-overload]


# ---- turning arguments into configs -------------------------------------------------------------------
def _explicit(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(network overrides, training overrides) from the flags that were given."""
    net = {dest: getattr(args, f"net_{dest}") for _, dest, _, _ in NET_FLAGS
           if getattr(args, f"net_{dest}") is not None}
    train = {dest: getattr(args, f"train_{dest}") for _, dest, _, _ in TRAIN_FLAGS
             if getattr(args, f"train_{dest}") is not None}
    if args.arch is not None:
        net["arch"] = args.arch
    if getattr(args, "dims", None) is not None:
        net["dims"] = args.dims
    if args.resolution is not None:
        net["resolution"] = args.resolution
    for key, value in (("seed", args.seed), ("kimg", args.kimg), ("epochs", args.epochs),
                       ("progressive", args.progressive), ("compile", args.compile),
                       ("channels_last", args.channels_last), ("tf32", args.tf32), ("aug_p", args.aug_p)):
        if value is not None:
            train[key] = value
    if args.lr is not None:
        train.setdefault("g_lr", args.lr)
        train.setdefault("d_lr", args.lr)
    if args.betas is not None:
        try:
            b1, b2 = (float(x) for x in args.betas.split(","))
        except ValueError:
            raise UserError(f"--betas {args.betas}: expected two numbers like 0,0.99") from None
        train["betas"] = (b1, b2)
    if args.ema_rampup is not None:
        try:
            train["ema_rampup"] = None if args.ema_rampup.lower() == "none" else float(args.ema_rampup)
        except ValueError:
            raise UserError(f"--ema-rampup {args.ema_rampup}: expected a number or none") from None
    if args.aug is not None:
        from stylemri.training.presets import parse_aug

        mode, p = parse_aug(args.aug)
        train["aug"] = mode
        if mode == "fixed":
            train["aug_p"] = p
    if args.metrics is not None:
        from stylemri.training.presets import TRAINING_METRICS

        train["metrics"] = tuple(m.strip().lower() for m in args.metrics.split(",") if m.strip())
        if not train["metrics"] or set(train["metrics"]) - set(TRAINING_METRICS):
            raise UserError(f"--metrics {args.metrics}: expected a comma-separated subset of "
                            f"{','.join(TRAINING_METRICS)}")
    if args.metric_num is not None:
        train["metric_num"] = args.metric_num
    if args.batch_per_res is not None:
        train["batch_per_res"] = _parse_batch_per_res(args.batch_per_res)
    if "epochs" in train and not train["epochs"] > 0:
        raise UserError(f"--epochs {train['epochs']}: expected a positive number")
    return net, train


def _parse_batch_per_res(text: str) -> tuple[tuple[int, int], ...]:
    try:
        pairs = tuple(sorted((int(r), int(b)) for r, b in (item.split(":") for item in text.split(",") if item)))
    except ValueError:
        raise UserError(f"--batch-per-res {text}: expected pairs like 4:512,8:256") from None
    if not pairs:
        raise UserError(f"--batch-per-res {text}: expected pairs like 4:512,8:256")
    return pairs


def _fresh_config(args: argparse.Namespace, world_size: int, ds: Any, data_cfg: Any) -> RunConfig:
    from stylemri.training import presets

    net, train = _explicit(args)
    net["resolution"] = data_cfg.resolution  # decided once, by `_fresh_data_config`
    net["img_channels"] = data_cfg.channels
    net["c_dim"] = ds.num_classes if args.conditional else 0
    if net.get("dims") == 3:
        _volume_defaults(net, train)
    if "epochs" in train:
        train["kimg"] = train["epochs"] * len(ds) / 1000
    train.setdefault("num_workers", 0 if _device_type(args.device) == "cpu" else 2)
    net_cfg, train_cfg = presets.resolve(args.preset or "auto", world_size=world_size, net=net, train=train,
                                         device_type=_device_type(args.device))
    data_cfg = replace(data_cfg, source=resolve_source(data_cfg.source), source_given=data_cfg.source)
    cfg = RunConfig(data=data_cfg, network=net_cfg, train=train_cfg,
                    version=__version__, fingerprint=ds.fingerprint, class_names=tuple(ds.class_names),
                    num_images=len(ds), voxel_mm=getattr(ds, "voxel_mm", None))
    return cfg


def resolve_source(source: str) -> str:
    """A folder or file source as an absolute path (a run resumes from any working directory); builtins as is."""
    return source if source.startswith("builtin:") else str(Path(source).expanduser().resolve())


def _volume_defaults(net: dict[str, Any], train: dict[str, Any]) -> None:
    """--dims 3: the 3-D channel defaults (fit 64^3 on one GPU) and the options 3-D runs do not have."""
    from stylemri.networks.stylegan2_3d import VOLUME_CHANNEL_BASE, VOLUME_CHANNEL_MAX

    if net.get("arch", "stylegan2") != "stylegan2":
        raise UserError(f"--arch {net['arch']} with --dims 3: expected stylegan2 (the only 3-D architecture)")
    if train.get("progressive"):
        raise UserError("--progressive with --dims 3: 3-D runs train StyleGAN2 at full resolution")
    if train.get("metrics"):
        raise UserError(f"--metrics {','.join(train['metrics'])} with --dims 3: training-time metrics are 2-D only; "
                        "evaluate a 3-D run afterwards (docs/volumes.md)")
    net.setdefault("channel_base", VOLUME_CHANNEL_BASE)
    net.setdefault("channel_max", VOLUME_CHANNEL_MAX)


def _same_source(a: str, b: str) -> bool:
    return a == b or resolve_source(a) == resolve_source(b)


def _fresh_data_config(args: argparse.Namespace) -> Any:
    """A new run's data config at the run's resolution: --resolution, else the preset's, else 64 (the preset
    owns data and network resolution together: `presets.training_resolution` decides and checks it)."""
    from stylemri.training import presets

    resolution = presets.training_resolution(args.preset or "auto", args.resolution)
    if args.xflip is None:  # not given: the preset's default (off, but for the seeds' StyleGAN preset)
        args.xflip = presets.default_xflip(args.preset or "auto")
    return replace(data_config_from_args(args), resolution=resolution, dims=args.dims or 2)


def _device_type(device: str) -> str:
    return resolve_device(device).type


def _resume_config(args: argparse.Namespace, saved: RunConfig, run_dir: Path) -> RunConfig:
    """The saved config with the allowed changes; anything else that differs is a clear error."""
    net, train = _explicit(args)
    data_given = data_config_from_args(args)
    mismatches = []
    for key, value in net.items():
        if getattr(saved.network, key) != value:
            mismatches.append(f"network.{key} is {getattr(saved.network, key)!r} in the run, {value!r} requested")
    for key, value in train.items():
        if key not in RESUMABLE and getattr(saved.train, key) != value:
            mismatches.append(f"train.{key} is {getattr(saved.train, key)!r} in the run, {value!r} requested")
    defaults = data_config_from_args(argparse.Namespace(**{**vars(args), **_DATA_DEFAULTS}))
    for key in ("source", "channels", "split", "classes", "axis", "min_content"):
        given, default = getattr(data_given, key), getattr(defaults, key)
        if key == "source" and _same_source(given, saved.data.source):
            continue
        if given != default and given != getattr(saved.data, key):
            mismatches.append(f"data.{key} is {getattr(saved.data, key)!r} in the run, {given!r} requested")
    if args.xflip is not None and args.xflip != saved.data.xflip:
        mismatches.append(f"data.xflip is {saved.data.xflip!r} in the run, {args.xflip!r} requested")
    if args.preset is not None and args.preset != saved.train.preset:
        mismatches.append(f"preset is {saved.train.preset!r} in the run, {args.preset!r} requested")
    if args.conditional and not saved.network.c_dim:
        mismatches.append("the run is unconditional, --conditional requested")
    if mismatches:
        allowed = ", ".join(sorted(flag(k) for k in RESUMABLE))
        raise UserError(f"--resume {run_dir}: incompatible configuration: {'; '.join(mismatches)} "
                        f"(only {allowed} may change when resuming)")
    changes = {k: v for k, v in train.items() if k in RESUMABLE}
    if "epochs" in changes:
        changes["kimg"] = changes["epochs"] * saved.num_images / 1000
    cache_dir = args.cache_dir if args.cache_dir is not None else saved.data.cache_dir
    return replace(saved, train=replace(saved.train, **changes), data=replace(saved.data, cache_dir=cache_dir))


_DATA_DEFAULTS = {"source": "builtin:mni152", "resolution": None, "channels": 1, "split": "train", "classes": None,
                  "axis": "axial", "min_content": 0.1, "xflip": None, "cache_dir": None}


# ---- output ---------------------------------------------------------------------------------------------
def _threads_text(info: dict[str, Any]) -> str:
    return f", {info['threads']} threads ({info['threads_reason']})" if info.get("threads") else ""


class ConsoleCallbacks:
    """Progress bar (TTY), tick lines (not a TTY), JSON lines (--json-log) or nothing (--quiet)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.bar: Any = None
        self.last: dict[str, Any] = {}
        self.t0 = time.time()

    def start(self, info: dict[str, Any]) -> None:
        if self.mode == "json":
            self._json({"event": "start", **info})
        elif self.mode in ("bar", "lines"):
            print(f"stylemri train: {info['arch']} {info['resolution']} px on {info['images']} images "
                  f"({', '.join(info['classes'])}); G {info['G_params'] / 1e6:.2f}M D {info['D_params'] / 1e6:.2f}M "
                  f"params; {info['device']} {info['precision']} x{info['world_size']}"
                  f"{_threads_text(info)}; run {info['run_dir']}",
                  file=sys.stderr, flush=True)
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=round(info["total_kimg"], 3), initial=round(info["kimg"], 3), unit="kimg",
                            file=sys.stderr, dynamic_ncols=True, smoothing=0.1,
                            bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} kimg [{elapsed}<{remaining}]{postfix}")

    def step(self, s: dict[str, Any]) -> None:
        self.last.update({k: v for k, v in s.items() if isinstance(v, (int, float))})
        if self.bar is not None:
            self.bar.n = round(s["kimg"], 3)
            post = [s["phase"]]
            if "img_per_s" in self.last:
                post.append(f"{self.last['img_per_s']:.1f} img/s")
            for key, short in (("G_loss", "G"), ("D_loss", "D")):
                if key in s:
                    post.append(f"{short} {s[key]:.3f}")
            post.append(f"p {s['ada_p']:.3f}")
            self.bar.set_postfix_str(" | ".join(post), refresh=False)
            self.bar.refresh()

    def tick(self, s: dict[str, Any]) -> None:
        self.last["img_per_s"] = s["img_per_s"]
        if self.mode == "json":
            self._json({"event": "tick", **s})
        elif self.mode == "lines":
            fields = [f"tick {s['tick']}", f"kimg {s['kimg']:.3f}/{s['total_kimg']:g}", s["phase"],
                      f"{s['img_per_s']:.1f} img/s"]
            for key in ("G_loss", "D_loss", "R1", "path_length"):
                if s.get(key) is not None:
                    fields.append(f"{key} {s[key]:.4f}")
            fields.append(f"ada_p {s['ada_p']:.3f}")
            if s.get("nonfinite"):
                fields.append(f"nonfinite {s['nonfinite']}")
            print("  ".join(fields), file=sys.stderr, flush=True)

    def event(self, e: dict[str, Any]) -> None:
        if self.mode == "json":
            self._json(e)
        elif e.get("warning") and self.mode != "quiet":  # e.g. ada_warning: ADA's p passed 0.8
            (self.bar.write if self.bar is not None else lambda m: print(m, file=sys.stderr))(
                f"stylemri: warning: {e['warning']} (kimg {e['kimg']:.3f})")
        elif e["event"] in ("nan_recovery", "resolution") and self.mode != "quiet":
            if e["event"] == "nan_recovery":
                msg = (f"non-finite losses: reloaded {e['path']} (kimg {e['kimg']:.3f}), learning rates halved to "
                       f"G {e['g_lr']:.3g} D {e['d_lr']:.3g}")
            else:
                msg = f"resolution {e['previous']} -> {e['resolution']} px at kimg {e['kimg']:.3f} (batch {e['batch']})"
            (self.bar.write if self.bar is not None else lambda m: print(m, file=sys.stderr))(f"stylemri: {msg}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    @staticmethod
    def _json(obj: dict[str, Any]) -> None:
        from stylemri.training.logs import _jsonable

        print(json.dumps(_jsonable(obj)), flush=True)


# A clean stop that did not reach --kimg is not a success: 128 + the signal, as a shell reports a process
# killed by it, so `make`, `&&` chains and schedulers (SLURM's afterok) do not go on from a half-trained run.
# A rank stopped because another rank got the signal reports SIGTERM's code (what schedulers send).
INTERRUPTED_EXIT = {"SIGINT": 128 + signal.SIGINT, "SIGTERM": 128 + signal.SIGTERM}


def interrupted_exit_code(signal_name: str | None) -> int:
    """130 after SIGINT, 143 after SIGTERM (or a stop without a signal of our own)."""
    return INTERRUPTED_EXIT.get(signal_name or "SIGTERM", INTERRUPTED_EXIT["SIGTERM"])


class StopFlag:
    """SIGINT/SIGTERM set the flag (the loop finishes its step and checkpoints); a second SIGINT aborts."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def __call__(self) -> bool:
        return self.signal is not None


# ---- the command ----------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from stylemri.data import load_dataset
    from stylemri.training import distributed as ddp
    from stylemri.training.run_dir import create_run_dir, default_name, find_run, run_lock
    from stylemri.training.training_loop import Trainer, TrainingDiverged

    fresh_data = None if args.resume is not None else _fresh_data_config(args)  # checks flags before anything slow
    info = ddp.init_from_env(args.device)
    held = contextlib.ExitStack()  # the run folder's lock, held by the main process until training ends
    try:
        latest = None
        if args.resume is not None:
            run_dir, saved, latest = find_run(args.resume)
            if info.is_main:
                held.enter_context(run_lock(run_dir))
            cfg = _resume_config(args, saved, run_dir)
            data_cfg = cfg.data
        else:
            data_cfg = fresh_data
        ds = _load_data(load_dataset, data_cfg, info, ddp)
        if args.resume is not None:
            _check_same_data(cfg, ds, run_dir, args.allow_data_change)
        else:
            cfg = _fresh_config(args, info.world_size, ds, data_cfg)
            cfg = replace(cfg, name=args.name or default_name(cfg))
            path = str(create_run_dir(args.outdir, cfg.name)) if info.is_main else ""
            run_dir = Path(ddp.broadcast_string(path, info))
            if info.is_main:
                held.enter_context(run_lock(run_dir))
        mode = "json" if args.json_log else "quiet" if args.quiet else "bar" if sys.stderr.isatty() else "lines"
        callbacks = ConsoleCallbacks(mode if info.is_main else "quiet")
        stop = StopFlag()
        stop.install()
        try:
            trainer = Trainer(cfg, run_dir, ds, dist=info, callbacks=callbacks,  # type: ignore[arg-type]
                              resume_from=latest)
            if trainer.nimg >= trainer.total_nimg and latest is not None:
                if info.is_main:
                    print(f"stylemri: {run_dir} already trained {trainer.nimg / 1000:.3f} kimg of "
                          f"{cfg.train.kimg:g}; pass --kimg to train longer", file=sys.stderr)
                return 0
            result = trainer.run(should_stop=stop)
        except TrainingDiverged as exc:
            callbacks.close()
            print(f"stylemri: error: training diverged: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:  # disk full, folder gone read-only: say where and how to continue
            raise UserError(describe_oserror(exc) + _resume_hint(run_dir)) from None
        finally:
            stop.restore()
            callbacks.close()
        if info.is_main:
            _report(result, run_dir, stop.signal, args)
        return interrupted_exit_code(stop.signal) if result.interrupted else 0
    finally:
        held.close()
        ddp.shutdown(info)


def _resume_hint(run_dir: Path) -> str:
    from stylemri.training.checkpoint import CheckpointManager

    if CheckpointManager(run_dir / "checkpoints").checkpoints():
        return f"; free space or fix the folder, then resume with: stylemri train --resume {run_dir}"
    return f"; {run_dir} holds no checkpoint yet: fix this and start the run again"


def _load_data(load_dataset: Callable, data_cfg: Any, info: Any, ddp: Any) -> Any:
    """Rank 0 prepares the cache first; the other ranks then read it."""
    ds = None
    if info.is_main:
        ds = load_dataset(data_cfg, progress=cache_progress())
        print_data_warnings(ds.report)
    ddp.barrier(info)
    if ds is None:
        ds = load_dataset(data_cfg)
    return ds


def _check_same_data(cfg: RunConfig, ds: Any, run_dir: Path, allow: bool) -> None:
    if tuple(ds.class_names) != tuple(cfg.class_names):
        raise UserError(f"--resume {run_dir}: the data's classes are {', '.join(ds.class_names)}; the run was trained "
                        f"on {', '.join(cfg.class_names)}")
    if not allow and cfg.fingerprint is not None and ds.fingerprint != cfg.fingerprint:
        raise UserError(f"--resume {run_dir}: the data changed since the run started "
                        f"(fingerprint {ds.fingerprint[:12]}, "
                        f"run {cfg.fingerprint[:12]}); pass --allow-data-change to resume anyway")


def _report(result: Any, run_dir: Path, signal_name: str | None, args: argparse.Namespace) -> None:
    if args.json_log:
        print(json.dumps({"event": "end", "kimg": result.kimg, "interrupted": result.interrupted,
                          "checkpoint": str(result.checkpoint) if result.checkpoint else None,
                          "run_dir": str(run_dir), "nonfinite_steps": result.nonfinite_steps,
                          "recoveries": result.recoveries}), flush=True)
    if result.interrupted:
        print(f"stylemri: {signal_name or 'stop'} received: checkpoint {result.checkpoint} written at "
              f"{result.kimg:.3f} kimg; resume with: stylemri train --resume {run_dir}", file=sys.stderr, flush=True)
    elif not args.json_log:
        last = result.last_tick or {}
        print(f"stylemri: trained {result.kimg:.3f} kimg in {result.tick} ticks; run {run_dir}; checkpoint "
              f"{result.checkpoint}; samples {run_dir / 'samples'}; plots {run_dir / 'plots'}"
              + (f"; G_loss {last['G_loss']:.3f} D_loss {last['D_loss']:.3f}" if last.get("G_loss") is not None
                 and last.get("D_loss") is not None else ""), file=sys.stderr, flush=True)


__all__ = ["register", "cmd_train"]
