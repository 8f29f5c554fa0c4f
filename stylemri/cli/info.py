"""`stylemri info networks`: parameter counts of named paper configs or of a config you describe."""

from __future__ import annotations

import argparse
import dataclasses

from stylemri.cli.options import add_config_flags, add_flag, config_values
from stylemri.config import NetworkConfig

def register(subparsers: argparse._SubParsersAction) -> None:
    from stylemri.networks import PRESETS
    from stylemri.training.presets import PRESETS as TRAINING_PRESETS

    info = subparsers.add_parser("info", help="facts about models (parameter counts of network configs)",
                                 description="Facts about stylemri models.")
    sub = info.add_subparsers(dest="info_command", metavar="TOPIC", parser_class=type(info))
    sub.required = True
    presets = "\n".join([*(f"  {p.name:20s} {p.description}" for p in PRESETS.values()),
                         *(f"  {n:20s} train --preset {n}: {d}" for n, d in TRAINING_PRESETS.items())])
    p = sub.add_parser(
        "networks", help="parameter counts of named network configs or of one you describe",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=("Print parameter counts of generator (mapping + synthesis) and discriminator.\n"
                     "With no options: every named preset plus the default config. With --preset: those\n"
                     "presets; with field options: the default config (or the presets) changed accordingly.\n\n"
                     f"Presets:\n{presets}\n  {'all':20s} every preset above"),
        epilog=("examples:\n  stylemri info networks\n"
                "  stylemri info networks --preset stylegan2-auto --resolution 128 --c-dim 2\n"
                "  stylemri info networks --arch stylegan --resolution 64 --channel-base 8192 --per-block\n"
                "  stylemri info networks --dims 3 --resolution 64"),
    )
    p.add_argument("--preset", action="append", choices=[*PRESETS, *TRAINING_PRESETS, "all"], metavar="NAME",
                   help="a named paper config, or a training preset (counts what `train --preset NAME` builds); "
                        "repeatable; 'all' for every paper config")
    add_flag(p, "--arch")
    add_flag(p, "--resolution", help="output size in pixels, a power of two 4..1024")
    add_flag(p, "--channels")
    p.add_argument("--c-dim", type=int, metavar="K", help="number of classes for a conditional model (0 = none)")
    add_config_flags({"network": p}, NetworkConfig, "")
    add_flag(p, "--dims", help="2 = slices (default), 3 = whole volumes (StyleGAN2 3-D, with the smaller 3-D "
                               "channel defaults unless --channel-base/--channel-max are given)")
    p.add_argument("--per-block", action="store_true", help="also list the count of every block")
    p.set_defaults(func=run_networks)


def _configs(args: argparse.Namespace) -> list[tuple[str, NetworkConfig]]:
    from stylemri.networks import PRESETS, preset_config
    from stylemri.training import presets as training

    overrides = config_values(args, NetworkConfig, "")
    for dest, name in (("arch", "arch"), ("resolution", "resolution"), ("channels", "img_channels"),
                       ("c_dim", "c_dim"), ("dims", "dims")):
        if getattr(args, dest) is not None:
            overrides[name] = getattr(args, dest)
    names = list(PRESETS) if args.preset and "all" in args.preset else list(dict.fromkeys(args.preset or []))
    if not names and not overrides:
        return [(n, preset_config(n)) for n in PRESETS] + [("default", NetworkConfig())]
    if not names and overrides.get("dims") == 3:
        from stylemri.networks import volume_network_config

        return [("volume", volume_network_config(**overrides))]
    if not names:
        return [("custom", dataclasses.replace(NetworkConfig(), **overrides))]
    res = overrides.pop("resolution", None)
    return [(n, training.network_config(n, resolution=res, **overrides) if n in training.PRESETS
             else preset_config(n, resolution=res, **overrides)) for n in names]


def run_networks(args: argparse.Namespace) -> int:
    from stylemri.networks import parameter_breakdown, parameter_counts

    rows = [(name, cfg, parameter_counts(cfg)) for name, cfg in _configs(args)]
    header = ("config", "arch", "res", "ch", "c", "base", "max", "map", "ws", "G.mapping", "G.synthesis", "G", "D")
    table = [header] + [
        (name, cfg.arch if cfg.dims == 2 else f"{cfg.arch}-3d", str(cfg.resolution), str(cfg.img_channels), str(cfg.c_dim), str(cfg.channel_base),
         str(cfg.channel_max), str(cfg.map_layers), str(n["num_ws"]), f"{n['G.mapping']:,}",
         f"{n['G.synthesis']:,}", f"{n['G']:,}", f"{n['D']:,}")
        for name, cfg, n in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))))
    if args.per_block:
        for name, cfg, _ in rows:
            print(f"\n{name} ({cfg.arch}, {cfg.resolution} {'px' if cfg.dims == 2 else 'voxels a side'}):")
            for part, count in parameter_breakdown(cfg):
                print(f"  {part:28s} {count:>14,}")
    return 0
