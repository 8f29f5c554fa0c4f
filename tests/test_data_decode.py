"""Decoding: bit depths, colour modes, padding, resizing, NIfTI orientation/normalization, values in [-1, 1]."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import brain_volume, phantom, write_corrupt_jpeg, write_jpeg_rgb, write_nifti, write_png8, write_png16
from PIL import Image

from stylemri.config import DataConfig
from stylemri.data import load_dataset
from stylemri.data.decode import decode_image, fit_square, load_volume, pyramid, volume_slice


def _single(tmp_path, name="img"):
    return DataConfig(source=str(tmp_path / name), resolution=16)


def test_png8_exact_values_at_native_size(tmp_path):
    arr = write_png8(tmp_path / "img" / "a.png", 16, 16)
    ds = load_dataset(_single(tmp_path))
    x, label = ds[0]
    assert x.dtype.is_floating_point and tuple(x.shape) == (1, 16, 16) and label == 0
    np.testing.assert_allclose(x[0].numpy(), arr / 127.5 - 1, atol=1e-6)
    assert ds.report.bit_depths == {"8-bit": 1} and ds.report.channels_seen == {"gray": 1}
    assert ds.report.original_sizes == {"16x16": 1}


def test_png16_keeps_precision_until_final_quantization(tmp_path):
    # A 16-bit image using 12 bits (max 4095); 2x2 area averages must be taken before rounding to uint8.
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 4096, size=(32, 32)).astype(np.uint16)
    raw[0, 0] = 4095
    write_png16(tmp_path / "img" / "a.png", raw)
    ds = load_dataset(_single(tmp_path))
    got = np.rint((ds[0][0][0].numpy() + 1) * 127.5)
    expected = np.rint((raw / 4095.0).reshape(16, 2, 16, 2).mean(axis=(1, 3)) * 255)
    np.testing.assert_array_equal(got, expected)
    early = np.rint(np.rint(raw / 4095.0 * 255).reshape(16, 2, 16, 2).mean(axis=(1, 3)))
    assert (early != expected).any()  # the test would catch quantizing before resizing
    assert ds.report.bit_depths == {"16-bit": 1}


def test_decode_image_modes(tmp_path):
    rgb = write_jpeg_rgb(tmp_path / "c.jpg", 12, 12)
    gray = decode_image(tmp_path / "c.jpg", 1)
    assert gray.planes.shape == (1, 12, 12) and gray.kind == "rgb" and gray.depth == "8-bit"
    luma = (rgb.astype(np.float32) / 255) @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(gray.planes[0], luma, atol=0.05)  # JPEG is lossy
    color = decode_image(tmp_path / "c.jpg", 3)
    assert color.planes.shape == (3, 12, 12)
    assert color.planes[0].mean() > color.planes[1].mean() > color.planes[2].mean()

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:2, :, 3] = 255  # top half opaque, bottom half transparent -> black over the MRI background
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    planes = decode_image(tmp_path / "a.png", 1).planes[0]
    np.testing.assert_allclose(planes[:2], 200 / 255, atol=1e-5)
    np.testing.assert_allclose(planes[2:], 0, atol=1e-6)

    Image.fromarray(np.full((5, 3), 255, np.uint8)).convert("P").save(tmp_path / "p.bmp")
    assert decode_image(tmp_path / "p.bmp", 1).planes.shape == (1, 5, 3)


def test_fit_square_pads_centre_and_resizes():
    planes = np.ones((1, 8, 16), np.float32)  # wide: padded top and bottom
    out, up = fit_square(planes, 16)
    assert out.shape == (1, 16, 16) and not up
    assert (out[0, :4] == 0).all() and (out[0, 12:] == 0).all() and (out[0, 4:12] == 1).all()
    down, up = fit_square(np.ones((1, 64, 32), np.float32), 8)  # tall: padded left/right, area-averaged
    assert not up and np.allclose(down[0, :, 2:6], 1) and np.allclose(down[0, :, :2], 0)
    small, up = fit_square(np.ones((1, 4, 4), np.float32), 16)
    assert up and small.shape == (1, 16, 16) and np.allclose(small, 1, atol=1e-5)


def test_pyramid_levels_are_area_averages():
    img = phantom(16, 16)[None]
    levels = pyramid(img)
    assert [lv.shape[-1] for lv in levels] == [16, 8, 4] and all(lv.dtype == np.uint8 for lv in levels)
    expected = np.rint(img.reshape(1, 4, 4, 4, 4).mean(axis=(2, 4)) * 255)
    np.testing.assert_array_equal(levels[2], expected)


def test_nonsquare_upsampled_and_skipped_files_are_reported(tmp_path):
    src = tmp_path / "img"
    write_png8(src / "wide.png", 8, 12)  # smaller than 16: upsampled
    write_png8(src / "big.png", 32, 32)
    write_corrupt_jpeg(src / "broken.jpg")
    (src / "junk.png").write_bytes(b"not a png at all")
    (src / "Thumbs.db").write_bytes(b"\0" * 10)
    (src / ".DS_Store").write_bytes(b"\0" * 10)
    ds = load_dataset(_single(tmp_path))
    r = ds.report
    assert len(ds) == 2 and r.upsampled == 1
    assert r.skipped == 4
    names = [n for n, _ in r.skipped_examples]
    assert set(names) == {"broken.jpg", "junk.png", "Thumbs.db", ".DS_Store"}
    reasons = dict(r.skipped_examples)
    assert "truncated" in reasons["broken.jpg"] and reasons["Thumbs.db"] == "system junk file"
    assert any("upsampled" in w for w in r.warnings) and any("4 file(s) skipped" in w for w in r.warnings)
    assert r.original_sizes == {"12x8": 1, "32x32": 1}
    for i in range(len(ds)):
        x = ds[i][0]
        assert x.shape == (1, 16, 16) and x.min() >= -1 and x.max() <= 1


def test_nifti_nan_normalization_and_min_content(tmp_path):
    vol = brain_volume((12, 14, 10))
    vol[6, 7, 5] = np.nan
    vol[1, 1, 1] = np.inf
    write_nifti(tmp_path / "vols" / "AD" / "sub1.nii.gz", vol)
    write_nifti(tmp_path / "vols" / "NC" / "sub2.nii", brain_volume((12, 14, 10), seed=1))
    v = load_volume(tmp_path / "vols" / "AD" / "sub1.nii.gz")
    assert np.isfinite(v.data).all() and v.data.min() == 0.0 and v.data.max() == 1.0
    assert v.size == "12x14x10" and v.depth == "float32"

    ds = load_dataset(DataConfig(source=str(tmp_path / "vols"), resolution=16, min_content=0.2))
    assert ds.class_names == ["AD", "NC"]
    fractions = (v.data > 0.1).mean(axis=(0, 1))
    n_ad = int((fractions >= 0.2).sum())
    assert 0 < n_ad < 10 and int((ds.labels == 0).sum()) == n_ad
    assert ds.report.slices_dropped == 20 - len(ds) and ds.report.volumes == 2
    x, _ = ds.batch(np.arange(len(ds)))
    assert torch_finite(x) and x.min() >= -1 and x.max() <= 1 and x.shape[1:] == (1, 16, 16)
    info = ds.sample_info(0)
    assert info.file.endswith("sub1.nii.gz") and info.axis == "axial" and ds.source_of(0) == f"{info.file}:{info.slice}"

    everything = load_dataset(DataConfig(source=str(tmp_path / "vols"), resolution=16, min_content=0.0))
    assert len(everything) == 20
    coronal = load_dataset(DataConfig(source=str(tmp_path / "vols"), resolution=16, min_content=0.0, axis="coronal"))
    assert len(coronal) == 28


def torch_finite(x) -> bool:
    return bool(x.isfinite().all())


def test_nifti_reoriented_to_canonical(tmp_path):
    vol = brain_volume((10, 12, 8))
    vol[:5] *= 0.5  # make left and right differ
    write_nifti(tmp_path / "ras.nii.gz", vol)
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = 9.0
    write_nifti(tmp_path / "las.nii.gz", vol[::-1], flip)  # same anatomy stored right-to-left
    a = load_volume(tmp_path / "ras.nii.gz")
    b = load_volume(tmp_path / "las.nii.gz")
    np.testing.assert_allclose(a.data, b.data, atol=1e-6)


def test_anisotropic_voxels_keep_physical_aspect(tmp_path):
    affine = np.diag([1.0, 1.0, 2.0, 1.0])  # 2 mm slices
    write_nifti(tmp_path / "v.nii.gz", brain_volume((10, 12, 6)), affine)
    v = load_volume(tmp_path / "v.nii.gz")
    assert volume_slice(v, "axial", 3).shape == (12, 10)
    assert volume_slice(v, "coronal", 6).shape == (12, 10)  # 6 slices x 2 mm -> 12 rows
    assert volume_slice(v, "sagittal", 5).shape == (12, 12)


def test_single_nifti_file_and_4d_rejected(tmp_path):
    write_nifti(tmp_path / "NC" / "one.nii.gz", brain_volume())
    ds = load_dataset(DataConfig(source=str(tmp_path / "NC" / "one.nii.gz"), resolution=8))
    assert ds.class_names == ["NC"] and ds.report.layout == "nifti-file" and len(ds) > 0
    write_nifti(tmp_path / "4d" / "fmri.nii.gz", np.ones((6, 6, 6, 3)))
    write_nifti(tmp_path / "4d" / "ok.nii.gz", brain_volume())
    good = (tmp_path / "4d" / "ok.nii.gz").read_bytes()
    (tmp_path / "4d" / "cut.nii.gz").write_bytes(good[: len(good) // 2])  # truncated gzip stream
    (tmp_path / "4d" / "junk.nii").write_bytes(b"\0" * 100)
    ds = load_dataset(DataConfig(source=str(tmp_path / "4d"), resolution=8))
    reasons = dict(ds.report.skipped_examples)
    assert ds.report.skipped == 3 and set(reasons) == {"fmri.nii.gz", "cut.nii.gz", "junk.nii"}
    assert "3-D" in reasons["fmri.nii.gz"] and reasons["cut.nii.gz"].startswith("cannot decode")
    assert {ds.source_of(i).split(":")[0].rsplit("/", 1)[1] for i in range(len(ds))} == {"ok.nii.gz"}


def test_channels3_for_gray_and_rgb(tmp_path):
    write_png8(tmp_path / "img" / "g.png", 16, 16)
    write_jpeg_rgb(tmp_path / "img" / "c.jpg", 16, 16)
    ds = load_dataset(DataConfig(source=str(tmp_path / "img"), resolution=8, channels=3))
    assert ds.channels == 3
    by_name = {ds.source_of(i).rsplit("/", 1)[1]: ds[i][0] for i in range(len(ds))}
    g, c = by_name["g.png"], by_name["c.jpg"]
    assert g.shape == (3, 8, 8) and bool((g[0] == g[1]).all() and (g[1] == g[2]).all())
    assert c[0].mean() > c[1].mean() > c[2].mean()


@pytest.mark.parametrize("mode", ["I", "F"])
def test_32bit_images(tmp_path, mode):
    raw = (phantom(8, 8) * 3000 - (500 if mode == "F" else 0)).astype(np.float32 if mode == "F" else np.int32)
    Image.fromarray(raw, mode).save(tmp_path / "x.tif")
    planes = decode_image(tmp_path / "x.tif", 1).planes
    assert planes.min() >= 0 and planes.max() == pytest.approx(1.0) and planes.dtype == np.float32
