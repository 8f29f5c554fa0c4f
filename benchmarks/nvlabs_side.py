"""The NVlabs side of `bench_vs_nvlabs.py`: NVlabs/stylegan2-ada-pytorch's own networks, loss and augment
pipe, driven by a minimal loop that mirrors its `training/training_loop.py` phase by phase.

Nothing of NVlabs' code is vendored here: `import_nvlabs(PATH)` puts the user's checkout on sys.path and
imports `training.networks`, `training.loss`, `training.augment` and `torch_utils` from it. The loop
written here is what the benchmark needs of NVlabs' `training_loop()` and no more (no pickles, no
metrics, no DDP, no CUDA events): real batches from `misc.InfiniteSampler` over a `MemoryDataset` with
NVlabs' `Dataset` interface, generated labels drawn from the data's labels, phases `Gboth` (no path
length: NVlabs' `G_reg_interval=None` case, so G's Adam is not lazy-corrected, as in stylemri when
`--pl-weight 0`), `Dmain` and `Dreg` (lazy R1 every `r1_interval` steps, lr and betas corrected by
interval / (interval + 1)), gradients' non-finite values replaced as NVlabs does, EMA with ramp-up after
every step, and the ADA p update every `ada_interval` steps from `Loss/signs/real`.
"""

from __future__ import annotations

import copy
import importlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import numpy as np
import torch

from stylemri.errors import UserError

REQUIRED_FILES = ("training/networks.py", "training/loss.py", "training/augment.py", "torch_utils/misc.py",
                  "torch_utils/training_stats.py", "torch_utils/ops/bias_act.py", "dnnlib/__init__.py")
# NVlabs' train.py `augpipe_specs`: the probability multiplier of each operation in the named pipe.
AUGPIPES = {
    "bgc": dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1,
                lumaflip=1, hue=1, saturation=1),
}


@dataclass(frozen=True)
class Recipe:
    """The training config both sides use (the Makefile's DEMO_TRAIN values; NVlabs' names in comments)."""

    resolution: int = 32
    batch: int = 16  # batch_size = batch_gpu (one process, one round)
    channel_base: int = 1024  # G/D channel_base
    channel_max: int = 64
    z_dim: int = 64
    w_dim: int = 64
    map_layers: int = 2  # G mapping_kwargs.num_layers (D's label mapping keeps NVlabs' default, as stylemri)
    mbstd_group: int = 4  # D epilogue_kwargs.mbstd_group_size
    lr: float = 0.0025  # G_opt_kwargs.lr = D_opt_kwargs.lr
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float = 0.1
    r1_interval: int = 16  # D_reg_interval
    style_mixing: float = 0.9  # style_mixing_prob
    ema_kimg: float = 5.0
    ema_rampup: float = 0.05
    augpipe: str = "bgc"
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 50.0
    seed: int = 0


# ------------------------------------------------------------------------------------------------ the checkout


def check_checkout(path: Path) -> Path:
    """The checkout must hold NVlabs' training code; a wrong PATH is one line, not an ImportError later."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise UserError(f"--nvlabs {path}: not a folder; expected a checkout of NVlabs/stylegan2-ada-pytorch")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise UserError(f"--nvlabs {path}: {missing[0]} is missing; expected a checkout of "
                        "NVlabs/stylegan2-ada-pytorch (git clone https://github.com/NVlabs/stylegan2-ada-pytorch)")
    return path.resolve()


def import_nvlabs(path: Path) -> SimpleNamespace:
    """Import NVlabs' modules from the checkout (and only from it: a stale `training` package elsewhere on
    sys.path would silently be a different code base)."""
    root = check_checkout(path)
    for name in [m for m in sys.modules if m.split(".")[0] in ("training", "torch_utils", "dnnlib")]:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        mods = {short: importlib.import_module(full) for short, full in (
            ("networks", "training.networks"), ("loss", "training.loss"), ("augment", "training.augment"),
            ("misc", "torch_utils.misc"), ("stats", "torch_utils.training_stats"),
            ("conv2d_gradfix", "torch_utils.ops.conv2d_gradfix"),
            ("grid_sample_gradfix", "torch_utils.ops.grid_sample_gradfix"),
            ("bias_act", "torch_utils.ops.bias_act"), ("upfirdn2d", "torch_utils.ops.upfirdn2d"))}
    except Exception as exc:  # noqa: BLE001 - any failure of the user's checkout is one line
        raise UserError(f"--nvlabs {root}: importing NVlabs' code failed ({type(exc).__name__}: {exc}); "
                        "expected an unmodified NVlabs/stylegan2-ada-pytorch checkout") from None
    for short, mod in mods.items():
        if not str(Path(mod.__file__).resolve()).startswith(str(root)):
            raise UserError(f"--nvlabs {root}: module {short} was imported from {mod.__file__}, not the checkout")
    return SimpleNamespace(root=root, **mods)


def _sampler_accepts_dataset() -> bool:
    """Does `super().__init__(dataset)` from a Sampler subclass work, as NVlabs' InfiniteSampler does it?"""
    class Probe(torch.utils.data.Sampler):
        def __init__(self, data: Any) -> None:
            super().__init__(data)

        def __iter__(self) -> Iterator[int]:
            return iter(())

    try:
        Probe([0])
        return True
    except TypeError:
        return False


def apply_shims(nv: SimpleNamespace, device: torch.device) -> list[str]:
    """Make NVlabs' unmodified code run on this torch; returns one line per fact or shim, to be printed.

    - `torch_utils.misc.InfiniteSampler.__init__` calls `Sampler.__init__(dataset)`; torch >= 2.2 dropped
      that argument (a TypeError). Shim: `torch.utils.data.Sampler.__init__` accepts and ignores it again,
      in this process only (what it did in torch 1.x: nothing).
    - NVlabs' training_loop sets `conv2d_gradfix.enabled` and `grid_sample_gradfix.enabled`; both accept only
      torch 1.7-1.9 and otherwise fall back to torch.nn.functional with a warning, so they stay off here:
      the same functions, no warning. (Double backward through grid_sample, for R1 on augmented reals,
      works in torch 2.x without the gradfix.)
    - bias_act / upfirdn2d build a CUDA plugin (ninja) only for CUDA tensors; on the CPU they run their
      reference implementations.
    """
    notes = []
    if not _sampler_accepts_dataset():
        def _sampler_init(self: Any, data_source: Any = None) -> None:  # torch 1.x's Sampler.__init__
            pass

        torch.utils.data.Sampler.__init__ = _sampler_init  # type: ignore[method-assign]
        notes.append(f"shim: torch.utils.data.Sampler.__init__ accepts NVlabs' dataset argument again "
                     f"(torch {torch.__version__} dropped it; torch_utils.misc.InfiniteSampler passes it)")
    nv.conv2d_gradfix.enabled = False
    nv.grid_sample_gradfix.enabled = False
    ops = ("reference (PyTorch) implementations" if device.type != "cuda"
           else "CUDA plugins if they build, else reference")
    notes += [f"bias_act / upfirdn2d: {ops} on {device.type} (torch {torch.__version__})",
              "conv2d_gradfix / grid_sample_gradfix: left disabled (they accept torch 1.7-1.9 only; NVlabs' own "
              "fallback, torch.nn.functional.conv2d / grid_sample, is used)"]
    if len(notes) == 2:
        notes.append("shims applied: none")
    return notes


# ------------------------------------------------------------------------------------------------ the data


class MemoryDataset(torch.utils.data.Dataset):
    """NVlabs' `training.dataset.Dataset` interface over arrays already in memory: images uint8 (N, C, R, R)
    and int labels, so NVlabs' loop sees exactly the pixels stylemri's loader serves (no zip, no PNG)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None, name: str = "memory") -> None:
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[2] != images.shape[3]:
            raise ValueError(f"images: expected uint8 (N, C, R, R), got {images.dtype} {images.shape}")
        self._name = name
        self._images = images
        self._labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        if self._labels is not None and (self._labels.shape != (len(images),) or self._labels.min() < 0):
            raise ValueError(f"labels: expected {len(images)} non-negative ints, got shape {self._labels.shape}")
        self._label_dim = 0 if self._labels is None else int(self._labels.max()) + 1

    @classmethod
    def from_stylemri(cls, ds: Any, name: str = "mni152") -> "MemoryDataset":
        """All of a stylemri `MRIDataset` at its resolution, unflipped (flips are the loader's concern)."""
        pixels, labels = ds.batch_uint8(np.arange(len(ds)))
        return cls(pixels.numpy(), labels.numpy() if ds.num_classes > 1 else None, name)

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        return self._images[idx].copy(), self.get_label(idx)

    def get_label(self, idx: int) -> np.ndarray:
        onehot = np.zeros([self._label_dim], dtype=np.float32)
        if self._labels is not None:
            onehot[self._labels[idx]] = 1
        return onehot

    def get_details(self, idx: int) -> SimpleNamespace:
        raw = self._labels[idx] if self._labels is not None else np.zeros([0], np.float32)
        return SimpleNamespace(raw_idx=int(idx), xflip=False, raw_label=np.asarray(raw).copy())

    name = property(lambda self: self._name)
    image_shape = property(lambda self: list(self._images.shape[1:]))
    num_channels = property(lambda self: int(self._images.shape[1]))
    resolution = property(lambda self: int(self._images.shape[2]))
    label_shape = property(lambda self: [self._label_dim])
    label_dim = property(lambda self: self._label_dim)
    has_labels = property(lambda self: self._label_dim > 0)
    has_onehot_labels = property(lambda self: self._label_dim > 0)


# ------------------------------------------------------------------------------------------------ the loop


def network_kwargs(r: Recipe) -> tuple[dict[str, Any], dict[str, Any]]:
    """G and D kwargs as NVlabs' train.py builds them for this recipe with --fp32 (no fp16, no clamp)."""
    G = dict(z_dim=r.z_dim, w_dim=r.w_dim, mapping_kwargs=dict(num_layers=r.map_layers),
             synthesis_kwargs=dict(channel_base=r.channel_base, channel_max=r.channel_max, num_fp16_res=0,
                                   conv_clamp=None))
    D = dict(channel_base=r.channel_base, channel_max=r.channel_max, num_fp16_res=0, conv_clamp=None,
             block_kwargs={}, mapping_kwargs={}, epilogue_kwargs=dict(mbstd_group_size=r.mbstd_group))
    return G, D


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@dataclass
class Tick:
    nimg: int
    seconds: float  # training steps only (no snapshot, no evaluation)

    def img_per_s(self, prev_nimg: int) -> float:
        return (self.nimg - prev_nimg) / max(self.seconds, 1e-9)


class NvlabsTrainer:
    """NVlabs' G, D, G_ema, AugmentPipe and StyleGAN2Loss with training_loop.py's phases, on one device."""

    def __init__(self, nv: SimpleNamespace, data: MemoryDataset, recipe: Recipe, device: torch.device) -> None:
        self.nv, self.data, self.r, self.device = nv, data, recipe, device
        np.random.seed(recipe.seed)
        torch.manual_seed(recipe.seed)
        common = dict(c_dim=data.label_dim, img_resolution=data.resolution, img_channels=data.num_channels)
        g_kw, d_kw = network_kwargs(recipe)
        self.G = nv.networks.Generator(**g_kw, **common).train().requires_grad_(False).to(device)
        self.D = nv.networks.Discriminator(**d_kw, **common).train().requires_grad_(False).to(device)
        self.G_ema = copy.deepcopy(self.G).eval()
        self.augment_pipe = nv.augment.AugmentPipe(**AUGPIPES[recipe.augpipe]).train().requires_grad_(False).to(device)
        self.augment_pipe.p.copy_(torch.as_tensor(0.0))
        self.ada_stats = nv.stats.Collector(regex="Loss/signs/real")
        self.loss = nv.loss.StyleGAN2Loss(device=device, G_mapping=self.G.mapping, G_synthesis=self.G.synthesis,
                                          D=self.D, augment_pipe=self.augment_pipe,
                                          style_mixing_prob=recipe.style_mixing, r1_gamma=recipe.r1_gamma,
                                          pl_weight=0)
        self.phases = self._phases()
        sampler = nv.misc.InfiniteSampler(dataset=data, seed=recipe.seed)
        self.batches: Iterator[Any] = iter(torch.utils.data.DataLoader(dataset=data, sampler=sampler,
                                                                       batch_size=recipe.batch))
        self.cur_nimg = 0
        self.batch_idx = 0

    def _phases(self) -> list[SimpleNamespace]:
        """Gboth (interval 1, plain Adam), Dmain + Dreg sharing one lazily corrected Adam."""
        r = self.r
        opt_G = torch.optim.Adam(self.G.parameters(), lr=r.lr, betas=r.betas, eps=1e-8)
        mb = r.r1_interval / (r.r1_interval + 1)
        opt_D = torch.optim.Adam(self.D.parameters(), lr=r.lr * mb, betas=tuple(b**mb for b in r.betas), eps=1e-8)
        return [SimpleNamespace(name="Gboth", module=self.G, opt=opt_G, interval=1),
                SimpleNamespace(name="Dmain", module=self.D, opt=opt_D, interval=1),
                SimpleNamespace(name="Dreg", module=self.D, opt=opt_D, interval=r.r1_interval)]

    def step(self) -> None:
        """One batch: every due phase, then EMA, then (every ada_interval batches) the ADA p update."""
        r, dev = self.r, self.device
        real_img, real_c = next(self.batches)
        real_img = real_img.to(dev).to(torch.float32) / 127.5 - 1
        real_c = real_c.to(dev)
        all_z = torch.randn([len(self.phases) * r.batch, self.G.z_dim], device=dev).split(r.batch)
        all_c = [self.data.get_label(np.random.randint(len(self.data))) for _ in range(len(self.phases) * r.batch)]
        all_c = torch.from_numpy(np.stack(all_c)).to(dev).split(r.batch)
        for phase, gen_z, gen_c in zip(self.phases, all_z, all_c):
            if self.batch_idx % phase.interval != 0:
                continue
            phase.opt.zero_grad(set_to_none=True)
            phase.module.requires_grad_(True)
            self.loss.accumulate_gradients(phase=phase.name, real_img=real_img, real_c=real_c, gen_z=gen_z,
                                           gen_c=gen_c, sync=True, gain=phase.interval)
            phase.module.requires_grad_(False)
            for param in phase.module.parameters():
                if param.grad is not None:
                    self.nv.misc.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)
            phase.opt.step()
        self._update_ema()
        self.cur_nimg += r.batch
        self.batch_idx += 1
        if self.batch_idx % r.ada_interval == 0:
            self._update_ada()

    @torch.no_grad()
    def _update_ema(self) -> None:
        ema_nimg = self.r.ema_kimg * 1000
        if self.r.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.cur_nimg * self.r.ema_rampup)
        beta = 0.5 ** (self.r.batch / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.copy_(p.lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    def _update_ada(self) -> None:
        self.ada_stats.update()
        r = self.r
        sign = np.sign(self.ada_stats["Loss/signs/real"] - r.ada_target)
        adjust = sign * (r.batch * r.ada_interval) / (r.ada_kimg * 1000)
        p = self.augment_pipe.p
        p.copy_((p + adjust).max(self.nv.misc.constant(0, device=self.device)))

    @property
    def ada_p(self) -> float:
        return float(self.augment_pipe.p.cpu())

    def train(self, tick_nimg: int, total_nimg: int, on_tick: Callable[[Tick], None]) -> None:
        """Train to `total_nimg`, calling `on_tick` after every `tick_nimg` images (timed steps only)."""
        while self.cur_nimg < total_nimg:
            t0 = time.perf_counter()
            end = min(self.cur_nimg + tick_nimg, total_nimg)
            while self.cur_nimg < end:
                self.step()
            on_tick(Tick(self.cur_nimg, time.perf_counter() - t0))

    def generate(self, G: torch.nn.Module, z: torch.Tensor, c: torch.Tensor, batch: int = 16) -> torch.Tensor:
        """Images in [-1, 1] from a snapshot of G_ema: psi 1, constant noise (as stylemri's evaluation)."""
        out = []
        with torch.no_grad():
            for zb, cb in zip(z.split(batch), c.split(batch)):
                out.append(G(zb.to(self.device), cb.to(self.device), truncation_psi=1, noise_mode="const").cpu())
        return torch.cat(out) if out else torch.zeros(0, self.data.num_channels, self.data.resolution,
                                                      self.data.resolution)
