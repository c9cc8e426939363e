"""Figures and HTML fragments of the clip2point app (plotly + plain HTML, no UI toolkit).

* :func:`point_cloud_figure` — interactive 3-D scatter of the classified points (unit sphere,
  y-up) with the V cameras of the view set marked around it.
* :func:`probability_figure` — top-k class probabilities (horizontal bars).
* :func:`view_logit_heatmap` — per-view × per-class logits with each view's winning class
  starred, and a "mean over views" row that is what the prediction is made from.
* :func:`view_cards_html` — per view, the depth map (CLIP's input) beside the CLIP image view
  from the same camera, labelled with elevation/azimuth and, once scored, the view's vote.
* :func:`banner_html`, :func:`prediction_html`, :func:`shape_info_html`, :func:`message_html`.

HTML uses the class names styled by :data:`CSS` and the host page's CSS variables (so it
follows a light or dark theme); a notebook front end can inject :data:`CSS` once.
"""
from __future__ import annotations

import base64
import html
import io
from collections import Counter
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from clip2point.errors import Clip2PointError
from clip2point.io import normalize_unit_sphere

__all__ = [
    "CSS", "PRIMARY", "PRIMARY_LIGHT", "escape", "point_cloud_figure", "probability_figure", "view_logit_heatmap", "placeholder_figure",
    "view_cards_html", "banner_html", "weights_banner_html", "prediction_html", "shape_info_html", "message_html", "png_data_uri",
    "view_directions", "empty_html", "base_layout", "ACCENT", "MUTED", "download_links_html", "stale_html",
    "class_count",
]

PRIMARY = "#4f46e5"
PRIMARY_LIGHT = "#a5b4fc"
ACCENT = "#f59e0b"
GOOD = "#059669"
BAD = "#dc2626"
MUTED = "#64748b"
_FONT = dict(family="Inter, ui-sans-serif, system-ui, -apple-system, 'Segoe UI', sans-serif", size=12, color=MUTED)

#: Styles of the HTML fragments below (light and dark themes via the page's CSS variables).
CSS = """
.c2p-banner {display:flex; flex-wrap:wrap; gap:.35rem .9rem; align-items:center; padding:.55rem .9rem;
  border-radius:10px; font-size:.92rem; border:1px solid; line-height:1.35}
.c2p-banner.ok {background:rgba(5,150,105,.08); border-color:rgba(5,150,105,.35)}
.c2p-banner.random {background:rgba(220,38,38,.08); border-color:rgba(220,38,38,.55)}
.c2p-banner .c2p-tag {font-weight:700; padding:.1rem .5rem; border-radius:999px; font-size:.8rem; letter-spacing:.02em}
.c2p-banner.ok .c2p-tag {background:#059669; color:#fff}
.c2p-banner.random .c2p-tag {background:#dc2626; color:#fff}
.c2p-banner.pending {background:rgba(217,119,6,.08); border-color:rgba(217,119,6,.45)}
.c2p-banner.pending .c2p-tag {background:#d97706; color:#fff}
.c2p-banner .c2p-random-text {color:#dc2626; font-weight:700}
.c2p-banner details {flex-basis:100%; font-size:.84rem; opacity:.9}
.c2p-banner summary {cursor:pointer; color:#dc2626}
.c2p-banner code {font-size:.8rem}
.c2p-kv {opacity:.75}
.c2p-cards {display:grid; grid-template-columns:repeat(auto-fill, minmax(268px, 1fr)); gap:.7rem}
.c2p-card {border:1px solid var(--border-color-primary, #e2e8f0); border-radius:10px; padding:.45rem .5rem .5rem;
  background:var(--block-background-fill, #fff)}
.c2p-card-head {display:flex; justify-content:space-between; align-items:baseline; font-size:.82rem; margin:0 .1rem .35rem}
.c2p-card-head b {font-size:.86rem}
.c2p-pair {display:grid; grid-template-columns:1fr 1fr; gap:.35rem}
.c2p-pair figure {margin:0; text-align:center}
.c2p-pair img {width:100%; aspect-ratio:1/1; border-radius:6px; border:1px solid var(--border-color-primary, #e2e8f0);
  background:#fff; image-rendering:auto; display:block}
.c2p-pair figcaption {font-size:.72rem; opacity:.7; margin-top:.15rem}
.c2p-vote {margin-top:.4rem; font-size:.78rem; display:flex; justify-content:space-between; gap:.4rem}
.c2p-pred {border-radius:10px; padding:.7rem .9rem; background:rgba(79,70,229,.07); border:1px solid rgba(79,70,229,.25)}
.c2p-pred .c2p-pred-label {font-size:.78rem; text-transform:uppercase; letter-spacing:.06em; opacity:.7}
.c2p-pred .c2p-pred-class {font-size:1.6rem; font-weight:750; line-height:1.15}
.c2p-pred .c2p-pred-prob {font-size:1.05rem; font-weight:600; color:#4f46e5; margin-left:.4rem}
.c2p-pred .c2p-pred-note {font-size:.78rem; opacity:.75; margin-top:.2rem}
.c2p-pred .c2p-true {font-weight:600}
.c2p-tally {margin-top:.45rem; font-size:.8rem; display:flex; flex-wrap:wrap; gap:.3rem; align-items:center}
.c2p-chip {padding:.05rem .5rem; border-radius:999px; background:rgba(79,70,229,.12); font-weight:600; font-size:.78rem}
.c2p-chip.win {background:#4f46e5; color:#fff}
.c2p-pred .c2p-true.ok {color:#059669} .c2p-pred .c2p-true.bad {color:#dc2626}
.c2p-info {font-size:.84rem; line-height:1.5}
.c2p-info b {font-weight:650}
.c2p-up-note {margin-top:.3rem; padding:.25rem .5rem; border-radius:6px; background:rgba(245,158,11,.12);
  border:1px solid rgba(245,158,11,.45); font-size:.8rem}
.c2p-msg {border-radius:8px; padding:.5rem .7rem; font-size:.86rem}
.c2p-msg.error {background:rgba(220,38,38,.08); border:1px solid rgba(220,38,38,.5); color:#b91c1c}
.c2p-msg.info {background:rgba(79,70,229,.06); border:1px solid rgba(79,70,229,.25)}
.c2p-zoom {aspect-ratio:1/1}
.c2p-zoom summary {list-style:none; cursor:zoom-in; display:block}
.c2p-zoom summary::-webkit-details-marker {display:none}
.c2p-zoom summary::marker {content:""}
.c2p-zoom[open] summary {position:fixed; inset:0; z-index:10000; display:flex; align-items:center; justify-content:center;
  background:rgba(15,23,42,.86); cursor:zoom-out}
.c2p-zoom[open] summary img {width:min(92vw, 92vh); height:auto; border:0; border-radius:8px}
.c2p-zoom[open] summary::after {content:attr(data-caption); position:fixed; bottom:1.2rem; left:0; right:0; text-align:center;
  color:#fff; font-size:.95rem}
.c2p-exports {margin-top:.45rem; font-size:.8rem; display:flex; gap:.5rem; align-items:center; flex-wrap:wrap}
.c2p-exports a {font-weight:600; color:#4f46e5 !important; text-decoration:underline}
.c2p-stale {opacity:.45; filter:grayscale(.7); transition:opacity .15s}
.c2p-stale-note {font-size:.8rem; font-weight:600; color:#b45309; background:rgba(245,158,11,.12);
  border:1px solid rgba(245,158,11,.45); border-radius:8px; padding:.3rem .6rem; margin-bottom:.4rem}
.c2p-pred.stale {opacity:.5; filter:grayscale(.7)}
.c2p-empty {padding:1.2rem; text-align:center; opacity:.6; font-size:.9rem; border:1px dashed var(--border-color-primary, #cbd5e1);
  border-radius:10px}
"""


# ----------------------------------------------------------------------------------------------
# helpers


def escape(text: object) -> str:
    """``text`` (anything, via ``str``) safe inside HTML text and attribute values (quotes escaped)."""
    return html.escape(str(text), quote=True)


def png_data_uri(image: np.ndarray) -> str:
    """A (H, W) grey or (H, W, 3) RGB image in [0, 1] (or uint8) as a PNG data URI."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=False, compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def view_directions(labels: Sequence[str] | None = None, elev: Sequence[float] = (), azim: Sequence[float] = ()) -> np.ndarray:
    """(V, 3) unit camera directions ``(cos e sin a, sin e, cos e cos a)`` (REFERENCE §2.3)."""
    e, a = np.radians(np.asarray(elev, dtype=float)), np.radians(np.asarray(azim, dtype=float))
    return np.stack([np.cos(e) * np.sin(a), np.sin(e), np.cos(e) * np.cos(a)], axis=-1)


def _unit_sphere(points: np.ndarray) -> np.ndarray:
    """(N, 3) points centred and scaled into the unit sphere for display (coincident points: the origin)."""
    try:
        return normalize_unit_sphere(points)
    except Clip2PointError:  # all points coincide: nothing to scale
        return np.zeros((len(points), 3), dtype=np.float32)


def base_layout(height: int, **kw) -> dict:
    layout = dict(
        height=height, margin=dict(l=8, r=8, t=8, b=8), paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)", font=_FONT, showlegend=False,
    )
    layout.update(kw)
    return layout


def placeholder_figure(message: str, height: int = 260) -> go.Figure:
    """An empty chart that says what is coming ("scoring…")."""
    fig = go.Figure()
    fig.add_annotation(text=escape(message), showarrow=False, font=dict(size=14, color=MUTED), x=0.5, y=0.5,
                       xref="paper", yref="paper")
    fig.update_layout(**base_layout(height), xaxis=dict(visible=False), yaxis=dict(visible=False))
    return fig


# ----------------------------------------------------------------------------------------------
# plotly figures


def point_cloud_figure(
    points: np.ndarray,
    colors: np.ndarray | None = None,
    color_by: str = "height",
    view_elev: Sequence[float] = (),
    view_azim: Sequence[float] = (),
    view_labels: Sequence[str] = (),
    height: int = 400,
    max_points: int = 8192,
) -> go.Figure:
    """Interactive 3-D scatter of (N, 3) y-up points, normalised to the unit sphere as rendered.

    Args:
        points: (N, 3) y-up points (any units).
        colors: optional (N, 3) colours in [0, 1], used when ``color_by == "colors"``.
        color_by: "height" (y) or "colors" (the file's colours; when it has none: height, and a note in red
            saying so, also in ``fig.layout.meta["note"]``).
        view_elev, view_azim, view_labels: the cameras to mark (numbered 1..V, as the views).
        height: figure height in pixels.
        max_points: points drawn at most (a seeded random subset beyond that).
    """
    p = _unit_sphere(points)
    if len(p) > max_points:
        keep = np.sort(np.random.default_rng(0).choice(len(p), max_points, replace=False))
        p, colors = p[keep], None if colors is None else np.asarray(colors)[keep]
    note = ""
    if color_by == "colors" and colors is not None:
        rgb = (np.clip(np.nan_to_num(np.asarray(colors, dtype=float)), 0, 1) * 255).round().astype(int)
        marker = dict(size=2.6, color=[f"rgb({r},{g},{b})" for r, g, b in rgb], opacity=0.95)
    else:
        if color_by == "colors":
            note = "this file stores no colours: coloured by height"
        marker = dict(size=2.6, color=p[:, 1], colorscale="Viridis", opacity=0.95,
                      colorbar=dict(title=dict(text="height", side="right"), thickness=10, len=0.55, x=0.98))
    fig = go.Figure(go.Scatter3d(
        x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers", marker=marker, name="points",
        hovertemplate="x %{x:.2f}<br>y %{y:.2f}<br>z %{z:.2f}<extra></extra>",
    ))
    axis = dict(range=[-1.9, 1.9], showbackground=False, showticklabels=False, gridcolor="rgba(148,163,184,.25)",
                zerolinecolor="rgba(148,163,184,.5)", showspikes=False)
    fig.update_layout(
        **base_layout(height, margin=dict(l=0, r=0, t=0, b=0)),
        scene=dict(
            xaxis=dict(axis, title=dict(text="")), yaxis=dict(axis, title=dict(text="")),
            zaxis=dict(axis, title=dict(text="")), aspectmode="manual", aspectratio=dict(x=1.5, y=1.5, z=1.5),
            camera=dict(up=dict(x=0, y=1, z=0), eye=dict(x=0.62, y=0.4, z=0.78), projection=dict(type="orthographic")),
        ),
        uirevision="points",
        meta=dict(note=note),
    )
    if len(view_elev):
        _add_cameras(fig, view_elev, view_azim, view_labels)
    if note:
        fig.add_annotation(text=escape(note), showarrow=False, x=0.01, y=0.99, xref="paper", yref="paper",
                           xanchor="left", yanchor="top", font=dict(size=12, color=BAD))
    return fig


def _add_cameras(fig: go.Figure, view_elev: Sequence[float], view_azim: Sequence[float],
                 view_labels: Sequence[str]) -> None:
    """The cameras (diamonds with short sight lines) and their numbers, set outward so none hides another."""
    d = view_directions(elev=view_elev, azim=view_azim) * 1.45
    labels = list(view_labels) or [f"elev {e:g}°, azim {a:g}°" for e, a in zip(view_elev, view_azim)]
    tips = d * 0.78  # short sight lines from each camera towards the object
    lx, ly, lz = [], [], []
    for (cx, cy, cz), (tx, ty, tz) in zip(d, tips):
        lx += [cx, tx, None]
        ly += [cy, ty, None]
        lz += [cz, tz, None]
    fig.add_trace(go.Scatter3d(x=lx, y=ly, z=lz, mode="lines", line=dict(color=ACCENT, width=3), hoverinfo="skip"))
    numbers = [str(i + 1) for i in range(len(d))]
    fig.add_trace(go.Scatter3d(
        x=d[:, 0], y=d[:, 1], z=d[:, 2], mode="markers", name="cameras", text=numbers,
        marker=dict(size=5, color=ACCENT, symbol="diamond", line=dict(color="#92400e", width=1)),
        customdata=labels, hovertemplate="view %{text}<br>%{customdata}<extra></extra>",
    ))
    t = d * (1.72 / 1.45)  # the numbers a little further out than the cameras, always drawn on top at one size
    fig.update_layout(scene_annotations=[
        dict(x=x, y=y, z=z, text=f"<b>{n}</b>", showarrow=False, font=dict(color="#b45309", size=13),
             bgcolor="rgba(255,255,255,.75)", borderpad=1)
        for (x, y, z), n in zip(t.tolist(), numbers)
    ])


def probability_figure(classes: Sequence[str], probs: Sequence[float], k: int = 5, true_label: str | None = None,
                       height: int | None = None) -> go.Figure:
    """Horizontal bars of the k most probable classes, most probable on top.

    The winner is drawn in the primary colour; the true label (dataset shapes) gets a green edge.
    """
    probs = np.asarray(probs, dtype=float)
    order = np.argsort(-probs, kind="stable")[: max(1, int(k))]
    names = [str(classes[i]) for i in order][::-1]
    vals = probs[order][::-1]
    colors = [PRIMARY_LIGHT] * (len(names) - 1) + [PRIMARY]
    edges = [GOOD if true_label is not None and n == true_label else "rgba(0,0,0,0)" for n in names]
    fig = go.Figure(go.Bar(
        x=vals, y=names, orientation="h", marker=dict(color=colors, line=dict(color=edges, width=2.5)),
        text=[f"{v:.1%}" for v in vals], textposition="outside", cliponaxis=False,
        hovertemplate="%{y}: %{x:.2%}<extra></extra>",
    ))
    fig.update_layout(
        **base_layout(height or 48 + 30 * len(names)),
        xaxis=dict(range=[0, max(0.05, float(vals.max()) * 1.22)], tickformat=".0%", gridcolor="rgba(148,163,184,.25)",
                   zeroline=False, title=None),
        yaxis=dict(automargin=True, tickfont=dict(size=13, color="#334155")),
        bargap=0.28,
    )
    return fig


def view_logit_heatmap(
    classes: Sequence[str],
    view_logits: np.ndarray,
    view_labels: Sequence[str],
    max_classes: int = 40,
    true_label: str | None = None,
) -> go.Figure:
    """Per-view × per-class logits (rows: views, columns: classes by overall score).

    Each view's winning class is starred; the top row is the mean over views, whose argmax is
    the prediction (CLIP2Point sums the per-view logits). With more than ``max_classes``
    classes, the best-scoring ones plus every view's winner are shown, and the title says so
    ("top 40 of 200 classes by mean logit").
    """
    vl = np.asarray(view_logits, dtype=float)  # (V, C)
    V, C = vl.shape
    mean = vl.mean(axis=0)
    order = np.argsort(-mean, kind="stable")
    note = ""
    if C > max_classes:
        keep = list(order[:max_classes])
        extra = [int(j) for j in dict.fromkeys(vl.argmax(axis=1)) if j not in keep]
        order = np.array(keep + extra)
        note = (f"top {max_classes} of {C} classes by mean logit" + (f" + {len(extra)} a view votes for" if extra else "")
                + " · all of them in the CSV/JSON export")
    names = [str(classes[j]) for j in order]
    rows = np.vstack([mean[None], vl])[:, order]
    ylabels = ["<b>mean of all views</b>"] + [f"{i + 1} · {lab}" for i, lab in enumerate(view_labels)]
    view_p = np.exp(rows - rows.max(axis=1, keepdims=True))
    view_p /= view_p.sum(axis=1, keepdims=True)
    fig = go.Figure(go.Heatmap(
        z=rows, x=names, y=ylabels, colorscale="Blues", customdata=view_p, xgap=1, ygap=1,
        colorbar=dict(title=dict(text="logit", side="right"), thickness=10),
        hovertemplate="%{y}<br>%{x}: logit %{z:.2f} (softmax in this row %{customdata:.1%})<extra></extra>",
    ))
    win = rows.argmax(axis=1)
    fig.add_trace(go.Scatter(
        x=[names[j] for j in win], y=ylabels, mode="markers",
        marker=dict(symbol="star", size=13, color=ACCENT, line=dict(color="#78350f", width=1)),
        hovertemplate="%{y}<br>votes for %{x}<extra></extra>",
    ))
    ticks = [f"<b>{n}</b>" if j == 0 else n for j, n in enumerate(names)]
    if true_label is not None and true_label in names:
        k = names.index(true_label)
        ticks[k] = f"<span style='color:{GOOD}'>{ticks[k]} (true)</span>"
    fig.update_layout(
        **base_layout(70 + 24 * (V + 1) + 8 * max(len(n) for n in names) // 2 + (26 if note else 0),
                      margin=dict(l=8, r=8, t=34 if note else 8, b=8)),
        xaxis=dict(tickangle=-45 if len(names) > 6 else 0, tickvals=names, ticktext=ticks, automargin=True, side="bottom"),
        yaxis=dict(autorange="reversed", automargin=True),
    )
    if note:
        fig.update_layout(title=dict(text=escape(note), x=0.01, xanchor="left", y=0.99, yanchor="top",
                                     font=dict(size=12, color=MUTED)))
    fig.add_hline(y=0.5, line=dict(color="#334155", width=1.5))
    return fig


# ----------------------------------------------------------------------------------------------
# HTML fragments


def _view_pngs(depth: np.ndarray, images: np.ndarray | None, cache: dict | None) -> list[tuple[str, str | None]]:
    if cache is not None and "png" in cache:
        return cache["png"]
    pngs = [
        (png_data_uri(depth[v]), None if images is None else png_data_uri(images[v]))
        for v in range(len(depth))
    ]
    if cache is not None:
        cache["png"] = pngs
    return pngs


def _zoomable(uri: str, alt: str, caption: str, full_caption: str) -> str:
    """A figure whose image opens full size on click (a ``<details>``: no script) and closes on a second click."""
    return (f'<figure><details class="c2p-zoom"><summary title="click to enlarge" data-caption="{escape(full_caption)}">'
            f'<img src="{uri}" alt="{escape(alt)}"></summary></details><figcaption>{escape(caption)}</figcaption></figure>')


def view_cards_html(
    depth: np.ndarray,
    images: np.ndarray | None,
    labels: Sequence[str],
    votes: Sequence[str] | None = None,
    vote_probs: Sequence[float] | None = None,
    prediction: str | None = None,
    cache: dict | None = None,
) -> str:
    """One card per view: depth map (CLIP input) | CLIP image view, labelled, with the view's vote
    and its softmax probability within the view; a click on an image shows it full size.

    Args:
        depth: (V, H, W) depth images in [0, 1].
        images: (V, H, W, 3) image views in [0, 1], or None.
        labels: "elev 0°, azim 90°" per view.
        votes, vote_probs: the winning class of each view and its softmax share within the view.
        prediction: the overall prediction (matching votes are highlighted).
        cache: a dict kept with the views, so PNGs are encoded once per render.
    """
    depth = np.asarray(depth)
    pngs = _view_pngs(depth, None if images is None else np.asarray(images), cache)
    cards = []
    for v, ((d_uri, i_uri), label) in enumerate(zip(pngs, labels)):
        elev, _, azim = str(label).partition(",")
        figs = [_zoomable(d_uri, f"depth view {v + 1}", "depth → CLIP", f"View {v + 1} · depth map (what CLIP reads) · {label}")]
        if i_uri is not None:
            figs.append(_zoomable(i_uri, f"image view {v + 1}", "CLIP image view",
                                  f"View {v + 1} · image view · {label}"))
        vote = ""
        if votes is not None:
            cls = "c2p-chip win" if prediction is not None and votes[v] == prediction else "c2p-chip"
            share = f"p = {vote_probs[v]:.0%} in this view" if vote_probs is not None else ""
            vote = f'<div class="c2p-vote"><span>votes <span class="{cls}">{escape(votes[v])}</span></span><span class="c2p-kv">{share}</span></div>'
        cards.append(
            f'<div class="c2p-card" data-view="{v + 1}"><div class="c2p-card-head"><b>View {v + 1}</b>'
            f'<span class="c2p-kv">{escape(elev.strip())} · {escape(azim.strip())}</span></div>'
            f'<div class="c2p-pair">{"".join(figs)}</div>{vote}</div>'
        )
    return f'<div class="c2p-cards" id="c2p-view-cards">{"".join(cards)}</div>'


def weights_banner_html(status) -> str:
    """:func:`banner_html` of a :class:`ui.session.WeightsStatus` (``Session.weights_status()``)."""
    st = status
    return banner_html(st.level, st.model_name, st.weights, st.encoder, st.device, st.detail, st.loaded,
                       st.precision_reason)


def banner_html(level: str, model_name: str, weights: str, encoder: str, device: str, detail: str = "",
                loaded: bool = True, precision: str = "") -> str:
    """The weights banner: backbone, weights, encoder, device and precision (with why, in one
    phrase: ``precision`` is ``resolve_precision``'s reason); red and explicit for random weights."""
    state = "" if loaded else ' <span class="c2p-kv">(loads on first use)</span>'
    parts = [
        f'<span><b>Backbone</b> {escape(model_name)}{state}</span>',
        f'<span><b>Weights</b> {escape(weights)}</span>',
        f'<span><b>Depth views encoded by</b> {escape(encoder)}</span>',
        f'<span class="c2p-kv">device {escape(device)}</span>',
    ]
    if precision:  # "bf16 (auto): this CPU has native bf16 …" → "Precision bf16 (auto) — this CPU has …"
        name, _, why = precision.partition(": ")
        why = f' <span class="c2p-kv">— {escape(why)}</span>' if why else ""
        parts.append(f'<span id="c2p-precision"><b>Precision</b> {escape(name)}{why}</span>')
    if level == "random":
        tag = '<span class="c2p-tag">RANDOM WEIGHTS</span>'
        parts.insert(0, tag + '<span class="c2p-random-text">random — scores meaningless</span>')
        parts.append(f"<details><summary>Why, and how to get real weights</summary><code>{escape(detail)}</code></details>")
    elif level == "pending":  # nothing local yet; the first load tries a download (random if that fails)
        parts.insert(0, '<span class="c2p-tag">WEIGHTS NOT LOADED YET</span>')
        if detail:
            parts.append(f"<details><summary>What was looked for</summary><code>{escape(detail)}</code></details>")
    else:
        parts.insert(0, '<span class="c2p-tag">PRETRAINED</span>')
    kind = level if level in ("random", "pending") else "ok"
    return f'<div class="c2p-banner {kind}" id="c2p-banner">{"".join(parts)}</div>'


def prediction_html(prediction: str, prob: float, num_views: int, num_classes: int, true_label: str | None = None,
                    random_weights: bool = False, encoder: str = "", votes: Sequence[str] | None = None,
                    prompt: str = "", extra: str = "") -> str:
    """The headline: predicted class, its probability, the views' votes, the true label when known.

    ``prompt``: the template(s) in words; ``extra``: HTML appended inside the card (export links).
    """
    tally = ""
    if votes:
        counts = Counter(votes).most_common()
        chips = " ".join(
            f'<span class="c2p-chip{" win" if c == prediction else ""}">{escape(c)} {n}</span>' for c, n in counts
        )
        tally = f'<div class="c2p-tally"><span class="c2p-kv">votes of the {len(votes)} views</span> {chips}</div>'
    truth = ""
    if true_label is not None:
        ok = true_label == prediction
        truth = f' · true label <span class="c2p-true {"ok" if ok else "bad"}">{escape(true_label)} {"✓" if ok else "✗"}</span>'
    warn = ' · <span class="c2p-random-text" style="color:#dc2626;font-weight:700">random weights: meaningless</span>' if random_weights else ""
    return (
        f'<div class="c2p-pred" id="c2p-prediction"><div class="c2p-pred-label">zero-shot prediction</div>'
        f'<div><span class="c2p-pred-class">{escape(prediction)}</span><span class="c2p-pred-prob">{prob:.1%}</span></div>'
        f'<div class="c2p-pred-note">{class_count(num_classes)} · sum of {num_views} per-view logits'
        f'{" · " + escape(encoder) if encoder else ""}{" · prompt " + escape(prompt) if prompt else ""}{truth}{warn}</div>'
        f'{tally}{extra}</div>'
    )


def shape_info_html(name: str, kind: str, num_points: int, num_input: int, up: str, num_views: int | None = None,
                    seconds: dict[str, float] | None = None, note: str = "", turns: Sequence[str] = ()) -> str:
    """One compact paragraph about the current shape and how long each step took; ``note`` (how it
    was read, e.g. why the up axis is z) on a line of its own; ``turns``: the 90° turns applied."""
    what = "mesh, surface-sampled" if kind == "mesh" else "point cloud"
    of = f"{num_input:,} vertices" if kind == "mesh" else f"{num_input:,} points"
    times = ""
    if seconds:
        times = " · " + " · ".join(f"{k} {v * 1000:.0f} ms" for k, v in seconds.items())
    views = f" · {num_views} views" if num_views else ""
    turned = f" · turned 90° about {', '.join(turns)}" if turns else ""
    remark = f'<div class="c2p-up-note" id="c2p-up-note">{escape(note)}</div>' if note else ""
    return (
        f'<div class="c2p-info" id="c2p-shape-info"><b>{escape(name)}</b><br>{what} · {num_points:,} points classified '
        f'(file: {of}) · up axis {escape(up)}{escape(turned)}{views}<span class="c2p-kv">{escape(times)}</span>{remark}</div>'
    )


def message_html(text: str, kind: str = "info") -> str:
    """A status message ("error" in red)."""
    icon = "⚠ " if kind == "error" else ""
    return f'<div class="c2p-msg {escape(kind)}" id="c2p-status-{escape(kind)}">{icon}{escape(text)}</div>'


def empty_html(text: str) -> str:
    """A dashed placeholder box."""
    return f'<div class="c2p-empty">{escape(text)}</div>'


def class_count(n: int) -> str:
    """"1 class", "40 classes"."""
    return f"{n:,} class" if n == 1 else f"{n:,} classes"


def download_links_html(files: Sequence[tuple[str, str, str, str]], title: str = "export per-view logits") -> str:
    """Download links carried in the page itself (``data:`` URIs; no server file, works in Jupyter too).

    ``files``: (link text, file name, MIME type, file content) each.
    """
    links = " · ".join(
        f'<a download="{escape(name)}" href="data:{escape(mime)};charset=utf-8;base64,'
        f'{base64.b64encode(text.encode("utf-8")).decode("ascii")}" data-file="{escape(name)}">{escape(label)}</a>'
        for label, name, mime, text in files
    )
    return f'<div class="c2p-exports"><span class="c2p-kv">⬇ {escape(title)}</span> {links}</div>'


def stale_html(card: str, reason: str) -> str:
    """A result card marked out of date: a note saying why and what to do, the old card greyed."""
    card = card.replace('class="c2p-pred"', 'class="c2p-pred stale"', 1)
    return f'<div class="c2p-stale-note" id="c2p-stale">⟳ {escape(reason)}</div>{card}'
