"""A known-answer covariate data set: builtin:mni152 axial slices with atrophy that is a known function of age.

Each made-up subject gets one slice of the MNI152 template (nilearn's wheel, nothing downloaded) with:
- age (uniform in [AGE_LOW, AGE_HIGH]): ventricles dilated by a radius (the brain edge eroded by half of it) that grows
  linearly with age, up to `max_radius` pixels at the output size (0 at AGE_LOW), so the dark-CSF area
  rises with age by construction;
- sex (F/M): M heads are scaled up by SEX_SCALE, a visible size effect independent of age;
- mmse: 30 - (age - AGE_LOW) / 6 + noise, clipped to [10, 30], a confounder of age with no effect of its own;
- a small random shift and intensity jitter per subject, so the images are not copies of one another.

The tests and benchmarks/bench_covariates.py build it with `write_atrophy_dataset`: PNGs named
`sub-<id>_axial.png` (the BIDS subject rule) and a `covariates.csv` with subject,age,sex,mmse columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from stylemri.data.sources import mni152_path
from stylemri.io import atomic_write

AGE_LOW, AGE_HIGH = 55.0, 90.0
SEX_SCALE = 1.08
CSF_VALUE = 0.15  # dilated CSF: dark, but inside the brain mask of audit.morphometry (above 10% of full scale)
SLICE_MM = 87  # axial slice index of the 1 mm template through the lateral ventricles (MNI z = +15 mm)


@dataclass(frozen=True)
class AtrophyDataset:
    """Where the data set was written and its known answers, one entry per subject."""

    folder: Path
    table: Path
    subjects: tuple[str, ...]
    age: np.ndarray
    sex: tuple[str, ...]
    mmse: np.ndarray


def template_slice(resolution: int) -> np.ndarray:
    """The template's axial slice through the ventricles, square-padded, resampled to `resolution`, in [0, 1]."""
    import nibabel as nib

    data = np.asarray(nib.load(str(mni152_path())).dataobj, dtype=np.float32)[:, :, SLICE_MM]
    x = np.rot90(data) / max(float(data.max()), 1.0)
    side = max(x.shape)
    pad = [((side - s) // 2, side - s - (side - s) // 2) for s in x.shape]
    x = np.pad(x, pad)
    return np.clip(ndimage.zoom(x, resolution / side, order=1), 0.0, 1.0)


def atrophied(base: np.ndarray, radius: float, scale: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)
              ) -> np.ndarray:
    """`base` with its dark CSF dilated and its brain edge eroded by `radius` pixels (sub-pixel, blended),
    then zoomed by `scale` about the centre and shifted; values in [0, 1]."""
    brain = ndimage.binary_fill_holes(base > 0.10)
    csf = brain & (base < 0.40 * np.median(base[brain]))
    to_csf = ndimage.distance_transform_edt(~csf)  # distance of each pixel to dark CSF
    to_edge = ndimage.distance_transform_edt(brain)  # distance of each brain pixel to the outside
    ventricle = np.clip(radius - to_csf + 1.0, 0.0, 1.0) * brain
    erosion = np.clip(radius / 2 - to_edge + 1.0, 0.0, 1.0) * brain
    out = base * (1 - ventricle) + CSF_VALUE * ventricle
    out = out * (1 - erosion)  # the brain's edge recedes into the (black) background
    centre = (np.array(out.shape) - 1) / 2
    matrix = np.eye(2) / scale
    offset = centre - matrix @ centre - np.asarray(shift)
    return np.clip(ndimage.affine_transform(out, matrix, offset=offset, order=1), 0.0, 1.0)


def write_atrophy_dataset(outdir: str | Path, subjects: int = 64, resolution: int = 32, seed: int = 0,
                          max_radius: float | None = None) -> AtrophyDataset:
    """Write `subjects` PNG slices and covariates.csv under `outdir`; returns the known answers.

    `max_radius` (default resolution / 16 pixels): the atrophy radius at AGE_HIGH."""
    folder = Path(outdir)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    base = template_slice(resolution)
    radius_max = resolution / 16 if max_radius is None else float(max_radius)
    ages = np.round(rng.uniform(AGE_LOW, AGE_HIGH, subjects), 1)
    sexes = tuple("M" if s else "F" for s in rng.randint(0, 2, subjects))
    mmse = np.clip(np.round(30 - (ages - AGE_LOW) / 6 + rng.normal(0, 1.5, subjects)), 10, 30)
    ids = tuple(f"{i:03d}" for i in range(subjects))
    for sid, age, sex in zip(ids, ages, sexes):
        radius = radius_max * (age - AGE_LOW) / (AGE_HIGH - AGE_LOW)
        img = atrophied(base, radius, SEX_SCALE if sex == "M" else 1.0, tuple(rng.uniform(-0.5, 0.5, 2)))
        img = np.clip(img * rng.uniform(0.95, 1.05), 0.0, 1.0)
        with atomic_write(folder / "images" / f"sub-{sid}_axial.png", "wb") as fh:
            Image.fromarray(np.round(img * 255).astype(np.uint8)).save(fh, format="PNG")
    lines = ["subject,age,sex,mmse"] + [f"sub-{i},{a:g},{s},{m:g}" for i, a, s, m in zip(ids, ages, sexes, mmse)]
    table = folder / "covariates.csv"
    with atomic_write(table, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return AtrophyDataset(folder / "images", table, tuple(f"sub-{i}" for i in ids), ages, sexes, mmse)


__all__ = ["AGE_LOW", "AGE_HIGH", "SEX_SCALE", "AtrophyDataset", "template_slice", "atrophied",
           "write_atrophy_dataset"]
