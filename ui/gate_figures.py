"""Figures of few-shot runs: training curves and the per-view gate of the Gated Dual-Path Adapter.

The two GDPA paths are named the same way everywhere (:func:`path_names`): path A is the
CLIP2Point depth encoder, path B is CLIP's image tower (CLIP2Point §3.3). Without a depth encoder
both paths are CLIP (``paths`` "clip+clip") and the gate has nothing to choose between
(:data:`CLIP_CLIP_NOTE`). Gate bars start at α = 0.5 (an even split) and say their value.

* :func:`training_curves_figure` — loss and accuracies per epoch (whole-epoch axis).
* :func:`gate_weights_figure` — per-view gate α with the view importances.
* :func:`gate_views_figure` — per-view gate α over a set of shapes and for one shape, with thumbnails.
* :func:`class_gate_figure` — mean α per class and view on a fixed scale centred at 0.5, values shown.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from ui.figures import ACCENT, MUTED, PRIMARY, PRIMARY_LIGHT, base_layout, escape

__all__ = ["training_curves_figure", "gate_weights_figure", "gate_views_figure", "class_gate_figure", "path_names",
           "gate_axis_title", "CLIP_CLIP_NOTE", "epoch_axis"]

#: What the gate means without a depth encoder (app, widgets, notebook 03).
CLIP_CLIP_NOTE = ("No depth encoder is loaded, so both GDPA paths are CLIP (paths clip+clip): path A and path B "
                  "see the same features and the gate has nothing to choose between (α stays near 0.5 and means "
                  "nothing). Load a CLIP2Point depth encoder (best_eval.pth) to make path A the depth encoder.")


def path_names(paths: str) -> tuple[str, str]:
    """(path A, path B) for a run's ``paths``: ("CLIP2Point depth encoder", "CLIP") with a depth
    encoder, ("CLIP (no depth encoder)", "CLIP") for "clip+clip"."""
    return ("CLIP2Point depth encoder", "CLIP") if paths == "depth+clip" else ("CLIP (no depth encoder)", "CLIP")


def gate_axis_title(paths: str) -> str:
    """The y-axis title of gate bars: α is path A's share."""
    a, b = path_names(paths)
    return f"α = share of path A ({a})<br>↑ more A · 0.5 even · ↓ more B ({b})"


def epoch_axis(epochs: Sequence[int]) -> dict:
    """A plotly x-axis of whole epochs (no 1.5): ticks every 1, 2, 5, 10, … epochs."""
    n = max([int(e) for e in epochs] or [1])
    step = next(s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000, 10**9) if n / s <= 10)
    return dict(title="epoch", tickmode="linear", tick0=0 if step > 1 else 1, dtick=step, tickformat="d",
                range=[0.5, n + 0.5])


def training_curves_figure(history: Sequence[dict], title: str = "", height: int = 300) -> go.Figure:
    """Train loss (left axis) and train/validation accuracy (right axis) per epoch."""
    fig = go.Figure()
    ep = [int(h["epoch"]) for h in history]
    if history:
        fig.add_trace(go.Scatter(x=ep, y=[h["train_loss"] for h in history], name="train loss", mode="lines+markers",
                                 line=dict(color=ACCENT)))
        fig.add_trace(go.Scatter(x=ep, y=[h["train_acc"] for h in history], name="train acc", yaxis="y2",
                                 mode="lines+markers", line=dict(color=PRIMARY_LIGHT)))
        val = [h.get("val_acc") for h in history]
        if any(v is not None and v == v for v in val):
            fig.add_trace(go.Scatter(x=ep, y=val, name="val acc", yaxis="y2", mode="lines+markers",
                                     line=dict(color=PRIMARY, width=3)))
    else:
        fig.add_annotation(text="no epoch finished yet", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(
        height=height, margin=dict(l=50, r=50, t=36 if title else 10, b=36), title=title or None,
        xaxis=epoch_axis(ep), yaxis=dict(title="loss"),
        yaxis2=dict(title="accuracy", overlaying="y", side="right", range=[0, 1.02], tickformat=".0%"),
        legend=dict(orientation="h", y=1.12), paper_bgcolor="rgba(0,0,0,0)",
    )
    return fig


def _centred_range(*values: Sequence[float] | None) -> list[float]:
    """A y-range centred at 0.5 that shows every α with room for its label (at least 0.5 ± 0.1)."""
    spread = max([abs(float(v) - 0.5) for vs in values if vs is not None for v in vs] or [0.0])
    half = min(0.5, max(0.1, math.ceil(spread * 1.35 / 0.05) * 0.05))
    return [0.5 - half, 0.5 + half]


def _gate_bar(names: list[str], gate: Sequence[float], name: str, color: str) -> go.Bar:
    """Bars of α from 0.5 (up: more path A, down: more path B), each labelled with its value."""
    vals = [float(g) for g in gate]
    return go.Bar(x=names, y=[v - 0.5 for v in vals], base=0.5, name=name, marker_color=color,
                  text=[f"{v:.3f}" for v in vals], textposition="outside", cliponaxis=False, customdata=vals,
                  hovertemplate="%{x}<br>α %{customdata:.4f}<extra>" + escape(name) + "</extra>")


def gate_weights_figure(gate: Sequence[float], labels: Sequence[str], importance: Sequence[float] | None = None,
                        paths: str = "clip+clip", height: int = 340) -> go.Figure:
    """Per-view gate α_v (share of path A) as bars from 0.5 with their values, with the view
    importances softmax(γ) as markers."""
    names = [f"{i + 1} · {lab}" for i, lab in enumerate(labels)]
    a, _b = path_names(paths)
    fig = go.Figure(_gate_bar(names, gate, f"α (share of path A: {a})", PRIMARY))
    if importance is not None:
        fig.add_trace(go.Scatter(x=names, y=list(importance), name="view importance softmax(γ)", yaxis="y2",
                                 mode="markers", marker=dict(color=ACCENT, size=10, symbol="diamond")))
    fig.add_hline(y=0.5, line=dict(color=MUTED, dash="dot"))
    fig.update_layout(
        height=height, margin=dict(l=70, r=50, t=10, b=90), yaxis=dict(title=gate_axis_title(paths),
                                                                       range=_centred_range(gate)),
        yaxis2=dict(title="importance", overlaying="y", side="right", rangemode="tozero"),
        xaxis=dict(tickangle=-35), legend=dict(orientation="h", y=1.12), paper_bgcolor="rgba(0,0,0,0)",
    )
    return fig


def gate_views_figure(labels: Sequence[str], mean_gate: Sequence[float] | None = None,
                      shape_gate: Sequence[float] | None = None, thumbnails: Sequence[str] = (),
                      mean_name: str = "test set (mean)", height: int = 360, paths: str = "clip+clip",
                      title: str = "") -> go.Figure:
    """Per-view gate α (share of path A) as grouped bars from 0.5, labelled with their values:
    averaged over a set of shapes (``mean_name``) and for one shape, one group per view labelled
    "elev …, azim …", with the view's depth thumbnail (``png_data_uri`` strings) above it."""
    names = [f"{i + 1} · {lab}" for i, lab in enumerate(str(lab) for lab in labels)]
    fig = go.Figure()
    if mean_gate is not None:
        fig.add_trace(_gate_bar(names, mean_gate, mean_name, PRIMARY))
    if shape_gate is not None:
        fig.add_trace(_gate_bar(names, shape_gate, "this shape", ACCENT))
    fig.add_hline(y=0.5, line=dict(color=MUTED, dash="dot"))
    images = [dict(source=src, xref="x", yref="paper", x=i, y=1.03, sizex=0.95, sizey=0.42, xanchor="center",
                   yanchor="bottom", layer="above", sizing="contain")
              for i, src in enumerate(thumbnails[: len(names)])]
    top = (120 if images else 20) + (24 if title else 0)
    fig.update_layout(
        **base_layout(height + (110 if images else 0), showlegend=True, margin=dict(l=80, r=10, t=top, b=110)),
        images=images, barmode="group", title=dict(text=escape(title), x=0.01, y=0.99, yanchor="top") if title else None,
        yaxis=dict(title=gate_axis_title(paths), range=_centred_range(mean_gate, shape_gate)),
        xaxis=dict(tickangle=-35, type="category"), legend=dict(orientation="h", y=-0.55 if images else -0.5),
    )
    return fig


def class_gate_figure(class_gate: dict[str, np.ndarray], paths: str = "clip+clip") -> go.Figure:
    """Mean α per class (rows) and view (columns) on the fixed scale [0, 1] centred at 0.5 (white:
    an even split), every cell labelled with its value: differences of 10⁻⁵ stay pale, not vivid."""
    names = list(class_gate)
    z = np.stack([np.asarray(class_gate[c], dtype=float) for c in names])
    a, b = path_names(paths)
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"{i + 1}" for i in range(z.shape[1])], y=names, zmin=0.0, zmax=1.0, zmid=0.5,
        colorscale=[[0.0, ACCENT], [0.5, "#ffffff"], [1.0, PRIMARY]], text=np.round(z, 3), texttemplate="%{text:.3f}",
        textfont=dict(size=9), colorbar=dict(title=dict(text="α", side="right"), thickness=10,
                                            tickvals=[0, 0.5, 1], ticktext=[f"0 · B ({b})", "0.5", f"1 · A ({a})"]),
        hovertemplate="%{y} · view %{x}: α %{z:.5f}<extra></extra>"))
    fig.update_layout(height=110 + 22 * len(names), margin=dict(l=10, r=10, t=50, b=30),
                      title=dict(text="mean gate α per class (rows) and view (columns) · fixed scale 0–1, white = 0.5",
                                 font=dict(size=13)),
                      xaxis=dict(title="view"), yaxis=dict(autorange="reversed"))
    return fig
