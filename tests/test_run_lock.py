"""Two processes on one run folder (issue 12, item 3), with a real training subprocess: the second `--resume`
of a live run exits 2 naming the PID and touches nothing; once the live run is killed with -9, its lock is
taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stylemri import cli

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--resolution", "16", "--batch", "8", "--channel-base", "128", "--channel-max", "16", "--z-dim", "16",
        "--w-dim", "16", "--workers", "0", "--device", "cpu"]

pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def test_second_process_on_a_live_run_exits_2_and_a_dead_runs_lock_is_taken_over(tmp_path, capsys):
    runs, cache = tmp_path / "runs", str(tmp_path / "cache")
    # The 2nd checkpoint write stalls halfway through its tensor file: the run is alive, mid-write, right there.
    proc = subprocess.Popen([sys.executable, "-m", "stylemri", "train", "--out", str(runs), "--cache-dir", cache,
                             "--kimg", "0.032", "--tick-kimg", "0.016", "--checkpoint-ticks", "1", "--quiet", *TINY],
                            cwd=ROOT, env=_env(STYLEMRI_CHECKPOINT_STALL="120:2"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        tmp_files: list[Path] = []
        while time.time() < deadline and not tmp_files:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            # only the stalled 2nd write: the 1st checkpoint's own temp file exists briefly while it syncs
            tmp_files = [p for p in runs.glob("*/checkpoints/.ckpt-*.safetensors.*.tmp")
                         if "ckpt-0000000000" not in p.name and p.stat().st_size > 0]
            time.sleep(0.1)
        assert tmp_files, "the training subprocess never reached its second checkpoint"
        (run,) = runs.iterdir()
        config = (run / "config.json").read_bytes()
        rc = cli.main(["train", "--resume", str(run), "--kimg", "0.064", "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and f"in use by process {proc.pid} on " in err and len(err.splitlines()) == 1, err
        assert tmp_files[0].exists() and (run / "config.json").read_bytes() == config  # nothing touched
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    rc = cli.main(["train", "--resume", str(run), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0 and f"lock of process {proc.pid} on " in err and "taken over" in err, err
    assert not tmp_files[0].exists() and not (run / "train.lock").exists()
