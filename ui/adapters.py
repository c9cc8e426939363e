"""Finished few-shot runs for any front end: a run's adapter on a shape, next to zero-shot.

The Gradio app's Few-shot tab and the Jupyter :class:`ui.widgets.GateViewer` call these; neither
loads adapters, renders or predicts on its own.

* :func:`compare_on_shape` — a trained adapter and zero-shot CLIP with the same classes on a
  session's current shape (:class:`AdapterComparison`).
* :func:`depth_thumbnails`, :func:`example_depth_thumbnails` — per-view depth images as PNG data
  URIs (the thumbnails beside gate weights).
* :func:`class_gate_means` — the mean gate per class, computed by the adapter on a few test shapes
  per class, for runs whose ``metrics.json`` predates ``class_gate_weights``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from clip2point.render import render_depth
from ui import figures
from ui.defaults import DEFAULT_EXAMPLE, DEFAULT_NUM_POINTS, DEFAULT_TEMPLATE, FEWSHOT_VIEWS
from ui.session import Session, score_features
from ui.shapes import ShapeSource, load_shape

__all__ = ["AdapterComparison", "compare_on_shape", "depth_thumbnails", "example_depth_thumbnails",
           "class_gate_means"]


@dataclass
class AdapterComparison:
    """A trained adapter and zero-shot CLIP (same classes, the run's template) on one shape.

    Attributes:
        shape_name, true_label: the shape (the label only for dataset shapes).
        adapter: the adapter's ``AdapterResult`` (B = 1, with its depth images and per-view gate).
        zero_shot: the ``ZeroShotResult`` of the session's views with the adapter's classes.
    """

    shape_name: str
    true_label: str | None
    adapter: Any
    zero_shot: Any

    def note(self) -> str:
        """One line: both predictions (and the true label when known)."""
        top, p = self.adapter.top(1)[0]
        ztop, zp = self.zero_shot.top(1)[0]
        truth = f" · true label {self.true_label}" if self.true_label else ""
        return (f"{self.shape_name}: adapter → {top} ({p:.1%}) · zero-shot with the same {len(self.adapter.classes)} "
                f"classes → {ztop} ({zp:.1%}){truth}")


def compare_on_shape(session: Session, classifier, example: str = DEFAULT_EXAMPLE) -> AdapterComparison:
    """Classify the session's current shape (``example`` when none is loaded) with a trained
    adapter (``clip2point.fewshot.FewShotClassifier``) and zero-shot with its classes.

    The zero-shot scores reuse the session's cached view features and its backbone's cached text
    features; the adapter renders the shape with its own view set.
    """
    if session.shape is None:
        session.load(ShapeSource.example(example), DEFAULT_NUM_POINTS, "y")
    shape = session.shape
    res = classifier.predict(shape.points, keep_depth=True)
    template = classifier.run_config.get("fewshot", {}).get("template", DEFAULT_TEMPLATE)
    zs = score_features(session.model(), session.features(), classifier.classes, template, session.views)
    return AdapterComparison(shape.name, shape.true_label, res, zs)


def depth_thumbnails(depth: torch.Tensor | np.ndarray | None) -> list[str]:
    """(V, H, W) depth images in [0, 1] as V PNG data URIs (empty for None)."""
    if depth is None:
        return []
    arr = depth.cpu().numpy() if isinstance(depth, torch.Tensor) else np.asarray(depth)
    return [figures.png_data_uri(d) for d in arr]


def example_depth_thumbnails(example: str = DEFAULT_EXAMPLE, views: str = FEWSHOT_VIEWS, size: int = 96,
                             radius: float = 0.03) -> list[str]:
    """Depth views of an example object (2,048 points) as PNG data URIs, one per view of ``views``."""
    pts = load_shape(ShapeSource.example(example), 2048).points
    return depth_thumbnails(render_depth(pts, views, size, radius)[0])


def class_gate_means(run_dir: str | os.PathLike, backbone, per_class: int) -> dict[str, np.ndarray]:
    """{class: (V,) mean gate α} of a run's adapter on the first ``per_class`` test shapes of each
    class (class-balanced, in dataset order).

    For runs whose ``metrics.json`` has no ``class_gate_weights`` (newer runs store the mean over
    every test shape). Needs the run's dataset.

    Raises:
        CheckpointError: a damaged run folder. DatasetError: the dataset is not available.
    """
    from clip2point.datasets import open_dataset
    from clip2point.fewshot import FewShotConfig, load_adapter, read_run_config, stratified_head

    fcfg = FewShotConfig.from_dict(read_run_config(run_dir)["fewshot"])
    clf = load_adapter(run_dir, backbone)
    ds = open_dataset(fcfg.dataset, fcfg.data_dir, "test", num_points=fcfg.num_points, up=fcfg.up)
    idx = stratified_head(ds.labels, per_class * len(np.unique(ds.labels)))
    pts = torch.stack([ds[int(i)][0] for i in idx])
    gates = clf.predict(pts).gate.numpy()
    labels = ds.labels[idx]
    return {ds.class_names[c]: gates[labels == c].mean(axis=0) for c in np.unique(labels)}
