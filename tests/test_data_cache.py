"""The prepared cache: reuse without decoding, rebuild on change, atomic builds, location rules."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import write_png8

from stylemri.config import DataConfig
from stylemri.data import cache_root, decode, load_dataset


def _folder(tmp_path: Path, n: int = 4) -> Path:
    for i in range(n):
        write_png8(tmp_path / "src" / ("AD" if i % 2 else "NC") / f"{i}.png", 16, 16, seed=i)
    return tmp_path / "src"


def _cfg(src: Path, cache: Path, **kw) -> DataConfig:
    return DataConfig(source=str(src), resolution=kw.pop("resolution", 8), cache_dir=str(cache), **kw)


def _forbid_decoding(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("decoded although a valid cache exists")

    monkeypatch.setattr(decode, "decode_image", boom)
    monkeypatch.setattr(decode, "load_volume", boom)


def test_second_load_reuses_cache_without_decoding(tmp_path, monkeypatch):
    src, cache = _folder(tmp_path), tmp_path / "cache"
    first = load_dataset(_cfg(src, cache))
    assert first.report.cache_built
    _forbid_decoding(monkeypatch)
    second = load_dataset(_cfg(src, cache))
    assert not second.report.cache_built and second.fingerprint == first.fingerprint
    np.testing.assert_array_equal(second.batch(range(4))[0].numpy(), first.batch(range(4))[0].numpy())
    load_dataset(_cfg(src, cache, classes=("AD",), xflip=False))  # selection and flips: same cache


def test_builtin_reuse(monkeypatch):
    load_dataset(DataConfig(resolution=8))
    _forbid_decoding(monkeypatch)
    assert not load_dataset(DataConfig(resolution=8)).report.cache_built


def test_changed_file_or_new_file_rebuilds(tmp_path):
    src, cache = _folder(tmp_path), tmp_path / "cache"
    before = load_dataset(_cfg(src, cache))
    old_pixels = before.batch(range(4))[0].clone()
    target = src / "NC" / "0.png"
    write_png8(target, 16, 16, seed=99)
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    after = load_dataset(_cfg(src, cache))
    assert after.report.cache_built and after.fingerprint != before.fingerprint
    assert not np.array_equal(after.batch(range(4))[0].numpy(), old_pixels.numpy())
    write_png8(src / "AD" / "new.png", 16, 16, seed=5)
    grown = load_dataset(_cfg(src, cache))
    assert grown.report.cache_built and len(grown) == 5
    folder = Path(grown.report.cache_dir)
    current = json.loads((folder / "index.json").read_text())["fingerprint"]
    npys = sorted(p.name for p in folder.glob("*.npy"))
    assert npys == [f"images-{current}-r4.npy", f"images-{current}-r8.npy"]  # older builds' arrays removed


def test_settings_change_selects_another_cache_and_rebuild_flag(tmp_path):
    src, cache = _folder(tmp_path), tmp_path / "cache"
    a = load_dataset(_cfg(src, cache, resolution=8))
    b = load_dataset(_cfg(src, cache, resolution=16))
    assert b.report.cache_built and a.report.cache_dir != b.report.cache_dir and b[0][0].shape == (1, 16, 16)
    c = load_dataset(_cfg(src, cache, channels=3))
    assert c.report.cache_built and c[0][0].shape == (3, 8, 8)
    assert load_dataset(_cfg(src, cache, resolution=8), rebuild=True).report.cache_built


def test_cache_files_are_plain_numpy_and_json(tmp_path):
    src, cache = _folder(tmp_path), tmp_path / "cache"
    ds = load_dataset(_cfg(src, cache, resolution=16))
    folder = Path(ds.report.cache_dir)
    index = json.loads((folder / "index.json").read_text())
    assert index["class_names"] == ["AD", "NC"] and index["count"] == 4 and index["resolution"] == 16
    assert index["settings"]["resolution"] == 16 and len(index["fingerprint"]) == 16
    arr = np.load(folder / index["levels"]["16"])  # a regular .npy, loadable without stylemri
    assert arr.dtype == np.uint8 and arr.shape == (4, 1, 16, 16)
    np.testing.assert_array_equal(arr[0], np.rint((ds[0][0].numpy() + 1) * 127.5))
    assert sorted(index["levels"]) == ["16", "4", "8"]


def test_interrupted_build_leaves_nothing_that_loads(tmp_path, monkeypatch):
    src, cache = _folder(tmp_path), tmp_path / "cache"
    real = decode.pyramid
    calls = {"n": 0}

    def interrupted(img, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(img, *a, **k)

    monkeypatch.setattr(decode, "pyramid", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_dataset(_cfg(src, cache))
    folders = list(cache.iterdir())
    assert len(folders) == 1
    assert not (folders[0] / "index.json").exists()
    assert not [p for p in folders[0].iterdir() if p.name != ".lock"]  # temp arrays removed
    monkeypatch.setattr(decode, "pyramid", real)
    ds = load_dataset(_cfg(src, cache))
    assert ds.report.cache_built and len(ds) == 4


def test_damaged_cache_is_rebuilt(tmp_path):
    src, cache = _folder(tmp_path), tmp_path / "cache"
    ds = load_dataset(_cfg(src, cache))
    folder = Path(ds.report.cache_dir)
    (folder / "index.json").write_text("{ truncated")
    assert load_dataset(_cfg(src, cache)).report.cache_built
    index = json.loads((folder / "index.json").read_text())
    arr_path = folder / index["levels"]["8"]
    arr_path.write_bytes(arr_path.read_bytes()[:200])  # truncated array
    again = load_dataset(_cfg(src, cache))
    assert again.report.cache_built and len(again) == 4


def test_cache_location_rules(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEMRI_CACHE", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root(DataConfig(cache_dir=str(tmp_path / "flag"))) == tmp_path / "flag"
    assert cache_root(DataConfig()) == tmp_path / "env"
    monkeypatch.delenv("STYLEMRI_CACHE")
    assert cache_root(DataConfig()) == tmp_path / "xdg" / "stylemri"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root(DataConfig()) == tmp_path / "home" / ".cache" / "stylemri"


def test_tests_use_a_private_cache(_private_cache):
    ds = load_dataset(DataConfig(resolution=8))
    assert Path(ds.report.cache_dir).parent == _private_cache
