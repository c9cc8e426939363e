"""Jupyter widgets (ipywidgets 8) over the same logic as the Gradio app.

Every widget drives :mod:`ui.session` (shapes, views, cached view features, scores),
:mod:`ui.results` (the same pictures of a session as the app's), :mod:`ui.runs` (background
few-shot runs) and :mod:`ui.adapters` (finished runs); nothing here loads, renders or scores on
its own.

* :class:`ShapeExplorer` — a file (upload or path) or an example → depth views beside the CLIP
  image views of the same cameras, and an interactive 3-D view with the cameras marked.
* :class:`ZeroShotPanel` — class names / template → probability bars and the per-view logit
  heat-map, re-scored on every edit from the session's cached view features (no re-render).
* :class:`FewShotPanel` — a GDPA few-shot run with Start/Stop, a progress bar and live curves.
* :class:`GateViewer` — per-view gate weights of a finished run, with view thumbnails, and
  per-class averages.
* :func:`explore` — :class:`ShapeExplorer` + :class:`ZeroShotPanel` in one box.

Each class exposes ``.widget`` (display it) and plain methods/attributes (``update()``,
``score()``, ``result``, ``prob_figure``, ...) so it can be driven and tested headless.

Plotly figures are shown in ``Output`` widgets as ``application/vnd.plotly.v1+json`` (rendered by
JupyterLab/Notebook 7 with the plotly extension that ships with plotly; no anywidget needed) with
an HTML fallback.
"""
from __future__ import annotations

from ui.gate_figures import gate_weights_figure, training_curves_figure
from ui.widgets.common import default_spec, show_figure
from ui.widgets.fewshot import FewShotPanel, GateViewer
from ui.widgets.zeroshot import FILE_CHOICE, ShapeExplorer, ZeroShotPanel, explore

__all__ = [
    "ShapeExplorer", "ZeroShotPanel", "FewShotPanel", "GateViewer", "explore", "default_spec",
    "training_curves_figure", "gate_weights_figure", "show_figure", "FILE_CHOICE",
]
