"""Run directories: `RUNS_DIR/<00000>-<name>/` with its configuration, checkpoints, sample grids, plots, logs
and the lock that keeps a second process from training in a folder while one does.

This is the one module that spells a run folder's names: everyone else asks `RunLayout(run_dir)` (or the
names below) where a file goes, so renaming one is a change here only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from stylemri.config import RunConfig, from_dict, to_dict
from stylemri.errors import StylemriWarning, UserError
from stylemri.io import write_json
from stylemri.training.checkpoint import CheckpointManager, read_meta

RUN_RE = re.compile(r"^(\d{5,})-")
CONFIG_NAME = "config.json"
CHECKPOINTS = "checkpoints"  # a run folder keeps its checkpoints here
SAMPLES = "samples"  # sample grids (reals, fakes per checkpoint, progressive strips)
PLOTS = "plots"  # loss, metric and progress figures
LOSSES = "losses.csv"  # one row per tick
EVENTS = "stats.jsonl"  # one JSON line per tick and event
METRICS = "metrics.jsonl"  # one JSON line per training-time evaluation
LOCK_NAME = "train.lock"
AUDITS = "audit"  # `stylemri audit RUN` reports, one folder per checkpoint tag
EXPORTS = "exports"  # `stylemri export` files
OUTPUTS = "outputs"  # generate / mix / interpolate / ... without --outdir
REQUIRED_KEYS = ("data", "network", "train", "class_names")


def _entry(*parts: str) -> property:
    """A RunLayout attribute: the path of `parts` inside the run folder."""
    return property(lambda self: self.root.joinpath(*parts), doc=f"RUN/{'/'.join(parts)}")


@dataclass(frozen=True)
class RunLayout:
    """Where each file of one run folder lives."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    config = _entry(CONFIG_NAME)
    checkpoints = _entry(CHECKPOINTS)
    samples = _entry(SAMPLES)
    plots = _entry(PLOTS)
    losses = _entry(LOSSES)
    events = _entry(EVENTS)
    metrics = _entry(METRICS)
    lock = _entry(LOCK_NAME)
    reals_grid = _entry(SAMPLES, "reals.png")
    progress_figure = _entry(PLOTS, "progress_resolutions.png")
    loss_plot = _entry(PLOTS, "losses.png")
    metrics_plot = _entry(PLOTS, "metrics.png")
    audits = _entry(AUDITS)
    exports = _entry(EXPORTS)
    outputs = _entry(OUTPUTS)

    def fakes_grid(self, tag: str) -> Path:
        return self.samples / f"fakes-{tag}.png"

    def progress_strip(self, resolution: int) -> Path:
        return self.samples / f"progress-{resolution:04d}px.png"

    def progress_strips(self) -> list[tuple[int, Path]]:
        """(resolution, path) of every progress strip written so far, smallest resolution first."""
        found = [(int(m.group(1)), p) for p in self.samples.glob("progress-*px.png")
                 if (m := re.fullmatch(r"progress-(\d+)px\.png", p.name))]
        return sorted(found)


def default_name(cfg: RunConfig) -> str:
    """e.g. `stylegan2-mni152-64` or `stylegan-AD_NC-256-cond`."""
    source = cfg.data.source
    short = source.split(":", 1)[1] if source.startswith("builtin:") else Path(source.rstrip("/")).name or "data"
    short = re.sub(r"[^A-Za-z0-9_.+-]+", "_", short)[:40]
    parts = [cfg.network.arch, short, str(cfg.network.resolution)]
    if cfg.data.classes:
        parts.append("+".join(cfg.data.classes)[:40])
    if cfg.network.c_dim:
        parts.append("cond")
    return "-".join(parts)


def create_run_dir(runs_dir: str | os.PathLike, name: str) -> Path:
    """A fresh `<runs_dir>/<next number>-<name>/`, created atomically (mkdir fails if it exists)."""
    root = Path(runs_dir)
    if root.exists() and not root.is_dir():
        raise UserError(f"--outdir {root}: expected a folder for runs, found a file")
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise UserError(f"--name {name}: expected letters, digits and _ . + - only")
    root.mkdir(parents=True, exist_ok=True)
    while True:
        numbers = [int(m.group(1)) for p in root.iterdir() if (m := RUN_RE.match(p.name))]
        path = root / f"{max(numbers, default=-1) + 1:05d}-{name}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def write_run_config(run_dir: Path, cfg: RunConfig) -> Path:
    path = RunLayout(run_dir).config
    write_json(path, to_dict(cfg))
    return path


def read_run_config(run_dir: str | os.PathLike) -> RunConfig:
    path = RunLayout(run_dir).config
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise UserError(f"{run_dir}: expected a stylemri run directory (no {CONFIG_NAME} there)") from None
    except IsADirectoryError:
        raise UserError(f"{path}: expected the run's configuration file, found a folder") from None
    except ValueError as exc:
        raise UserError(f"{path}: expected a stylemri run configuration (JSON), could not parse it "
                        f"({str(exc)[:80]})") from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(data, dict) or k not in data]
    if missing:
        raise UserError(f"{path}: expected a stylemri run configuration as `stylemri train` writes it; "
                        f"missing {', '.join(missing)}")
    try:
        cfg = from_dict(RunConfig, data)
    except (ValueError, TypeError, UserError) as exc:
        raise UserError(f"{path}: expected a stylemri run configuration ({exc})") from None
    if not cfg.class_names:
        raise UserError(f"{path}: expected the classes the run was trained on (class_names is empty)")
    return cfg


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold `<run_dir>/train.lock` (an flock, with the holder's PID inside) while training in `run_dir`.

    A second process gets a UserError naming the PID that holds it. The kernel drops an flock when its
    process dies (even by kill -9), so a lock file left by a dead process is simply taken over (with a
    warning naming the old PID). The file is removed on release.
    """
    path = RunLayout(run_dir).lock
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _lock_holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise UserError(f"{run_dir}: in use by process {holder or '(unknown)'}, which is training this run "
                            f"({path}); wait for it to finish or stop it, then run again") from None
        try:  # the previous holder may have removed the file between our open and flock: lock the live one
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        previous = _lock_holder(fd)
        if previous and previous.split()[0] != str(os.getpid()):
            warnings.warn(f"{path}: lock of process {previous}, no longer running, taken over", StylemriWarning,
                          stacklevel=3)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)  # closing drops the flock


def _lock_holder(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""


def run_dir_of(path: str | os.PathLike) -> Path:
    """The run folder of a path: the run folder itself, its `checkpoints/` folder, or a file inside either."""
    p = Path(path)
    if p.is_file() or p.suffix in (".json", ".safetensors"):
        p = p.parent
    return p.parent if p.name == CHECKPOINTS and RunLayout(p.parent).config.exists() else p


def checkpoint_kimg(json_path: Path) -> float:
    """kimg of a checkpoint from its name (`ckpt-<nimg>`); NaN for another name."""
    m = re.match(r"^ckpt-(\d+)$", Path(json_path).stem)
    return int(m.group(1)) / 1000 if m else math.nan


def find_checkpoint(path: str | os.PathLike, which: str = "latest") -> Path:
    """A run folder (or its checkpoints/) + 'latest' | 'best' | KIMG -> that checkpoint's JSON record;
    a checkpoint file (.json or .safetensors) as it is."""
    p = Path(path)
    which = str(which).strip().lower()
    if p.is_file():
        if p.suffix not in (".json", ".safetensors"):
            raise UserError(f"{p}: expected a run directory or a checkpoint (.json or .safetensors)")
        if which != "latest":
            raise UserError(f"--checkpoint {which}: {p} is already one checkpoint; give the run folder to choose")
        return p.with_suffix(".json")
    if not p.exists():
        raise UserError(f"{p}: no such run directory")
    run = run_dir_of(p)
    manager = CheckpointManager(RunLayout(run).checkpoints)
    whole = manager.checkpoints()
    if not whole:
        records = sorted(RunLayout(run).checkpoints.glob("ckpt-*.json"))
        if records:  # there are checkpoints, but none this version can read whole: say why
            read_meta(records[-1])  # raises for a foreign or older format
            raise UserError(f"{records[-1]}: checkpoint incomplete (its tensor file is missing or truncated)")
        raise UserError(f"{run}: expected a training run with at least one checkpoint in {CHECKPOINTS}/; found none")
    if which == "latest":
        return manager.latest() or whole[-1]
    if which == "best":
        best = manager.best()
        if best is None:
            raise UserError(f"--checkpoint best: {run} has no best checkpoint (no metric was tracked); "
                            f"use latest or a kimg")
        return best
    try:
        kimg = float(which)
    except ValueError:
        raise UserError(f"--checkpoint {which}: expected latest, best, or a kimg number") from None
    matches = [c for c in whole if math.isclose(checkpoint_kimg(c), kimg, rel_tol=0, abs_tol=5e-4)]
    if not matches:
        have = ", ".join(f"{checkpoint_kimg(c):g}" for c in whole)
        raise UserError(f"--checkpoint {which}: no checkpoint at {kimg:g} kimg in {run}; available: {have}")
    return matches[-1]


def find_run(path: str | os.PathLike) -> tuple[Path, RunConfig, Path]:
    """A run directory (or its checkpoints/ folder) -> (run dir, config, latest whole checkpoint)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such run directory")
    if not p.is_dir():
        raise UserError(f"{p}: expected a stylemri run directory (a folder with {CONFIG_NAME} and {CHECKPOINTS}/)")
    p = run_dir_of(p)
    cfg = read_run_config(p)
    latest = CheckpointManager(RunLayout(p).checkpoints).latest()
    if latest is None:
        raise UserError(f"{p}: expected a run with at least one whole checkpoint in {CHECKPOINTS}/; found none")
    return p, cfg, latest
