"""Finding the data: resolve `--data SOURCE` to a list of files with class and split, and name the layout.

Layouts recognised (see docs/data.md): `builtin:mni152`; one NIfTI file; a folder (searched recursively)
of images and/or NIfTI volumes, flat or with class sub-folders; split folders (`train/`, `test/`, ... as in
ADNI's `AD_NC/{train,test}/{AD,NC}`) each holding the class folders; OASIS `keras_png_slices_data`, whose
`keras_png_slices_seg_*` mask folders are ignored unless the source points into one.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

from stylemri.data.decode import AXES, IMAGE_EXTENSIONS, is_image_name, is_nifti_name
from stylemri.errors import UserError

BUILTINS = {"mni152": "MNI152 2009a symmetric T1 template (nilearn wheel), sliced in 3 orientations"}
MNI152_FILE = "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "validate", "valid": "validate", "validate": "validate", "validation": "validate",
    "test": "test", "testing": "test",
}  # fmt: skip
OASIS_PREFIX = "keras_png_slices_"
OASIS_SEG_PREFIX = "keras_png_slices_seg"
JUNK_NAMES = {"thumbs.db", "ehthumbs.db", "desktop.ini", ".ds_store", ".directory", "icon\r"}
UNLABELED = "all"  # the one class of a source without class folders
EXPECTED = "an image folder (.png .jpg .jpeg .bmp .tif .tiff), a NIfTI file or folder (.nii .nii.gz), or builtin:mni152"


@dataclass(frozen=True)
class SourceFile:
    """One file of the source; `rel` is relative to the source root (the identity used in the cache)."""

    path: str
    rel: str
    kind: str  # image | volume
    class_name: str
    split: str  # train | validate | test | "" (no split folder)
    size: int
    mtime_ns: int
    axis: str = ""  # volumes: the slicing axis


@dataclass(frozen=True)
class Scan:
    """What a source holds, before anything is decoded."""

    source: str
    root: str  # absolute folder (or file) the relative names hang from
    layout: str
    description: str
    files: tuple[SourceFile, ...]
    rejected: tuple[tuple[str, str, int, int], ...]  # (rel, reason, size, mtime_ns) of files never decoded
    splits: tuple[str, ...]  # split folders found
    ignored_folders: tuple[str, ...] = ()
    builtin: str | None = None
    axes: tuple[str, ...] = field(default_factory=tuple)  # slicing axes used for the volumes
    notes: tuple[str, ...] = ()  # warnings: class folders left out (empty, unreadable)


def mni152_path() -> Path:
    """The MNI152 T1 template shipped inside the nilearn wheel (found without importing nilearn)."""
    spec = importlib.util.find_spec("nilearn")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / MNI152_FILE
        if path.is_file():
            return path
    raise UserError(f"builtin:mni152: the nilearn package (with {MNI152_FILE}) is not installed; expected `pip install nilearn`")


def scan_source(source: str, axis: str = "axial") -> Scan:
    """Resolve SOURCE into files, classes and splits; raises UserError for every unusable source."""
    if source.startswith("builtin:"):
        return _scan_builtin(source)
    if axis not in AXES:
        raise UserError(f"--axis {axis}: expected one of {', '.join(AXES)}")
    path = Path(source).expanduser()
    if not path.exists():
        raise UserError(f"{source}: no such file or folder; expected {EXPECTED}")
    path = path.resolve()
    if path.is_file():
        if is_image_name(path.name):
            raise UserError(f"{source}: one image file; a data set (training, inspect, metrics) needs many images: "
                            f"expected a folder of images (class sub-folders optional), a NIfTI volume or folder, "
                            f"or builtin:mni152")
        if not is_nifti_name(path.name):
            raise UserError(f"{source}: not a NIfTI volume; expected {EXPECTED}")
        st = path.stat()
        f = SourceFile(str(path), path.name, "volume", path.parent.name or UNLABELED, _own_split(path.parent.name),
                       st.st_size, st.st_mtime_ns, axis)
        return Scan(source, str(path.parent), "nifti-file", f"one NIfTI volume, sliced {axis}, class "
                    f"'{f.class_name}' from its folder", (f,), (), (), axes=(axis,))
    if not os.access(path, os.R_OK | os.X_OK):
        raise UserError(f"{source}: folder is not readable; expected a readable folder")
    return _scan_folder(source, path, axis)


def _scan_builtin(source: str) -> Scan:
    name = source.split(":", 1)[1].strip().lower()
    if name not in BUILTINS:
        known = ", ".join(f"builtin:{k}" for k in BUILTINS)
        raise UserError(f"{source}: unknown built-in dataset; expected one of: {known}")
    path = mni152_path()
    st = path.stat()
    files = tuple(SourceFile(str(path), path.name, "volume", axis, "", st.st_size, st.st_mtime_ns, axis) for axis in AXES)
    return Scan(source, str(path.parent), "builtin", BUILTINS[name], files, (), (), builtin=name, axes=AXES)


def _own_split(name: str) -> str:
    lowered = name.lower()
    if lowered.startswith(OASIS_SEG_PREFIX):
        lowered = lowered[len(OASIS_SEG_PREFIX) :].lstrip("_")
    return SPLIT_ALIASES.get(lowered.removeprefix(OASIS_PREFIX), "")


Rejected = tuple[str, str, int, int]  # (path relative to the root, why, size, mtime)
Found = tuple[Path, str, str, str | None]  # (path, relative to the root, split, class folder or None)


def _scan_folder(source: str, root: Path, axis: str) -> Scan:
    subdirs = sorted(p for p in _listdir(root) if p.is_dir() and not _hidden(p.name))
    oasis = root.name.lower() == "keras_png_slices_data" or any(d.name.lower().startswith(OASIS_PREFIX) for d in subdirs)
    roots, split_folders, ignored, rejected = _split_roots(root, subdirs)
    found, unreadable, notes = _walk_roots(source, root, roots, rejected)
    if not found and not rejected:
        raise UserError(f"{source}: empty folder; expected {EXPECTED}")
    files, labeled, subject_folders = _source_files(found, axis, rejected)
    if labeled and not subject_folders:
        notes += _empty_class_notes(source, root, roots, files, unreadable)
    if not files:
        exts = sorted({Path(r).suffix.lower() or Path(r).name for r, *_ in rejected})
        raise UserError(f"{source}: no supported files (found {len(rejected)}: {', '.join(exts[:6])}); expected {EXPECTED}")
    splits = tuple(s for s in ("train", "validate", "test") if any(f.split == s for f in files))
    layout, desc = _describe_layout(files, splits, axis, split_dirs=split_folders, oasis=oasis, labeled=labeled,
                                    subject_folders=subject_folders)
    return Scan(source, str(root), layout, desc, tuple(files), tuple(rejected), splits, tuple(ignored),
                axes=(axis,) if any(f.kind == "volume" for f in files) else (), notes=tuple(notes))


def _split_roots(root: Path, subdirs: list[Path]) -> tuple[list[tuple[Path, str]], bool, list[str], list[Rejected]]:
    """The folders to walk, each with its split: the split folders (train/val/test, OASIS names) when there
    are any (then True), else the root itself (False). Also the folders ignored (with why) and the files left
    beside split folders."""
    split_dirs: list[tuple[Path, str]] = []
    ignored: list[str] = []
    for d in subdirs:
        lowered = d.name.lower()
        if lowered.startswith(OASIS_SEG_PREFIX):
            ignored.append(f"{d.name} (segmentation masks; point --data at it to use it)")
            continue
        split = SPLIT_ALIASES.get(lowered.removeprefix(OASIS_PREFIX))
        if split:
            split_dirs.append((d, split))
    rejected: list[Rejected] = []
    if not split_dirs:
        return [(root, _own_split(root.name))], False, ignored, rejected
    named = {d for d, _ in split_dirs}
    for d in subdirs:
        if d not in named and not d.name.lower().startswith(OASIS_SEG_PREFIX):
            ignored.append(f"{d.name} (not a split folder)")
    for p in _listdir(root):
        if p.is_file():
            rejected.append((p.name, "outside the split folders", *_stat(p)))
    return split_dirs, True, ignored, rejected


def _walk_roots(source: str, root: Path, roots: list[tuple[Path, str]], rejected: list[Rejected]
                ) -> tuple[list[Found], set[Path], list[str]]:
    """Every file under the roots with its split and class folder; folders that cannot be read are added
    to `rejected` and named in a note (a class must never vanish without a word)."""
    found: list[Found] = []
    unreadable: list[tuple[Path, str]] = []
    for class_root, split in roots:
        walked, bad = _walk(class_root)
        unreadable += bad
        for p in walked:
            parts = p.relative_to(class_root).parts
            found.append((p, p.relative_to(root).as_posix(), split, parts[0] if len(parts) > 1 else None))
    notes = []
    for d, why in unreadable:
        rel = d.relative_to(root).as_posix() if d != root else "."
        rejected.append((rel + "/", f"folder not readable ({why})", -1, -1))
        notes.append(f"{source}/{rel}: folder not readable ({why}); its images are left out")
    return found, {d for d, _ in unreadable}, notes


def _source_files(found: list[Found], axis: str, rejected: list[Rejected]
                  ) -> tuple[list[SourceFile], bool, bool]:
    """The supported files as SourceFiles (the others added to `rejected` with why), whether class folders
    label them, and whether those folders are subject folders (sub-*: one class)."""
    files: list[SourceFile] = []
    labeled = any(cls is not None and _supported(p.name) for p, _, _, cls in found)
    subject_folders = labeled and all(cls is None or cls.lower().startswith("sub-") for _, _, _, cls in found)
    for p, rel, split, cls in found:
        size, mtime = _stat(p)
        reason = _reject_reason(p.name)
        if reason is None and labeled and cls is None and not subject_folders:
            reason = "outside the class folders"
        if reason is not None:
            rejected.append((rel, reason, size, mtime))
            continue
        kind = "volume" if is_nifti_name(p.name) else "image"
        name = UNLABELED if (cls is None or subject_folders) else cls
        files.append(SourceFile(str(p), rel, kind, name, split, size, mtime, axis if kind == "volume" else ""))
    return files, labeled, subject_folders


def _describe_layout(files: list[SourceFile], splits: tuple[str, ...], axis: str, *, split_dirs: bool, oasis: bool,
                     labeled: bool, subject_folders: bool) -> tuple[str, str]:
    """The layout's name and the one-line description `data inspect` prints."""
    classes = sorted({f.class_name for f in files})
    kinds = " and ".join(k for k in ("images", "NIfTI volumes") if any((f.kind == "image") == (k == "images") for f in files))
    if split_dirs:
        layout = "oasis" if oasis else "split-folders"
        head = "OASIS keras_png_slices split folders" if oasis else "split folders"
        desc = f"{head} {', '.join(splits)}"
    elif subject_folders:
        layout, desc = "subject-folders", "subject folders (sub-*) treated as one class"
    elif labeled:
        layout, desc = "class-folders", "class folders"
    else:
        layout, desc = "flat", "one folder, no class folders"
    if labeled and not subject_folders:
        desc += f" with classes {', '.join(classes)}"
    elif split_dirs:
        desc += " without class folders"
    desc += f"; {kinds}"
    if any(f.kind == "volume" for f in files):
        desc += f" sliced {axis}"
    return layout, desc


def _empty_class_notes(source: str, root: Path, roots: list[tuple[Path, str]], files: list[SourceFile],
                       unreadable: set[Path]) -> list[str]:
    """One warning per class folder that gives no image (empty, or only unsupported files)."""
    used = {(f.split, f.class_name) for f in files}
    notes = []
    for class_root, split in roots:
        try:
            folders = sorted(p for p in class_root.iterdir() if p.is_dir() and not _hidden(p.name))
        except OSError:
            continue
        for d in folders:
            if (split, d.name) not in used and d not in unreadable and not d.name.lower().startswith(OASIS_SEG_PREFIX):
                rel = d.relative_to(root).as_posix()
                notes.append(f"{source}/{rel}: class folder with no supported image (empty); class {d.name} "
                             f"left out{' of the ' + split + ' split' if split else ''}")
    return notes


def _supported(name: str) -> bool:
    return _reject_reason(name) is None


def _reject_reason(name: str) -> str | None:
    lowered = name.lower()
    if lowered in JUNK_NAMES or lowered.startswith("._"):
        return "system junk file"
    if is_image_name(lowered) or is_nifti_name(lowered):
        return None
    suffix = Path(lowered).suffix
    return f"unsupported file type {suffix}" if suffix else "unsupported file (no extension)"


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _listdir(path: Path) -> list[Path]:
    try:
        return sorted(path.iterdir())
    except OSError as exc:
        raise UserError(f"{path}: cannot list folder ({exc.strerror}); expected a readable folder") from exc


def _walk(top: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Every file below `top`, sorted, following links once; hidden folders (.git, __MACOSX) skipped; and the
    folders that could not be listed, with the reason."""
    out: list[Path] = []
    unreadable: list[tuple[Path, str]] = []
    seen: set[tuple[int, int]] = set()
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            st = d.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            unreadable.append((d, exc.strerror or type(exc).__name__))
            continue
        for e in entries:
            try:
                if e.is_dir():
                    if not _hidden(e.name):
                        stack.append(Path(e.path))
                elif e.is_file():
                    out.append(Path(e.path))
            except OSError:
                continue
    return sorted(out), sorted(unreadable)


def _stat(p: Path) -> tuple[int, int]:
    try:
        st = p.stat()
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


__all__ = ["Scan", "SourceFile", "scan_source", "mni152_path", "IMAGE_EXTENSIONS", "UNLABELED"]
