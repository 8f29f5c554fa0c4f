"""Subjects end to end: the dataset's subject IDs, `data inspect` leaks, `data split`, --split-file, --labels."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import brain_volume, one_line_error, run_cli, write_nifti, write_png8

from stylemri import cli
from stylemri.config import DataConfig, from_dict, to_dict
from stylemri.data import load_dataset
from stylemri.errors import UserError






def _adni(root: Path, layout: dict[str, dict[str, list[int]]], slices: int = 2) -> Path:
    """AD_NC/<split>/<class>/<subject>_<slice>.png for the subjects listed."""
    for split, per_class in layout.items():
        for cls, subjects in per_class.items():
            for s in subjects:
                for k in range(slices):
                    write_png8(root / split / cls / f"{s}_{70 + k}.png", 8, 8, seed=s * 7 + k)
    return root


@pytest.fixture
def leaky_adni(tmp_path: Path) -> Path:
    """Subject 101 planted in train and test; subject 205 labelled both AD (test) and NC (train)."""
    return _adni(tmp_path / "AD_NC", {
        "train": {"AD": [100, 101, 102], "NC": [200, 201, 205]},
        "test": {"AD": [101, 103, 205], "NC": [202]},
    })


@pytest.fixture
def clean_adni(tmp_path: Path) -> Path:
    """12 AD and 8 NC subjects in one class-folder tree, 3 slices each."""
    return _adni(tmp_path / "adni", {"": {"AD": list(range(300, 312)), "NC": list(range(400, 408))}}, slices=3)


def test_dataset_exposes_subjects(leaky_adni):
    ds = load_dataset(DataConfig(source=str(leaky_adni), resolution=8, split="all"))
    assert len(ds.subjects) == len(ds) == 20
    for i in range(len(ds)):
        info = ds.sample_info(i)
        assert info.subject == Path(info.file).name.split("_")[0] == ds.subjects[i]
    summary = ds.report.subjects
    assert summary.rules == {"adni": 20} and not summary.none_derived and summary.selected_subjects == 8
    assert summary.whole.split_leaks == (("101", ("test", "train")), ("205", ("test", "train")))
    assert summary.whole.class_leaks == (("205", ("AD", "NC")),)
    train = load_dataset(DataConfig(source=str(leaky_adni), resolution=8, split="train"))
    assert set(train.subjects) == {"100", "101", "102", "200", "201", "205"} and train.report.subjects.selected_subjects == 6


def test_inspect_reports_leaks(leaky_adni, capsys):
    rc, out, err = run_cli(capsys, "data", "inspect", leaky_adni, "--resolution", "8", "--split", "all")
    assert rc == 0, err
    assert "subjects:     8 in the whole source, 8 in this selection; IDs from adni (20 file(s))" in out
    assert "slices per subject: min 2, median 2, max 4" in out
    assert "split leaks:  2 subject(s) in more than one split [test/train 2]: 101 (test, train); 205 (test, train)" in out
    assert "class leaks:  1 subject(s) in more than one class [AD/NC 1]: 205 (AD, NC)" in out
    table = out[out.index("subjects per split and class"):].splitlines()
    assert table[2].split() == ["train", "3", "3", "6"] and table[3].split() == ["test", "3", "1", "4"]
    assert table[4].split() == ["(any)", "5", "4", "8"]  # 205 counts in both classes
    rc, out, _ = run_cli(capsys, "data", "inspect", leaky_adni, "--resolution", "8", "--split", "all", "--json")
    report = json.loads(out)["subjects"]
    assert report["whole"]["split_leaks"] == [["101", ["test", "train"]], ["205", ["test", "train"]]]
    assert report["whole"]["subjects_per_class"] == {"AD": 5, "NC": 4}


def test_inspect_says_when_no_subject_could_be_derived(tmp_path, capsys):
    for name in ("scan_a", "scan_b", "brain"):
        write_png8(tmp_path / "flat" / f"{name}.png", 8, 8)
    rc, out, _ = run_cli(capsys, "data", "inspect", tmp_path / "flat", "--resolution", "8")
    assert rc == 0 and "no subject could be derived" in out and "each of the 3 file(s)" in out
    rc, out, _ = run_cli(capsys, "data", "inspect", tmp_path / "flat", "--resolution", "8",
                      "--subject-pattern", r"^(scan)_")
    assert rc == 0 and "2 in the whole source" in out and "1 file(s) match no subject rule" in out


def test_subjects_of_oasis_and_bids_nifti(oasis_tree, tmp_path):
    ds = load_dataset(DataConfig(source=str(oasis_tree), resolution=8, split="all"))
    assert sorted(set(ds.subjects)) == ["000", "001", "002"] and ds.report.subjects.rules == {"oasis": 6}
    # OASIS reuses case numbers across its split folders: the audit shows them
    assert [s for s, _ in ds.report.subjects.whole.split_leaks] == ["000", "001"]
    for sub in ("sub-01", "sub-02"):
        write_nifti(tmp_path / "bids" / sub / "anat" / f"{sub}_T1w.nii.gz", brain_volume(seed=int(sub[-1])))
    vols = load_dataset(DataConfig(source=str(tmp_path / "bids"), resolution=8))
    assert set(vols.subjects) == {"sub-01", "sub-02"} and vols.report.subjects.rules == {"bids": 2}
    assert vols.report.subjects.whole.slices_min > 1  # every slice of a volume belongs to its subject


def test_data_split_keeps_subjects_whole_stratifies_and_reproduces(clean_adni, tmp_path, capsys):
    args = ["data", "split", clean_adni, "--val", "0.25", "--test", "0.25", "--seed", "5"]
    rc, out, err = run_cli(capsys, *args, "--out", tmp_path / "s1")
    assert rc == 0 and err == ""
    assert "60 file(s), 20 subject(s); seed 5, stratified by class" in out
    rows = list(csv.DictReader((tmp_path / "s1" / "split.csv").open()))
    assert len(rows) == 60 and list(rows[0]) == ["source", "subject", "class", "split"]
    assert rows[0]["source"].startswith("AD/")  # relative to the source folder
    subject_splits: dict[str, set[str]] = defaultdict(set)
    per_split_class: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in rows:
        subject_splits[r["subject"]].add(r["split"])
        per_split_class[(r["split"], r["class"])].add(r["subject"])
    assert all(len(s) == 1 for s in subject_splits.values())
    assert {k: len(v) for k, v in per_split_class.items()} == {
        ("train", "AD"): 6, ("val", "AD"): 3, ("test", "AD"): 3, ("train", "NC"): 4, ("val", "NC"): 2, ("test", "NC"): 2}
    assert run_cli(capsys, *args, "--out", tmp_path / "s2")[0] == 0
    assert (tmp_path / "s1" / "split.csv").read_bytes() == (tmp_path / "s2" / "split.csv").read_bytes()
    assert run_cli(capsys, *args[:-1], "6", "--out", tmp_path / "s3")[0] == 0
    assert (tmp_path / "s1" / "split.csv").read_bytes() != (tmp_path / "s3" / "split.csv").read_bytes()

    # the split file drives --split anywhere a source is accepted, and inspect finds no leak
    split_file = tmp_path / "s1" / "split.csv"
    parts = {}
    for split in ("train", "val", "test"):
        ds = load_dataset(DataConfig(source=str(clean_adni), resolution=8, split=split, split_file=str(split_file)))
        parts[split] = set(ds.subjects)
        assert {ds.sample_info(i).split for i in range(len(ds))} == {split}
    assert [len(p) for p in parts.values()] == [10, 5, 5]
    assert not (parts["train"] & parts["val"] or parts["train"] & parts["test"] or parts["val"] & parts["test"])
    rc, out, err = run_cli(capsys, "data", "inspect", clean_adni, "--resolution", "8", "--split-file", split_file,
                        "--split", "all")
    assert rc == 0 and "split leaks:  none" in out and err == ""
    assert "val             3      2        5" in out


def test_split_file_applies_to_a_moved_copy_and_reports_unlisted(clean_adni, tmp_path, capsys):
    assert run_cli(capsys, "data", "split", clean_adni, "--out", tmp_path / "s")[0] == 0
    copy = _adni(tmp_path / "elsewhere" / "adni", {"": {"AD": list(range(300, 312)) + [999], "NC": []}}, slices=3)
    rc, out, err = run_cli(capsys, "data", "inspect", copy, "--resolution", "8", "--split-file", tmp_path / "s" / "split.csv",
                        "--split", "train")
    assert rc == 0
    assert "split.csv: 3 file(s) of the source are in no split and left out (e.g. 999_70.png" in err
    assert "split.csv: 24 row(s) match no file of the source" in err


def test_data_split_with_labels_and_pattern(tmp_path, capsys):
    for s in ("P01", "P02", "P03", "P04", "P05", "P06"):
        for k in range(2):
            write_png8(tmp_path / "flat" / f"{s}-slice{k}.png", 8, 8, seed=k)
    labels = tmp_path / "clinical.csv"
    labels.write_text("Subject,DX,Age\nP01,AD,70\nP02,AD,71\nP03,AD,72\nP04,CN,60\nP05,CN,61\nP06,CN,62\nP07,CN,50\n")
    rc, out, err = run_cli(capsys, "data", "split", tmp_path / "flat", "--out", tmp_path / "s", "--subject-pattern",
                        r"^(P\d+)-", "--labels", labels, "--label-column", "dx", "--test", "0.34", "--val", "0")
    assert rc == 0, err
    rows = list(csv.DictReader((tmp_path / "s" / "split.csv").open()))
    assert {r["class"] for r in rows} == {"AD", "CN"}
    assert {(r["split"], r["class"]) for r in rows if r["split"] == "test"} == {("test", "AD"), ("test", "CN")}
    assert "clinical.csv: 1 row(s) match no file (e.g. P07)" in err
    rc, out, err = run_cli(capsys, "data", "split", "builtin:mni152", "--out", tmp_path / "mni")
    assert rc == 0 and "1 file(s), 1 subject(s)" in out
    assert "--val 0.1: no subject went to val" in err and "--test 0.2: no subject went to test" in err


def test_labels_table_gives_classes_and_reports_mismatches(tmp_path, capsys):
    for s in (1, 2, 3, 4, 5):
        for k in range(2):
            write_png8(tmp_path / "flat" / f"{s}_{k}.png", 8, 8, seed=s + k)
    labels = tmp_path / "adni.csv"
    labels.write_text("Subject,Group\n1,AD\n1,AD\n2,CN\n3,AD\n3,MCI\n4,CN\n99,CN\n")
    cfg = DataConfig(source=str(tmp_path / "flat"), resolution=8, labels=str(labels))
    ds = load_dataset(cfg)
    assert ds.class_names == ["AD", "CN"] and len(ds) == 6  # subject 3 conflicts, 5 has no row
    assert {(s, ds.class_names[c]) for s, c in zip(ds.subjects, ds.labels)} == {("1", "AD"), ("2", "CN"), ("4", "CN")}
    warnings = " | ".join(ds.report.warnings)
    assert "adni.csv: 1 row(s) match no file (e.g. 99)" in warnings
    assert "adni.csv: 1 subject(s) with conflicting rows left unlabelled (3: AD/MCI)" in warnings
    assert "adni.csv: 4 file(s) match no row and are left out" in warnings
    assert "1 repeated row(s)" in warnings
    assert ds.report.counts == {"": {"AD": 2, "CN": 4}}
    assert load_dataset(DataConfig(source=str(tmp_path / "flat"), resolution=8, labels=str(labels),
                                   classes=("CN",))).class_names == ["CN"]
    assert from_dict(DataConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg
    rc, out, err = run_cli(capsys, "data", "inspect", tmp_path / "flat", "--resolution", "8", "--labels", labels)
    assert rc == 0 and "classes AD, CN" in out and "warning: adni.csv: 1 row(s) match no file" in err


def test_bad_inputs_exit_2_with_one_line(clean_adni, tmp_path, capsys):
    src = str(clean_adni)
    assert "exactly one capture group" in one_line_error(capsys, "data", "inspect", src, "--subject-pattern", r"\d+_")
    assert "not a valid regular expression" in one_line_error(capsys, "data", "inspect", src, "--subject-pattern", "(")
    assert "matched none of the 60 files" in one_line_error(capsys, "data", "inspect", src, "--resolution", "8",
                                                             "--subject-pattern", r"^(P\d+)")
    assert "--split-file nope.csv: no such file" in one_line_error(capsys, "data", "inspect", src, "--split-file",
                                                                    "nope.csv")
    assert "expected --labels" in one_line_error(capsys, "data", "inspect", src, "--label-column", "dx")
    bad_split = tmp_path / "bad.csv"
    bad_split.write_text("source,subject,class,split\nAD/300_70.png,300,AD,holdout\n")
    assert "bad.csv:2: split 'holdout'" in one_line_error(capsys, "data", "inspect", src, "--resolution", "8",
                                                          "--split-file", bad_split)
    bad_split.write_text("source,subject,class,split\nother/1_1.png,1,AD,train\n")
    assert "none of its 1 files is in the source" in one_line_error(capsys, "data", "inspect", src, "--resolution",
                                                                     "8", "--split-file", bad_split)
    labels = tmp_path / "labels.csv"
    labels.write_text("subject,dx,sex\n300,AD,F\n")
    assert "--label-column age: no such column" in one_line_error(capsys, "data", "inspect", src, "--resolution", "8",
                                                                   "--labels", labels, "--label-column", "age")
    assert "several label columns (dx, sex)" in one_line_error(capsys, "data", "inspect", src, "--resolution", "8",
                                                                "--labels", labels)
    labels.write_text("image,dx\na.png,AD\n")
    assert "no 'subject' or 'file' column" in one_line_error(capsys, "data", "split", src, "--out", tmp_path / "o",
                                                              "--labels", labels)
    labels.write_text("subject,dx\nX9,AD\n")
    assert "no row matches a file" in one_line_error(capsys, "data", "inspect", src, "--resolution", "8",
                                                      "--labels", labels)
    assert "sum below 1" in one_line_error(capsys, "data", "split", src, "--out", tmp_path / "o", "--val", "0.6",
                                            "--test", "0.5")
    assert "--val 1.5" in one_line_error(capsys, "data", "split", src, "--out", tmp_path / "o", "--val", "1.5")
    (tmp_path / "file").write_text("x")
    assert "not a folder" in one_line_error(capsys, "data", "split", src, "--out", tmp_path / "file")
    assert "--classes MCI" in one_line_error(capsys, "data", "split", src, "--out", tmp_path / "o", "--classes", "MCI")
    assert not (tmp_path / "o").exists()


def test_help_lists_subject_flags(capsys):
    for argv in (["data", "inspect", "--help"], ["data", "split", "--help"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        out = capsys.readouterr().out
        assert e.value.code == 0
        for flag in ("--subject-pattern", "--labels", "--label-column"):
            assert flag in out
    with pytest.raises(SystemExit):
        cli.main(["data", "inspect", "--help"])
    assert "--split-file" in capsys.readouterr().out


def test_library_errors_are_user_errors(clean_adni):
    with pytest.raises(UserError, match="--split holdout"):
        load_dataset(DataConfig(source=str(clean_adni), resolution=8, split="holdout"))
    assert np.asarray(load_dataset(DataConfig(source=str(clean_adni), resolution=8)).subjects).dtype == object
