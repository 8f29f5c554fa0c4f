"""`load_dataset` and `MRIDataset`: the prepared cache seen as (image in [-1, 1], label) samples."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from stylemri.config import CovariateScaling, DataConfig, check_resolution
from stylemri.data.annotate import SampleAnnotations, SubjectSummary, annotate_samples
from stylemri.data.cache import SPLIT_CODES, CacheData, Progress, load_or_build
from stylemri.data.resample import area_downsample
from stylemri.data.sources import Scan, scan_source
from stylemri.data.splits import canonical_split
from stylemri.errors import UserError

IndexLike = Sequence[int] | np.ndarray | torch.Tensor


@dataclass(frozen=True)
class DataReport:
    """What was found and prepared: printed by `stylemri data inspect`, logged by training."""

    source: str
    root: str
    layout: str
    description: str
    resolution: int
    channels: int
    split: str  # the split selected
    splits: tuple[str, ...]  # split folders found
    class_names: tuple[str, ...]  # the classes selected
    all_classes: tuple[str, ...]
    counts: dict[str, dict[str, int]]  # split ("" = none) -> class -> samples, whole source
    selected: int  # samples in this dataset
    selected_per_class: dict[str, int]
    files: int
    volumes: int
    slices_dropped: int  # volume slices under --min-content
    original_sizes: dict[str, int]  # "WxH" (images) / "XxYxZ" (volumes) -> files
    bit_depths: dict[str, int]
    channels_seen: dict[str, int]  # gray | rgb | rgba | volume | ... -> files
    skipped: int
    skipped_reasons: dict[str, int]
    skipped_examples: tuple[tuple[str, str], ...]  # first few (file, reason)
    upsampled: int  # samples smaller than the resolution, upsampled (bicubic)
    ignored_folders: tuple[str, ...]
    warnings: tuple[str, ...]
    cache_dir: str
    cache_built: bool  # True: decoded now; False: loaded from an existing cache
    build_seconds: float
    subjects: SubjectSummary | None = None  # patients: rules used, per class/split counts, leaks

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


@dataclass(frozen=True)
class SampleInfo:
    """Where one sample came from; `file` is absolute, `slice` is None for 2-D images."""

    file: str
    slice: int | None
    axis: str | None
    split: str
    class_name: str
    subject: str = ""


class MRIDataset(Dataset):
    """Samples of a prepared cache after split/class selection: ds[i] -> ((C, R, R) float32 in [-1, 1], label)."""

    def __init__(self, config: DataConfig, cache: CacheData, rows: np.ndarray, labels: np.ndarray,
                 class_names: list[str], report: DataReport, fingerprint: str, *,
                 subjects: np.ndarray | None = None, splits: np.ndarray | None = None,
                 covariates: Any = None):
        self.config = config
        self.class_names = list(class_names)
        self.labels = np.asarray(labels, np.int64)
        self.resolution = int(cache.meta["resolution"])
        self.channels = int(cache.meta["channels"])
        self.num_classes = len(self.class_names)
        self.fingerprint = fingerprint
        self.report = report
        self.resolutions = tuple(sorted(cache.levels))
        self.dims = int(cache.meta.get("dims", 2))  # 2: (C, R, R) slices; 3: (C, R, R, R) volumes
        self._rows = np.asarray(rows, np.int64)
        voxels = cache.meta.get("voxel_mm")
        # 3-D: the voxel size of the training field of view (median over the volumes), for NIfTI output
        self.voxel_mm = float(np.median(np.asarray(voxels)[self._rows])) if voxels else None
        self._cache_dir = cache.directory
        self._level_names = {int(r): n for r, n in cache.meta["levels"].items()}
        self._levels: dict[int, np.ndarray] | None = dict(cache.levels)
        self._root = Path(cache.meta["root"])
        self._files = cache.meta["files"]
        self._file = cache.samples["file"][self._rows]
        self._slice = cache.samples["slice"][self._rows]
        self._split = cache.samples["split"][self._rows]
        self._split_names = splits  # split-file splits (per sample) when a split file chose them
        # per-sample subject IDs (patients): see stylemri.data.subjects
        self.subjects: np.ndarray = (np.asarray(subjects, dtype=object) if subjects is not None
                                     else np.array([""] * len(self._rows), dtype=object))
        # --condition: stylemri.data.covariates.SampleCovariates (scaling, per-sample vectors and raw values)
        self.covariates = covariates

    # -- pickling for DataLoader workers under spawn: reopen the memmaps instead of copying them --------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_levels"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _level(self, resolution: int) -> np.ndarray:
        if self._levels is None:
            self._levels = {r: np.load(self._cache_dir / n, mmap_mode="r") for r, n in self._level_names.items()}
        return self._levels[resolution]

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        i = self._check_index(i)
        pixels = torch.from_numpy(np.array(self._level(self.resolution)[self._rows[i]]))
        return to_float(pixels), int(self.labels[i])

    def _check_index(self, i: int) -> int:
        n = len(self)
        if not -n <= int(i) < n:
            raise IndexError(f"sample {i} out of range for a dataset of {n}")
        return int(i) % n

    def sample_info(self, i: int) -> SampleInfo:
        i = self._check_index(i)
        rel, kind, axis = self._files[self._file[i]]
        split = str(self._split_names[i]) if self._split_names is not None else SPLIT_CODES[self._split[i]]
        return SampleInfo(str(self._root / rel), int(self._slice[i]) if kind == "volume" else None,
                          axis or None, split, self.class_names[self.labels[i]], str(self.subjects[i]))

    def source_of(self, i: int) -> str:
        """The file a sample came from, with `:slice` appended for volume slices."""
        info = self.sample_info(i)
        return info.file if info.slice is None else f"{info.file}:{info.slice}"

    def batch_uint8(self, indices: IndexLike, resolution: int | None = None,
                    xflip: IndexLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, r, r) uint8 and int64 labels: gathered from the stored level r, flipped where asked."""
        idx = _as_index_array(indices)
        r = self.resolution if resolution is None else int(resolution)
        if r not in self.resolutions:
            raise ValueError(f"resolution {r}: this dataset serves {', '.join(map(str, self.resolutions))}")
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"indices out of range for a dataset of {len(self)}")
        rows = self._rows[idx]
        pixels = np.take(self._level(r), rows, axis=0)
        if xflip is not None:
            mask = _as_index_array(xflip).astype(bool)
            if mask.shape != idx.shape:
                raise ValueError(f"xflip mask has shape {mask.shape}, expected {idx.shape}")
            pixels[mask] = pixels[mask][..., ::-1]
        return torch.from_numpy(pixels), torch.from_numpy(self.labels[idx])

    def batch(self, indices: IndexLike, resolution: int | None = None,
              xflip: IndexLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Vectorised fast path: (B, C, r, r) float32 in [-1, 1] and int64 labels; r = area-downsampled size."""
        pixels, labels = self.batch_uint8(indices, resolution, xflip)
        return to_float(pixels), labels

    def batch_reference(self, indices: IndexLike, resolution: int | None = None,
                        xflip: IndexLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Plain-PyTorch reference of `batch`: full-resolution samples, area-downsampled on the fly."""
        idx = _as_index_array(indices)
        images = torch.stack([self[int(i)][0] for i in idx]) if idx.size else torch.empty(
            0, self.channels, *[self.resolution] * self.dims)
        if xflip is not None:
            mask = torch.as_tensor(_as_index_array(xflip).astype(bool))
            images = torch.where(mask.reshape(-1, *[1] * (images.ndim - 1)), images.flip(-1), images)
        images = area_downsample(images, self.resolution if resolution is None else int(resolution))
        return images, torch.as_tensor(self.labels[idx])

    def __repr__(self) -> str:
        return (f"MRIDataset({self.report.source!r}, n={len(self)}, resolution={self.resolution}, "
                f"channels={self.channels}, classes={self.class_names})")


def to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1] (x / 127.5 - 1) on the tensor's device.

    On CPU this runs in numpy, single-threaded: torch's intra-op threads made this 10-400x slower on
    busy machines (OpenMP waits), and a loader must stay cheap next to a training step using every core.
    """
    if pixels.device.type == "cpu":
        out = pixels.numpy().astype(np.float32)
        out *= np.float32(1.0 / 127.5)
        out -= np.float32(1.0)
        return torch.from_numpy(out)
    return pixels.to(torch.float32).mul_(1.0 / 127.5).sub_(1.0)


def _as_index_array(indices: IndexLike) -> np.ndarray:
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    arr = np.asarray(indices).reshape(-1)
    return arr.astype(np.int64) if arr.size == 0 else arr


def load_dataset(cfg: DataConfig, *, rebuild: bool = False, progress: Progress | None = None,
                 covariates: CovariateScaling | None = None) -> MRIDataset:
    """Scan `cfg.source`, build or reuse its prepared cache, select split and classes, return the dataset.

    With `cfg.condition` the samples carry covariates (`ds.covariates`), encoded with `covariates` (a run's
    stored scaling) or, when None, with a scaling fitted on this selection (a new run)."""
    _validate(cfg)
    scan = scan_source(cfg.source, cfg.axis)
    if cfg.dims == 3:
        from stylemri.data.volumes import volume_scan

        scan = volume_scan(scan)
    warnings: list[str] = list(scan.notes)
    split = _resolve_split(cfg, scan, warnings)
    cache = load_or_build(scan, cfg, rebuild=rebuild, progress=progress)
    meta = cache.meta
    samples = cache.samples
    root = Path(meta["root"])
    paths = [str(root / rel) for rel, _, _ in meta["files"]]
    class_table = cfg.labels if (cfg.label_column or not cfg.condition) else None  # --condition alone: no classes
    ann = annotate_samples(
        paths, [f.class_name for f in scan.files],
        [f.split for f in scan.files], samples["file"], samples["label"], meta["class_names"],
        subject_pattern=cfg.subject_pattern, labels=class_table, label_column=cfg.label_column,
        split_file=cfg.split_file,
    )
    warnings += ann.files.notes
    all_classes: list[str] = list(ann.class_names)
    wanted = _wanted_classes(cfg, all_classes)
    keep = np.isin(ann.labels, [all_classes.index(c) for c in wanted])
    if split != "all" and (scan.splits or cfg.split_file):
        keep &= ann.splits == split
    cov_rows = None
    if cfg.condition:
        keep, cov_rows = _covariate_selection(cfg, keep, paths, ann.files.subjects, samples["file"], warnings)
    rows = np.flatnonzero(keep)
    if rows.size == 0:
        raise UserError(f"{cfg.source}: no samples for --split {split}"
                        f"{' --classes ' + ','.join(cfg.classes) if cfg.classes else ''}"
                        f"{' in ' + cfg.split_file if cfg.split_file else ''}; expected a selection that holds images")
    remap = np.full(len(all_classes), -1, np.int64)
    remap[[all_classes.index(c) for c in wanted]] = np.arange(len(wanted))
    labels = remap[ann.labels[rows]]
    sample_cov = _sample_covariates(cov_rows, rows, covariates, cfg) if cov_rows is not None else None
    fingerprint = _selection_fingerprint(cfg, meta["fingerprint"], split, wanted, rows, labels, sample_cov)
    warnings += _cache_warnings(meta, cfg.resolution)
    report = _data_report(cfg, cache, split, wanted, all_classes, _split_class_counts(ann, all_classes), rows,
                          labels, warnings, ann.summary(rows))
    return MRIDataset(cfg, cache, rows, labels, wanted, report, fingerprint, subjects=ann.subjects[rows],
                      splits=ann.splits[rows], covariates=sample_cov)


def _resolve_split(cfg: DataConfig, scan: Scan, warnings: list[str]) -> str:
    """The split to select, in the spelling of the source's split folders (or the split file's); "all" when the
    source has no split folders (a line in `warnings` when a --split is then ignored)."""
    split = cfg.split
    if split == "val" and not cfg.split_file:
        split = "validate"  # the split folders' spelling
    if cfg.split_file:
        split = "all" if split == "all" else canonical_split(split) or split  # the split file decides
        if scan.splits:
            warnings.append(f"--split-file {cfg.split_file} decides the split; the split folders of {cfg.source} "
                            "are ignored")
    elif split != "all" and scan.splits and split not in scan.splits:
        if len(scan.splits) == 1 and not _has_split_folders(scan):
            split = "all"  # the source path itself is a split folder (e.g. AD_NC/test): the path chose it
        else:
            raise UserError(f"--split {split}: {cfg.source} has no '{split}' split folder; expected one of: "
                            f"{', '.join((*scan.splits, 'all'))}")
    if not scan.splits and not cfg.split_file:
        if split not in ("all", "train"):
            warnings.append(f"{cfg.source} has no split folders; --split {split} does not apply, using all samples")
        split = "all"
    return split


def _wanted_classes(cfg: DataConfig, all_classes: list[str]) -> list[str]:
    """--classes checked against the classes found, in the source's order (every class without --classes)."""
    if not cfg.classes:
        return list(all_classes)
    missing = [c for c in cfg.classes if c not in all_classes]
    if missing:
        raise UserError(f"--classes {','.join(missing)}: no such class in {cfg.labels or cfg.source}; expected "
                        f"one of: {', '.join(all_classes)}")
    return [c for c in all_classes if c in cfg.classes]


def _selection_fingerprint(cfg: DataConfig, cache_fingerprint: str, split: str, wanted: list[str], rows: np.ndarray,
                           labels: np.ndarray, sample_cov: Any) -> str:
    """The cache's fingerprint plus what was selected from it (what a resumed run checks is unchanged)."""
    fp_parts: list[Any] = [cache_fingerprint, split, wanted]
    if cfg.split_file or cfg.labels:  # the tables change the selection: hash what was selected
        extra = sample_cov.vectors.tobytes() if sample_cov is not None else b""
        fp_parts.append(hashlib.sha256(rows.tobytes() + labels.tobytes() + extra).hexdigest())
    return hashlib.sha256(json.dumps(fp_parts).encode()).hexdigest()[:16]


def _cache_warnings(meta: dict[str, Any], resolution: int) -> list[str]:
    """Report lines for what the cache build upsampled or skipped."""
    stats, skipped = meta["stats"], meta["skipped"]
    lines = []
    if stats["upsampled"]:
        lines.append(f"{stats['upsampled']} sample(s) smaller than {resolution} px were upsampled (bicubic)")
    if skipped["count"]:
        lines.append(f"{skipped['count']} file(s) skipped, e.g. " +
                     "; ".join(f"{n}: {why}" for n, why in skipped["examples"][:3]))
    return lines


def _split_class_counts(ann: SampleAnnotations, all_classes: list[str]) -> dict[str, dict[str, int]]:
    """Labelled samples per split and class of the whole source, splits in their usual order."""
    counts: dict[str, dict[str, int]] = {}
    labelled = ann.labels >= 0
    for (sp, lab), n in sorted(Counter(zip(ann.splits[labelled].tolist(), ann.labels[labelled].tolist())).items(),
                               key=lambda kv: (_split_rank(kv[0][0]), kv[0][1])):
        counts.setdefault(sp, {})[all_classes[lab]] = n
    return counts


def _data_report(cfg: DataConfig, cache: CacheData, split: str, wanted: list[str], all_classes: list[str],
                 counts: dict[str, dict[str, int]], rows: np.ndarray, labels: np.ndarray, warnings: list[str],
                 subjects: SubjectSummary) -> DataReport:
    meta = cache.meta
    stats, skipped = meta["stats"], meta["skipped"]
    return DataReport(
        source=cfg.source, root=meta["root"], layout=meta["layout"], description=meta["description"],
        resolution=cfg.resolution, channels=cfg.channels, split=split, splits=tuple(meta["splits"]),
        class_names=tuple(wanted), all_classes=tuple(all_classes), counts=counts, selected=int(rows.size),
        selected_per_class={c: int((labels == i).sum()) for i, c in enumerate(wanted)},
        files=stats["files"], volumes=stats["volumes"], slices_dropped=stats["slices_dropped"],
        original_sizes=stats["sizes"], bit_depths=stats["depths"], channels_seen=stats["kinds"],
        skipped=skipped["count"], skipped_reasons=skipped["reasons"],
        skipped_examples=tuple((n, why) for n, why in skipped["examples"]), upsampled=stats["upsampled"],
        ignored_folders=tuple(meta["ignored_folders"]), warnings=tuple(warnings), cache_dir=str(cache.directory),
        cache_built=cache.built, build_seconds=float(meta["build_seconds"]), subjects=subjects,
    )


def _covariate_selection(cfg: DataConfig, keep: np.ndarray, paths: list[str], file_subjects: Sequence[str],
                         sample_files: np.ndarray, warnings: list[str]) -> tuple[np.ndarray, Any]:
    """Read the --condition columns, count what is missing (a report line), drop it with --missing drop."""
    from stylemri.data.covariates import match_covariates, missing_mask, read_covariate_table, sample_values

    assert cfg.labels is not None
    table = read_covariate_table(cfg.labels, cfg.condition)
    per_file, unmatched_rows = match_covariates(table, paths, file_subjects)
    values = sample_values(table, per_file, sample_files)
    miss = missing_mask(values)
    no_row = np.array([per_file[f] is None for f in sample_files], bool)
    name = Path(cfg.labels).name
    selected = int(keep.sum())
    lacking = keep & (no_row | miss.any(axis=1))
    usable = keep.copy() if cfg.missing == "indicator" else keep & ~miss.any(axis=1)  # indicator: all kept
    if selected and not (usable & ~miss.all(axis=1)).any():
        raise UserError(f"{cfg.labels}: every one of the {selected} selected images lacks a value of "
                        f"{', '.join(table.names)} ({int((keep & no_row).sum())} match no row); expected rows whose "
                        f"{table.key_kind} matches the images, with values")
    if lacking.any():
        per_col = ", ".join(f"{n} {int((keep & miss[:, j] & ~no_row).sum())}" for j, n in enumerate(table.names))
        what = "dropped (--missing drop)" if cfg.missing == "drop" else "kept with the missing indicator on"
        warnings.append(f"{name}: {int(lacking.sum())} of {selected} image(s) lack a covariate value "
                        f"({int((keep & no_row).sum())} match no row; missing values: {per_col}); {what}")
    if unmatched_rows:
        warnings.append(f"{name}: {unmatched_rows} row(s) match no image of the source")
    if table.conflicting:
        warnings.append(f"{name}: {table.conflicting} value(s) disagree between rows of one {table.key_kind}; "
                        "treated as missing")
    return (keep & usable), (table, values)


def _sample_covariates(cov_rows: Any, rows: np.ndarray, covariates: CovariateScaling | None, cfg: DataConfig) -> Any:
    """The selected samples' covariates, encoded with a run's scaling or one fitted on them."""
    from stylemri.data.covariates import SampleCovariates, encode, fit_scaling

    table, values = cov_rows
    picked = {k: v[rows] for k, v in values.items()}
    scaling = covariates if covariates is not None else fit_scaling(table, picked, cfg.missing)
    _check_scaling(scaling, table, cfg)
    return SampleCovariates(scaling, encode(scaling, picked), picked)


def _check_scaling(scaling: CovariateScaling, table: Any, cfg: DataConfig) -> None:
    """A run's stored scaling must describe the same columns, of the same kinds, as the table read now."""
    now = [(n.lower(), k) for n, k in zip(table.names, table.kinds)]
    stored = [(c.name.lower(), c.kind) for c in scaling.columns]
    if now != stored:
        raise UserError(f"{cfg.labels}: its --condition columns are now {', '.join(f'{n} ({k})' for n, k in now)}; "
                        f"the model was trained with {', '.join(f'{n} ({k})' for n, k in stored)}")


def _split_rank(name: str) -> int:
    return {"train": 0, "validate": 1, "val": 1, "test": 2}.get(name, 3)


def _has_split_folders(scan: Any) -> bool:
    return scan.layout in ("split-folders", "oasis")


def _validate(cfg: DataConfig) -> None:
    check_resolution(cfg.resolution, "resolution")
    if cfg.dims not in (2, 3):
        raise UserError(f"--dims {cfg.dims}: expected 2 (slices) or 3 (whole volumes)")
    if cfg.channels not in (1, 3):
        raise UserError(f"channels {cfg.channels}: expected 1 or 3")
    if cfg.split not in ("train", "validate", "val", "test", "all"):
        raise UserError(f"--split {cfg.split}: expected train, validate (val), test or all")
    if not 0.0 <= cfg.min_content <= 1.0:
        raise UserError(f"--min-content {cfg.min_content}: expected a fraction between 0 and 1")
    if cfg.condition and not cfg.labels:
        raise UserError(f"--condition {','.join(cfg.condition)}: expected --labels FILE.csv with it (the table "
                        "that holds the covariates)")
    if cfg.missing not in ("drop", "indicator"):
        raise UserError(f"--missing {cfg.missing}: expected drop or indicator")
    if cfg.missing != "drop" and not cfg.condition:
        raise UserError(f"--missing {cfg.missing}: expected --condition COL,... with it")
