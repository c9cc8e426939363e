"""Zero-shot evaluation on a labelled dataset: accuracy, per-class accuracy, confusion matrix.

``iter_batches`` lives in :mod:`clip2point.datasets` (re-exported here).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .datasets import PointCloudDataset, iter_batches  # iter_batches: re-exported (it lived here)
from .zeroshot import ZeroShotClassifier

__all__ = ["EvalResult", "evaluate_zero_shot", "iter_batches"]


@dataclass
class EvalResult:
    """Evaluation of C-way classification on S shapes.

    Attributes:
        classes: C class names. labels, predictions: (S,) int64.
        confusion: (C, C) int64, rows = true class, columns = predicted class.
    """

    classes: list[str]
    labels: np.ndarray
    predictions: np.ndarray

    @property
    def confusion(self) -> np.ndarray:
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
        vals = [v for v in self.per_class_accuracy.values() if not np.isnan(v)]
        return float(np.mean(vals)) if vals else float("nan")

    def as_dict(self) -> dict:
        return {
            "num_shapes": int(len(self.labels)),
            "accuracy": self.accuracy,
            "mean_class_accuracy": self.mean_class_accuracy,
            "per_class_accuracy": self.per_class_accuracy,
            "classes": list(self.classes),
            "confusion_matrix": self.confusion.tolist(),
        }


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
    """
    preds, labels = [], []
    for pts, lab in iter_batches(dataset, batch_size):
        res = classifier.predict(pts, keep_depth=False)
        preds.append(res.logits.argmax(dim=1).numpy())
        labels.append(lab.numpy())
        if progress is not None:
            progress(len(lab))
    cat = (lambda xs: np.concatenate(xs).astype(np.int64)) if preds else (lambda xs: np.zeros(0, np.int64))
    return EvalResult(list(classifier.classes), cat(labels), cat(preds))
