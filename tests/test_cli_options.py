"""One flag layer (issue 21): every command's parser is walked; a shared concept has one name, one metavar and one
validator everywhere, old spellings parse with one deprecation line, train's flags come from the config fields."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from conftest import one_line_error, run_cli
from stylemri import cli
from stylemri.cli.options import SHARED, add_flag
from stylemri.config import DataConfig, NetworkConfig, TrainConfig, flag, resumable, settings


def _parsers(parser: argparse.ArgumentParser, prog: str = "stylemri"):
    """(command path, parser) for every command and sub-command."""
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{prog} {name}")


def _problems(parser: argparse.ArgumentParser, where: str) -> list[str]:
    """Shared flags declared another way (metavar, validator, choices) or old spellings left visible."""
    old = {o: name for name, spec in SHARED.items() for o in (*spec.old, *spec.aliases)}
    dests = {o: a.dest for a in parser._actions for o in a.option_strings}
    out = []
    for action in parser._actions:
        renamed = getattr(action, "new", None)  # a deprecated spelling of another flag (embed's old --dims)
        for option in action.option_strings:
            spec = SHARED.get(option)
            if spec is not None and renamed is None:
                if spec.choices is None and action.metavar != spec.metavar:
                    out.append(f"{where} {option}: metavar {action.metavar!r}, expected {spec.metavar!r}")
                if action.type is not spec.type:
                    out.append(f"{where} {option}: validator {action.type!r}, expected {spec.type!r}")
                if tuple(action.choices or ()) != tuple(spec.choices or ()):
                    out.append(f"{where} {option}: choices {action.choices!r}, expected {spec.choices!r}")
            if option in old:
                new = old[option]
                if action.help is not argparse.SUPPRESS or dests.get(new) != action.dest:
                    out.append(f"{where} {option}: an old spelling of {new}, expected a hidden alias of it")
    return out


def test_every_command_declares_shared_flags_the_same_way():
    walked = list(_parsers(cli.build_parser()))
    assert len(walked) >= 19  # every command and sub-command was reached (18 today, and the root)
    problems = [p for where, parser in walked for p in _problems(parser, where)]
    assert problems == []
    used = {o for _, parser in walked for a in parser._actions for o in a.option_strings}
    assert set(SHARED) <= used, set(SHARED) - used  # no entry of the table is dead


def test_walk_catches_a_command_that_redeclares_a_shared_flag():
    p = argparse.ArgumentParser()
    p.add_argument("--trunc", type=float, default=1.0, metavar="PSI")  # by hand: skips the psi check
    p.add_argument("--device", default="auto", metavar="DEV")
    p.add_argument("--n", type=int)  # the old spelling of --num, visible
    problems = _problems(p, "new")
    assert any("--trunc: validator" in x for x in problems)
    assert any("--device: metavar 'DEV'" in x for x in problems)
    assert any("--n: an old spelling of --num" in x for x in problems)
    q = argparse.ArgumentParser()
    add_flag(q, "--trunc", default=1.0)
    add_flag(q, "--num", default=1)
    assert _problems(q, "ok") == []


@pytest.mark.parametrize("argv,dest,value,old,new", [
    (["mix", "R", "--rows", "0", "--cols", "1", "--styles", "fine"], "layers", "fine", "--styles", "--layers"),
    (["interpolate", "R", "--class-samples", "8"], "w_samples", 8, "--class-samples", "--w-samples"),
    (["edit", "R", "--latent", "w.npy", "--direction", "A-B", "--class-samples", "8"], "w_samples", 8,
     "--class-samples", "--w-samples"),
    (["edit", "R", "--latent", "w.npy", "--direction", "A-B", "--steps", "-1..1"], "multiples", "-1..1",
     "--steps", "--multiples"),
    (["project", "R", "img.png", "--fixed-noise"], "model_noise", True, "--fixed-noise", "--model-noise"),
    (["embed", "R", "--dims", "2"], "plot_dims", "2", "--dims", "--plot-dims"),
    (["fid", "A", "B", "--json", "out.json"], "json_out", "out.json", "--json", "--json-out"),
])
def test_old_spellings_parse_with_one_deprecation_line(capsys, argv, dest, value, old, new):
    args = cli.build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    assert capsys.readouterr().err.strip().splitlines() == [f"stylemri: warning: {old} is deprecated; use {new}"]


def test_short_spellings_stay_silent(capsys):
    """--out, --n and --batch-size were promised as plain aliases: they parse everywhere, without a line."""
    parser = cli.build_parser()
    assert parser.parse_args(["audit", "R", "--n", "7", "--out", "o"]).num == 7  # was "ambiguous option"
    assert parser.parse_args(["fid", "A", "B", "--n", "7", "--batch-size", "3"]).batch == 3
    assert capsys.readouterr().err == ""


def test_plot_dims_choices_are_checked(capsys):
    one_line_error(capsys, "embed", "R", "--plot-dims", "4", match="--plot-dims: invalid choice")


@pytest.mark.parametrize("argv", [["generate", "R", "--trunc", "100", "--outdir", "o"],
                                  ["evaluate", "R", "--trunc", "100"], ["audit", "R", "--trunc", "100"],
                                  ["embed", "R", "--trunc", "100"], ["compare", "R", "--trunc", "100"]])
def test_trunc_is_checked_by_every_command_before_anything_runs(capsys, argv):
    one_line_error(capsys, *argv, match="--trunc 100.0: expected a truncation psi")


def test_train_flags_are_the_config_fields_with_help():
    parser = dict(_parsers(cli.build_parser()))["stylemri train"]
    options = {o: a for a in parser._actions for o in a.option_strings}
    for cls, prefix in ((NetworkConfig, "net_"), (TrainConfig, "train_")):
        for s in settings(cls):
            assert options[s.flag].dest == prefix + s.name and options[s.flag].help == s.help
    assert options["--batch"].metavar == "B" and options["--seed"].type is SHARED["--seed"].type
    assert {flag(k) for k in resumable(TrainConfig)} <= set(options)
    assert flag("tf32") == "--tf32" and flag("num_workers") == "--workers" and flag("source") == "--data"
    assert resumable(DataConfig) == {"cache_dir"}


def test_adding_a_setting_is_one_field(monkeypatch):
    """A new field with setting(..., help=...) is a train flag, reaches the explicit values and the resume rules."""
    from stylemri.cli.options import add_config_flags, config_values
    from stylemri.config import setting

    @dataclasses.dataclass(frozen=True)
    class Extra:
        lr_decay: str = setting("none", help="learning-rate decay: none or cosine", resumable=True)
        threads: int = setting(0, help="intra-op threads (0: torch's default)")

    p = argparse.ArgumentParser()
    add_config_flags({"training": p}, Extra, "train_")
    args = p.parse_args(["--lr-decay", "cosine"])
    assert config_values(args, Extra, "train_") == {"lr_decay": "cosine"}
    assert resumable(Extra) == {"lr_decay"}
    assert p.parse_args(["--threads", "4"]).train_threads == 4


class _Data:
    num_classes, fingerprint, class_names, voxel_mm = 2, "f" * 40, ("AD", "NC"), None

    def __len__(self) -> int:
        return 10


@pytest.mark.parametrize("preset", ["auto", "stylegan-adni", "stylegan2-adni"])
def test_info_networks_counts_what_train_builds(capsys, preset):
    """`info networks --preset P` and `train --preset P` resolve one network (one preset table)."""
    from stylemri.networks import parameter_counts
    from stylemri.training.resolve import RunFlags, resolve_run, run_data_config

    flags = RunFlags(network={"resolution": 32, "channel_base": 512, "channel_max": 32}, preset=preset)
    trained = resolve_run(flags, _Data(), run_data_config(flags)).network
    rc, out, _ = run_cli(capsys, "info", "networks", "--preset", preset, "--resolution", "32", "--channel-base", "512",
                         "--channel-max", "32")
    row = out.splitlines()[1].split()
    counts = parameter_counts(trained)
    assert rc == 0 and row[0] == preset and row[-2:] == [f"{counts['G']:,}", f"{counts['D']:,}"]
    assert row[1] == trained.arch and int(row[7]) == trained.map_layers


def test_resume_run_allows_only_resumable_changes():
    from stylemri.config import RunConfig
    from stylemri.errors import UserError
    from stylemri.training.resolve import RunFlags, resume_run

    saved = RunConfig(num_images=1000)
    cfg = resume_run(saved, RunFlags(train={"kimg": 50.0, "tf32": True}, data=DataConfig(cache_dir="/c")))
    assert cfg.train.kimg == 50.0 and cfg.train.tf32 and cfg.data.cache_dir == "/c"
    assert resume_run(saved, RunFlags(train={"epochs": 2.0})).train.kimg == 2.0
    with pytest.raises(UserError, match=r"train.r1_gamma is 10.0 in the run, 3.0 requested.*--tf32"):
        resume_run(saved, RunFlags(train={"r1_gamma": 3.0}), "run")
    with pytest.raises(UserError, match="data.axis is 'axial' in the run, 'coronal' requested"):
        resume_run(saved, RunFlags(data=DataConfig(axis="coronal")), "run")
    with pytest.raises(UserError, match="--metrics bogus"):
        resume_run(saved, RunFlags(train={"metrics": ("bogus",)}), "run")
