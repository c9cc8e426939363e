"""A session's state as the pictures every front end shows (one function per picture).

The Gradio app (:mod:`ui.tabs.zeroshot`) and the Jupyter widgets (:mod:`ui.widgets`) call these
same functions, so a zero-shot result looks the same in both:

* :func:`result_outputs` — a ``ZeroShotResult`` → (prediction card, probability bars, per-view
  logit heat-map); :func:`session_result_outputs` does it for a :class:`~ui.session.Session`'s
  latest result.
* :func:`shape_figure`, :func:`shape_info_html`, :func:`view_cards`, :func:`banner` — the
  current shape in 3-D with its cameras, its one-line summary, the per-view cards and the
  weights banner.

No UI toolkit here: plotly figures and HTML strings from :mod:`ui.figures`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import plotly.graph_objects as go

from clip2point.render import get_view_set
from ui import figures
from ui.defaults import ENCODERS

if TYPE_CHECKING:
    from clip2point.zeroshot import ZeroShotResult
    from ui.session import Session

__all__ = ["ResultOutputs", "result_outputs", "session_result_outputs", "shape_figure", "shape_info_html",
           "view_cards", "banner", "COLOR_BY"]

#: The 3-D view's colourings: by height, or by the file's own colours (point clouds that store RGB).
COLOR_BY = ("height", "file colours")


class ResultOutputs(NamedTuple):
    """What a zero-shot result looks like: the prediction card (HTML), the top-k probability bars
    and the per-view × per-class logit heat-map (plotly figures)."""

    prediction: str
    bars: go.Figure
    heatmap: go.Figure


def result_outputs(result: ZeroShotResult, top_k: int = 5, true_label: str | None = None,
                   random_weights: bool = False, encoder: str = "") -> ResultOutputs:
    """The prediction card, probability bars and logit heat-map of shape 0 of ``result``.

    Args:
        result: a ``ZeroShotResult`` (``probs`` (B, C), ``view_logits`` (B, V, C)); shape 0 is shown.
        top_k: classes in the bar chart. true_label: the shape's label, if known (marked ✓/✗).
        random_weights: warn that the scores are meaningless. encoder: which tower scored, in words.
    """
    top_class, top_prob = result.top(1)[0]
    pred = figures.prediction_html(top_class, top_prob, result.view_logits.shape[1], len(result.classes), true_label,
                                   random_weights, encoder, result.view_votes())
    bars = figures.probability_figure(result.classes, result.probs[0].numpy(), int(top_k), true_label)
    heat = figures.view_logit_heatmap(result.classes, result.view_logits[0].numpy(), result.view_labels,
                                      true_label=true_label)
    return ResultOutputs(pred, bars, heat)


def session_result_outputs(session: Session, top_k: int = 5) -> ResultOutputs:
    """:func:`result_outputs` of the session's latest result (true label, encoder and the
    random-weights warning from the session). The session must have scored (``session.result``)."""
    shape = session.shape
    truth = shape.true_label if shape is not None else None
    return result_outputs(session.result, top_k, truth, session.weights_status().is_random,
                          ENCODERS[session.encoder])


def shape_figure(session: Session, color_by: str = "height") -> go.Figure | None:
    """The current shape's points in 3-D with the cameras of its views (None before a shape is
    loaded). ``color_by``: one of :data:`COLOR_BY`."""
    shape, views = session.shape, session.views
    if shape is None:
        return None
    elev, azim, labels = (), (), ()
    if views is not None:
        vs = get_view_set(views.view_set)
        elev, azim, labels = vs.elev, vs.azim, views.labels
    return figures.point_cloud_figure(shape.points, shape.colors, "colors" if color_by == "file colours" else "height",
                                      elev, azim, labels)


def shape_info_html(session: Session) -> str:
    """One line about the current shape (name, kind, points, up axis, views, step times); "" without one."""
    shape, views = session.shape, session.views
    if shape is None:
        return ""
    seconds = {"load": shape.seconds}
    if views is not None:
        seconds.update(views.seconds)
        seconds.update(session.seconds)
    return figures.shape_info_html(shape.name, shape.kind, len(shape.points), shape.num_input_points, shape.up,
                                   len(views) if views is not None else None, seconds)


def view_cards(session: Session) -> str:
    """Per view, the depth map beside the CLIP image view, with each view's vote once scored."""
    views, result = session.views, session.result
    if views is None:
        return figures.empty_html("Load a shape to see its depth maps and CLIP image views.")
    votes = probs = pred = None
    if result is not None:
        votes, probs = result.view_votes(), result.view_vote_probs()
        pred = result.predictions()[0]
    return figures.view_cards_html(views.depth.numpy(), views.images, views.labels, votes, probs, pred, views.cache)


def banner(session: Session) -> str:
    """The weights banner of the session's backbone (never loads the model)."""
    return figures.weights_banner_html(session.weights_status())
