"""`stylemri info networks`."""

from __future__ import annotations

import pytest

from conftest import run_cli
from stylemri import cli
from stylemri.config import NetworkConfig
from stylemri.networks import PRESETS, parameter_counts


def run(capsys, *argv: str) -> tuple[int, str, str]:
    return run_cli(capsys, "info", "networks", *argv)


def test_lists_every_preset_and_the_default(capsys):
    rc, out, _ = run(capsys)
    assert rc == 0
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["config", "arch", "res"]
    assert [line.split()[0] for line in lines[1:]] == [*PRESETS, "default"]
    default = parameter_counts(NetworkConfig())
    assert lines[-1].split()[-2:] == [f"{default['G']:,}", f"{default['D']:,}"]


def test_preset_with_overrides_and_per_block(capsys):
    rc, out, _ = run(capsys, "--preset", "stylegan2-auto", "--resolution", "256", "--per-block")
    assert rc == 0
    row = out.splitlines()[1].split()
    assert row[0] == "stylegan2-auto" and row[-2:] == ["23,186,516", "24,000,961"]  # = NVlabs for this config
    blocks = [line.split() for line in out.splitlines() if line.startswith("  G.") or line.startswith("  D.")]
    assert sum(int(b[1].replace(",", "")) for b in blocks if b[0].startswith("G.")) == 23_186_516
    assert sum(int(b[1].replace(",", "")) for b in blocks if b[0].startswith("D.")) == 24_000_961


def test_custom_config(capsys):
    rc, out, _ = run(capsys, "--arch", "stylegan", "--resolution", "32", "--channels", "3", "--c-dim", "2",
                     "--channel-base", "1024", "--channel-max", "64", "--map-layers", "8")
    assert rc == 0
    row = out.splitlines()[1].split()
    counts = parameter_counts(NetworkConfig(arch="stylegan", resolution=32, img_channels=3, c_dim=2,
                                            channel_base=1024, channel_max=64, map_layers=8))
    assert row[:8] == ["custom", "stylegan", "32", "3", "2", "1024", "64", "8"]
    assert row[-2:] == [f"{counts['G']:,}", f"{counts['D']:,}"]


def test_bad_resolution_is_one_line_exit_2(capsys):
    rc, out, err = run(capsys, "--resolution", "100")
    assert rc == 2 and out == ""
    assert err.strip() == "stylemri: error: --resolution 100: expected a power of two from 4 to 1024"


def test_help_is_complete(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["info", "networks", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--preset", "--arch", "--resolution", "--channels", "--c-dim", "--per-block", *PRESETS):
        assert flag in out
