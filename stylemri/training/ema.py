"""Exponential moving average of G's weights: what samples, checkpoints' generator and every tool use.

The half-life is `ema_kimg` thousand images; with `ema_rampup` it is at most rampup * images shown so
far, so early in training the average follows G closely (StyleGAN2-ADA).
"""

from __future__ import annotations

import torch


def ema_beta(batch: int, ema_kimg: float, ema_rampup: float | None, cur_nimg: int) -> float:
    """Per-step decay: 0.5 ** (batch / half-life in images)."""
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(G_ema: torch.nn.Module, G: torch.nn.Module, beta: float) -> None:
    """G_ema <- beta * G_ema + (1 - beta) * G for parameters (one fused call); buffers are copied."""
    ema_params = [p for p in G_ema.parameters()]
    params = [p.detach() for p in G.parameters()]
    if ema_params:
        torch._foreach_lerp_(ema_params, params, 1.0 - beta)
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


@torch.no_grad()
def update_ema_reference(G_ema: torch.nn.Module, G: torch.nn.Module, beta: float) -> None:
    """Plain per-tensor version of `update_ema` (NVlabs' formulation), kept for the tests to compare."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)
