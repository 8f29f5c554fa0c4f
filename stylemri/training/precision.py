"""Training precision: which dtype the networks' top resolutions use, and the fp16 loss scaler.

`fp32`: everything float32. `bf16`: the top `fp16_res` resolutions of G and D under bf16 autocast (same
exponent range as float32, no scaling needed). `fp16`: the same blocks in float16, with conv outputs
clamped (NVlabs' conv_clamp 256) and a dynamic loss scale, so small gradients do not underflow. `auto`:
bf16 on CUDA, fp32 on CPU. The mapping network and the regularization passes are float32 in every mode.
"""

from __future__ import annotations

import math

import torch

DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` -> bf16 on CUDA, fp32 elsewhere; other names pass through."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision not in DTYPES:
        raise ValueError(f"precision {precision!r}: expected auto, {', '.join(DTYPES)}")
    return precision


class LossScaler:
    """Dynamic loss scale for fp16 (torch's GradScaler policy: x2 every `growth_interval` good steps, x0.5
    on an overflow). The loop multiplies each phase's gain by `scale`, divides the gradients back before
    the finite check and reports the outcome to `update`; the decision is the same on every rank because
    the finite check is made after the gradient all-reduce."""

    def __init__(self, enabled: bool, init_scale: float = 2.0**16, growth_interval: int = 2000,
                 max_scale: float = 2.0**24) -> None:
        self.enabled = enabled
        self.scale = init_scale if enabled else 1.0
        self.growth_interval = growth_interval
        self.max_scale = max_scale
        self.good_steps = 0
        self.overflows = 0

    def unscale(self, params: list[torch.nn.Parameter]) -> None:
        if not self.enabled:
            return
        inv = 1.0 / self.scale
        for p in params:
            if p.grad is not None:
                p.grad.mul_(inv)

    def update(self, finite: bool) -> None:
        if not self.enabled:
            return
        if finite:
            self.good_steps += 1
            if self.good_steps >= self.growth_interval:
                self.scale = min(self.scale * 2.0, self.max_scale)
                self.good_steps = 0
        else:
            self.overflows += 1
            self.scale = max(self.scale * 0.5, 1.0)
            self.good_steps = 0

    def state_dict(self) -> dict[str, float]:
        return {"scale": self.scale, "good_steps": self.good_steps, "overflows": self.overflows}

    def load_state_dict(self, state: dict[str, float] | None) -> None:
        if self.enabled and state and math.isfinite(float(state.get("scale", 0.0))):
            self.scale = float(state["scale"])
            self.good_steps = int(state.get("good_steps", 0))
            self.overflows = int(state.get("overflows", 0))


__all__ = ["DTYPES", "LossScaler", "resolve_precision"]
