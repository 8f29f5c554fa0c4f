"""GAN objectives and their regularizers, one training phase at a time (NVlabs StyleGAN2-ADA layout).

Phases per step: `Gmain` (adversarial G loss), `Greg` (path-length regularization, lazy), `Dmain`
(adversarial D loss; for WGAN-GP it also holds the gradient penalty and drift), `Dreg` (R1, lazy).
Either objective works with either architecture:

- `ns`: non-saturating logistic loss, softplus(-D(G(z))) for G and softplus(D(G(z))) + softplus(-D(x)) for
  D; R1 = gamma/2 * |grad_x D(x)|^2 on reals every `r1_interval` D steps (scaled by the interval).
- `wgangp`: D(G(z)) - D(x) + lambda * (|grad D(x_hat)| - 1)^2 + epsilon * D(x)^2 (StyleGAN 2019 / the
  reference implementations).
- `r3gan`: the relativistic pairing loss of R3GAN (Huang et al., NeurIPS 2024): softplus(-(D(x) - D(G(z))))
  for D and softplus(-(D(G(z)) - D(x))) for G, real i paired with fake i (the fake generated with real i's
  label); R1 on reals and R2 on fakes, gamma/2 * |grad D|^2 each, every `r1_interval` D steps (1: every
  step, as the paper). D's scores only mean something relative to each other, so ADA's overfitting signal is
  E[sign(D(x) - D(G(z)))] over the pairs (`last_real_logits` holds those differences).

Path length (StyleGAN2): a = |J_w^T y| for y ~ N(0, I)/sqrt(HW); penalty (a - mean a)^2 with the mean
tracked at decay 0.01, on a batch shrunk by 2, every `pl_interval` G steps. Style mixing: with
probability p two latents are mixed at a random crossover layer. Everything D sees is augmented.

Precision (NVlabs): the networks run their top resolutions in reduced precision when the trainer marked
them (`networks.precision.set_precision`); the mapping is always float32 and every regularization pass
(R1, path length, the WGAN-GP penalty) runs with `force_fp32`. A phase may be split into rounds (gradient
accumulation, `--batch-gpu`): the loop calls `accumulate_gradients` once per round with `gain / rounds`,
and the path-length mean is updated once per phase, from all rounds, only after the loop found the step
finite (`commit`).
"""

from __future__ import annotations

import inspect
import math
from types import SimpleNamespace
from typing import Any, Callable

import torch
import torch.nn.functional as F

from stylemri.config import TrainConfig
from stylemri.networks.heads import MinibatchStd, mbstd_group_size
from stylemri.training.augment import AdaController, AugmentPipe
from stylemri.training.rng import BatchRandom
from stylemri.training.schedule import Phase

RandomFactory = Callable[[str, int], BatchRandom]  # (purpose, global rows) -> draws for this rank's rows
LabelSampler = Callable[[str, int], "torch.Tensor | None"]  # (purpose, global rows) -> this rank's one-hot labels
Reducer = Callable[[torch.Tensor], torch.Tensor]  # mean over ranks (identity on one process)


def main_passes(G: torch.nn.Module, D: torch.nn.Module, compiled: bool) -> tuple[Any, torch.nn.Module]:
    """The G (``.mapping`` / ``.synthesis``) and D that the main phases call: the networks themselves, or
    their ``torch.compile`` twins (``--compile``). One boundary, so that tests/test_compile.py can compare the
    fast path against the eager reference; R1/R2/path length always use the eager networks (double backward)."""
    if not compiled:
        return G, D
    return SimpleNamespace(mapping=torch.compile(G.mapping), synthesis=torch.compile(G.synthesis)), torch.compile(D)


class StyleGANLoss:
    """Computes one phase's loss and runs its backward pass; returns detached statistics for logging."""

    def __init__(self, G: torch.nn.Module, D: torch.nn.Module, train: TrainConfig, *,
                 augment: AugmentPipe | None = None, ada: AdaController | None = None,
                 G_main: torch.nn.Module | None = None, D_main: torch.nn.Module | None = None,
                 reduce_mean: Reducer | None = None, world_size: int = 1) -> None:
        self.G, self.D = G, D
        # Possibly torch.compile'd `.mapping`/`.synthesis` and D: used only where no double backward is needed.
        self.G_main = G_main if G_main is not None else G
        self.D_main = D_main if D_main is not None else D
        self.cfg = train
        self.augment = augment
        self.ada = ada
        self.reduce_mean = reduce_mean or (lambda t: t)
        self.world_size = world_size
        device = next(G.parameters()).device
        self.pl_mean = torch.zeros([], device=device)
        self.r1_gamma = train.r1_gamma  # R1 (and R2) weight now: the loop moves it with --gamma-final
        self._pl_batch_means: list[torch.Tensor] = []  # this phase's rounds; committed after the finite check
        self.last_real_logits: torch.Tensor | None = None
        self.last_w_mean: torch.Tensor | None = None
        self.gmain_w_mean: torch.Tensor | None = None  # mean w of the Gmain batch, for G's w_avg
        self.mbstd_groups = [m.group_size for m in D.modules() if isinstance(m, MinibatchStd)]
        self.pair_passes = True  # Dmain scores fakes and reals in one D pass (False: two, the reference)

    # ---- networks -----------------------------------------------------------------------------------
    def run_G(self, z: torch.Tensor, c: torch.Tensor | None, phase: Phase, rand: BatchRandom, *,
              main: bool = True, force_fp32: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Mapping (with style mixing) + synthesis; returns images and the ws they came from.

        The mean of the unmixed w is kept in `last_w_mean`: the loop moves G's `w_avg` toward it only
        once the step is known to be finite (and averaged over ranks), so a bad step cannot poison it.
        """
        G = self.G_main if main else self.G
        mapping, synthesis = G.mapping, G.synthesis
        ws = mapping(z, c)  # float32 always (NVlabs): the mapping's lr multiplier needs the precision
        self.last_w_mean = ws[:, 0].detach().float().mean(0)
        z2 = rand.randn(z.shape[1])[: z.shape[0]]
        mix = rand.scalar_rand() < self.cfg.style_mixing
        active = self.G.num_ws if phase.stage is None else min(self.G.num_ws, 2 * (phase.stage + 1))
        cutoff = rand.scalar_randint(1, active) if active > 1 else active
        if mix and active > 1:
            ws2 = mapping(z2, c)
            ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        img = synthesis(ws, stage=phase.stage, alpha=phase.alpha, **_fp32(self.G.synthesis, force_fp32))
        return img, ws

    def run_D(self, img: torch.Tensor, c: torch.Tensor | None, phase: Phase, rand: BatchRandom, *,
              main: bool = True, force_fp32: bool = False) -> torch.Tensor:
        """Augment (when on) and score; logits are float32 (N, 1)."""
        D = self.D_main if main else self.D
        logits = D(self._augment(img, rand), c, stage=phase.stage, alpha=phase.alpha, **_fp32(self.D, force_fp32))
        return logits.float()

    def _augment(self, img: torch.Tensor, rand: BatchRandom) -> torch.Tensor:
        if self.augment is not None and self.ada is not None and self.ada.p > 0:
            return self.augment(img, self.ada.p, rand)
        return img

    def run_D_pair(self, fake: torch.Tensor, fake_c: torch.Tensor | None, real: torch.Tensor,
                   real_c: torch.Tensor | None, phase: Phase, fake_rand: BatchRandom,
                   real_rand: BatchRandom, *, main: bool = True,
                   force_fp32: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Two scorings (Dmain's; Dreg's R1 + R2 with main=False, force_fp32=True), each batch augmented
        with its own draws (as two `run_D` calls), then one D pass over both (`score_pair`) unless
        `pair_passes` is off (the two-pass reference twin)."""
        fake, real = self._augment(fake, fake_rand), self._augment(real, real_rand)
        score = score_pair if self.pair_passes else score_separately
        fake_logits, real_logits = score(self.D_main if main else self.D, fake, fake_c, real, real_c,
                                         self.mbstd_groups, stage=phase.stage, alpha=phase.alpha,
                                         **_fp32(self.D, force_fp32))
        return fake_logits.float(), real_logits.float()

    # ---- phases -------------------------------------------------------------------------------------
    def accumulate_gradients(self, name: str, *, real: torch.Tensor, real_c: torch.Tensor | None,
                             sample_c: LabelSampler, phase: Phase, rng: RandomFactory, total: int,
                             gain: float = 1.0) -> dict[str, torch.Tensor]:
        """Run phase `name` (Gmain, Greg, Dmain, Dreg): loss, backward (scaled by `gain`), stats.

        Generated images get labels drawn from the data's label distribution (`sample_c`), per phase.
        """
        z_dim = self.G.z_dim
        if name == "Gmain":
            r = rng("Gmain", total)
            gen_c = real_c if self.cfg.loss == "r3gan" else sample_c("Gmain/c", total)
            img, _ = self.run_G(r.randn(z_dim), gen_c, phase, r)
            self.gmain_w_mean = self.last_w_mean
            logits = self.run_D(img, gen_c, phase, rng("Gmain/aug", total))
            if self.cfg.loss == "r3gan":
                real_logits = self.run_D(real.detach(), real_c, phase, rng("Gmain/aug_real", total))
                loss = F.softplus(-(logits - real_logits))
            else:
                loss = F.softplus(-logits) if self.cfg.loss == "ns" else -logits
            loss.mean().mul(gain).backward()
            return {"G_loss": loss.detach().mean()}
        if name == "Greg":
            return self._path_length(sample_c, phase, rng, total, gain)
        if name == "Dmain":
            # WGAN-GP interpolates between a real and a fake: they must carry the same label, so conditional
            # fakes are generated with the reals' labels (the reference implementations' StyleGAN); the logistic
            # loss draws them from the data's distribution (NVlabs).
            # R3GAN pairs real i with fake i: same label too.
            gen_c = real_c if self.cfg.loss in ("wgangp", "r3gan") else sample_c("Dmain/c", total)
            return self._d_main(real, real_c, gen_c, phase, rng, total, gain)
        if name == "Dreg":
            return self._d_reg(real, real_c, phase, rng, total, gain)
        raise ValueError(f"unknown training phase {name!r}")

    def _d_reg(self, real: torch.Tensor, real_c: torch.Tensor | None, phase: Phase, rng: RandomFactory,
               total: int, gain: float) -> dict[str, torch.Tensor]:
        """R1 on the reals; for r3gan also R2 on fakes (generated without a graph to G), both from one
        paired D pass (`gradient_penalty_pair`)."""
        if self.cfg.loss != "r3gan":
            r1, logits = self.gradient_penalty(real, real_c, phase, rng("Dreg/aug", total))
            penalty, stats = r1, {"R1": r1.detach().mean()}
        else:
            r = rng("Dreg/fake", total)
            with torch.no_grad():
                fake, _ = self.run_G(r.randn(self.G.z_dim), real_c, phase, r)
            (r1, r2), logits = self.gradient_penalty_pair(real, fake, real_c, phase, rng("Dreg/aug", total),
                                                          rng("Dreg/aug_fake", total))
            penalty, stats = r1 + r2, {"R1": r1.detach().mean(), "R2": r2.detach().mean()}
        (logits * 0 + penalty[:, None] * (self.r1_gamma / 2)).mean().mul(gain).backward()
        return stats

    def gradient_penalty(self, images: torch.Tensor, c: torch.Tensor | None, phase: Phase,
                         rand: BatchRandom) -> tuple[torch.Tensor, torch.Tensor]:
        """|grad_x D(x)|^2 per sample (R1 on reals, R2 on fakes; float32) and the logits, for the graph."""
        x = images.detach().requires_grad_(True)
        logits = self.run_D(x, c, phase, rand, main=False, force_fp32=True)
        (grads,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
        return _squared_norms(grads), logits

    def gradient_penalty_pair(self, real: torch.Tensor, fake: torch.Tensor, c: torch.Tensor | None, phase: Phase,
                              real_rand: BatchRandom, fake_rand: BatchRandom
                              ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """R1's and R2's per-sample |grad_x D(x)|^2 from one D pass over both batches (`run_D_pair`, whose
        `score_pair` keeps the minibatch-stddev groups apart, so no logit depends on a row of the other
        batch and one gradient of the summed logits holds both), or from two passes when `pair_passes` is
        off. Returns ((R1, R2), the summed logits for the graph)."""
        x_real, x_fake = real.detach().requires_grad_(True), fake.detach().requires_grad_(True)
        fake_logits, real_logits = self.run_D_pair(x_fake, c, x_real, c, phase, fake_rand, real_rand,
                                                   main=False, force_fp32=True)
        logits = real_logits + fake_logits
        g_real, g_fake = torch.autograd.grad(logits.sum(), [x_real, x_fake], create_graph=True)
        return (_squared_norms(g_real), _squared_norms(g_fake)), logits

    def _d_main(self, real: torch.Tensor, real_c: torch.Tensor | None, gen_c: torch.Tensor | None, phase: Phase,
                rng: RandomFactory, total: int, gain: float) -> dict[str, torch.Tensor]:
        r = rng("Dmain", total)
        with torch.no_grad():
            fake, _ = self.run_G(r.randn(self.G.z_dim), gen_c, phase, r)
        fake_logits, real_logits = self.run_D_pair(fake, gen_c, real, real_c, phase, rng("Dmain/aug_fake", total),
                                                   rng("Dmain/aug_real", total))
        # ADA's signal, taken once the step is known to be finite: D(real), or D(real) - D(fake) for r3gan
        signal = real_logits - fake_logits if self.cfg.loss == "r3gan" else real_logits
        self.last_real_logits = signal.detach()
        stats = {"D_real_sign": signal.detach().sign().mean()}
        if self.cfg.loss == "r3gan":
            loss = F.softplus(-(real_logits - fake_logits))
            loss.mean().mul(gain).backward()
            stats["D_loss"] = loss.detach().mean()
            return stats
        if self.cfg.loss == "ns":
            loss = F.softplus(fake_logits) + F.softplus(-real_logits)
            loss.mean().mul(gain).backward()
            stats["D_loss"] = loss.detach().mean()
            return stats
        # WGAN-GP: critic difference + gradient penalty on random interpolates + drift of the real scores.
        rg = rng("Dmain/gp", total)
        t = rg.rand(*[1] * (real.ndim - 1)).to(real.dtype)
        mixed = torch.lerp(real.detach(), fake.detach().to(real.dtype), t).requires_grad_(True)
        mixed_logits = self.run_D(mixed, real_c, phase, rg, main=False, force_fp32=True)
        (grads,) = torch.autograd.grad(mixed_logits.sum(), mixed, create_graph=True)
        norms = grads.float().square().flatten(1).sum(1).add(1e-12).sqrt()
        gp = (norms - self.cfg.wgan_target).square() * (self.cfg.wgan_lambda / self.cfg.wgan_target**2)
        drift = real_logits.square() * self.cfg.wgan_epsilon
        loss = fake_logits - real_logits + gp[:, None] + drift
        (loss + mixed_logits * 0).mean().mul(gain).backward()
        stats["D_loss"] = loss.detach().mean()
        stats["GP"] = gp.detach().mean()
        return stats

    def pl_rows(self, total: int) -> int:
        """Global rows of the path-length batch: a global batch of its own (split across ranks like the
        full one), so the regularizer sees the same samples whatever the number of processes."""
        world = self.world_size
        return max(total // max(self.cfg.pl_batch_shrink, 1) // world, 1) * world

    def path_lengths(self, sample_c: LabelSampler, phase: Phase, rng: RandomFactory,
                     total: int) -> tuple[torch.Tensor, torch.Tensor]:
        """|J_w^T y| per sample (float32 throughout) and the image it came from (for the graph)."""
        pl_total = self.pl_rows(total)
        r = rng("Greg", pl_total)
        img, ws = self.run_G(r.randn(self.G.z_dim), sample_c("Greg/c", pl_total), phase, r, main=False,
                             force_fp32=True)
        # y ~ N(0, I) / sqrt(pixels or voxels): the expected |J^T y| does not grow with the output size
        noise = r.randn(*img.shape[1:]).to(img.dtype) / math.sqrt(math.prod(img.shape[2:]))
        (grads,) = torch.autograd.grad((img.float() * noise).sum(), ws, create_graph=True)
        return grads.float().square().sum(2).mean(1).sqrt(), img

    def _path_length(self, sample_c: LabelSampler, phase: Phase, rng: RandomFactory, total: int,
                     gain: float) -> dict[str, torch.Tensor]:
        lengths, img = self.path_lengths(sample_c, phase, rng, total)
        batch_mean = self.reduce_mean(lengths.detach().mean())
        self._pl_batch_means.append(batch_mean)
        pl_mean = self.pl_mean.lerp(batch_mean, self.cfg.pl_decay)  # the tracked mean itself moves in commit()
        penalty = (lengths - pl_mean).square()
        (img.flatten(1)[:, 0].float() * 0 + penalty * self.cfg.pl_weight).mean().mul(gain).backward()
        return {"path_length": penalty.detach().mean(), "pl_mean": pl_mean.detach().clone()}

    def discard(self) -> None:
        """Forget this phase's pending path-length statistics (the loop found the step non-finite)."""
        self._pl_batch_means.clear()

    def commit(self) -> None:
        """The step was finite on every rank: move the path-length mean toward this phase's batch mean."""
        if self._pl_batch_means:
            batch_mean = torch.stack(self._pl_batch_means).mean()
            self.pl_mean.copy_(self.pl_mean.lerp(batch_mean, self.cfg.pl_decay).detach())
        self._pl_batch_means.clear()


def pair_order(n: int, groups: list[int | None]) -> torch.Tensor | None:
    """Row order of cat([a, b]) (n rows each) in which every minibatch-stddev group of a 2n-row pass holds
    rows of one batch only, the same rows a pass over that batch alone would group; None when no order
    does (a group of the whole batch, or sizes for which 2n rows would form other groups)."""
    if not groups:
        return torch.arange(2 * n)  # D has no minibatch stddev: rows are independent
    size = groups[0]
    if len(set(groups)) != 1 or size is None or mbstd_group_size(n, size) != mbstd_group_size(2 * n, size):
        return None
    g = mbstd_group_size(n, size)  # MinibatchStd: row k * (rows / g) + m is member k of group m
    return torch.arange(2 * n).reshape(2, g, n // g).transpose(0, 1).reshape(-1)


def score_pair(D: Any, a: torch.Tensor, a_c: torch.Tensor | None, b: torch.Tensor, b_c: torch.Tensor | None,
               groups: list[int | None], **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """D(a) and D(b) from one pass over both batches: the same logits and gradients as `score_separately`
    (tests/test_loss_pairing.py), with half the per-op overhead, which dominates D at the CPU demo's size."""
    n = a.shape[0]
    order = pair_order(n, groups) if b.shape[0] == n and (a_c is None) == (b_c is None) else None
    if order is None:
        return score_separately(D, a, a_c, b, b_c, groups, **kwargs)
    order = order.to(a.device)
    fmt = torch.channels_last if a.ndim == 4 and a.is_contiguous(memory_format=torch.channels_last) else None
    x = torch.cat([a, b.to(a.dtype)]).index_select(0, order)
    x = x.contiguous(memory_format=fmt) if fmt is not None else x
    c = None if a_c is None else torch.cat([a_c, b_c]).index_select(0, order)
    logits = D(x, c, **kwargs)
    logits = logits.index_select(0, torch.argsort(order))
    return logits[:n], logits[n:]


def score_separately(D: Any, a: torch.Tensor, a_c: torch.Tensor | None, b: torch.Tensor, b_c: torch.Tensor | None,
                     groups: list[int | None], **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference twin of `score_pair`: one D pass per batch."""
    return D(a, a_c, **kwargs), D(b, b_c, **kwargs)


def _squared_norms(grads: torch.Tensor) -> torch.Tensor:
    """Per-sample squared gradient norm in float32, over every pixel (or voxel) and channel."""
    return grads.float().square().flatten(1).sum(1)


def _fp32(module: torch.nn.Module, force: bool) -> dict[str, Any]:
    """`force_fp32=True` when asked and the network has mixed precision (a plain module, e.g. a test
    double, runs in float32 anyway)."""
    return {"force_fp32": True} if force and "force_fp32" in inspect.signature(module.forward).parameters else {}
