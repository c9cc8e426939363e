"""Jupyter widgets of zero-shot classification: :class:`ShapeExplorer`, :class:`ZeroShotPanel`, :func:`explore`."""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import ipywidgets as W
import plotly.graph_objects as go

from clip2point.errors import Clip2PointError
from clip2point.prompts import TEMPLATE_PRESETS, preset_of
from clip2point.viewcache import ViewFeatureCache
from ui import figures, results
from ui.defaults import (DEFAULT_CLASS_SET, DEFAULT_EXAMPLE, DEFAULT_NUM_POINTS, DEFAULT_RADIUS, DEFAULT_TEMPLATE,
                         DEFAULT_VIEWS, ENCODERS, UPLOAD_EXTENSIONS, VIEW_SETS)
from ui.limits import parse_templates
from ui.registry import ModelSpec
from ui.session import Session
from ui.shapes import CLASS_PRESETS, ShapeSource, example_names
from ui.widgets.common import css, default_spec, show_figure, widget_spec

__all__ = ["ShapeExplorer", "ZeroShotPanel", "explore", "FILE_CHOICE"]

#: The source-dropdown entry that means "the path / upload fields".
FILE_CHOICE = "(file: path or upload)"


class ShapeExplorer:
    """Load a shape and look at what CLIP sees: depth views | CLIP image views | 3-D points.

    Args:
        spec: the backbone (only its input size is needed here; it is loaded by the first score).
        path: a file to start with (else the example ``example``).
        example: the example object to start with.
        session: share a :class:`Session` (e.g. with a :class:`ZeroShotPanel`); new one otherwise.
        auto: re-render on every control change (False: only on :meth:`update`).
        precision: the encoders' weights, "fp32", "bf16" or "auto" (None: ``spec``'s; the banner
            says what was chosen and why).
        cache: the persistent view-feature cache (a new session's): True (default) the shared
            registry's (``~/.cache/clip2point/views`` unless ``$CLIP2POINT_CACHE_DIR``), False none,
            or a ``ViewFeatureCache``; a shape encoded before (here, in the app, by the CLI) is read back.

    Attributes:
        session: the :class:`Session` (shape, views, cached features, result).
        widget: the ``VBox`` to display. cards, plot, info, message: its outputs.
        figure: the latest 3-D plotly figure. error: the latest error message or None.
    """

    def __init__(self, spec: ModelSpec | None = None, path: str | None = None, example: str = DEFAULT_EXAMPLE,
                 session: Session | None = None, auto: bool = True, precision: str | None = None,
                 cache: ViewFeatureCache | bool = True) -> None:
        self.session = session or Session(widget_spec(spec, precision), cache=cache)
        self.listeners: list[Callable[[], None]] = []
        self.error: str | None = None
        self.figure: go.Figure | None = None
        self._upload_path: str | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="c2p-upload-")
        names = example_names()
        self.source = W.Dropdown(options=[FILE_CHOICE, *names], value=FILE_CHOICE if path else (example if example in names else names[0]),
                                 description="Shape")
        self.path = W.Text(value=str(path or ""), placeholder="path/to/shape.ply (.off .obj .npy .h5 …)",
                           description="Path", continuous_update=False)
        self.upload = W.FileUpload(accept=",".join(UPLOAD_EXTENSIONS), multiple=False, description="Upload")
        self.up = W.ToggleButtons(options=["y", "z"], value="y", description="Up axis",
                                  tooltips=["y-up (render world)", "z-up (ModelNet OFF files)"], style={"button_width": "40px"})
        self.views = W.ToggleButtons(options=list(VIEW_SETS), value=DEFAULT_VIEWS, description="Views",
                                     tooltips=["6 views (released zero-shot)", "10 views (pre-training / few-shot)"],
                                     style={"button_width": "40px"})
        self.radius = W.FloatSlider(value=DEFAULT_RADIUS, min=0.005, max=0.1, step=0.005, readout_format=".3f",
                                    description="Radius", continuous_update=False)
        self.num_points = W.IntSlider(value=DEFAULT_NUM_POINTS, min=128, max=8192, step=128, description="Points",
                                      continuous_update=False)
        self.banner = W.HTML(results.banner(self.session))
        self.info = W.HTML()
        self.message = W.HTML()
        self.cards = W.HTML(results.view_cards(self.session))
        self.plot = W.Output(layout=W.Layout(min_height="300px"))
        controls = W.VBox([W.HBox([self.source, self.up]), W.HBox([self.path, self.upload]),
                           W.HBox([self.views, self.radius, self.num_points])])
        self.widget = W.VBox([css(), self.banner, controls, self.message, self.info,
                              W.HBox([W.VBox([self.cards], layout=W.Layout(width="60%")),
                                      W.VBox([self.plot], layout=W.Layout(width="40%"))])])
        self.upload.observe(self._on_upload, names="value")
        self.path.observe(self._on_path, names="value")
        for w in (self.source, self.up, self.views, self.radius, self.num_points):
            w.observe(lambda _change: self._auto(), names="value")
        self.auto = auto
        self.update()

    def _ipython_display_(self):  # display(explorer) shows the widget
        from IPython.display import display

        display(self.widget)

    # -- events ------------------------------------------------------------------------------
    def _auto(self) -> None:
        if self.auto:
            self.update()

    def _on_path(self, change) -> None:
        if change["new"]:
            self._upload_path = None
            if self.source.value != FILE_CHOICE:
                self.source.value = FILE_CHOICE  # triggers update
                return
        self._auto()

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        f = files[0]
        name = Path(f["name"]).name
        target = Path(self._tmp.name) / name
        target.write_bytes(bytes(f["content"]))
        self._upload_path = str(target)
        if self.source.value != FILE_CHOICE:
            self.source.value = FILE_CHOICE
        else:
            self._auto()

    # -- actions -----------------------------------------------------------------------------
    def shape_source(self) -> ShapeSource:
        """What the controls point at. Raises Clip2PointError when no file is given."""
        if self.source.value != FILE_CHOICE:
            return ShapeSource.example(self.source.value)
        if self._upload_path:
            return ShapeSource.file(self._upload_path, display=Path(self._upload_path).name)
        if self.path.value.strip():
            return ShapeSource.file(Path(self.path.value.strip()).expanduser())
        raise Clip2PointError("no file given; type a path, upload a file or pick an example")

    def load(self, path: str | None = None, example: str | None = None) -> None:
        """Point the controls at a file or an example and update."""
        auto, self.auto = self.auto, False
        try:
            if example is not None:
                self.source.value = example
            elif path is not None:
                self._upload_path = None
                self.path.value = str(path)
                self.source.value = FILE_CHOICE
        finally:
            self.auto = auto
        self.update()

    def update(self) -> bool:
        """(Re)load and render with the current controls; returns False (and shows why) on an error.

        The session caches: an unchanged shape is not reloaded, unchanged views are not re-rendered.
        """
        s = self.session
        try:
            src = self.shape_source()
            shape = s.shape
            if shape is None or shape.source != src or shape.num_points != self.num_points.value or shape.up != self.up.value:
                s.load(src, int(self.num_points.value), self.up.value)
            s.render(self.views.value, float(self.radius.value))
        except Clip2PointError as err:
            self.error = str(err)
            self.message.value = figures.message_html(self.error, "error")
            return False
        self.error = None
        self.message.value = ""
        self.refresh()
        for fn in list(self.listeners):
            fn()
        return True

    def refresh(self) -> None:
        """Redraw the outputs from the session (view cards show per-view votes once scored)."""
        s = self.session
        self.banner.value = results.banner(s)
        if s.shape is None or s.views is None:
            return
        self.info.value = results.shape_info_html(s)
        self.cards.value = results.view_cards(s)
        self.figure = results.shape_figure(s, "height")
        show_figure(self.plot, self.figure)

    @property
    def num_view_cards(self) -> int:
        """How many view cards the grid shows."""
        return self.cards.value.count('class="c2p-card"')


# ----------------------------------------------------------------------------------------------
# 2. zero-shot panel


class ZeroShotPanel:
    """Class names and prompt template(s) → zero-shot probabilities and per-view logits.

    Edits re-score from the session's cached view features (``session.counters["encode"]`` does
    not move; only text features of new prompts are computed). Several templates (one per line,
    or a preset of ``clip2point.prompts.TEMPLATE_PRESETS``) form a prompt ensemble. A failed
    score clears every picture of the old result together (card, bars, heat-map, view votes).

    Args:
        explorer: a :class:`ShapeExplorer` whose session to score (re-scored when its views change).
        session: a session with a rendered shape, when there is no explorer.
        classes: initial class names (comma-separated) or a preset name from ``CLASS_PRESETS``.
        template: a template, several (a list, or text with one per line) or a template preset name.

    Attributes:
        result: the latest ``ZeroShotResult``. prob_figure, heatmap_figure: the latest figures.
        error: the latest error message or None. widget: the ``VBox``.
        The prediction card carries download links of the per-view logits (CSV, JSON); :meth:`logits_csv`
        and :meth:`logits_json` return (and write) the same files.
    """

    CUSTOM = "(custom)"

    def __init__(self, explorer: ShapeExplorer | None = None, session: Session | None = None,
                 classes: str | None = None, template: str | list[str] = DEFAULT_TEMPLATE, top_k: int = 5,
                 auto: bool = True) -> None:
        if explorer is None and session is None:
            raise ValueError("pass a ShapeExplorer or a Session")
        self.explorer = explorer
        self.session = explorer.session if explorer is not None else session
        self.result = None
        self.prob_figure: go.Figure | None = None
        self.heatmap_figure: go.Figure | None = None
        self.error: str | None = None
        preset = classes if classes in CLASS_PRESETS else (DEFAULT_CLASS_SET if classes is None else self.CUSTOM)
        text = ", ".join(CLASS_PRESETS[preset]) if preset != self.CUSTOM else classes
        self.preset = W.Dropdown(options=[*CLASS_PRESETS, self.CUSTOM], value=preset, description="Preset")
        self.classes = W.Textarea(value=text, description="Classes", continuous_update=False,
                                  layout=W.Layout(width="95%", height="70px"))
        if isinstance(template, str) and template.strip().lower() in TEMPLATE_PRESETS:
            template = TEMPLATE_PRESETS[template.strip().lower()]
        text = template if isinstance(template, str) else "\n".join(template)
        self.template_preset = W.Dropdown(options=[*TEMPLATE_PRESETS, self.CUSTOM], description="Prompts",
                                          value=self._template_preset_of(text))
        self.template = W.Textarea(value=text, description="Template", continuous_update=False,
                                   placeholder="image of a {}  (one per line: an ensemble)",
                                   layout=W.Layout(width="95%", height="48px"))

        self.top_k = W.IntSlider(value=top_k, min=1, max=20, description="Top k", continuous_update=False)
        encoders = [(label, key) for key, label in ENCODERS.items()]
        self.encoder = W.Dropdown(options=encoders, value=self.session.encoder, description="Encoder")
        self.prediction = W.HTML()
        self.message = W.HTML()
        self.bars = W.Output()
        self.heatmap = W.Output()
        self.widget = W.VBox([
            css(), W.HBox([self.preset, self.template_preset, self.encoder]), self.classes, self.template, self.top_k,
            self.message, self.prediction, W.HBox([W.VBox([self.bars], layout=W.Layout(width="35%")),
                                                   W.VBox([self.heatmap], layout=W.Layout(width="65%"))]),
        ])
        self._syncing = False
        self.preset.observe(self._on_preset, names="value")
        self.classes.observe(self._on_classes, names="value")
        self.template_preset.observe(self._on_template_preset, names="value")
        self.template.observe(self._on_template, names="value")
        self.encoder.observe(self._on_encoder, names="value")
        self.top_k.observe(lambda _c: self._auto(), names="value")
        self.auto = auto
        if explorer is not None:
            explorer.listeners.append(self._auto)
        if auto and self.session.views is not None:
            self.score()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def _auto(self) -> None:
        if self.auto:
            self.score()

    def _sync(self, widget, value) -> None:
        """Set a paired widget (preset ↔ text) without its own observer reacting, then re-score if ``auto``."""
        self._syncing = True
        try:
            widget.value = value
        finally:
            self._syncing = False
        self._auto()

    def _on_preset(self, change) -> None:
        if change["new"] != self.CUSTOM and not self._syncing:
            self._sync(self.classes, ", ".join(CLASS_PRESETS[change["new"]]))

    def _on_classes(self, _change) -> None:
        if not self._syncing:
            self._sync(self.preset, self.CUSTOM)

    def _template_preset_of(self, text: str) -> str:
        try:
            return preset_of(parse_templates(text)) or self.CUSTOM
        except Clip2PointError:
            return self.CUSTOM

    def _on_template_preset(self, change) -> None:
        if change["new"] != self.CUSTOM and not self._syncing:
            self._sync(self.template, "\n".join(TEMPLATE_PRESETS[change["new"]]))

    def _on_template(self, change) -> None:
        if not self._syncing:
            self._sync(self.template_preset, self._template_preset_of(change["new"]))

    def _on_encoder(self, change) -> None:
        try:
            self.session.set_encoder(change["new"])
        except Clip2PointError as err:
            self._fail(str(err))
            return
        self._auto()

    def _fail(self, message: str) -> None:
        """Show the error and clear every picture of the old result together (none left to mislead)."""
        self.error = message
        self.message.value = figures.message_html(message, "error")
        self.result = self.prob_figure = self.heatmap_figure = None
        self.session.result = None
        self.prediction.value = figures.empty_html("No scores — see the message above.")
        show_figure(self.bars, None)
        show_figure(self.heatmap, None)
        if self.explorer is not None:
            self.explorer.refresh()  # the view cards lose their votes

    def score(self) -> bool:
        """Score the session's current views; returns False (and shows why) on an error."""
        s = self.session
        if s.shape is None:
            self._fail("no shape loaded yet; load one in the explorer")
            return False
        try:
            res = s.classify(self.classes.value, self.template.value)
        except Clip2PointError as err:
            self._fail(str(err))
            return False
        self.error, self.message.value, self.result = None, "", res
        self.prediction.value, self.prob_figure, self.heatmap_figure = results.session_result_outputs(
            s, int(self.top_k.value))
        show_figure(self.bars, self.prob_figure)
        show_figure(self.heatmap, self.heatmap_figure)
        if self.explorer is not None:
            self.explorer.refresh()  # votes on the view cards, banner (model now loaded)
        return True

    def logits_csv(self, path: str | Path | None = None) -> str:
        """The latest result's per-view logits as CSV (:func:`ui.results.view_logits_csv`); written to
        ``path`` too when given (atomically). Raises Clip2PointError before a result exists."""
        return self._export(results.view_logits_csv, path)

    def logits_json(self, path: str | Path | None = None) -> str:
        """The latest result as JSON (:func:`ui.results.view_logits_json`: shape, templates, encoder,
        classes, probabilities, per-view logits, votes); written to ``path`` too when given."""
        s = self.session
        meta = dict(shape=s.shape.name if s.shape is not None else "", templates=list(s.templates),
                    encoder=ENCODERS[s.encoder])
        return self._export(lambda r: results.view_logits_json(r, **meta), path)

    def _export(self, make: Callable, path: str | Path | None) -> str:
        if self.result is None:
            raise Clip2PointError("no result to export yet; score a shape first")
        text = make(self.result)
        if path is not None:
            from clip2point.checkpoints import write_text_atomic

            write_text_atomic(path, text)
        return text

    @property
    def probabilities(self) -> dict[str, float]:
        """{class: probability} of the latest result, most probable first."""
        return {} if self.result is None else dict(self.result.top(len(self.result.classes)))


def explore(path: str | None = None, classes: str | None = None, model: str | None = None,
            weights: str | None = None, example: str = DEFAULT_EXAMPLE, precision: str | None = None,
            cache: ViewFeatureCache | bool = True) -> W.VBox:
    """A quick start: :class:`ShapeExplorer` + :class:`ZeroShotPanel` on one session.

    ``explore()`` shows the example chair; ``explore("scan.ply", "chair, table, lamp")`` a file;
    ``precision="auto"`` encodes in bf16 where the CPU/GPU computes it natively.
    Returns the box (its ``.explorer`` and ``.zeroshot`` attributes are the two parts).
    """
    explorer = ShapeExplorer(default_spec(model, weights, precision=precision), path=path, example=example, cache=cache)
    panel = ZeroShotPanel(explorer, classes=classes)
    box = W.VBox([explorer.widget, W.HTML("<h4>Zero-shot scores</h4>"), panel.widget])
    box.explorer, box.zeroshot = explorer, panel  # type: ignore[attr-defined]
    return box
