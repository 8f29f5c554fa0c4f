"""Start a network from another one's weights: same names and shapes are copied, image channels and
conditioning are adapted, everything else keeps its fresh (NVlabs-distributed) initialisation.

Used by `stylemri train --init` (another run, or an imported NVlabs model) and by `stylemri import`
(which insists that nothing stays fresh). Channel rules, so that grey and RGB models trade weights:

* toRGB (`*.torgb.weight` / `.bias`, output channels first): RGB -> grey takes ITU-R BT.601 luma,
  0.299 R + 0.587 G + 0.114 B, of the rows, so the grey image is exactly the luma of the RGB one (the
  skip generator's image is a sum of toRGB outputs, linear in these rows); grey -> RGB repeats the row.
* fromRGB (`*.fromrgb.weight`, input channels second): a grey slice g is the RGB image (g, g, g), so
  RGB -> grey sums the three input columns (D(g) = D_rgb(g, g, g)); grey -> RGB splits the column in three.
* `mapping.fc0.weight` when conditioning changes: its first z_dim columns act on z in both networks
  (z comes before the class embedding), so they are copied and the embedding's columns stay fresh.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch

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
        return value.sum(1, keepdim=True)
    if have == 1 and need > 1:
        reps = [1] * value.dim()
        reps[dim] = need
        return value.repeat(*reps) if dim == 0 else value.repeat(*reps) / need
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
