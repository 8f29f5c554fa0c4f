"""Issue 12's faults reproduced where a user meets them: damaged checkpoints, two processes on one run, a run
resumed from another folder, vanishing classes, read-only and full disks, file modes under the umask."""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import stylemri
from stylemri import cli
from stylemri import io as sio
from stylemri.errors import StylemriWarning
from stylemri.training import checkpoint as ckpt

TINY = ["--resolution", "16", "--batch", "8", "--channel-base", "128", "--channel-max", "16", "--z-dim", "16",
        "--w-dim", "16", "--workers", "0", "--device", "cpu", "--quiet", "--tick-kimg", "0.008",
        "--checkpoint-ticks", "1"]
NEWEST, OLDER = "ckpt-0000000016", "ckpt-0000000008"


def _images(folder: Path, n: int, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:16, :16]
    for i in range(n):
        img = ((np.hypot(yy - 7.5, xx - 7.5) < 4 + i % 4) * 180 + rng.normal(0, 6, (16, 16))).clip(0, 255)
        Image.fromarray(img.astype(np.uint8)).save(folder / f"img_{i}.png")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny run (checkpoints at 0, 8, 16 images) trained under umask 002 on AD/NC class folders."""
    root = tmp_path_factory.mktemp("hardening")
    for cls in ("AD", "NC"):
        _images(root / "data" / cls, 6, seed=len(cls))
    threads, old_umask = torch.get_num_threads(), os.umask(0o002)
    torch.set_num_threads(1)
    try:
        assert cli.main(["train", "--data", str(root / "data"), "--out", str(root / "runs"), "--kimg", "0.016",
                         "--cache-dir", str(root / "cache"), *TINY]) == 0
    finally:
        os.umask(old_umask)
        torch.set_num_threads(threads)
    (run,) = (root / "runs").iterdir()
    written = [p for p in (*run.rglob("*"), *(root / "cache").rglob("*.npy")) if p.is_file()]  # before other tests
    return {"root": root, "run": run, "data": root / "data", "cache": root / "cache", "written": written}


@pytest.fixture
def run(base, tmp_path) -> Path:
    """A private copy of the tiny run, free to damage."""
    copy = tmp_path / base["run"].name
    shutil.copytree(base["run"], copy)
    return copy


def _flip(path: Path, at: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _main(capsys, *argv: object) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# ---- item 1: verify on every load; the newest damaged -> the newest whole one, with a warning ----------------
@pytest.mark.parametrize("damage", ["same-size flip", "truncated"])
def test_damaged_newest_checkpoint_falls_back_on_every_path(run, base, tmp_path, capsys, damage):
    newest = run / "checkpoints" / f"{NEWEST}.safetensors"
    if damage == "truncated":
        newest.write_bytes(newest.read_bytes()[:-64])
    else:
        _flip(newest)
    with pytest.warns(StylemriWarning, match=f"{NEWEST}.json is damaged .* using .*{OLDER}.json"):
        model = stylemri.load(run)
    assert model.checkpoint.stem == OLDER
    reference = stylemri.load(run / "checkpoints" / f"{OLDER}.json")
    assert torch.equal(model.generate(seeds=[0, 1]), reference.generate(seeds=[0, 1]))  # no garbage images
    rc, out, err = _main(capsys, "generate", run, "--n", 2, "--outdir", tmp_path / "gen")
    assert rc == 0 and err.count("stylemri: warning:") == 1 and f"using {run}/checkpoints/{OLDER}.json" in err
    assert "kimg-0.008" in out
    rc, _, err = _main(capsys, "train", "--resume", run, "--kimg", "0.024", "--cache-dir", base["cache"], "--quiet")
    assert rc == 0 and f"{NEWEST}.json is damaged" in err, err
    events = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    resumed = [e for e in events if e.get("event") == "resume"][-1]
    assert resumed["path"].endswith(f"{OLDER}.json") and resumed["kimg"] == 0.008
    latest = ckpt.CheckpointManager(run / "checkpoints").latest()
    assert latest.stem == "ckpt-0000000024" and ckpt.damage(latest) is None


def test_tensor_file_cannot_leave_the_checkpoints_folder(run, base, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(base["run"], other)
    record = run / "checkpoints" / f"{NEWEST}.json"
    for target in (f"../../other/checkpoints/{NEWEST}.safetensors", str(other / "checkpoints" / f"{NEWEST}.safetensors")):
        record.write_text(json.dumps({**json.loads(record.read_text()), "tensor_file": target}))
        rc, _, err = _main(capsys, "generate", record, "--n", 1, "--outdir", tmp_path / "gen")
        assert rc == 2 and "tensor_file" in err and "expected a .safetensors file name in" in err
    (run / "checkpoints" / f"{NEWEST}.safetensors").unlink()  # a link out of the folder is refused too
    (run / "checkpoints" / f"{NEWEST}.safetensors").symlink_to(other / "checkpoints" / f"{NEWEST}.safetensors")
    record.write_text(json.dumps({**json.loads(record.read_text()), "tensor_file": f"{NEWEST}.safetensors"}))
    rc, _, err = _main(capsys, "generate", record, "--n", 1, "--outdir", tmp_path / "gen")
    assert rc == 2 and "leads out of" in err


# ---- item 3: one process per run folder ---------------------------------------------------------------------
def test_a_live_runs_folder_is_locked_and_a_dead_ones_lock_is_taken_over(run, base, capsys):
    from stylemri.training.run_dir import LOCK_NAME, run_lock

    config_before = (run / "config.json").read_bytes()
    with run_lock(run):
        rc, _, err = _main(capsys, "train", "--resume", run, "--kimg", "0.024", "--cache-dir", base["cache"])
    assert rc == 2 and f"in use by process {os.getpid()}" in err and len(err.splitlines()) == 1
    assert (run / "config.json").read_bytes() == config_before
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run / LOCK_NAME).write_text(f"{dead.stdout.strip()} on somewhere\n")  # left by a process killed with -9
    rc, _, err = _main(capsys, "train", "--resume", run, "--kimg", "0.024", "--cache-dir", base["cache"], "--quiet")
    assert rc == 0, err
    assert f"lock of process {dead.stdout.strip()} on somewhere, no longer running, taken over" in err
    assert not (run / LOCK_NAME).exists()


# ---- item 4: resume from anywhere ---------------------------------------------------------------------------
def test_run_resumes_from_another_cwd_and_with_an_absolute_data_path(base, tmp_path, capsys, monkeypatch):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    shutil.copytree(base["data"], work / "data")
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    rc, _, err = _main(capsys, "train", "--data", "data", "--out", "runs", "--kimg", "0.008", "--cache-dir",
                       base["cache"], *TINY)
    assert rc == 0, err
    (run,) = (work / "runs").iterdir()
    data_cfg = json.loads((run / "config.json").read_text())["data"]
    assert data_cfg["source"] == str(work / "data") and data_cfg["source_given"] == "data"
    monkeypatch.chdir(elsewhere)
    rc, _, err = _main(capsys, "train", "--resume", run.resolve(), "--kimg", "0.016", "--quiet")
    assert rc == 0, err
    rc, _, err = _main(capsys, "train", "--resume", run.resolve(), "--data", work / "data", "--kimg", "0.024",
                       "--quiet")
    assert rc == 0, err
    assert ckpt.read_meta(ckpt.CheckpointManager(run / "checkpoints").latest())["nimg"] == 24


# ---- item 6: a class never vanishes without a word ----------------------------------------------------------
def test_empty_and_unreadable_class_folders_are_named(base, tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(base["data"], data)
    (data / "MCI").mkdir()
    _images(data / "CN", 3)
    rc, out, err = _main(capsys, "data", "inspect", data, "--resolution", 16, "--cache-dir", base["cache"])
    assert rc == 0 and f"{data}/MCI: class folder with no supported image (empty); class MCI left out" in err
    real_scandir = os.scandir

    def scandir(path=".", *a):
        if Path(path) == data / "CN":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path, *a)

    monkeypatch.setattr(os, "scandir", scandir)
    rc, out, err = _main(capsys, "data", "inspect", data, "--resolution", 16, "--cache-dir", base["cache"])
    assert rc == 0 and f"{data}/CN: folder not readable (Permission denied)" in err
    assert "skipped:      1 " in out and "CN/: folder not readable" in out
    rc, _, err = _main(capsys, "train", "--data", data, "--out", tmp_path / "runs", "--kimg", "0.008", "--cache-dir",
                       base["cache"], *TINY)
    assert rc == 0 and "MCI left out" in err and "CN: folder not readable" in err


# ---- item 7: file-system failures are one line ---------------------------------------------------------------
@pytest.fixture
def read_only(monkeypatch):
    """Make every folder below a prefix behave as on a read-only file system (EROFS on create/write)."""
    prefixes: list[Path] = []

    def blocked(path: object) -> bool:
        p = Path(os.fsdecode(path)).absolute()
        return any(p == q or q in p.parents for q in prefixes)

    def fail(path: object) -> OSError:
        return OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    real_mkdir, real_mkstemp, real_open = os.mkdir, tempfile.mkstemp, builtins.open

    def mkdir(path, *a, **k):
        if blocked(path):
            raise fail(path)
        return real_mkdir(path, *a, **k)

    def mkstemp(*a, dir=None, **k):
        if dir is not None and blocked(dir):
            raise fail(dir)
        return real_mkstemp(*a, dir=dir, **k)

    def open_(file, mode="r", *a, **k):
        if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+") and blocked(file):
            raise fail(file)
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(builtins, "open", open_)
    return prefixes


@pytest.mark.parametrize("command", ["train", "generate", "evaluate"])
def test_read_only_output_folder_is_one_line(base, tmp_path, capsys, read_only, command):
    out = tmp_path / "ro"
    out.mkdir()
    read_only.append(out)
    argv = {"train": ["train", "--data", base["data"], "--out", out, "--kimg", "0.008", "--cache-dir", base["cache"],
                      *TINY],
            "generate": ["generate", base["run"], "--n", 2, "--outdir", out],
            "evaluate": ["evaluate", base["run"], "--metrics", "swd", "--num", 4, "--out", out, "--cache-dir",
                         base["cache"]]}[command]
    rc, _, err = _main(capsys, *argv)
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"stylemri: error: {out}") and err.rstrip().endswith("Read-only file system"), err


def test_full_disk_during_training_names_the_file_and_how_to_resume(base, tmp_path, capsys, monkeypatch):
    real = ckpt.atomic_write

    def atomic_write(path, *a, **k):
        if Path(path).name == f"{OLDER}.safetensors":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(ckpt, "atomic_write", atomic_write)
    rc, _, err = _main(capsys, "train", "--data", base["data"], "--out", tmp_path / "runs", "--kimg", "0.016",
                       "--cache-dir", base["cache"], *TINY)
    (run,) = (tmp_path / "runs").iterdir()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert f"{run}/checkpoints/{OLDER}.safetensors: No space left on device" in err
    assert f"resume with: stylemri train --resume {run}" in err
    monkeypatch.setattr(ckpt, "atomic_write", real)
    assert cli.main(["train", "--resume", str(run), "--quiet"]) == 0


# ---- item 10: files follow the umask -------------------------------------------------------------------------
def test_run_and_cache_files_follow_the_umask(base):
    files = base["written"]
    assert any(p.suffix == ".safetensors" for p in files) and any(p.suffix == ".npy" for p in files)
    modes = {str(p.relative_to(base["root"])): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {"0o664"}, modes  # trained under umask 002: group-writable, world-readable


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_write_respects_the_umask_and_keeps_an_existing_mode(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        with sio.atomic_write(tmp_path / "a.txt", "w") as f:
            f.write("x")
        assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == mode
        os.chmod(tmp_path / "a.txt", 0o604)
        sio.write_json(tmp_path / "a.txt", {"again": 1})
        assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o604
    finally:
        os.umask(old)


def test_a_sigterm_right_after_the_temporary_file_is_made_leaves_nothing(tmp_path, monkeypatch):
    """The window between mkstemp and the clean-up's `try` (a SIGTERM there left `.x.png.*.tmp` behind in
    `generate`): the signal arrives inside mkstemp, is held, and is raised once the clean-up is armed."""
    import os
    import signal
    import tempfile

    from stylemri import io as sio
    from stylemri.cli import Terminated

    real = tempfile.mkstemp

    def mkstemp_then_sigterm(*args, **kwargs):
        made = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return made

    def raise_terminated(signum, frame):
        raise Terminated()

    # With torch's worker threads alive (as in every command), a signal sent to the process may land on one
    # of them; the hold must work then too. Twenty tries, since which thread the kernel picks varies.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    torch.ones(256, 256) @ torch.ones(256, 256)
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_then_sigterm)
    try:
        for attempt in range(20):
            with pytest.raises(Terminated):
                with sio.atomic_write(tmp_path / "x.png") as f:
                    f.write(b"never")
            assert list(tmp_path.iterdir()) == [], attempt
    finally:
        signal.signal(signal.SIGTERM, previous)
        torch.set_num_threads(threads)
    assert list(tmp_path.iterdir()) == []
