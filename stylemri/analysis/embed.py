"""Style-space analysis: how the classes sit in W (and in the discriminator's feature space).

t-SNE / PCA / UMAP embeddings of style codes coloured by class, 2-D and 3-D plots; cosine similarity of
the class-mean style vectors with a split-half baseline (the cosine of one class's mean with itself
across two disjoint halves of its samples: what "no difference" looks like at this sample size);
silhouette scores of the class clusters in the full space and in the embedding; cross-validated accuracy
of a linear classifier (class information present even where clusters overlap).
"""

from __future__ import annotations

import csv
import io as _io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from stylemri import io
from stylemri.analysis.figures import MARKERS, PALETTE, save_figure
from stylemri.errors import UserError
from stylemri.generate import class_labels, map_latents, model_device

METHODS = ("tsne", "pca", "umap")
METHOD_NAMES = {"tsne": "t-SNE", "pca": "PCA", "umap": "UMAP"}


@torch.no_grad()
def sample_style_codes(G: torch.nn.Module, n: int, seed: int = 0, psi: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """`n` style codes w per class (all from one seeded z stream): codes (N, w_dim), labels (N,).
    An unconditional model gives `n` codes labelled 0."""
    if n < 2:
        raise UserError(f"--n {n}: expected at least 2 samples per class")
    rng = np.random.RandomState(seed)
    codes, labels = [], []
    for k in range(max(G.c_dim, 1)):
        z = torch.from_numpy(rng.randn(n, G.z_dim).astype(np.float32))
        c = class_labels([k] * n if G.c_dim else [None] * n, G.c_dim)
        codes.append(map_latents(G, z, c, psi=psi)[:, 0].float().cpu().numpy())
        labels.append(np.full(n, k, dtype=np.int64))
    return np.concatenate(codes), np.concatenate(labels)


def discriminator_head(D: torch.nn.Module) -> torch.nn.Module:
    """The discriminator's last hidden layer (the `fc` of its 4x4 head), whose output are the features."""
    head = None
    for module in D.modules():
        if hasattr(module, "fc") and hasattr(module, "out"):
            head = module.fc
    if head is None:
        raise ValueError("discriminator has no head with `fc` and `out` layers to read features from")
    return head


@torch.no_grad()
def discriminator_features(D: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None,
                           batch_size: int = 64) -> np.ndarray:
    """Penultimate-layer features (N, F) of D for images (N, C, R, R) in [-1, 1] (labels: class indices)."""
    head = discriminator_head(D)
    store: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, _i, out: store.append(out.detach().float().cpu()))
    dev = model_device(D)
    c_dim = int(getattr(D, "c_dim", 0))
    try:
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].to(dev)
            lab = labels[i:i + batch_size].tolist() if (labels is not None and c_dim) else [None] * len(x)
            D(x, class_labels(lab, c_dim, device=dev))
    finally:
        hook.remove()
    return torch.cat(store).numpy() if store else np.zeros((0, 0), np.float32)


def reduce_dims(x: np.ndarray, method: str = "tsne", dims: int = 2, seed: int = 0) -> np.ndarray:
    """(N, D) -> (N, dims) with t-SNE, PCA or UMAP (UMAP only if the umap-learn package is installed)."""
    if method not in METHODS:
        raise UserError(f"--method {method}: expected one of {', '.join(METHODS)}")
    if dims not in (2, 3):
        raise UserError(f"--dims {dims}: expected 2 or 3")
    n = len(x)
    if n <= dims + 1:
        raise UserError(f"{n} samples: too few to embed in {dims} dimensions; raise --n")
    x = np.asarray(x, dtype=np.float64)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=dims, random_state=seed).fit_transform(x).astype(np.float32)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
        return TSNE(n_components=dims, perplexity=perplexity, init="pca", random_state=seed,
                    max_iter=1000).fit_transform(x).astype(np.float32)
    try:
        import umap  # type: ignore[import-not-found]
    except ImportError:
        raise UserError("--method umap: the umap-learn package is not installed (pip install umap-learn); "
                        "use --method tsne or pca") from None
    return umap.UMAP(n_components=dims, random_state=seed).fit_transform(x).astype(np.float32)


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of the rows of (K, D)."""
    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return np.clip(v @ v.T, -1.0, 1.0)


def split_half_cosine(codes: np.ndarray, labels: np.ndarray, num_classes: int, seed: int = 0) -> np.ndarray:
    """Per class, cosine of the means of two random disjoint halves of its samples (the no-difference baseline)."""
    rng = np.random.RandomState(seed)
    out = np.full(num_classes, np.nan)
    for k in range(num_classes):
        idx = rng.permutation(np.flatnonzero(labels == k))
        if len(idx) >= 2:
            half = len(idx) // 2
            out[k] = cosine_matrix(np.stack([codes[idx[:half]].mean(0), codes[idx[half:]].mean(0)]))[0, 1]
    return out


def silhouette(x: np.ndarray, labels: np.ndarray) -> float | None:
    """Silhouette score of the class clusters (None with fewer than two classes)."""
    from sklearn.metrics import silhouette_score

    if len(np.unique(labels)) < 2 or len(np.unique(labels)) >= len(labels):
        return None
    return float(silhouette_score(np.asarray(x, np.float64), labels))


def linear_separability(x: np.ndarray, labels: np.ndarray, seed: int = 0) -> float | None:
    """Cross-validated accuracy of a logistic-regression classifier of the class from the codes: how much
    class information the space holds linearly, even when clusters overlap (low silhouette). None with
    fewer than two classes or too few samples for 2-fold cross-validation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    counts = np.bincount(np.asarray(labels, np.int64))
    counts = counts[counts > 0]
    if len(counts) < 2 or counts.min() < 2:
        return None
    folds = StratifiedKFold(n_splits=int(min(5, counts.min())), shuffle=True, random_state=seed)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return float(cross_val_score(clf, np.asarray(x, np.float64), labels, cv=folds).mean())


@dataclass
class EmbeddingResult:
    """Codes (N, D), labels (N,), the low-dimensional embedding (N, dims), and the class statistics."""

    what: str  # "style codes w" | "discriminator features of real images" | ...
    codes: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    method: str
    embedding: np.ndarray
    class_means: np.ndarray
    cosine: np.ndarray
    split_half: np.ndarray
    silhouette_full: float | None
    silhouette_embedding: float | None
    linear_accuracy: float | None = None
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-able statistics (no per-sample arrays)."""
        names = self.class_names
        return {
            "what": self.what, "method": self.method, "dims": int(self.embedding.shape[1]),
            "samples_per_class": {n: int((self.labels == k).sum()) for k, n in enumerate(names)},
            "cosine_of_class_means": {a: {b: round(float(self.cosine[i, j]), 6) for j, b in enumerate(names)}
                                      for i, a in enumerate(names)},
            "split_half_cosine": {n: (None if np.isnan(v) else round(float(v), 6))
                                  for n, v in zip(names, self.split_half)},
            "silhouette_full_space": self.silhouette_full,
            f"silhouette_{self.method}_{self.embedding.shape[1]}d": self.silhouette_embedding,
            "linear_accuracy_cv": self.linear_accuracy,
            "chance_accuracy": float(np.bincount(self.labels).max() / len(self.labels)) if len(self.labels) else None,
            **self.extra,
        }


def analyse(codes: np.ndarray, labels: np.ndarray, class_names: Sequence[str], what: str, method: str = "tsne",
            dims: int = 2, seed: int = 0) -> EmbeddingResult:
    """Embed `codes` and compute the class statistics."""
    codes = np.asarray(codes, np.float32)
    labels = np.asarray(labels, np.int64)
    names = list(class_names)
    emb = reduce_dims(codes, method, dims, seed)
    means = np.stack([codes[labels == k].mean(0) for k in range(len(names))])
    return EmbeddingResult(
        what=what, codes=codes, labels=labels, class_names=names, method=method, embedding=emb,
        class_means=means, cosine=cosine_matrix(means), split_half=split_half_cosine(codes, labels, len(names), seed),
        silhouette_full=silhouette(codes, labels), silhouette_embedding=silhouette(emb, labels),
        linear_accuracy=linear_separability(codes, labels, seed))


# ------------------------------------------------------------------------------------------- writers


def write_embedding_csv(path: str | os.PathLike, result: EmbeddingResult) -> Path:
    """index, label, class, x, y[, z] per sample."""
    dims = result.embedding.shape[1]
    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["index", "label", "class", *"xyz"[:dims]])
    for i, (lab, row) in enumerate(zip(result.labels, result.embedding)):
        writer.writerow([i, int(lab), result.class_names[int(lab)], *(f"{v:.6g}" for v in row)])
    with io.atomic_write(path, "w") as f:
        f.write(buf.getvalue())
    return Path(path)


def plot_embedding(path: str | os.PathLike, embedding: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                   title: str, method: str) -> Path:
    """Scatter (2-D or 3-D) coloured and marked by class, with title, axis labels and legend."""
    from matplotlib.figure import Figure

    dims = embedding.shape[1]
    axis_name = {"tsne": "t-SNE", "pca": "PC", "umap": "UMAP"}[method]  # axis labels: "PC 1", "t-SNE 1"
    fig = Figure(figsize=(6.4, 5.2))
    ax = fig.add_subplot(111, projection="3d" if dims == 3 else None)
    for k, name in enumerate(class_names):
        pts = embedding[labels == k]
        style = dict(c=PALETTE[k % len(PALETTE)], marker=MARKERS[k % len(MARKERS)], s=18, alpha=0.8,
                     edgecolors="black", linewidths=0.3, label=f"{name} (n={len(pts)})")
        if dims == 3:
            ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], **style)
        else:
            ax.scatter(pts[:, 0], pts[:, 1], **style)
    ax.set_xlabel(f"{axis_name} 1")
    ax.set_ylabel(f"{axis_name} 2")
    if dims == 3:
        ax.set_zlabel(f"{axis_name} 3")
    else:
        ax.grid(True, linewidth=0.3, alpha=0.5)
    ax.set_title(title)
    ax.legend(title="class", loc="best", frameon=True)
    return save_figure(fig, path)


def plot_cosine(path: str | os.PathLike, cosine: np.ndarray, class_names: Sequence[str], title: str) -> Path:
    """Heat map of the class-mean cosine similarities (cividis: monotone in lightness, prints in grey)."""
    from matplotlib.figure import Figure

    k = len(class_names)
    fig = Figure(figsize=(1.2 * k + 3.0, 1.0 * k + 2.0))
    ax = fig.add_subplot(111)
    lo = float(min(cosine.min(), 0.0))  # a fixed scale: near-identical means must look near-identical
    im = ax.imshow(cosine, cmap="cividis", vmin=lo, vmax=1.0)
    for i in range(k):
        for j in range(k):
            shade = (cosine[i, j] - lo) / max(1.0 - lo, 1e-9)
            ax.text(j, i, f"{cosine[i, j]:.3f}", ha="center", va="center", color="white" if shade < 0.6 else "black",
                    fontsize=9)
    ax.set_xticks(range(k), class_names)
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("class")
    ax.set_ylabel("class")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label="cosine similarity of class-mean vectors")
    return save_figure(fig, path)


__all__ = ["METHODS", "sample_style_codes", "discriminator_head", "discriminator_features",
           "reduce_dims", "cosine_matrix", "split_half_cosine", "silhouette", "linear_separability",
           "EmbeddingResult", "analyse",
           "write_embedding_csv", "plot_embedding", "plot_cosine"]
