"""Transfer learning: `train --init` takes another run's (here an imported NVlabs model's) weights and
shape, adapting channels and classes; `--freeze-d N` keeps D's first N layers as initialised; config.json
records where the run started (path + SHA-256)."""

from __future__ import annotations

import json
from pathlib import Path

from dataclasses import replace

import pytest
import torch

import stylemri

from stylemri.config import NetworkConfig
from stylemri.interop.importer import import_pickle
from stylemri.networks import build_discriminator, build_generator
from stylemri.training import checkpoint as ckpt
from stylemri.networks.layers import FILTER_STYLEGAN2, make_filter, upsample
from stylemri.training.transfer import d_layers, frozen_parameters, init_modules, transfer_state
from tests.conftest import TINY_NET, one_line_error, run_cli
from tests.nvlabs_pickle import nvlabs_snapshot

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    """An unconditional RGB NVlabs model at 16 px, imported (grey)."""
    root = tmp_path_factory.mktemp("init")
    data, _, _ = nvlabs_snapshot(NetworkConfig(resolution=16, img_channels=3, mbstd_group=4, **TINY_NET))
    (root / "rgb.pkl").write_bytes(data)
    return import_pickle(root / "rgb.pkl", root / "runs").run_dir


def _state(run: Path, prefix: str) -> dict[str, torch.Tensor]:
    (record,) = sorted((run / "checkpoints").glob("ckpt-*.json"))[-1:]
    return ckpt.unpack_module(prefix, ckpt.read_checkpoint(record)[0])


def test_init_starts_a_conditional_run_from_an_import_and_freeze_d_keeps_layers(imported, tmp_path, capsys):
    rc, out, err = run_cli(capsys, "train", "--init", imported, "--conditional", "--freeze-d", "2", "--kimg", "0.016",
                           "--batch", "8", "--tick-kimg", "0.008", "--workers", "0", "--outdir", tmp_path / "runs",
                           "--quiet")
    assert rc == 0, err
    (run,) = (tmp_path / "runs").iterdir()
    cfg = json.loads((run / "config.json").read_text())
    (source,) = (imported / "checkpoints").glob("ckpt-*.json")
    assert cfg["train"]["init"] == str(source.resolve()) and cfg["train"]["freeze_d"] == 2
    assert cfg["train"]["init_sha256"] == ckpt.read_meta(source)["tensor_sha256"]
    assert cfg["network"]["resolution"] == 16 and cfg["network"]["channel_base"] == TINY_NET["channel_base"]
    assert cfg["network"]["c_dim"] == 3  # builtin:mni152's three orientations: a new class embedding
    before, after = _state(imported, "D"), _state(run, "D")
    for name in ("b16.fromrgb.weight", "b16.fromrgb.bias", "b16.conv0.weight", "b16.conv0.bias"):
        assert torch.equal(before[name], after[name]), name  # frozen: exactly as initialised from the import
    assert not torch.equal(before["b16.conv1.weight"], after["b16.conv1.weight"])  # the third layer trained
    assert "mapping.embed.weight" in _state(run, "G") and "mapping.embed.weight" not in _state(imported, "G")


def test_init_with_a_larger_resolution_is_one_line_and_writes_nothing(imported, tmp_path, capsys):
    one_line_error(capsys, "train", "--init", imported, "--resolution", "8", "--kimg", "0.008", "--workers", "0",
                   "--outdir", tmp_path / "runs", "--quiet", match="this run trains at 8 px; expected the same resolution")
    one_line_error(capsys, "train", "--init", imported, "--freeze-d", "99", "--kimg", "0.008", "--workers", "0",
                   "--outdir", tmp_path / "runs", "--quiet", match="--freeze-d 99: expected 0 to 7")
    one_line_error(capsys, "train", "--init", tmp_path / "nothing", "--outdir", tmp_path / "runs", match="--init")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_init_from_a_smaller_stylegan2_grows_it_and_draws_the_same_image_upsampled(imported, tmp_path, capsys):
    """Growing 16 -> 32 px: every 16 px tensor is copied, the 32 px blocks start fresh with toRGB at zero,
    so before training the grown G's image is exactly the source's, FIR-upsampled."""
    small = stylemri.load(imported, device="cpu")
    grown_cfg = replace(small.config.network, resolution=32)
    G, G_ema, D = build_generator(grown_cfg), build_generator(grown_cfg), build_discriminator(grown_cfg)
    (record,) = (imported / "checkpoints").glob("ckpt-*.json")
    reports = init_modules(record, None, {"G": G, "G_ema": G_ema, "D": D}, grown_cfg.z_dim)
    assert "synthesis.b32.torgb.weight" in reports["G_ema"].adapted
    assert "synthesis.b32.conv1.weight" in reports["G_ema"].fresh and "synthesis.b16.conv1.weight" in reports["G_ema"].copied
    assert "b32.fromrgb.weight" in reports["D"].fresh and "b16.fromrgb.weight" in reports["D"].unused
    z = torch.randn(4, grown_cfg.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = upsample(small.G(z, None, noise_mode="none"), make_filter(FILTER_STYLEGAN2, 2))
        got = G_ema.eval()(z, None, noise_mode="none")
    assert got.shape == (4, 1, 32, 32) and torch.allclose(got, want, atol=1e-5)
    rc, _, err = run_cli(capsys, "train", "--init", imported, "--resolution", "32", "--kimg", "0.008", "--batch", "8",
                         "--tick-kimg", "0.008", "--workers", "0", "--outdir", tmp_path / "runs", "--quiet")
    assert rc == 0, err
    (run,) = (tmp_path / "runs").iterdir()
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["network"]["resolution"] == 32 and cfg["train"]["init"] == str(record.resolve())


def test_resume_of_an_import_is_one_line(imported, capsys):
    one_line_error(capsys, "train", "--resume", imported, "--workers", "0", "--quiet")


def test_transfer_rules_conditioning_and_channels():
    base = dict(resolution=8, channel_base=64, channel_max=16, z_dim=8, w_dim=8)
    torch.manual_seed(0)
    src = build_generator(NetworkConfig(**base, img_channels=3)).state_dict()
    dst = build_generator(NetworkConfig(**base, img_channels=1, c_dim=2))
    state, report = transfer_state(src, dst.state_dict(), z_dim=8)
    assert torch.equal(state["mapping.fc0.weight"][:, :8], src["mapping.fc0.weight"][:, :8])
    assert torch.equal(state["mapping.fc0.weight"][:, 8:], dst.state_dict()["mapping.fc0.weight"][:, 8:])
    assert "mapping.embed.weight" in report.fresh and "mapping.fc0.weight" in report.adapted
    luma = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1, 1)
    assert torch.allclose(state["synthesis.b8.torgb.weight"], (src["synthesis.b8.torgb.weight"] * luma).sum(0, keepdim=True))
    back, _ = transfer_state(dst.state_dict(), build_generator(NetworkConfig(**base, img_channels=3)).state_dict())
    assert back["synthesis.b8.torgb.weight"].shape[0] == 3
    D = build_discriminator(NetworkConfig(**base))
    assert [n for n, _ in d_layers(D)] == ["b8.fromrgb", "b8.conv0", "b8.conv1", "b8.skip"]
    assert len(frozen_parameters(D, 2)) == 4  # fromrgb and conv0, weight and bias each
