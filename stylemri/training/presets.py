"""Named training setups and the StyleGAN2-ADA "auto" heuristics: where every default value comes from.

Resolution order (highest wins): explicit command-line values > the preset's fixed values > the "auto"
heuristics derived from resolution, architecture and number of processes > dataclass defaults.
Derived values (R1 gamma, EMA half-life, minibatch-stddev group) follow an overridden batch size unless
they are overridden themselves.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from stylemri.config import NetworkConfig, TrainConfig, check_resolution, parse_aug  # noqa: F401 (parse_aug: old home)
from stylemri.errors import UserError
from stylemri.networks import ARCHS

PRESETS: dict[str, str] = {
    "auto": "StyleGAN2-ADA 'auto': batch, channels, lr, R1 gamma and EMA from resolution and process count",
    "stylegan-adni": "StyleGAN, progressive 4->256 px, batch per resolution 512..8, WGAN-GP, lr 1e-3, 8 mapping layers, "
                     "no augmentation, real x-flips on (as the reference implementations)",
    "stylegan2-adni": "StyleGAN2 256 px (NVlabs paper256): batch 64, non-saturating + R1 (gamma 1) + path length, ADA",
}
LOSSES = ("ns", "wgangp", "r3gan")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
FP16_CONV_CLAMP = 256.0  # NVlabs: conv outputs clamped to +-256 whenever reduced precision is on
# Real x-flips per preset (data side, separate from ADA's own xflip). Off by default: mirroring a sagittal
# slice turns the head around and an axial one erases real left-right asymmetry. The reference
# implementations' StyleGAN recipe trained with flips, so its preset keeps them.
PRESET_XFLIP: dict[str, bool] = {"stylegan-adni": True}


def default_xflip(preset: str) -> bool:
    """Whether real images are randomly mirrored when --xflip / --no-xflip is not given."""
    return PRESET_XFLIP.get(preset, False)


def default_aug(loss: str) -> str:
    """ADA's r_t = E[sign(D(real))] only means something for a logistic D (r3gan: E[sign(D(real) - D(fake))]
    of its pairs): WGAN-GP critics train unaugmented."""
    return "none" if loss == "wgangp" else "ada"


def reduced_precision(precision: str, device_type: str) -> bool:
    """True when `precision` (auto resolved for the device) trains the top resolutions in bf16/fp16."""
    return precision in ("bf16", "fp16") or (precision == "auto" and device_type == "cuda")

# The reference implementations' progressive StyleGAN schedule (NVlabs StyleGAN 8-GPU minibatch dictionary,
# extended to 256 px).
ADNI_BATCH_PER_RES: tuple[tuple[int, int], ...] = (
    (4, 512), (8, 256), (16, 128), (32, 64), (64, 32), (128, 16), (256, 8))


def training_resolution(preset: str = "auto", explicit: int | None = None) -> int:
    """The image size of a training run, decided here only: --resolution, else the preset's, else 64.
    The data is prepared at this size and the networks are built for it."""
    p_net, _ = preset_values(preset)
    return check_resolution(explicit if explicit is not None else p_net.get("resolution", 64))


def auto_batch(resolution: int, world_size: int = 1) -> int:
    """StyleGAN2-ADA: max(min(gpus * min(4096 // res, 32), 64), gpus)."""
    return max(min(world_size * min(4096 // resolution, 32), 64), world_size)


def auto_values(resolution: int, arch: str, world_size: int = 1,
                batch: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Network and training values of the "auto" config for this resolution (and batch, when it is fixed)."""
    batch = batch if batch is not None else auto_batch(resolution, world_size)
    net: dict[str, Any] = {
        "resolution": resolution,
        "channel_base": 32768 if resolution >= 512 else 16384,  # fmaps 1 or 0.5 times 32768
        "channel_max": 512,
        "map_layers": 2 if arch == "stylegan2" else 8,
        "mbstd_group": max(min(batch // world_size, 4), 1),
    }
    train: dict[str, Any] = {
        "batch": batch,
        "r1_gamma": 0.0002 * resolution**2 / batch,
        "ema_kimg": batch * 10 / 32,
        "ema_rampup": 0.05,
    }
    if arch == "stylegan2":
        lr = 0.002 if resolution >= 1024 else 0.0025
        train.update(loss="ns", g_lr=lr, d_lr=lr, pl_weight=2.0, aug="ada", progressive=False)
    else:  # StyleGAN (2019): progressive growing, WGAN-GP, lr 1e-3, the same auto batch rule per resolution
        res_list = [4 * 2**k for k in range(resolution.bit_length() - 2)]
        train.update(
            loss="wgangp", g_lr=0.001, d_lr=0.001, pl_weight=0.0, aug="ada", progressive=True,  # none with WGAN-GP
            batch_per_res=tuple((r, auto_batch(r, world_size)) for r in res_list),
        )
    return net, train


def preset_values(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A named preset's fixed values (network, train); `auto` has none beyond the heuristics."""
    if name == "auto":
        return {}, {}
    if name == "stylegan-adni":
        return (
            {"arch": "stylegan", "resolution": 256, "channel_base": 16384, "channel_max": 512, "map_layers": 8,
             "mbstd_group": 4},
            {"progressive": True, "start_res": 4, "batch_per_res": ADNI_BATCH_PER_RES, "batch": 8, "loss": "wgangp",
             "g_lr": 0.001, "d_lr": 0.001, "betas": (0.0, 0.99), "pl_weight": 0.0, "style_mixing": 0.9,
             "ema_kimg": 10.0, "ema_rampup": None, "aug": "none", "aug_p": 0.0, "fade_kimg": 600.0,
             "stable_kimg": 600.0, "kimg": 10000.0},
        )
    if name == "stylegan2-adni":
        return (
            {"arch": "stylegan2", "resolution": 256, "channel_base": 16384, "channel_max": 512, "map_layers": 8,
             "mbstd_group": 8},
            {"progressive": False, "batch": 64, "loss": "ns", "g_lr": 0.0025, "d_lr": 0.0025, "r1_gamma": 1.0,
             "pl_weight": 2.0, "style_mixing": 0.9, "ema_kimg": 20.0, "ema_rampup": None, "aug": "ada",
             "kimg": 25000.0},
        )
    raise UserError(f"--preset {name}: expected one of {', '.join(PRESETS)}")


def resolve(
    preset: str = "auto",
    *,
    world_size: int = 1,
    net: Mapping[str, Any] | None = None,
    train: Mapping[str, Any] | None = None,
    device_type: str = "cpu",
) -> tuple[NetworkConfig, TrainConfig]:
    """Build the network and training configs: preset, then auto heuristics, then explicit overrides.

    `device_type` resolves `precision=auto`: with reduced precision the networks get NVlabs' conv_clamp
    256 unless --conv-clamp is given. Without an explicit --aug, a WGAN-GP loss trains unaugmented
    (ADA's heuristic needs a logistic D); an explicit `--aug ada` with WGAN-GP is an error.
    """
    net = dict(net or {})
    train = dict(train or {})
    p_net, p_train = preset_values(preset)
    arch = net.get("arch", p_net.get("arch", "stylegan2"))
    if arch not in ARCHS:
        raise UserError(f"--arch {arch}: expected one of {', '.join(ARCHS)}")
    resolution = training_resolution(preset, net.get("resolution"))
    batch = train.get("batch", p_train.get("batch"))
    if batch is not None:
        _check_batch(batch, world_size)  # before the auto rules divide by it
    a_net, a_train = auto_values(resolution, arch, world_size, batch)
    net_values = {**a_net, **p_net, **net, "arch": arch, "resolution": resolution}
    train_values = {**a_train, **p_train, **train, "preset": preset}
    if "aug" not in train and train_values.get("aug") == "ada":
        train_values["aug"] = default_aug(train_values["loss"])
    reduced = reduced_precision(train_values.get("precision", "auto"), device_type)
    if "conv_clamp" not in net and arch == "stylegan2" and reduced and train_values.get("fp16_res", 4) > 0:
        net_values["conv_clamp"] = FP16_CONV_CLAMP
    if "progressive" not in train and "progressive" not in p_train and arch == "stylegan2":
        train_values["progressive"] = False
    if train_values.get("progressive"):
        per_res = dict(train_values.get("batch_per_res", ()))
        if "batch" in train:  # an explicit --batch is the batch of the final resolution
            per_res[resolution] = train["batch"]
        elif resolution in per_res:
            train_values["batch"] = per_res[resolution]
        train_values["batch_per_res"] = tuple(sorted(per_res.items()))
    _validate(net_values, train_values, world_size)
    return NetworkConfig(**_known(NetworkConfig, net_values)), TrainConfig(**_known(TrainConfig, train_values))


def network_config(preset: str, *, resolution: int | None = None, world_size: int = 1,
                   **net: Any) -> NetworkConfig:
    """The network `train --preset PRESET` builds with these network values (`img_channels` and `c_dim` come
    from the data there, from `net` here): what `info networks --preset PRESET` counts."""
    from stylemri.training.resolve import volume_defaults

    net = dict(net, resolution=training_resolution(preset, resolution))
    train: dict[str, Any] = {}
    if net.get("dims") == 3:
        volume_defaults(net, train)
    return resolve(preset, world_size=world_size, net=net, train=train)[0]


def _known(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
    return values


def _check_batch(batch: int, world_size: int) -> None:
    if batch < 1 or batch % world_size:
        raise UserError(f"--batch {batch}: expected a positive multiple of the number of processes ({world_size})")


def _validate(net: dict[str, Any], train: dict[str, Any], world_size: int) -> None:
    if train["loss"] not in LOSSES:
        raise UserError(f"--loss {train['loss']}: expected one of {', '.join(LOSSES)}")
    if train["aug"] not in ("ada", "fixed", "diffaugment", "none"):
        raise UserError(f"--aug {train['aug']}: expected ada, fixed:P, diffaugment or none")
    if train["aug"] == "ada" and train["loss"] == "wgangp":
        raise UserError("--aug ada: ADA needs a logistic loss (--loss ns or r3gan); its overfitting signal "
                        "E[sign(D(real))] means nothing for a WGAN-GP critic: use --aug fixed:P or none")
    if train.get("aug_p_final") is not None and train["aug"] != "fixed":
        raise UserError(f"--aug-p-final {train['aug_p_final']:g}: expected --aug fixed:P (ADA moves p itself)")
    from stylemri.training.augment import PIPE_SPECS

    if train.get("augpipe", "bgc") not in PIPE_SPECS:
        raise UserError(f"--augpipe {train['augpipe']}: expected one of {', '.join(PIPE_SPECS)}")
    if train["progressive"] and net["arch"] != "stylegan":
        raise UserError("--progressive: progressive growing needs --arch stylegan "
                        "(StyleGAN2 trains at full resolution)")
    if train["progressive"]:
        start = check_resolution(train.get("start_res", 4), "--start-res")
        if start > net["resolution"]:
            raise UserError(f"--start-res {start}: expected at most --resolution {net['resolution']}")
    batches = [train["batch"]] + [b for _, b in train.get("batch_per_res", ())]
    for b in batches:
        _check_batch(b, world_size)
    for key in ("kimg", "tick_kimg"):
        if key in train and not train[key] > 0:
            raise UserError(f"--{key.replace('_', '-')} {train[key]}: expected a positive number")
    for key in ("g_lr", "d_lr"):
        if key in train and not train[key] > 0:
            raise UserError(f"--{key.replace('_', '-')} {train[key]}: expected a positive learning rate")
    for key in ("r1_interval", "pl_interval", "ada_interval", "sample_ticks", "checkpoint_ticks", "keep_checkpoints",
                "nan_patience"):
        if key in train and int(train[key]) < 1:
            raise UserError(f"--{key.replace('_', '-')} {train[key]}: expected an integer >= 1")
    if not 0.0 <= train.get("style_mixing", 0.9) <= 1.0:
        raise UserError(f"--style-mixing {train['style_mixing']}: expected a probability in [0, 1]")
    check_metrics(tuple(train.get("metrics", ())))
    if train.get("metric_num", 5000) < 2:
        raise UserError(f"--metric-num {train['metric_num']}: expected at least 2 generated images")
    if train.get("precision", "auto") not in PRECISIONS:
        raise UserError(f"--precision {train['precision']}: expected {', '.join(PRECISIONS)}")
    if int(train.get("fp16_res", 4)) < 0:
        raise UserError(f"--fp16-res {train['fp16_res']}: expected 0 (all fp32) or more resolutions")
    _validate_batch_gpu(train, world_size)


def check_metrics(metrics: tuple[str, ...]) -> tuple[str, ...]:
    """Training-time metrics: names the metric registry marks `training`."""
    from stylemri.metrics.evaluate import TRAINING_METRICS

    if any(m not in TRAINING_METRICS for m in metrics):
        raise UserError(f"--metrics {','.join(metrics)}: expected a comma-separated subset of "
                        f"{','.join(TRAINING_METRICS)}")
    return metrics


def _validate_batch_gpu(train: dict[str, Any], world_size: int) -> None:
    """--batch-gpu must split every per-process batch it is smaller than into equal rounds."""
    batch_gpu = train.get("batch_gpu")
    if batch_gpu is None:
        return
    if int(batch_gpu) < 1:
        raise UserError(f"--batch-gpu {batch_gpu}: expected a positive number of images per process and round")
    batches = [train["batch"]] + [b for _, b in train.get("batch_per_res", ())]
    for b in batches:
        local = b // world_size
        if local > batch_gpu and local % batch_gpu:
            raise UserError(f"--batch-gpu {batch_gpu}: expected a divisor of the per-process batch {local} "
                            f"(--batch {b} over {world_size} process(es))")
