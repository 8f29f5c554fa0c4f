"""Images from a trained generator: seeds, classes, truncation, noise, and the writers for each format.

Latents follow NVlabs: seed s gives z = np.random.RandomState(s).randn(z_dim), so a seed names the same
image across runs, machines and tools (and `--noise const` makes it bit-reproducible on one machine).
"""

from __future__ import annotations

import csv
import io as _io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from stylemri import io
from stylemri.errors import UserError

FORMATS = ("png", "png16", "npy", "nifti")
NOISE_MODES = ("const", "random", "none")

_RANGE = re.compile(r"^\s*(-?\d+)\s*(?:-|\.\.)\s*(-?\d+)\s*$")


def parse_seeds(text: str) -> list[int]:
    """'0-9,42' -> [0, 1, ..., 9, 42]; order kept, duplicates dropped; seeds in [0, 2**32)."""
    if text is None or not str(text).strip():
        raise UserError(f"seeds {text!r}: expected a list like '0-9,42'")
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        match = _RANGE.match(part)
        try:
            if match:
                lo, hi = int(match.group(1)), int(match.group(2))
                if hi < lo:
                    raise ValueError
                values = range(lo, hi + 1)
            else:
                values = range(int(part), int(part) + 1)
        except ValueError:
            raise UserError(f"seeds {text!r}: cannot parse {part!r}; expected a list like '0-9,42'") from None
        for v in values:
            if not 0 <= v < 2**32:
                raise UserError(f"seeds {text!r}: seed {v} out of range; expected integers in [0, 2^32)")
            seeds.append(v)
    if not seeds:
        raise UserError(f"seeds {text!r}: expected a list like '0-9,42'")
    if len(seeds) > 1_000_000:
        raise UserError(f"seeds {text!r}: {len(seeds)} seeds; expected at most 1,000,000")
    return list(dict.fromkeys(seeds))


def seed_latents(seeds: Sequence[int], z_dim: int) -> torch.Tensor:
    """One z per seed, drawn as NVlabs does: RandomState(seed).randn(z_dim) (float32, (N, z_dim))."""
    z = np.stack([np.random.RandomState(int(s)).randn(z_dim) for s in seeds]) if seeds else np.zeros((0, z_dim))
    return torch.from_numpy(z.astype(np.float32))


def resolve_class(cls: str | int | None, class_names: Sequence[str], c_dim: int) -> int | None:
    """A class given by name (or index) -> its index; errors name the model's classes."""
    if cls is None:
        return None
    if c_dim == 0:
        raise UserError(f"--class {cls}: this model is unconditional (trained on one class); drop --class")
    names = list(class_names)
    if str(cls) in names:
        return names.index(str(cls))
    lowered = [n.lower() for n in names]
    if str(cls).lower() in lowered and lowered.count(str(cls).lower()) == 1:
        return lowered.index(str(cls).lower())
    raise UserError(f"--class {cls}: the model has no such class; expected one of {', '.join(names) or '(none)'}")


def class_labels(indices: Sequence[int | None] | torch.Tensor, c_dim: int,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Class indices -> one-hot (N, c_dim); an unconditional model gets (N, 0)."""
    n = len(indices)
    c = torch.zeros(n, c_dim, device=device)
    if c_dim:
        for i, k in enumerate(indices):
            if k is None:
                raise ValueError("a conditional model needs a class for every latent")
            c[i, int(k)] = 1.0
    return c


def model_device(G: torch.nn.Module) -> torch.device:
    for p in G.parameters():
        return p.device
    for b in G.buffers():
        return b.device
    return torch.device("cpu")


@torch.no_grad()
def map_latents(G: torch.nn.Module, z: torch.Tensor, c: torch.Tensor, psi: float = 1.0,
                batch_size: int = 64) -> torch.Tensor:
    """z (N, z_dim), c (N, c_dim) -> ws (N, num_ws, w_dim) with truncation psi, in batches."""
    dev = model_device(G)
    out = [G.mapping(z[i:i + batch_size].to(dev), c[i:i + batch_size].to(dev), psi=psi)
           for i in range(0, len(z), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, G.num_ws, G.w_dim, device=dev)


@torch.no_grad()
def synthesize(G: torch.nn.Module, ws: torch.Tensor, noise_mode: str = "const", batch_size: int = 32) -> torch.Tensor:
    """ws (N, num_ws, w_dim) -> images (N, C, R, R) float32 on the CPU, raw generator output."""
    if noise_mode not in NOISE_MODES:
        raise UserError(f"--noise {noise_mode}: expected one of {', '.join(NOISE_MODES)}")
    dev = model_device(G)
    ws = ws.to(dev)
    if ws.ndim == 2:
        ws = ws.unsqueeze(1).repeat(1, G.num_ws, 1)
    out = [G.synthesis(ws[i:i + batch_size], noise_mode=noise_mode).float().cpu()
           for i in range(0, len(ws), batch_size)]
    if not out:
        return torch.zeros(0, G.img_channels, G.resolution, G.resolution)
    return torch.cat(out)


@torch.no_grad()
def class_mean_ws(G: torch.nn.Module, num_samples: int = 2000, seed: int = 0, batch_size: int = 256) -> torch.Tensor:
    """Mean w of each class (num_classes, w_dim) over `num_samples` random z per class (untruncated).

    For an unconditional model this is one row: the model's mean w."""
    if num_samples < 1:
        raise UserError(f"number of samples {num_samples}: expected at least 1")
    gen = torch.Generator().manual_seed(seed)
    means = []
    for k in range(max(G.c_dim, 1)):
        total = torch.zeros(G.w_dim, dtype=torch.float64)
        for i in range(0, num_samples, batch_size):
            n = min(batch_size, num_samples - i)
            z = torch.randn(n, G.z_dim, generator=gen)
            c = class_labels([k] * n if G.c_dim else [None] * n, G.c_dim)
            total += map_latents(G, z, c)[:, 0].double().sum(0).cpu()
        means.append((total / num_samples).float())
    return torch.stack(means)


@dataclass(frozen=True)
class Sample:
    """What one generated image is: its seed and class (index and name; None for unconditional)."""

    seed: int
    class_index: int | None
    class_name: str | None

    @property
    def stem(self) -> str:
        return f"seed{self.seed:04d}" + (f"_{_safe(self.class_name)}" if self.class_name is not None else "")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "class"


def plan_samples(seeds: Sequence[int], class_index: int | None, class_names: Sequence[str], c_dim: int) -> list[Sample]:
    """Which (seed, class) pairs to draw: one class if given, else every class for each seed (conditional)."""
    if c_dim == 0:
        return [Sample(s, None, None) for s in seeds]
    names = list(class_names) if len(class_names) == c_dim else [str(k) for k in range(c_dim)]
    classes = [class_index] if class_index is not None else list(range(c_dim))
    return [Sample(s, k, names[k]) for k in classes for s in seeds]


@torch.no_grad()
def generate_images(G: torch.nn.Module, samples: Sequence[Sample], psi: float = 1.0, noise_mode: str = "const",
                    batch_size: int = 32) -> torch.Tensor:
    """The images (N, C, R, R) for `samples`, each from its own seed's z (independent of batching)."""
    if noise_mode not in NOISE_MODES:
        raise UserError(f"--noise {noise_mode}: expected one of {', '.join(NOISE_MODES)}")
    z = seed_latents([s.seed for s in samples], G.z_dim)
    c = class_labels([s.class_index for s in samples], G.c_dim)
    out = []
    dev = model_device(G)
    for i in range(0, len(samples), batch_size):
        if noise_mode == "random":
            # per-sample noise from the seed, so an image does not depend on what else is in its batch
            imgs = []
            with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                for j in range(i, min(i + batch_size, len(samples))):
                    torch.manual_seed(samples[j].seed)
                    ws = G.mapping(z[j:j + 1].to(dev), c[j:j + 1].to(dev), psi=psi)
                    imgs.append(G.synthesis(ws, noise_mode="random").float().cpu())
            out.append(torch.cat(imgs))
        else:
            ws = G.mapping(z[i:i + batch_size].to(dev), c[i:i + batch_size].to(dev), psi=psi)
            out.append(G.synthesis(ws, noise_mode=noise_mode).float().cpu())
    if not out:
        return torch.zeros(0, G.img_channels, G.resolution, G.resolution)
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------- writers


def write_png(path: str | os.PathLike, image: torch.Tensor | np.ndarray, bits: int = 8) -> Path:
    """One (C, H, W) image in [-1, 1] -> 8-bit (exact rint((x+1)*127.5), clipped) or 16-bit PNG."""
    arr = io.to_uint8(image) if bits == 8 else io.to_uint16(image)
    arr = np.asarray(arr)
    if arr.ndim == 3:
        arr = arr.transpose(1, 2, 0)
    return io.save_image(path, arr)


def write_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """An array as .npy, atomically."""
    path = Path(path)
    buf = _io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    with io.atomic_write(path) as f:
        f.write(buf.getvalue())
    return path


def images_to_volume(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, C, H, W) slices -> (W, H, N) volume (plus a 4th axis C when C > 1) in NIfTI voxel order.

    Image row 0 is the top of the slice; voxel axis 1 points up, so slice k displays upright in
    radiological viewers (x = image column, y = flipped image row, z = slice index)."""
    arr = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, np.float32)
    vol = arr[:, :, ::-1, :].transpose(3, 2, 0, 1)  # (W, H, N, C)
    vol = np.ascontiguousarray(vol, dtype=np.float32)
    return vol[..., 0] if vol.shape[3] == 1 else vol


def write_nifti(path: str | os.PathLike, images: torch.Tensor | np.ndarray, voxel_mm: float = 1.0) -> Path:
    """Stack slices into one float32 NIfTI volume (values as generated, display window [-1, 1])."""
    import nibabel as nib

    vol = images_to_volume(images)
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    img = nib.Nifti1Image(vol, affine)
    img.header["cal_min"], img.header["cal_max"] = -1.0, 1.0
    img.header.set_xyzt_units("mm")
    data = img.to_bytes()
    path = Path(path)
    if path.name.endswith(".gz"):
        import gzip

        data = gzip.compress(data, compresslevel=6, mtime=0)  # mtime=0: identical bytes run to run
    with io.atomic_write(path) as f:
        f.write(data)
    return path


def write_manifest(path: str | os.PathLike, rows: Iterable[dict], fields: Sequence[str]) -> Path:
    """A CSV index of what was written (one row per image)."""
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in fields})
    with io.atomic_write(path, "w") as f:
        f.write(buf.getvalue())
    return Path(path)


def write_samples(outdir: str | os.PathLike, samples: Sequence[Sample], images: torch.Tensor, fmt: str = "png",
                  grid_cols: int | None = None) -> list[Path]:
    """Write each image (or one volume for nifti), a PNG grid and index.csv; returns the paths written."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    if len(samples) != len(images):
        raise ValueError("one sample record per image expected")
    outdir = Path(outdir)
    written: list[Path] = []
    rows = []
    if fmt == "nifti":
        written.append(write_nifti(outdir / "volume.nii.gz", images))
        for k, s in enumerate(samples):
            rows.append({"file": "volume.nii.gz", "slice": k, "seed": s.seed, "class": s.class_name or ""})
    else:
        ext = "npy" if fmt == "npy" else "png"
        for k, (s, img) in enumerate(zip(samples, images)):
            path = outdir / f"{s.stem}.{ext}"
            if fmt == "png":
                write_png(path, img, bits=8)
            elif fmt == "png16":
                write_png(path, img, bits=16)
            else:
                write_npy(path, img.numpy().astype(np.float32))
            written.append(path)
            rows.append({"file": path.name, "slice": "", "seed": s.seed, "class": s.class_name or ""})
    if len(images):
        if grid_cols is None:
            n_classes = len({s.class_index for s in samples})
            grid_cols = len(samples) // n_classes if n_classes > 1 else None  # one row per class
        written.append(io.save_grid(outdir / "grid.png", images, ncols=grid_cols))
    written.append(write_manifest(outdir / "index.csv", rows, ["file", "slice", "seed", "class"]))
    return written


__all__ = [
    "FORMATS", "NOISE_MODES", "Sample", "parse_seeds", "seed_latents", "resolve_class", "class_labels",
    "map_latents", "synthesize", "class_mean_ws", "plan_samples", "generate_images", "write_png",
    "write_npy", "write_nifti", "images_to_volume", "write_manifest", "write_samples", "model_device",
]
