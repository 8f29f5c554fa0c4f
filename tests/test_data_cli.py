"""`stylemri data inspect`: the report, the grid, and exit code 2 with one line for every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import one_line_error, run_cli, write_corrupt_jpeg, write_png8
from PIL import Image

from stylemri import cli






def test_inspect_builtin_writes_grid(tmp_path, capsys):
    grid = tmp_path / "runs" / "demo" / "real_examples.png"
    rc, out, err = run_cli(capsys, "data", "inspect", "builtin:mni152", "--resolution", "16", "--grid", str(grid))
    assert rc == 0 and err == ""
    assert "layout:       builtin" in out and "axial" in out and "sagittal" in out and "197x233x189" in out
    img = np.asarray(Image.open(grid))
    assert img.ndim == 2 and img.shape == (3 * 18 + 2, 8 * 18 + 2) and img.max() > 100  # 3 classes x 8 tiles
    rc, out, _ = run_cli(capsys, "data", "inspect", "builtin:mni152", "--resolution", "16")
    assert rc == 0 and "reused (nothing decoded)" in out


def test_inspect_adni_report_and_json(adni_tree, capsys):
    write_corrupt_jpeg(adni_tree / "train" / "AD" / "broken.jpeg")
    (adni_tree / "train" / "NC" / "Thumbs.db").write_bytes(b"\0")
    grid = adni_tree.parent / "grid.png"
    rc, out, err = run_cli(capsys, "data", "inspect", str(adni_tree), "--resolution", "32", "--classes", "AD",
                        "--grid", str(grid), "--grid-per-class", "4")
    assert rc == 0
    tiles = np.asarray(Image.open(grid))
    assert tiles.shape == (34 + 2, 4 * 34 + 2)  # one class row, 4 tiles: 3 samples + 1 empty
    assert tiles[2:34, 2:34].max() > 0 and tiles[2:34, 104:136].max() == 0
    assert "split-folders" in out and "20x16 (7)" in out and "skipped:      2" in out and "broken.jpeg" in out
    assert "upsampled:    7" in out
    assert "warning: 7 sample(s) smaller than 32 px were upsampled" in err
    rc, out, _ = run_cli(capsys, "data", "inspect", str(adni_tree), "--resolution", "8", "--split", "all", "--json")
    report = json.loads(out)
    assert rc == 0 and report["counts"] == {"train": {"AD": 3, "NC": 2}, "test": {"AD": 1, "NC": 1}}
    assert report["selected"] == 7 and report["skipped"] == 2 and report["layout"] == "split-folders"


def test_help_is_complete(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["data", "inspect", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for flag in ("--resolution", "--grid", "--split", "--classes", "--axis", "--min-content", "--cache-dir",
                 "--channels", "--no-xflip", "examples:"):
        assert flag in out


def test_error_missing_path(tmp_path, capsys):
    line = one_line_error(capsys, "data", "inspect", str(tmp_path / "nope"))
    assert f"{tmp_path / 'nope'}: no such file or folder" in line


def test_error_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert "empty folder" in one_line_error(capsys, "data", "inspect", str(tmp_path / "empty"))


def test_error_no_supported_files(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("x")
    (tmp_path / "d" / "table.csv").write_text("x")
    line = one_line_error(capsys, "data", "inspect", str(tmp_path / "d"))
    assert "no supported files" in line and ".csv" in line and "expected" in line


def test_error_unknown_class(adni_tree, capsys):
    line = one_line_error(capsys, "data", "inspect", str(adni_tree), "--classes", "AD,MCI")
    assert "--classes MCI: no such class" in line and "AD, NC" in line


def test_error_unknown_builtin(capsys):
    assert "builtin:mni305: unknown built-in dataset" in one_line_error(capsys, "data", "inspect", "builtin:mni305")


def test_error_everything_skipped(tmp_path, capsys):
    write_corrupt_jpeg(tmp_path / "bad" / "a.jpg")
    (tmp_path / "bad" / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "bad" / "b.nii.gz").write_bytes(b"not gzip")
    line = one_line_error(capsys, "data", "inspect", str(tmp_path / "bad"))
    assert "all 3 files were skipped" in line and "a.jpg" in line


def test_error_missing_split_and_bad_values(adni_tree, tmp_path, capsys):
    assert "no 'validate' split folder" in one_line_error(capsys, "data", "inspect", str(adni_tree), "--split", "validate")
    assert "--resolution 48" in one_line_error(capsys, "data", "inspect", "builtin:mni152", "--resolution", "48")
    assert "--min-content 2.0" in one_line_error(capsys, "data", "inspect", "builtin:mni152", "--min-content", "2")
    write_png8(tmp_path / "one.png")
    assert "one image file; a data set" in one_line_error(capsys, "data", "inspect", str(tmp_path / "one.png"))
    assert "--grid x.jpg" in one_line_error(capsys, "data", "inspect", "builtin:mni152", "--grid", "x.jpg")


def test_error_argparse_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["data", "inspect", "builtin:mni152", "--axis", "oblique"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "--axis" in err[0]
