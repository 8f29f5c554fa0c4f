"""`stylemri import FILE.pkl`: an NVlabs network pickle becomes an ordinary stylemri run folder.

The pickle is read by `safe_pickle` (nothing from it runs), its G_ema (and G and D when they fit) mapped
by `nvlabs`, RGB turned into one luma channel by `training.transfer`, and every tensor loaded into a
network built from the inferred config (strictly: a tensor that does not fit refuses the file). Only then
is `OUTDIR/<number>-<name>/` created, with config.json and one checkpoint written through the training
checkpoint writer (safetensors + JSON with SHA-256), so `generate`, `evaluate`, the analysis tools and
`train --init` open it like any run. A failure while writing removes the half-made folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stylemri.config import DataConfig, NetworkConfig, RunConfig, TrainConfig, to_dict
from stylemri.errors import StylemriWarning, UserError
from stylemri.interop import nvlabs
from stylemri.interop.safe_pickle import PersistentRecord, safe_load
from stylemri.networks import build_discriminator, build_generator
from stylemri.training.checkpoint import CheckpointManager, pack_modules
from stylemri.training.run_dir import RunLayout, create_run_dir, write_run_config
from stylemri.training.transfer import transfer_state
from stylemri.version import __version__

IMPORT_FORMAT = "nvlabs-pickle"


@dataclass
class ImportResult:
    run_dir: Path
    checkpoint: Path
    config: RunConfig
    source_shape: dict[str, Any]  # the NVlabs network's own shape (3 channels for an RGB model)
    with_discriminator: bool
    note: str | None  # why D was left out, when it was
    sha256: str


def read_pickle(path: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """The pickle's top-level dict (records, no code run) and the file's SHA-256."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except IsADirectoryError:
        raise UserError(f"{p}: is a folder; expected an NVlabs network pickle (.pkl)") from None
    except OSError as exc:
        raise UserError(f"{p}: cannot read it ({exc.strerror}); expected an NVlabs network pickle (.pkl)") from None
    obj = safe_load(data, str(p))
    if not isinstance(obj, dict):
        raise UserError(f"{p}: holds a {type(obj).__name__}; expected NVlabs' dict of networks (G, D, G_ema)")
    if not isinstance(obj.get("G_ema"), PersistentRecord):
        raise UserError(f"{p}: no G_ema network in the pickle; expected an NVlabs training snapshot")
    return obj, hashlib.sha256(data).hexdigest()


def _fit(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str, where: str) -> torch.nn.Module:
    """Load NVlabs' tensors into our module: every tensor must have a place and every place a tensor."""
    merged, report = transfer_state(state, module.state_dict())
    if report.fresh or report.unused:
        missing = report.fresh[:1] or [f"unexpected {report.unused[0]}"]
        raise UserError(f"{where}: {what} does not map onto stylemri's network ({missing[0]}; "
                        f"{len(report.fresh)} missing, {len(report.unused)} unexpected)")
    module.load_state_dict(merged)
    return module


def convert(obj: dict[str, Any], where: str) -> tuple[dict[str, torch.nn.Module], NetworkConfig, dict, str | None]:
    """Our G_ema, G (G_ema's copy when the pickle has none) and D (when it fits) from the records."""
    G_rec = nvlabs.check_generator(obj["G_ema"], where)
    cfg, shape, d_fits, why = nvlabs.network_config(G_rec, obj.get("D"), where)
    modules: dict[str, torch.nn.Module] = {
        "G_ema": _fit(build_generator(cfg), nvlabs.tensors_of(G_rec), "G_ema", where)}
    G_train = obj.get("G")
    source = G_rec if not isinstance(G_train, PersistentRecord) else nvlabs.check_generator(G_train, where)
    modules["G"] = _fit(build_generator(cfg), nvlabs.tensors_of(source), "G", where)
    if d_fits:
        modules["D"] = _fit(build_discriminator(cfg), nvlabs.tensors_of(obj["D"]), "D", where)
    return modules, cfg, shape, why


def snapshot_kimg(path: Path) -> float:
    """NVlabs names snapshots network-snapshot-<kimg>.pkl; other names count as 0."""
    m = re.search(r"network-snapshot-(\d+)", path.name)
    return float(m.group(1)) if m else 0.0


def import_pickle(path: str | os.PathLike, outdir: str | os.PathLike, name: str | None = None) -> ImportResult:
    """Convert `path` and write the run folder (see the module docstring); nothing is written on failure."""
    p = Path(path)
    obj, sha = read_pickle(p)
    modules, net, shape, why = convert(obj, str(p))
    name = name or "import-" + (re.sub(r"[^A-Za-z0-9_.+-]+", "_", p.stem)[:40] or "nvlabs")
    classes = tuple(f"class{i}" for i in range(net.c_dim)) if net.c_dim else ("all",)
    data = (obj.get("training_set_kwargs") or {}).get("path") if isinstance(obj.get("training_set_kwargs"), dict) else None
    nimg = int(round(snapshot_kimg(p) * 1000))
    cfg = RunConfig(data=DataConfig(source=str(data or p), resolution=net.resolution, channels=net.img_channels),
                    network=net, train=TrainConfig(kimg=max(nimg / 1000, 1.0)), name=name, version=__version__,
                    class_names=classes)
    if why:
        warnings.warn(f"{p}: discriminator not imported ({why}); train --init from this run starts D fresh",
                      StylemriWarning, stacklevel=2)
    run_dir = create_run_dir(outdir, name)
    try:
        write_run_config(run_dir, cfg)
        meta = {"version": __version__, "config": to_dict(cfg), "nimg": nimg,
                "phase": {"resolution": net.resolution, "stage": None, "alpha": 1.0},
                "imported": {"format": IMPORT_FORMAT, "path": str(p.resolve()), "sha256": sha,
                             "nvlabs_shape": shape, "discriminator": bool(why is None)}}
        record = CheckpointManager(RunLayout(run_dir).checkpoints).save(nimg, pack_modules(modules), meta)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return ImportResult(run_dir, record, cfg, shape, why is None, why, sha)
