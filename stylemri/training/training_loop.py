"""The training loop: phases per step, EMA, ADA, progressive growing, ticks, samples, checkpoints, resume.

One `Trainer` per process. Every random draw of a step (latents, generated labels, style mixing,
augmentation) comes from a generator derived from (seed, step), sized for the global batch and sliced
per rank; the data stream is a function of (seed, position). With the checkpoint holding weights,
optimizer moments, EMA, ADA state, counters and the global RNG state (used by the networks' noise),
N ticks straight and N/2 + resume + N/2 give identical weights on CPU.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from stylemri.version import __version__
from stylemri.config import RunConfig, to_dict
from stylemri.data import InfiniteLoader, MRIDataset
from stylemri.device import apply_threads
from stylemri.errors import UserError
from stylemri.io import save_grid, to_uint8
from stylemri.networks import build_discriminator, build_generator
from stylemri.networks.precision import set_precision
from stylemri.training import checkpoint as ckpt
from stylemri.training import distributed as ddp
from stylemri.training.augment import AdaController, build_augment
from stylemri.training.ema import ema_beta, update_ema
from stylemri.training.logs import RunLog
from stylemri.training.optim import lazy_adam, lazy_correction, load_optimizer_state
from stylemri.training.loss import StyleGANLoss, main_passes
from stylemri.training.precision import DTYPES, LossScaler, resolve_precision
from stylemri.training.rng import BatchRandom, derive_seed
from stylemri.training.run_dir import RunLayout, write_run_config
from stylemri.training.schedules import is_scheduled, scheduled
from stylemri.networks.sampling import generate_images, one_hot
from stylemri.networks.staged import at_stage
from stylemri.data.covariates import condition_vectors
from stylemri.training.samples import covariate_grid, grid_seeds, render_grid, save_progress_figure
from stylemri.training.schedule import Phase, Schedule, fade_reals, resets_optimizer
from stylemri.training.transfer import frozen_parameters, init_modules
from stylemri.volumes_io import mid_slices

MAX_RECOVERIES = 5  # NaN recoveries (reload + halve lr) before giving up


class TrainingDiverged(RuntimeError):
    """Losses stayed non-finite after repeated recoveries: the run cannot continue as configured."""


class Callbacks:
    """Hooks the CLI uses to show progress; the library itself never prints."""

    def start(self, info: dict[str, Any]) -> None: ...
    def step(self, progress: dict[str, Any]) -> None: ...
    def tick(self, stats: dict[str, Any]) -> None: ...
    def event(self, event: dict[str, Any]) -> None: ...


@dataclass
class TrainResult:
    run_dir: Path
    nimg: int
    tick: int
    interrupted: bool
    checkpoint: Path | None
    nonfinite_steps: int
    recoveries: int
    last_tick: dict[str, Any] | None = None
    samples: list[Path] = field(default_factory=list)

    @property
    def kimg(self) -> float:
        return self.nimg / 1000


class Trainer:
    """Owns the networks, optimizers and counters of one process of one run."""

    fused_adam = True  # False: torch's default Adam, the reference twin of the fused kernel (tests)

    def __init__(self, cfg: RunConfig, run_dir: str | Path, dataset: MRIDataset, *,
                 dist: ddp.DistInfo | None = None, callbacks: Callbacks | None = None,
                 resume_from: str | Path | None = None) -> None:
        self.cfg, self.t = cfg, cfg.train
        self.run_dir = Path(run_dir)
        self.ds = dataset
        self.dist = dist or ddp.DistInfo()
        self.device = self.dist.device
        self.cb = callbacks or Callbacks()
        self.c_dim = cfg.network.c_dim
        self.cov_dim = cfg.network.cov_dim
        self._setup_backends()
        self._build_networks()
        self._build_optimizers()
        self._build_loss()
        self._init_counters()
        self._check_metric_weights()
        self._start_or_resume(resume_from)
        self._reset_tick_stats()

    # ---- setup --------------------------------------------------------------------------------------
    def _setup_backends(self) -> None:
        """TF32 (off unless asked, as NVlabs), cuDNN autotuning, and the precision of the top resolutions."""
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = self.t.tf32
            torch.backends.cudnn.allow_tf32 = self.t.tf32
            torch.backends.cudnn.benchmark = True
        self.precision = resolve_precision(self.t.precision, self.device)
        self.scaler = LossScaler(self.precision == "fp16")
        self._threads_before = torch.get_num_threads()  # put back when `run` ends (in-process callers)
        self.threads = apply_threads(self.t.threads) if self.device.type == "cpu" else None

    def _build_networks(self) -> None:
        """G, D and G_ema with identical initial weights on every rank; top resolutions marked reduced."""
        torch.manual_seed(derive_seed(self.t.seed, "init"))
        self.G = build_generator(self.cfg.network).to(self.device).train()
        self.D = build_discriminator(self.cfg.network).to(self.device).train()
        if self.t.channels_last:
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
        self.reduced_resolutions = set_precision(self.G, DTYPES[self.precision], self.t.fp16_res)
        set_precision(self.D, DTYPES[self.precision], self.t.fp16_res)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.frozen_d = frozen_parameters(self.D, self.t.freeze_d)  # --freeze-d N (FreezeD): never trained
        self.init_reports: dict[str, Any] = {}
        torch.manual_seed(derive_seed(self.t.seed, "train", self.dist.rank))

    def _build_optimizers(self) -> None:
        self.g_reg = self.t.pl_weight > 0
        self.d_reg_lazy = self.t.loss in ("ns", "r3gan") and self.t.r1_gamma > 0
        self.mb_ratio_G = self.t.pl_interval / (self.t.pl_interval + 1) if self.g_reg else 1.0
        self.mb_ratio_D = self.t.r1_interval / (self.t.r1_interval + 1) if self.d_reg_lazy else 1.0
        self.opt_G = lazy_adam(self.G.parameters(), self.t.g_lr, self.t.betas, self.t.eps, self.mb_ratio_G,
                               fused=self.fused_adam)
        self.opt_D = lazy_adam(self.D.parameters(), self.t.d_lr, self.t.betas, self.t.eps, self.mb_ratio_D,
                               fused=self.fused_adam)
        self.scheduled = is_scheduled(self.t)  # R3GAN's moving lr / gamma / beta2 / augmentation p

    def _build_loss(self) -> None:
        """Augmentation, ADA controller, (optionally compiled) main passes and the loss."""
        self.dims = self.cfg.network.dims
        if self.dims == 3:
            from stylemri.training.augment3d import build_augment3d

            self.augment = build_augment3d(self.t.aug)
        else:
            self.augment = build_augment(self.t.aug, self.t.augpipe)
        if self.augment is not None:
            self.augment.to(self.device)
        p0 = 1.0 if self.t.aug == "diffaugment" else self.t.aug_p
        self.ada = AdaController(p=p0, target=self.t.ada_target, interval=self.t.ada_interval,
                                 ada_kimg=self.t.ada_kimg, adaptive=self.t.aug == "ada") if self.augment else None
        G_main, D_main = main_passes(self.G, self.D, self.t.compile)
        self.loss = StyleGANLoss(self.G, self.D, self.t, augment=self.augment, ada=self.ada,
                                 G_main=G_main, D_main=D_main,
                                 reduce_mean=lambda x: ddp.all_reduce_mean(x, self.dist),
                                 world_size=self.dist.world_size)

    def _init_counters(self) -> None:
        """Counters (saved in every checkpoint), the schedule, the fixed sample grid and the metric state."""
        self.schedule = Schedule(self.t, self.cfg.network.resolution)
        self.total_nimg = int(round(self.t.kimg * 1000))
        self.tick_nimg = max(int(round(self.t.tick_kimg * 1000)), 1)
        self.nimg = 0
        self.step_idx = 0
        self.tick = 0
        self.tick_start_nimg = 0
        self.nonfinite_total = 0
        self.nonfinite_streak = 0
        self.recoveries = 0
        self.lr_scale = 1.0
        self.resolution: int | None = None  # resolution of the current phase (progressive switches)
        self._last_phase: Phase | None = None
        self.loader: InfiniteLoader | None = None
        self.labels_np = np.asarray(self.ds.labels, dtype=np.int64)
        self.cond_np = condition_vectors(self.labels_np, self.c_dim, self.ds.covariates.vectors) if self.cov_dim else None
        self.grid_seeds, self.grid_classes, self.grid_cols = grid_seeds(self.c_dim, self.cfg.network.resolution)
        self.grid_covariates: torch.Tensor | None = None
        if self.cond_np is not None:  # one row per covariate setting of real samples, low to high
            self.grid_seeds, self.grid_classes, self.grid_covariates, self.grid_cols = covariate_grid(
                self.ds, self.labels_np if self.c_dim else None, self.cfg.network.resolution)
        self.ckpt = ckpt.CheckpointManager(RunLayout(self.run_dir).checkpoints, keep=self.t.keep_checkpoints)
        self.log: RunLog | None = None
        self.resumed_from: Path | None = None
        self._extractor: Any = None  # Inception, loaded at the first evaluation and kept
        self._metric_source: Any = None  # the real images' ImageSource (its features are cached on disk)
        self._metric_cache: Path | None = None

    def _check_metric_weights(self) -> None:
        if not (self.dist.is_main and self.t.metrics):
            return
        from stylemri.metrics.evaluate import INCEPTION_METRICS

        if any(m in INCEPTION_METRICS for m in self.t.metrics):
            from stylemri.metrics.inception import find_weights

            find_weights()  # no Inception weights: a clear error now, not at the first checkpoint

    def _start_or_resume(self, resume_from: str | Path | None) -> None:
        if resume_from is not None:
            self.resumed_from = Path(resume_from)
            self._load_state(self.resumed_from, keep_guard_counters=False)
        else:
            if self.t.init:  # --init: weights from another run or an imported model (training/transfer.py)
                self.init_reports = init_modules(self.t.init, self.t.init_sha256,
                                                 {"G": self.G, "D": self.D, "G_ema": self.G_ema}, self.cfg.network.z_dim)
            ddp.broadcast_modules([self.G, self.D, self.G_ema], self.dist)
        if self.dist.is_main:
            write_run_config(self.run_dir, self.cfg)  # every resolved value, as trained (updated on resume)
            self.ckpt.clean_temporaries()
            self.log = RunLog(self.run_dir, resume_kimg=self.nimg / 1000 if resume_from is not None else None)

    def _apply_lr(self) -> None:
        """Learning rates (with the NaN-recovery scale) and the scheduled values (training/schedules.py) at
        the current image count; betas keep the lazy-regularization correction."""
        now = scheduled(self.t, self.nimg)
        for opt, lr, ratio in ((self.opt_G, self.t.g_lr, self.mb_ratio_G), (self.opt_D, self.t.d_lr, self.mb_ratio_D)):
            corrected_lr, corrected_betas = lazy_correction(lr, (self.t.betas[0], now.beta2), ratio)
            for group in opt.param_groups:
                group["lr"] = corrected_lr * self.lr_scale * now.lr_mult
                if self.t.beta2_start is not None:
                    group["betas"] = corrected_betas
        self.loss.r1_gamma = now.r1_gamma
        if now.aug_p is not None and self.ada is not None:
            self.ada.p = now.aug_p

    def _rng(self, purpose: str, total: int, round_of: tuple[int, int] = (0, 1)) -> BatchRandom:
        local = total // self.dist.world_size
        return BatchRandom(derive_seed(self.t.seed, self.step_idx, purpose), total, offset=self.dist.rank * local,
                           count=local, device=self.device, round_of=round_of)

    def _sample_c(self, purpose: str, total: int, round_of: tuple[int, int] = (0, 1)) -> torch.Tensor | None:
        """Labels for generated images, drawn from the data's label distribution (this rank's rows); with
        covariates, whole condition vectors of real samples (class and covariates drawn together)."""
        if not self.c_dim and self.cond_np is None:
            return None
        local = total // self.dist.world_size
        rand = BatchRandom(derive_seed(self.t.seed, self.step_idx, purpose), total, offset=self.dist.rank * local,
                           count=local, round_of=round_of)  # on the CPU: indices into a NumPy array
        idx = rand.randint(0, len(self.labels_np)).numpy()
        if self.cond_np is not None:
            return torch.from_numpy(self.cond_np[idx]).to(self.device)
        return one_hot(torch.from_numpy(self.labels_np[idx]).to(self.device), self.c_dim)

    def rounds(self, phase: Phase) -> int:
        """Gradient-accumulation rounds per phase: per-process batch / --batch-gpu (1 without it)."""
        local = phase.batch // self.dist.world_size
        batch_gpu = self.t.batch_gpu
        return 1 if not batch_gpu or batch_gpu >= local else local // batch_gpu

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next real batch. Starting worker processes draws a seed from the global RNG (which also
        drives the networks' noise): isolated here, so a resumed run continues the same noise stream."""
        assert self.loader is not None
        if self.t.num_workers > 0:
            with torch.random.fork_rng(devices=[]):
                return next(self.loader)
        return next(self.loader)

    def _ensure_loader(self, phase: Phase) -> None:
        if self.loader is not None and self.loader.resolution == phase.resolution \
                and self.loader.global_batch == phase.batch and self.loader.position == self.nimg:
            return
        if self.loader is not None:
            self.loader.close()
        self.loader = InfiniteLoader(self.ds, phase.batch // self.dist.world_size, seed=self.t.seed, start=self.nimg,
                                     resolution=phase.resolution, rank=self.dist.rank,
                                     world_size=self.dist.world_size, num_workers=self.t.num_workers,
                                     device=self.device, conditions=self.cond_np)

    # ---- checkpoint state ---------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = ckpt.pack_modules({"G": self.G, "D": self.D, "G_ema": self.G_ema})
        g_t, g_meta = ckpt.pack_optimizer("opt_G", self.opt_G)
        d_t, d_meta = ckpt.pack_optimizer("opt_D", self.opt_D)
        tensors.update(g_t)
        tensors.update(d_t)
        tensors["loss.pl_mean"] = self.loss.pl_mean.detach().cpu().reshape(1)
        phase = self._last_phase or self.schedule.at(self.nimg)  # what G_ema was last trained at
        meta = {
            "version": __version__,
            "config": to_dict(self.cfg),
            "counters": {"nimg": self.nimg, "step": self.step_idx, "tick": self.tick,
                         "tick_start_nimg": self.tick_start_nimg, "nonfinite_total": self.nonfinite_total,
                         "recoveries": self.recoveries, "lr_scale": self.lr_scale, "resolution": self.resolution},
            "phase": {"resolution": phase.resolution, "stage": phase.stage, "alpha": phase.alpha},
            "loader_position": self.loader.position if self.loader is not None else self.nimg,
            "ada": self.ada.state_dict() if self.ada is not None else None,
            "loss_scaler": self.scaler.state_dict(),
            "rng": ckpt.rng_state(),
            "opt_G": g_meta,
            "opt_D": d_meta,
            "world_size": self.dist.world_size,
            "time": time.time(),
        }
        return tensors, meta

    def save_checkpoint(self) -> Path | None:
        """Rank 0 writes; everyone waits so a following read (recovery) sees the whole file."""
        path = None
        if self.dist.is_main:
            score = self._evaluate_metrics()
            tensors, meta = self.state()
            path = self.ckpt.save(self.nimg, tensors, meta, score=score)
            self._event({"event": "checkpoint", "kimg": self.nimg / 1000, "path": str(path)})
        ddp.barrier(self.dist)
        return path

    def _evaluate_metrics(self) -> float | None:
        """Training-time metrics of G_ema (rank 0, at checkpoints, at the final resolution); returns the
        score that ranks checkpoints (`checkpoint_score`: the first requested metric's lower-is-better scalar)."""
        phase = self._last_phase
        if not self.t.metrics or phase is None or phase.fading or phase.resolution != self.cfg.network.resolution:
            return None
        from stylemri.metrics.evaluate import checkpoint_score, evaluate, flat_scalars

        self._prepare_metrics()
        results = evaluate(self._metric_images(phase), self.t.metric_num, self._metric_source, self.t.metrics,
                           device=self.device, seed=self.t.seed, extractor=self._extractor,
                           cache_dir=self._metric_cache)
        found = results["metrics"]
        flat = flat_scalars(found)  # e.g. fid, kid (its mean), swd (its mean), precision, recall
        if self.log is not None:
            self.log.scalars("metrics", flat, self.nimg / 1000)
            self.log.metrics({"kimg": self.nimg / 1000, "num": self.t.metric_num, **flat, "details": found})
        self._event({"event": "metrics", "kimg": self.nimg / 1000, "num": self.t.metric_num, **flat,
                     "real_features_from_cache": results.get("real_features_from_cache"), "details": found})
        return checkpoint_score(self.t.metrics, flat)

    def _prepare_metrics(self) -> None:
        """Once per run: the real images' source and the Inception extractor (kept loaded). The real
        features go to the metrics cache at the first evaluation and are read back at every later one."""
        if self._metric_source is not None:
            return
        from stylemri.metrics.metric_utils import default_cache_dir, source_from_dataset

        self._metric_source = source_from_dataset(self.ds)
        self._metric_cache = default_cache_dir()
        from stylemri.metrics.evaluate import INCEPTION_METRICS

        if any(m in INCEPTION_METRICS for m in self.t.metrics):
            from stylemri.metrics.inception import load_inception

            self._extractor = load_inception(device=self.device)

    def _metric_images(self, phase: Phase) -> Callable[[int, int], np.ndarray]:
        """Images for the metrics as NVlabs makes them: random z and noise, labels drawn from the data's
        label distribution, through the one generation path (`networks.sampling.generate_images`); image i
        depends only on (seed, i), and the training RNG is left untouched."""
        G = at_stage(self.G_ema, phase.stage, phase.alpha)
        base = derive_seed(self.t.seed, "metrics")

        def generate(start: int, count: int) -> np.ndarray:
            seeds = [(base + i) % 2**32 for i in range(start, start + count)]
            classes, covariates = None, None
            if self.c_dim or self.cov_dim:  # image i's label: a draw from the data's labels by its own seed
                rows = [np.random.RandomState(s ^ 0x5BD1E995).randint(len(self.labels_np)) for s in seeds]
                classes = [int(self.labels_np[r]) for r in rows] if self.c_dim else None
                if self.cov_dim:
                    covariates = torch.from_numpy(self.ds.covariates.vectors[rows])
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):  # per-image noise seeds must not move training's RNG
                return to_uint8(generate_images(G, seeds, classes, noise="random", batch=16, covariates=covariates))

        return generate

    def _load_state(self, path: Path, *, keep_guard_counters: bool) -> None:
        tensors, meta = ckpt.read_checkpoint(path)
        if "counters" not in meta:
            raise UserError(f"{path}: an imported model ({(meta.get('imported') or {}).get('format', 'no training state')}), "
                            f"not a training checkpoint to resume; start a new run from it with --init")
        try:  # tensors of another architecture (a config.json edited, files copied between runs): one line
            for name, module in (("G", self.G), ("D", self.D), ("G_ema", self.G_ema)):
                module.load_state_dict(ckpt.unpack_module(name, tensors))
            load_optimizer_state(self.opt_G, ckpt.unpack_optimizer("opt_G", tensors, meta["opt_G"]))
            load_optimizer_state(self.opt_D, ckpt.unpack_optimizer("opt_D", tensors, meta["opt_D"]))
            self.loss.pl_mean.copy_(tensors["loss.pl_mean"].reshape([]).to(self.device))
            c = meta["counters"]
            self.nimg, self.step_idx, self.tick = int(c["nimg"]), int(c["step"]), int(c["tick"])
            self.tick_start_nimg = int(c["tick_start_nimg"])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
            first = lines[1] if len(lines) > 1 and lines[0].endswith(":") else lines[0]  # the first mismatch
            raise UserError(f"{path}: the checkpoint does not fit the run's configuration (network or optimizer "
                            f"of another architecture, or a damaged record): {first[:200]}") from None
        self.resolution = c.get("resolution")
        self._last_phase = self.schedule.at(max(self.nimg - 1, 0)) if self.nimg else None
        if not keep_guard_counters:
            self.nonfinite_total, self.recoveries = int(c["nonfinite_total"]), int(c["recoveries"])
            self.lr_scale = float(c["lr_scale"])
        self._apply_lr()
        if self.ada is not None and meta.get("ada"):
            self.ada.load_state_dict(meta["ada"], device=self.device)
        self.scaler.load_state_dict(meta.get("loss_scaler"))
        if self.dist.is_main:
            ckpt.set_rng_state(meta["rng"])
        else:  # other ranks' noise streams: derived, not saved
            torch.manual_seed(derive_seed(self.t.seed, "resume", self.nimg, self.dist.rank))
        if self.loader is not None:
            self.loader.close()
        self.loader = None
        self.nonfinite_streak = 0

    # ---- the loop -----------------------------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool] | None = None) -> TrainResult:
        """Train until `kimg` images have been shown or `should_stop()` turns True (checkpointing first)."""
        try:
            return self._run(should_stop)
        finally:
            torch.set_num_threads(self._threads_before)

    def _run(self, should_stop: Callable[[], bool] | None) -> TrainResult:
        self.cb.start(self._start_info())
        samples: list[Path] = []
        if self.resumed_from is None:
            if self.dist.is_main:
                samples += self._write_reals()
                samples += self._write_samples(tag="init")
            self.save_checkpoint()
        else:
            self._event({"event": "resume", "kimg": self.nimg / 1000, "path": str(self.resumed_from)})
        interrupted = False
        last_ckpt: Path | None = (self.resumed_from or self.ckpt.latest()) if self.dist.is_main else None
        self._tick_timer = time.perf_counter()
        while self.nimg < self.total_nimg:
            self._train_step()
            stop = ddp.any_rank(bool(should_stop and should_stop()), self.dist)
            done = self.nimg >= self.total_nimg
            if done or stop or self.nimg >= self.tick_start_nimg + self.tick_nimg:
                path, new_samples = self._end_tick(final=done or stop)
                samples += new_samples
                last_ckpt = path or last_ckpt
            if stop:
                interrupted = True
                break
        if self.dist.is_main and not interrupted:
            self._progress_figure(final=True)
        if self.log is not None:
            self.log.close()
        if self.loader is not None:
            self.loader.close()
        return TrainResult(self.run_dir, self.nimg, self.tick, interrupted, last_ckpt, self.nonfinite_total,
                           self.recoveries, self._last_tick, samples)

    def _phases(self) -> list[tuple[str, torch.nn.Module, torch.optim.Optimizer, int]]:
        phases = [("Gmain", self.G, self.opt_G, 1)]
        if self.g_reg and self.step_idx % self.t.pl_interval == 0:
            phases.append(("Greg", self.G, self.opt_G, self.t.pl_interval))
        phases.append(("Dmain", self.D, self.opt_D, 1))
        if self.d_reg_lazy and self.step_idx % self.t.r1_interval == 0:
            phases.append(("Dreg", self.D, self.opt_D, self.t.r1_interval))
        return phases

    def _train_step(self) -> None:
        if self.scheduled:
            self._apply_lr()
        phase = self.schedule.at(self.nimg)
        if phase.resolution != self.resolution:
            self._switch_resolution(phase)
        if self.t.reset_opt_on_grow and resets_optimizer(self._last_phase, phase):
            self.opt_G.state.clear()  # fresh Adam moments at the start and the end of each fade (TF StyleGAN)
            self.opt_D.state.clear()
        self._last_phase = phase
        self._ensure_loader(phase)
        real, labels = self._next_batch()
        real = fade_reals(real, phase)
        if self.t.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        real_c = None  # unconditional: no labels in the training passes, as `_sample_c` gives none
        if self.cond_np is not None:
            real_c = labels.to(self.device)
        elif self.c_dim:
            real_c = one_hot(labels.to(self.device), self.c_dim)
        step_stats: dict[str, float] = {}
        skipped = False
        for name, module, opt, gain in self._phases():
            outcome = self._run_phase(name, module, opt, gain, real, real_c, phase)
            if outcome is None:
                skipped = True
                break
            step_stats.update(outcome)
        self.G.requires_grad_(True)
        self.D.requires_grad_(True)
        self._finish_step(phase, step_stats, skipped)

    def _run_phase(self, name: str, module: torch.nn.Module, opt: torch.optim.Optimizer, gain: int,
                   real: torch.Tensor, real_c: torch.Tensor | None, phase: Phase) -> dict[str, float] | None:
        """Gradients of one phase (over its rounds), one all-reduce, the optimizer step when every value is
        finite. Returns the phase's statistics, or None when the step must be skipped as non-finite."""
        other = self.D if module is self.G else self.G
        module.requires_grad_(True)
        other.requires_grad_(False)
        for p in self.frozen_d if module is self.D else ():
            p.requires_grad_(False)
        opt.zero_grad(set_to_none=True)
        stats, w_mean, real_logits = self.accumulate_phase(name, real, real_c, phase, gain)
        values = torch.stack([v.float().reshape([]) for v in stats.values()])
        n = len(values)
        if w_mean is not None:  # the batch's mean w travels with the losses: one all-reduce
            values = torch.cat([values, w_mean.to(values.device)])
        params = [p for p in module.parameters() if p.grad is not None]
        self.scaler.unscale(params)
        ok, reduced = ddp.reduce_gradients(params, self.dist, extra=values)
        assert reduced is not None
        if not ok:
            opt.zero_grad(set_to_none=True)
            self.loss.discard()
            if self.scaler.enabled and bool(torch.isfinite(reduced).all()):
                self.scaler.update(False)  # fp16 gradient overflow: lower the scale, skip only this update
                self._tick_sums["overflow"] = self._tick_sums.get("overflow", 0.0) + 1
                return {}
            return None
        opt.step()
        self.scaler.update(True)
        self.loss.commit()
        if w_mean is not None:
            self._update_w_avg(reduced[n:])
        if real_logits is not None and self.ada is not None:
            self.ada.accumulate(real_logits)
        return dict(zip(stats, reduced[:n].tolist()))

    def accumulate_phase(self, name: str, real: torch.Tensor, real_c: torch.Tensor | None, phase: Phase,
                         gain: int) -> tuple[dict[str, torch.Tensor], torch.Tensor | None, torch.Tensor | None]:
        """Backward passes of phase `name` over its rounds (--batch-gpu): round r takes every R-th row of
        this process's batch and of every random draw, so the minibatch-stddev groups and the summed
        gradient equal one pass over the whole batch. Returns (mean stats, Gmain's mean w, D's real logits)."""
        rounds = self.rounds(phase)
        if name == "Greg" and (self.loss.pl_rows(phase.batch) // self.dist.world_size) % rounds:
            rounds = 1  # a path-length batch too small to split: one round (it is the smaller pass)
        sums: dict[str, torch.Tensor] = {}
        w_means, logits = [], []
        scale = self.scaler.scale / rounds
        for r in range(rounds):
            rows = slice(r, None, rounds)
            stats = self.loss.accumulate_gradients(
                name, real=real[rows], real_c=None if real_c is None else real_c[rows],
                sample_c=lambda purpose, total, r=r: self._sample_c(purpose, total, (r, rounds)), phase=phase,
                rng=lambda purpose, total, r=r: self._rng(purpose, total, (r, rounds)), total=phase.batch,
                gain=gain * scale)
            for key, value in stats.items():
                sums[key] = sums.get(key, 0) + value.detach().float().reshape([]) / rounds
            if name == "Gmain" and self.loss.gmain_w_mean is not None:
                w_means.append(self.loss.gmain_w_mean)
            if name == "Dmain" and self.loss.last_real_logits is not None:
                logits.append(self.loss.last_real_logits)
        w_mean = torch.stack(w_means).mean(0) if w_means else None
        return sums, w_mean, (torch.cat(logits) if logits else None)

    def _finish_step(self, phase: Phase, step_stats: dict[str, float], skipped: bool) -> None:
        """EMA, tick statistics, ADA, counters; after `nan_patience` bad steps in a row, recovery."""
        if skipped:
            self.nonfinite_total += 1
            self.nonfinite_streak += 1
            self._tick_sums["nonfinite"] = self._tick_sums.get("nonfinite", 0.0) + 1
        else:
            self.nonfinite_streak = 0
            update_ema(self.G_ema, self.G, ema_beta(phase.batch, self.t.ema_kimg, self.t.ema_rampup, self.nimg))
            for key, value in step_stats.items():
                self._tick_sums[key] = self._tick_sums.get(key, 0.0) + value
                self._tick_counts[key] = self._tick_counts.get(key, 0) + 1
        if self.ada is not None:
            self.ada.step(phase.batch, all_reduce=lambda x: ddp.all_reduce_sum(x, self.dist))
            for event in self.ada.pop_events():  # p passed 0.8: logged as a warning
                self._event({**event, "kimg": self.nimg / 1000})
        self.nimg += phase.batch
        self.step_idx += 1
        self._tick_images += phase.batch
        self.cb.step({"nimg": self.nimg, "total_nimg": self.total_nimg, "kimg": self.nimg / 1000,
                      "phase": phase.label, "resolution": phase.resolution, "alpha": phase.alpha,
                      "ada_p": self.ada.p if self.ada else 0.0, "skipped": skipped, **step_stats})
        if skipped and self.nonfinite_streak >= self.t.nan_patience:
            self._recover()

    @torch.no_grad()
    def _update_w_avg(self, w_mean: torch.Tensor) -> None:
        """w_avg <- lerp(batch mean of w, w_avg, beta): the truncation centre, tracked as NVlabs does."""
        w_avg = self.G.mapping.w_avg
        beta = getattr(self.G.mapping, "w_avg_beta", 0.995)
        w_avg.copy_(torch.lerp(w_mean.to(w_avg.dtype), w_avg, beta))

    def _recover(self) -> None:
        """Reload the last good checkpoint and halve the learning rates (after `nan_patience` bad steps)."""
        self.recoveries += 1
        at_kimg = self.nimg / 1000
        if self.recoveries > MAX_RECOVERIES:
            raise TrainingDiverged(f"losses stayed non-finite after {MAX_RECOVERIES} reloads with halved learning "
                                   f"rates (at {at_kimg:.3f} kimg); lower --g-lr/--d-lr or check the data")
        ddp.barrier(self.dist)
        path = self.ckpt.latest()
        if path is None:
            raise TrainingDiverged(f"non-finite losses at {at_kimg:.3f} kimg and no checkpoint to return to")
        self.lr_scale *= 0.5
        self._load_state(path, keep_guard_counters=True)
        self._reset_tick_stats()
        self._event({"event": "nan_recovery", "kimg": self.nimg / 1000, "at_kimg": at_kimg, "path": str(path),
                     "lr_scale": self.lr_scale, "g_lr": self.opt_G.param_groups[0]["lr"],
                     "d_lr": self.opt_D.param_groups[0]["lr"], "recoveries": self.recoveries,
                     "nonfinite_total": self.nonfinite_total})

    def _switch_resolution(self, phase: Phase) -> None:
        previous = self.resolution
        if previous is not None and self.dist.is_main:
            self._write_progress_strip(previous)
        self.resolution = phase.resolution
        if previous is not None:
            self._event({"event": "resolution", "kimg": self.nimg / 1000, "resolution": phase.resolution,
                         "previous": previous, "batch": phase.batch})

    # ---- ticks, samples, logs -----------------------------------------------------------------------
    def _reset_tick_stats(self) -> None:
        self._tick_sums: dict[str, float] = {}
        self._tick_counts: dict[str, int] = {}
        self._tick_images = 0
        self._tick_timer = time.perf_counter()
        self._last_tick: dict[str, Any] | None = getattr(self, "_last_tick", None)

    def _end_tick(self, final: bool) -> tuple[Path | None, list[Path]]:
        elapsed = time.perf_counter() - self._tick_timer
        self.tick += 1
        phase = self.schedule.at(max(self.nimg - 1, 0))
        mean = {k: self._tick_sums[k] / self._tick_counts[k] for k in self._tick_counts}
        stats = {
            "tick": self.tick, "kimg": self.nimg / 1000, "resolution": phase.resolution, "alpha": phase.alpha,
            "batch": phase.batch, "G_loss": mean.get("G_loss"), "D_loss": mean.get("D_loss"), "R1": mean.get("R1"),
            "R2": mean.get("R2"), "path_length": mean.get("path_length"), "D_real_sign": mean.get("D_real_sign"),
            "ada_p": self.ada.p if self.ada else 0.0, "img_per_s": self._tick_images / max(elapsed, 1e-9),
            "sec_per_tick": elapsed, "lr_G": self.opt_G.param_groups[0]["lr"], "lr_D": self.opt_D.param_groups[0]["lr"],
            "nonfinite": int(self._tick_sums.get("nonfinite", 0)), "wall_s": time.time(),
            "phase": phase.label, "total_kimg": self.total_nimg / 1000,
        }
        self._last_tick = stats
        samples: list[Path] = []
        path = None
        if self.log is not None:
            self.log.tick(stats)
        self.cb.tick(stats)
        if self.dist.is_main and (self.tick % self.t.sample_ticks == 0 or final):
            samples += self._write_samples(tag=f"{self.nimg:010d}")
            if self.log is not None:
                self.log.plot(self.schedule.switches_kimg())
        metrics_due = self._metrics_due(self.tick_start_nimg)
        self.tick_start_nimg = self.nimg  # before the checkpoint: a resumed run's next tick starts here
        if self.tick % self.t.checkpoint_ticks == 0 or final or metrics_due:
            path = self.save_checkpoint()
        self._reset_tick_stats()
        return path, samples

    def _metrics_due(self, tick_start_nimg: int) -> bool:
        """--metrics-every: this tick crossed a multiple of N kimg."""
        every = self.t.metrics_every * 1000
        return bool(self.t.metrics) and every > 0 and self.nimg // every > tick_start_nimg // every

    def _event(self, event: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.log_event(event)
        self.cb.event(event)

    def _start_info(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "device": str(self.device), "precision": self.precision,
                "world_size": self.dist.world_size, "images": len(self.ds), "classes": list(self.ds.class_names),
                "G_params": sum(p.numel() for p in self.G.parameters()),
                "D_params": sum(p.numel() for p in self.D.parameters()), "kimg": self.nimg / 1000,
                "total_kimg": self.total_nimg / 1000, "resumed_from": str(self.resumed_from or "") or None,
                "arch": self.cfg.network.arch, "resolution": self.cfg.network.resolution, "batch": self.t.batch,
                "threads": self.threads.threads if self.threads else None,
                "threads_reason": self.threads.reason if self.threads else None,
                "init": self.t.init, "init_transfer": {k: r.summary() for k, r in self.init_reports.items()},
                "frozen_d_params": sum(p.numel() for p in self.frozen_d)}

    def _write_reals(self) -> list[Path]:
        def spread(indices: np.ndarray, n: int) -> np.ndarray:  # evenly through the data (e.g. all slice levels)
            return indices[np.linspace(0, len(indices) - 1, min(n, len(indices))).round().astype(int)]

        if self.c_dim:  # one row of real examples per class, like the fake grids
            rows = np.concatenate([spread(np.flatnonzero(self.labels_np == k), self.grid_cols)
                                   for k in range(self.c_dim)])
        else:
            rows = spread(np.arange(len(self.ds)), len(self.grid_seeds))
        images, _ = self.ds.batch(rows)
        images = mid_slices(images)  # volumes: axial | coronal | sagittal mid-slices
        return [save_grid(RunLayout(self.run_dir).reals_grid, images, ncols=self.grid_cols)]

    def _write_samples(self, tag: str) -> list[Path]:
        phase = self.schedule.at(max(self.nimg - 1, 0))  # volumes: axial | coronal | sagittal mid-slices
        images = mid_slices(render_grid(self.G_ema, self.grid_seeds, self.grid_classes, phase.stage, phase.alpha,
                                             covariates=self.grid_covariates))
        path = save_grid(RunLayout(self.run_dir).fakes_grid(tag), images, ncols=self.grid_cols)
        if self.log is not None:
            self.log.images("samples/fakes", images, self.nimg / 1000, ncols=self.grid_cols)
        self._event({"event": "samples", "kimg": self.nimg / 1000, "path": str(path)})
        return [path]

    def _write_progress_strip(self, resolution: int) -> None:
        if not self.t.progressive:
            return
        stage = int(math.log2(resolution)) - 2
        n = min(8, len(self.grid_seeds))
        images = render_grid(self.G_ema, self.grid_seeds[:n], self.grid_classes[:n], stage, 1.0,
                             covariates=None if self.grid_covariates is None else self.grid_covariates[:n])
        save_grid(RunLayout(self.run_dir).progress_strip(resolution), images, ncols=n)
        self._progress_figure(final=False)

    def _progress_figure(self, final: bool) -> None:
        """The progress figure: the same latents at the end of every resolution."""
        if not self.t.progressive:
            return
        if final and self.resolution is not None:
            stage = int(math.log2(self.resolution)) - 2
            n = min(8, len(self.grid_seeds))
            images = render_grid(self.G_ema, self.grid_seeds[:n], self.grid_classes[:n], stage,
                                 self.schedule.at(max(self.nimg - 1, 0)).alpha,
                                 covariates=None if self.grid_covariates is None else self.grid_covariates[:n])
            save_grid(RunLayout(self.run_dir).progress_strip(self.resolution), images, ncols=n)
        save_progress_figure(RunLayout(self.run_dir))
