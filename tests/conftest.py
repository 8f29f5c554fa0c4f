"""Shared test setup: a private data cache for the whole session, and writers for tiny MRI-like files."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stylemri-cache")


@pytest.fixture(autouse=True)
def _private_cache(_session_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tests never write to ~/.cache: every cache goes to one temporary folder for the session."""
    monkeypatch.setenv("STYLEMRI_CACHE", str(_session_cache))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return _session_cache


def phantom(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A brain-like float image in [0, 1]: an ellipse with smooth texture on a black background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((yy - h / 2) / (0.4 * h)) ** 2 + ((xx - w / 2) / (0.35 * w)) ** 2 <= 1
    texture = 0.6 + 0.3 * np.sin(xx / 2.0 + seed) * np.cos(yy / 3.0) + 0.05 * rng.random((h, w))
    return np.where(inside, np.clip(texture, 0, 1), 0.0).astype(np.float32)


def write_png8(path: Path, h: int = 16, w: int = 16, seed: int = 0) -> np.ndarray:
    arr = np.rint(phantom(h, w, seed) * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


def write_png16(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(arr, np.uint16)).save(path)


def write_jpeg_rgb(path: Path, h: int = 16, w: int = 16, seed: int = 0) -> np.ndarray:
    g = phantom(h, w, seed)
    rgb = np.rint(np.stack([g, 0.5 * g, 0.25 * g], -1) * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, quality=95)
    return rgb


def write_corrupt_jpeg(path: Path) -> None:
    """A real JPEG cut in half: Pillow opens the header, then fails to decode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jpeg_rgb(path, 32, 32)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> None:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), np.eye(4) if affine is None else affine), str(path))


def brain_volume(shape: tuple[int, int, int] = (12, 14, 10), seed: int = 0) -> np.ndarray:
    """An ellipsoid 'brain' filling the middle of the volume, intensities 100-1000."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    inside = x**2 / 0.7**2 + y**2 / 0.8**2 + z**2 / 0.7**2 <= 1
    return np.where(inside, 100 + 900 * rng.random(shape), 0).astype(np.float32)


@pytest.fixture
def adni_tree(tmp_path: Path) -> Path:
    """AD_NC/{train,test}/{AD,NC}/*.jpeg: train 3 AD + 2 NC, test 1 AD + 1 NC, 256x240-like (here 20x16)."""
    root = tmp_path / "AD_NC"
    for split, n_ad, n_nc in (("train", 3, 2), ("test", 1, 1)):
        for cls, n in (("AD", n_ad), ("NC", n_nc)):
            for i in range(n):
                write_jpeg_rgb(root / split / cls / f"21839{i}_7{i}.jpeg", 16, 20, seed=i)
    return root


@pytest.fixture
def oasis_tree(tmp_path: Path) -> Path:
    """keras_png_slices_data/keras_png_slices_{train,validate,test} + seg mask folders."""
    root = tmp_path / "keras_png_slices_data"
    for split, n in (("train", 3), ("validate", 2), ("test", 1)):
        for i in range(n):
            write_png8(root / f"keras_png_slices_{split}" / f"case_{i:03d}_slice_{i}.nii.png", 16, 16, seed=i)
            mask = np.zeros((16, 16), np.uint8)
            mask[4:12, 4:12] = 85
            (root / f"keras_png_slices_seg_{split}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(root / f"keras_png_slices_seg_{split}" / f"seg_{i:03d}_slice_{i}.nii.png")
    return root


# ---------------------------------------------------------------------------- the CLI, once for every test file

# A tiny network for CLI training runs: seconds on one CPU core.
TINY_NET = {"channel_base": 128, "channel_max": 16, "z_dim": 16, "w_dim": 16}
TINY_FLAGS = ["--channel-base", "128", "--channel-max", "16", "--z-dim", "16", "--w-dim", "16", "--workers", "0"]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """`stylemri ARGV` in this process: (exit code, stdout, stderr); argparse's exits become exit codes."""
    from stylemri import cli

    capsys.readouterr()
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(capsys: pytest.CaptureFixture[str], *argv: object, match: str | None = None) -> str:
    """The command exits 2 with exactly one line on stderr, no traceback (containing `match`); that line."""
    rc, out, err = run_cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert rc == 2, (rc, out, err)
    assert len(lines) == 1 and lines[0].startswith("stylemri") and "Traceback" not in err, err
    assert match is None or match in lines[0], (match, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny networks run fastest on one intra-op thread, immune to oversubscription of the shared cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def phase_rng(purpose: str, total: int):
    """The per-purpose draws `StyleGANLoss.accumulate_gradients` asks for, in the loss tests: seeded by the
    purpose's characters, so they are the same in every process (str hashes are salted per process)."""
    from stylemri.training.rng import BatchRandom

    return BatchRandom(sum(map(ord, purpose)), total)


def take_grads(module) -> list:
    """Each parameter's gradient (zeros where it has none), then cleared: the gradients of one loss phase."""
    import torch

    out = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in module.parameters()]
    module.zero_grad(set_to_none=True)
    return out
