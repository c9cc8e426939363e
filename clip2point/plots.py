"""Static figures (matplotlib, headless) for the CLI: depth-view grids, confusion matrices,
few-shot training curves and per-view gate weights."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["save_view_grid", "save_confusion_matrix", "save_training_curves", "save_gate_weights"]


def _subplots(*args, **kwargs):
    """``(figure, axes)`` like ``pyplot.subplots``, but a bare ``matplotlib.figure.Figure``: no pyplot,
    no global figure manager and no ``matplotlib.use`` (the process's backend stays as it was);
    ``Figure.savefig`` renders with Agg."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=kwargs.pop("figsize", None))
    return fig, fig.subplots(*args, **kwargs)


def save_view_grid(images: np.ndarray, labels: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Save (V, H, W) grey images in [0, 1] as one labelled grid PNG."""
    v = len(images)
    cols = min(v, 5)
    rows = (v + cols - 1) // cols
    fig, axes = _subplots(rows, cols, figsize=(2.4 * cols, 2.6 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < v:
            ax.imshow(images[k], cmap="gray", vmin=0, vmax=1)
            ax.set_title(labels[k], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def save_confusion_matrix(confusion: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Save a row-normalised confusion matrix (rows = true class) with counts as a PNG."""
    c = len(classes)
    totals = confusion.sum(axis=1, keepdims=True)
    norm = np.divide(confusion, totals, out=np.zeros_like(confusion, dtype=float), where=totals > 0)
    size = max(5.0, 0.45 * c + 2)
    fig, ax = _subplots(figsize=(size + 1, size))
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
    return Path(path)


def save_training_curves(history: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Save loss and accuracy per epoch as a two-panel PNG.

    Args:
        history: one dict per epoch with keys ``epoch``, ``train_loss``, ``train_acc`` and
            optionally ``val_loss``, ``val_acc`` (accuracies in [0, 1]; NaN/None are skipped).
    """

    def series(key: str) -> tuple[list[int], list[float]]:
        pts = [(h["epoch"], h[key]) for h in history if h.get(key) is not None and h[key] == h[key]]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, (ax_loss, ax_acc) = _subplots(1, 2, figsize=(10, 3.8))
    for ax, keys, ylabel in ((ax_loss, ("train_loss", "val_loss"), "cross-entropy"),
                             (ax_acc, ("train_acc", "val_acc"), "accuracy")):
        for key in keys:
            xs, ys = series(key)
            if xs:
                ax.plot(xs, ys, marker="." if len(xs) < 30 else None, label=key.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_acc.set_ylim(0, 1.02)
    fig.suptitle(title or "few-shot training", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def save_gate_weights(
    gate: Sequence[float],
    labels: Sequence[str],
    path: str | Path,
    title: str = "",
    importance: Sequence[float] | None = None,
    path_names: tuple[str, str] = ("depth encoder", "CLIP"),
) -> Path:
    """Save per-view gate weights (share of path A per view, in [0, 1]) as a bar chart PNG.

    Args:
        gate: V values, e.g. the GDPA gate averaged over the test set.
        labels: V view labels ("elev 0°, azim 0°").
        importance: optional V per-view importances (sum 1), drawn as a line on a second axis.
        path_names: names of path A and path B for the axis label.
    """
    v = len(gate)
    fig, ax = _subplots(figsize=(max(6.0, 0.75 * v + 2), 4.2))
    ax.bar(range(v), gate, color="tab:blue", label=f"gate: share from {path_names[0]}")
    ax.axhline(0.5, color="grey", lw=1, ls="--", label="0.5 (released DPA average)")
    ax.set_xticks(range(v), labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"share from {path_names[0]}")
    ax.set_xlabel(f"view (the rest, 1 − gate, comes from {path_names[1]})", fontsize=8)
    handles, names = ax.get_legend_handles_labels()
    if importance is not None:
        ax2 = ax.twinx()
        line = ax2.plot(range(v), importance, color="tab:orange", marker="o", label="view importance π")
        ax2.set_ylim(0, max(1.0 / v * 2, max(importance) * 1.2))
        ax2.set_ylabel("view importance π")
        handles, names = handles + line, names + ["view importance π"]
    ax.legend(handles, names, fontsize=8, loc="upper right")
    ax.set_title(title or "GDPA gate per view", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)
