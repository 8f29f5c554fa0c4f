"""Differentiable augmentation of everything D sees (ADA, Karras et al. 2020) at NVlabs' 'bgc' standard.

Groups (NVlabs' names, each operation applied per image with probability p times its multiplier):
- blit: x-flip, 90-degree rotation, integer translation (pixels move, nothing is interpolated);
- geom: isotropic scale, arbitrary rotation (before and after the anisotropic scale), anisotropic scale,
  fractional translation;
- color: brightness, contrast, luma flip (for one channel: x -> -x, an inversion around mid-grey 0 that
  keeps [-1, 1]; hue and saturation have no meaning for grey MRI and are not implemented);
- filter: random gains of four frequency bands; noise: additive Gaussian noise; cutout: a grey square.

Blit and geom operations are composed into 3x3 matrices per image (NVlabs' order). The general
(geom) matrix is executed with one anti-aliased resampling as NVlabs does: pad, upsample 2x with the
orthogonal sym6 wavelet low-pass (the `networks.layers.upfirdn2d` formulation, run as polyphase matrix
products), `grid_sample`, and the matching sym6 downsample. Two measured departures from NVlabs:
- the whole-pixel (blit) matrix is executed exactly by nearest sampling before the warp: the sym6 filter
  is asymmetric, so through NVlabs' single resampling an x-flip is off by up to 0.12 on [-1, 1];
- the warp at 2x is bicubic, not bilinear: at 64 px with p = 1 for scale and rotate the two highest of
  four radial bands keep 1.01 / 0.79 of their power, NVlabs' recipe 0.87 / 0.60, one bilinear
  resampling at 1x 0.55 / 0.35 (`benchmarks/bench_augment.py`).
Padding is black (-1), not NVlabs' reflection: MRI slices have a black background (every border pixel
of builtin:mni152 is -1), and with reflection 76% of 'bg' images at p = 1 show mirrored brain tissue
pasted into the field of view.

Every random number comes from the step's `BatchRandom`, drawn for the global batch whatever p is, so
augmentation is deterministic, resumable and independent of the process count. Everything is
differentiable: G's gradients flow through augmented fakes and R1 sees augmented reals.

`AdaController` moves p toward the overfitting heuristic r_t = E[sign(D(real))] = target (0.6): every
`interval` steps, p += sign(r_t - target) * batch * interval / (ada_kimg * 1000), clamped to [0, 1].
Past p = 0.8 augmentations may start to leak into G (Karras et al. 2020, fig. 3); the controller reports
that crossing as an event.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from stylemri.networks.layers import upfirdn2d
from stylemri.training.rng import BatchRandom

# Low-pass filters of two orthogonal wavelets (Daubechies' least-asymmetric "symlets"), as in NVlabs' ADA.
SYM2 = (-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025)
SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148)
P_LEAK_WARN = 0.8  # above this, ADA's non-leaking argument weakens (Karras et al. 2020)
BLACK = -1.0  # the background value of a [-1, 1] MRI slice


@dataclass(frozen=True)
class AugmentSpec:
    """Probability multipliers (0 = off, 1 = applied with probability p) and strengths, NVlabs' defaults."""

    xflip: float = 0.0
    rotate90: float = 0.0
    xint: float = 0.0
    xint_max: float = 0.125  # integer translation range, fraction of the size
    scale: float = 0.0
    rotate: float = 0.0
    aniso: float = 0.0
    xfrac: float = 0.0
    scale_std: float = 0.2  # log2 std of isotropic scaling
    rotate_max: float = 1.0  # arbitrary rotation range, 1 = full circle
    aniso_std: float = 0.2
    xfrac_std: float = 0.125
    brightness: float = 0.0
    contrast: float = 0.0
    lumaflip: float = 0.0
    brightness_std: float = 0.2
    contrast_std: float = 0.5  # log2 std
    imgfilter: float = 0.0
    imgfilter_bands: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    imgfilter_std: float = 1.0  # log2 std of a band's gain
    noise: float = 0.0
    noise_std: float = 0.1
    cutout: float = 0.0
    cutout_size: float = 0.5
    pad: str = "black"  # "black" (constant -1, MRI) or "reflect" (NVlabs)
    interp: str = "bicubic"  # grid_sample mode at 2x: "bicubic" keeps more detail than NVlabs' "bilinear"

    def __post_init__(self) -> None:
        if self.pad not in ("black", "reflect"):
            raise ValueError(f"augmentation padding {self.pad!r}: expected black or reflect")
        if self.interp not in ("bilinear", "bicubic"):
            raise ValueError(f"augmentation interpolation {self.interp!r}: expected bilinear or bicubic")


BLIT = ("xflip", "rotate90", "xint")
GEOM = ("scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip")
OPS = (*BLIT, *GEOM, *COLOR, "imgfilter", "noise", "cutout")

# NVlabs' `augpipe_specs` (hue and saturation left out: one channel). 'bgc' is ADA's default.
PIPE_SPECS: dict[str, tuple[str, ...]] = {
    "blit": BLIT, "geom": GEOM, "color": COLOR, "filter": ("imgfilter",), "noise": ("noise",),
    "cutout": ("cutout",), "bg": (*BLIT, *GEOM), "bgc": (*BLIT, *GEOM, *COLOR),
    "bgcf": (*BLIT, *GEOM, *COLOR, "imgfilter"), "bgcfn": (*BLIT, *GEOM, *COLOR, "imgfilter", "noise"),
    "bgcfnc": (*BLIT, *GEOM, *COLOR, "imgfilter", "noise", "cutout"),
}


def augment_spec(spec: str | Sequence[str] | AugmentSpec = "bgc", **strengths: Any) -> AugmentSpec:
    """A named pipe ('bgc', 'bgcfn', ...), a list of operation names, or a spec, with strengths overridden."""
    if isinstance(spec, AugmentSpec):
        return dataclasses.replace(spec, **strengths)
    if isinstance(spec, str):
        if spec not in PIPE_SPECS:
            raise ValueError(f"augmentation pipe {spec!r}: expected one of {', '.join(PIPE_SPECS)}")
        spec = PIPE_SPECS[spec]
    unknown = sorted(set(spec) - set(OPS))
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; expected some of {', '.join(OPS)}")
    return AugmentSpec(**{**{op: 1.0 for op in spec}, **strengths})


# ---- 3x3 homogeneous matrices, one per image --------------------------------------------------------
def _matrix(rows: Sequence[Sequence[torch.Tensor | float]], ref: torch.Tensor) -> torch.Tensor:
    elems = [e if isinstance(e, torch.Tensor) else torch.full_like(ref, float(e)) for row in rows for e in row]
    return torch.stack(elems, dim=-1).reshape(*ref.shape, len(rows), len(rows[0]))


def _translate(tx: torch.Tensor | float, ty: torch.Tensor | float, ref: torch.Tensor) -> torch.Tensor:
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], ref)


def _scale(sx: torch.Tensor | float, sy: torch.Tensor | float, ref: torch.Tensor) -> torch.Tensor:
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], ref)


def _rotate(theta: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], theta)


# ---- parameter draws ----------------------------------------------------------------------------------
class _Draw:
    """Per-image parameters gated by probability; every draw is made whatever p is (a fixed RNG stream)."""

    def __init__(self, rand: BatchRandom, p: float) -> None:
        self.rand, self.p = rand, p

    def gate_prob(self, value: torch.Tensor, identity: float, prob: float) -> torch.Tensor:
        """Keep `value` for an image with probability `prob` (one decision per image), else `identity`."""
        keep = self.rand.rand(*([1] * (value.ndim - 1))) < prob
        return torch.where(keep, value, torch.full_like(value, identity))

    def gate(self, value: torch.Tensor, identity: float, mult: float) -> torch.Tensor:
        return self.gate_prob(value, identity, mult * self.p)

    def uniform(self, *shape: int) -> torch.Tensor:
        return self.rand.rand(*shape)

    def normal(self, *shape: int) -> torch.Tensor:
        return self.rand.randn(*shape)


def _blit(s: AugmentSpec, d: _Draw, g: torch.Tensor, width: int, height: int) -> torch.Tensor:
    ref = g[:, 0, 0]
    if s.xflip > 0:
        flip = d.gate(torch.floor(d.uniform() * 2), 0.0, s.xflip)
        g = g @ _scale(1 - 2 * flip, 1.0, ref)
    if s.rotate90 > 0:
        quarter = d.gate(torch.floor(d.uniform() * 4), 0.0, s.rotate90)
        g = g @ _rotate(-math.pi / 2 * quarter)
    if s.xint > 0:
        t = d.gate((d.uniform(2) * 2 - 1) * s.xint_max, 0.0, s.xint)
        g = g @ _translate(-torch.round(t[:, 0] * width), -torch.round(t[:, 1] * height), ref)
    return g


def _general(s: AugmentSpec, d: _Draw, g: torch.Tensor, width: int, height: int) -> torch.Tensor:
    ref = g[:, 0, 0]
    if s.scale > 0:
        k = d.gate(torch.exp2(d.normal() * s.scale_std), 1.0, s.scale)
        g = g @ _scale(1 / k, 1 / k, ref)
    p_rot = 1 - math.sqrt(min(max(1 - s.rotate * d.p, 0.0), 1.0))  # P(pre or post rotation) = rotate * p
    if s.rotate > 0:
        theta = d.gate_prob((d.uniform() * 2 - 1) * math.pi * s.rotate_max, 0.0, p_rot)
        g = g @ _rotate(theta)  # before the anisotropic scaling
    if s.aniso > 0:
        k = d.gate(torch.exp2(d.normal() * s.aniso_std), 1.0, s.aniso)
        g = g @ _scale(1 / k, k, ref)
    if s.rotate > 0:
        theta = d.gate_prob((d.uniform() * 2 - 1) * math.pi * s.rotate_max, 0.0, p_rot)
        g = g @ _rotate(theta)  # after it
    if s.xfrac > 0:
        t = d.gate(d.normal(2) * s.xfrac_std, 0.0, s.xfrac)
        g = g @ _translate(-t[:, 0] * width, -t[:, 1] * height, ref)
    return g


def _geometry(s: AugmentSpec, d: _Draw, width: int, height: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    eye = torch.eye(3, device=d.rand.device).repeat(d.rand.count, 1, 1)
    blit_g = _blit(s, d, eye, width, height) if any(getattr(s, op) > 0 for op in BLIT) else None
    general_g = _general(s, d, eye, width, height) if any(getattr(s, op) > 0 for op in GEOM) else None
    return blit_g, general_g


def geometry(spec: AugmentSpec, rand: BatchRandom, p: float, width: int,
             height: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The (whole-pixel, general) G_inv matrices (N, 3, 3) the pipe would draw first from `rand`.

    G_inv maps an output pixel to the input pixel it samples, in pixel units centred on the image;
    composing them (blit @ general) gives NVlabs' single matrix. None where a group is off.
    """
    return _geometry(spec, _Draw(rand, float(p)), width, height)


# ---- anti-aliased resampling --------------------------------------------------------------------------
def pad_margins(g_inv: torch.Tensor, width: int, height: int, filter_pad: int) -> list[int]:
    """[x0, x1, y0, y1] padding that holds the warped output's footprint plus the filter's support."""
    cx, cy = (width - 1) / 2, (height - 1) / 2
    corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], device=g_inv.device)
    mapped = (g_inv @ corners.t())[:, :2, :].permute(1, 0, 2).flatten(1)  # (xy, N * 4)
    extent = torch.cat([-mapped, mapped]).amax(dim=1)  # x0, y0, x1, y1
    extent = extent + torch.tensor([filter_pad * 2 - cx, filter_pad * 2 - cy] * 2, device=g_inv.device)
    limit = torch.tensor([width - 1, height - 1] * 2, device=g_inv.device)
    mx0, my0, mx1, my1 = extent.clamp(min=0).minimum(limit).ceil().to(torch.int64).tolist()
    return [mx0, mx1, my0, my1]


def _zero_insert(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Samples at even positions, zeros at odd ones, along dim 2 (y) or 3 (x)."""
    n, c, h, w = x.shape
    if dim == 3:
        return F.pad(x.reshape(n, c, h, w, 1), [0, 1]).reshape(n, c, h, w * 2)
    return F.pad(x.reshape(n, c, h, 1, w), [0, 0, 0, 1]).reshape(n, c, h * 2, w)


def upsample_2x_reference(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Separable 2x upsampling by upfirdn2d: zero insertion, true convolution with f, gain 2 per axis.

    Padded as `networks.layers.upsample2d` ([k/2, k/2 - 1] for even k): input pixel u (centred coords)
    lands at 2u - 0.5 for the asymmetric sym6 filter.
    """
    k = f.numel()
    lo, hi = (k + 1) // 2, (k - 2) // 2
    x = upfirdn2d(_zero_insert(x, 3), f[None, :], padding=[lo, hi, 0, 0], gain=2.0)
    return upfirdn2d(_zero_insert(x, 2), f[:, None], padding=[0, 0, lo, hi], gain=2.0)


def downsample_2x_reference(x: torch.Tensor, f: torch.Tensor, crop: int = 0) -> torch.Tensor:
    """Separable 2x downsampling by upfirdn2d with the time-reversed f (the orthogonal analysis filter)."""
    p = (f.numel() - 2) // 2 - crop
    r = f.flip(0)
    x = upfirdn2d(x, r[None, :], padding=[p, p, 0, 0])[:, :, :, ::2]
    return upfirdn2d(x, r[:, None], padding=[0, 0, p, p])[:, :, ::2, :]


def _fir_last(x: torch.Tensor, taps: torch.Tensor, pad: tuple[int, int], step: int) -> torch.Tensor:
    """Sliding windows of the last axis times a (window, phases) tap matrix, phases interleaved."""
    if pad[0] < 0 or pad[1] < 0:
        x = x[..., max(-pad[0], 0): x.shape[-1] - max(-pad[1], 0)]
    x = F.pad(x, [max(pad[0], 0), max(pad[1], 0)])
    windows = x.unfold(-1, taps.shape[0], step)  # one contiguous matrix product beats a batched one ~10x
    y = windows.reshape(-1, taps.shape[0]) @ taps.to(x.dtype)
    return y.reshape(*windows.shape[:-1], taps.shape[1]).flatten(-2)


def _polyphase(f: torch.Tensor) -> torch.Tensor:
    """(k/2 + 1, 2) taps: output 2q uses f[::-1][0::2] on x[q-k/4..], output 2q+1 f[::-1][1::2] one later."""
    fl, half = f.flip(0) * 2, f.numel() // 2
    taps = torch.zeros(half + 1, 2, dtype=f.dtype, device=f.device)
    taps[:half, 0], taps[1:, 1] = fl[0::2], fl[1::2]
    return taps


def upsample_2x(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """`upsample_2x_reference` as polyphase matrix products (CPU depthwise convolutions are ~10x slower)."""
    taps, side = _polyphase(f), f.numel() // 4
    x = _fir_last(x, taps, (side, side), 1)
    return _fir_last(x.transpose(2, 3), taps, (side, side), 1).transpose(2, 3)


def downsample_2x(x: torch.Tensor, f: torch.Tensor, crop: int = 0) -> torch.Tensor:
    """`downsample_2x_reference` as strided windows times f (correlation with f = convolution with f[::-1])."""
    p = (f.numel() - 2) // 2 - crop
    taps = f[:, None]
    x = _fir_last(x, taps, (p, p), 2)
    return _fir_last(x.transpose(2, 3), taps, (p, p), 2).transpose(2, 3)


def warp(images: torch.Tensor, g_inv: torch.Tensor, margins: Sequence[int], pad: str = "black",
         taps: Sequence[float] = SYM6, mode: str = "bicubic") -> torch.Tensor:
    """Resample `images` through G_inv: pad, 2x upsample, `grid_sample`, 2x downsample (one warp)."""
    n, c, h, w = images.shape
    f = torch.tensor(taps, dtype=torch.float32, device=images.device)
    f = f / f.sum()
    fpad = f.numel() // 4
    mx0, mx1, my0, my1 = margins
    x = images - BLACK if pad == "black" else images  # black is 0 while zero padding and resampling
    x = F.pad(x, [mx0, mx1, my0, my1], mode="constant" if pad == "black" else "reflect")
    x = upsample_2x(x, f)
    ref = g_inv[:, 0, 0]
    g = _translate((mx0 - mx1) / 2, (my0 - my1) / 2, ref) @ g_inv  # origin of the padded image
    g = _scale(2.0, 2.0, ref) @ g @ _scale(0.5, 0.5, ref)  # to the upsampled grid, where u -> 2u - 0.5
    g = _translate(-0.5, -0.5, ref) @ g @ _translate(0.5, 0.5, ref)
    out_h, out_w = (h + fpad * 2) * 2, (w + fpad * 2) * 2
    g = _scale(2 / x.shape[3], 2 / x.shape[2], ref) @ g @ _scale(out_w / 2, out_h / 2, ref)  # normalised
    grid = F.affine_grid(g[:, :2, :].to(x.dtype), [n, c, out_h, out_w], align_corners=False)
    x = F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
    x = downsample_2x(x, f, crop=fpad * 2)
    return x + BLACK if pad == "black" else x


def blit(images: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
    """Exact whole-pixel transforms (flips, quarter turns, integer shifts): nearest sampling, black enters.

    Run apart from the general warp because the asymmetric sym6 filter does not commute with a flip:
    through NVlabs' single resampling an x-flip is off by up to 0.12 (on [-1, 1]); here it is exact.
    """
    n, c, h, w = images.shape
    ref = g_inv[:, 0, 0]
    g = _scale(2 / w, 2 / h, ref) @ g_inv @ _scale(w / 2, h / 2, ref)
    grid = F.affine_grid(g[:, :2, :].to(images.dtype), [n, c, h, w], align_corners=False)
    return F.grid_sample(images - BLACK, grid, mode="nearest", padding_mode="zeros", align_corners=False) + BLACK


def _is_identity(g: torch.Tensor) -> torch.Tensor:
    return (g - torch.eye(3, device=g.device)).abs().amax(dim=(1, 2)) == 0


# ---- colour, filtering, corruption --------------------------------------------------------------------
def color(s: AugmentSpec, d: _Draw) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per-image affine intensity map x -> gain * x + offset (brightness, then contrast, then luma flip).

    One channel: NVlabs' luma axis reflection reduces to x -> -x. With C channels the flip reflects the
    channel mean (x - 2 mean), which is NVlabs' luma flip for RGB; gain/offset then act on that.
    """
    if not any(getattr(s, op) > 0 for op in COLOR):
        return None
    n = d.rand.count
    gain = torch.ones(n, device=d.rand.device)
    offset = torch.zeros(n, device=d.rand.device)
    if s.brightness > 0:
        offset = offset + d.gate(d.normal() * s.brightness_std, 0.0, s.brightness)
    if s.contrast > 0:
        c = d.gate(torch.exp2(d.normal() * s.contrast_std), 1.0, s.contrast)
        gain, offset = gain * c, offset * c
    if s.lumaflip > 0:
        flip = d.gate(torch.floor(d.uniform() * 2), 0.0, s.lumaflip)
        gain, offset = gain * (1 - 2 * flip), offset * (1 - 2 * flip)
    return gain, offset


def _apply_color(x: torch.Tensor, gain: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    g, o = gain.to(x.dtype)[:, None, None, None], offset.to(x.dtype)[:, None, None, None]
    if x.shape[1] == 1:
        return x * g + o
    mean = x.mean(dim=1, keepdim=True)  # luma flip acts on the mean only: x - 2 * mean when g < 0
    return (x + (torch.sign(g) - 1) * mean) * g.abs() + o


def filter_bank() -> torch.Tensor:
    """(4, 43) band-pass filters from the sym2 wavelet: low band, then octave bands up to Nyquist.

    Built as NVlabs' ADA: each step upsamples the bank by 2, smooths it with H(z)H(1/z)/2 and adds the
    next high-pass H(-z)H(-1/z)/2 as a new band; the four bands sum to a unit impulse.
    """
    lo = np.asarray(SYM2)
    hi = lo * (-1.0) ** np.arange(lo.size)
    lo2, hi2 = np.convolve(lo, lo[::-1]) / 2, np.convolve(hi, hi[::-1]) / 2
    bank = np.eye(4, 1)
    for i in range(1, 4):
        up = np.zeros((4, bank.shape[1] * 2 - 1))
        up[:, ::2] = bank
        bank = np.stack([np.convolve(row, lo2) for row in up])
        mid = (bank.shape[1] - hi2.size) // 2
        bank[i, mid: mid + hi2.size] += hi2
    return torch.as_tensor(bank, dtype=torch.float32)


def band_gains(s: AugmentSpec, d: _Draw) -> torch.Tensor | None:
    """(N, 4) random band amplifications, each normalised so the expected (1/f) power is kept."""
    if s.imgfilter <= 0:
        return None
    expected = torch.tensor([10.0, 1.0, 1.0, 1.0], device=d.rand.device) / 13
    g = torch.ones(d.rand.count, 4, device=d.rand.device)
    for i, band in enumerate(s.imgfilter_bands):
        t_i = d.gate(torch.exp2(d.normal() * s.imgfilter_std), 1.0, s.imgfilter * band)
        t = torch.ones_like(g)
        t[:, i] = t_i
        g = g * t / (expected * t.square()).sum(dim=1, keepdim=True).sqrt()
    return g


def _apply_filter(x: torch.Tensor, gains: torch.Tensor, bank: torch.Tensor, pad: str) -> torch.Tensor:
    """Each image convolved (separably) with its own symmetric filter gains @ bank, padded as the warp."""
    n, c, h, w = x.shape
    taps = (gains.to(bank) @ bank).to(x.dtype)  # (N, K), symmetric: convolution = correlation
    p = bank.shape[1] // 2
    y = x - BLACK if pad == "black" else x
    y = F.pad(y, [p, p, p, p], mode="constant" if pad == "black" else "reflect")
    y = _fir_rows(y, taps)  # along x (rows), then along y (the transposed rows)
    y = _fir_rows(y.transpose(2, 3), taps).transpose(2, 3)
    return y + BLACK if pad == "black" else y


def _fir_rows(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Valid correlation of every row of image i with taps[i]: windows times a per-image column."""
    n = x.shape[0]
    windows = x.unfold(-1, taps.shape[1], 1)  # (N, C, H, W', K)
    y = torch.bmm(windows.reshape(n, -1, taps.shape[1]), taps[:, :, None])
    return y.reshape(windows.shape[:-1])


def noise(s: AugmentSpec, d: _Draw, shape: Sequence[int]) -> torch.Tensor | None:
    """Additive Gaussian noise with a per-image sigma = |N(0, noise_std)|."""
    if s.noise <= 0:
        return None
    sigma = d.gate(d.normal(1, 1, 1).abs() * s.noise_std, 0.0, s.noise)
    return d.normal(*shape[1:]) * sigma


def cutout(s: AugmentSpec, d: _Draw, h: int, w: int) -> torch.Tensor | None:
    """(N, 1, H, W) multiplicative mask: a grey (0) square of `cutout_size` at a random centre."""
    if s.cutout <= 0:
        return None
    size = d.gate(torch.full((d.rand.count, 1), s.cutout_size, device=d.rand.device), 0.0, s.cutout)
    centre = d.uniform(2)
    ys = (torch.arange(h, device=size.device) + 0.5) / h
    xs = (torch.arange(w, device=size.device) + 0.5) / w
    out_y = (ys[None, :] - centre[:, 1:2]).abs() >= size / 2
    out_x = (xs[None, :] - centre[:, 0:1]).abs() >= size / 2
    return (out_y[:, :, None] | out_x[:, None, :])[:, None].float()


# ---- measuring what resampling keeps -------------------------------------------------------------------
def radial_band_power(images: torch.Tensor, bands: int = 4) -> torch.Tensor:
    """(N, bands) power of the 2-D DFT in equal-width radial bands of [0, 0.5] cycles/pixel.

    Band i holds frequencies with i/bands * 0.5 <= sqrt(fx^2 + fy^2) < (i+1)/bands * 0.5 (the last band
    includes 0.5); the corners beyond the axis Nyquist are left out. Power is summed over channels.
    """
    h, w = images.shape[-2:]
    fy, fx = torch.fft.fftfreq(h, device=images.device), torch.fft.fftfreq(w, device=images.device)
    r = (fy[:, None].square() + fx[None, :].square()).sqrt()
    power = torch.fft.fft2(images.detach().double()).abs().square().sum(dim=1)
    edges = [0.5 * i / bands for i in range(bands + 1)]
    masks = [(r >= lo) & ((r < hi) if i < bands - 1 else (r <= hi)) for i, (lo, hi) in enumerate(zip(edges, edges[1:]))]
    return torch.stack([power[:, m].sum(dim=1) for m in masks], dim=1)


def band_power_kept(original: torch.Tensor, augmented: torch.Tensor, bands: int = 4) -> list[float]:
    """Median over images of augmented / original power per radial band (1.0 = nothing lost)."""
    ratio = radial_band_power(augmented, bands) / radial_band_power(original, bands)
    return ratio.median(dim=0).values.tolist()


# ---- the pipe -----------------------------------------------------------------------------------------
def _global_view(rand: BatchRandom) -> BatchRandom:
    """The same generators, every row: parameters (and pad margins) of the whole global batch."""
    full = copy.copy(rand)
    full.offset, full.count = 0, rand.total
    return full


class AugmentPipe(torch.nn.Module):
    """Random, differentiable, per-image augmentation; `p` is given per call (the controller owns it)."""

    def __init__(self, spec: str | Sequence[str] | AugmentSpec = "bgc", *, only_changed: bool = True,
                 **strengths: Any) -> None:
        """`only_changed=False` is the plain reference twin: each geometric stage runs on the whole batch
        whenever it is on, as NVlabs' pipe does; the default runs it on the images whose transform is not
        the identity (at ADA's usual p of 0.01-0.1 most images draw none), and tests compare the two."""
        super().__init__()
        self.spec = augment_spec(spec, **strengths)
        self.only_changed = only_changed
        self.register_buffer("bank", filter_bank(), persistent=False)

    @property
    def enabled(self) -> bool:
        return any(getattr(self.spec, op) > 0 for op in OPS)

    def forward(self, images: torch.Tensor, p: float, rand: BatchRandom | None = None) -> torch.Tensor:
        """Augment (N, C, H, W) images in [-1, 1]; p = 0 returns the input itself."""
        if p <= 0 or not self.enabled:
            return images
        n, _, h, w = images.shape
        if rand is None:
            rand = BatchRandom(int(torch.randint(0, 2**62, ())), n, device=images.device)
        s, d = self.spec, _Draw(_global_view(rand), float(p))
        rows = slice(rand.offset, rand.offset + rand.count)
        x = images
        blit_g, general_g = _geometry(s, d, w, h)
        if blit_g is not None:
            x = self._changed(x, blit_g[rows].to(x.device), blit)
        if general_g is not None:
            x = self._changed(x, general_g[rows].to(x.device), lambda part, g: warp(
                part, g, pad_margins(general_g, w, h, len(SYM6) // 4),  # global margins: the same on every rank
                self.spec.pad, mode=self.spec.interp))
        col = color(s, d)
        if col is not None:
            x = _apply_color(x, col[0][rows].to(x.device), col[1][rows].to(x.device))
        gains = band_gains(s, d)
        if gains is not None:
            x = _apply_filter(x, gains[rows].to(x.device), self.bank, s.pad)
        add = noise(s, d, x.shape)
        if add is not None:
            x = x + add[rows].to(x.device, x.dtype)
        mask = cutout(s, d, h, w)
        if mask is not None:
            x = x * mask[rows].to(x.device, x.dtype)
        return x

    def _changed(self, x: torch.Tensor, g: torch.Tensor,
                 transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """transform(x, g) on the images whose G_inv is not the identity; the others pass through exactly
        (the whole batch, identity rows included, in the reference twin). Skipping them also skips their
        share of the backward and of R1's double backward through the resampling."""
        if not self.only_changed:
            return transform(x, g)
        idx = torch.nonzero(~_is_identity(g)).flatten()
        if idx.numel() == 0:
            return x
        if idx.numel() == x.shape[0]:
            return transform(x, g)
        return x.index_copy(0, idx, transform(x.index_select(0, idx), g.index_select(0, idx)))


class AdaController:
    """Adaptive discriminator augmentation: keeps E[sign(D(real))] near `target` by moving p."""

    def __init__(self, *, p: float = 0.0, target: float = 0.6, interval: int = 4, ada_kimg: float = 500.0,
                 adaptive: bool = True) -> None:
        self.p = float(p)
        self.target = target
        self.interval = interval
        self.ada_kimg = ada_kimg
        self.adaptive = adaptive
        self.rt: float | None = None  # last measured r_t (for logs)
        self._sum: torch.Tensor | None = None  # running sum of sign(D(real)) and count, kept on device
        self._count: torch.Tensor | None = None
        self._steps = 0
        self._events: list[dict[str, Any]] = []

    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Record sign(D(real)) of one batch; no device synchronisation."""
        signs = real_logits.detach().float().sign()
        s, c = signs.sum(), torch.tensor(float(signs.numel()), device=signs.device)
        self._sum = s if self._sum is None else self._sum + s
        self._count = c if self._count is None else self._count + c

    def step(self, batch: int, all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> bool:
        """Count one training step; every `interval` steps update p. Returns True when p was updated."""
        self._steps += 1
        if self._steps < self.interval:
            return False
        self._steps = 0
        if self._sum is None or self._count is None:
            return False
        stats = torch.stack([self._sum, self._count])
        if all_reduce is not None:
            stats = all_reduce(stats)
        total, count = (float(v) for v in stats.cpu())
        self._sum = self._count = None
        if count == 0:
            return False
        self.rt = total / count
        if self.adaptive:
            adjust = math.copysign(1.0, self.rt - self.target) if self.rt != self.target else 0.0
            before = self.p
            self.p = min(max(self.p + adjust * batch * self.interval / (self.ada_kimg * 1000), 0.0), 1.0)
            if before <= P_LEAK_WARN < self.p:
                self._events.append({"event": "ada_warning", "p": self.p, "rt": self.rt, "warning": (
                    f"ADA p = {self.p:.3f} passed {P_LEAK_WARN}: augmentations may leak into the generated "
                    "images (Karras et al. 2020); more data or a smaller model may be needed")})
        return True

    def pop_events(self) -> list[dict[str, Any]]:
        """Events since the last call (p crossing 0.8 upward), for the run's log; a pure function of p."""
        events, self._events = self._events, []
        return events

    def state_dict(self) -> dict[str, Any]:
        pending = None
        if self._sum is not None and self._count is not None:
            pending = [float(self._sum), float(self._count)]
        return {"p": self.p, "rt": self.rt, "steps": self._steps, "pending": pending}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        self.p = float(state["p"])
        self.rt = state.get("rt")
        self._steps = int(state.get("steps", 0))
        pending = state.get("pending")
        if pending:
            self._sum = torch.tensor(pending[0], device=device)
            self._count = torch.tensor(pending[1], device=device)
        else:
            self._sum = self._count = None


def build_augment(mode: str, pipe: str = "bgc") -> AugmentPipe | None:
    """The pipeline for `--aug`: ADA / fixed p with a named pipe ('bgc'), a DiffAugment-style policy, or none."""
    if mode in ("ada", "fixed"):
        return AugmentPipe(pipe)
    if mode == "diffaugment":  # colour, translation, cutout at p = 1 (Zhao et al. 2020)
        return AugmentPipe(("brightness", "contrast", "xint", "cutout"), brightness_std=0.3)
    return None
