"""Start a network from another one's weights: same names and shapes are copied, image channels and
conditioning are adapted, everything else keeps its fresh (NVlabs-distributed) initialisation.

Used by `stylemri train --init` (another run, or an imported NVlabs model) and by `stylemri import`
(which insists that nothing stays fresh). Channel rules, so that grey and RGB models trade weights:

* toRGB (`*.torgb.weight` / `.bias`, output channels first): RGB -> grey takes ITU-R BT.601 luma,
  0.299 R + 0.587 G + 0.114 B, of the rows, so the grey image is exactly the luma of the RGB one (the
  skip generator's image is a sum of toRGB outputs, linear in these rows); grey -> RGB repeats the row.
* fromRGB (`*.fromrgb.weight`, input channels second): a grey slice g is the RGB image (g, g, g), so
  RGB -> grey sums the three input columns (D(g) = D_rgb(g, g, g)); grey -> RGB splits the column in three.
  The equalized learning rate scales weights by 1/sqrt(fan_in) at run time and fan_in counts input
  channels, so the stored columns are also multiplied by sqrt(new channels / old channels).
* `mapping.fc0.weight` when conditioning changes: its first z_dim columns act on z in both networks
  (z comes before the class embedding), so they are copied and the embedding's columns stay fresh.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch

from stylemri.config import NetworkConfig, RunConfig, from_dict
from stylemri.errors import UserError
from stylemri.training import checkpoint as ckpt
from stylemri.training.run_dir import find_checkpoint

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


@dataclass
class TransferReport:
    """Which target tensors were copied as they are, adapted (channels, conditioning) or left fresh."""

    copied: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)  # source tensors the target has no place for

    def summary(self) -> str:
        return f"{len(self.copied)} copied, {len(self.adapted)} adapted, {len(self.fresh)} fresh"


def adapt_channels(name: str, value: torch.Tensor, want: torch.Size) -> torch.Tensor | None:
    """`value` (a toRGB/fromRGB tensor) converted to shape `want` by the channel rules, or None."""
    if name.endswith((".torgb.weight", ".torgb.bias")):
        dim = 0
    elif name.endswith(".fromrgb.weight"):
        dim = 1
    else:
        return None
    if value.dim() != len(want) or value.dim() <= dim:
        return None
    have, need = value.shape[dim], want[dim]
    if [s for i, s in enumerate(value.shape) if i != dim] != [s for i, s in enumerate(want) if i != dim]:
        return None
    if have == 3 and need == 1:
        if dim == 0:
            luma = torch.tensor(LUMA, dtype=value.dtype).reshape(3, *[1] * (value.dim() - 1))
            return (value * luma).sum(0, keepdim=True)
        return value.sum(1, keepdim=True) * math.sqrt(1 / 3)
    if have == 1 and need > 1:
        reps = [1] * value.dim()
        reps[dim] = need
        return value.repeat(*reps) if dim == 0 else value.repeat(*reps) / math.sqrt(need)
    return None


def transfer_state(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                   z_dim: int | None = None) -> tuple[dict[str, torch.Tensor], TransferReport]:
    """A state dict for the network whose current state is `target`, filled from `source` by the rules
    above; `z_dim`: the z columns of `mapping.fc0.weight` to copy when conditioning differs."""
    out: dict[str, torch.Tensor] = {}
    report = TransferReport()
    for name, mine in target.items():
        theirs = source.get(name)
        if theirs is None:
            out[name] = mine
            report.fresh.append(name)
            continue
        theirs = theirs.detach().to(mine.dtype)
        if theirs.shape == mine.shape:
            out[name] = theirs.clone()
            report.copied.append(name)
            continue
        adapted = adapt_channels(name, theirs, mine.shape)
        if adapted is None and name == "mapping.fc0.weight" and z_dim and theirs.dim() == 2 \
                and theirs.shape[0] == mine.shape[0] and min(theirs.shape[1], mine.shape[1]) >= z_dim:
            adapted = mine.clone()
            adapted[:, :z_dim] = theirs[:, :z_dim]
        if adapted is None:
            out[name] = mine
            report.fresh.append(name)
        else:
            out[name] = adapted.contiguous()
            report.adapted.append(name)
    report.unused = sorted(set(source) - set(target))
    return out, report


# ---- train --init / --freeze-d ------------------------------------------------------------------------
def _init_record(path: str | os.PathLike) -> tuple[Path, dict, NetworkConfig]:
    try:
        json_path = find_checkpoint(path, "latest").resolve()
        meta = ckpt.read_meta(json_path)
    except UserError as exc:
        raise UserError(f"--init {exc}") from None
    try:
        net = from_dict(RunConfig, meta["config"]).network
    except (KeyError, ValueError, TypeError) as exc:
        raise UserError(f"--init {path}: expected a stylemri checkpoint with its run configuration ({exc})") from None
    return json_path, meta, net


def init_resolution(path: str | os.PathLike) -> int:
    """The image size of the network `--init` names (a new run's default resolution)."""
    return _init_record(path)[2].resolution


def resolve_init(path: str | os.PathLike, resolution: int) -> tuple[Path, str, NetworkConfig]:
    """`--init RUN_OR_CHECKPOINT` -> (its checkpoint record, the tensor file's SHA-256, its network shape).
    The resolution must equal the new run's, or be smaller for a StyleGAN2 network (growing: the new
    top blocks start fresh, see `grow_generator`); channels and conditioning may differ."""
    json_path, meta, net = _init_record(path)
    if net.resolution > resolution or (net.resolution < resolution and net.arch != "stylegan2"):
        raise UserError(f"--init {path}: its network is {net.resolution} px ({net.arch}), this run trains at "
                        f"{resolution} px; expected the same resolution, or a smaller StyleGAN2 network to grow from")
    return json_path, str(meta["tensor_sha256"]), net


def grow_generator(G: torch.nn.Module, source_resolution: int) -> list[str]:
    """Zero the toRGB weights of the synthesis blocks above `source_resolution` (returns their names).

    Why: the skip generator's image is the upsampled sum of every block's toRGB output, so with these rows
    at zero the grown G draws exactly the source's image, upsampled, and the new blocks add detail as
    they learn it (their gradients flow once toRGB moves off zero, after the first step). This is
    StyleGAN2's answer to progressive growing's fade-in without a second code path."""
    synthesis = getattr(G, "synthesis", None)
    zeroed = []
    for res in getattr(synthesis, "block_resolutions", ()):
        if res > source_resolution:
            torgb = getattr(synthesis, f"b{res}").torgb
            with torch.no_grad():
                torgb.weight.zero_()
            zeroed.append(f"synthesis.b{res}.torgb.weight")
    return zeroed


def init_modules(json_path: str | os.PathLike, sha256: str | None, modules: Mapping[str, torch.nn.Module],
                 z_dim: int) -> dict[str, TransferReport]:
    """Fill G, D and G_ema from the checkpoint (verified; its SHA-256 must be `sha256` when given). A
    checkpoint without D (an import that left it out) leaves D fresh; one without G uses G_ema."""
    tensors, meta = ckpt.read_checkpoint(json_path, prefixes=("G", "D", "G_ema"))
    if sha256 is not None and meta["tensor_sha256"] != sha256:
        raise UserError(f"--init {json_path}: its tensor file changed since the run recorded it (SHA-256 differs)")
    source_resolution = from_dict(RunConfig, meta["config"]).network.resolution
    reports = {}
    for name, module in modules.items():
        source = ckpt.unpack_module(name, tensors) or (ckpt.unpack_module("G_ema", tensors) if name == "G" else {})
        state, reports[name] = transfer_state(source, module.state_dict(), z_dim)
        module.load_state_dict(state)
        if name in ("G", "G_ema"):
            for zeroed in grow_generator(module, source_resolution):
                reports[name].fresh.remove(zeroed)
                reports[name].adapted.append(zeroed)
    return reports


def d_layers(D: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """D's layers in NVlabs' FreezeD order: from the input block down, fromrgb, conv0, conv1, skip per
    block (the 4x4 epilogue is never frozen), as NVlabs counts `freeze_layers`."""
    layers = []
    for block_name, block in D.named_children():
        if block_name == "b4" or not block_name.startswith("b"):
            continue
        for name in ("fromrgb", "conv0", "conv1", "skip"):
            layer = getattr(block, name, None)
            if isinstance(layer, torch.nn.Module):
                layers.append((f"{block_name}.{name}", layer))
    return layers


def frozen_parameters(D: torch.nn.Module, n: int) -> list[torch.nn.Parameter]:
    """The parameters of D's first `n` layers (`--freeze-d N`)."""
    layers = d_layers(D)
    if not 0 <= n <= len(layers):
        raise UserError(f"--freeze-d {n}: expected 0 to {len(layers)} (this discriminator has {len(layers)} "
                        f"layers before its 4x4 head)")
    return [p for _, layer in layers[:n] for p in layer.parameters()]
