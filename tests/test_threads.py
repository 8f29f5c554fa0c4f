"""The CPU thread policy (device.choose_threads): every core when quiet, one thread on a saturated machine,
--threads always wins; and `stylemri train` prints what it chose."""

from __future__ import annotations

from pathlib import Path

from conftest import TINY_FLAGS, run_cli
from stylemri.device import busy_elsewhere, choose_threads


def test_thread_policy_uses_the_cores_when_quiet_and_one_when_saturated():
    assert choose_threads(None, cores=2, load=0.4).threads == 2
    busy = choose_threads(None, cores=2, load=4.0)
    assert busy.threads == 1 and "load 4.0" in busy.reason
    assert choose_threads(3, cores=2, load=9.0).threads == 3  # --threads wins
    assert choose_threads(None, cores=1, load=5.0).threads == 1


def test_busy_elsewhere_reads_the_machine():
    assert busy_elsewhere(samples=2, interval_s=0.0) >= 0


def test_train_prints_the_threads_it_uses(tmp_path: Path, capsys):
    import torch

    before = torch.get_num_threads()
    rc, _, err = run_cli(capsys, "train", "--resolution", "16", "--kimg", "0.016", "--batch", "8", "--outdir",
                         tmp_path, "--threads", "1", *TINY_FLAGS)
    assert rc == 0, err
    assert "1 threads (--threads)" in err.splitlines()[0], err
    assert torch.get_num_threads() == before  # the process's setting is put back after the run


def test_bench_threads_names_the_resolved_values_two_runs_do_not_share():
    """What `bench_threads.py` prints after comparing two checkouts: the defaults that changed between them."""
    from benchmarks.bench_threads import config_differences, flatten

    old = flatten({"network": {"map_layers": 8, "z_dim": 64}, "train": {"workers": 2}, "version": "0.1"})
    new = flatten({"network": {"map_layers": 2, "z_dim": 64}, "train": {}, "version": "0.2"})
    assert old["network.map_layers"] == 8
    assert config_differences(old, new) == ["network.map_layers: 8 -> 2", "train.workers: 2 -> '-'",
                                            "version: '0.1' -> '0.2'"]
