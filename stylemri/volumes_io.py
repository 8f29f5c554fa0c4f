"""Volumes out: NIfTI files with a real affine, and the three orthogonal mid-slices people look at.

Generated and prepared volumes are (C, D, H, W) with D = inferior->superior, H = posterior->anterior,
W = left->right (see `stylemri.data.volumes`). In NIfTI voxel order (i, j, k) = (W, H, D) that is RAS,
so the affine is diagonal with the isotropic voxel size, and the volume's centre sits at (0, 0, 0) mm.
Both sform and qform are set (code 2, aligned), so viewers (FSLeyes, ITK-SNAP, nibabel) show millimetres.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from stylemri.io import atomic_write, save_grid, to_uint8

NIFTI_XFORM_ALIGNED_ANAT = 2


def mid_slices(volumes: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(N, C, R, R, R) volumes -> (N, C, R, 3R) images: axial | coronal | sagittal mid-slices, display-oriented.

    Axial: anterior up, left-right across; coronal and sagittal: superior up. (N, C, H, W) images pass
    through unchanged, so sample code can call it for either kind of run.
    """
    v = torch.as_tensor(volumes)
    if v.ndim == 4:
        return v
    if v.ndim != 5:
        raise ValueError(f"mid_slices: expected (N, C, D, H, W) volumes, got shape {tuple(v.shape)}")
    d, h, w = v.shape[2:]
    axial = v[:, :, d // 2].flip(-2)  # (H, W): anterior up
    coronal = v[:, :, :, h // 2].flip(-2)  # (D, W): superior up
    sagittal = v[:, :, :, :, w // 2].flip(-2)  # (D, H): superior up, anterior right
    return torch.cat([axial, coronal, sagittal], dim=-1)


def views_for(frames: torch.Tensor, dims: int) -> torch.Tensor:
    """Frames whose last axes are (C, D, H, W) volumes -> the same frames as (C, D, 3W) mid-slice images
    (any leading axes, e.g. (rows, T, ...)); 2-D frames (dims=2) pass through. Lets every image tool
    (interpolation strips and GIFs, edit sequences) show a 3-D run's volumes."""
    if dims != 3:
        return frames
    lead = frames.shape[:-4]
    views = mid_slices(frames.reshape(-1, *frames.shape[-4:]))
    return views.reshape(*lead, *views.shape[1:])


def volume_affine(resolution: int, voxel_mm: float) -> np.ndarray:
    """4x4 RAS affine of an R^3 volume of isotropic `voxel_mm` voxels centred on the origin."""
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = -voxel_mm * (resolution - 1) / 2
    return affine


def to_nifti_array(volume: torch.Tensor | np.ndarray) -> np.ndarray:
    """(C, D, H, W) in [-1, 1] -> uint8 (X, Y, Z) = (W, H, D) for NIfTI; channel 0 of multi-channel volumes."""
    arr = to_uint8(volume)
    if arr.ndim == 4:
        arr = arr[0]
    return np.ascontiguousarray(arr.transpose(2, 1, 0))


def save_nifti(path: str | Path, volume: torch.Tensor | np.ndarray, voxel_mm: float) -> Path:
    """Write one (C, D, H, W) volume in [-1, 1] as a uint8 .nii.gz with RAS sform and qform, atomically."""
    import nibabel as nib

    data = to_nifti_array(volume)
    affine = volume_affine(data.shape[0], voxel_mm)
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=NIFTI_XFORM_ALIGNED_ANAT)
    img.set_qform(affine, code=NIFTI_XFORM_ALIGNED_ANAT)
    img.header.set_xyzt_units("mm")
    path = Path(path)
    with atomic_write(path) as f:
        f.write(img.to_bytes() if not path.name.endswith(".gz") else _gzip(img.to_bytes()))
    return path


def _gzip(raw: bytes) -> bytes:
    import gzip

    return gzip.compress(raw, compresslevel=6, mtime=0)  # mtime 0: the same volume gives the same bytes


__all__ = ["views_for", "mid_slices", "save_nifti", "to_nifti_array", "volume_affine"]
