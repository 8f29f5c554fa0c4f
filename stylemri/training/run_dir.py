"""Run directories: `RUNS_DIR/<00000>-<name>/` with config.json, checkpoints/, samples/, plots/, logs."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from stylemri.config import RunConfig, from_dict, to_dict
from stylemri.errors import UserError
from stylemri.io import write_json
from stylemri.training.checkpoint import CheckpointManager

RUN_RE = re.compile(r"^(\d{5,})-")
CONFIG_NAME = "config.json"


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
        raise UserError(f"--out {root}: expected a folder for runs, found a file")
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


def find_run(path: str | os.PathLike) -> tuple[Path, RunConfig, Path]:
    """A run directory (or its checkpoints/ folder) -> (run dir, config, latest whole checkpoint)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such run directory")
    if p.is_dir() and p.name == "checkpoints" and (p.parent / CONFIG_NAME).exists():
        p = p.parent
    if not p.is_dir():
        raise UserError(f"{p}: expected a stylemri run directory (a folder with {CONFIG_NAME} and checkpoints/)")
    cfg = read_run_config(p)
    latest = CheckpointManager(p / "checkpoints").latest()
    if latest is None:
        raise UserError(f"{p}: expected a run with at least one whole checkpoint in checkpoints/; found none")
    return p, cfg, latest
