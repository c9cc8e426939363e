"""Jupyter widgets of few-shot runs: :class:`FewShotPanel` (start/stop, live curves) and :class:`GateViewer`."""
from __future__ import annotations

import html
import logging
import threading
import time
from pathlib import Path

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from clip2point.datasets import DATASET_NAMES
from clip2point.errors import Clip2PointError
from clip2point.viewcache import ViewFeatureCache
from ui import figures
from ui.adapters import class_gate_means, example_depth_thumbnails
from ui.defaults import DEFAULT_EXAMPLE, FEWSHOT_VIEWS, VIEW_SETS
from ui.gate_figures import CLIP_CLIP_NOTE, class_gate_figure, gate_weights_figure, path_names, training_curves_figure
from ui.registry import REGISTRY, ModelSpec, choose_view_cache
from ui.runs import FULL_PROTOCOL_COMMAND, QUICK_RUN, FewShotRunner, RunState, estimate_run
from ui.shapes import find_data_dir
from ui.widgets.common import css, show_figure, widget_spec

log = logging.getLogger(__name__)

__all__ = ["FewShotPanel", "GateViewer", "PANEL_FIELDS"]

#: The :class:`~clip2point.fewshot.FewShotConfig` fields :class:`FewShotPanel` has a control for.
PANEL_FIELDS = ("dataset", "shots", "epochs", "gate", "views", "limit_test", "num_points", "val_per_class")


class FewShotPanel:
    """Start/stop a GDPA few-shot run in the background and watch it learn.

    Args:
        spec: the backbone (loaded through the shared registry at Start).
        data_dir: the ModelNet folder (default ``find_data_dir()``; ``modelnet10`` below it is used).
        out_dir: where runs go (a new sub-folder per run, named after the settings).
        precision: the frozen encoders' weights, "fp32", "bf16" or "auto" (None: ``spec``'s).
        cache: the persistent view-feature cache of the runs: True (default) the shared registry's
            (``~/.cache/clip2point/views`` unless ``$CLIP2POINT_CACHE_DIR``), False none, or a
            ``ViewFeatureCache``; another seed or gate of the same data then encodes nothing.
        depth_encoder: a CLIP2Point depth-encoder file for path A (default ``spec.depth_encoder``;
            without one both paths are CLIP and the gate has nothing to choose between).
        **defaults: initial values of the controls (shots, epochs, gate, views, limit_test,
            num_points, val_per_class, dataset) and any other :class:`FewShotConfig` field. The
            defaults are :data:`ui.runs.QUICK_RUN` (about a minute with ViT-B-32 on a laptop CPU).

    Attributes:
        runner: the current :class:`FewShotRunner` (None before Start). state: its latest state.
        curves_figure: the latest training-curves figure. gate_viewer: a :class:`GateViewer` of
            the finished run. cost: the :class:`~ui.runs.RunCost` of the latest Start. widget: the ``VBox``.

    The display is refreshed at most :attr:`STATUS_EVERY_S` (status, progress) and
    :attr:`CURVES_EVERY_S` (curves) apart, and at the end: a fast run cannot flood the browser.
    """

    STATUS_EVERY_S = 0.25
    CURVES_EVERY_S = 1.0

    def __init__(self, spec: ModelSpec | None = None, data_dir: str | None = None, out_dir: str = "runs",
                 precision: str | None = None, cache: ViewFeatureCache | bool = True, depth_encoder: str | None = None,
                 **defaults) -> None:
        from clip2point.fewshot import GATES, SHOTS, FewShotConfig

        core = FewShotConfig()  # the core's defaults, but a notebook run is short (QUICK_RUN)
        start = {**{k: getattr(core, k) for k in PANEL_FIELDS}, **QUICK_RUN,
                 **{k: v for k, v in defaults.items() if k in PANEL_FIELDS}}
        self.spec = widget_spec(spec, precision)
        self.cache = choose_view_cache(cache, REGISTRY)
        self.out_root = Path(out_dir)
        self.runner: FewShotRunner | None = None
        self.state = RunState()
        self.cost = None
        self.curves_figure: go.Figure | None = None
        self.gate_viewer: GateViewer | None = None
        self.extra = {k: v for k, v in defaults.items() if k not in PANEL_FIELDS}
        self._lock = threading.Lock()
        self._shown = {"status": 0.0, "curves": 0.0}
        found = find_data_dir(data_dir)
        self.data_dir = W.Text(value=str(found or ""), description="Data dir", placeholder="folder with modelnet10/",
                               layout=W.Layout(width="60%"))
        self.dataset = W.Dropdown(options=list(DATASET_NAMES), value=start["dataset"], description="Dataset")
        self.shots = W.Dropdown(options=list(SHOTS), value=start["shots"], description="Shots")
        self.epochs = W.IntSlider(value=start["epochs"], min=1, max=200, description="Epochs")
        self.gate = W.ToggleButtons(options=list(GATES), value=start["gate"], description="Gate",
                                    tooltips=["GDPA: per-view learned gate", "DPA: fixed 0.5/0.5 (released)"])
        self.views = W.ToggleButtons(options=list(VIEW_SETS), value=start["views"], description="Views",
                                     style={"button_width": "40px"})
        self.limit_test = W.IntText(value=start["limit_test"], description="Test shapes",
                                    tooltip="class-balanced test subset (0 = all)")
        self.num_points = W.IntText(value=start["num_points"], description="Points")
        self.val_per_class = W.IntText(value=start["val_per_class"], description="Val/class")
        self.depth_encoder = W.Text(value=depth_encoder or self.spec.depth_encoder or "", description="Depth enc.",
                                    placeholder="CLIP2Point depth encoder (best_eval.pth) for path A; empty: clip+clip",
                                    layout=W.Layout(width="60%"))
        self.paths_note = W.HTML(self.paths_html())
        self.depth_encoder.observe(lambda _c: setattr(self.paths_note, "value", self.paths_html()), "value")
        self.start_button = W.Button(description="Start", button_style="primary", icon="play")
        self.stop_button = W.Button(description="Stop", button_style="warning", icon="stop", disabled=True)
        self.progress = W.FloatProgress(value=0.0, min=0.0, max=1.0, description="")
        self.status = W.HTML("idle")
        self.cost_html = W.HTML(f'<span class="c2p-kv">Full protocol (16 shots, 100 epochs, every test shape): '
                                f"<code>{html.escape(FULL_PROTOCOL_COMMAND)}</code></span>")
        self.curves = W.Output()
        self.gates = W.VBox()
        self.start_button.on_click(lambda _b: self.start())
        self.stop_button.on_click(lambda _b: self.stop())
        self.widget = W.VBox([
            css(), W.HBox([self.data_dir, self.dataset]), W.HBox([self.shots, self.epochs, self.gate]),
            W.HBox([self.views, self.limit_test, self.num_points, self.val_per_class]), self.depth_encoder,
            self.paths_note, W.HBox([self.start_button, self.stop_button, self.progress, self.status]), self.cost_html,
            self.curves, self.gates,
        ])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def paths_html(self) -> str:
        """Which encoders the GDPA paths use: the clip+clip warning without a depth encoder."""
        if self.depth_encoder.value.strip():
            return ('<span class="c2p-kv">Paths depth+clip: path A = CLIP2Point depth encoder '
                    f"({html.escape(Path(self.depth_encoder.value.strip()).name)}), path B = CLIP.</span>")
        return f'<div class="c2p-msg info"><b>Paths clip+clip.</b> {html.escape(CLIP_CLIP_NOTE)}</div>'

    def backbone(self):
        """The run's frozen encoders (with the depth encoder of the "Depth enc." field, if any)."""
        path = self.depth_encoder.value.strip()
        if path:
            return REGISTRY.depth_encoder(self.spec, path).backbone
        return REGISTRY.model(self.spec).backbone

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

    def estimate(self, backbone=None, config=None):
        """The :class:`~ui.runs.RunCost` of the current settings (measures the encoder once)."""
        from clip2point.datasets import open_dataset

        cfg = config or self.config()
        train = open_dataset(cfg.dataset, cfg.data_dir, "train", num_points=cfg.num_points, up=cfg.up)
        test = open_dataset(cfg.dataset, cfg.data_dir, "test", num_points=cfg.num_points, up=cfg.up)
        self.cost = estimate_run(cfg, backbone or self.backbone(), train.labels, len(test))
        return self.cost

    def start(self) -> FewShotRunner | None:
        """Start a run with the current controls (ignored while one is running)."""
        if self.runner is not None and self.runner.running:
            return self.runner
        self.gate_viewer, self.gates.children = None, ()
        self.status.value = "loading the backbone…"
        try:
            backbone = self.backbone()
            cfg = self.config()
            cfg.validate()
            self.estimate(backbone, cfg)
        except Clip2PointError as err:
            self._update(RunState(status="failed", error=str(err)), force=True)
            return None
        self.cost_html.value = (f'<span class="c2p-kv">This run: {html.escape(self.cost.describe())}. Full protocol: '
                                f"<code>{html.escape(FULL_PROTOCOL_COMMAND)}</code></span>")
        self._shown = {"status": 0.0, "curves": 0.0}
        self.runner = FewShotRunner(cfg, backbone, on_update=self._update, cache=self.cache)
        self.start_button.disabled, self.stop_button.disabled = True, False
        self.runner.start()
        return self.runner

    def stop(self) -> None:
        """Ask the running run to stop (within one training step or encoder batch); the status
        says "stopping…" until it has, then "cancelled"."""
        if self.runner is not None and self.runner.running:
            self.runner.stop()  # its on_update shows the state with the stop request at once

    def wait(self, timeout: float | None = None) -> RunState:
        """Wait for the current run (tests, scripts); returns its final state."""
        if self.runner is not None:
            self.runner.wait(timeout)
            self._update(self.runner.state, force=True)  # idempotent; makes the widgets final without a kernel loop
        return self.state

    def _update(self, state: RunState, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            final = state.finished or force or state.stop_requested_at != self.state.stop_requested_at
            if not final and now - self._shown["status"] < self.STATUS_EVERY_S:
                self.state = state
                return
            new_epoch = len(state.history) != len(self.state.history) or self.curves_figure is None
            self._shown["status"] = now
            self.state = state
            self.progress.value = state.fraction
            self.progress.bar_style = {"failed": "danger", "cancelled": "warning", "completed": "success"}.get(state.status, "")
            msg = state.describe()
            self.status.value = figures.message_html(msg, "error") if state.status == "failed" else html.escape(msg)
            if final or (new_epoch and now - self._shown["curves"] >= self.CURVES_EVERY_S):
                self._shown["curves"] = now
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

    The run is read by :class:`clip2point.fewshot.rundir.RunFolder` (its ``gate_weights()``: the
    test mean, else the best epoch's validation mean), as everywhere else.

    Args:
        run: a run directory or a :class:`~clip2point.fewshot.RunResult`.
        spec: the backbone of the run, for runs whose ``metrics.json`` predates the per-class gate
            (``class_gate_weights``): with it (and the run's dataset available) the per-class
            averages are computed by the trained adapter on ``per_class`` test shapes per class
            (:func:`ui.adapters.class_gate_means`). Newer runs need no backbone.
        example: the example object whose depth views make the thumbnails.
        per_class: 0 shows the per-class test accuracy instead of the per-class gate; otherwise the
            test shapes per class of the computed averages (older runs).

    Attributes:
        run: the :class:`RunFolder`. metrics: ``metrics.json``. gate: (V,) mean α per view.
        labels: view labels. where: "test" or "validation". class_gate: {class: (V,) mean α}
        (empty when unavailable or ``per_class`` is 0). figure, class_figure: plotly.

    Raises:
        Clip2PointError: no ``metrics.json`` (not a finished run); CheckpointError: a damaged folder.
    """

    def __init__(self, run, spec: ModelSpec | None = None, example: str = DEFAULT_EXAMPLE, per_class: int = 4) -> None:
        from clip2point.fewshot.rundir import RunFolder, run_file

        self.run_dir = Path(getattr(run, "run_dir", run))
        if not run_file(self.run_dir, "metrics").is_file():
            raise Clip2PointError(f"{self.run_dir} has no metrics.json; is it a finished few-shot run?")
        self.run = RunFolder(self.run_dir)
        self.run_config, m = self.run.config_dict, self.run.metrics
        self.metrics = m
        gate = self.run.gate_weights()
        self.where = gate.split if gate is not None else "validation"
        self.labels = gate.view_labels if gate is not None and gate.view_labels else self.run.view_labels
        self.gate = gate.per_view if gate is not None else np.full(len(self.labels), 0.5)
        self.importance = None if gate is None or gate.importance is None else gate.importance.tolist()
        self.paths = gate.paths if gate is not None else self.run.paths
        self.spec = spec
        self.class_gate = self._class_gates(gate, spec, per_class) if per_class > 0 else {}
        self.thumbnails = example_depth_thumbnails(example, self.run_config.get("fewshot", {}).get("views", FEWSHOT_VIEWS))
        self.figure = gate_weights_figure(self.gate, self.labels, self.importance, self.paths)
        self.class_figure = self._class_figure()
        self.cards = W.HTML(self.cards_html())
        self.plot, self.class_plot = W.Output(), W.Output()
        show_figure(self.plot, self.figure)
        show_figure(self.class_plot, self.class_figure)
        acc = m.get("test_accuracy")
        a, b = path_names(self.paths)
        where = ("the test shapes" if self.where == "test"
                 else "the validation shapes (the run was not tested: it was cancelled)")
        status = m.get("status") or "unfinished"
        head = (f"<b>{html.escape(self.run_dir.name)}</b> · {html.escape(status)} · gate <code>{m.get('gate')}</code> · "
                f"best epoch {m.get('best_epoch')}" + (f" · test accuracy {acc:.1%}" if acc is not None else "")
                + f"<br>α = share of path A ({a}) vs path B ({b}), averaged over {where}"
                + (' · <span class="c2p-random-text" style="color:#dc2626">random weights: meaningless</span>'
                   if m.get("random_weights") else ""))
        note = "" if self.paths == "depth+clip" else (
            f'<div class="c2p-msg info"><b>Paths clip+clip.</b> {html.escape(CLIP_CLIP_NOTE)}</div>')
        self.widget = W.VBox([css(), W.HTML(f'<div class="c2p-info">{head}</div>{note}'), self.cards, self.plot,
                              self.class_plot])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def _class_gates(self, gate, spec: ModelSpec | None, per_class: int) -> dict[str, np.ndarray]:
        """{class: (V,) mean α}: the run's own per-class test means, else (older runs, with ``spec``)
        computed by the adapter on ``per_class`` test shapes per class; {} when neither is possible."""
        if gate is not None and gate.per_class is not None:
            return {c: row for c, row in zip(gate.classes, gate.per_class) if not np.isnan(row).all()}
        if spec is None:
            return {}
        try:
            return class_gate_means(self.run_dir, REGISTRY.model(spec).backbone, per_class)
        except Clip2PointError as err:
            log.warning("per-class gate weights unavailable: %s", err)
            return {}

    def cards_html(self) -> str:
        """One card per view: its depth thumbnail, α (share of path A) and a bar centred at 0.5."""
        a_name, b_name = path_names(self.paths)
        cards = []
        for v, label in enumerate(self.labels):
            a = float(self.gate[v])
            thumb = f'<img src="{self.thumbnails[v]}" alt="view {v + 1}">' if v < len(self.thumbnails) else ""
            imp = f" · importance {self.importance[v]:.3f}" if self.importance else ""
            left, width = (50.0, (a - 0.5) * 100) if a >= 0.5 else (a * 100, (0.5 - a) * 100)
            cards.append(
                f'<div class="c2p-card c2p-gate-card" data-view="{v + 1}"><div class="c2p-card-head"><b>View {v + 1}</b>'
                f'<span class="c2p-kv">{html.escape(str(label))}</span></div><div class="c2p-pair"><figure>{thumb}</figure>'
                f'<div><div style="font-size:.8rem">α = {a:.3f}<br><span class="c2p-kv">A ({html.escape(a_name)}) {a:.1%} · '
                f'B ({html.escape(b_name)}) {1 - a:.1%}{imp}</span></div><div style="position:relative;height:.5rem;'
                f'background:rgba(148,163,184,.3);border-radius:4px;margin-top:.3rem"><div class="c2p-gate-bar" '
                f'style="position:absolute;left:{left:.1f}%;width:{max(width, 0.5):.1f}%"></div><div style="position:'
                f'absolute;left:50%;top:-2px;bottom:-2px;border-left:1px solid #64748b"></div></div></div></div></div>'
            )
        return f'<div class="c2p-cards" style="grid-template-columns:repeat(auto-fill,minmax(200px,1fr))">{"".join(cards)}</div>'

    def _class_figure(self) -> go.Figure:
        if self.class_gate:
            return class_gate_figure(self.class_gate, self.paths)
        per = (self.metrics.get("test") or {}).get("per_class_accuracy") or {}
        fig = go.Figure(go.Bar(x=list(per.values()), y=list(per), orientation="h", marker_color=figures.PRIMARY_LIGHT))
        fig.update_layout(height=80 + 22 * max(1, len(per)), margin=dict(l=10, r=10, t=30, b=30),
                          title="test accuracy per class", xaxis=dict(range=[0, 1], tickformat=".0%"),
                          yaxis=dict(autorange="reversed"))
        return fig

    @property
    def num_view_cards(self) -> int:
        return self.cards.value.count('class="c2p-card c2p-gate-card"')
