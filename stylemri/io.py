"""Atomic file writing, the one CSV writer (whole tables, and rows appended to a growing log), and the one
image conversion everything uses ([-1, 1] -> uint8)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import stat
import tempfile
import threading
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from PIL import Image


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Write to a temporary file beside `path`, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    held = hold_interrupts()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except BaseException:
        release_interrupts(held)
        raise
    try:
        release_interrupts(held)  # a SIGTERM / Ctrl-C that came meanwhile is raised here, inside the clean-up
        share_like(fd, path)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


_INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class HeldInterrupts:
    """The handlers `hold_interrupts` replaced and the signals that arrived while they were replaced."""

    previous: dict[int, Any]
    pending: list[int] = field(default_factory=list)


def hold_interrupts() -> HeldInterrupts | None:
    """Defer SIGINT and SIGTERM until `release_interrupts`: their handlers are swapped for one that notes
    the signal. None off the main thread, where no Python signal handler runs (nothing to defer).

    Why: the CLI turns both into exceptions, and one raised between creating a temporary file and entering
    the `try` that removes it would leave the file behind (seen: a SIGTERM during `generate`). A thread's
    signal mask cannot hold them: a signal sent to the process goes to any thread that does not block it
    (torch's OpenMP workers), and Python then runs the handler in the main thread all the same (measured:
    194 of 200 SIGTERMs handled while the main thread blocked them, with torch's threads alive)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    held = HeldInterrupts({})
    for signum in _INTERRUPTS:
        current = signal.getsignal(signum)
        if current is not None:  # None: a handler set outside Python, which cannot be put back
            held.previous[signum] = signal.signal(signum, lambda number, frame: held.pending.append(number))
    return held


def release_interrupts(held: HeldInterrupts | None) -> None:
    """Put back the handlers `hold_interrupts` replaced; a signal that arrived meanwhile is raised again
    now, so its own handler (an exception, the default action or nothing) acts here."""
    if held is None:
        return
    for signum, handler in held.previous.items():
        signal.signal(signum, handler)
    for signum in held.pending:
        signal.raise_signal(signum)


def umask() -> int:
    """The process umask, read without changing it where /proc allows (no window where it is 0)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def share_like(fd: int, path: str | os.PathLike) -> None:
    """Give a temporary file (mkstemp makes it 0600) the mode a plain `open(path, "w")` would: the existing
    file's mode when replacing one, else 0666 minus the umask, so shared run and cache folders stay readable."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = 0o666 & ~umask()
    os.fchmod(fd, mode)


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Exactly [-1, 1] -> [0, 255] with rounding and clipping; (N, C, H, W) or (C, H, W) kept in shape."""
    x = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, np.float32)
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def to_uint16(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """[-1, 1] -> [0, 65535] with rounding and clipping, for analysis-grade PNGs."""
    x = images.detach().double().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, np.float64)
    return np.clip(np.rint((x + 1.0) * 32767.5), 0, 65535).astype(np.uint16)  # float64: tensor == array result


def make_grid(images: np.ndarray, ncols: int | None = None, pad: int = 2, pad_value: int = 0) -> np.ndarray:
    """Tile uint8 images (N, C, H, W) into one (H', W', C) array, `ncols` per row (default: near-square)."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"make_grid expects (N, C, H, W), got shape {images.shape}")
    n, c, h, w = images.shape
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), pad_value, dtype=images.dtype)
    for i in range(n):
        r, q = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        grid[y : y + h, x : x + w] = images[i].transpose(1, 2, 0)
    return grid


def save_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Save an (H, W), (H, W, 1) or (H, W, 3) uint8/uint16 array as PNG, atomically."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype == np.uint16:
        if image.ndim != 2:
            raise ValueError("16-bit PNG output is grayscale only")
        pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint16))  # mode I;16
    else:
        pil = Image.fromarray(image.astype(np.uint8))
    path = Path(path)
    with atomic_write(path) as f:
        pil.save(f, format="PNG")
    return path


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 150, tight: bool = True) -> Path:
    """A matplotlib Figure as PNG, atomically, without a timestamp (same figure -> same bytes)."""
    import io as _io

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None, metadata={"Software": None})
    with atomic_write(path) as f:
        f.write(buf.getvalue())
    return Path(path)


def save_grid(path: str | os.PathLike, images: torch.Tensor | np.ndarray, ncols: int | None = None) -> Path:
    """Images in [-1, 1] (float) or uint8, (N, C, H, W) -> one PNG grid."""
    arr = images if isinstance(images, np.ndarray) and images.dtype == np.uint8 else to_uint8(images)
    return save_image(path, make_grid(arr, ncols=ncols))


class _CsvRows:
    def __init__(self, f: IO[str], header: Sequence[str], line_end: str = "\n", write_header: bool = True) -> None:
        self._writer = csv.writer(f, lineterminator=line_end)
        self.header = list(header)
        if write_header:
            self._writer.writerow(self.header)

    def writerow(self, row: Sequence[Any] | Mapping[str, Any]) -> None:
        """A row as a sequence in header order, or a mapping (missing keys written empty)."""
        self._writer.writerow([row.get(k, "") for k in self.header] if isinstance(row, Mapping) else list(row))


@contextlib.contextmanager
def csv_writer(path: str | os.PathLike, header: Sequence[str], *, line_end: str = "\n") -> Iterator[_CsvRows]:
    """Write a CSV row by row (memory flat however long), atomically: readers see the whole table or none."""
    with atomic_write(path, "w") as f:
        yield _CsvRows(f, header, line_end)


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[Any] | Mapping[str, Any]],
              *, line_end: str = "\n") -> Path:
    """The one CSV writer: a header, then rows (sequences in header order, or mappings), atomically."""
    with csv_writer(path, header, line_end=line_end) as table:
        for row in rows:
            table.writerow(row)
    return Path(path)


def append_csv_row(path: str | os.PathLike, header: Sequence[str], row: Sequence[Any] | Mapping[str, Any], *,
                   line_end: str = "\n") -> None:
    """One row at the end of a table `write_csv` started (a log that grows): one flushed write, so a crash
    cuts at most this line, and nothing is rewritten (a long run's log stays cheap to extend)."""
    buf = StringIO()
    _CsvRows(buf, header, line_end, write_header=False).writerow(row)
    with open(path, "a", encoding="utf-8", newline="") as f:
        f.write(buf.getvalue())
        f.flush()
