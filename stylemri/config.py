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
    dims: int = 2  # 2: slices (C, R, R); 3: whole volumes (C, R, R, R), see docs/volumes.md


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
    dims: int = 2  # 2: images (N, C, R, R); 3: volumes (N, C, R, R, R), StyleGAN2 only


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained: losses, regularization, augmentation, schedule, duration, bookkeeping.

    Every field is resolved once (presets, then the StyleGAN2-ADA "auto" heuristics, then CLI flags) and
    saved in the run's config.json, so a run can be reproduced and resumed from that file alone.
    """

    preset: str = "auto"  # auto | stylegan-adni | stylegan2-adni (where the defaults came from)
    seed: int = 0
    kimg: float = 25000.0  # duration in thousands of real images shown to D
    epochs: float | None = None  # as given on the command line; `kimg` holds the resolved duration
    batch: int = 32  # global batch (all ranks together) at the final resolution
    batch_per_res: tuple[tuple[int, int], ...] = ()  # progressive: (resolution, global batch) pairs
    loss: str = "ns"  # ns (non-saturating logistic) | wgangp
    g_lr: float = 0.0025
    d_lr: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8
    r1_gamma: float = 10.0  # ns loss: R1 weight (gamma); 0 turns R1 off
    r1_interval: int = 16  # lazy R1: every N D steps, scaled by N
    pl_weight: float = 2.0  # path-length regularization weight; 0 turns it off
    pl_interval: int = 4  # lazy path length: every N G steps
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    style_mixing: float = 0.9  # probability of mixing two latents at a random crossover
    wgan_lambda: float = 10.0  # wgangp: gradient-penalty weight
    wgan_epsilon: float = 0.001  # wgangp: drift penalty on real scores
    wgan_target: float = 1.0
    ema_kimg: float = 10.0  # EMA half-life of G in kimg
    ema_rampup: float | None = 0.05  # half-life <= rampup * images shown so far; None = no ramp-up
    aug: str = "ada"  # ada | fixed | diffaugment | none
    aug_p: float = 0.0  # initial (ada) or constant (fixed) augmentation probability
    ada_target: float = 0.6
    ada_interval: int = 4  # adjust p every N steps
    ada_kimg: float = 500.0  # p can move from 0 to 1 in this many kimg
    progressive: bool = False  # StyleGAN progressive growing from `start_res`
    start_res: int = 4
    fade_kimg: float = 600.0  # progressive: fade-in length of each new resolution
    stable_kimg: float = 600.0  # progressive: stabilization length of each resolution
    reset_opt_on_grow: bool = True  # progressive: fresh Adam moments at each new resolution (NVlabs)
    tick_kimg: float = 4.0  # one log line / csv row per tick
    sample_ticks: int = 10  # sample grid every N ticks (and at the end)
    checkpoint_ticks: int = 50  # checkpoint every N ticks (and at the end, on signals)
    keep_checkpoints: int = 5  # keep the last K checkpoints (plus the best, when a metric is tracked)
    nan_patience: int = 4  # consecutive non-finite steps before reloading the last good checkpoint
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    tf32: bool = True
    channels_last: bool = False
    compile: bool = False  # torch.compile the main G/D passes (regularization passes stay eager)
    num_workers: int = 2  # data-loader worker processes (per rank)
    metrics: tuple[str, ...] = ()  # evaluated at every checkpoint (fid, kid, swd, pr); the first picks `best`
    metric_num: int = 5000  # generated images per evaluation
    metrics_every: float = 0.0  # also checkpoint + evaluate every N kimg (0: at checkpoints only)


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs and everything it must remember: saved as the run's config.json."""

    data: DataConfig = field(default_factory=DataConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str = ""
    version: str = ""
    fingerprint: str | None = None  # of the dataset's file list at the time of training
    class_names: tuple[str, ...] = ()
    num_images: int = 0  # dataset size at the time of training
    voxel_mm: float | None = None  # 3-D runs: isotropic voxel size of the training volumes (NIfTI output)


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


__all__ = ["DataConfig", "NetworkConfig", "TrainConfig", "RunConfig", "to_dict", "from_dict", "replace", "field"]
