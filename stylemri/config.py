"""Typed, frozen configuration: resolved once, saved as JSON in the run directory, filled by the CLI.

Each concern owns one dataclass here; a run's `RunConfig` (training issue) composes them.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class DataConfig:
    """Where images come from and how they become (C, R, R) tensors in [-1, 1]."""

    source: str = "builtin:mni152"
    resolution: int = 64
    channels: int = 1
    split: str = "train"  # train | validate (val) | test | all: split folders, or the split file
    classes: tuple[str, ...] | None = None  # keep only these classes
    axis: str = "axial"  # NIfTI slicing axis: axial | coronal | sagittal
    min_content: float = 0.1  # NIfTI: minimum fraction of voxels above a low threshold to keep a slice
    xflip: bool = True  # random horizontal flip (never vertical)
    cache_dir: str | None = None  # None: the user cache folder
    subject_pattern: str | None = None  # regex with one capture group naming the subject (patient) of a file
    split_file: str | None = None  # CSV source,subject,class,split (`stylemri data split`): chooses --split
    labels: str | None = None  # CSV with a subject or file column and label columns: the classes
    label_column: str | None = None  # which label column of `labels` is the class


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture hyper-parameters, named as NVlabs names them so a paper's config can be reproduced."""

    arch: str = "stylegan2"  # stylegan | stylegan2
    resolution: int = 64
    img_channels: int = 1
    c_dim: int = 0  # number of classes for a conditional model; 0 = unconditional
    z_dim: int = 512
    w_dim: int = 512
    map_layers: int = 2
    map_lr_mul: float = 0.01
    channel_base: int = 16384
    channel_max: int = 512
    mbstd_group: int = 4
    mbstd_features: int = 1
    conv_clamp: float | None = None
    d_map_layers: int = 8  # label-embedding layers of the projection discriminator (NVlabs default)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass (nested allowed) as plain JSON-able data; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a (nested) frozen dataclass from `to_dict` output; unknown keys are an error."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
    kwargs = {name: _coerce(hints[name], value) for name, value in data.items()}
    return cls(**kwargs)


def _coerce(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            if arg is type(None):
                continue
            return _coerce(arg, value)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value)
    if origin is tuple:
        inner = args[0] if args else Any
        return tuple(_coerce(inner, v) for v in value)
    if origin is dict:
        return dict(value)
    return value


def replace(cfg: T, **changes: Any) -> T:
    return dataclasses.replace(cfg, **changes)  # type: ignore[type-var]


__all__ = ["DataConfig", "NetworkConfig", "to_dict", "from_dict", "replace", "field"]
