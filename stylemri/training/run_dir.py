"""Run directories: `RUNS_DIR/<00000>-<name>/` with config.json, checkpoints/, samples/, plots/, logs, and
the `train.lock` that keeps a second process from training in a folder while one does."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import socket
import warnings
from pathlib import Path
from typing import Iterator

from stylemri.config import RunConfig, from_dict, to_dict
from stylemri.errors import StylemriWarning, UserError
from stylemri.io import write_json
from stylemri.training.checkpoint import CheckpointManager

RUN_RE = re.compile(r"^(\d{5,})-")
CONFIG_NAME = "config.json"
LOCK_NAME = "train.lock"
REQUIRED_KEYS = ("data", "network", "train", "class_names")


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
    path = Path(run_dir) / LOCK_NAME
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
