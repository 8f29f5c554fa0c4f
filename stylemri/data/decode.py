"""Decoding: image files and NIfTI volumes -> float planes in [0, 1] -> square uint8 pyramids.

Everything stays float32 from the decoded pixels until the one final quantization to uint8, so 16-bit
sources keep their precision through padding and resizing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from stylemri.config import AXES

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NIFTI_EXTENSIONS = (".nii", ".nii.gz")
CONTENT_THRESHOLD = 0.1  # a voxel counts as brain content above this fraction of the robust intensity range
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, what Pillow uses for RGB -> L


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def is_nifti_name(name: str) -> bool:
    return name.lower().endswith(NIFTI_EXTENSIONS)


@dataclass(frozen=True)
class DecodedImage:
    """One decoded image: planes (C, H, W) float32 in [0, 1] plus what the original looked like."""

    planes: np.ndarray
    size: str  # "WxH" of the file
    depth: str  # "8-bit", "16-bit", "32-bit int", "32-bit float", "1-bit"
    kind: str  # gray | gray+alpha | rgb | rgba | palette | cmyk | ...


def decode_image(path: str | Path, channels: int) -> DecodedImage:
    """Read one image with Pillow into (channels, H, W) float32 in [0, 1]; raises on corrupt files."""
    with Image.open(path) as im:
        im.load()  # forces the full decode: truncated or corrupt data raises here
        size = f"{im.width}x{im.height}"
        mode = im.mode
        if mode == "1":
            gray, depth, kind = np.asarray(im.convert("L"), np.float32) / 255.0, "1-bit", "gray"
            return DecodedImage(_to_channels(gray, channels), size, depth, kind)
        if mode == "L":
            return DecodedImage(_to_channels(np.asarray(im, np.float32) / 255.0, channels), size, "8-bit", "gray")
        if mode.startswith("I;16") or mode == "I":
            raw = np.asarray(im).astype(np.float32)
            depth = "16-bit" if mode.startswith("I;16") or raw.max(initial=0) <= 65535 else "32-bit int"
            return DecodedImage(_to_channels(_scale_by_range(raw), channels), size, depth, "gray")
        if mode == "F":
            raw = np.nan_to_num(np.asarray(im, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
            return DecodedImage(_to_channels(_scale_by_range(raw), channels), size, "32-bit float", "gray")
        if mode == "LA":
            la = np.asarray(im, np.float32) / 255.0
            gray = la[..., 0] * la[..., 1]  # composite over black, the MRI background
            return DecodedImage(_to_channels(gray, channels), size, "8-bit", "gray+alpha")
        kind = {"RGB": "rgb", "RGBA": "rgba", "P": "palette", "PA": "palette", "CMYK": "cmyk"}.get(mode, mode.lower())
        has_alpha = mode in ("RGBA", "PA") or (mode == "P" and "transparency" in im.info)
        rgb = np.asarray(im.convert("RGBA" if has_alpha else "RGB"), np.float32) / 255.0
    if has_alpha:
        rgb = rgb[..., :3] * rgb[..., 3:4]
    if channels == 3:
        return DecodedImage(np.ascontiguousarray(rgb.transpose(2, 0, 1)), size, "8-bit", kind)
    return DecodedImage((rgb @ LUMA)[None], size, "8-bit", kind)


def _scale_by_range(raw: np.ndarray) -> np.ndarray:
    """High-bit-depth images rarely use their full range (12 bits in 16): map [min(0, lo), hi] to [0, 1]."""
    lo = min(0.0, float(raw.min(initial=0)))
    hi = float(raw.max(initial=0))
    if hi <= lo:
        return np.zeros_like(raw, dtype=np.float32)
    return ((raw - lo) / (hi - lo)).astype(np.float32)


def _to_channels(gray: np.ndarray, channels: int) -> np.ndarray:
    gray = np.ascontiguousarray(gray, np.float32)[None]
    return np.repeat(gray, 3, axis=0) if channels == 3 else gray


def fit_square(planes: np.ndarray, resolution: int) -> tuple[np.ndarray, bool]:
    """Centre-pad (C, H, W) to square with black, then resize to R (area down, bicubic up); -> (img, upsampled)."""
    c, h, w = planes.shape
    side = max(h, w)
    if h != w:
        padded = np.zeros((c, side, side), np.float32)
        y0, x0 = (side - h) // 2, (side - w) // 2
        padded[:, y0 : y0 + h, x0 : x0 + w] = planes
        planes = padded
    if side == resolution:
        return np.ascontiguousarray(planes, np.float32), False
    filt = Image.Resampling.BOX if side > resolution else Image.Resampling.BICUBIC
    out = np.stack([_resize_plane(p, resolution, resolution, filt) for p in planes])
    return out, side < resolution


def _resize_plane(plane: np.ndarray, height: int, width: int, filt: Image.Resampling) -> np.ndarray:
    img = Image.fromarray(np.ascontiguousarray(plane, np.float32))
    return np.asarray(img.resize((width, height), filt), np.float32)


def quantize(x: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 with rounding: the one quantization step of the pipeline."""
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def pyramid(img: np.ndarray, min_resolution: int = 4) -> list[np.ndarray]:
    """uint8 levels R, R/2, ..., 4 of a float (C, R, R) image, each an exact area average of the float image."""
    levels = [quantize(img)]
    x = img
    while x.shape[-1] // 2 >= min_resolution:
        c, r, _ = x.shape
        x = x.reshape(c, r // 2, 2, r // 2, 2).mean(axis=(2, 4), dtype=np.float32)
        levels.append(quantize(x))
    return levels


# ----------------------------------------------------------------------------------------------------------
# NIfTI volumes


@dataclass(frozen=True)
class Volume:
    """A canonical (RAS) volume normalized to [0, 1], with its voxel sizes and what the file held."""

    data: np.ndarray  # (X, Y, Z) float32 in [0, 1]
    zooms: tuple[float, float, float]
    size: str  # "XxYxZ" of the file
    depth: str  # the stored data type, e.g. "uint8", "int16", "float32"


def load_volume(path: str | Path) -> Volume:
    """nibabel read, reorient to RAS, NaN/Inf -> 0, clip to the 0.5-99.5 percentiles, scale to [0, 1]."""
    import nibabel as nib  # imported here: only volume sources pay for it

    img = nib.load(str(path))
    shape = tuple(int(s) for s in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise ValueError(f"expected a 3-D volume, got shape {'x'.join(map(str, img.shape))}")
    depth = str(img.get_data_dtype())
    img = nib.as_closest_canonical(img)
    data = np.asarray(img.get_fdata(dtype=np.float32)).reshape(img.shape[:3])
    data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = np.percentile(data, [0.5, 99.5])
    if hi > lo:
        data = np.clip((data - lo) / (hi - lo), 0.0, 1.0, dtype=np.float32)
    else:
        data = np.zeros_like(data)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return Volume(np.ascontiguousarray(data, np.float32), zooms, "x".join(map(str, shape)), depth)  # type: ignore[arg-type]


def content_fractions(vol: Volume, axis: str) -> np.ndarray:
    """Fraction of voxels above CONTENT_THRESHOLD in every slice along `axis`."""
    other = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}[axis]
    return (vol.data > CONTENT_THRESHOLD).mean(axis=other)


def volume_slice(vol: Volume, axis: str, index: int) -> np.ndarray:
    """One slice as a display-oriented (H, W) plane: superior/anterior up, physical aspect ratio kept."""
    d, (zx, zy, zz) = vol.data, vol.zooms
    if axis == "axial":
        plane, spacing = d[:, :, index].T[::-1], (zy, zx)
    elif axis == "coronal":
        plane, spacing = d[:, index, :].T[::-1], (zz, zx)
    else:
        plane, spacing = d[index, :, :].T[::-1], (zz, zy)
    plane = np.ascontiguousarray(plane, np.float32)
    sr, sc = spacing
    if sr > 0 and sc > 0 and abs(sr - sc) > 1e-3 * max(sr, sc):
        s = min(sr, sc)  # resample the coarser axis up so one pixel is square in millimetres
        h, w = plane.shape
        plane = np.clip(_resize_plane(plane, round(h * sr / s), round(w * sc / s), Image.Resampling.BICUBIC), 0, 1)
    return plane
