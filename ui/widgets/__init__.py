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

import html
import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from clip2point.errors import Clip2PointError

from ui import figures, results
from ui.adapters import class_gate_means, example_depth_thumbnails
from ui.defaults import (DEFAULT_CLASS_SET, DEFAULT_EXAMPLE, DEFAULT_NUM_POINTS, DEFAULT_RADIUS, DEFAULT_TEMPLATE,
                         DEFAULT_VIEWS, ENCODERS, FEWSHOT_VIEWS, UPLOAD_EXTENSIONS, VIEW_SETS)
from ui.figures import gate_weights_figure, training_curves_figure
from ui.registry import REGISTRY, ModelSpec
from ui.runs import FewShotRunner, RunState
from ui.session import Session
from ui.shapes import CLASS_PRESETS, ShapeSource, example_names, find_data_dir

log = logging.getLogger(__name__)

__all__ = [
    "ShapeExplorer", "ZeroShotPanel", "FewShotPanel", "GateViewer", "explore", "default_spec",
    "training_curves_figure", "gate_weights_figure", "show_figure", "FILE_CHOICE",
]

#: The source-dropdown entry that means "the path / upload fields".
FILE_CHOICE = "(file: path or upload)"
_CSS_HTML = f"<style>{figures.CSS}\n.c2p-gate-bar{{height:.5rem;border-radius:4px;background:{figures.PRIMARY}}}</style>"


# ----------------------------------------------------------------------------------------------
# helpers


def default_spec(model: str | None = None, weights: str | None = None, device: str = "auto") -> ModelSpec:
    """A :class:`ModelSpec` (ViT-B-32 with whatever weights are found, random as the fallback)."""
    return ModelSpec(model or ModelSpec().model_name, weights, device)


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


def _css() -> W.HTML:
    return W.HTML(_CSS_HTML, layout=W.Layout(height="0px", margin="0"))


# ----------------------------------------------------------------------------------------------
# 1. shape explorer


class ShapeExplorer:
    """Load a shape and look at what CLIP sees: depth views | CLIP image views | 3-D points.

    Args:
        spec: the backbone (only its input size is needed here; it is loaded by the first score).
        path: a file to start with (else the example ``example``).
        example: the example object to start with.
        session: share a :class:`Session` (e.g. with a :class:`ZeroShotPanel`); new one otherwise.
        auto: re-render on every control change (False: only on :meth:`update`).

    Attributes:
        session: the :class:`Session` (shape, views, cached features, result).
        widget: the ``VBox`` to display. cards, plot, info, message: its outputs.
        figure: the latest 3-D plotly figure. error: the latest error message or None.
    """

    def __init__(self, spec: ModelSpec | None = None, path: str | None = None, example: str = DEFAULT_EXAMPLE,
                 session: Session | None = None, auto: bool = True) -> None:
        self.session = session or Session(spec or default_spec())
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
        self.widget = W.VBox([_css(), self.banner, controls, self.message, self.info,
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
    """Class names and prompt template → zero-shot probabilities and per-view logits.

    Edits re-score from the session's cached view features (``session.counters["encode"]`` does
    not move; only text features of new prompts are computed).

    Args:
        explorer: a :class:`ShapeExplorer` whose session to score (re-scored when its views change).
        session: a session with a rendered shape, when there is no explorer.
        classes: initial class names (comma-separated) or a preset name from ``CLASS_PRESETS``.

    Attributes:
        result: the latest ``ZeroShotResult``. prob_figure, heatmap_figure: the latest figures.
        error: the latest error message or None. widget: the ``VBox``.
    """

    CUSTOM = "(custom)"

    def __init__(self, explorer: ShapeExplorer | None = None, session: Session | None = None,
                 classes: str | None = None, template: str = DEFAULT_TEMPLATE, top_k: int = 5, auto: bool = True) -> None:
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
        self.template = W.Text(value=template, description="Template", continuous_update=False,
                               placeholder="image of a {}")
        self.top_k = W.IntSlider(value=top_k, min=1, max=20, description="Top k", continuous_update=False)
        encoders = [(label, key) for key, label in ENCODERS.items()]
        self.encoder = W.Dropdown(options=encoders, value=self.session.encoder, description="Encoder")
        self.prediction = W.HTML()
        self.message = W.HTML()
        self.bars = W.Output()
        self.heatmap = W.Output()
        self.widget = W.VBox([
            _css(), W.HBox([self.preset, self.template, self.encoder]), self.classes, self.top_k, self.message,
            self.prediction, W.HBox([W.VBox([self.bars], layout=W.Layout(width="35%")),
                                     W.VBox([self.heatmap], layout=W.Layout(width="65%"))]),
        ])
        self._syncing = False
        self.preset.observe(self._on_preset, names="value")
        self.classes.observe(self._on_classes, names="value")
        self.encoder.observe(self._on_encoder, names="value")
        for w in (self.template, self.top_k):
            w.observe(lambda _c: self._auto(), names="value")
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

    def _on_preset(self, change) -> None:
        if change["new"] == self.CUSTOM or self._syncing:
            return
        self._syncing = True
        try:
            self.classes.value = ", ".join(CLASS_PRESETS[change["new"]])
        finally:
            self._syncing = False
        self._auto()

    def _on_classes(self, _change) -> None:
        if not self._syncing:
            self._syncing = True
            try:
                if self.preset.value != self.CUSTOM:
                    self.preset.value = self.CUSTOM
            finally:
                self._syncing = False
            self._auto()

    def _on_encoder(self, change) -> None:
        try:
            self.session.set_encoder(change["new"])
        except Clip2PointError as err:
            self._fail(str(err))
            return
        self._auto()

    def _fail(self, message: str) -> None:
        self.error = message
        self.message.value = figures.message_html(message, "error")

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

    @property
    def probabilities(self) -> dict[str, float]:
        """{class: probability} of the latest result, most probable first."""
        return {} if self.result is None else dict(self.result.top(len(self.result.classes)))


def explore(path: str | None = None, classes: str | None = None, model: str | None = None,
            weights: str | None = None, example: str = DEFAULT_EXAMPLE) -> W.VBox:
    """A quick start: :class:`ShapeExplorer` + :class:`ZeroShotPanel` on one session.

    ``explore()`` shows the example chair; ``explore("scan.ply", "chair, table, lamp")`` a file.
    Returns the box (its ``.explorer`` and ``.zeroshot`` attributes are the two parts).
    """
    explorer = ShapeExplorer(default_spec(model, weights), path=path, example=example)
    panel = ZeroShotPanel(explorer, classes=classes)
    box = W.VBox([explorer.widget, W.HTML("<h4>Zero-shot scores</h4>"), panel.widget])
    box.explorer, box.zeroshot = explorer, panel  # type: ignore[attr-defined]
    return box


# ----------------------------------------------------------------------------------------------
# 3. few-shot panel


class FewShotPanel:
    """Start/stop a GDPA few-shot run in the background and watch it learn.

    Args:
        spec: the backbone (loaded through the shared registry at Start).
        data_dir: the ModelNet folder (default ``find_data_dir()``; ``modelnet10`` below it is used).
        out_dir: where runs go (a new sub-folder per run, named after the settings).
        **defaults: initial values of the controls (shots, epochs, gate, views, limit_test,
            num_points, val_per_class, dataset) and any other :class:`FewShotConfig` field.

    Attributes:
        runner: the current :class:`FewShotRunner` (None before Start). state: its latest state.
        curves_figure: the latest training-curves figure. gate_viewer: a :class:`GateViewer` of
            the finished run. widget: the ``VBox``.
    """

    def __init__(self, spec: ModelSpec | None = None, data_dir: str | None = None, out_dir: str = "runs",
                 **defaults) -> None:
        from clip2point.fewshot import GATES, SHOTS

        self.spec = spec or default_spec()
        self.out_root = Path(out_dir)
        self.runner: FewShotRunner | None = None
        self.state = RunState()
        self.curves_figure: go.Figure | None = None
        self.gate_viewer: GateViewer | None = None
        self.extra = {k: v for k, v in defaults.items()
                      if k not in ("dataset", "shots", "epochs", "gate", "views", "limit_test", "num_points", "val_per_class")}
        found = find_data_dir(data_dir)
        self.data_dir = W.Text(value=str(found or ""), description="Data dir", placeholder="folder with modelnet10/",
                               layout=W.Layout(width="60%"))
        self.dataset = W.Dropdown(options=["modelnet10", "modelnet40"], value=defaults.get("dataset", "modelnet10"),
                                  description="Dataset")
        self.shots = W.Dropdown(options=list(SHOTS), value=defaults.get("shots", 16), description="Shots")
        self.epochs = W.IntSlider(value=defaults.get("epochs", 30), min=1, max=200, description="Epochs")
        self.gate = W.ToggleButtons(options=list(GATES), value=defaults.get("gate", "view"), description="Gate",
                                    tooltips=["GDPA: per-view learned gate", "DPA: fixed 0.5/0.5 (released)"])
        self.views = W.ToggleButtons(options=list(VIEW_SETS), value=defaults.get("views", "10"), description="Views",
                                     style={"button_width": "40px"})
        self.limit_test = W.IntText(value=defaults.get("limit_test", 200), description="Test shapes",
                                    tooltip="class-balanced test subset (0 = all)")
        self.num_points = W.IntText(value=defaults.get("num_points", 1024), description="Points")
        self.val_per_class = W.IntText(value=defaults.get("val_per_class", 4), description="Val/class")
        self.start_button = W.Button(description="Start", button_style="primary", icon="play")
        self.stop_button = W.Button(description="Stop", button_style="warning", icon="stop", disabled=True)
        self.progress = W.FloatProgress(value=0.0, min=0.0, max=1.0, description="")
        self.status = W.HTML("idle")
        self.curves = W.Output()
        self.gates = W.VBox()
        self.start_button.on_click(lambda _b: self.start())
        self.stop_button.on_click(lambda _b: self.stop())
        self.widget = W.VBox([
            _css(), W.HBox([self.data_dir, self.dataset]), W.HBox([self.shots, self.epochs, self.gate]),
            W.HBox([self.views, self.limit_test, self.num_points, self.val_per_class]),
            W.HBox([self.start_button, self.stop_button, self.progress, self.status]), self.curves, self.gates,
        ])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def config(self):
        """The :class:`FewShotConfig` the controls describe (a fresh run folder under ``out_dir``)."""
        from clip2point.fewshot import FewShotConfig

        name = f"{self.dataset.value}-{self.shots.value}shot-{self.gate.value}-{time.strftime('%Y%m%d-%H%M%S')}"
        out = self.out_root / name
        n = 1
        while out.exists():
            n += 1
            out = self.out_root / f"{name}-{n}"
        return FewShotConfig(**{
            "plots": False, **self.extra,
            "dataset": self.dataset.value, "data_dir": self.data_dir.value.strip(), "out_dir": str(out),
            "shots": int(self.shots.value), "epochs": int(self.epochs.value), "gate": self.gate.value,
            "views": self.views.value, "limit_test": int(self.limit_test.value), "num_points": int(self.num_points.value),
            "val_per_class": int(self.val_per_class.value),
        })

    def start(self) -> FewShotRunner | None:
        """Start a run with the current controls (ignored while one is running)."""
        if self.runner is not None and self.runner.running:
            return self.runner
        self.gate_viewer, self.gates.children = None, ()
        self.status.value = "loading the backbone…"
        try:
            backbone = REGISTRY.model(self.spec).backbone
            cfg = self.config()
        except Clip2PointError as err:
            self._update(RunState(status="failed", error=str(err)))
            return None
        self.runner = FewShotRunner(cfg, backbone, on_update=self._update)
        self.start_button.disabled, self.stop_button.disabled = True, False
        self.runner.start()
        return self.runner

    def stop(self) -> None:
        """Ask the running run to stop after its current step."""
        if self.runner is not None:
            self.runner.stop()
            self.status.value = "stopping…"

    def wait(self, timeout: float | None = None) -> RunState:
        """Wait for the current run (tests, scripts); returns its final state."""
        if self.runner is not None:
            self.runner.wait(timeout)
            self._update(self.runner.state)  # idempotent; makes the widgets final even without a kernel loop
        return self.state

    _lock = threading.Lock()

    def _update(self, state: RunState) -> None:
        with self._lock:
            new_epoch = len(state.history) != len(self.state.history) or self.curves_figure is None
            self.state = state
            self.progress.value = state.fraction
            self.progress.bar_style = {"failed": "danger", "cancelled": "warning", "completed": "success"}.get(state.status, "")
            msg = state.describe()
            self.status.value = figures.message_html(msg, "error") if state.status == "failed" else msg
            if new_epoch or state.finished:
                self.curves_figure = training_curves_figure(state.history)
                show_figure(self.curves, self.curves_figure)
            if state.finished:
                self.start_button.disabled, self.stop_button.disabled = False, True
                if state.result is not None and state.result.best_epoch and self.gate_viewer is None:
                    try:
                        self.gate_viewer = GateViewer(state.result, spec=self.spec)
                        self.gates.children = (self.gate_viewer.widget,)
                    except Clip2PointError as err:
                        log.warning("no gate view: %s", err)


# ----------------------------------------------------------------------------------------------
# 4. gate viewer


class GateViewer:
    """Per-view gate weights of a few-shot run, with thumbnails of the views, and per-class averages.

    Args:
        run: a run directory or a :class:`~clip2point.fewshot.RunResult`.
        spec: the backbone of the run; with it (and the run's dataset available) the per-class
            averages of the gate are computed by the trained adapter on ``per_class`` test shapes
            per class. Without it only the per-class test accuracy from ``metrics.json`` is shown.
        example: the example object whose depth views make the thumbnails.
        per_class: test shapes per class for the per-class gate averages (0: skip).

    Attributes:
        metrics: ``metrics.json``. gate: (V,) mean α per view. labels: view labels.
        class_gate: {class: (V,) mean α} (empty without a backbone). figure, class_figure: plotly.
    """

    def __init__(self, run, spec: ModelSpec | None = None, example: str = DEFAULT_EXAMPLE, per_class: int = 4) -> None:
        from clip2point.fewshot import RUN_FILES, read_run_config

        self.run_dir = Path(getattr(run, "run_dir", run))
        mpath = self.run_dir / RUN_FILES["metrics"]
        if not mpath.is_file():
            raise Clip2PointError(f"{self.run_dir} has no metrics.json; is it a finished few-shot run?")
        try:
            self.metrics = json.loads(mpath.read_text(encoding="utf-8"))
        except ValueError as err:
            raise Clip2PointError(f"{mpath} is not valid JSON ({err}); the run folder is damaged") from None
        self.run_config = read_run_config(self.run_dir)
        m = self.metrics
        gate, self.where = m.get("gate_weights"), "test"
        if not gate:
            gate, self.where = m.get("val_gate_weights"), "validation"
        self.labels = list(m.get("view_labels") or self.run_config.get("view_labels") or [])
        self.gate = np.asarray(gate if gate else [0.5] * len(self.labels), dtype=float)
        self.importance = m.get("view_importance")
        self.paths = m.get("paths", "clip+clip")
        self.class_gate: dict[str, np.ndarray] = {}
        self.spec = spec
        if spec is not None and per_class > 0:
            try:
                self.class_gate = class_gate_means(self.run_dir, REGISTRY.model(spec).backbone, per_class)
            except Clip2PointError as err:
                log.warning("per-class gate weights unavailable: %s", err)
        self.thumbnails = example_depth_thumbnails(example, self.run_config.get("fewshot", {}).get("views", FEWSHOT_VIEWS))
        self.figure = gate_weights_figure(self.gate, self.labels, self.importance, self.paths)
        self.class_figure = self._class_figure()
        self.cards = W.HTML(self.cards_html())
        self.plot, self.class_plot = W.Output(), W.Output()
        show_figure(self.plot, self.figure)
        show_figure(self.class_plot, self.class_figure)
        acc = m.get("test_accuracy")
        head = (f"<b>{self.run_dir.name}</b> · gate <code>{m.get('gate')}</code> · paths {m.get('paths')} · "
                f"best epoch {m.get('best_epoch')}" + (f" · test accuracy {acc:.1%}" if acc is not None else "")
                + f" · α averaged over the {self.where} shapes"
                + (' · <span class="c2p-random-text" style="color:#dc2626">random weights: meaningless</span>'
                   if m.get("random_weights") else ""))
        self.widget = W.VBox([_css(), W.HTML(f'<div class="c2p-info">{head}</div>'), self.cards, self.plot, self.class_plot])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def cards_html(self) -> str:
        """One card per view: its depth thumbnail and a bar of α (share of path A)."""
        path_a = "depth encoder" if self.paths == "depth+clip" else "path A"
        cards = []
        for v, label in enumerate(self.labels):
            a = float(self.gate[v])
            thumb = f'<img src="{self.thumbnails[v]}" alt="view {v + 1}">' if v < len(self.thumbnails) else ""
            imp = f" · importance {self.importance[v]:.3f}" if self.importance else ""
            cards.append(
                f'<div class="c2p-card c2p-gate-card" data-view="{v + 1}"><div class="c2p-card-head"><b>View {v + 1}</b>'
                f'<span class="c2p-kv">{html.escape(str(label))}</span></div><div class="c2p-pair"><figure>{thumb}</figure>'
                f'<div><div style="font-size:.8rem">α = {a:.3f}<br><span class="c2p-kv">{path_a} {a:.0%} · CLIP {1 - a:.0%}'
                f'{imp}</span></div><div style="background:rgba(148,163,184,.3);border-radius:4px;margin-top:.3rem">'
                f'<div class="c2p-gate-bar" style="width:{a * 100:.1f}%"></div></div></div></div></div>'
            )
        return f'<div class="c2p-cards" style="grid-template-columns:repeat(auto-fill,minmax(200px,1fr))">{"".join(cards)}</div>'

    def _class_figure(self) -> go.Figure:
        if self.class_gate:
            names = list(self.class_gate)
            z = np.stack([self.class_gate[c] for c in names])
            fig = go.Figure(go.Heatmap(z=z, x=[f"{i + 1}" for i in range(z.shape[1])], y=names, colorscale="Blues",
                                       colorbar=dict(title=dict(text="α", side="right"), thickness=10),
                                       hovertemplate="%{y} · view %{x}: α %{z:.3f}<extra></extra>"))
            fig.update_layout(height=80 + 22 * len(names), margin=dict(l=10, r=10, t=30, b=30),
                              title="mean gate α per class (rows) and view (columns)", yaxis=dict(autorange="reversed"))
            return fig
        per = (self.metrics.get("test") or {}).get("per_class_accuracy") or {}
        fig = go.Figure(go.Bar(x=list(per.values()), y=list(per), orientation="h", marker_color=figures.PRIMARY_LIGHT))
        fig.update_layout(height=80 + 22 * max(1, len(per)), margin=dict(l=10, r=10, t=30, b=30),
                          title="test accuracy per class", xaxis=dict(range=[0, 1], tickformat=".0%"),
                          yaxis=dict(autorange="reversed"))
        return fig

    @property
    def num_view_cards(self) -> int:
        return self.cards.value.count('class="c2p-card c2p-gate-card"')
