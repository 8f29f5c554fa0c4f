"""Projection: find the latent (W, or W+ = one w per layer) whose image matches a real slice.

Optimisation as in StyleGAN2's projector (Karras et al. 2020, appendix D): Adam on w starting from the
mean w, Gaussian noise added to w that ramps down, a learning rate that ramps up then down (cosine), and
the per-layer noise maps optimised too, with a multi-scale autocorrelation penalty that keeps them noise
(not image content) and renormalised after every step. No perceptual network is downloaded: the loss is
pixel MSE + L1 + (1 - MS-SSIM), optionally + the distance between the discriminator's features of the
two images when a discriminator is given.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from stylemri import io
from stylemri.analysis.figures import PALETTE, save_figure
from stylemri.analysis.ssim import ms_ssim
from stylemri.errors import StylemriWarning, UserError
from stylemri.networks.sampling import class_w_stats, model_device

# --------------------------------------------------------------------------------------------- targets


def load_target(path: str | os.PathLike, resolution: int, channels: int = 1, *, slice_index: int | None = None,
                axis: str = "axial") -> torch.Tensor:
    """A real slice as a (channels, R, R) tensor in [-1, 1], prepared exactly as training data is
    (stylemri.data's decoding, centre-padding, area resize, uint8 quantisation): an image file, one slice
    of a NIfTI volume (the middle one unless `slice_index` is given), or a .npy array ((H, W) or
    (C, H, W); float values in [-1, 1] are taken as they are, other arrays scaled by their range)."""
    from stylemri.data.decode import AXES, decode_image, fit_square, is_image_name, is_nifti_name, load_volume, \
        quantize, volume_slice

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path}: no such file; expected an image, a .npy slice or a NIfTI volume")
    if is_nifti_name(p.name):
        if axis not in AXES:
            raise UserError(f"--axis {axis}: expected one of {', '.join(AXES)}")
        try:
            vol = load_volume(p)
        except Exception as exc:  # nibabel raises many types for a damaged file
            raise UserError(f"{path}: not a readable NIfTI volume ({exc})") from None
        n = vol.data.shape[{"sagittal": 0, "coronal": 1, "axial": 2}[axis]]
        k = n // 2 if slice_index is None else slice_index
        if not 0 <= k < n:
            raise UserError(f"--slice {slice_index}: the volume has {n} {axis} slices; expected 0-{n - 1}")
        plane = volume_slice(vol, axis, k)[None]
        planes = np.repeat(plane, channels, axis=0) if channels == 3 else plane
    elif p.name.lower().endswith(".npy"):
        planes = _npy_planes(p, channels)
        if planes is None:  # already in the generator's range: only resize
            arr = np.load(p, allow_pickle=False).astype(np.float32)
            arr = arr[None] if arr.ndim == 2 else arr
            arr = _channels(arr, channels)
            img, _ = fit_square((arr + 1.0) / 2.0, resolution)
            return torch.from_numpy(img * 2.0 - 1.0).clamp(-1, 1)
    else:
        try:
            planes = decode_image(p, channels).planes
        except Exception:  # Pillow raises UnidentifiedImageError, OSError, ValueError, ...
            hint = "" if is_image_name(p.name) else " (PNG/JPEG/BMP/TIFF), a .npy slice or a NIfTI volume"
            raise UserError(f"{path}: not an image; expected a readable image{hint}") from None
    img, _ = fit_square(planes, resolution)
    return torch.from_numpy(quantize(img).astype(np.float32) / 127.5 - 1.0)


def _channels(arr: np.ndarray, channels: int) -> np.ndarray:
    if arr.shape[0] == channels:
        return arr
    if arr.shape[0] == 1:
        return np.repeat(arr, channels, axis=0)
    return arr.mean(axis=0, keepdims=True) if channels == 1 else np.repeat(arr[:1], channels, axis=0)


def _npy_planes(p: Path, channels: int) -> np.ndarray | None:
    """(C, H, W) in [0, 1] from a .npy slice, or None when it is a float array already in [-1, 1]."""
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise UserError(f"{p}: not a readable .npy array ({exc})") from None
    if arr.ndim == 3 and arr.shape[-1] in (1, 3) and arr.shape[0] not in (1, 3):
        arr = arr.transpose(2, 0, 1)
    bad_shape = arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[0] not in (1, 3))
    if bad_shape or not np.issubdtype(arr.dtype, np.number):
        raise UserError(f"{p}: array of shape {arr.shape}; expected a slice (H, W), (C, H, W) or (H, W, C)")
    finite = np.isfinite(arr)
    if not finite.any():
        raise UserError(f"{p}: every value of the {arr.shape} array is NaN or infinite; expected a slice of intensities")
    if not finite.all():
        warnings.warn(f"{p}: {arr.size - int(finite.sum())} of {arr.size} values are NaN or infinite; read as 0",
                      StylemriWarning, stacklevel=2)
    arr = np.nan_to_num(arr.astype(np.float32) if arr.dtype != np.uint8 else arr)
    if np.issubdtype(arr.dtype, np.floating) and arr.min() >= -1.0 and arr.max() <= 1.0 and arr.min() < 0:
        return None
    arr = arr[None] if arr.ndim == 2 else arr
    if arr.dtype == np.uint8:
        unit = arr.astype(np.float32) / 255.0
    else:
        lo, hi = min(0.0, float(arr.min())), float(arr.max())
        unit = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    return _channels(unit.astype(np.float32), channels)


# ---------------------------------------------------------------------------------------------- losses


def noise_regularization(noises: list[torch.Tensor]) -> torch.Tensor:
    """Sum over noise maps and scales (down to 8 px) of squared autocorrelation at 1-pixel shifts."""
    reg = torch.zeros(())
    for v in noises:
        v = v.reshape(1, 1, *v.shape[-2:])
        while True:
            reg = reg + (v * torch.roll(v, 1, dims=3)).mean() ** 2 + (v * torch.roll(v, 1, dims=2)).mean() ** 2
            if v.shape[-1] <= 8:
                break
            v = F.avg_pool2d(v, 2)
    return reg


def image_loss(img: torch.Tensor, target: torch.Tensor, pixel_weight: float = 1.0, l1_weight: float = 0.0,
               ssim_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Pixel MSE + L1 + (1 - MS-SSIM) between (N, C, H, W) images in [-1, 1]; the total and its parts."""
    mse = F.mse_loss(img, target)
    l1 = F.l1_loss(img, target)
    ssim_term = 1.0 - ms_ssim(img, target).mean()
    total = pixel_weight * mse + l1_weight * l1 + ssim_weight * ssim_term
    return total, {"mse": float(mse.detach()), "l1": float(l1.detach()), "ms_ssim": float(1.0 - ssim_term.detach())}


def find_noise_buffers(G: torch.nn.Module) -> list[tuple[str, torch.nn.Module, str]]:
    """The stored per-layer noise maps used by noise_mode='const' (buffers named '*noise_const'), as
    (qualified name, owning module, attribute name)."""
    found = []
    for prefix, module in G.named_modules():
        for name, buf in module.named_buffers(recurse=False):
            if name.endswith("noise_const") and buf is not None and buf.ndim >= 2:
                found.append((f"{prefix}.{name}" if prefix else name, module, name))
    return found


def set_noise_buffers(G: torch.nn.Module, noise: dict[str, np.ndarray]) -> None:
    """Load noise maps saved by a projection into G's constant-noise buffers (shapes must match)."""
    buffers = {q: (m, n) for q, m, n in find_noise_buffers(G)}
    for key, value in noise.items():
        if key not in buffers:
            raise UserError(f"noise map {key!r}: this model has no such constant-noise buffer")
        module, name = buffers[key]
        buf = getattr(module, name)
        if tuple(value.shape) != tuple(buf.shape):
            raise UserError(f"noise map {key!r} of shape {tuple(value.shape)}: expected {tuple(buf.shape)}")
        with torch.no_grad():
            buf.copy_(torch.as_tensor(value, dtype=buf.dtype, device=buf.device))


# ------------------------------------------------------------------------------------------ projection


@dataclass
class ProjectionResult:
    """The projected image (C, R, R), its latent ws (num_ws, w_dim) (W: all rows equal), the optimised
    noise maps, and one dict of losses per step."""

    target: torch.Tensor
    image: torch.Tensor
    ws: np.ndarray
    w_plus: bool
    noise: dict[str, np.ndarray]
    history: list[dict[str, float]] = field(default_factory=list)
    initial_loss: float = math.nan
    final_loss: float = math.nan


def project(G: torch.nn.Module, target: torch.Tensor, *, steps: int = 500, w_plus: bool = False,
            class_index: int | None = None, w_avg_samples: int = 5000, initial_lr: float = 0.1,
            initial_noise_factor: float = 0.05, noise_ramp_length: float = 0.75, lr_rampdown_length: float = 0.25,
            lr_rampup_length: float = 0.05, noise_reg_weight: float = 1e5, pixel_weight: float = 1.0,
            l1_weight: float = 0.0, ssim_weight: float = 1.0, feature_weight: float = 0.0,
            features: Callable[[torch.Tensor], torch.Tensor] | None = None, seed: int = 0,
            optimize_noise: bool = True,
            callback: Callable[[int, dict[str, float]], None] | None = None) -> ProjectionResult:
    """Invert `target` (C, R, R) in [-1, 1] into W (or W+); G is copied, never modified."""
    _check_projection(G, target, steps, feature_weight, features)
    dev = model_device(G)
    G = copy.deepcopy(G).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    target = target.to(dev).unsqueeze(0).float()

    # Start at the class's mean w (or the mean over the classes: W is shared by all classes), with the
    # spread of w around it, from the one class-mean computation (networks.sampling.class_w_stats).
    means, spreads = class_w_stats(G, num_samples=w_avg_samples, seed=seed)
    if class_index is not None and G.c_dim:
        mean, mean_square = means[class_index], float(spreads[class_index]) ** 2
    else:  # the classes pooled: spread within each class plus the spread of the class means
        mean = means.mean(0)
        mean_square = float((spreads.double().square() + (means - mean).double().square().sum(1)).mean())
    w_mean = mean.to(dev).reshape(1, 1, -1)  # (1, 1, w_dim)
    w_std = mean_square ** 0.5

    w_opt = w_mean.repeat(1, G.num_ws if w_plus else 1, 1).clone().requires_grad_(True)
    noise_names, noises = _fresh_noise(G, gen) if optimize_noise else ([], [])
    optimizer = torch.optim.Adam([w_opt, *noises], betas=(0.9, 0.999), lr=initial_lr)
    total_loss = _objective(target, features if feature_weight > 0 else None, feature_weight, pixel_weight,
                            l1_weight, ssim_weight)

    with torch.no_grad():
        initial_loss = total_loss(_render(G, w_opt, w_plus))[1]["image_loss"]
    history: list[dict[str, float]] = []
    for step in range(steps):
        t = step / steps
        w_noise_scale = w_std * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2
        lr = initial_lr * _lr_ramp(t, lr_rampdown_length, lr_rampup_length)
        for group in optimizer.param_groups:
            group["lr"] = lr
        w_noise = torch.randn(w_opt.shape, generator=gen).to(dev) * w_noise_scale
        loss, parts = total_loss(_render(G, w_opt + w_noise, w_plus))
        reg = noise_regularization(noises) if noises else torch.zeros(())
        _descend(optimizer, loss + noise_reg_weight * reg.to(loss.device), noises)
        parts.update(noise_reg=float(reg.detach()), lr=lr, step=step)
        history.append(parts)
        if callback is not None:
            callback(step, parts)

    with torch.no_grad():
        image = _render(G, w_opt, w_plus)
        final = total_loss(image)[1]["image_loss"]
    ws = (w_opt if w_plus else w_opt.repeat(1, G.num_ws, 1))[0].detach().cpu().numpy().astype(np.float32)
    noise = {q: v.detach().cpu().numpy() for q, v in zip(noise_names, noises)}
    return ProjectionResult(target=target[0].cpu(), image=image[0].float().cpu(), ws=ws, w_plus=w_plus,
                            noise=noise, history=history, initial_loss=initial_loss, final_loss=final)


def _check_projection(G: torch.nn.Module, target: torch.Tensor, steps: int, feature_weight: float,
                      features: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
    if steps < 1:
        raise UserError(f"--steps {steps}: expected at least 1")
    if tuple(target.shape) != (G.img_channels, G.resolution, G.resolution):
        raise UserError(f"target of shape {tuple(target.shape)}: expected ({G.img_channels}, {G.resolution}, "
                        f"{G.resolution}) for this model")
    if feature_weight > 0 and features is None:
        raise ValueError("feature_weight > 0 needs a `features` function")


def _fresh_noise(G: torch.nn.Module, gen: torch.Generator) -> tuple[list[str], list[torch.Tensor]]:
    """Replace G's constant noise buffers by seeded fresh ones that the optimizer may change (G is a copy)."""
    names, noises = [], []
    for qualified, module, name in find_noise_buffers(G):
        buf = getattr(module, name)
        fresh = torch.randn(buf.shape, generator=gen).to(device=buf.device, dtype=buf.dtype).requires_grad_(True)
        module._buffers[name] = fresh  # the generator reads it as its constant noise
        noises.append(fresh)
        names.append(qualified)
    return names, noises


def _objective(target: torch.Tensor, features: Callable[[torch.Tensor], torch.Tensor] | None, feature_weight: float,
               pixel_weight: float, l1_weight: float, ssim_weight: float
               ) -> Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, float]]]:
    """image -> (loss to minimise, its parts as floats): image_loss, plus the feature distance with `features`."""
    target_feats = features(target).detach() if features is not None else None

    def total_loss(img: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        loss, parts = image_loss(img, target, pixel_weight, l1_weight, ssim_weight)
        if target_feats is not None:
            feat = F.mse_loss(features(img), target_feats)
            loss = loss + feature_weight * feat
            parts["features"] = float(feat.detach())
        parts["image_loss"] = float(loss.detach())
        return loss, parts

    return total_loss


def _render(G: torch.nn.Module, w: torch.Tensor, w_plus: bool) -> torch.Tensor:
    """The image of w (one w broadcast to every layer) or of W+ (one per layer), with G's constant noise."""
    ws = w if w_plus else w.repeat(1, G.num_ws, 1)
    return G.synthesis(ws, noise_mode="const")


def _lr_ramp(t: float, rampdown: float, rampup: float) -> float:
    """NVlabs' projector schedule at t = step / steps: a short linear ramp up, a cosine ramp down at the end."""
    lr_ramp = min(1.0, (1.0 - t) / rampdown)
    lr_ramp = 0.5 - 0.5 * math.cos(lr_ramp * math.pi)
    return lr_ramp * min(1.0, t / rampup)


def _descend(optimizer: torch.optim.Optimizer, objective: torch.Tensor, noises: list[torch.Tensor]) -> None:
    """One Adam step, then the noise maps renormalised to zero mean and unit variance (NVlabs)."""
    optimizer.zero_grad(set_to_none=True)
    objective.backward()
    optimizer.step()
    with torch.no_grad():
        for v in noises:
            v -= v.mean()
            v *= v.square().mean().rsqrt()


# --------------------------------------------------------------------------------------------- outputs


def side_by_side(result: ProjectionResult) -> np.ndarray:
    """Target | projection as one uint8 (H, W, C) array."""
    return io.make_grid(io.to_uint8(torch.stack([result.target, result.image])), ncols=2)


def plot_loss_curve(path: str | os.PathLike, result: ProjectionResult) -> Path:
    """Image loss (and its MSE and 1 - MS-SSIM parts) per step, log scale, titled and labelled."""
    from matplotlib.figure import Figure

    steps = [h["step"] for h in result.history]
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot(111)
    ax.plot(steps, [h["image_loss"] for h in result.history], color=PALETTE[0], label="total image loss")
    ax.plot(steps, [h["mse"] for h in result.history], color=PALETTE[1], linestyle="--", label="pixel MSE")
    ax.plot(steps, [1.0 - h["ms_ssim"] for h in result.history], color=PALETTE[2], linestyle=":",
            label="1 - MS-SSIM")
    if any("features" in h for h in result.history):
        ax.plot(steps, [h.get("features", np.nan) for h in result.history], color=PALETTE[3], linestyle="-.",
                label="discriminator features")
    ax.set_yscale("log")
    ax.set_xlabel("optimisation step")
    ax.set_ylabel("loss")
    ax.set_title(f"Projection into {'W+' if result.w_plus else 'W'}: final image loss {result.final_loss:.4g}")
    ax.grid(True, linewidth=0.3, alpha=0.5)
    ax.legend(loc="upper right")
    return save_figure(fig, path)


__all__ = ["load_target", "image_loss", "noise_regularization", "find_noise_buffers", "set_noise_buffers",
           "ProjectionResult", "side_by_side", "plot_loss_curve", "project"]
