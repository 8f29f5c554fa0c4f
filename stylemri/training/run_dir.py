"""Run directories: `RUNS_DIR/<00000>-<name>/` with config.json, checkpoints/, samples/, plots/, logs."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from stylemri.config import RunConfig, from_dict, to_dict
from stylemri.errors import UserError
from stylemri.io import write_json
from stylemri.training.checkpoint import CheckpointManager, read_meta

RUN_RE = re.compile(r"^(\d{5,})-")
CONFIG_NAME = "config.json"
CHECKPOINTS = "checkpoints"  # a run folder keeps its checkpoints here


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
    path = run_dir / CONFIG_NAME
    write_json(path, to_dict(cfg))
    return path


def read_run_config(run_dir: str | os.PathLike) -> RunConfig:
    path = Path(run_dir) / CONFIG_NAME
    try:
        data = json.loads(path.read_text())
        return from_dict(RunConfig, data)
    except FileNotFoundError:
        raise UserError(f"{run_dir}: expected a stylemri run directory (no {CONFIG_NAME} there)") from None
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path}: expected a stylemri run configuration ({exc})") from None


def run_dir_of(path: str | os.PathLike) -> Path:
    """The run folder of a path: the run folder itself, its `checkpoints/` folder, or a file inside either."""
    p = Path(path)
    if p.is_file() or p.suffix in (".json", ".safetensors"):
        p = p.parent
    return p.parent if p.name == CHECKPOINTS and (p.parent / CONFIG_NAME).exists() else p


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
    manager = CheckpointManager(run / CHECKPOINTS)
    whole = manager.checkpoints()
    if not whole:
        records = sorted((run / CHECKPOINTS).glob("ckpt-*.json"))
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
    latest = CheckpointManager(p / CHECKPOINTS).latest()
    if latest is None:
        raise UserError(f"{p}: expected a run with at least one whole checkpoint in {CHECKPOINTS}/; found none")
    return p, cfg, latest
