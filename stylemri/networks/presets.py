"""Named paper configurations, so a published setup can be named and reproduced on MRI.

The values are the published ones (StyleGAN FFHQ; StyleGAN2-ADA `train.py --cfg` specs); only
`img_channels` defaults to 1 (MRI). `channel_base` follows NVlabs: channels(res) = min(base/res, max).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from stylemri.config import NetworkConfig
from stylemri.errors import UserError


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    make: Callable[[int | None], NetworkConfig]  # resolution (None = the preset's own) -> config


def _auto(res: int | None) -> NetworkConfig:
    res = 256 if res is None else res
    # StyleGAN2-ADA `--cfg auto`: half the channels below 512 px, 2 mapping layers, mbstd group 4.
    return NetworkConfig(arch="stylegan2", resolution=res, channel_base=16384 if res < 512 else 32768,
                         channel_max=512, map_layers=2, mbstd_group=4)


def _fixed(arch: str, res0: int, base: int, map_layers: int, mbstd_group: int) -> Callable[[int | None], NetworkConfig]:
    def make(res: int | None) -> NetworkConfig:
        return NetworkConfig(arch=arch, resolution=res0 if res is None else res, channel_base=base, channel_max=512,
                             map_layers=map_layers, mbstd_group=mbstd_group)
    return make


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("stylegan2-auto", "StyleGAN2-ADA --cfg auto (base 16384 below 512 px, else 32768; 2 mapping layers)", _auto),
    Preset("stylegan2-paper256", "StyleGAN2-ADA --cfg paper256 (256 px, base 16384, 8 mapping layers, mbstd 8)",
           _fixed("stylegan2", 256, 16384, 8, 8)),
    Preset("stylegan2-paper512", "StyleGAN2-ADA --cfg paper512 (512 px, base 32768, 8 mapping layers, mbstd 8)",
           _fixed("stylegan2", 512, 32768, 8, 8)),
    Preset("stylegan2-config-f", "StyleGAN2 config F / ADA --cfg stylegan2 (1024 px, base 32768, 8 mapping layers)",
           _fixed("stylegan2", 1024, 32768, 8, 4)),
    Preset("stylegan-ffhq", "StyleGAN (2019) FFHQ (1024 px, fmap_base 8192 = channel_base 16384, 8 mapping layers)",
           _fixed("stylegan", 1024, 16384, 8, 4)),
)}


def preset_config(name: str, resolution: int | None = None, **overrides: Any) -> NetworkConfig:
    """The named preset at `resolution` (None = its own), with any NetworkConfig fields overridden."""
    if name not in PRESETS:
        raise UserError(f"network preset {name!r}: expected one of {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name].make(resolution), **overrides)


__all__ = ["PRESETS", "Preset", "preset_config"]
