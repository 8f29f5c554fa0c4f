"""What people look at during and after a run: the loss table, the event lines, TensorBoard, PNG plots
(where each lives: `run_dir.RunLayout`).

Only rank 0 creates a `RunLog`. The CSV and JSON-lines files are appended one flushed line at a time
(rewriting them every tick made a 25k-kimg run write ~15-20 GB); on resume they are rewritten once,
atomically, keeping only the rows up to the checkpoint being resumed (and dropping a line a crash may
have cut short), so the files read as one uninterrupted run. TensorBoard event files are written by
TensorBoard itself (append-only), with events past the resume point purged; its sample grids are bounded
(at most `TB_MAX_IMAGES` images of at most `TB_MAX_SIDE` pixels each) so the event file stays small.
Figures are drawn on `matplotlib.figure.Figure` (no pyplot, no global backend switch).
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from stylemri.io import append_csv_row, atomic_write, make_grid, save_figure, to_uint8, write_csv
from stylemri.training.run_dir import RunLayout

CSV_FIELDS = ("tick", "kimg", "resolution", "alpha", "batch", "G_loss", "D_loss", "R1", "R2", "path_length",
              "D_real_sign", "ada_p", "img_per_s", "sec_per_tick", "lr_G", "lr_D", "nonfinite", "wall_s")
CSV_LINE_END = "\r\n"  # the loss table has always had csv's default line end: old runs resume into one file
TB_MAX_IMAGES = 32  # images per TensorBoard sample grid
TB_MAX_SIDE = 128  # pixels per image side in TensorBoard (average-pooled down when larger)


class RunLog:
    """The loss table, event and metric lines, TensorBoard scalars and images, and plots of one run directory."""

    def __init__(self, run_dir: str | os.PathLike, *, resume_kimg: float | None = None,
                 tensorboard: bool = True) -> None:
        self.dir = Path(run_dir)
        self.layout = RunLayout(self.dir)
        self.csv_path = self.layout.losses
        self.jsonl_path = self.layout.events
        self.metrics_path = self.layout.metrics
        self.rows: list[dict[str, Any]] = []  # kept in memory for the loss plot (a few hundred bytes each)
        self.metric_records: list[dict[str, Any]] = []
        if resume_kimg is not None:
            self.rows = [r for r in _read_csv(self.csv_path)  # a row a crash cut short has missing fields
                         if None not in r.values() and _num(r.get("kimg")) <= resume_kimg + 1e-9]
            events = [line for line in _read_lines(self.jsonl_path) if _kimg_of(line) <= resume_kimg + 1e-9]
            metric_lines = [line for line in _read_lines(self.metrics_path) if _kimg_of(line) <= resume_kimg + 1e-9]
            self.metric_records = [json.loads(line) for line in metric_lines]
            self._rewrite_csv()
            _rewrite_lines(self.jsonl_path, events)
            _rewrite_lines(self.metrics_path, metric_lines)
        else:  # a fresh run: no lines from an earlier run in the same folder
            self._rewrite_csv()
            for path in (self.jsonl_path, self.metrics_path):
                if path.exists():
                    _rewrite_lines(path, [])
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: it is slow to import

            purge = int(round(resume_kimg * 1000)) + 1 if resume_kimg is not None else None
            self._tb = SummaryWriter(log_dir=str(self.dir), purge_step=purge)

    def tick(self, stats: Mapping[str, Any]) -> None:
        """One row per tick: the loss table, a JSON line, TensorBoard scalars."""
        row = {k: _fmt(stats.get(k)) for k in CSV_FIELDS}
        self.rows.append(row)
        self.log_event({"event": "tick", **{k: stats.get(k) for k in CSV_FIELDS}})
        append_csv_row(self.csv_path, CSV_FIELDS, row, line_end=CSV_LINE_END)
        if self._tb is not None:
            step = int(round(float(stats["kimg"]) * 1000))
            for key in ("G_loss", "D_loss", "R1", "R2", "path_length", "D_real_sign", "ada_p", "img_per_s", "alpha",
                        "resolution", "lr_G", "lr_D", "nonfinite"):
                value = stats.get(key)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(f"train/{key}", value, step)
            self._tb.flush()

    def log_event(self, event: Mapping[str, Any]) -> None:
        """Append a JSON line to the event log (ticks, resolution switches, NaN recoveries, checkpoints)."""
        _append(self.jsonl_path, json.dumps(_jsonable(event), allow_nan=False) + "\n")

    def metrics(self, record: Mapping[str, Any]) -> Path:
        """Append one evaluation to the metric lines and redraw the metrics plot (one panel per metric)."""
        line = json.dumps(_jsonable(record), allow_nan=False)
        _append(self.metrics_path, line + "\n")
        self.metric_records.append(json.loads(line))
        return plot_metrics(self.metric_records, self.layout.metrics_plot)

    def scalars(self, group: str, values: Mapping[str, float], kimg: float) -> None:
        """Extra TensorBoard scalars (e.g. training-time metrics) under `group/`."""
        if self._tb is None:
            return
        for key, value in values.items():
            if math.isfinite(value):
                self._tb.add_scalar(f"{group}/{key}", value, int(round(kimg * 1000)))
        self._tb.flush()

    def images(self, tag: str, images: torch.Tensor, kimg: float, ncols: int | None = None) -> None:
        """A sample grid in TensorBoard (the PNG is written by the caller), bounded in images and pixels."""
        if self._tb is None:
            return
        grid = make_grid(to_uint8(tensorboard_images(images)), ncols=ncols)
        self._tb.add_image(tag, grid, int(round(kimg * 1000)), dataformats="HWC")
        self._tb.flush()

    def plot(self, switches: Sequence[tuple[float, int]] = ()) -> Path | None:
        """The loss plot from the loss table's rows, resolution switches marked."""
        if not self.rows:
            return None
        return plot_losses(self.rows, self.layout.loss_plot, switches)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def _rewrite_csv(self) -> None:
        """The header and the kept rows, atomically (a new run, or once on resume)."""
        write_csv(self.csv_path, CSV_FIELDS, self.rows, line_end=CSV_LINE_END)


def tensorboard_images(images: torch.Tensor) -> torch.Tensor:
    """At most TB_MAX_IMAGES images, average-pooled to at most TB_MAX_SIDE pixels a side."""
    images = images[:TB_MAX_IMAGES].float()
    side = images.shape[-1]
    if side > TB_MAX_SIDE:
        images = F.avg_pool2d(images, side // TB_MAX_SIDE)
    return images


def _append(path: Path, text: str) -> None:
    """One or more whole lines at the end of a log file, flushed (one write call per record)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()


def _rewrite_lines(path: Path, lines: Sequence[str]) -> None:
    with atomic_write(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))


def plot_losses(rows: Sequence[Mapping[str, Any]], path: Path, switches: Iterable[tuple[float, int]] = ()) -> Path:
    """Three panels (adversarial losses, regularizers, ADA p and r_t) against kimg; dashed lines at switches."""
    from matplotlib.figure import Figure

    def col(key: str) -> np.ndarray:
        return np.array([_num(r.get(key)) for r in rows], dtype=np.float64)

    kimg = col("kimg")
    fig = Figure(figsize=(8, 8))
    axes = fig.subplots(3, 1, sharex=True)
    panels = ((axes[0], ("G_loss", "D_loss"), "loss"), (axes[1], ("R1", "path_length"), "regularization"),
              (axes[2], ("ada_p", "D_real_sign"), "augmentation"))
    for ax, keys, ylabel in panels:
        for key in keys:
            y = col(key)
            if np.isfinite(y).any():
                ax.plot(kimg, y, label=key, linewidth=1.2)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        handles, _ = ax.get_legend_handles_labels()
        if handles:
            ax.legend(loc="upper right", fontsize=8)
    for x, res in switches:
        if kimg.size and x <= kimg.max():
            for ax in axes:
                ax.axvline(x, color="grey", linestyle="--", linewidth=0.8)
            axes[0].annotate(f"{res}px", (x, 1.0), xycoords=("data", "axes fraction"), fontsize=8,
                             ha="left", va="top", color="grey")
    axes[-1].set_xlabel("kimg (thousands of real images shown)")
    fig.tight_layout()
    save_figure(fig, path, dpi=100, tight=False)
    return path


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    return "" if v is None else v


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return _jsonable(obj.item())
    return obj


def plot_metrics(records: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Training-time metric curves against kimg, the best value of each marked."""
    from matplotlib.figure import Figure

    from stylemri.metrics.evaluate import training_scalars

    scalars = [s for s in training_scalars() if any(s.key in r for r in records)]  # the registry's, in its order
    fig = Figure(figsize=(8, 2.4 * max(len(scalars), 1)))
    axes = fig.subplots(len(scalars) or 1, 1, sharex=True, squeeze=False)
    for ax, scalar in zip(axes[:, 0], scalars):
        name = scalar.key
        pts = [(float(r["kimg"]), float(r[name])) for r in records if name in r]
        x, y = zip(*pts)
        ax.plot(x, y, marker="o", linewidth=1.2, label=name)
        best = (np.argmin if scalar.lower_is_better else np.argmax)(y)
        ax.plot([x[best]], [y[best]], marker="*", markersize=12, color="tab:red", linestyle="none",
                label=f"best {y[best]:.4g} at {x[best]:g} kimg")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    axes[0, 0].set_title("training-time metrics of G_ema")
    axes[-1, 0].set_xlabel("kimg (thousands of real images shown)")
    fig.tight_layout()
    save_figure(fig, path, dpi=100, tight=False)
    return path


def _read_csv(path: Path) -> list[dict[str, Any]]:
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


def _read_lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def _kimg_of(line: str) -> float:
    try:
        return float(json.loads(line).get("kimg", 0.0))
    except (ValueError, TypeError, AttributeError):
        return float("inf")
