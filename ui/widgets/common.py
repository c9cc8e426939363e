"""What the Jupyter widgets share: the backbone spec (model, weights, device, precision), showing a plotly figure, the CSS."""
from __future__ import annotations

import json
from dataclasses import replace

import ipywidgets as W
import plotly.graph_objects as go
import plotly.io as pio

from ui import figures
from ui.defaults import DEFAULT_MODEL, DEFAULT_PRECISION
from ui.registry import ModelSpec

__all__ = ["default_spec", "widget_spec", "show_figure", "css", "CSS_HTML"]

#: The app's CSS (and the gate bars'), injected once per widget.
CSS_HTML = f"<style>{figures.CSS}\n.c2p-gate-bar{{height:.5rem;border-radius:4px;background:{figures.PRIMARY}}}</style>"


def default_spec(model: str | None = None, weights: str | None = None, device: str = "auto",
                 precision: str | None = None) -> ModelSpec:
    """A :class:`ModelSpec` (ViT-B-32 with whatever weights are found, random as the fallback).

    ``precision``: "fp32", "bf16" or "auto" (None: the library's default, :data:`ui.defaults.DEFAULT_PRECISION`).
    """
    return ModelSpec(model or DEFAULT_MODEL, weights, device, precision=precision or DEFAULT_PRECISION)


def widget_spec(spec: ModelSpec | None, precision: str | None = None) -> ModelSpec:
    """A widget's backbone: ``spec`` (default :func:`default_spec`) with ``precision`` when one is given.

    Raises:
        Clip2PointError: an unknown precision name.
    """
    spec = spec or default_spec()
    return spec if precision is None else replace(spec, precision=precision)


def show_figure(out: W.Output, fig: go.Figure | None) -> None:
    """Replace ``out``'s content by a plotly figure (plotly mime bundle + HTML fallback)."""
    if fig is None:
        out.outputs = ()
        return
    data = json.loads(pio.to_json(fig, validate=False))
    data["config"] = {"displaylogo": False, "responsive": True}
    bundle = {
        "application/vnd.plotly.v1+json": data,
        "text/html": fig.to_html(include_plotlyjs="cdn", full_html=False, config=data["config"]),
        "text/plain": f"<plotly figure: {len(fig.data)} traces>",
    }
    out.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)


def css() -> W.HTML:
    """An invisible ``HTML`` widget carrying :data:`CSS_HTML` (put one in each widget's box)."""
    return W.HTML(CSS_HTML, layout=W.Layout(height="0px", margin="0"))
