"""What `stylemri generate` writes: which (seed, class) images to draw (the seed lists every command parses),
their file names, and the writers that stream them to disk (one file per image, or one NIfTI volume, plus a
grid and index.csv).

Images come from `TrainedModel.generate` (one seed-to-image path for every tool). Writing streams: images
are generated and written a chunk at a time, so memory stays flat however many are asked for.
"""

from __future__ import annotations

import io as _io
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from stylemri import io
from stylemri.errors import UserError
from stylemri.volumes_io import mid_slices, save_nifti

FORMATS = ("png", "png16", "npy", "nifti")
MAX_IMAGES = 1_000_000  # the most seeds (or --num) one command accepts
GRID_MAX = 256  # grid.png shows at most this many images (the first seeds of each class)
CHUNK = 256  # images generated and written per step: bounds memory whatever the count

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
        if values and not (0 <= values[0] and values[-1] < 2**32):
            bad = values[0] if values[0] < 0 else values[-1]
            raise UserError(f"seeds {text!r}: seed {bad} out of range; expected integers in [0, 2^32)")
        if len(seeds) + len(values) > MAX_IMAGES:
            raise UserError(f"seeds {text!r}: more than {MAX_IMAGES:,} seeds; expected at most {MAX_IMAGES:,}")
        seeds.extend(values)
    if not seeds:
        raise UserError(f"seeds {text!r}: expected a list like '0-9,42'")
    return list(dict.fromkeys(seeds))


SEED_LIMIT = 2**32  # seeds are NVlabs' np.random.RandomState(seed) seeds: integers in [0, 2^32)


def check_seed(seed: int, count: int = 1, flag: str = "--seed") -> int:
    """A --seed that starts `count` consecutive seeds (seed .. seed + count - 1), all in [0, 2^32)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0 or seed + max(count, 1) > SEED_LIMIT:
        what = f" (first of {count:,} consecutive seeds)" if count > 1 else ""
        raise UserError(f"{flag} {seed}{what}: expected an integer seed in [0, 2^32)")
    return seed


def seeds_from_num(num: int) -> list[int]:
    """--num N -> seeds 0..N-1, capped like --seeds."""
    if num < 1:
        raise UserError(f"--num {num}: expected at least one image")
    if num > MAX_IMAGES:
        raise UserError(f"--num {num}: expected at most {MAX_IMAGES:,} images (use --seeds for a range)")
    return list(range(num))


def safe_name(name: str) -> str:
    """A class name as a file-name part: letters (any script), digits and . _ - kept, the rest '_'."""
    text = unicodedata.normalize("NFC", str(name))
    return re.sub(r"[^\w.-]+", "_", text).strip(".") or "class"


def class_stems(class_names: Sequence[str]) -> list[str]:
    """One distinct file-name part per class: its safe name, plus `-c<index>` where two would look the
    same (after sanitising, or differing only in case, which some file systems ignore)."""
    stems = [safe_name(n) for n in class_names]
    keys = [s.casefold() for s in stems]
    return [s if keys.count(k) == 1 else f"{s}-c{i}" for i, (s, k) in enumerate(zip(stems, keys))]


@dataclass(frozen=True)
class Sample:
    """What one generated image is: its seed and class (index, name and file-name part; None unconditional)."""

    seed: int
    class_index: int | None
    class_name: str | None
    class_stem: str | None = None

    @property
    def stem(self) -> str:
        stem = self.class_stem if self.class_stem is not None else self.class_name
        return f"seed{self.seed:04d}" + (f"_{stem}" if stem is not None else "")


def plan_samples(seeds: Sequence[int], class_index: int | None, class_names: Sequence[str], c_dim: int) -> list[Sample]:
    """Which (seed, class) pairs to draw: one class if given, else every class for each seed (conditional)."""
    if c_dim == 0:
        return [Sample(s, None, None) for s in seeds]
    names = list(class_names) if len(class_names) == c_dim else [str(k) for k in range(c_dim)]
    stems = class_stems(names)
    classes = [class_index] if class_index is not None else list(range(c_dim))
    return [Sample(s, k, names[k], stems[k]) for k in classes for s in seeds]


# ---------------------------------------------------------------------------------------------- writers


def write_png(path: str | os.PathLike, image: torch.Tensor | np.ndarray, bits: int = 8) -> Path:
    """One (C, H, W) image in [-1, 1] -> 8-bit (exact rint((x+1)*127.5), clipped) or 16-bit PNG."""
    arr = np.asarray(io.to_uint8(image) if bits == 8 else io.to_uint16(image))
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


class NiftiWriter:
    """Slices (C, H, W) in, one float32 NIfTI volume out (the layout of `images_to_volume`), memory flat:
    slices go to a temporary file beside the output, then stream into the (gzipped) volume in voxel order."""

    def __init__(self, path: str | os.PathLike, num: int, shape: tuple[int, int, int], voxel_mm: float = 1.0) -> None:
        self.path, self.num, (self.c, self.h, self.w) = Path(path), int(num), shape
        self.voxel_mm = voxel_mm
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.slices.tmp")
        self._slices = np.lib.format.open_memmap(self._tmp, "w+", np.float32, (self.num, self.c, self.h, self.w))
        self._count = 0

    def add(self, image: torch.Tensor | np.ndarray) -> None:
        arr = image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        self._slices[self._count] = arr
        self._count += 1

    def abort(self) -> None:
        """Drop the temporary slices (the volume is not written)."""
        del self._slices
        self._tmp.unlink(missing_ok=True)

    def close(self) -> Path:
        import gzip

        import nibabel as nib

        try:
            if self._count != self.num:
                raise ValueError(f"NIfTI volume: {self._count} slices written, {self.num} announced")
            shape = (self.w, self.h, self.num) + ((self.c,) if self.c > 1 else ())
            header = nib.Nifti1Image(np.zeros((1, 1, 1), np.float32), np.diag([self.voxel_mm] * 3 + [1.0])).header
            header.set_data_shape(shape)
            header["cal_min"], header["cal_max"] = -1.0, 1.0
            header["scl_slope"], header["scl_inter"] = 1.0, 0.0
            header.set_xyzt_units("mm")
            header.set_data_offset(352)
            buf = _io.BytesIO()
            header.write_to(buf)
            head = buf.getvalue().ljust(352, b"\0")
            with io.atomic_write(self.path) as f:
                out = gzip.GzipFile(fileobj=f, mode="wb", compresslevel=6, mtime=0) \
                    if self.path.name.endswith(".gz") else f
                out.write(head)
                for ch in range(self.c):  # Fortran order of (W, H, N, C): channel slowest, then slice
                    for k in range(self.num):
                        out.write(np.ascontiguousarray(self._slices[k, ch, ::-1, :].T, dtype="<f4").tobytes(order="F"))
                if out is not f:
                    out.close()
        finally:
            del self._slices
            self._tmp.unlink(missing_ok=True)
        return self.path


def write_nifti(path: str | os.PathLike, images: torch.Tensor | np.ndarray, voxel_mm: float = 1.0) -> Path:
    """Stack slices into one float32 NIfTI volume (values as generated, display window [-1, 1])."""
    images = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images, np.float32))
    writer = NiftiWriter(path, len(images), tuple(images.shape[1:]), voxel_mm)  # type: ignore[arg-type]
    for img in images:
        writer.add(img)
    return writer.close()


def write_samples(outdir: str | os.PathLike, samples: Sequence[Sample],
                  images_of: Callable[[Sequence[Sample]], torch.Tensor], fmt: str = "png",
                  chunk: int = CHUNK) -> list[Path]:
    """Generate and write `samples` a chunk at a time: one file per image (or one volume for nifti), a PNG
    grid of the first seeds of each class, and index.csv. Returns the paths written."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    stems = [s.stem for s in samples]
    if len(set(stems)) != len(stems):  # never overwrite a file this command wrote itself
        raise ValueError("two samples would share a file name")
    outdir = Path(outdir)
    classes = list(dict.fromkeys(s.class_index for s in samples))
    per_class = max(GRID_MAX // max(len(classes), 1), 1)
    in_grid = {k: set(list(dict.fromkeys(s.seed for s in samples if s.class_index == k))[:per_class])
               for k in classes}
    grid: list[torch.Tensor] = []
    written: list[Path] = []
    volume: NiftiWriter | None = None
    try:
        with io.csv_writer(outdir / "index.csv", ["file", "slice", "seed", "class"]) as table:
            for start in range(0, len(samples), max(chunk, 1)):
                part = samples[start:start + chunk]
                images = images_of(part)
                if len(images) != len(part):
                    raise ValueError(f"{len(images)} images for {len(part)} samples")
                for k, (s, img) in enumerate(zip(part, images), start):
                    if s.seed in in_grid[s.class_index]:
                        grid.append(img)
                    if fmt == "nifti":
                        if volume is None:
                            volume = NiftiWriter(outdir / "volume.nii.gz", len(samples), tuple(img.shape))
                        volume.add(img)
                        table.writerow(["volume.nii.gz", k, s.seed, s.class_name or ""])
                    else:
                        written.append(_write_one(outdir / f"{s.stem}", img, fmt))
                        table.writerow([written[-1].name, "", s.seed, s.class_name or ""])
            if volume is not None:
                written.append(volume.close())
                volume = None
    finally:
        if volume is not None:
            volume.abort()
    if grid:
        cols = len(grid) // len(classes) if len(classes) > 1 else None  # one row per class
        written.append(io.save_grid(outdir / "grid.png", torch.stack(grid), ncols=cols))
    written.append(outdir / "index.csv")
    return written


def _write_one(stem: Path, image: torch.Tensor, fmt: str) -> Path:
    if fmt == "npy":
        return write_npy(stem.with_name(stem.name + ".npy"), image.numpy().astype(np.float32))
    return write_png(stem.with_name(stem.name + ".png"), image, bits=16 if fmt == "png16" else 8)


def write_volume_samples(outdir: str | Path, samples: Sequence[Any], volumes: torch.Tensor, voxel_mm: float,
                         grid_cols: int | None = None) -> list[Path]:
    """`stylemri generate` for a 3-D run: per sample <stem>.nii.gz and <stem>.png (its three mid-slices),
    grid.png of all mid-slice triples (one row per class) and index.csv; returns the paths written."""
    if len(samples) != len(volumes):
        raise ValueError("one sample record per volume expected")
    outdir = Path(outdir)
    written: list[Path] = []
    rows = []
    views = mid_slices(volumes)
    for s, vol, view in zip(samples, volumes, views):
        written.append(save_nifti(outdir / f"{s.stem}.nii.gz", vol, voxel_mm))
        written.append(write_png(outdir / f"{s.stem}.png", view))
        rows.append({"file": f"{s.stem}.nii.gz", "slice": "", "seed": s.seed, "class": s.class_name or ""})
    if len(volumes):
        if grid_cols is None:
            n_classes = len({s.class_index for s in samples})
            grid_cols = len(samples) // n_classes if n_classes > 1 else min(len(samples), 4)
        written.append(io.save_grid(outdir / "grid.png", views, ncols=grid_cols))
    written.append(io.write_csv(outdir / "index.csv", ["file", "slice", "seed", "class"], rows))
    return written


__all__ = ["write_volume_samples", 
    "FORMATS", "MAX_IMAGES", "SEED_LIMIT", "Sample", "check_seed", "parse_seeds", "seeds_from_num",
    "safe_name", "class_stems", "plan_samples",
    "write_png", "write_npy", "images_to_volume", "NiftiWriter", "write_nifti", "write_samples",
]
