"""Subject IDs, subject-level splits, label tables and the leak report (library level, no images needed)."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from stylemri.data.labels import apply_labels, read_label_table, subjects_from_table
from stylemri.data.leaks import subject_report
from stylemri.data.splits import (
    SPLIT_HEADER,
    allocate,
    assign_splits,
    make_split,
    read_split_file,
)
from stylemri.data.subjects import FALLBACK_RULE, compile_subject_pattern, derive_subjects
from stylemri.data.tables import SourceIndex, read_csv, relative_key
from stylemri.errors import UserError

# ---------------------------------------------------------------------------------------------- subjects


@pytest.mark.parametrize(
    "path, subject, rule",
    [
        ("AD_NC/train/AD/218391_78.jpeg", "218391", "adni"),
        ("AD_NC/test/NC/1182968_100.jpeg", "1182968", "adni"),
        ("ADNI/002_S_0295_slice_40.png", "002_S_0295", "adni"),
        ("keras_png_slices_data/keras_png_slices_train/case_001_slice_0.nii.png", "001", "oasis"),
        ("keras_png_slices_data/keras_png_slices_seg_test/seg_442_slice_31.nii.png", "442", "oasis"),
        ("bids/sub-07/anat/sub-07_T1w.nii.gz", "sub-07", "bids"),
        ("bids/sub-ABC12/ses-1/anat/scan.nii.gz", "sub-ABC12", "bids"),
        ("flat/sub-03_T1w.nii", "sub-03", "bids"),
        ("volumes/AD/patient_17.nii.gz", "patient_17", "nifti"),
        ("volumes/NC/brain.NII", "brain", "nifti"),
        ("builtin:mni152", "mni152", "builtin"),
    ],
)
def test_subject_rules_for_known_layouts(path, subject, rule):
    ids = derive_subjects([path])
    assert ids.subjects == (subject,) and ids.rules == (rule,)
    assert not ids.none_derived


def test_slices_of_one_patient_share_a_subject_and_volumes_repeat():
    sources = ["a/AD/218391_78.jpeg", "a/AD/218391_79.jpeg", "a/NC/5_1.jpeg", "v/x.nii.gz", "v/x.nii.gz"]
    ids = derive_subjects(sources)
    assert ids.subjects == ("218391", "218391", "5", "x", "x")
    assert ids.num_subjects == 3 and len(ids) == 5
    assert ids.rule_counts() == {"adni": 3, "nifti": 2}


def test_fallback_each_file_its_own_subject_and_flagged():
    sources = ["/d/AD/scan.png", "/d/NC/scan.png", "/d/NC/other.tif"]
    ids = derive_subjects(sources)
    assert ids.rules == (FALLBACK_RULE,) * 3 and ids.none_derived and ids.fallback_count == 3
    # same file name in two folders stays two subjects
    assert ids.subjects == ("AD/scan", "NC/scan", "NC/other") and ids.num_subjects == 3


def test_partial_fallback_is_counted_but_not_none_derived():
    ids = derive_subjects(["d/1_2.png", "d/notes.png"])
    assert ids.fallback_count == 1 and not ids.none_derived
    assert ids.subjects[0] == "1"


def test_custom_pattern_on_name_then_path():
    ids = derive_subjects(["x/P0012-slice03.png", "x/P0012-slice04.png", "x/P0400-slice01.png"],
                          pattern=r"^(P\d+)-")
    assert ids.subjects == ("P0012", "P0012", "P0400") and set(ids.rules) == {"pattern"}
    by_folder = derive_subjects(["data/patients/bob/1.png", "data/patients/ann/2.png"], pattern=r"patients/(\w+)/")
    assert by_folder.subjects == ("bob", "ann")
    # the pattern wins over the ADNI rule; files it misses fall back to the built-in rules
    mixed = derive_subjects(["d/218391_78.jpeg", "d/P1-x.png"], pattern=r"^(P\d+)-")
    assert mixed.subjects == ("218391", "P1") and mixed.rules == ("adni", "pattern")


@pytest.mark.parametrize("pattern, message", [
    (r"^\d+_", "exactly one capture group"),
    (r"^(\d+)_(\d+)", "exactly one capture group"),
    (r"^(\d+", "not a valid regular expression"),
])
def test_bad_subject_patterns(pattern, message):
    with pytest.raises(UserError, match=message):
        compile_subject_pattern(pattern)


def test_pattern_matching_nothing_is_an_error():
    with pytest.raises(UserError, match="matched none of the 2 files"):
        derive_subjects(["a/1_2.png", "a/3_4.png"], pattern=r"^(P\d+)")


def test_table_overrides_rules():
    ids = derive_subjects(["d/1_2.png", "d/3_4.png"], table={"d/3_4.png": "alice"})
    assert ids.subjects == ("1", "alice") and ids.rules == ("adni", "table")


# ------------------------------------------------------------------------------------------------ tables


def test_source_index_matches_by_path_suffix(tmp_path):
    files = [str(tmp_path / "AD_NC" / "train" / "AD" / "1_2.jpeg"), str(tmp_path / "AD_NC" / "test" / "AD" / "1_2.jpeg")]
    index = SourceIndex(files)
    assert index.match("train/AD/1_2.jpeg") == [files[0]]
    assert index.match("AD_NC/test/AD/1_2.jpeg") == [files[1]]
    assert sorted(index.match("1_2.jpeg")) == sorted(files)
    assert index.match("val/AD/1_2.jpeg") == [] and index.match("") == []
    assert relative_key(files[0], tmp_path / "AD_NC") == "train/AD/1_2.jpeg"
    assert relative_key("/elsewhere/x.png", tmp_path).endswith("/elsewhere/x.png")
    assert relative_key("builtin:mni152", tmp_path) == "builtin:mni152"


def test_read_csv_delimiters_bom_and_errors(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("\ufeffSubject;Group\n1;AD\n\n2;NC;\n", encoding="utf-8")
    t = read_csv(p)
    assert t.header == ("Subject", "Group") and t.rows == (("1", "AD"), ("2", "NC")) and t.column("subject") == 0
    p.write_text("a,b\n1,2,3\n")
    with pytest.raises(UserError, match=r"t.csv:2: 3 fields, expected 2"):
        read_csv(p)
    p.write_text("")
    with pytest.raises(UserError, match="empty"):
        read_csv(p)
    p.write_text("a,A\n1,2\n")
    with pytest.raises(UserError, match="more than once"):
        read_csv(p)
    p.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(UserError, match="not a UTF-8"):
        read_csv(p)
    with pytest.raises(UserError, match="no such file"):
        read_csv(tmp_path / "missing.csv")


# ------------------------------------------------------------------------------------------------ splits


def _toy_dataset(n_ad: int = 12, n_nc: int = 8, slices: int = 3):
    """Per-sample lists for an ADNI-like flat dataset: n subjects per class, `slices` slices each."""
    sources, classes = [], []
    for cls, n, base in (("AD", n_ad, 100), ("NC", n_nc, 500)):
        for s in range(n):
            for k in range(slices):
                sources.append(f"/data/adni/{cls}/{base + s}_{k}.jpeg")
                classes.append(cls)
    return sources, derive_subjects(sources).subjects, classes


def test_allocate_counts():
    assert allocate(10, 0.1, 0.2) == (7, 1, 2)
    assert allocate(3, 0.1, 0.2) == (1, 1, 1)  # a requested split keeps one subject when possible
    assert allocate(2, 0.1, 0.2) == (2, 0, 0)
    assert allocate(1, 0.4, 0.5) == (1, 0, 0)
    assert allocate(0, 0.1, 0.2) == (0, 0, 0)
    assert allocate(20, 0.0, 0.25) == (15, 0, 5)


def test_split_keeps_subjects_whole_and_stratifies():
    sources, subjects, classes = _toy_dataset()
    table = make_split(sources, subjects, classes, val=0.25, test=0.25, seed=3, root="/data/adni")
    assert len(table.rows) == len(set(sources))  # one row per file
    assert table.rows[0].source.startswith(("AD/", "NC/"))  # relative to the dataset folder
    split_of_subject = defaultdict(set)
    for r in table.rows:
        split_of_subject[r.subject].add(r.split)
    assert all(len(s) == 1 for s in split_of_subject.values())
    counts = table.counts()
    # 12 AD subjects -> 6/3/3, 8 NC subjects -> 4/2/2: every split keeps both classes in proportion
    assert counts["train"] == {"AD": (6, 18), "NC": (4, 12)}
    assert counts["val"] == {"AD": (3, 9), "NC": (2, 6)}
    assert counts["test"] == {"AD": (3, 9), "NC": (2, 6)}
    assert subject_report([r.subject for r in table.rows], [r.class_name for r in table.rows],
                          [r.split for r in table.rows]).split_leaks == ()


def test_split_is_reproducible_and_seed_dependent(tmp_path):
    sources, subjects, classes = _toy_dataset(n_ad=30, n_nc=30)
    a = make_split(sources, subjects, classes, seed=7, root="/data/adni")
    b = make_split(list(reversed(sources)), list(reversed(subjects)), list(reversed(classes)), seed=7,
                   root="/data/adni")
    assert a == b  # input order does not matter
    a.write(tmp_path / "a.csv")
    b.write(tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    c = make_split(sources, subjects, classes, seed=8, root="/data/adni")
    assert {r.subject for r in c.rows if r.split == "test"} != {r.subject for r in a.rows if r.split == "test"}


def test_unstratified_split_and_majority_class():
    sources, subjects, classes = _toy_dataset(n_ad=10, n_nc=0)
    table = make_split(sources, subjects, classes, val=0.0, test=0.5, seed=0, stratify=False)
    assert Counter(r.split for r in table.rows) == {"train": 15, "test": 15}


@pytest.mark.parametrize("val, test, message", [
    (0.5, 0.5, "sum below 1"),
    (-0.1, 0.2, "--val -0.1"),
    (0.1, 1.5, "--test 1.5"),
    (float("nan"), 0.2, "--val nan"),
])
def test_bad_fractions(val, test, message):
    sources, subjects, classes = _toy_dataset(2, 2, 1)
    with pytest.raises(UserError, match=message):
        make_split(sources, subjects, classes, val=val, test=test)


def test_split_file_roundtrip_and_assignment(tmp_path):
    sources, subjects, classes = _toy_dataset()
    table = make_split(sources, subjects, classes, seed=1, root="/data/adni")
    path = table.write(tmp_path / "split.csv")
    assert path.read_text().splitlines()[0] == ",".join(SPLIT_HEADER)
    back = read_split_file(path)
    assert back.rows == table.rows
    # applied to the dataset (plus one new file the split file does not know)
    assignment = assign_splits(sources + ["/data/adni/AD/999_0.jpeg"], back)
    assert assignment.unlisted_files == ("/data/adni/AD/999_0.jpeg",) and assignment.stale_rows == ()
    test_idx = assignment.indices("test")
    assert {subjects[i] for i in test_idx} == back.subjects("test")
    assert not set(assignment.indices("train")) & set(test_idx)
    with pytest.raises(UserError, match="--split all"):
        assignment.indices("all")
    assert assignment.indices("validate") == assignment.indices("val") != []
    # applied to a copy holding only the AD folder: the NC rows are stale, nothing is unlisted
    ad_only = [s.replace("/data/adni/", "/mnt/copy/") for s, c in zip(sources, classes) if c == "AD"]
    partial = assign_splits(ad_only, back)
    assert partial.unlisted_files == () and len(partial.stale_rows) == 8 * 3
    assert all(s is not None for s in partial.splits)


@pytest.mark.parametrize("content, message", [
    ("source,subject,class\nA/1_0.png,1,AD\n", r"missing column\(s\) split"),
    ("file,split\nA/1_0.png,train\n", r"missing column\(s\) source, subject"),
    ("source,subject,class,split\n", "no rows"),
    ("source,subject,class,split\nA/1_0.png,1,AD,holdout\n", r"split.csv:2: split 'holdout'"),
    ("source,subject,class,split\n,1,AD,train\n", r"split.csv:2: empty source"),
    ("source,subject,class,split\nA/1_0.png,,AD,train\n", r"split.csv:2: empty subject"),
    ("source,subject,class,split\nA/1_0.png,1,AD,train\nA/1_0.png,1,AD,test\n",
     r"split.csv:3: A/1_0.png is in split test here and in train on line 2"),
])
def test_malformed_split_files(tmp_path, content, message):
    p = tmp_path / "split.csv"
    p.write_text(content)
    with pytest.raises(UserError, match=message):
        read_split_file(p)


def test_split_file_tolerates_case_and_duplicate_rows(tmp_path):
    p = tmp_path / "split.csv"
    p.write_text("Source,Subject,Split\nA/1_0.png,1,Train\nA/1_0.png,1,train\nB/2_0.png,2,validate\n")
    t = read_split_file(p)
    assert len(t.rows) == 2 and t.rows[0].split == "train" and t.rows[0].class_name == ""
    assert t.rows[1].split == "val"  # OASIS spelling accepted


# ------------------------------------------------------------------------------------------------ labels


def test_labels_by_subject_with_missing_extra_and_conflicting_rows(tmp_path):
    sources = [f"/flat/{s}_{k}.jpeg" for s in (1, 2, 3, 4, 5) for k in range(2)]
    subjects = derive_subjects(sources).subjects
    csv = tmp_path / "clinical.csv"
    csv.write_text(
        "Image Data ID,Subject,Group,Sex\n"
        "I1,1,AD,F\n"
        "I2,1,AD,F\n"       # same subject, same label: a duplicate visit, fine
        "I3,2,CN,M\n"
        "I4,3,AD,M\n"
        "I5,3,MCI,M\n"      # conflicting label for subject 3
        "I6,4,,F\n"         # empty label
        "I7,99,CN,M\n"      # matches no file
    )
    with pytest.raises(UserError, match=r"several label columns \(Image Data ID, Group, Sex\)"):
        read_label_table(csv)
    with pytest.raises(UserError, match="--label-column diagnosis: no such column"):
        read_label_table(csv, "diagnosis")
    with pytest.raises(UserError, match="identifies images"):
        read_label_table(csv, "subject")
    table = read_label_table(csv, "group")
    assert table.key_kind == "subject" and table.label_column == "Group"
    assert table.conflicts == {"3": ("AD", "MCI")} and table.empty_label_rows == 1 and table.duplicate_rows == 1
    result = apply_labels(sources, subjects, table)
    assert result.class_names == ("AD", "CN")
    assert result.labels == ("AD", "AD", "CN", "CN", None, None, None, None, None, None)
    assert result.label_ids().tolist() == [0, 0, 1, 1, -1, -1, -1, -1, -1, -1]
    assert result.unmatched_rows == ("99",) and result.conflicting == ("3",)
    assert result.unlabelled_files == tuple(sources[4:])


def test_labels_by_file_and_subject_override(tmp_path):
    sources = [str(tmp_path / "img" / n) for n in ("a.png", "b.png", "c.png")]
    csv = tmp_path / "labels.csv"
    csv.write_text("file,subject,dx\nimg/a.png,P1,AD\nb.png,P1,AD\nc.png,P2,NC\nc.png,P2,AD\nd.png,P3,NC\n")
    table = read_label_table(csv)
    assert table.key_kind == "file" and table.label_column == "dx" and table.conflicts == {"c.png": ("AD", "NC")}
    overrides = subjects_from_table(sources, table)
    assert overrides == {sources[0]: "P1", sources[1]: "P1", sources[2]: "P2"}
    ids = derive_subjects(sources, table=overrides)
    assert ids.subjects == ("P1", "P1", "P2") and set(ids.rules) == {"table"}
    result = apply_labels(sources, ids.subjects, table)
    assert result.labels == ("AD", "AD", None) and result.unmatched_rows == ("d.png",)
    assert result.conflicting == ("c.png",) and result.unlabelled_files == (sources[2],)


def test_subject_only_table_and_missing_key_column(tmp_path):
    csv = tmp_path / "s.csv"
    csv.write_text("file,subject\na.png,P1\n")
    table = read_label_table(csv)
    assert table.label_column is None and table.file_subjects == {"a.png": "P1"}
    csv.write_text("image,dx\na.png,AD\n")
    with pytest.raises(UserError, match="no 'subject' or 'file' column"):
        read_label_table(csv)
    csv.write_text("subject\n1\n")
    with pytest.raises(UserError, match="no label column"):
        read_label_table(csv)


# ------------------------------------------------------------------------------------------------- leaks


def test_leak_report_finds_subject_in_two_splits_and_two_classes():
    sources = [
        "AD_NC/train/AD/10_1.jpeg", "AD_NC/train/AD/10_2.jpeg", "AD_NC/train/AD/11_1.jpeg",
        "AD_NC/test/AD/10_3.jpeg",                                  # subject 10 planted in test too
        "AD_NC/train/NC/20_1.jpeg", "AD_NC/test/NC/21_1.jpeg", "AD_NC/test/AD/21_2.jpeg",  # 21: NC and AD
    ]
    splits = [s.split("/")[1] for s in sources]
    classes = [s.split("/")[2] for s in sources]
    report = subject_report(derive_subjects(sources).subjects, classes, splits)
    assert report.num_subjects == 4 and report.num_samples == 7
    assert report.split_leaks == (("10", ("test", "train")),)
    assert report.class_leaks == (("21", ("AD", "NC")),)
    assert report.has_leaks
    assert report.subjects_per_class == {"AD": 3, "NC": 2}
    assert report.subjects_per_split == {"train": 3, "test": 2}
    assert list(report.subjects_per_split) == ["train", "test"]
    assert report.subjects_per_split_class == {"train": {"AD": 2, "NC": 1}, "test": {"AD": 2, "NC": 1}}
    assert (report.slices_min, report.slices_median, report.slices_max) == (1, 1.5, 3)


def test_leak_report_clean_and_empty():
    clean = subject_report(["a", "a", "b"], ["X", "X", "Y"], ["train", "train", "test"])
    assert not clean.has_leaks and clean.slices_max == 2
    empty = subject_report([])
    assert empty.num_subjects == 0 and empty.slices_max == 0 and not empty.has_leaks
