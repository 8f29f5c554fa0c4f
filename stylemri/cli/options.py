"""The flags several commands share, defined once so the same thing has the same name everywhere:
RUN, --checkpoint, --device (default auto), --outdir, --num, --batch, --trunc, --noise.

Old spellings (--out, --n, --batch-size) still parse as hidden aliases for one release.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from stylemri.device import DEVICE_HELP
from stylemri.errors import UserError
from stylemri.networks.sampling import NOISE_MODES


def add_alias(p: argparse.ArgumentParser | Any, alias: str, dest: str, type: Any = None) -> None:
    """`alias` parses into `dest` like the flag it replaces, hidden from --help."""
    p.add_argument(alias, dest=dest, type=type, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_device(p: argparse.ArgumentParser | Any) -> None:
    p.add_argument("--device", default="auto", metavar="DEV", help=DEVICE_HELP)


def add_outdir(p: argparse.ArgumentParser | Any, help: str, *, default: str | None = None,
               aliases: tuple[str, ...] = ("--out",)) -> None:
    """--outdir DIR (with --out as a hidden alias). A required --outdir is checked by `require_outdir`."""
    p.add_argument("--outdir", default=default, metavar="DIR", help=help)
    for alias in aliases:
        add_alias(p, alias, "outdir")


def require_outdir(args: argparse.Namespace) -> Path:
    if getattr(args, "outdir", None) is None:
        raise UserError("--outdir DIR: expected an output folder (this command has no default)")
    return Path(args.outdir)


def add_num(p: argparse.ArgumentParser | Any, default: int | None, help: str) -> None:
    """--num N (with --n as a hidden alias)."""
    p.add_argument("--num", type=int, default=default, metavar="N", help=help)
    add_alias(p, "--n", "num", int)


def add_batch(p: argparse.ArgumentParser | Any, default: int, help: str) -> None:
    """--batch B (with --batch-size as a hidden alias)."""
    p.add_argument("--batch", type=int, default=default, metavar="B", help=help)
    add_alias(p, "--batch-size", "batch", int)


def check_batch(batch: int) -> int:
    if batch < 1:
        raise UserError(f"--batch {batch}: expected a positive number of images per batch")
    return batch


def add_model_args(p: argparse.ArgumentParser, *, outdir_help: str | None = None, runs: str | None = None) -> None:
    """RUN, --checkpoint, --device, --outdir: how every model-using command finds its model and its output.

    `runs="+"` takes one run or two (a second --checkpoint-b for the second one)."""
    if runs == "+":
        p.add_argument("run", nargs="+", metavar="RUN", help="a run, or two runs to compare")
    else:
        p.add_argument("run", metavar="RUN", help="training run folder (or one checkpoint's .json/.safetensors)")
    p.add_argument("--checkpoint", default="latest", metavar="latest|best|KIMG",
                   help="which checkpoint of the run: latest, best (by metric), or its kimg (default: latest)")
    if runs == "+":
        p.add_argument("--checkpoint-b", default="latest", metavar="latest|best|KIMG",
                       help="checkpoint of the second run (default: latest)")
    add_device(p)
    add_outdir(p, outdir_help or "output folder (default: RUN/outputs); files go to DIR/kimg-<K>/<command>/")


def add_sampling_args(p: argparse.ArgumentParser, *, noise_default: str = "const") -> None:
    p.add_argument("--trunc", type=float, default=1.0, metavar="PSI",
                   help="truncation psi: w = w_avg + psi (w - w_avg); 1 = none, 0.7 = typical (default: 1)")
    p.add_argument("--noise", choices=NOISE_MODES, default=noise_default,
                   help="per-layer noise: const (stored maps: byte-identical reruns), random (drawn from the "
                        "seed), none (default: %(default)s)")


def check_psi(psi: float) -> float:
    if not math.isfinite(psi) or abs(psi) > 4:
        raise UserError(f"--trunc {psi}: expected a truncation psi, typically 0.5 to 1 (1 = no truncation)")
    return psi


__all__ = ["add_alias", "add_device", "add_outdir", "require_outdir", "add_num", "add_batch", "check_batch",
           "add_model_args", "add_sampling_args", "check_psi"]
