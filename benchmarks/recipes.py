"""The Makefile's training recipes as flag lists, so benchmarks and tests follow `make demo` when it changes."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def makefile_flags(name: str = "DEMO_TRAIN") -> list[str]:
    """The Makefile variable `name` (DEMO_TRAIN: `make demo`'s recipe; NS_TRAIN: the same with the
    non-saturating loss), expanded by make itself, as a list of `stylemri train` flags."""
    proc = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(ROOT), f"print-{name}"],
                          capture_output=True, text=True, check=True)
    flags = shlex.split(proc.stdout)
    if not flags:
        raise SystemExit(f"Makefile: {name} is empty")
    return flags
