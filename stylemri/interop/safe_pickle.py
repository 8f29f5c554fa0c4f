"""Read an NVlabs network pickle without running any code from it.

An NVlabs `.pkl` (stylegan2-ada-pytorch, stylegan3) is a plain `pickle.dump` of a dict whose networks are
"persistent" objects: each pickles as a call of `torch_utils.persistence._reconstruct_persistent_obj(meta)`,
where `meta` carries the module's Python source and its `__dict__` (`_parameters`, `_buffers`, `_modules`,
init arguments). `pickle.load` would import that source and run it. This unpickler resolves a short
allow-list of globals to functions of our own that only rebuild data (tensors from raw bytes, plain dicts),
and refuses every other global with a UserError naming it, before anything is called. The source text in
`meta` is kept as a string and never executed.

Tensors: `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`, where each storage pickles
as `torch.storage._load_from_bytes(b)` and `b` is torch's legacy serialisation of that storage (magic,
protocol and system-info pickles, one pickle holding a persistent id naming the storage type, the list of
storage keys, then per key an int64 element count and the raw little-endian bytes). That inner format is
parsed here too, with its own allow-list (the storage type names only); `torch.load` is never called.
"""

from __future__ import annotations

import io
import pickle
import struct
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from stylemri.errors import UserError

PERSISTENT_FN = ("torch_utils.persistence", "_reconstruct_persistent_obj")
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch's legacy serialisation magic number

STORAGE_DTYPES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


class RefusedGlobal(UserError):
    """The pickle names a global outside the allow-list: nothing from it was imported or called."""


@dataclass
class PersistentRecord:
    """What an NVlabs persistent object holds, as plain data: its class name, its (never executed) module
    source and its `__dict__` (parameters, buffers and child modules as dicts/tensors)."""

    class_name: str
    module_src: str
    state: dict[str, Any] = field(default_factory=dict)


class PlainDict(dict):
    """Stands in for `dnnlib.util.EasyDict` (a dict with attribute access): the contents, nothing else."""


def _persistent(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise UserError("expected an NVlabs persistent class record (type 'class' with a state dict)")
    return PersistentRecord(str(meta.get("class_name", "")), str(meta.get("module_src", "")), meta["state"])


@dataclass(frozen=True)
class _StorageType:
    dtype: torch.dtype


def _rebuild_tensor(storage: Any, offset: int, size: Any, stride: Any, *_: Any) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor) or storage.dim() != 1:
        raise UserError("expected a tensor storage as the first argument of _rebuild_tensor_v2")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if any(s < 0 for s in size + stride) or int(offset) < 0:
        raise UserError(f"expected non-negative tensor sizes and strides, got {size} / {stride}")
    if size and min(size) > 0:
        last = int(offset) + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage.numel():
            raise UserError(f"a tensor of size {size} runs past its storage of {storage.numel()} elements")
    return torch.as_strided(storage, size, stride, int(offset)).clone()


def _rebuild_parameter(data: Any, *_: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise UserError("expected a tensor inside _rebuild_parameter")
    return data


def _ordered_dict(*args: Any) -> OrderedDict:
    return OrderedDict(*args)


def _set(items: Any = ()) -> set:
    return set(items)


def _frozenset(items: Any = ()) -> frozenset:
    return frozenset(items)


class _Restricted(pickle.Unpickler):
    """`find_class` is the only door through which a pickle reaches code: it opens onto this table only."""

    allowed: dict[tuple[str, str], Any] = {}
    where = ""

    def find_class(self, module: str, name: str) -> Any:
        found = self.allowed.get((module, name))
        if found is None:
            raise RefusedGlobal(f"{self.where}: refused global {module}.{name}: only tensor and storage "
                                f"reconstruction is allowed (nothing was imported or run)")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise UserError(f"{self.where}: unexpected persistent id {str(pid)[:60]} (expected a plain NVlabs pickle)")


class _StorageUnpickler(_Restricted):
    """The pickle inside a storage's legacy bytes: storage type names and one persistent id per storage."""

    allowed = {("torch", n): _StorageType(dt) for n, dt in STORAGE_DTYPES.items()}

    def __init__(self, f: io.BytesIO, where: str) -> None:
        super().__init__(f)
        self.where = where
        self.storages: dict[str, tuple[torch.dtype, int]] = {}

    def persistent_load(self, pid: Any) -> Any:
        if (not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[4], int)):
            raise UserError(f"{self.where}: unexpected storage record {str(pid)[:60]}")
        self.storages[str(pid[2])] = (pid[1].dtype, pid[4])
        return ("storage", str(pid[2]))


def _storage_from_bytes(where: str) -> Callable[[bytes], torch.Tensor]:
    def load(data: Any) -> torch.Tensor:
        if not isinstance(data, (bytes, bytearray)):
            raise UserError(f"{where}: expected storage bytes in _load_from_bytes")
        return read_legacy_storage(bytes(data), where)

    return load


def read_legacy_storage(data: bytes, where: str) -> torch.Tensor:
    """One storage in torch's legacy format -> a 1-D tensor of its dtype (parsed here, never torch.load)."""
    f = io.BytesIO(data)
    try:
        plain = _Restricted(f)
        plain.where = where
        if plain.load() != LEGACY_MAGIC:
            raise UserError(f"{where}: a storage is not in torch's legacy format (newer zip storages are not read)")
        plain.load(), plain.load()  # protocol version, system info (plain ints / dicts)
        inner = _StorageUnpickler(f, where)
        ref = inner.load()
        keys = plain.load()
        if not (isinstance(ref, tuple) and ref[0] == "storage" and isinstance(keys, list) and len(keys) == 1):
            raise UserError(f"{where}: expected exactly one storage in each storage record")
        dtype, numel = inner.storages[str(keys[0])]
        (count,) = struct.unpack("<q", f.read(8))
        width = torch.empty((), dtype=dtype).element_size()
        raw = f.read(count * width)
    except (pickle.UnpicklingError, EOFError, struct.error, KeyError, IndexError, TypeError) as exc:
        raise UserError(f"{where}: a tensor storage is damaged ({type(exc).__name__}); expected torch's "
                        f"legacy storage bytes") from None
    if count != numel or len(raw) != count * width:
        raise UserError(f"{where}: a tensor storage is truncated ({len(raw)} of {numel * width} bytes)")
    if sys.byteorder != "little":
        raise UserError(f"{where}: reading NVlabs storages needs a little-endian machine")
    return torch.frombuffer(bytearray(raw), dtype=dtype) if count else torch.empty(0, dtype=dtype)


def _outer_table(where: str) -> dict[tuple[str, str], Any]:
    load_bytes = _storage_from_bytes(where)
    return {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): load_bytes,
        ("collections", "OrderedDict"): _ordered_dict,
        ("builtins", "set"): _set, ("__builtin__", "set"): _set,
        ("builtins", "frozenset"): _frozenset, ("__builtin__", "frozenset"): _frozenset,
        PERSISTENT_FN: _persistent,
        ("dnnlib.util", "EasyDict"): PlainDict,
    }


def safe_load(data: bytes, where: str) -> Any:
    """Unpickle `data` (the bytes of file `where`) with the allow-list; UserError naming any refused global,
    or saying the file is not a (whole) pickle."""
    if not data:
        raise UserError(f"{where}: the file is empty; expected an NVlabs network pickle (.pkl)")
    if data[:1] != b"\x80":
        raise UserError(f"{where}: expected an NVlabs network pickle (.pkl); this is not a binary pickle")
    unpickler = _Restricted(io.BytesIO(data))
    unpickler.allowed = _outer_table(where)
    unpickler.where = where
    try:
        return unpickler.load()
    except UserError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            struct.error, MemoryError, RecursionError) as exc:
        kind = "truncated" if isinstance(exc, EOFError) or "truncated" in str(exc) else "damaged"
        raise UserError(f"{where}: the pickle is {kind} ({type(exc).__name__}: {str(exc)[:80]}); "
                        f"expected a whole NVlabs network pickle") from None
