"""The Zero-shot tab: a shape → its depth views and CLIP image views → zero-shot scores.

Every loader runs in two chained events: the views first (shown at once), then the scores
(encoding can take seconds on a CPU). Re-scoring with other classes, template or top-k reuses the
session's cached view features. The ModelNet browser in the sidebar is :mod:`ui.tabs.browser`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from clip2point.errors import Clip2PointError
from clip2point.prompts import TEMPLATE_PRESETS, preset_of
from ui import figures, results
from ui.defaults import (
    DEFAULT_CLASS_SET,
    DEFAULT_EXAMPLE,
    DEFAULT_NUM_POINTS,
    DEFAULT_RADIUS,
    DEFAULT_TEMPLATE,
    DEFAULT_VIEWS,
    ENCODERS,
    UPLOAD_EXTENSIONS,
    VIEW_SET_NAMES,
)
from ui.session import Session
from ui.limits import parse_templates
from ui.loading import MULTI_SHAPE_EXTENSIONS
from ui.shapes import CLASS_PRESETS, TURN_AXES, ShapeSource, example_names, example_thumbnails, up_axis_hint
from ui.tabs import browser
from ui.tabs.api import API_ADDRESS_JS, api_note
from ui.tabs.common import AppContext, Dropdown, File, Number, Page, Radio, Slider, progress_adapter, section, show_error

__all__ = ["ZeroShotTab", "ZeroShotHandlers", "build_zeroshot_tab", "wire_zeroshot", "VIEW_OUTPUTS", "SCORE_OUTPUTS"]

#: How many outputs the views step and the scores step have (handlers skip the rest on errors).
VIEW_OUTPUTS = 10
SCORE_OUTPUTS = 8
#: The preset entries that mean "what the text box says" (edited by hand).
CUSTOM = "custom"
#: Class-set presets offered in the page.
PRESET_CHOICES = [("ModelNet40 (40)", "modelnet40"), ("ModelNet10 (10)", "modelnet10"),
                  ("ScanObjectNN (15)", "scanobjectnn"), ("The 14 examples", "examples"),
                  ("custom (the text below)", CUSTOM)]
#: Prompt-template presets (``clip2point.prompts.TEMPLATE_PRESETS``): one template or an ensemble.
TEMPLATE_CHOICES = [(f"{name} · {len(t)} template{'s' if len(t) > 1 else ''}", name) for name, t in TEMPLATE_PRESETS.items()] \
    + [("custom (the text below)", CUSTOM)]
#: The page's header of this tab.
HEADER = """<div class="c2p-tab-header" id="c2p-zs-header"><h2>Zero-shot classification, every step visible</h2>
<p>Points → multi-view depth maps → CLIP features → per-view logits → prediction. Pick or upload a shape,
edit the classes and the prompt, and see what each view votes for.</p></div>"""
#: What the result says when the controls changed since it was computed.
STALE = "classes or prompt edited: this result is out of date; press Score these classes (or Enter) to update"


@dataclass
class ZeroShotTab:
    """The tab's components (the page-wide ones are in :attr:`page`)."""

    page: Page
    gallery: gr.Gallery
    example: gr.Dropdown
    upload: gr.File
    shape_index: gr.Number
    browser: browser.BrowserSection | None
    up: gr.Radio
    turns: list
    views: gr.Radio
    num_points: gr.Slider
    radius: gr.Slider
    color_by: gr.Radio
    preset: gr.Dropdown
    classes: gr.Textbox
    template_preset: gr.Dropdown
    template: gr.Textbox
    top_k: gr.Slider
    score_btn: gr.Button
    encoder: gr.Radio
    depth_file: gr.File
    plot3d: gr.Plot
    info: gr.HTML
    prediction: gr.HTML
    bars: gr.Plot
    cards: gr.HTML
    heatmap: gr.Plot
    api_help: gr.Markdown
    api_address: gr.Textbox

    @property
    def render_settings(self) -> list:
        return [self.up, self.num_points, self.views, self.radius, self.color_by]

    @property
    def view_outs(self) -> list:
        p = self.page
        return [p.state, p.status, self.info, self.plot3d, self.cards, self.prediction, self.bars, self.heatmap,
                p.banner, self.up]

    @property
    def score_inputs(self) -> list:
        return [self.page.state, self.classes, self.template, self.top_k]

    @property
    def score_outs(self) -> list:
        p = self.page
        return [p.state, p.status, self.prediction, self.bars, self.heatmap, self.cards, p.banner, self.info]


# ----------------------------------------------------------------------------------------------
# handlers


class ZeroShotHandlers:
    """The tab's event handlers (one browser tab's :class:`Session` is their first input and output)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.names = example_names()

    # ------------------------------------------------------------ step 1: shape → views
    def show_views(self, session: Session | None, source: ShapeSource | None, up: str | None, num_points: int,
                   views: str, radius: float, color_by: str, progress: gr.Progress, set_up: bool = False,
                   hint: bool = False, turn: str | None = None) -> tuple:
        """Load (if ``source``) and render; returns the view outputs (scores follow in a chained event).

        Splitting the views from the scores puts the views on screen while the encoder runs
        (a single streaming event would keep its progress overlay on every output until the end).
        ``set_up``: show the up axis the shape was read with in the up-axis control. ``hint``: an
        upload: choose its up axis from the file type (:func:`ui.shapes.up_axis_hint`), note why, and
        suggest z for a shape flat along y. ``turn``: turn the current shape 90° about this axis first.
        """
        limits = self.ctx.limits
        session = self.ctx.new_session(session)
        try:
            progress(0.0, desc="reading the shape…")
            views, radius = limits.check_views(views), limits.check_radius(radius)  # before any work
            if turn is not None:
                session.turn(turn)
            if source is not None:
                note = ""
                if hint:
                    up, note = up_axis_hint(source.path)
                shape = session.load(source, limits.check_num_points(num_points), up)
                shape.note = note or (up_axis_hint(source.path, shape.points, shape.up)[1] if hint else "")
            progress(0.3, desc=f"rendering {views} views…")
            session.render(views, radius)
        except Exception as err:  # noqa: BLE001 - shown to the user, the app keeps running
            return self.views_error(session, show_error(err, "loading a shape"))
        if session.scores_due:  # no stale scores beside new views
            n = len(session.views)
            waiting = figures.message_html(f"Encoding {n} views and scoring…", "info")
            bars = figures.placeholder_figure(f"encoding {n} views…", 200)
            heat = figures.placeholder_figure("per-view logits follow", 200)
        else:  # same views as before (render cache hit): their scores stay
            waiting = bars = heat = gr.skip()
        up_value = session.shape.up if set_up else gr.skip()
        return (session, "", results.shape_info_html(session), results.shape_figure(session, color_by),
                results.view_cards(session), waiting, bars, heat, results.banner(session), up_value)

    def views_error(self, session: Session | None, status: str) -> tuple:
        """The view outputs of a refused request: the session and the status line, nothing else changes."""
        return (self.ctx.new_session(session), status) + (gr.skip(),) * (VIEW_OUTPUTS - 2)

    # ------------------------------------------------------------ step 2: views → scores
    def rescore(self, session: Session | None, classes: str, template: str, top_k: int, progress=gr.Progress()) -> tuple:
        """Encode the views (unless cached) and score them; new classes/template/top-k re-score from the cache."""
        session = self.ctx.new_session(session)
        if session.views is None:
            return session, figures.message_html("Load a shape first.", "info"), *(gr.skip(),) * 6
        try:
            top_k = self.ctx.limits.check_top_k(top_k)  # classes and template: checked by the session
            session.classify(classes, template, progress_adapter(progress))
            pred, bars, heat = results.session_result_outputs(session, top_k)
        except Exception as err:  # noqa: BLE001
            return self.scores_error(session, show_error(err, "scoring"))
        return (session, "", pred, bars, heat, results.view_cards(session), results.banner(session),
                results.shape_info_html(session))

    def scores_error(self, session: Session, status: str) -> tuple:
        """The score outputs of a failed scoring: every picture of the old result goes together (the
        prediction card, the bars, the heat-map and the views' votes), none left to mislead."""
        session.result = None
        gone = "no scores: fix the error above and score again"
        return (session, status, figures.empty_html("No scores — see the message above."),
                figures.placeholder_figure(gone, 200), figures.placeholder_figure(gone, 200),
                results.view_cards(session, votes=False), gr.skip(), gr.skip())

    def on_edit(self, session: Session | None, classes: str, template: str) -> tuple:
        """Classes or templates typed by hand: each preset shows the one the text matches (else
        "custom"), and the result is marked out of date (greyed, with a note) until it is re-scored.

        Marking instead of re-scoring on every keystroke: half-typed names would flash meaningless
        results and cost a text encoding each; Enter or "Score these classes" re-scores at once
        from the cached view features."""
        session = self.ctx.new_session(session)
        names = [c.strip() for c in str(classes).split(",") if c.strip()]
        preset = next((k for k, v in CLASS_PRESETS.items() if [c.lower() for c in v] == [n.lower() for n in names]), CUSTOM)
        try:
            tpl = preset_of(parse_templates(template)) or CUSTOM
        except Clip2PointError:
            tpl = CUSTOM
        same = session.result is not None and list(session.classes) == names and session.template == "\n".join(
            t.strip() for t in str(template).splitlines() if t.strip())
        pred = gr.skip() if session.result is None or same else results.stale_prediction(session, STALE)
        return preset, tpl, pred

    def on_template_preset(self, name: str):
        """The templates of a preset, one per line (``custom`` keeps the text box)."""
        return "\n".join(TEMPLATE_PRESETS[name]) if name in TEMPLATE_PRESETS else gr.skip()

    def scores_after_views(self, session: Session | None, classes: str, template: str, top_k: int,
                           progress=gr.Progress()) -> tuple:
        """The chained second step of every loader: scores, only if its views step succeeded."""
        session = self.ctx.new_session(session)
        if not session.scores_due:  # the views step failed (and said so): keep the page as it is
            return (session,) + (gr.skip(),) * (SCORE_OUTPUTS - 1)
        return self.rescore(session, classes, template, top_k, progress)

    # ------------------------------------------------------------ loaders (step 1 of each source)
    def on_start(self, session, up, n, views, radius, color_by, progress=gr.Progress()):
        return self.show_views(session, ShapeSource.example(DEFAULT_EXAMPLE), "y", n, views, radius, color_by,
                               progress, set_up=True)

    def on_upload(self, session, file, index, up, n, views, radius, color_by, progress=gr.Progress()):
        """A new upload: its up axis chosen from the file (and said why); the shape index counts only
        for multi-shape files."""
        if not file:
            return self.views_error(session, figures.message_html("No file received.", "error"))
        try:
            path = Path(file if isinstance(file, str) else getattr(file, "name", file))
            index = self.ctx.limits.check_shape_index(index) if path.suffix.lower() in MULTI_SHAPE_EXTENSIONS else 0
            source = ShapeSource.file(path, index, display=path.name)
        except Exception as err:  # noqa: BLE001
            return self.views_error(session, show_error(err, "upload"))
        return self.show_views(session, source, up, n, views, radius, color_by, progress, set_up=True, hint=True)

    def on_shape_index(self, session, file, index, up, n, views, radius, color_by, progress=gr.Progress()):
        """Another shape of the uploaded multi-shape file: reloaded and checked against its count."""
        if not file:
            return self.views_error(session, figures.message_html(
                "Upload a multi-shape file (.h5 / .npz / .npy) first; the shape index picks one of its shapes.", "info"))
        try:
            path = Path(file if isinstance(file, str) else getattr(file, "name", file))
            source = ShapeSource.file(path, self.ctx.limits.check_shape_index(index), display=path.name)
        except Exception as err:  # noqa: BLE001
            return self.views_error(session, show_error(err, "shape index"))
        return self.show_views(session, source, up, n, views, radius, color_by, progress)

    def on_turn(self, axis: str) -> Callable[..., tuple]:
        """The handler of one turn button (+90° about ``axis``, or "reset")."""
        def turn(session, up, n, views, radius, color_by, progress=gr.Progress()):
            session = self.ctx.new_session(session)
            if session.shape is None:
                return self.views_error(session, figures.message_html("Load a shape first.", "info"))
            return self.show_views(session, None, up, n, views, radius, color_by, progress, turn=axis)

        turn.__name__ = f"turn_{axis}"
        return turn

    def on_example_highlight(self, name):
        """The gallery's highlighted thumbnail follows the example dropdown."""
        return gr.update(selected_index=self.names.index(name)) if name in self.names else gr.skip()

    def on_example(self, session, name, up, n, views, radius, color_by, progress=gr.Progress()):
        try:
            source = ShapeSource.example(name)
        except Clip2PointError as err:
            return self.views_error(session, show_error(err, "example"))
        return self.show_views(session, source, "y", n, views, radius, color_by, progress, set_up=True)

    def on_gallery(self, evt: gr.SelectData):
        return self.names[evt.index] if evt is not None and 0 <= evt.index < len(self.names) else gr.skip()

    def on_reload(self, session, up, n, views, radius, color_by, progress=gr.Progress()):
        session = self.ctx.new_session(session)
        source = session.shape.source if session.shape is not None else ShapeSource.example(DEFAULT_EXAMPLE)
        return self.show_views(session, source, up, n, views, radius, color_by, progress)

    def on_rerender(self, session, up, n, views, radius, color_by, progress=gr.Progress()):
        session = self.ctx.new_session(session)
        source = None if session.shape is not None else ShapeSource.example(DEFAULT_EXAMPLE)
        return self.show_views(session, source, up, n, views, radius, color_by, progress)

    def on_color(self, session, color_by):
        """The 3-D view coloured by height or by the file's colours (a file without colours says so)."""
        session = self.ctx.new_session(session)
        if session.shape is None:
            return gr.skip(), gr.skip()
        status = ""
        if color_by == "file colours" and session.shape.colors is None:
            status = figures.message_html(f"{session.shape.name.split(' · ')[0]} stores no colours; the 3-D view "
                                          "stays coloured by height.", "info")
        return results.shape_figure(session, color_by), status

    def on_preset(self, preset):
        return ", ".join(CLASS_PRESETS[preset]) if preset in CLASS_PRESETS else gr.skip()

    # ------------------------------------------------------------ encoder
    def encoder_error(self, session: Session, status: str) -> tuple:
        """The outputs of a refused encoder change: status, banner and the encoder actually in use."""
        return (session, status, *(gr.skip(),) * 4, results.banner(session), gr.skip(), session.encoder)

    def on_encoder(self, session, encoder, classes, template, top_k, progress=gr.Progress()):
        session = self.ctx.new_session(session)
        try:
            session.set_encoder(encoder)
        except Clip2PointError as err:
            return self.encoder_error(session, show_error(err, "encoder"))
        return (*self.rescore(session, classes, template, top_k, progress), session.encoder)

    def on_depth_file(self, session, file, classes, template, top_k, progress=gr.Progress()):
        session = self.ctx.new_session(session)
        if not file:
            return self.encoder_error(session, "")
        try:
            progress(0.1, desc="loading the depth encoder…")
            try:
                handle = session.load_depth_encoder(str(file))
            except Clip2PointError as err:  # the upload's temporary path means nothing to the user: its name does
                raise type(err)(str(err).replace(str(file), Path(str(file)).name)) from None
            gr.Info(f"CLIP2Point depth encoder {handle.name} loaded; depth views are now encoded by it")
        except Exception as err:  # noqa: BLE001
            return self.encoder_error(session, show_error(err, "depth encoder upload"))
        return (*self.rescore(session, classes, template, top_k, progress), session.encoder)


# ----------------------------------------------------------------------------------------------
# layout


def build_zeroshot_tab(ctx: AppContext, page: Page) -> ZeroShotTab:
    """Lay the tab out (call inside ``gr.Tab``): its header, the sidebar of inputs, then the outputs."""
    gr.HTML(HEADER)
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=330, elem_id="c2p-sidebar"):
            shape = _shape_inputs(ctx)
            render = _render_inputs(ctx)
            scoring = _scoring_inputs(ctx)
        with gr.Column(scale=11, min_width=600):
            outputs = _outputs(ctx)
    return ZeroShotTab(page=page, **shape, **render, **scoring, **outputs)


def _shape_inputs(ctx: AppContext) -> dict[str, Any]:
    """1 · Shape: the example gallery, an upload, the ModelNet browser; then its orientation."""
    limits = ctx.limits
    section("1 · Shape")
    with gr.Tabs(elem_id="c2p-shape-tabs"):
        with gr.Tab("Examples", id="examples"):
            gallery = gr.Gallery(list(example_thumbnails()), columns=5, rows=3, height="auto", allow_preview=False,
                                 show_label=False, object_fit="contain", elem_id="c2p-examples",
                                 selected_index=example_names().index(DEFAULT_EXAMPLE))
            example = Dropdown(example_names(), value=DEFAULT_EXAMPLE, label="Example object", elem_id="example")
        with gr.Tab("Upload", id="upload"):
            upload = File(label="Drop a point cloud or mesh", file_types=list(UPLOAD_EXTENSIONS),
                             type="filepath", elem_id="upload")
            shape_index = Number(0, precision=0, minimum=0, maximum=limits.max_shape_index, elem_id="shape-index",
                                 label="Shape index (multi-shape .h5 / .npz / .npy; 0 = the first)")
            gr.HTML(f'<div class="c2p-footnote">Reads {" ".join(UPLOAD_EXTENSIONS)} · up to '
                    f'{limits.max_file_mb} MB · read within {limits.load_timeout_s:g} s and '
                    f'{limits.load_memory_mb:,} MiB · meshes are surface-sampled · .off / .h5 (ModelNet) are read '
                    'z-up</div>')
        with gr.Tab("ModelNet", id="dataset"):
            section_ = browser.build_browser(ctx)
    with gr.Group(elem_id="c2p-orientation"):
        up = Radio(["y", "z"], value="y", label="Up axis of the file", elem_id="up",
                   info="set from the file type on upload (ModelNet .off / .h5: z); a shape on its side: change it or turn it")
        with gr.Row(elem_id="c2p-turns"):
            gr.HTML('<span class="c2p-turn-label">Turn 90° about</span>', padding=False)
            turns = [gr.Button(f"{axis} ↻", size="sm", min_width=36, elem_id=f"turn-{axis}") for axis in TURN_AXES]
            turns.append(gr.Button("reset", size="sm", min_width=36, elem_id="turn-reset"))
    return dict(gallery=gallery, example=example, upload=upload, shape_index=shape_index, browser=section_,
                up=up, turns=turns)


def _render_inputs(ctx: AppContext) -> dict[str, Any]:
    """2 · Rendering: view set, points, splat radius, 3-D colouring."""
    limits = ctx.limits
    section("2 · Rendering")
    with gr.Group():
        views = Radio([(f"{v} · {VIEW_SET_NAMES.get(v, 'views')}", v) for v in limits.view_sets],
                      value=DEFAULT_VIEWS, label="View set", elem_id="views")
        num_points = Slider(256, limits.max_points, value=DEFAULT_NUM_POINTS, step=256,
                            label="Points (farthest point sampling)")
        radius = Slider(limits.min_radius, limits.max_radius, value=DEFAULT_RADIUS, step=0.0025,
                        label="Splat radius (NDC; 0.02 ≈ 2.2 px)")
        color_by = Radio(list(results.COLOR_BY), value="height", label="3-D view colour", elem_id="color-by",
                         info="file colours: point clouds that store RGB")
    return dict(views=views, num_points=num_points, radius=radius, color_by=color_by)


def _scoring_inputs(ctx: AppContext) -> dict[str, Any]:
    """3 · Classes & prompt (presets, one template or an ensemble), the score button, 4 · Encoder."""
    limits = ctx.limits
    section("3 · Classes &amp; prompt")
    with gr.Group():
        preset = Dropdown(PRESET_CHOICES, value=DEFAULT_CLASS_SET, label="Class set preset", elem_id="class-preset")
        classes = gr.Textbox(", ".join(CLASS_PRESETS[DEFAULT_CLASS_SET]), lines=3, max_lines=6,
                             max_length=limits.max_classes_chars, elem_id="classes",
                             label=f"Classes (comma-separated, editable; up to {limits.max_classes:,} "
                                   f"names of {limits.max_class_chars} characters)")
        template_preset = Dropdown(TEMPLATE_CHOICES, value=preset_of((DEFAULT_TEMPLATE,)) or CUSTOM,
                                   label="Prompt templates preset (several = an ensemble, averaged per class)",
                                   elem_id="template-preset")
        template = gr.Textbox(DEFAULT_TEMPLATE, label="Prompt template ({} = the class name; one per line)",
                              lines=1, max_lines=8, max_length=limits.max_templates_chars, elem_id="template")
        top_k = Slider(1, limits.max_top_k, value=min(5, limits.max_top_k), step=1,
                       label="Classes shown in the chart (top-k)")
    score_btn = gr.Button("Score these classes", variant="primary", elem_id="score")
    with gr.Accordion("4 · Encoder (CLIP or CLIP2Point depth encoder)", open=False):
        encoder = Radio([(v, k) for k, v in ENCODERS.items()], value=Session(ctx.spec, ctx.registry).encoder,
                        label="Depth views are encoded by")
        depth_file = File(label="CLIP2Point depth encoder file", elem_id="depth-file",
                             file_types=[".pth", ".pt", ".safetensors", ".bin"], type="filepath")
        gr.HTML('<div class="c2p-footnote">The authors\' best_eval.pth, or a .pth / .pt / .safetensors / .bin '
                'state dict of the visual tower</div>')
    return dict(preset=preset, classes=classes, template_preset=template_preset, template=template, top_k=top_k,
                score_btn=score_btn, encoder=encoder, depth_file=depth_file)


def _outputs(ctx: AppContext) -> dict[str, Any]:
    """The main area: points and cameras, the result, the view cards, the logit heat-map, the API note."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=6, min_width=360):
            section("Points and cameras")
            plot3d = gr.Plot(show_label=False, elem_id="points3d")
            info = gr.HTML("", elem_id="shape-info")
        with gr.Column(scale=5, min_width=320):
            section("Zero-shot result")
            prediction = gr.HTML(figures.empty_html("Scores appear here."), elem_id="prediction")
            bars = gr.Plot(show_label=False, elem_id="probabilities")
    section("Views: depth map CLIP reads · CLIP image view from the same camera · click an image to enlarge")
    cards = gr.HTML(figures.empty_html("Loading the example…"), elem_id="views")
    section("Per-view logits · ★ = the class each view votes for")
    heatmap = gr.Plot(show_label=False, elem_id="heatmap")
    with gr.Accordion("Use from Python (gradio_client) · API", open=False):
        api_help = gr.Markdown(api_note(ctx.limits), elem_id="api-note")
        api_address = gr.Textbox(visible=False)
    return dict(plot3d=plot3d, info=info, prediction=prediction, bars=bars, cards=cards, heatmap=heatmap,
                api_help=api_help, api_address=api_address)


# ----------------------------------------------------------------------------------------------
# wiring


def wire_zeroshot(demo: gr.Blocks, tab: ZeroShotTab, h: ZeroShotHandlers, ctx: AppContext) -> Callable[..., Any]:
    """Connect the tab's events (API names are part of the app's interface: keep them).

    Returns the ``views_then_scores(event, fn, inputs, name)`` chain, for other loaders (the browser).
    """
    state, settings = tab.page.state, tab.render_settings
    heavy, scoring = ctx.heavy, ctx.scoring(tab.prediction)

    def views_then_scores(event, fn, inputs, name: str, **kw):
        """Step 1 (views, shown at once) chained to step 2 (scores), each with its API name."""
        return event(fn, inputs, tab.view_outs, api_name=name, **heavy, **kw).then(
            h.scores_after_views, tab.score_inputs, tab.score_outs, api_name=f"{name}_scores", **scoring)

    views_then_scores(demo.load, h.on_start, [state, *settings], "startup")
    demo.load(lambda address: api_note(ctx.limits, address), tab.api_address, tab.api_help, js=API_ADDRESS_JS,
              api_name="api_note", queue=False)
    views_then_scores(tab.upload.upload, h.on_upload, [state, tab.upload, tab.shape_index, *settings], "load_file")
    views_then_scores(tab.shape_index.input, h.on_shape_index, [state, tab.upload, tab.shape_index, *settings],
                      "set_shape_index", trigger_mode="always_last")
    picked = tab.gallery.select(h.on_gallery, None, tab.example, api_name="pick_example", queue=False)
    views_then_scores(picked.then, h.on_example, [state, tab.example, *settings], "load_picked_example")
    views_then_scores(tab.example.input, h.on_example, [state, tab.example, *settings], "load_example")
    tab.example.change(h.on_example_highlight, tab.example, tab.gallery, api_name="highlight_example", queue=False)
    views_then_scores(tab.up.input, h.on_reload, [state, *settings], "set_up_axis")
    for axis, button in zip((*TURN_AXES, "reset"), tab.turns):
        views_then_scores(button.click, h.on_turn(axis), [state, *settings], f"turn_{axis}")
    views_then_scores(tab.num_points.release, h.on_reload, [state, *settings], "set_num_points")
    views_then_scores(tab.views.input, h.on_rerender, [state, *settings], "set_view_set")
    views_then_scores(tab.radius.release, h.on_rerender, [state, *settings], "set_radius")
    tab.color_by.input(h.on_color, [state, tab.color_by], [tab.plot3d, tab.page.status], api_name="set_point_colours")
    _wire_scoring(tab, h, scoring)
    return views_then_scores


def _wire_scoring(tab: ZeroShotTab, h: ZeroShotHandlers, scoring: dict[str, Any]) -> None:
    """Presets re-score at once; typed classes or templates mark the result out of date until Enter
    or the Score button; top-k and the encoder re-score the current views."""
    inputs, outs = tab.score_inputs, tab.score_outs
    tab.preset.input(h.on_preset, tab.preset, tab.classes, api_name="pick_class_preset", queue=False).then(
        h.rescore, inputs, outs, api_name="score_preset", **scoring)
    tab.template_preset.input(h.on_template_preset, tab.template_preset, tab.template, api_name="pick_template_preset",
                              queue=False).then(h.rescore, inputs, outs, api_name="score_template_preset", **scoring)
    edited = [tab.page.state, tab.classes, tab.template]
    for box, name in ((tab.classes, "edit_classes"), (tab.template, "edit_template")):
        box.input(h.on_edit, edited, [tab.preset, tab.template_preset, tab.prediction], api_name=name, queue=False,
                  trigger_mode="always_last")
    tab.score_btn.click(h.rescore, inputs, outs, api_name="score", **scoring)
    tab.classes.submit(h.rescore, inputs, outs, api_name="set_classes", **scoring)
    tab.template.submit(h.rescore, inputs, outs, api_name="set_template", **scoring)
    tab.top_k.release(h.rescore, inputs, outs, api_name="set_top_k", **scoring)
    tab.encoder.input(h.on_encoder, [tab.page.state, tab.encoder, *inputs[1:]], [*outs, tab.encoder],
                      api_name="set_encoder", **scoring)
    tab.depth_file.upload(h.on_depth_file, [tab.page.state, tab.depth_file, *inputs[1:]], [*outs, tab.encoder],
                          api_name="load_depth_encoder", **scoring)
