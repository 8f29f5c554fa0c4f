"""NVlabs stylegan2-ada-pytorch / stylegan3 networks, read from the plain records `safe_pickle` returns.

The parameter map is the identity: stylemri's StyleGAN2 uses NVlabs' module layout and names
(`mapping.fc0.weight`, `synthesis.b64.conv1.affine.weight`, `b64.fromrgb.weight`, ...; docs/interop.md
has the table), so a record's `_parameters` and persistent `_buffers`, walked through `_modules`, give a
state dict that our networks load directly. Only NVlabs' fixed FIR constants (`resample_filter`) are left
out: ours are built, not saved. The network shape (NetworkConfig) is read from the records' attributes
and tensor shapes, then checked by loading every tensor into a network built from it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from stylemri.config import NetworkConfig
from stylemri.errors import UserError
from stylemri.interop.safe_pickle import PersistentRecord
from stylemri.networks.stylegan2 import channels_at

SKIPPED_BUFFERS = ("resample_filter",)  # NVlabs' constant FIR taps; rebuilt by our layers


def tensors_of(record: PersistentRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    """A persistent module record as a flat state dict (parameters and persistent buffers, children
    recursively), float tensors as float32."""
    state = record.state
    out: dict[str, torch.Tensor] = {}
    hidden = set(state.get("_non_persistent_buffers_set") or ())
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if value is None or name in hidden or name in SKIPPED_BUFFERS:
                continue
            if not isinstance(value, torch.Tensor):
                raise UserError(f"{prefix}{name}: expected a tensor in the module's {group}")
            out[prefix + name] = value.float() if value.is_floating_point() else value
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentRecord):
            raise UserError(f"{prefix}{name}: expected an NVlabs persistent module, got {type(child).__name__}")
        out.update(tensors_of(child, f"{prefix}{name}."))
    return out


def child(record: PersistentRecord, path: str) -> PersistentRecord | None:
    """The sub-module record at dotted `path` (e.g. 'synthesis.b4.conv1'), or None."""
    node: Any = record
    for part in path.split("."):
        node = ((node.state.get("_modules") or {}).get(part)) if isinstance(node, PersistentRecord) else None
    return node if isinstance(node, PersistentRecord) else None


def attr(record: PersistentRecord | None, name: str, default: Any = None) -> Any:
    return default if record is None else record.state.get(name, default)


def check_generator(record: Any, where: str) -> PersistentRecord:
    """The G_ema record, refused with one line when it is not a StyleGAN2 generator."""
    if not isinstance(record, PersistentRecord) or record.class_name != "Generator":
        kind = record.class_name if isinstance(record, PersistentRecord) else type(record).__name__
        raise UserError(f"{where}: G_ema is a {kind}, expected an NVlabs StyleGAN2 Generator")
    synthesis = child(record, "synthesis")
    if synthesis is None:
        raise UserError(f"{where}: G_ema has no synthesis network; expected an NVlabs StyleGAN2 Generator")
    names = set(synthesis.state.get("_modules") or {})
    if "input" in names or any(n.startswith("L0_") for n in names) or "SynthesisInput" in synthesis.module_src:
        raise UserError(f"{where}: a StyleGAN3 ('T'/'R') generator; only StyleGAN2 generators import "
                        f"(stylegan2-ada-pytorch, or stylegan3's --cfg=stylegan2)")
    arch = {attr(b, "architecture", "skip") for n in names if (b := child(synthesis, n)) is not None}
    if arch - {"skip"}:
        raise UserError(f"{where}: synthesis architecture {sorted(arch - {'skip'})}; expected NVlabs' default "
                        f"'skip' generator (the one stylemri builds)")
    return record


def _channel_rule(found: dict[int, int], hint: Any, where: str) -> tuple[int, int]:
    """(channel_base, channel_max) with channels(res) = min(base / res, max) for every block found."""
    ch_max = max(found.values())
    candidates = [int(hint)] if isinstance(hint, int) else []
    candidates += [ch * res for res, ch in found.items() if ch < ch_max] + [ch_max * max(found)]
    for base in candidates:
        if all(channels_at(res, base, ch_max) == ch for res, ch in found.items()):
            return base, ch_max
    raise UserError(f"{where}: channels per resolution {dict(sorted(found.items()))} do not follow "
                    f"min(channel_base / res, channel_max); expected an NVlabs StyleGAN2")


def generator_config(G: PersistentRecord, where: str) -> dict[str, Any]:
    """NetworkConfig fields read off a StyleGAN2 G record (attributes and tensor shapes)."""
    res = int(attr(G, "img_resolution", 0) or 0)
    if res < 4 or res & (res - 1):
        raise UserError(f"{where}: G_ema img_resolution {res!r}; expected a power of two")
    state = tensors_of(G)
    found = {r: int(state[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in (2 ** k for k in
             range(2, int(math.log2(res)) + 1)) if f"synthesis.b{r}.conv1.weight" in state}
    if len(found) != int(math.log2(res)) - 1:
        raise UserError(f"{where}: G_ema lacks synthesis blocks b4..b{res}; expected an NVlabs StyleGAN2")
    hint = ((attr(G, "_init_kwargs") or {}).get("synthesis_kwargs") or {}).get("channel_base")
    base, ch_max = _channel_rule(found, hint, where)
    map_layers = sum(1 for k in state if k.startswith("mapping.fc") and k.endswith(".weight"))
    return dict(arch="stylegan2", resolution=res, img_channels=int(attr(G, "img_channels", 3)),
                c_dim=int(attr(G, "c_dim", 0)), z_dim=int(attr(G, "z_dim", 512)), w_dim=int(attr(G, "w_dim", 512)),
                map_layers=map_layers,
                map_lr_mul=float(attr(child(G, "mapping.fc0"), "lr_multiplier", 0.01)),
                channel_base=base, channel_max=ch_max,
                conv_clamp=attr(child(G, "synthesis.b4.conv1"), "conv_clamp"))


def discriminator_fits(D: Any, net: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(the D-only config fields, None) when D is a resnet StyleGAN2 D on G's channel rule, else
    (None, why it is left out)."""
    if not isinstance(D, PersistentRecord) or D.class_name != "Discriminator":
        return None, "the pickle holds no NVlabs Discriminator"
    blocks = [n for n in (D.state.get("_modules") or {}) if n.startswith("b") and n[1:].isdigit()]
    archs = {attr(child(D, n), "architecture", "resnet") for n in blocks}
    if archs - {"resnet"}:
        return None, f"its discriminator is '{sorted(archs - {'resnet'})[0]}', stylemri's is 'resnet'"
    mbstd = child(D, "b4.mbstd")
    group = attr(mbstd, "group_size", 4)
    fields = dict(mbstd_group=int(group) if group else 4, mbstd_features=int(attr(mbstd, "num_channels", 1)),
                  d_map_layers=sum(1 for k in tensors_of(D) if k.startswith("mapping.fc") and k.endswith(".weight"))
                  or 8)
    return fields, None


def network_config(G: PersistentRecord, D: Any, where: str, channels: int = 1
                   ) -> tuple[NetworkConfig, dict[str, Any], bool, str | None]:
    """(our config with `channels` image channels, NVlabs' own shape, whether D imports, why not)."""
    net = generator_config(G, where)
    d_fields, why = discriminator_fits(D, net)
    source = dict(net, **(d_fields or {}))
    try:
        cfg = NetworkConfig(**dict(source, img_channels=channels))
    except (UserError, TypeError, ValueError) as exc:
        raise UserError(f"{where}: the network's shape is outside what stylemri builds ({exc})") from None
    return cfg, source, d_fields is not None, why
