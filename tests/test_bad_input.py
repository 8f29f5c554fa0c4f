"""Bad input, one table: every row is a command line, its exit code and a piece of its one-line message.

A new case is one line in CASES. Placeholders in the command are paths the fixture prepares ({run} a tiny
trained run, {file} a plain file, {new} a fresh path that must stay absent when the command fails, ...).
Every exit-2 row must print exactly one line on stderr (no traceback) and create nothing at {new}.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylemri import cli

TINY = ["--resolution", "16", "--batch", "8", "--channel-base", "128", "--channel-max", "16", "--z-dim", "16",
        "--w-dim", "16", "--workers", "0", "--device", "cpu"]
NEWEST, OLDER = "ckpt-0000000016", "ckpt-0000000008"
GEN = "generate {run} --n 2 --outdir {new}"

CASES: list[tuple[str, int, str]] = [
    # -- item 8: values checked before anything is created ------------------------------------------------------
    ("train --data {data} --out {new} --batch 0", 2, "--batch 0: expected a positive"),
    ("train --data {data} --out {new} --workers -1", 2, "--workers -1: expected 0"),
    ("train --data {data} --out {new} --r1-gamma -1", 2, "--r1-gamma -1: expected 0 (off) or a positive weight"),
    ("train --data {data} --out {new} --ema-rampup -1", 2, "--ema-rampup -1: expected a positive ratio"),
    ("train --data {data} --out {new} --ada-target 5", 2, "--ada-target 5: expected"),
    ("train --data {data} --out {new} --mbstd-group 0", 2, "--mbstd-group 0: expected a positive integer"),
    ("train --data {data} --out {new} --z-dim 0", 2, "--z-dim 0: expected a positive integer"),
    ("train --data {data} --out {new} --channel-base 0", 2, "--channel-base 0: expected a positive integer"),
    ("train --data {data} --out {new} --aug-p 2", 2, "--aug-p 2: expected a probability"),
    ("train --data {data} --out {new} --betas 0,1.5", 2, "--betas 0.0,1.5: expected two numbers in [0, 1)"),
    ("train --data {png} --out {new}", 2, "one image file; a data set (training, inspect, metrics) needs many"),
    ("train --resume {run} --r1-gamma 3", 2, "--workers"),  # the flags that may change are real flags
    # -- item 7: one line instead of a traceback ---------------------------------------------------------------
    ("train --data {data} --out {file}", 2, "expected a folder for runs, found a file"),
    ("generate {run} --n 2 --outdir {file}", 2, "{file}"),
    ("evaluate {run} --metrics swd --num 4 --out {file}", 2, "{file}"),
    ("train --resume {cfg_wrong_type}", 2, "network.resolution 'abc': expected an integer"),
    ("train --resume {cfg_empty}", 2, "missing data, network, train, class_names"),
    ("generate {bad_header} --n 2 --outdir {new}", 2, "expected safetensors data"),
    ("generate {latest_binary} --n 2 --outdir {new}", 0, "latest holds binary bytes"),
    ("generate {latest_folder} --n 2 --outdir {new}", 0, "latest is a folder"),
    # -- items 1 and 2: verify on every load, fall back with a warning, never leave the checkpoints folder -----
    ("generate {altered} --n 2 --outdir {new}", 0, f"{NEWEST}.json is damaged ({NEWEST}.safetensors's SHA-256"),
    ("generate {altered} --n 2 --outdir {new}", 0, f"using {{altered}}/checkpoints/{OLDER}.json"),
    ("generate {altered}/checkpoints/" + NEWEST + ".json --n 2 --outdir {new}", 2, "checkpoint damaged"),
    ("generate {all_damaged} --n 2 --outdir {new}", 2, "no whole checkpoint; the newest, " + NEWEST),
    ("train --resume {all_damaged}", 2, "no whole checkpoint"),
    ("generate {escape_abs}/checkpoints/" + NEWEST + ".json --n 2 --outdir {new}", 2, "tensor_file '/etc/passwd'"),
    ("generate {escape_rel}/checkpoints/" + NEWEST + ".json --n 2 --outdir {new}", 2, "tensor_file '../"),
    ("generate {escape_rel} --n 2 --outdir {new}", 0, "expected a .safetensors file name in"),
    # -- item 11, 12 ------------------------------------------------------------------------------------------
    ("evaluate {run} --metrics memorization --num 4 --out {new}", 0, "come from one subject"),
    ("project {run} {nan} --steps 2 --outdir {new}", 2, "every value of the (16, 16) array is NaN"),
    # -- issue 20 item 1: a 3-D run in a 2-D command works on mid-slices (mix) or says it is 2-D only ----------
    ("mix {run3d} --rows 0-1 --cols 2-3 --outdir {new}", 0, "wrote style-mixing grid (2 rows x 2 columns"),
    ("project {run3d} {png} --steps 2 --outdir {new}", 2, "a 3-D run (--dims 3); stylemri project works on 2-D"),
    ("compare {run3d} --num 2 --outdir {new}", 2, "a 3-D run (--dims 3); stylemri compare works on 2-D"),
    ("audit {run3d} --num 4 --holdout {vol} --outdir {new}", 2, "a 3-D run (--dims 3); stylemri audit works on 2-D"),
    ("explore {run3d} --port 0", 2, "a 3-D run (--dims 3); stylemri explore works on 2-D"),
    # -- item 2: every count has a cap ---------------------------------------------------------------------------
    ("mix {run} --rows 0-1999 --cols 0-1999 --outdir {new}", 2, "4,000,000 cells; expected at most 1,024"),
    ("interpolate {run} --seeds 0,1 --frames 10000000 --outdir {new}", 2, "images in the walk (1 row(s), 2 keyframes); "
                                                                           "expected at most 4,096"),
    ("project {run} {png} --w-samples 1000000000 --outdir {new}", 2, "--w-samples 1000000000: expected 1 to 100,000"),
    ("audit {run} --num 1000000000 --holdout {data} --outdir {new}", 2, "--num 1000000000: expected 4 to 5,000"),
    ("evaluate {run} --metrics swd --num 1000000000 --out {new}", 2, "--num 1000000000: expected 2 to 50,000"),
    ("evaluate {run3d} --metrics memorization --num 5000 --out {new}", 2,
     "--num 5000: expected at most 1,000 generated volumes"),
    ("interpolate {run3d} --classes AD,NC --frames 2 --w-samples 1000000000 --outdir {new}", 2,
     "--w-samples 1000000000: expected 1 to 100,000 latents"),
    ("edit {run3d} --latent {latent} --direction AD-NC --w-samples 1000000000 --outdir {new}", 2,
     "--w-samples 1000000000: expected 1 to 100,000 latents"),
    # -- item 3: values checked ------------------------------------------------------------------------------------
    ("project {run} {png} --lr nan --outdir {new}", 2, "--lr nan: expected a positive, finite learning rate"),
    ("project {run} {png} --w-samples 0 --outdir {new}", 2, "--w-samples 0: expected 1 to 100,000"),
    ("project {run} {png} --seed -1 --outdir {new}", 2, "--seed -1: expected an integer seed in [0, 2^32)"),
    ("embed {run} --num 4 --seed -1 --outdir {new}", 2, "--seed -1 (first of 4 consecutive seeds): expected"),
    ("compare {run} --seed -1 --outdir {new}", 2, "--seed -1 (first of 16 consecutive seeds): expected"),
    ("evaluate {run} --metrics swd --num 4 --seed -1 --out {new}", 2, "--seed -1 (first of 4 consecutive seeds)"),
    ("evaluate {run} --metrics swd --num 4 --seed 4294967295 --out {new}", 2, "--seed 4294967295 (first of 4"),
    ("fid {data} {data} --resolution 16 --seed -1 --json-out {new}", 2, "--seed -1: expected an integer seed"),
    ("train --data {data} --out {new} --seed -1", 2, "--seed -1: expected an integer in [0, 2^32)"),
    ("generate {nimg_text} --n 2 --outdir {new}", 0, "nimg 'abc': expected a non-negative integer"),
    ("generate {nimg_text} --n 2 --outdir {new}", 0, f"using {{nimg_text}}/checkpoints/{OLDER}.json"),
    ("train --resume {foreign_arch}", 2, "the checkpoint does not fit the run's configuration"),
    ("train --resume {foreign_arch}", 2, "size mismatch for"),
    ("interpolate {run} --seeds 0,1 --fps nan --outdir {new}", 2, "--fps nan: expected frames per second"),
    ("edit {run3d} --latent {latent} --direction AD-NC --zoom 100000 --outdir {new}", 2, "--zoom 100000: expected"),
    ("edit {run3d} --latent {latent} --direction AD-NC --multiples nan,1 --outdir {new}", 2, "--multiples nan,1: expected"),
    ("project {run} {png} --slice 3 --outdir {new}", 2, "--slice 3: {png} is one 2-D image"),
    # -- issue 21: shared flags checked the same way in every command, renamed flags ------------------------------
    ("evaluate {run} --metrics swd --num 4 --trunc 100 --out {new}", 2, "--trunc 100.0: expected a truncation psi"),
    ("audit {run} --trunc 100 --outdir {new}", 2, "--trunc 100.0: expected a truncation psi"),
    ("compare {run} --trunc nan --outdir {new}", 2, "--trunc nan: expected a truncation psi"),
    ("audit {run} --n 2 --outdir {new}", 2, "--num 2: expected 4 to 5,000 images"),  # --n: no "ambiguous option"
    ("fid {data} {data} --n x --json-out {new}", 2, "--num x: expected a whole number of images"),
    ("swd {data} {data} --batch 0 --json-out {new}", 2, "--batch 0: expected a positive number of images"),
    ("swd {data} {data} --channels 2 --json-out {new}", 2, "--channels 2: expected 1 (grey MRI) or 3 (RGB)"),
    ("mix {run} --rows 0 --cols 1 --layers 9 --outdir {new}", 2, "--layers 9: layers must lie in"),
    ("train --data {data} --out {new} --metrics bogus", 2, "--metrics bogus: expected a comma-separated subset of"),
    ("train --data {data} --out {new} --metrics ,", 2, "--metrics ',': expected a comma-separated list"),
    ("train --data {data} --out {new} --seed x", 2, "--seed x: expected an integer seed"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A one-subject image folder, a tiny run trained on it (checkpoints at 0, 8, 16 images) and damaged copies."""
    root = tmp_path_factory.mktemp("bad_input")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:16, :16]
    for i in range(8):  # OASIS-style names: every slice belongs to subject 001
        img = ((np.hypot(yy - 7.5, xx - 7.5) < 5 + i % 3) * 200 + rng.normal(0, 6, (16, 16))).clip(0, 255)
        Image.fromarray(img.astype(np.uint8)).save(data / f"case_001_slice_{i}.png")
    cache = root / "cache"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = cli.main(["train", "--data", str(data), "--out", str(root / "runs"), "--cache-dir", str(cache), "--kimg",
                       "0.016", "--tick-kimg", "0.008", "--checkpoint-ticks", "1", "--quiet", *TINY])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    (run,) = (root / "runs").iterdir()
    paths = {"run": run, "data": data, "cache": cache, "file": root / "a_file", "png": data / "case_001_slice_0.png",
             "nan": root / "nan.npy", "latent": root / "w.npy", "vol": root / "volumes",
             "run3d": _train_3d(root / "volumes", root / "runs3d", cache)}
    paths["file"].write_text("not a folder\n")
    np.save(paths["nan"], np.full((16, 16), np.nan, np.float32))
    np.save(paths["latent"], np.zeros(16, np.float32))  # a w for either run (w_dim 16)
    for name, damage in DAMAGES.items():
        copy = root / name
        shutil.copytree(run, copy)
        damage(copy / "checkpoints")
        paths[name] = copy
    return {k: str(v) for k, v in paths.items()}


def _train_3d(volumes: Path, runs: Path, cache: Path) -> Path:
    """A conditional 3-D run (AD, NC) at 8^3 voxels: seconds on one thread."""
    from test_volumes_data import ellipsoid, write_nifti

    for i, cls in enumerate(["AD", "AD", "NC", "NC"]):
        write_nifti(volumes / cls / f"sub-{i}.nii.gz", ellipsoid((14 + i, 16, 12), i))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = cli.main(["train", "--data", str(volumes), "--cache-dir", str(cache), "--conditional", "--kimg", "0.004",
                       "--tick-kimg", "0.004", "--out", str(runs), "--dims", "3", "--resolution", "8", "--batch", "4",
                       "--channel-base", "64", "--channel-max", "16", "--z-dim", "16", "--w-dim", "16",
                       "--map-layers", "1", "--workers", "0", "--quiet", "--device", "cpu"])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    (run,) = runs.iterdir()
    return run


def _flip_byte(ckpts: Path, name: str = NEWEST, at: int = -100) -> None:
    path = ckpts / f"{name}.safetensors"
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF  # same size: only the SHA-256 can tell
    path.write_bytes(bytes(data))


def _record(ckpts: Path, name: str = NEWEST, **changes: object) -> None:
    path = ckpts / f"{name}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _bad_header(ckpts: Path) -> None:
    path = ckpts / f"{NEWEST}.safetensors"
    data = b"\xff" * 8 + path.read_bytes()[8:]
    path.write_bytes(data)  # and a record that agrees with the damaged bytes: only the parser can tell
    _record(ckpts, tensor_bytes=len(data), tensor_sha256=hashlib.sha256(data).hexdigest())


def _latest_folder(ckpts: Path) -> None:
    (ckpts / "latest").unlink()
    (ckpts / "latest").mkdir()


def _config(ckpts: Path, edit) -> None:
    path = ckpts.parent / "config.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


DAMAGES = {
    "altered": _flip_byte,
    "all_damaged": lambda c: [_flip_byte(c, p.stem, 10) for p in c.glob("ckpt-*.safetensors")],
    "bad_header": _bad_header,
    "escape_abs": lambda c: _record(c, tensor_file="/etc/passwd"),
    "escape_rel": lambda c: _record(c, tensor_file=f"../../run/checkpoints/{NEWEST}.safetensors"),
    "latest_binary": lambda c: (c / "latest").write_bytes(bytes(range(128, 256))),
    "latest_folder": _latest_folder,
    "cfg_wrong_type": lambda c: _config(c, lambda d: {**d, "network": {**d["network"], "resolution": "abc"}}),
    "cfg_empty": lambda c: _config(c, lambda d: {}),
    "nimg_text": lambda c: _record(c, nimg="abc"),
    "foreign_arch": lambda c: _config(c, lambda d: {**d, "network": {**d["network"], "channel_max": 32}}),
}


@pytest.mark.parametrize("command,code,needle", CASES, ids=[c[0][:60] for c in CASES])
def test_bad_input(world, tmp_path, capsys, monkeypatch, command, code, needle):
    paths = {**world, "new": str(tmp_path / "new")}
    argv = [part.format(**paths) for part in shlex.split(command)]
    if argv[0] in ("train", "evaluate"):
        argv += ["--cache-dir", world["cache"]]
    if argv[0] == "train" and "--resume" not in argv:  # defaults first: the case's own flags win
        argv = ["train", *TINY, "--kimg", "0.008", "--quiet", *argv[1:]]
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    assert rc == code, err
    assert needle.format(**paths) in out + err, err
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and err.startswith("stylemri"), err
        assert not (tmp_path / "new").exists(), "a failed command left files behind"


def test_resume_error_names_only_flags_that_exist(world, capsys):
    assert cli.main(["train", "--resume", world["run"], "--r1-gamma", "3", "--cache-dir", world["cache"]]) == 2
    err = capsys.readouterr().err
    parser = cli.build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "train")[1]
    known = set(train._option_string_actions)
    named = [w.rstrip(",)") for w in err.split("(only ", 1)[1].split() if w.startswith("--")]
    assert named and all(flag in known for flag in named), named
    # tf32 is set by --tf32 (the hidden --no-tf32 is an old spelling of its default): the error names --tf32
    assert "--num-workers" not in err and "--no-tf32" not in err and "--tf32," in err
