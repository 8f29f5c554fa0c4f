"""The prepared cache: every sample decoded once into uint8 memmaps (one .npy per resolution level) + JSON.

Layout of one cache folder (one per source x resolution x channels x slicing settings):
    index.json                  labels, class names, sources, settings, fingerprint, scan statistics
    images-<fp>-r<R>.npy        (N, C, R, R) uint8, plus the area-averaged levels R/2 ... 4
Arrays are written under temporary names and renamed, then index.json is written atomically last, so
an interrupted build never leaves a cache that loads. A changed file list (names, sizes, mtimes) changes
the fingerprint and rebuilds; changed settings select another folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stylemri.config import DataConfig
from stylemri.data import decode
from stylemri.data.sources import Scan, SourceFile
from stylemri.errors import UserError
from stylemri.io import fsync_dir, share_like, write_json

FORMAT = 1  # bump whenever decoding changes: every older cache then rebuilds
SPLIT_CODES = ("train", "validate", "test", "")
HEADER_BYTES = 128  # fixed .npy header size, so the array can be streamed before its length is known
MAX_EXAMPLES = 10
Progress = Callable[[int, int], None]


def cache_root(cfg: DataConfig) -> Path:
    """`cfg.cache_dir`, else $STYLEMRI_CACHE, else $XDG_CACHE_HOME/stylemri, else ~/.cache/stylemri."""
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    if os.environ.get("STYLEMRI_CACHE"):
        return Path(os.environ["STYLEMRI_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "stylemri"


def settings_of(scan: Scan, cfg: DataConfig) -> dict[str, Any]:
    """Everything that changes the decoded pixels; split and class selection are applied at load time."""
    settings: dict[str, Any] = {
        "format": FORMAT,
        "source": f"builtin:{scan.builtin}" if scan.builtin else scan.root,
        "resolution": cfg.resolution,
        "channels": cfg.channels,
    }
    if cfg.dims == 3:  # whole volumes (data/volumes.py): crop and resampling rules instead of slicing ones
        from stylemri.data import volumes

        settings.update(dims=3, content_threshold=decode.CONTENT_THRESHOLD, box_margin=volumes.BOX_MARGIN,
                        min_fraction=volumes.MIN_FRACTION)
    elif any(f.kind == "volume" for f in scan.files):
        settings.update(axes=list(scan.axes), min_content=cfg.min_content, content_threshold=decode.CONTENT_THRESHOLD)
    return settings


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def cache_dir_for(scan: Scan, cfg: DataConfig) -> Path:
    settings = settings_of(scan, cfg)
    name = scan.builtin or Path(scan.root if scan.layout != "nifti-file" else scan.files[0].path).name
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:40] or "data"
    return cache_root(cfg) / f"{slug}-r{cfg.resolution}-c{cfg.channels}-{_digest(settings)[:12]}"


def fingerprint_of(scan: Scan, settings: dict[str, Any]) -> str:
    """Hash of the settings and of the whole file list with sizes and mtimes (decoded or rejected)."""
    files = [[f.rel, f.size, f.mtime_ns, f.class_name, f.split, f.axis] for f in scan.files]
    rejected = [[rel, size, mtime] for rel, _, size, mtime in scan.rejected]
    return _digest({"settings": settings, "files": files, "rejected": rejected})[:16]


@dataclass
class CacheData:
    """An opened cache: its JSON index and one read-only memmap per resolution level."""

    directory: Path
    meta: dict[str, Any]
    levels: dict[int, np.ndarray]
    built: bool = False
    samples: dict[str, np.ndarray] = field(default_factory=dict)


def open_cache(directory: Path, fingerprint: str) -> CacheData | None:
    """The cache in `directory` if it is complete and matches `fingerprint`, else None."""
    try:
        meta = json.loads((directory / "index.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("format") != FORMAT or meta.get("fingerprint") != fingerprint:
        return None
    n, c, dims = meta["count"], meta["channels"], meta.get("dims", 2)
    levels: dict[int, np.ndarray] = {}
    try:
        for res, name in meta["levels"].items():
            arr = np.load(directory / name, mmap_mode="r")
            if arr.dtype != np.uint8 or arr.shape != (n, c, *[int(res)] * dims):
                return None
            levels[int(res)] = arr
    except (OSError, ValueError):
        return None
    samples = {k: np.asarray(v, np.int64) for k, v in meta["samples"].items()}
    return CacheData(directory, meta, levels, built=False, samples=samples)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialize builders of one cache (e.g. every rank of a multi-GPU job); no-op where flock is missing."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(directory / ".lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def load_or_build(scan: Scan, cfg: DataConfig, *, rebuild: bool = False, progress: Progress | None = None) -> CacheData:
    settings = settings_of(scan, cfg)
    fp = fingerprint_of(scan, settings)
    directory = cache_dir_for(scan, cfg)
    if not rebuild and (cache := open_cache(directory, fp)) is not None:
        return cache
    try:
        with _locked(directory):
            if not rebuild and (cache := open_cache(directory, fp)) is not None:
                return cache  # another process built it while we waited
            return build_cache(scan, cfg, directory, fp, settings, progress)
    except OSError as exc:  # read-only folder, disk full, ...: decoding errors never get here (skipped per file)
        raise UserError(f"{directory}: cannot write the data cache ({exc.strerror or exc}); expected a writable "
                        f"--cache-dir or $STYLEMRI_CACHE with free space") from exc


class _NpyStream:
    """Append uint8 samples to a temporary .npy; `finish` writes the header and renames it into place."""

    def __init__(self, directory: Path, final_name: str, sample_shape: tuple[int, ...]):
        fd, tmp = tempfile.mkstemp(prefix=f".{final_name}.", suffix=".tmp", dir=directory)
        share_like(fd, directory / final_name)
        self.file = os.fdopen(fd, "wb")
        self.tmp, self.final = Path(tmp), directory / final_name
        self.sample_shape, self.count = sample_shape, 0
        self.file.seek(HEADER_BYTES)

    def append(self, sample: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(sample, np.uint8).tobytes())
        self.count += 1

    def finish(self) -> None:
        shape = (self.count, *self.sample_shape)
        header = "{'descr': '|u1', 'fortran_order': False, 'shape': %r, }" % (shape,)
        header = header.ljust(HEADER_BYTES - 10 - 1) + "\n"
        self.file.seek(0)
        self.file.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1"))
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.final)

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


@dataclass
class _Decoded:
    """What one decode task produced: samples (file index, slice, pyramid) or a skip reason per file."""

    samples: list[tuple[int, int, list[np.ndarray], bool]] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (size, depth, kind) per distinct file
    dropped: int = 0
    voxel_mm: list[float] = field(default_factory=list)  # --dims 3: isotropic voxel size of each sample


def _decode_task(task: list[tuple[int, SourceFile]], cfg: DataConfig) -> _Decoded:
    """Decode one file, or consecutive entries of the same volume (builtin: 3 axes) loaded once."""
    if cfg.dims == 3:
        return _volume_task(task, cfg)
    out = _Decoded()
    volume: decode.Volume | None = None
    for fi, f in task:
        try:
            if f.kind == "image":
                img = decode.decode_image(f.path, cfg.channels)
                out.seen.append((img.size, img.depth, img.kind))
                fitted, up = decode.fit_square(img.planes, cfg.resolution)
                out.samples.append((fi, -1, decode.pyramid(fitted), up))
                continue
            if volume is None:
                volume = decode.load_volume(f.path)
                out.seen.append((volume.size, volume.depth, "volume"))
            fractions = decode.content_fractions(volume, f.axis)
            keep = np.flatnonzero(fractions >= cfg.min_content)
            out.dropped += len(fractions) - len(keep)
            if len(keep) == 0:
                out.skipped.append((fi, f"no {f.axis} slice has brain content >= --min-content {cfg.min_content:g}"))
            for k in keep:
                plane = decode.volume_slice(volume, f.axis, int(k))[None]
                planes = np.repeat(plane, 3, axis=0) if cfg.channels == 3 else plane
                fitted, up = decode.fit_square(planes, cfg.resolution)
                out.samples.append((fi, int(k), decode.pyramid(fitted), up))
        except Exception as exc:  # noqa: BLE001 - any decoder failure means: skip this file and say why
            message = str(exc).replace(f.path, f.rel).splitlines()[0][:120] if str(exc) else ""
            out.skipped.append((fi, f"cannot decode ({type(exc).__name__}{': ' + message if message else ''})"))
    return out


def _volume_task(task: list[tuple[int, SourceFile]], cfg: DataConfig) -> _Decoded:
    """--dims 3: each file is one whole volume (data/volumes.py), or a counted skip."""
    from stylemri.data.volumes import prepare_volume

    out = _Decoded()
    for fi, f in task:
        try:
            vol = prepare_volume(f.path, cfg.resolution, cfg.channels)
        except Exception as exc:  # noqa: BLE001 - any failure means: skip this volume and say why
            message = str(exc).replace(f.path, f.rel).splitlines()[0][:120] if str(exc) else ""
            out.skipped.append((fi, f"cannot use volume ({type(exc).__name__}{': ' + message if message else ''})"))
            continue
        out.seen.append((vol.size, vol.depth, "volume"))
        out.samples.append((fi, -1, vol.levels, vol.upsampled))
        out.voxel_mm.append(vol.voxel_mm)
    return out


def _tasks(files: tuple[SourceFile, ...]) -> list[list[tuple[int, SourceFile]]]:
    tasks: list[list[tuple[int, SourceFile]]] = []
    for i, f in enumerate(files):
        if tasks and f.kind == "volume" and tasks[-1][-1][1].path == f.path:
            tasks[-1].append((i, f))
        else:
            tasks.append([(i, f)])
    return tasks


@dataclass
class _Built:
    """What decoding every file gave: one entry per kept sample, plus what was skipped or dropped."""

    file: list[int] = field(default_factory=list)
    slice: list[int] = field(default_factory=list)
    upsampled: list[int] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    seen: list[tuple[str, str, str]] = field(default_factory=list)
    dropped: int = 0
    voxel_mm: list[float] = field(default_factory=list)  # --dims 3: isotropic voxel size of each volume


def build_cache(scan: Scan, cfg: DataConfig, directory: Path, fingerprint: str, settings: dict[str, Any],
                progress: Progress | None = None) -> CacheData:
    """Decode every file into one memmap per resolution level, then commit the index (which names them)."""
    t0 = time.perf_counter()
    res = [cfg.resolution >> k for k in range(cfg.resolution.bit_length()) if cfg.resolution >> k >= 4]
    names = {r: f"images-{fingerprint}-r{r}.npy" for r in res}
    for stale in directory.glob(".images-*.tmp"):  # left by a killed build; we hold the lock
        with contextlib.suppress(OSError):
            stale.unlink()
    decoded = _decode_into(scan, cfg, {r: _NpyStream(directory, names[r], (cfg.channels, *[r] * cfg.dims)) for r in res},
                           progress)
    skip_list = [(scan.files[fi].rel, why) for fi, why in decoded.skipped] + \
        [(rel, why) for rel, why, _, _ in scan.rejected]
    if not decoded.file:
        for r in res:
            with contextlib.suppress(FileNotFoundError):
                (directory / names[r]).unlink()
        first = "; ".join(f"{rel}: {why}" for rel, why in skip_list[:3])
        raise UserError(f"{scan.source}: all {len(skip_list)} files were skipped (first: {first}); expected readable "
                        f"images or NIfTI volumes")
    meta = _index(scan, cfg, fingerprint, settings, names, decoded, skip_list)
    meta["build_seconds"] = round(time.perf_counter() - t0, 3)
    write_json(directory / "index.json", meta)
    for old in directory.glob("images-*.npy"):
        if old.name not in names.values():
            with contextlib.suppress(OSError):
                old.unlink()
    fsync_dir(directory)
    cache = open_cache(directory, fingerprint)
    if cache is None:  # pragma: no cover - only on a filesystem that lost our writes
        raise UserError(f"{directory}: the cache just written cannot be read back; expected a working --cache-dir")
    cache.built = True
    return cache


def _decode_into(scan: Scan, cfg: DataConfig, streams: dict[int, "_NpyStream"], progress: Progress | None
                 ) -> _Built:
    """Decode every file (threads: Pillow, zlib and numpy release the GIL) and stream it to the memmaps."""
    out = _Built()
    tasks = _tasks(scan.files)
    workers = min(8, os.cpu_count() or 1, len(tasks))
    done = 0
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            window = max(1, workers) * 8  # bounded look-ahead keeps memory flat on huge folders
            for start in range(0, len(tasks), window):
                chunk = tasks[start : start + window]
                results = pool.map(_decode_task, chunk, [cfg] * len(chunk)) if workers > 1 else (
                    _decode_task(t, cfg) for t in chunk)
                for task, result in zip(chunk, results):
                    for fi, k, levels, up in result.samples:
                        for stream, level in zip(streams.values(), levels):
                            stream.append(level)
                        out.file.append(fi)
                        out.slice.append(k)
                        out.upsampled.append(int(up))
                    out.skipped += result.skipped
                    out.seen += result.seen
                    out.dropped += result.dropped
                    out.voxel_mm += result.voxel_mm
                    done += len(task)
                    if progress is not None:
                        progress(done, len(scan.files))
        for s in streams.values():
            s.finish()
    except BaseException:
        for s in streams.values():
            s.abort()  # arrays already renamed stay unreferenced (no index.json names them) until the next build
        raise
    return out


def _index(scan: Scan, cfg: DataConfig, fingerprint: str, settings: dict[str, Any], names: dict[int, str],
           d: _Built, skip_list: list[tuple[str, str]]) -> dict[str, Any]:
    """index.json: what the memmaps hold (sample -> file, slice, label, split) and how the build went."""
    used = sorted({scan.files[i].class_name for i in set(d.file)})
    class_code = {c: i for i, c in enumerate(used)}
    meta = {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "settings": settings,
        "source": scan.source,
        "root": scan.root,
        "layout": scan.layout,
        "description": scan.description,
        "resolution": cfg.resolution,
        "channels": cfg.channels,
        "count": len(d.file),
        "levels": {str(r): name for r, name in names.items()},
        "class_names": used,
        "splits": list(scan.splits),
        "ignored_folders": list(scan.ignored_folders),
        "files": [[f.rel, f.kind, f.axis] for f in scan.files],
        "samples": {
            "file": d.file,
            "slice": d.slice,
            "label": [class_code[scan.files[i].class_name] for i in d.file],
            "split": [SPLIT_CODES.index(scan.files[i].split) for i in d.file],
            "upsampled": d.upsampled,
        },
        "stats": {
            "files": len({f.path for f in scan.files}),
            "volumes": len({f.path for f in scan.files if f.kind == "volume"}),
            "slices_dropped": d.dropped,
            "sizes": dict(Counter(s for s, _, _ in d.seen).most_common()),
            "depths": dict(Counter(x for _, x, _ in d.seen).most_common()),
            "kinds": dict(Counter(k for _, _, k in d.seen).most_common()),
            "upsampled": int(sum(d.upsampled)),
        },
        "skipped": {
            "count": len(skip_list),
            "reasons": dict(Counter(why.split(" (")[0] for _, why in skip_list).most_common()),
            "examples": [list(x) for x in skip_list[:MAX_EXAMPLES]],
        },
    }
    if cfg.dims == 3:
        meta.update(dims=3, voxel_mm=[round(v, 6) for v in d.voxel_mm])
    return meta
