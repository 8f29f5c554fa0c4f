"""Layouts: ADNI split/class folders, OASIS keras_png_slices, flat folders, subject folders, builtin:mni152."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import brain_volume, write_nifti, write_png8

from stylemri.config import DataConfig
from stylemri.data import load_dataset, scan_source
from stylemri.errors import UserError


def _cfg(source, **kw):
    return DataConfig(source=str(source), resolution=kw.pop("resolution", 8), **kw)


def test_adni_root_splits_and_labels(adni_tree):
    train = load_dataset(_cfg(adni_tree))
    assert train.report.layout == "split-folders" and train.report.splits == ("train", "test")
    assert train.class_names == ["AD", "NC"] and train.num_classes == 2
    assert len(train) == 5 and train.labels.dtype == np.int64 and sorted(train.labels.tolist()) == [0, 0, 0, 1, 1]
    for i in range(len(train)):
        info = train.sample_info(i)
        assert info.split == "train" and f"/train/{info.class_name}/" in info.file and info.slice is None
        assert train.class_names[train.labels[i]] == info.class_name
        assert train.source_of(i).endswith(".jpeg")
    assert train.report.counts == {"train": {"AD": 3, "NC": 2}, "test": {"AD": 1, "NC": 1}}
    test = load_dataset(_cfg(adni_tree, split="test"))
    assert len(test) == 2 and {test.sample_info(i).split for i in range(2)} == {"test"}
    assert len(load_dataset(_cfg(adni_tree, split="all"))) == 7
    assert train.report.original_sizes == {"20x16": 7} and train.report.channels_seen == {"rgb": 7}


def test_adni_pointed_at_train_and_class_subset(adni_tree):
    ds = load_dataset(_cfg(adni_tree / "train"))
    assert ds.report.layout == "class-folders" and len(ds) == 5 and ds.class_names == ["AD", "NC"]
    assert {ds.sample_info(i).split for i in range(len(ds))} == {"train"}
    ad = load_dataset(_cfg(adni_tree, classes=("AD",)))
    assert ad.class_names == ["AD"] and len(ad) == 3 and (ad.labels == 0).all()
    assert ad.fingerprint != load_dataset(_cfg(adni_tree)).fingerprint
    nc = load_dataset(_cfg(adni_tree / "test", classes=("NC",)))  # path chose the split; --split train ignored
    assert len(nc) == 1 and nc.class_names == ["NC"]


def test_oasis_layout_ignores_seg_folders(oasis_tree):
    ds = load_dataset(_cfg(oasis_tree))
    r = ds.report
    assert r.layout == "oasis" and r.splits == ("train", "validate", "test")
    assert len(ds) == 3 and ds.class_names == ["all"] and ds.num_classes == 1
    assert any("keras_png_slices_seg_train" in f for f in r.ignored_folders)
    assert all(ds.source_of(i).rsplit("/", 1)[1].startswith("case_") for i in range(len(ds)))
    assert len(load_dataset(_cfg(oasis_tree, split="validate"))) == 2
    assert len(load_dataset(_cfg(oasis_tree, split="all"))) == 6
    seg = load_dataset(_cfg(oasis_tree / "keras_png_slices_seg_train"))  # explicitly pointed at: used
    assert len(seg) == 3 and all(seg.source_of(i).rsplit("/", 1)[1].startswith("seg_") for i in range(3))
    test = load_dataset(_cfg(oasis_tree, split="test"))
    assert len(test) == 1 and "case_000_slice_0.nii.png" in test.source_of(0)


def test_missing_split_folder_is_an_error(tmp_path):
    write_png8(tmp_path / "d" / "train" / "AD" / "a.png")
    write_png8(tmp_path / "d" / "validate" / "AD" / "b.png")
    with pytest.raises(UserError, match=r"--split test: .* no 'test' split folder; expected one of: train, validate"):
        load_dataset(_cfg(tmp_path / "d", split="test"))


def test_flat_folder_and_split_warning(tmp_path):
    for i in range(3):
        write_png8(tmp_path / "flat" / f"s{i}.png", seed=i)
    ds = load_dataset(_cfg(tmp_path / "flat"))
    assert ds.report.layout == "flat" and ds.class_names == ["all"] and len(ds) == 3 and ds.report.split == "all"
    test = load_dataset(_cfg(tmp_path / "flat", split="test"))
    assert len(test) == 3 and any("no split folders" in w for w in test.report.warnings)


def test_root_files_beside_class_folders_are_skipped(tmp_path):
    write_png8(tmp_path / "d" / "AD" / "p1" / "a.png")  # nested below the class folder: still class AD
    write_png8(tmp_path / "d" / "NC" / "b.png")
    write_png8(tmp_path / "d" / "stray.png")
    (tmp_path / "d" / "notes.txt").write_text("x")
    ds = load_dataset(_cfg(tmp_path / "d"))
    assert ds.class_names == ["AD", "NC"] and len(ds) == 2
    assert dict(ds.report.skipped_examples) == {"notes.txt": "unsupported file type .txt",
                                                "stray.png": "outside the class folders"}


def test_subject_folders_are_one_class(tmp_path):
    for s in ("sub-01", "sub-02"):
        write_nifti(tmp_path / "bids" / s / "anat" / f"{s}_T1w.nii.gz", brain_volume())
    ds = load_dataset(_cfg(tmp_path / "bids"))
    assert ds.report.layout == "subject-folders" and ds.class_names == ["all"]
    assert {ds.sample_info(i).file.rsplit("/", 1)[1] for i in range(len(ds))} == {"sub-01_T1w.nii.gz", "sub-02_T1w.nii.gz"}


def test_builtin_mni152_three_orientations():
    ds = load_dataset(DataConfig(resolution=16))
    assert ds.class_names == ["axial", "coronal", "sagittal"] and ds.report.layout == "builtin"
    counts = np.bincount(ds.labels, minlength=3)
    assert (counts > 50).all() and len(ds) == counts.sum()
    for label, axis in enumerate(ds.class_names):
        i = int(np.flatnonzero(ds.labels == label)[0])
        info = ds.sample_info(i)
        assert info.axis == axis and info.file.endswith("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    x, _ = ds.batch(np.arange(len(ds)))
    assert x.shape == (len(ds), 1, 16, 16) and x.min() == -1 and x.max() <= 1 and x.max() > 0.5
    assert ds.report.original_sizes == {"197x233x189": 1}
    fewer = load_dataset(DataConfig(resolution=16, min_content=0.3, classes=("sagittal",)))
    assert fewer.class_names == ["sagittal"] and 0 < len(fewer) < counts[2]


def test_scan_rejects_unknown_builtin_and_plain_file(tmp_path):
    with pytest.raises(UserError, match="builtin:foo: unknown built-in dataset"):
        scan_source("builtin:foo")
    write_png8(tmp_path / "a.png")
    with pytest.raises(UserError, match="one image file; a data set"):
        scan_source(str(tmp_path / "a.png"))
