"""Typed, frozen configuration: resolved once, saved as JSON in the run directory, filled by the CLI.

Each concern owns one dataclass here; a run's `RunConfig` (training issue) composes them.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, TypeVar

from stylemri.errors import UserError

AXES = ("axial", "coronal", "sagittal")  # the slicing axes of a volume, in (D, H, W) order; every layer names them so

T = TypeVar("T")
_AUTO = "auto"  # `setting(flag=_AUTO)`: the flag is `--` + the field name with dashes


def setting(default: Any, *, help: str = "", flag: str | None = _AUTO, resumable: bool = False,
            metavar: str | None = None, parse: Callable[[str], Any] | None = None, group: str = "training",
            switch: str | None = None, label: str | None = None) -> Any:
    """A config field with what the command line needs to know about it (read by `settings`):

    flag: how the user sets it (None: set by another option or derived, never a flag of its own);
    help: the --help text; resumable: may change when resuming a run (it does not change what the weights
    are trained towards); parse: text -> value for anything but int/float/str (a dict sets several fields);
    group: the --help section (run, duration, network, training); switch: "on" (--x) or "both" (--x/--no-x)
    for booleans; label: how errors name a field without a flag. Adding a training setting is one such field.
    """
    meta = {"flag": flag, "help": help, "resumable": resumable, "metavar": metavar, "parse": parse,
            "group": group, "switch": switch, "label": label}
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults: use a tuple")
    return field(default=default, metadata=meta)


def flag_of(cls: type, name: str) -> str:
    """How the user spells field `name` of config class `cls` (`num_workers` -> `--workers`)."""
    meta = next((f.metadata for f in dataclasses.fields(cls) if f.name == name), {})
    spelled = meta.get("flag", _AUTO)
    if spelled == _AUTO:
        return "--" + name.replace("_", "-")
    return spelled if spelled is not None else (meta.get("label") or name)


def flag(name: str) -> str:
    """The flag a user types to set config field `name` of the training, network or data config."""
    for cls in (TrainConfig, NetworkConfig, DataConfig):
        if name in {f.name for f in dataclasses.fields(cls)}:
            return flag_of(cls, name)
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Setting:
    """One command-line setting of a config class: its field, flag and what `setting` recorded."""

    name: str
    flag: str
    type: Callable[[str], Any]
    help: str
    resumable: bool
    metavar: str | None
    group: str
    switch: str | None
    parse: Callable[[str], Any] | None


def settings(cls: type) -> list[Setting]:
    """The fields of `cls` that are set by a flag of their own, in field order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("flag", _AUTO) is None or f.metadata.get("group") is None:
            continue  # set by another option (a shared flag, --conditional, --preset) or derived
        m = f.metadata
        out.append(Setting(f.name, flag_of(cls, f.name), m["parse"] or _scalar(hints[f.name]), m["help"],
                           m["resumable"], m["metavar"], m["group"], m["switch"], m["parse"]))
    return out


def resumable(cls: type) -> frozenset[str]:
    """Fields of `cls` that may change when a run is resumed."""
    return frozenset(f.name for f in dataclasses.fields(cls) if f.metadata.get("resumable"))


def _scalar(tp: Any) -> Callable[[str], Any]:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    base = args[0] if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1 else tp
    if base in (int, float, str, bool):
        return base
    raise TypeError(f"{tp}: a setting of this type needs parse=")


def parse_pair(text: str) -> tuple[float, float]:
    """--betas B1,B2."""
    try:
        b1, b2 = (float(x) for x in text.split(","))
    except ValueError:
        raise UserError(f"--betas {text}: expected two numbers like 0,0.99") from None
    return b1, b2


def parse_ratio_or_none(text: str) -> float | None:
    """--ema-rampup R or none."""
    try:
        return None if text.lower() == "none" else float(text)
    except ValueError:
        raise UserError(f"--ema-rampup {text}: expected a number or none") from None


def parse_condition(text: str | Sequence[str]) -> tuple[str, ...]:
    """`--condition age,sex` -> ("age", "sex"); empty names and repeats are an error."""
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text)]
    if not items or any(not s for s in items):
        raise UserError(f"--condition {text}: expected comma-separated column names of --labels, like age,sex")
    lowered = [s.lower() for s in items]
    repeated = sorted({s for s in items if lowered.count(s.lower()) > 1})
    if repeated:
        raise UserError(f"--condition {text}: {', '.join(repeated)} named more than once")
    return tuple(items)


def check_missing_mode(mode: str) -> str:
    """`--missing`: drop (leave out images without a value) or indicator (keep them, flagged)."""
    if mode not in ("drop", "indicator"):
        raise UserError(f"--missing {mode}: expected drop or indicator")
    return mode


def parse_aug(spec: str) -> tuple[str, float]:
    """`ada`, `fixed:P`, `diffaugment` or `none` -> (mode, p)."""
    if spec in ("ada", "diffaugment", "none"):
        return spec, 0.0
    if spec.startswith("fixed:"):
        try:
            p = float(spec.split(":", 1)[1])
        except ValueError:
            p = -1.0
        if 0.0 <= p <= 1.0:
            return "fixed", p
    raise UserError(f"--aug {spec}: expected ada, fixed:P (0 <= P <= 1), diffaugment or none")


def _aug_values(spec: str) -> dict[str, Any]:
    mode, p = parse_aug(spec)
    return {"aug": mode, "aug_p": p} if mode == "fixed" else {"aug": mode}


def parse_names(text: str) -> tuple[str, ...]:
    """--metrics fid,kid -> ("fid", "kid") (the training layer checks them against the metric registry)."""
    names = tuple(m.strip().lower() for m in text.split(",") if m.strip())
    if not names:
        raise UserError(f"--metrics {text!r}: expected a comma-separated list of metric names like fid,swd")
    return names


def parse_batch_per_res(text: str) -> tuple[tuple[int, int], ...]:
    """--batch-per-res 4:512,8:256 -> ((4, 512), (8, 256))."""
    try:
        pairs = tuple(sorted((int(r), int(b)) for r, b in (item.split(":") for item in text.split(",") if item)))
    except ValueError:
        raise UserError(f"--batch-per-res {text}: expected pairs like 4:512,8:256") from None
    if not pairs:
        raise UserError(f"--batch-per-res {text}: expected pairs like 4:512,8:256")
    return pairs


Rule = tuple[str, Callable[[Any], bool], str]  # (field, test of its value, what is expected)


def _positive(v: Any) -> bool:
    return v >= 1


def _check(cfg: Any, rules: list[Rule]) -> None:
    """Raise one UserError for the first value outside its range, naming the flag: configs with impossible
    values cannot exist, so nothing downstream (run folders, networks, loaders) ever sees one."""
    for name, ok, expected in rules:
        value = getattr(cfg, name)
        if value is not None and not isinstance(value, bool) and isinstance(value, (int, float)) and not ok(value):
            raise UserError(f"{flag_of(type(cfg), name)} {value:g}: expected {expected}")


def check_resolution(resolution: Any, flag: str = "--resolution") -> int:
    """The one rule for an image size, wherever it is given: a power of two from 4 to 1024 pixels."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or not 4 <= resolution <= 1024 \
            or resolution & (resolution - 1):
        raise UserError(f"{flag} {resolution}: expected a power of two from 4 to 1024")
    return resolution


@dataclass(frozen=True)
class DataConfig:
    """Where images come from and how they become (C, R, R) tensors in [-1, 1].

    Its flags are the shared data options of cli/options.py (`add_data_args`); the metadata here names them
    in errors and says which may change when a run is resumed."""

    source: str = setting("builtin:mni152", flag="--data", group=None)  # runs store a folder or file as an absolute path
    resolution: int = setting(64, flag=None, label="--resolution")  # a run's: the network's resolution
    channels: int = setting(1, group=None)
    split: str = setting("train", group=None)  # train | validate (val) | test | all: split folders, or the split file
    classes: tuple[str, ...] | None = setting(None, group=None)  # keep only these classes
    axis: str = setting("axial", group=None)  # NIfTI slicing axis: axial | coronal | sagittal
    min_content: float = setting(0.1, group=None)  # NIfTI: minimum fraction of voxels above a low threshold
    xflip: bool = setting(False, group=None)  # random horizontal flip (never vertical); `train` resolves it per preset
    cache_dir: str | None = setting(None, group=None, resumable=True)  # None: the user cache folder
    subject_pattern: str | None = setting(None, group=None)  # regex with one capture group naming the subject
    split_file: str | None = setting(None, group=None)  # CSV source,subject,class,split (`stylemri data split`)
    labels: str | None = setting(None, group=None)  # CSV with a subject or file column and label columns
    label_column: str | None = setting(None, group=None)  # which label column of `labels` is the class
    source_given: str | None = setting(None, flag=None)  # `source` as the user typed it (runs keep it)
    dims: int = setting(2, flag=None, label="--dims")  # 2: slices (C, R, R); 3: whole volumes (C, R, R, R)
    condition: tuple[str, ...] = setting((), group="covariates", metavar="COL,...", parse=parse_condition,
                                         help="condition G and D on these columns of --labels (numbers: continuous, "
                                              "standardised; other values: categorical, one-hot), with or instead of "
                                              "--conditional's classes (docs/covariates.md)")
    missing: str = setting("drop", group="covariates", metavar="drop|indicator", parse=check_missing_mode,
                           help="images without a row or with a missing --condition value: drop them (default) or "
                                "keep them with a missing indicator per column")


@dataclass(frozen=True)
class CovariateColumn:
    """One covariate as a run was trained on it: how its value becomes entries of the condition vector.

    Continuous: (x - mean) / std, with the training range [low, high] that generation refuses to leave.
    Categorical: one-hot over `categories` (sorted as seen in training)."""

    name: str
    kind: str  # continuous | categorical
    mean: float = 0.0
    std: float = 1.0
    low: float = 0.0
    high: float = 0.0
    categories: tuple[str, ...] = ()
    missing: int = 0  # training images without a value (dropped, or fed with the missing indicator)


@dataclass(frozen=True)
class CovariateScaling:
    """Every covariate of a run and the missing-value rule: stored in config.json, used by every command.

    The vector is [each column's entries in order] + [one missing indicator per column, with
    `missing == "indicator"`]; a class model puts its one-hot before it."""

    columns: tuple[CovariateColumn, ...] = ()
    missing: str = "drop"  # drop | indicator

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def dim(self) -> int:
        width = sum(1 if c.kind == "continuous" else len(c.categories) for c in self.columns)
        return width + (len(self.columns) if self.missing == "indicator" else 0)


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture hyper-parameters, named as NVlabs names them so a paper's config can be reproduced."""

    arch: str = setting("stylegan2", group=None)  # stylegan | stylegan2 (`train --arch`, with its choices)
    resolution: int = setting(64, group=None)  # the shared --resolution flag
    img_channels: int = setting(1, flag="--channels", group=None)
    c_dim: int = setting(0, flag=None, label="c_dim (number of classes)")  # `train --conditional`; 0 = unconditional
    z_dim: int = setting(512, group="network", help="latent size (default 512)")
    w_dim: int = setting(512, group="network", help="intermediate latent size (default 512)")
    map_layers: int = setting(2, group="network", help="mapping network depth (auto: 2 for StyleGAN2, 8 for StyleGAN)")
    map_lr_mul: float = setting(0.01, flag=None, label="map_lr_mul")
    channel_base: int = setting(16384, group="network", help="channels = min(channel_base / resolution, "
                                "channel_max) (auto: 16384, 32768 from 512 px)")
    channel_max: int = setting(512, group="network", help="maximum channels per layer (default 512)")
    mbstd_group: int = setting(4, group="network", help="minibatch-stddev group size (auto: min(batch per process, 4))")
    mbstd_features: int = setting(1, group="network", help="minibatch-stddev features (default 1)")
    conv_clamp: float | None = setting(None, group="network", help="clamp conv outputs to +-N (for reduced "
                                       "precision; default off)")
    d_map_layers: int = setting(8, flag=None, label="d_map_layers")  # label embedding of the projection D (NVlabs)
    dims: int = setting(2, group=None)  # 2: images (N, C, R, R); 3: volumes (N, C, R, R, R), StyleGAN2 only
    cov_dim: int = setting(0, flag=None, label="cov_dim (covariate vector size)")  # from --condition
    clamp_output: bool = setting(False, switch="on", group="network",
                                 help="clamp G's image to the data range [-1, 1] in training as in every saved "
                                 "image, so that D judges the black background as users see it (default off: "
                                 "NVlabs' linear output)")

    def __post_init__(self) -> None:
        _check(self, NETWORK_RULES)


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained: losses, regularization, augmentation, schedule, duration, bookkeeping.

    Every field is resolved once (presets, then the StyleGAN2-ADA "auto" heuristics, then CLI flags) and
    saved in the run's config.json, so a run can be reproduced and resumed from that file alone. Each field
    with `help` is a `train` flag (cli/train.py builds them from this class; resumable ones may change on
    --resume): adding a training setting is adding one field here.
    """

    preset: str = setting("auto", flag="--preset", group=None)  # auto | stylegan-adni | stylegan2-adni
    seed: int = setting(0, group="run", help="random seed (default 0)")
    kimg: float = setting(25000.0, group="duration", metavar="K", resumable=True,
                          help="duration in thousands of images shown (default 25000)")
    epochs: float | None = setting(None, group="duration", metavar="E", resumable=True,
                                   help="duration in passes over the data")  # `kimg` holds the resolved duration
    batch: int = setting(32, help="global batch over all processes (auto: max(min(4096 / res, 32) * gpus ...))")
    batch_per_res: tuple[tuple[int, int], ...] = setting(
        (), metavar="R:B,...", parse=parse_batch_per_res,
        help="progressive: global batch per resolution, e.g. 4:512,8:256,16:128")
    loss: str = setting("ns", metavar="NAME", help="ns (non-saturating + R1), wgangp (WGAN-GP + drift) or r3gan "
                        "(R3GAN's relativistic pairing loss + R1 + R2, gamma/2 each); default by --arch")
    g_lr: float = setting(0.0025, help="G learning rate (auto: 0.0025; StyleGAN 0.001)")
    d_lr: float = setting(0.0025, help="D learning rate (auto: 0.0025; StyleGAN 0.001)")
    betas: tuple[float, float] = setting((0.0, 0.99), metavar="B1,B2", parse=parse_pair,
                                         help="Adam betas (default 0,0.99)")
    eps: float = setting(1e-8, flag=None, label="eps")
    r1_gamma: float = setting(10.0, help="R1 weight (auto: 0.0002 * res^2 / batch); 0 = off")
    r1_interval: int = setting(16, help="lazy R1 every N D steps (default 16)")
    pl_weight: float = setting(2.0, help="path-length regularization weight (StyleGAN2: 2, StyleGAN: 0 = off)")
    pl_interval: int = setting(4, help="lazy path length every N G steps (default 4)")
    pl_decay: float = setting(0.01, help="decay of the path-length mean (default 0.01)")
    pl_batch_shrink: int = setting(2, help="path-length batch = batch / N (default 2)")
    style_mixing: float = setting(0.9, help="style-mixing probability (default 0.9)")
    wgan_lambda: float = setting(10.0, help="WGAN-GP gradient-penalty weight (default 10)")
    wgan_epsilon: float = setting(0.001, help="WGAN-GP drift weight (default 0.001)")
    wgan_target: float = setting(1.0, flag=None, label="wgan_target")
    ema_kimg: float = setting(10.0, help="EMA half-life of G in kimg (auto: batch * 10 / 32)")
    ema_rampup: float | None = setting(0.05, metavar="R|none", parse=parse_ratio_or_none,
                                       help="EMA ramp-up ratio (auto 0.05) or none")
    aug: str = setting("ada", metavar="MODE", parse=_aug_values,
                       help="ada, fixed:P, diffaugment or none (augmentation of everything D sees); default ada with "
                            "--loss ns, none with --loss wgangp (ADA needs a logistic D: ada + wgangp is refused)")
    aug_p: float = setting(0.0, metavar="P", help="initial ADA probability (default 0)")
    augpipe: str = setting("bgc", metavar="NAME", help="ADA pipe: bgc (default), bg, bgcf, bgcfn (+ filter, noise), "
                                                      "bgcfnc (+ cutout)")
    ada_target: float = setting(0.6, help="ADA target for E[sign(D(real))] (default 0.6)")
    ada_interval: int = setting(4, help="adjust ADA p every N steps (default 4)")
    ada_kimg: float = setting(500.0, help="ADA p can go from 0 to 1 in this many kimg (default 500)")
    progressive: bool = setting(False, switch="both",
                                help="progressive growing (StyleGAN only; on by default for --arch stylegan)")
    start_res: int = setting(4, help="progressive: first resolution (default 4)")
    fade_kimg: float = setting(600.0, help="progressive: fade-in kimg per resolution (default 600)")
    stable_kimg: float = setting(600.0, help="progressive: stabilization kimg per resolution (default 600)")
    reset_opt_on_grow: bool = setting(True, flag=None, label="reset_opt_on_grow")  # fresh Adam moments per resolution
    tick_kimg: float = setting(4.0, resumable=True, help="log line and loss-table row every N kimg (default 4)")
    sample_ticks: int = setting(10, resumable=True, help="sample grid every N ticks (default 10)")
    checkpoint_ticks: int = setting(50, resumable=True, help="checkpoint every N ticks (default 50)")
    keep_checkpoints: int = setting(5, resumable=True, help="keep the last N checkpoints (default 5)")
    nan_patience: int = setting(4, resumable=True, help="non-finite steps in a row before reloading the last "
                                                        "checkpoint with halved learning rates (default 4)")
    precision: str = setting("auto", resumable=True, metavar="NAME",
                             help="fp32, bf16 or fp16 (with a loss scaler) in the top --fp16-res resolutions; mapping, "
                                  "R1 and path length stay fp32 (default auto: bf16 on CUDA, fp32 on CPU)")
    fp16_res: int = setting(4, resumable=True, help="reduced precision only in the top N resolutions of G and D, conv "
                                                    "outputs clamped to +-256 (default 4, as NVlabs; 0 = all fp32)")
    batch_gpu: int | None = setting(None, resumable=True, help="images per process and round: the batch is "
                                    "accumulated over batch / (batch-gpu * processes) rounds, same gradient "
                                    "(default: all at once)")
    tf32: bool = setting(False, resumable=True, switch="on",
                         help="allow TF32 matmuls and convolutions on CUDA (default off, as NVlabs: TF32 changes "
                              "fp32 results)")
    channels_last: bool = setting(False, resumable=True, switch="on", help="channels_last memory format")
    compile: bool = setting(False, resumable=True, switch="on", help="torch.compile the main G and D passes "
                            "(regularization passes stay eager)")
    num_workers: int = setting(2, flag="--workers", resumable=True,
                               help="data-loader processes per GPU (default: 2 on CUDA, 0 on CPU)")
    metrics: tuple[str, ...] = setting((), resumable=True, metavar="M,...", parse=parse_names,
                                       help="evaluate G_ema at every checkpoint: metric names from the registry "
                                            "(`stylemri evaluate --help` lists them); the first one with a lower-is-"
                                            "better score keeps the best checkpoint")
    metric_num: int = setting(5000, resumable=True, help="generated images per evaluation (5000)")
    metrics_every: float = setting(0.0, resumable=True, help="with --metrics: also checkpoint and evaluate every N "
                                                             "kimg (default 0: at the checkpoints only)")
    # Moving values (training/schedules.py, R3GAN's recipe): half-cosines over schedule_kimg (None: kimg).
    schedule_kimg: float | None = setting(None, help="length of the cosine schedules below (default: --kimg)")
    lr_final: float = setting(1.0, help="cosine decay of both learning rates to this multiple (R3GAN; default 1 = "
                                        "constant)")
    gamma_final: float = setting(1.0, help="cosine decay of the R1 (and R2) weight to this multiple (default 1)")
    beta2_start: float | None = setting(None, help="Adam beta2 rises (cosine) from this to the second --betas value "
                                                   "(R3GAN: 0.9; default: constant)")
    aug_p_final: float | None = setting(None, help="with --aug fixed:P: p moves (cosine) from P to this value")
    threads: int | None = setting(None, resumable=True,
                                  help="CPU threads of torch (default: the cores this process may use, 1 when the "
                                       "machine is already busier than its cores; printed at the start)")
    # Transfer learning (training/transfer.py, docs/interop.md): where the weights started, and FreezeD.
    init: str | None = setting(None, group="run", metavar="RUN_OR_CHECKPOINT",
                               help="start from the weights and network shape of another run or an imported NVlabs "
                                    "model: same resolution, or a smaller StyleGAN2 one to grow (new top blocks fresh, "
                                    "toRGB at zero); channels and classes may differ (recorded: the checkpoint's "
                                    "path and SHA-256)")
    init_sha256: str | None = setting(None, flag=None, label="init_sha256")  # of --init's tensor file, at the start
    freeze_d: int = setting(0, metavar="N", help="keep D's first N layers from the input as initialised (FreezeD, "
                                                 "NVlabs --freezed; default 0)")

    def __post_init__(self) -> None:
        _check(self, TRAIN_RULES)
        if not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas):
            raise UserError(f"--betas {','.join(map(str, self.betas))}: expected two numbers in [0, 1) like 0,0.99")


NETWORK_RULES: list[Rule] = [
    ("resolution", lambda v: 4 <= v <= 1024 and int(v) & (int(v) - 1) == 0, "a power of two from 4 to 1024"),
    ("img_channels", _positive, "1 (grey MRI) or 3 (RGB)"),
    ("c_dim", lambda v: v >= 0, "0 (unconditional) or the number of classes"),
    ("cov_dim", lambda v: v >= 0, "0 (no covariates) or the size of the covariate vector"),
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
    ("freeze_d", lambda v: v >= 0, "0 (train every layer) or the number of D layers to freeze"),
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
    covariates: CovariateScaling | None = None  # --condition runs: the covariates and their scaling


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


__all__ = ["flag", "flag_of", "setting", "settings", "Setting", "resumable", "parse_aug", "parse_condition",
           "check_missing_mode", "DataConfig", "CovariateColumn", "CovariateScaling", "NetworkConfig", "TrainConfig",
           "RunConfig", "to_dict", "from_dict", "replace", "field"]
