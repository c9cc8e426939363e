"""Figures of few-shot runs: training curves and the per-view gate of the Gated Dual-Path Adapter.

* :func:`training_curves_figure` — loss and accuracies per epoch.
* :func:`gate_weights_figure` — per-view gate α with the view importances.
* :func:`gate_views_figure` — per-view gate α over a set of shapes and for one shape, with thumbnails.
"""
from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from ui.figures import ACCENT, MUTED, PRIMARY, PRIMARY_LIGHT, base_layout, escape

__all__ = ["training_curves_figure", "gate_weights_figure", "gate_views_figure"]


def training_curves_figure(history: Sequence[dict], title: str = "", height: int = 300) -> go.Figure:
    """Train loss (left axis) and train/validation accuracy (right axis) per epoch."""
    fig = go.Figure()
    if history:
        ep = [h["epoch"] for h in history]
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
        xaxis=dict(title="epoch"), yaxis=dict(title="loss"),
        yaxis2=dict(title="accuracy", overlaying="y", side="right", range=[0, 1.02], tickformat=".0%"),
        legend=dict(orientation="h", y=1.12), paper_bgcolor="rgba(0,0,0,0)",
    )
    return fig


def gate_weights_figure(gate: Sequence[float], labels: Sequence[str], importance: Sequence[float] | None = None,
                        paths: str = "clip+clip", height: int = 320) -> go.Figure:
    """Per-view gate α_v (share of path A) as bars, with the view importances softmax(γ) as markers."""
    names = [f"{i + 1} · {lab}" for i, lab in enumerate(labels)]
    path_a = "depth encoder" if paths == "depth+clip" else "path A (CLIP)"
    fig = go.Figure(go.Bar(x=names, y=list(gate), name=f"α (share of {path_a})", marker_color=PRIMARY,
                           hovertemplate="%{x}<br>α %{y:.3f}<extra></extra>"))
    if importance is not None:
        fig.add_trace(go.Scatter(x=names, y=list(importance), name="view importance softmax(γ)", yaxis="y2",
                                 mode="markers", marker=dict(color=ACCENT, size=10, symbol="diamond")))
    fig.add_hline(y=0.5, line=dict(color=MUTED, dash="dot"))
    fig.update_layout(
        height=height, margin=dict(l=50, r=50, t=10, b=90), yaxis=dict(title="gate α", range=[0, 1]),
        yaxis2=dict(title="importance", overlaying="y", side="right", rangemode="tozero"),
        xaxis=dict(tickangle=-35), legend=dict(orientation="h", y=1.12), paper_bgcolor="rgba(0,0,0,0)",
    )
    return fig


def gate_views_figure(labels: Sequence[str], mean_gate: Sequence[float] | None = None,
                      shape_gate: Sequence[float] | None = None, thumbnails: Sequence[str] = (),
                      mean_name: str = "test set (mean)", height: int = 360) -> go.Figure:
    """Per-view gate α (share of path A) as grouped bars: averaged over a set of shapes and for one
    shape, one group per view labelled "elev …, azim …", with the view's depth thumbnail
    (``png_data_uri`` strings) above it when given."""
    labels = [str(lab) for lab in labels]
    names = [f"{i + 1} · {lab}" for i, lab in enumerate(labels)]
    fig = go.Figure()
    if mean_gate is not None:
        fig.add_trace(go.Bar(x=names, y=[float(g) for g in mean_gate], name=mean_name, marker_color=PRIMARY,
                             hovertemplate="%{x}<br>α %{y:.3f}<extra>" + escape(mean_name) + "</extra>"))
    if shape_gate is not None:
        fig.add_trace(go.Bar(x=names, y=[float(g) for g in shape_gate], name="this shape", marker_color=ACCENT,
                             hovertemplate="%{x}<br>α %{y:.3f}<extra>this shape</extra>"))
    fig.add_hline(y=0.5, line=dict(color=MUTED, dash="dot"))
    images = [dict(source=src, xref="x", yref="paper", x=i, y=1.0, sizex=0.8, sizey=0.2, xanchor="center",
                   yanchor="bottom", layer="above", sizing="contain")
              for i, src in enumerate(thumbnails[: len(names)])]
    top = 90 if images else 30
    fig.update_layout(
        **base_layout(height + (60 if images else 0), showlegend=True, margin=dict(l=50, r=10, t=top, b=110)),
        images=images, barmode="group", yaxis=dict(title="gate α (share of path A)", range=[0, 1]),
        xaxis=dict(tickangle=-35, type="category"), legend=dict(orientation="h", y=-0.55 if images else -0.5),
    )
    return fig
