"""Image bytes for HTTP responses: the display PNG, the downloads (16-bit PNG, NIfTI) written by the same
writers `stylemri generate` uses, and the signed difference map."""

from __future__ import annotations

import io as _io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from stylemri import write_generated as gen
from stylemri import io

DIFF_RANGE = 1.0  # the difference map's colour scale: -1 (blue) .. 0 (white) .. +1 (red), on the [-1, 1] image scale


def png_bytes(array: np.ndarray) -> bytes:
    """uint8 (C, H, W) (C = 1 or 3) or (H, W, 3) -> PNG bytes."""
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    buf = _io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


def png8(image: torch.Tensor) -> bytes:
    """The 8-bit PNG of one (C, R, R) image: io.to_uint8, the conversion `stylemri generate` uses."""
    return png_bytes(io.to_uint8(image))


def _written(write: Callable[[Path], object], name: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="stylemri-explore-") as tmp:
        path = Path(tmp) / name
        write(path)
        return path.read_bytes()


def png16(image: torch.Tensor) -> bytes:
    """16-bit PNG, written by stylemri.write_generated.write_png (as `stylemri generate --format png16`)."""
    return _written(lambda p: gen.write_png(p, image, bits=16), "image.png")


def nifti(image: torch.Tensor) -> bytes:
    """A one-slice float32 NIfTI volume, written by stylemri.write_generated.write_nifti."""
    return _written(lambda p: gen.write_nifti(p, image.unsqueeze(0)), "image.nii.gz")


def difference_map(image: torch.Tensor, reference: torch.Tensor) -> bytes:
    """image - reference (channel mean) as an RGB PNG on a fixed diverging scale of +-DIFF_RANGE."""
    from matplotlib import colormaps

    diff = (image.float() - reference.float()).mean(0).numpy()
    unit = np.clip(diff / (2 * DIFF_RANGE) + 0.5, 0.0, 1.0)
    rgb = colormaps["RdBu_r"](unit)[..., :3]
    return png_bytes(np.rint(rgb * 255).astype(np.uint8))


@dataclass(frozen=True)
class Format:
    media_type: str
    extension: str
    encode: Callable[[torch.Tensor], bytes]


FORMATS: dict[str, Format] = {
    "png": Format("image/png", "png", png8),
    "png16": Format("image/png", "png", png16),
    "nifti": Format("application/gzip", "nii.gz", nifti),
}

__all__ = ["DIFF_RANGE", "FORMATS", "Format", "png_bytes", "png8", "png16", "nifti", "difference_map"]
