"""Zero-shot evaluation on a labelled dataset in one process: accuracy, per-class and per-view accuracy, confusion matrix.

``iter_batches`` lives in :mod:`clip2point.datasets` (re-exported here). Sharded evaluation over
processes and nodes (torchrun) is :mod:`clip2point.evaluate.sharded`; it classifies each batch
with :func:`classify_batch`, the same function as :func:`evaluate_zero_shot`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..checkpoints import json_safe  # re-exported
from ..datasets import PointCloudDataset, iter_batches  # iter_batches: re-exported (it lived here)
from ..zeroshot import ZeroShotClassifier

__all__ = ["EvalResult", "evaluate_zero_shot", "iter_batches", "classify_batch", "json_safe"]


@dataclass
class EvalResult:
    """Evaluation of C-way classification on S shapes.

    Attributes:
        classes: C class names. labels, predictions: (S,) int64 class indices.
        view_predictions: (S, V) int64, the top-1 class of each view's own logits (zero-shot: the
            argmax of ``view_logits``), or None (a classifier without views, e.g. the few-shot adapter).
        view_labels: V view names ("elev 0°, azim 90°"), when ``view_predictions`` is given.
        indices: (S,) int64 dataset index of each shape (None: 0 … S-1), in dataset order.
    """

    classes: list[str]
    labels: np.ndarray
    predictions: np.ndarray
    view_predictions: np.ndarray | None = None
    view_labels: list[str] = field(default_factory=list)
    indices: np.ndarray | None = None

    @property
    def confusion(self) -> np.ndarray:
        """(C, C) int64 confusion matrix, rows = true class, columns = predicted class."""
        c = len(self.classes)
        return np.bincount(self.labels * c + self.predictions, minlength=c * c).reshape(c, c)

    @property
    def accuracy(self) -> float:
        """Overall top-1 accuracy in [0, 1] (ModelNet papers' 'OA')."""
        return float((self.labels == self.predictions).mean()) if len(self.labels) else float("nan")

    @property
    def per_class_accuracy(self) -> dict[str, float]:
        """Recall per class (NaN for classes absent from the evaluated shapes)."""
        cm = self.confusion
        totals = cm.sum(axis=1)
        return {n: (float(cm[i, i] / totals[i]) if totals[i] else float("nan")) for i, n in enumerate(self.classes)}

    @property
    def mean_class_accuracy(self) -> float:
        """Mean of the per-class accuracies of the classes present ('mAcc')."""
        vals = [v for v in self.per_class_accuracy.values() if not np.isnan(v)]
        return float(np.mean(vals)) if vals else float("nan")

    @property
    def per_view_accuracy(self) -> list[float] | None:
        """Top-1 accuracy in [0, 1] of each view alone (its own logits), in view order; None without views."""
        if self.view_predictions is None:
            return None
        if not len(self.labels):
            return [float("nan")] * int(self.view_predictions.shape[1])
        return [float(x) for x in (self.view_predictions == self.labels[:, None]).mean(axis=0)]

    def shape_indices(self) -> np.ndarray:
        """(S,) int64 dataset indices of the shapes (0 … S-1 unless ``indices`` says otherwise)."""
        return np.arange(len(self.labels), dtype=np.int64) if self.indices is None else self.indices

    def prediction_records(self) -> list[dict]:
        """One ``{"index": int, "label": class name, "predicted": class name}`` per shape, in dataset order."""
        names = self.classes
        return [{"index": int(i), "label": names[int(y)], "predicted": names[int(p)]}
                for i, y, p in zip(self.shape_indices(), self.labels, self.predictions)]

    def as_dict(self) -> dict:
        """JSON-ready metrics: num_shapes, accuracy, mean_class_accuracy, per_class_accuracy (NaN: class absent),
        classes, confusion_matrix, and per_view_accuracy ([{"view", "accuracy"}]) when views are known."""
        out = {
            "num_shapes": int(len(self.labels)),
            "accuracy": self.accuracy,
            "mean_class_accuracy": self.mean_class_accuracy,
            "per_class_accuracy": self.per_class_accuracy,
            "classes": list(self.classes),
            "confusion_matrix": self.confusion.tolist(),
        }
        per_view = self.per_view_accuracy
        if per_view is not None:
            labels = self.view_labels or [f"view {v}" for v in range(len(per_view))]
            out["per_view_accuracy"] = [{"view": lab, "accuracy": acc} for lab, acc in zip(labels, per_view)]
        return out


def classify_batch(classifier: ZeroShotClassifier, points: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Zero-shot predictions of a batch: ((b,) int64 shape predictions = argmax of the summed view logits,
    (b, V) int64 per-view predictions = argmax of each view's logits). Goes through the classifier's cache."""
    res = classifier.predict(points, keep_depth=False)
    return (res.logits.argmax(dim=1).numpy().astype(np.int64),
            res.view_logits.argmax(dim=2).numpy().astype(np.int64))


def evaluate_zero_shot(
    classifier: ZeroShotClassifier,
    dataset: PointCloudDataset,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> EvalResult:
    """Zero-shot top-1 on ``dataset`` with ``classifier`` (whose classes must be the dataset's, in order).

    The classifier's ``cache`` (a :class:`~clip2point.viewcache.ViewFeatureCache`, see
    :class:`ZeroShotClassifier`) is used: a re-run of the same evaluation renders and encodes nothing.

    Args:
        progress: called with the number of shapes done after each batch (e.g. ``tqdm.update``).

    Returns:
        An :class:`EvalResult` with shape and per-view predictions (``view_labels``: the classifier's views).
    """
    preds, views, labels = [], [], []
    for pts, lab in iter_batches(dataset, batch_size):
        p, v = classify_batch(classifier, pts)
        preds.append(p)
        views.append(v)
        labels.append(lab.numpy().astype(np.int64))
        if progress is not None:
            progress(len(lab))
    n_views = len(classifier.views)
    if not preds:
        return EvalResult(list(classifier.classes), np.zeros(0, np.int64), np.zeros(0, np.int64),
                          np.zeros((0, n_views), np.int64), classifier.views.labels())
    return EvalResult(list(classifier.classes), np.concatenate(labels), np.concatenate(preds),
                      np.concatenate(views), classifier.views.labels())
