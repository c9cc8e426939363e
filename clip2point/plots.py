"""Static figures (matplotlib, headless) for the CLI: depth-view grids and confusion matrices."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["save_view_grid", "save_confusion_matrix"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_view_grid(images: np.ndarray, labels: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Save (V, H, W) grey images in [0, 1] as one labelled grid PNG."""
    plt = _pyplot()
    v = len(images)
    cols = min(v, 5)
    rows = (v + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.6 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < v:
            ax.imshow(images[k], cmap="gray", vmin=0, vmax=1)
            ax.set_title(labels[k], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def save_confusion_matrix(confusion: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Save a row-normalised confusion matrix (rows = true class) with counts as a PNG."""
    plt = _pyplot()
    c = len(classes)
    totals = confusion.sum(axis=1, keepdims=True)
    norm = np.divide(confusion, totals, out=np.zeros_like(confusion, dtype=float), where=totals > 0)
    size = max(5.0, 0.45 * c + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(c), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(c), classes, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if c <= 20:
        for i in range(c):
            for j in range(c):
                if confusion[i, j]:
                    ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
