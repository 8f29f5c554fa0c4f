"""A run's configuration from what the user asked for: `resolve_run` for a new run, `resume_run` for a saved one.

The command line collects the values that were given into a `RunFlags` (cli/train.py builds its flags from
the config fields' metadata, see config.setting); everything that decides a value lives here and in
presets.py, so another front end (a notebook, a sweep script) resolves runs exactly as `stylemri train` does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from stylemri.config import DataConfig, NetworkConfig, RunConfig, TrainConfig, flag, flag_of, resumable
from stylemri.errors import UserError
from stylemri.version import __version__


@dataclass(frozen=True)
class RunFlags:
    """What the user asked for; a field that was not given is absent (mappings) or None."""

    network: Mapping[str, Any] = field(default_factory=dict)  # NetworkConfig fields given
    train: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig fields given
    data: DataConfig = field(default_factory=DataConfig)  # the data options (DataConfig defaults where not typed)
    preset: str | None = None
    conditional: bool = False  # one model for all classes (c_dim from the data)
    xflip: bool | None = None  # None: the preset's default
    lr: float | None = None  # both learning rates, unless --g-lr / --d-lr say otherwise
    device_type: str = "cpu"  # what --device resolves to (precision auto, default worker count)


def given(flags: RunFlags) -> tuple[dict[str, Any], dict[str, Any]]:
    """(network overrides, training overrides): the explicit values, with --lr spread over both rates."""
    net, train = dict(flags.network), dict(flags.train)
    if flags.lr is not None:
        train.setdefault("g_lr", flags.lr)
        train.setdefault("d_lr", flags.lr)
    if train.get("epochs") is not None and not train["epochs"] > 0:
        raise UserError(f"--epochs {train['epochs']}: expected a positive number")
    return net, train


def run_data_config(flags: RunFlags) -> DataConfig:
    """A new run's data config at the run's resolution: --resolution, else the preset's, else 64 (the preset
    owns data and network resolution together: `presets.training_resolution` decides and checks it)."""
    from stylemri.training import presets

    preset = flags.preset or "auto"
    given_res = flags.network.get("resolution")
    if given_res is None and flags.train.get("init"):  # --init without --resolution: the source's resolution
        from stylemri.training.transfer import init_resolution

        given_res = init_resolution(flags.train["init"])
    resolution = presets.training_resolution(preset, given_res)
    xflip = presets.default_xflip(preset) if flags.xflip is None else flags.xflip
    return replace(flags.data, resolution=resolution, dims=flags.network.get("dims") or 2, xflip=xflip)


def resolve_run(flags: RunFlags, dataset: Any, data_cfg: DataConfig, world_size: int = 1) -> RunConfig:
    """A new run's whole config: preset, then the auto heuristics, then the given values, for this data."""
    from stylemri.training import presets

    net, train = given(flags)
    if train.get("init"):  # --init: the network shape of the run it starts from; network flags given still win
        from stylemri.config import to_dict
        from stylemri.training.transfer import resolve_init

        record, sha, init_net = resolve_init(train["init"], data_cfg.resolution)
        net = {**to_dict(init_net), **net}
        train.update(init=str(record), init_sha256=sha)
    net["resolution"] = data_cfg.resolution  # decided once, by `run_data_config`
    net["img_channels"] = data_cfg.channels
    net["c_dim"] = dataset.num_classes if flags.conditional else 0
    scaling = dataset.covariates.scaling if getattr(dataset, "covariates", None) is not None else None
    net["cov_dim"] = scaling.dim if scaling is not None else 0  # --condition: the covariate vector's size
    if net.get("dims") == 3:
        volume_defaults(net, train)
    if "epochs" in train:
        train["kimg"] = train["epochs"] * len(dataset) / 1000
    train.setdefault("num_workers", 0 if flags.device_type == "cpu" else 2)
    net_cfg, train_cfg = presets.resolve(flags.preset or "auto", world_size=world_size, net=net, train=train,
                                         device_type=flags.device_type)
    if train_cfg.freeze_d:  # checked here, before a run folder exists
        from stylemri.networks import build_discriminator
        from stylemri.training.transfer import frozen_parameters

        frozen_parameters(build_discriminator(net_cfg), train_cfg.freeze_d)
    data_cfg = replace(data_cfg, source=resolve_source(data_cfg.source), source_given=data_cfg.source)
    return RunConfig(data=data_cfg, network=net_cfg, train=train_cfg, version=__version__,
                     fingerprint=dataset.fingerprint, class_names=tuple(dataset.class_names),
                     num_images=len(dataset), voxel_mm=getattr(dataset, "voxel_mm", None), covariates=scaling)


def resume_run(saved: RunConfig, flags: RunFlags, run_dir: Path | str = "") -> RunConfig:
    """The saved config with the allowed (resumable) changes; anything else that differs is one clear error."""
    net, train = given(flags)
    allowed = resumable(TrainConfig)
    mismatches = [f"network.{k} is {getattr(saved.network, k)!r} in the run, {v!r} requested"
                  for k, v in net.items() if getattr(saved.network, k) != v]
    mismatches += [f"train.{k} is {getattr(saved.train, k)!r} in the run, {v!r} requested"
                   for k, v in train.items() if k not in allowed and getattr(saved.train, k) != v]
    mismatches += _data_mismatches(saved.data, flags)
    if flags.preset is not None and flags.preset != saved.train.preset:
        mismatches.append(f"preset is {saved.train.preset!r} in the run, {flags.preset!r} requested")
    if flags.conditional and not saved.network.c_dim:
        mismatches.append("the run is unconditional, --conditional requested")
    if mismatches:
        names = ", ".join(sorted(flag_of(TrainConfig, k) for k in allowed))
        raise UserError(f"--resume {run_dir}: incompatible configuration: {'; '.join(mismatches)} "
                        f"(only {names} may change when resuming)")
    changes = {k: v for k, v in train.items() if k in allowed}
    if "metrics" in changes:
        from stylemri.training.presets import check_metrics

        check_metrics(changes["metrics"])
    if "epochs" in changes:
        changes["kimg"] = changes["epochs"] * saved.num_images / 1000
    data_changes = {k: getattr(flags.data, k) for k in resumable(DataConfig)
                    if getattr(flags.data, k) != getattr(DataConfig(), k)}
    return replace(saved, train=replace(saved.train, **changes), data=replace(saved.data, **data_changes))


def _data_mismatches(saved: DataConfig, flags: RunFlags) -> list[str]:
    """Data options typed on --resume (different from their default) that differ from the run's."""
    default, out = DataConfig(), []
    for f in dataclasses.fields(DataConfig):
        if f.name in resumable(DataConfig) or f.metadata.get("flag", "") is None or f.name == "xflip":
            continue
        value = getattr(flags.data, f.name)
        if f.name == "source" and _same_source(value, saved.source):
            continue
        if value != getattr(default, f.name) and value != getattr(saved, f.name):
            out.append(f"data.{f.name} is {getattr(saved, f.name)!r} in the run, {value!r} requested")
    if flags.xflip is not None and flags.xflip != saved.xflip:
        out.append(f"data.xflip is {saved.xflip!r} in the run, {flags.xflip!r} requested")
    return out


def resolve_source(source: str) -> str:
    """A folder or file source as an absolute path (a run resumes from any working directory); builtins as is."""
    return source if source.startswith("builtin:") else str(Path(source).expanduser().resolve())


def _same_source(a: str, b: str) -> bool:
    return a == b or resolve_source(a) == resolve_source(b)


def volume_defaults(net: dict[str, Any], train: dict[str, Any]) -> None:
    """--dims 3: the 3-D channel defaults (fit 64^3 on one GPU) and the options 3-D runs do not have."""
    from stylemri.networks.stylegan2_3d import VOLUME_CHANNEL_BASE, VOLUME_CHANNEL_MAX

    if net.get("arch", NetworkConfig.arch) != "stylegan2":
        raise UserError(f"{flag('arch')} {net['arch']} with --dims 3: expected stylegan2 (the only 3-D architecture)")
    if train.get("progressive"):
        raise UserError("--progressive with --dims 3: 3-D runs train StyleGAN2 at full resolution")
    if train.get("metrics"):
        raise UserError(f"--metrics {','.join(train['metrics'])} with --dims 3: training-time metrics are 2-D only; "
                        "evaluate a 3-D run afterwards (docs/volumes.md)")
    net.setdefault("channel_base", VOLUME_CHANNEL_BASE)
    net.setdefault("channel_max", VOLUME_CHANNEL_MAX)


__all__ = ["RunFlags", "given", "run_data_config", "resolve_run", "resume_run", "resolve_source", "volume_defaults"]
