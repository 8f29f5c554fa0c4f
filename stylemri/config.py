"""Typed, frozen configuration: resolved once, saved as JSON in the run directory, filled by the CLI.

Each concern owns one dataclass here; a run's `RunConfig` (training issue) composes them.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from stylemri.errors import UserError

T = TypeVar("T")

# Command-line spellings of config fields whose flag is not `--` + the field name with dashes.
FLAGS = {"num_workers": "--workers", "tf32": "--no-tf32", "img_channels": "--channels", "source": "--data",
         "c_dim": "c_dim (number of classes)", "d_map_layers": "d_map_layers", "map_lr_mul": "map_lr_mul"}


def flag(name: str) -> str:
    """The flag a user types to set config field `name` (`num_workers` -> `--workers`)."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


Rule = tuple[str, Callable[[Any], bool], str]  # (field, test of its value, what is expected)


def _positive(v: Any) -> bool:
    return v >= 1


def _check(cfg: Any, rules: list[Rule]) -> None:
    """Raise one UserError for the first value outside its range, naming the flag: configs with impossible
    values cannot exist, so nothing downstream (run folders, networks, loaders) ever sees one."""
    for name, ok, expected in rules:
        value = getattr(cfg, name)
        if value is not None and not isinstance(value, bool) and isinstance(value, (int, float)) and not ok(value):
            raise UserError(f"{flag(name)} {value:g}: expected {expected}")


def check_resolution(resolution: Any, flag: str = "--resolution") -> int:
    """The one rule for an image size, wherever it is given: a power of two from 4 to 1024 pixels."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or not 4 <= resolution <= 1024 \
            or resolution & (resolution - 1):
        raise UserError(f"{flag} {resolution}: expected a power of two from 4 to 1024")
    return resolution


@dataclass(frozen=True)
class DataConfig:
    """Where images come from and how they become (C, R, R) tensors in [-1, 1]."""

    source: str = "builtin:mni152"  # runs store a folder or file as an absolute path
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
    source_given: str | None = None  # `source` as the user typed it (runs keep it for the record)
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

    def __post_init__(self) -> None:
        _check(self, NETWORK_RULES)


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
    loss: str = "ns"  # ns (non-saturating logistic) | wgangp | r3gan (relativistic pairing + R1 + R2)
    g_lr: float = 0.0025
    d_lr: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8
    r1_gamma: float = 10.0  # ns / r3gan: R1 weight (gamma; r3gan: also R2's); 0 turns them off
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
    augpipe: str = "bgc"  # ada / fixed: a named pipe of training/augment.py PIPE_SPECS (NVlabs' --augpipe)
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
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16 (with a loss scaler)
    fp16_res: int = 4  # reduced precision only in the top N resolutions of G and D (NVlabs num_fp16_res)
    batch_gpu: int | None = None  # images per process and round (gradient accumulation); None: whole batch
    tf32: bool = False  # TF32 matmuls/convs on CUDA (off as in NVlabs: it changes fp32 results)
    channels_last: bool = False
    compile: bool = False  # torch.compile the main G/D passes (regularization passes stay eager)
    num_workers: int = 2  # data-loader worker processes (per rank)
    metrics: tuple[str, ...] = ()  # evaluated at every checkpoint (fid, kid, swd, pr); the first picks `best`
    metric_num: int = 5000  # generated images per evaluation
    metrics_every: float = 0.0  # also checkpoint + evaluate every N kimg (0: at checkpoints only)
    # Moving values (training/schedules.py, R3GAN's recipe): half-cosines over schedule_kimg (None: kimg).
    schedule_kimg: float | None = None
    lr_final: float = 1.0  # both learning rates end at this multiple of their start (1: constant)
    gamma_final: float = 1.0  # R1 (and R2) weight ends at this multiple of --r1-gamma (1: constant)
    beta2_start: float | None = None  # Adam beta2 rises from this to the second --betas value (None: constant)
    aug_p_final: float | None = None  # --aug fixed:P: p moves from P to this (None: constant)
    threads: int | None = None  # CPU threads of torch (None: training/threads.py's policy)

    def __post_init__(self) -> None:
        _check(self, TRAIN_RULES)
        if not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas):
            raise UserError(f"--betas {','.join(map(str, self.betas))}: expected two numbers in [0, 1) like 0,0.99")


NETWORK_RULES: list[Rule] = [
    ("resolution", lambda v: 4 <= v <= 1024 and int(v) & (int(v) - 1) == 0, "a power of two from 4 to 1024"),
    ("img_channels", _positive, "1 (grey MRI) or 3 (RGB)"),
    ("c_dim", lambda v: v >= 0, "0 (unconditional) or the number of classes"),
    *((name, _positive, "a positive integer") for name in
      ("z_dim", "w_dim", "map_layers", "d_map_layers", "channel_base", "channel_max", "mbstd_group")),
    ("mbstd_features", lambda v: v >= 0, "0 (off) or more"),
    ("map_lr_mul", lambda v: v > 0, "a positive number"),
    ("conv_clamp", lambda v: v > 0, "a positive number (or no clamp)"),
]
TRAIN_RULES: list[Rule] = [
    ("batch", _positive, "a positive number of images"),
    ("num_workers", lambda v: v >= 0, "0 (load in the main process) or more worker processes"),
    *((name, lambda v: v >= 0, "0 (off) or a positive weight") for name in
      ("r1_gamma", "pl_weight", "wgan_lambda", "wgan_epsilon")),
    ("ema_kimg", lambda v: v >= 0, "0 (no averaging) or a positive half-life in kimg"),
    ("ema_rampup", lambda v: v > 0, "a positive ratio (0.05) or none"),
    ("ada_target", lambda v: 0 <= v <= 1, "a target for E[sign(D(real))] in [0, 1] (0.6)"),
    ("aug_p", lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
    ("ada_kimg", lambda v: v > 0, "a positive number of kimg"),
    ("pl_decay", lambda v: 0 < v <= 1, "a decay in (0, 1]"),
    ("pl_batch_shrink", _positive, "an integer >= 1"),
    ("style_mixing", lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
    *((name, lambda v: v >= 0, "0 or a positive number of kimg") for name in
      ("fade_kimg", "stable_kimg", "metrics_every")),
    *((name, _positive, "an integer >= 1") for name in
      ("r1_interval", "pl_interval", "ada_interval", "sample_ticks", "checkpoint_ticks", "keep_checkpoints",
       "nan_patience", "metric_num")),
    *((name, lambda v: v > 0, "a positive number") for name in ("kimg", "tick_kimg", "g_lr", "d_lr",
                                                                "schedule_kimg", "lr_final")),
    ("gamma_final", lambda v: v >= 0, "0 or a positive multiple of --r1-gamma"),
    ("beta2_start", lambda v: 0 <= v < 1, "a number in [0, 1) like 0.9"),
    ("aug_p_final", lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
    ("threads", _positive, "an integer >= 1"),
    ("seed", lambda v: 0 <= v < 2**32, "an integer in [0, 2^32)"),
]


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


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Rebuild a (nested) frozen dataclass from `to_dict` output; unknown keys and values of the wrong type
    (`"resolution": "abc"`) are a ValueError naming the field (`network.resolution`)."""
    if not isinstance(data, dict):
        raise ValueError(f"{where or cls.__name__}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
    kwargs = {name: _coerce(hints[name], value, f"{where}{name}") for name, value in data.items()}
    return cls(**kwargs)


_SCALARS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _coerce(tp: Any, value: Any, where: str) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            if arg is type(None):
                continue
            return _coerce(arg, value, where)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where + ".")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} {value!r}: expected a list")
        inner = args[0] if args else Any
        return tuple(_coerce(inner, v, where) for v in value)
    if origin is dict:
        return dict(value)
    if tp in _SCALARS:
        ok = isinstance(value, tp) and not (tp is int and isinstance(value, bool))
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            raise ValueError(f"{where} {value!r}: expected {_SCALARS[tp]}")
    return value


def replace(cfg: T, **changes: Any) -> T:
    return dataclasses.replace(cfg, **changes)  # type: ignore[type-var]


__all__ = ["flag", "DataConfig", "NetworkConfig", "TrainConfig", "RunConfig", "to_dict", "from_dict", "replace", "field"]
