"""Checkpoints that survive anything: safetensors (tensors) + JSON (everything else), never pickle.

A checkpoint `ckpt-<nimg>` is two files in `checkpoints/`: `<name>.safetensors` (G, D, G_ema, optimizer
moments, loss buffers) and `<name>.json` (config, counters, RNG states, ADA state, loader position, the
optimizers' hyper-parameters, and the size and SHA-256 of the tensor file). Each is written to a temporary
name, fsynced and renamed, tensors first; the JSON is the commit record. Only then is the `latest` pointer
file replaced (atomically), so a kill at any moment leaves `latest` naming a whole checkpoint. Older
checkpoints beyond the last K are deleted, except the best one when a score is tracked.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import safetensors.torch
import torch

from stylemri.errors import StylemriWarning, UserError
from stylemri.io import atomic_write, write_json

NAME_RE = re.compile(r"^ckpt-(\d{10,})$")
FORMAT = "stylemri-checkpoint-1"
# Fault injection for the kill -9 test: "S" or "S:N" sleeps S seconds halfway through writing the tensor file
# (of the N-th checkpoint this process writes, counting from 1), so a test can kill the writer mid-write.
STALL_ENV = "STYLEMRI_CHECKPOINT_STALL"


def checkpoint_name(nimg: int) -> str:
    return f"ckpt-{nimg:010d}"


def _module_tensors(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}


def pack_modules(modules: Mapping[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """{"G": G, ...} -> flat {"G.<name>": tensor} for safetensors."""
    out: dict[str, torch.Tensor] = {}
    for prefix, module in modules.items():
        out.update(_module_tensors(prefix, module))
    return out


def unpack_module(prefix: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    p = prefix + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def pack_optimizer(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer's state dict split into tensors (per-parameter moments) and JSON (groups, scalars)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{pid}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def unpack_optimizer(prefix: str, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of `pack_optimizer`: a state dict for `opt.load_state_dict`."""
    state: dict[int, dict[str, Any]] = {}
    p = prefix + "."
    for name, value in tensors.items():
        if name.startswith(p):
            pid, key = name[len(p):].split(".", 1)
            state.setdefault(int(pid), {})[key] = value
    for pid, values in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


def rng_state() -> dict[str, Any]:
    """The global torch RNG states (CPU and every CUDA device), base64 in JSON."""
    state = {"torch_cpu": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = [base64.b64encode(s.numpy().tobytes()).decode() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    def decode(s: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)

    torch.set_rng_state(decode(state["torch_cpu"]))
    if "torch_cuda" in state and torch.cuda.is_available():
        cuda = state["torch_cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([decode(s) for s in cuda])


class CheckpointManager:
    """Writes, lists, prunes and finds the checkpoints of one run directory's `checkpoints/` folder."""

    def __init__(self, directory: str | os.PathLike, keep: int = 5) -> None:
        self.dir = Path(directory)
        self.keep = max(int(keep), 1)
        self.saves = 0  # checkpoints written by this manager (for the fault-injection hook)

    # ---- writing -------------------------------------------------------------------------------------
    def save(self, nimg: int, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], *,
             score: float | None = None) -> Path:
        """Write checkpoint `ckpt-<nimg>`, point `latest` at it, prune; returns the JSON path."""
        self.dir.mkdir(parents=True, exist_ok=True)
        name = checkpoint_name(nimg)
        data = safetensors.torch.save(dict(tensors), metadata={"format": FORMAT})
        self.saves += 1
        stall = _stall_seconds(os.environ.get(STALL_ENV, ""), self.saves)
        with atomic_write(self.dir / f"{name}.safetensors") as f:
            half = len(data) // 2
            f.write(data[:half])
            if stall > 0:
                f.flush()
                time.sleep(stall)
            f.write(data[half:])
        record = {"format": FORMAT, "name": name, "nimg": nimg, "tensor_file": f"{name}.safetensors",
                  "tensor_bytes": len(data), "tensor_sha256": hashlib.sha256(data).hexdigest(),
                  "score": score, **meta}
        del data
        with contextlib.suppress(OSError):
            _VERIFIED[_file_key(self.dir / f"{name}.safetensors")] = record["tensor_sha256"]
        write_json(self.dir / f"{name}.json", record)
        with atomic_write(self.dir / "latest", "w") as f:
            f.write(name + "\n")
        if score is not None:
            best = self.best()
            if best is None or score < float(read_meta(best).get("score", float("inf"))):
                with atomic_write(self.dir / "best", "w") as f:
                    f.write(name + "\n")
        self.prune()
        return self.dir / f"{name}.json"

    def prune(self) -> None:
        """Keep the newest K whole checkpoints plus the ones `latest` and `best` name; drop stale temp files."""
        names = self._names()
        protect = {n for n in (self._pointer_name("latest")[0], self._pointer_name("best")[0]) if n}
        for name in names[: max(len(names) - self.keep, 0)]:
            if name in protect:
                continue
            for suffix in (".json", ".safetensors"):  # JSON first: a half-deleted checkpoint never looks whole
                with contextlib.suppress(FileNotFoundError):
                    (self.dir / f"{name}{suffix}").unlink()
        for tmp in self.dir.glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                if time.time() - tmp.stat().st_mtime > 60:
                    tmp.unlink()

    def clean_temporaries(self) -> int:
        """Delete temporary files left by a killed writer (call when no writer is running)."""
        n = 0
        for tmp in self.dir.glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                n += 1
        return n

    # ---- finding -------------------------------------------------------------------------------------
    def _names(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        names = {p.stem for p in self.dir.glob("ckpt-*.json") if NAME_RE.match(p.stem)}
        return sorted(names, key=lambda n: int(NAME_RE.match(n).group(1)))  # type: ignore[union-attr]

    def checkpoints(self) -> list[Path]:
        """Whole checkpoints (JSON record and tensor file of the recorded size), oldest first."""
        return [self.dir / f"{n}.json" for n in self._names() if is_whole(self.dir / f"{n}.json")]

    def _pointer_name(self, pointer: str) -> tuple[str | None, str | None]:
        """(checkpoint name the pointer file holds, why it could not be used); (None, None) when it is absent."""
        path = self.dir / pointer
        try:
            text = path.read_bytes().decode("utf-8").strip()
        except FileNotFoundError:
            return None, None
        except IsADirectoryError:
            return None, "is a folder, expected a file naming a checkpoint"
        except UnicodeDecodeError:
            return None, "holds binary bytes, expected a checkpoint name"
        except OSError as exc:
            return None, f"cannot be read ({exc.strerror})"
        if not NAME_RE.match(text):
            return None, f"names {text[:40]!r}, expected ckpt-<number>"
        if not (self.dir / f"{text}.json").is_file():
            return None, f"names {text}, which has no record {text}.json"
        return text, None

    def latest(self) -> Path | None:
        """The checkpoint to continue from or load: the one `latest` names when it verifies (SHA-256).

        The load rule, the same for training, `stylemri.load` and every tool: when the checkpoint `latest`
        names (or, without a usable pointer, the newest record) is damaged, the newest whole checkpoint is
        used instead and a `StylemriWarning` names both; when none is whole, a UserError; None when the
        folder holds no checkpoint record at all.
        """
        pointed, problem = self._pointer_name("latest")
        names = self._names()
        order = ([pointed] if pointed else []) + [n for n in reversed(names) if n != pointed]
        if not order:
            if problem:
                raise UserError(f"{self.dir / 'latest'}: {problem}; and there is no checkpoint record to fall back to")
            return None
        first_reason: str | None = None
        for name in order:
            path = self.dir / f"{name}.json"
            reason = damage(path)
            if reason is None:
                notes = ([f"{self.dir / 'latest'} {problem}"] if problem else []) + (
                    [f"{self.dir / order[0]}.json is damaged ({first_reason})"] if first_reason else [])
                if notes:
                    _warn(f"{'; '.join(notes)}; using {path}, the newest whole checkpoint")
                return path
            first_reason = first_reason or reason
        raise UserError(f"{self.dir}: no whole checkpoint; the newest, {order[0]}, is damaged ({first_reason})"
                        + (f" and the {len(order) - 1} older one(s) too" if len(order) > 1 else ""))

    def best(self) -> Path | None:
        """The checkpoint `best` names (verified when it is loaded), or None."""
        name, _ = self._pointer_name("best")
        return self.dir / f"{name}.json" if name and is_whole(self.dir / f"{name}.json") else None


def _warn(message: str) -> None:
    warnings.warn(message, StylemriWarning, stacklevel=3)


def _stall_seconds(spec: str, save_number: int) -> float:
    seconds, _, nth = spec.partition(":")
    try:
        return float(seconds) if seconds and (not nth or int(nth) == save_number) else 0.0
    except ValueError:
        return 0.0


def tensor_path(json_path: str | os.PathLike, meta: Mapping[str, Any]) -> Path:
    """The record's tensor file, confined to the record's own folder: a bare `*.safetensors` name, no `..`,
    no absolute path, no link leading elsewhere (a record never makes us read another run's or any file)."""
    json_path = Path(json_path)
    name = meta.get("tensor_file")
    folder = json_path.parent
    if (not isinstance(name, str) or name != Path(name).name or "\\" in name or name.startswith(".")
            or not name.endswith(".safetensors")):
        raise UserError(f"{json_path}: tensor_file {name!r}: expected a .safetensors file name in {folder} itself")
    path = folder / name
    if path.resolve().parent != folder.resolve():
        raise UserError(f"{json_path}: tensor_file {name!r} leads out of {folder} (a link); expected a file there")
    return path


def is_whole(json_path: Path) -> bool:
    """Cheap check: the record parses and the tensor file has the recorded size (`damage` checks the hash)."""
    try:
        meta = json.loads(json_path.read_text())
        return meta.get("format") == FORMAT and tensor_path(json_path, meta).stat().st_size == int(meta["tensor_bytes"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UserError):
        return False


# SHA-256s already checked this process, by (file, size, mtime, inode): a checkpoint just written or verified
# by `latest()` is not hashed again when it is loaded.
_VERIFIED: dict[tuple[str, int, int, int], str] = {}


def _file_key(path: Path) -> tuple[str, int, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino


def damage(json_path: str | os.PathLike) -> str | None:
    """Why a checkpoint cannot be used (record unreadable, tensor file missing, truncated or altered: its
    SHA-256 is checked), or None when it is whole."""
    path = Path(json_path)
    try:
        meta = read_meta(path)
        tpath = tensor_path(path, meta)
    except UserError as exc:
        return str(exc).removeprefix(f"{path}: ")
    try:
        key = _file_key(tpath)
    except OSError as exc:
        return f"{tpath.name}: {exc.strerror}"
    if key[1] != meta["tensor_bytes"]:
        return f"{tpath.name} is {key[1]} bytes, its record says {meta['tensor_bytes']}"
    if _VERIFIED.get(key) == meta["tensor_sha256"]:
        return None
    digest = hashlib.sha256()
    try:
        with open(tpath, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        return f"{tpath.name}: {exc.strerror}"
    if digest.hexdigest() != meta["tensor_sha256"]:
        return f"{tpath.name}'s SHA-256 differs from its record"
    _VERIFIED[key] = digest.hexdigest()
    return None


def read_meta(json_path: str | os.PathLike) -> dict[str, Any]:
    path = Path(json_path)
    try:
        meta = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)[:80]
        raise UserError(f"{path}: expected a stylemri checkpoint record (JSON), could not read it ({reason})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{path}: expected a stylemri checkpoint record ({FORMAT})")
    if not isinstance(meta.get("tensor_bytes"), int) or not isinstance(meta.get("tensor_sha256"), str):
        raise UserError(f"{path}: expected tensor_bytes and tensor_sha256 in the checkpoint record")
    nimg = meta.get("nimg")
    if isinstance(nimg, bool) or not isinstance(nimg, int) or nimg < 0:
        raise UserError(f"{path}: nimg {nimg!r}: expected a non-negative integer (images trained so far)")
    return meta


def read_checkpoint(json_path: str | os.PathLike, *,
                    prefixes: tuple[str, ...] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a checkpoint's tensors (on CPU) and record, always verified against the record's size and SHA-256
    (a damaged file raises UserError); `prefixes` keeps only those modules ("G_ema", ...). No pickle anywhere."""
    path = Path(json_path)
    meta = read_meta(path)
    tpath = tensor_path(path, meta)
    try:
        if prefixes is not None:  # hash streaming (or remembered), then read only the wanted tensors
            reason = damage(path)
            if reason is not None:
                raise UserError(f"{path}: checkpoint damaged ({reason})")
            with safetensors.safe_open(str(tpath), framework="pt", device="cpu") as f:
                return {k: f.get_tensor(k) for k in f.keys() if k.split(".", 1)[0] in prefixes}, meta
        try:
            data = tpath.read_bytes()
        except OSError as exc:
            raise UserError(f"{tpath}: expected the checkpoint's tensor file ({exc.strerror})") from None
        if len(data) != meta["tensor_bytes"] or hashlib.sha256(data).hexdigest() != meta["tensor_sha256"]:
            raise UserError(f"{tpath}: contents do not match the checkpoint record (size or SHA-256); file damaged")
        return safetensors.torch.load(data), meta
    except (safetensors.SafetensorError, ValueError) as exc:  # a record whose hash matches bad bytes
        raise UserError(f"{tpath}: expected safetensors data ({str(exc)[:120]})") from None
