"""A session's state as the pictures every front end shows (one function per picture).

The Gradio app (:mod:`ui.tabs.zeroshot`) and the Jupyter widgets (:mod:`ui.widgets`) call these
same functions, so a zero-shot result looks the same in both:

* :func:`result_outputs` — a ``ZeroShotResult`` → (prediction card, probability bars, per-view
  logit heat-map); :func:`session_result_outputs` does it for a :class:`~ui.session.Session`'s
  latest result.
* :func:`shape_figure`, :func:`shape_info_html`, :func:`view_cards`, :func:`banner` — the
  current shape in 3-D with its cameras, its one-line summary, the per-view cards and the
  weights banner.
* :func:`view_logits_csv`, :func:`view_logits_json` — the per-view logits of a result as files
  (the prediction card carries them as download links); :func:`stale_prediction` — the card of a
  result that no longer matches the controls.

No UI toolkit here: plotly figures and HTML strings from :mod:`ui.figures`.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import plotly.graph_objects as go

from clip2point.prompts import describe_templates
from clip2point.render import get_view_set
from ui import figures
from ui.defaults import ENCODERS

if TYPE_CHECKING:
    from clip2point.zeroshot import ZeroShotResult
    from ui.session import Session

__all__ = ["ResultOutputs", "result_outputs", "session_result_outputs", "shape_figure", "shape_info_html",
           "view_cards", "banner", "COLOR_BY", "view_logits_csv", "view_logits_json", "export_links",
           "stale_prediction"]

#: The 3-D view's colourings: by height, or by the file's own colours (point clouds that store RGB).
COLOR_BY = ("height", "file colours")


class ResultOutputs(NamedTuple):
    """What a zero-shot result looks like: the prediction card (HTML), the top-k probability bars
    and the per-view × per-class logit heat-map (plotly figures)."""

    prediction: str
    bars: go.Figure
    heatmap: go.Figure


def view_logits_csv(result: ZeroShotResult, index: int = 0) -> str:
    """Shape ``index``'s per-view logits as CSV: one row per view (``view``, ``camera``, ``vote``,
    ``p_vote``: the vote's softmax probability within the view, then one column per class), then a
    ``mean`` row (the mean over views, whose argmax is the prediction) and a ``probability`` row."""
    vl = result.view_logits[index].float()
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["view", "camera", "vote", "p_vote", *result.classes])
    votes, vote_p = result.view_votes(index), result.view_vote_probs(index)
    for v, row in enumerate(vl.tolist()):
        label = result.view_labels[v] if v < len(result.view_labels) else ""
        w.writerow([v + 1, label, votes[v], f"{vote_p[v]:.6f}", *(f"{x:.6f}" for x in row)])
    w.writerow(["mean", "all views", result.predictions()[index], "", *(f"{x:.6f}" for x in vl.mean(0).tolist())])
    w.writerow(["probability", "softmax of the mean", "", "", *(f"{x:.6f}" for x in result.probs[index].tolist())])
    return out.getvalue()


def view_logits_json(result: ZeroShotResult, index: int = 0, **meta) -> str:
    """Shape ``index``'s result as JSON: ``meta`` (e.g. shape, templates, encoder, random_weights),
    the prediction, classes, probabilities, view labels, per-view logits (V × C), votes."""
    doc = {**meta, "prediction": result.predictions()[index], **result.as_dict(index),
           "view_votes": result.view_votes(index),
           "view_vote_probs": [round(p, 6) for p in result.view_vote_probs(index)]}
    return json.dumps(doc, indent=1, ensure_ascii=False)


def export_links(result: ZeroShotResult, stem: str = "view_logits", **meta) -> str:
    """CSV and JSON download links of the per-view logits (:func:`view_logits_csv`, :func:`view_logits_json`)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:60] or "view_logits"
    return figures.download_links_html([
        ("CSV", f"{safe}.csv", "text/csv", view_logits_csv(result)),
        ("JSON", f"{safe}.json", "application/json", view_logits_json(result, **meta)),
    ])


def result_outputs(result: ZeroShotResult, top_k: int = 5, true_label: str | None = None,
                   random_weights: bool = False, encoder: str = "", templates: Sequence[str] = (),
                   shape_name: str = "") -> ResultOutputs:
    """The prediction card, probability bars and logit heat-map of shape 0 of ``result``.

    Args:
        result: a ``ZeroShotResult`` (``probs`` (B, C), ``view_logits`` (B, V, C)); shape 0 is shown.
        top_k: classes in the bar chart. true_label: the shape's label, if known (marked ✓/✗).
        random_weights: warn that the scores are meaningless. encoder: which tower scored, in words.
        templates: the prompt template(s) used (named in the card and the JSON export).
        shape_name: the shape, for the export's file name and JSON.
    """
    top_class, top_prob = result.top(1)[0]
    meta = dict(shape=shape_name, templates=list(templates), encoder=encoder, random_weights=random_weights,
                true_label=true_label)
    stem = f"view_logits_{shape_name.split(' · ')[0]}" if shape_name else "view_logits"
    pred = figures.prediction_html(top_class, top_prob, result.view_logits.shape[1], len(result.classes), true_label,
                                   random_weights, encoder, result.view_votes(),
                                   describe_templates(templates) if templates else "", export_links(result, stem, **meta))
    bars = figures.probability_figure(result.classes, result.probs[0].numpy(), int(top_k), true_label)
    heat = figures.view_logit_heatmap(result.classes, result.view_logits[0].numpy(), result.view_labels,
                                      true_label=true_label)
    return ResultOutputs(pred, bars, heat)


def session_result_outputs(session: Session, top_k: int = 5) -> ResultOutputs:
    """:func:`result_outputs` of the session's latest result (true label, encoder, templates, shape
    and the random-weights warning from the session). The session must have scored (``session.result``)."""
    shape = session.shape
    truth = shape.true_label if shape is not None else None
    return result_outputs(session.result, top_k, truth, session.weights_status().is_random,
                          ENCODERS[session.encoder], session.templates, shape.name if shape is not None else "")


def stale_prediction(session: Session, reason: str) -> str:
    """The prediction card of the session's latest result, greyed, under a note saying why it is out
    of date and what to do (an empty placeholder when there is no result)."""
    if session.result is None:
        return figures.empty_html(reason)
    return figures.stale_html(session_result_outputs(session).prediction, reason)


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
                                   len(views) if views is not None else None, seconds, shape.note, shape.turns)


def view_cards(session: Session, votes: bool = True) -> str:
    """Per view, the depth map beside the CLIP image view, with each view's vote once scored
    (``votes=False``: without them, e.g. when the scores failed or are out of date)."""
    views, result = session.views, session.result if votes else None
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
