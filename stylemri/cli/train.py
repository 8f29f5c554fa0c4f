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

from stylemri.cli.options import (
    add_alias, add_config_flags, add_data_args, add_device, add_flag, add_outdir, cache_progress, config_values,
    data_config_from_args, print_data_warnings,
)
from stylemri.config import DataConfig, NetworkConfig, RunConfig, TrainConfig
from stylemri.training.resolve import RunFlags, resolve_run, resume_run, run_data_config
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



def register(sub: argparse._SubParsersAction) -> None:
    """The train command: data options (shared), run options, then one flag per config field with help."""
    from stylemri.training import run_dir as layout
    from stylemri.training.presets import PRESETS

    p = sub.add_parser(
        "train", help="train a StyleGAN / StyleGAN2 model on MRI slices (the main job)",
        description=textwrap.fill(
            f"Train StyleGAN2 (default) or progressive StyleGAN on brain-MRI slices. Each run gets "
            f"RUNS_DIR/<number>-<name>/ with {layout.CONFIG_NAME} (every resolved value), {layout.CHECKPOINTS}/ "
            f"(safetensors + JSON, resumable), {layout.LOSSES}, {layout.EVENTS}, TensorBoard events, "
            f"{layout.SAMPLES}/ and {layout.PLOTS}/.", 100),
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p, resolution=None, xflip=False,
                  resolution_help="image size in pixels, a power of two (default: 64, or the preset's: 256)")
    p.add_argument("--xflip", dest="xflip", action=argparse.BooleanOptionalAction, default=None,
                   help="randomly mirror real images left-right (default off: a mirrored sagittal slice faces the "
                        "other way and axial asymmetry is real; the stylegan-adni preset keeps the reference "
                        "implementations' flips; ADA's own xflip is separate)")
    g = p.add_argument_group("run")
    add_outdir(g, "parent folder of run directories (default: runs)", default="runs")
    g.add_argument("--name", default=None, metavar="NAME",
                   help="run name after the number (default: arch-data-resolution)")
    g.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue RUN_DIR from its latest checkpoint (same weights, optimizer, EMA, ADA p, RNG)")
    g.add_argument("--allow-data-change", action="store_true",
                   help="resume even if the data's fingerprint (file list, sizes, times) changed")
    g.add_argument("--preset", default=None, metavar="NAME",
                   help=f"{', '.join(PRESETS)} (default auto); `stylemri info networks --preset NAME` counts the "
                        "parameters of what it trains")
    add_flag(g, "--arch", default=None, help="architecture (default: stylegan2)")
    add_flag(g, "--dims", default=None)
    g.add_argument("--conditional", action="store_true", default=None,
                   help="one model for all classes (labels from the data); default: unconditional")
    add_device(g)
    g.add_argument("--quiet", action="store_true", help="no progress bar or tick lines; only the final summary")
    g.add_argument("--json-log", action="store_true", help="print one JSON object per tick and event on stdout")
    n, t = p.add_argument_group("network"), p.add_argument_group("training")
    groups = {"run": g, "duration": g.add_mutually_exclusive_group(), "network": n, "training": t,
              "covariates": p.add_argument_group("covariates (docs/covariates.md)")}
    add_config_flags(groups, DataConfig, "data_")
    add_config_flags(groups, NetworkConfig, "net_")
    add_config_flags(groups, TrainConfig, "train_")
    t.add_argument("--lr", type=float, default=None, metavar="X", help="set both --g-lr and --d-lr")
    add_alias(t, "--no-tf32", "train_tf32", action="store_false")  # the default since TF32 is off
    p.set_defaults(func=cmd_train)


# ---- turning arguments into configs -------------------------------------------------------------------
def run_flags(args: argparse.Namespace) -> RunFlags:
    """What was typed, for the training layer: explicit config values, data options, preset, --lr."""
    net = config_values(args, NetworkConfig, "net_")
    for key in ("arch", "dims", "resolution"):
        if getattr(args, key, None) is not None:
            net[key] = getattr(args, key)
    device_type = resolve_device(args.device).type
    data = replace(data_config_from_args(args), **config_values(args, DataConfig, "data_"))  # + --condition, --missing
    return RunFlags(network=net, train=config_values(args, TrainConfig, "train_"), data=data,
                    preset=args.preset, conditional=bool(args.conditional), xflip=args.xflip, lr=args.lr,
                    device_type=device_type)


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

    flags = run_flags(args)
    fresh_data = None if args.resume is not None else run_data_config(flags)  # checks flags before anything slow
    info = ddp.init_from_env(args.device)
    held = contextlib.ExitStack()  # the run folder's lock, held by the main process until training ends
    try:
        latest = None
        if args.resume is not None:
            run_dir, saved, latest = find_run(args.resume)
            if info.is_main:
                held.enter_context(run_lock(run_dir))
            cfg = resume_run(saved, flags, run_dir)
            data_cfg = cfg.data
        else:
            data_cfg = fresh_data
        ds = _load_data(load_dataset, data_cfg, info, ddp, cfg.covariates if args.resume is not None else None)
        if args.resume is not None:
            _check_same_data(cfg, ds, run_dir, args.allow_data_change)
        else:
            cfg = resolve_run(flags, ds, data_cfg, info.world_size)
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
    from stylemri.training.run_dir import RunLayout

    if CheckpointManager(RunLayout(run_dir).checkpoints).checkpoints():
        return f"; free space or fix the folder, then resume with: stylemri train --resume {run_dir}"
    return f"; {run_dir} holds no checkpoint yet: fix this and start the run again"


def _load_data(load_dataset: Callable, data_cfg: Any, info: Any, ddp: Any, covariates: Any = None) -> Any:
    """Rank 0 prepares the cache first; the other ranks then read it. `covariates`: a resumed run's scaling."""
    ds = None
    if info.is_main:
        ds = load_dataset(data_cfg, progress=cache_progress(), covariates=covariates)
        print_data_warnings(ds.report)
    ddp.barrier(info)
    if ds is None:
        ds = load_dataset(data_cfg, covariates=covariates)
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
    from stylemri.training.run_dir import RunLayout

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
              f"{result.checkpoint}; samples {RunLayout(run_dir).samples}; plots {RunLayout(run_dir).plots}"
              + (f"; G_loss {last['G_loss']:.3f} D_loss {last['D_loss']:.3f}" if last.get("G_loss") is not None
                 and last.get("D_loss") is not None else ""), file=sys.stderr, flush=True)


__all__ = ["register", "cmd_train"]
