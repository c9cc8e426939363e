"""``clip2point eval --compare-precision``: one zero-shot evaluation in fp32 and in bf16, and how far the two agree.

Both precisions see the same rendered depth images (rendered once per batch) and the same
prompts; only the encoder weights' dtype differs (the bf16 backbone is a converted copy of the
fp32 one, :meth:`~clip2point.backbone.ClipBackbone.with_precision`). The persistent view-feature
cache is not used: every view is encoded in both precisions.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["PrecisionComparison", "compare_precisions", "format_comparison"]


@dataclass
class PrecisionComparison:
    """fp32 vs bf16 on S shapes (``reference`` vs ``other``).

    Attributes:
        classes: C class names. labels: (S,) int64 true classes.
        predictions: precision name → (S,) int64 top-1 predictions.
        max_feature_diff: largest absolute difference of one component of an L2-normalised view
            feature (a unit vector of D components) between the two precisions, over every view of every shape.
        min_cosine: smallest cosine similarity between the two precisions' features of the same view.
        max_logit_diff: largest absolute difference of a shape logit (sum over views of scale · cosine).
        encode_s: precision name → seconds spent encoding views (rendering excluded).
        reasons: precision name → why it is that dtype (:func:`~clip2point.backbone.resolve_precision`).
    """

    classes: list[str]
    labels: np.ndarray
    predictions: dict[str, np.ndarray]
    max_feature_diff: float = 0.0
    min_cosine: float = 1.0
    max_logit_diff: float = 0.0
    encode_s: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, str]:
        """(reference, other) precision names, e.g. ("fp32", "bf16")."""
        a, b = self.predictions
        return a, b

    @property
    def agreement(self) -> float:
        """Share of shapes whose top-1 class is the same in both precisions, in [0, 1] (NaN for none)."""
        a, b = (self.predictions[n] for n in self.names)
        return float((a == b).mean()) if len(a) else float("nan")

    def accuracy(self, name: str) -> float:
        """Top-1 accuracy in [0, 1] of precision ``name``."""
        p = self.predictions[name]
        return float((p == self.labels).mean()) if len(p) else float("nan")

    def as_dict(self) -> dict:
        a, b = self.names
        return {
            "num_shapes": int(len(self.labels)), "precisions": [a, b], "top1_agreement": self.agreement,
            "disagreements": int((self.predictions[a] != self.predictions[b]).sum()),
            "accuracy": {n: self.accuracy(n) for n in (a, b)},
            "distinct_predictions": {n: int(len(np.unique(self.predictions[n]))) for n in (a, b)},
            "max_feature_diff": self.max_feature_diff, "min_cosine": self.min_cosine,
            "max_logit_diff": self.max_logit_diff, "encode_s": dict(self.encode_s),
            "speedup": (self.encode_s[a] / self.encode_s[b]) if self.encode_s.get(b) else None,
            "reasons": dict(self.reasons),
        }


def _timed(fn: Callable, *args):
    import torch

    t = time.perf_counter()
    out = fn(*args)
    if out.device.type == "cuda":
        torch.cuda.synchronize(out.device)
    return out, time.perf_counter() - t


def compare_precisions(backbone, dataset, template: str | Sequence[str], views: str = "6", image_size: int | None = None,
                       radius: float = 0.02, batch_size: int = 32, images_per_pass: int = 64,
                       precisions: Sequence[str] = ("fp32", "bf16"),
                       progress: Callable[[int], None] | None = None) -> PrecisionComparison:
    """Zero-shot classify every shape of ``dataset`` in two precisions and compare.

    Args:
        backbone: a :class:`~clip2point.backbone.ClipBackbone` loaded in fp32 (the other precision
            is a converted copy; a bf16-loaded backbone would compare rounded weights with themselves).
        dataset: a labelled point-cloud dataset (``class_names``, items ``(points, label)``).
        template, views, image_size, radius: as :class:`~clip2point.zeroshot.ZeroShotClassifier` (``template``:
            one template or an ensemble, e.g. :func:`~clip2point.cli.common.templates_from_args`'s).
        batch_size: shapes per batch; images_per_pass: images per encoder forward pass.
        precisions: (reference, other).
        progress: called with the number of shapes done after each batch.

    Returns:
        A :class:`PrecisionComparison`.
    """
    import torch

    from ..datasets import iter_batches
    from ..zeroshot import ZeroShotClassifier

    names = tuple(precisions)
    clfs = {n: ZeroShotClassifier(backbone.with_precision(n), dataset.class_names, template, views, image_size=image_size,
                                  radius=radius, batch_size=images_per_pass) for n in names}
    out = PrecisionComparison(list(dataset.class_names), np.zeros(0, np.int64), {n: np.zeros(0, np.int64) for n in names},
                              encode_s={n: 0.0 for n in names},
                              reasons={n: c.backbone.precision_reason for n, c in clfs.items()})
    labels, preds = [], {n: [] for n in names}
    for pts, lab in iter_batches(dataset, batch_size):
        depth = clfs[names[0]].render(pts)
        feats, logits = {}, {}
        for n, clf in clfs.items():
            feats[n], seconds = _timed(clf.view_features, depth)
            out.encode_s[n] += seconds
            logits[n] = clf.scores(feats[n])[1]
            preds[n].append(logits[n].argmax(dim=1).numpy())
        fa, fb = (feats[n].float() for n in names)
        out.max_feature_diff = max(out.max_feature_diff, float((fa - fb).abs().max()))
        out.min_cosine = min(out.min_cosine, float(torch.nn.functional.cosine_similarity(fa, fb, dim=-1).min()))
        out.max_logit_diff = max(out.max_logit_diff, float((logits[names[0]] - logits[names[1]]).abs().max()))
        labels.append(lab.numpy())
        if progress is not None:
            progress(len(lab))
    if labels:
        out.labels = np.concatenate(labels).astype(np.int64)
        out.predictions = {n: np.concatenate(p).astype(np.int64) for n, p in preds.items()}
    return out


def format_comparison(cmp: PrecisionComparison, title: str) -> str:
    """The comparison as a few lines of text for the terminal."""
    a, b = cmp.names
    d = cmp.as_dict()
    lines = [
        f"{title}: {d['num_shapes']} shapes, {a} vs {b}",
        f"  top-1 agreement {cmp.agreement * 100:.2f}% ({d['disagreements']} of {d['num_shapes']} shapes differ)",
        f"  accuracy {a} {cmp.accuracy(a) * 100:.2f}%   {b} {cmp.accuracy(b) * 100:.2f}%   "
        f"(distinct predicted classes: {d['distinct_predictions'][a]} / {d['distinct_predictions'][b]})",
        f"  view features (L2-normalised): max |difference| {cmp.max_feature_diff:.3g}, min cosine {cmp.min_cosine:.6f}",
        f"  shape logits: max |difference| {cmp.max_logit_diff:.3g}",
        f"  encoding time: {a} {cmp.encode_s[a]:.2f} s, {b} {cmp.encode_s[b]:.2f} s"
        + (f" ({d['speedup']:.2f}x)" if d["speedup"] else ""),
        f"  precision {cmp.reasons[b]}",
    ]
    return "\n".join(lines)
