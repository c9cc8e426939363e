"""The Few-shot tab: train a GDPA adapter in the background and compare it with zero-shot.

Start, Stop and Classify return at once; the run is a thread (:class:`ui.runs.FewShotRunner`,
started through the server's :class:`ui.runs.RunPool`, which caps runs per server and per tab)
polled by a timer. When it ends, its mean gate per view and the adapter's and zero-shot's scores on
the Zero-shot tab's current shape are shown (:func:`ui.adapters.compare_on_shape`).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from clip2point.errors import Clip2PointError
from ui import figures, gate_figures
from ui.adapters import AdapterComparison, compare_on_shape, depth_thumbnails
from ui.defaults import DEFAULT_VIEWS, FEWSHOT_VIEWS
from ui.registry import resolve_device
from ui.runs import FewShotRunner, RunLimitError, RunState, clean_old_runs
from ui.session import Session
from ui.tabs.common import AppContext, Dropdown, Number, Page, Radio, Slider, html_path, section, show_error

log = logging.getLogger(__name__)

__all__ = ["FewShotState", "FewShotTab", "FewShotHandlers", "build_fewshot_tab", "wire_fewshot", "new_run_dir",
           "fewshot_status_html", "run_gate_mean", "stop_fewshot_state", "POLL_S"]

#: Seconds between two polls of a running run.
POLL_S = 1.0


@dataclass
class FewShotState:
    """One browser tab's few-shot state: the current run and its loaded adapter."""

    runner: FewShotRunner | None = None
    classifier: Any = None
    classifier_dir: str = ""
    shown_epochs: int = -1


def new_run_dir(root: Path) -> Path:
    """A new, empty ``root/<timestamp>`` folder (``-2``, ``-3``, … when started in the same second).

    The folder is created here (``mkdir`` without ``exist_ok`` is atomic), so two sessions that
    start runs in the same second never share one.
    """
    root.mkdir(parents=True, exist_ok=True)
    base = root / time.strftime("%Y%m%d-%H%M%S")
    out, n = base, 1
    while True:
        try:
            out.mkdir()
            return out
        except FileExistsError:
            n += 1
            out = base.with_name(f"{base.name}-{n}")


def fewshot_status_html(state: RunState, epochs: int, note: str = "") -> str:
    """The status line: status/stage, epoch x/y, validation accuracy (best so far), the run folder
    once finished, and ``note`` on a second line."""
    parts = [state.describe()]
    if state.status == "running" or state.history:
        parts.append(f"epoch {len(state.history)}/{epochs}")
    if state.history:
        last = state.history[-1]
        val, best = last.get("val_acc"), last.get("best_val_acc")
        if val is not None and val == val:
            parts.append(f"val acc {val:.1%}" + (f" (best {best:.1%})" if best is not None and best == best else ""))
    if state.run_dir is not None and state.finished:
        parts.append(f"run folder {state.run_dir}")
    kind = "error" if state.status == "failed" else "info"
    html = figures.message_html(" · ".join(parts), kind)
    return html[:-len("</div>")] + f"<br>{figures.escape(note)}</div>" if note else html


def run_gate_mean(state: RunState) -> tuple[list[float] | None, str]:
    """The run's per-view gate averaged over the test shapes (else the validation shapes), and
    which: "test set (mean)" or "validation set (mean)" ((None, "") without one)."""
    gate = state.gate_weights()
    if gate is None:
        return None, ""
    return gate.per_view.tolist(), f"{gate.split} set (mean)"


def stop_fewshot_state(fs: Any) -> None:
    """``delete_callback`` of a tab's few-shot state: gradio calls it when the state is dropped
    (idle past its time-to-live, or its tab closed); the tab's run, if any, is asked to stop."""
    runner = getattr(fs, "runner", None)
    if runner is not None and runner.running:
        log.info("few-shot state of a closed or idle tab deleted: stopping its run in %s", runner.config.out_dir)
        runner.stop()


@dataclass
class FewShotTab:
    """The tab's components (``page.state`` is the Zero-shot tab's session: its current shape)."""

    page: Page
    dataset: gr.Dropdown
    shots: gr.Radio
    epochs: gr.Slider
    gate: gr.Radio
    views: gr.Radio
    limit: gr.Number
    val: gr.Number
    start_btn: gr.Button
    stop_btn: gr.Button
    status: gr.HTML
    classify_btn: gr.Button
    curves: gr.Plot
    gate_plot: gr.Plot
    adapter_plot: gr.Plot
    zero_plot: gr.Plot
    timer: gr.Timer
    state: gr.State

    @property
    def outs(self) -> list:
        """Outputs of Start and of each poll (after the session)."""
        return [self.state, self.status, self.curves, self.gate_plot, self.adapter_plot, self.zero_plot, self.timer,
                self.start_btn, self.stop_btn]


# ----------------------------------------------------------------------------------------------
# handlers


class FewShotHandlers:
    """The tab's event handlers."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def results(self, session: Session | None, fs: FewShotState, state: RunState) -> tuple:
        """(session, gate figure, adapter figure, zero-shot figure, note) of a finished run on the
        current shape of the Zero-shot tab (the default example when none is loaded)."""
        from clip2point.fewshot import load_adapter

        ctx = self.ctx
        session = ctx.new_session(session)
        if state.result is None or not state.result.best_epoch or state.run_dir is None:
            msg = "no epoch finished, so there is no adapter to show"
            return session, figures.placeholder_figure(msg, 200), None, None, msg
        if fs.classifier is None or fs.classifier_dir != str(state.run_dir):
            backbone = ctx.registry.model(ctx.spec).backbone
            fs.classifier = load_adapter(state.run_dir, backbone, cache=ctx.registry.view_cache)
            fs.classifier_dir = str(state.run_dir)
        cmp = compare_on_shape(session, fs.classifier)
        gate, adapter, zero = self.figures(cmp, state)
        return session, gate, adapter, zero, cmp.note()

    @staticmethod
    def figures(cmp: AdapterComparison, state: RunState) -> tuple:
        """(gate per view: run mean and this shape, adapter top 5, zero-shot top 5) figures."""
        res, zs, truth = cmp.adapter, cmp.zero_shot, cmp.true_label
        thumbs = depth_thumbnails(res.depth[0] if res.depth is not None else None)
        mean, mean_name = run_gate_mean(state)
        gate = gate_figures.gate_views_figure(res.view_labels, mean, res.gate[0].numpy(), thumbs, mean_name or "mean")
        adapter = figures.probability_figure(res.classes, res.probs[0].numpy(), 5, truth)
        zero = figures.probability_figure(zs.classes, zs.probs[0].numpy(), 5, truth)
        return gate, adapter, zero

    def buttons(self, running: bool) -> tuple:
        """(Start, Stop) updates: Start while idle and data exists, Stop while running."""
        return gr.update(interactive=not running and bool(self.ctx.datasets)), gr.update(interactive=running)

    def start(self, session, fs, dataset, shots, epochs, gate, views, limit_test, val_per_class,
              request: gr.Request = None):
        """Start a few-shot run in the background (the timer then polls it).

        Refused with a one-line message when an argument is beyond the limits, when this session
        already runs ``limits.max_runs_per_session`` runs or the server ``limits.max_runs``.
        Old run folders are cleaned first (``limits.runs_max_age_days``).
        """
        fs = fs if isinstance(fs, FewShotState) else FewShotState()
        owner = getattr(request, "session_hash", None) or f"state-{id(fs)}"
        try:
            runner = self.start_run(owner, fs, dataset, shots, epochs, gate, views, limit_test, val_per_class)
        except Exception as err:  # noqa: BLE001 - shown to the user
            running = fs.runner is not None and fs.runner.running
            return (fs, show_error(err, "few-shot start")) + (gr.skip(),) * 5 + self.buttons(running)
        fs.runner, fs.classifier, fs.classifier_dir, fs.shown_epochs = runner, None, "", 0
        wait = figures.placeholder_figure("results appear when the run ends", 200)
        return (fs, fewshot_status_html(runner.state, runner.config.epochs), gate_figures.training_curves_figure([]), wait,
                None, None, gr.Timer(active=True), *self.buttons(True))

    def start_run(self, owner: str, fs: FewShotState, dataset, shots, epochs, gate, views, limit_test,
                  val_per_class) -> FewShotRunner:
        """Check the request, make a run folder and start the run in the pool (see :meth:`start`)."""
        from clip2point.fewshot import FewShotConfig

        ctx, limits = self.ctx, self.ctx.limits
        if fs.runner is not None and fs.runner.running:
            raise RunLimitError("a few-shot run is already training in this tab; stop it (Stop) or wait for it "
                                "to end")
        if not ctx.datasets:
            raise Clip2PointError("no ModelNet data found: clip2point data download modelnet10 -o DIR, "
                                  "then start the app with --data-dir DIR")
        if dataset not in ctx.datasets:
            raise Clip2PointError(f"unknown dataset {str(dataset)[:40]!r}; choose one of {', '.join(ctx.datasets)}")
        if gate not in ("view", "none"):
            raise Clip2PointError(f"gate must be 'view' or 'none', got {str(gate)[:40]!r}")
        shots, epochs, limit_test, val_per_class = limits.check_fewshot(shots, epochs, limit_test, val_per_class)
        views = limits.check_views(views)
        clean_old_runs(ctx.runs_root, limits.runs_max_age_days, keep=ctx.pool.running_dirs())
        cfg = FewShotConfig(dataset=dataset, data_dir=str(ctx.data_root), out_dir="", shots=shots, epochs=epochs,
                            gate=gate, views=views, limit_test=limit_test, val_per_class=val_per_class, plots=False)
        backbone = ctx.registry.model(ctx.spec).backbone  # shared with the zero-shot tab; its device is the run's
        cfg.out_dir = str(new_run_dir(ctx.runs_root))
        try:
            cfg.validate()
            return ctx.pool.start(owner, cfg, backbone, cache=ctx.registry.view_cache)
        except Exception:
            Path(cfg.out_dir).rmdir()  # still empty: a refused start leaves no folder behind
            raise

    def poll(self, session, fs):
        """Tick: status line and curves of the run; when it ends, its gate weights and the current shape."""
        if not isinstance(fs, FewShotState) or fs.runner is None:
            return (session, fs) + (gr.skip(),) * 5 + (gr.Timer(active=False),) + self.buttons(False)
        state = fs.runner.state
        epochs = fs.runner.config.epochs
        curves = gr.skip()
        if len(state.history) != fs.shown_epochs or state.finished:
            curves, fs.shown_epochs = gate_figures.training_curves_figure(state.history), len(state.history)
        status = fewshot_status_html(state, epochs)
        if not state.finished:
            return (session, fs, status, curves) + (gr.skip(),) * 3 + (gr.skip(), *self.buttons(True))
        gate = adapter = zero = gr.skip()
        if state.status != "failed":
            try:
                session, gate, adapter, zero, note = self.results(session, fs, state)
                status = fewshot_status_html(state, epochs, note)
            except Exception as err:  # noqa: BLE001
                status = show_error(err)
        return (session, fs, status, curves, gate, adapter, zero, gr.Timer(active=False), *self.buttons(False))

    def stop(self, fs):
        """Ask the run to stop after its current step (the poll then shows "cancelled")."""
        if isinstance(fs, FewShotState) and fs.runner is not None and fs.runner.running:
            fs.runner.stop()
            return figures.message_html("stopping after the current step…", "info")
        return gr.skip()

    def classify(self, session, fs):
        """Classify the Zero-shot tab's current shape with the finished run's adapter (and zero-shot)."""
        if not isinstance(fs, FewShotState) or fs.runner is None or not fs.runner.state.finished:
            return (session, figures.message_html("Train an adapter first (Start), then wait for it to end.", "info"),
                    gr.skip(), gr.skip(), gr.skip())
        try:
            session, gate, adapter, zero, note = self.results(session, fs, fs.runner.state)
        except Exception as err:  # noqa: BLE001
            return session, show_error(err), gr.skip(), gr.skip(), gr.skip()
        return session, figures.message_html(note, "info"), gate, adapter, zero

    def on_unload(self, request: gr.Request = None):
        """The browser tab closed or reloaded (its heartbeat ended): stop the session's runs."""
        owner = getattr(request, "session_hash", None)
        if owner:
            self.ctx.pool.stop_owner(owner)


# ----------------------------------------------------------------------------------------------
# layout and wiring


def _intro(ctx: AppContext) -> str:
    """The footnote above the tab: what it does, where runs go, the run caps."""
    limits = ctx.limits
    return ('<div class="c2p-footnote">Train a GDPA few-shot adapter on K shapes per class on top of the '
            'frozen backbone of this app (CLIP2Point §3.3, the few-shot protocol of PointCLIP); runs go '
            f'to {html_path(ctx.runs_root)}/&lt;timestamp&gt; on {resolve_device(ctx.spec.device)}. '
            f'{limits.max_runs} run(s) train at once on this server, {limits.max_runs_per_session} per tab; '
            'a run stops when its tab closes'
            + (f'; run folders older than {limits.runs_max_age_days:g} days are deleted'
               if limits.runs_max_age_days else '') + '.</div>')


def build_fewshot_tab(ctx: AppContext, page: Page) -> FewShotTab:
    """Lay the tab out (call inside ``gr.Tab``): settings and buttons, then curves and results."""
    gr.HTML(_intro(ctx))
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=330):
            controls = _controls(ctx)
        with gr.Column(scale=11, min_width=600):
            section("Training: loss and accuracy per epoch")
            curves = gr.Plot(show_label=False, elem_id="fs-curves")
            section("Gate per view (share of path A): mean over the test set · "
                    "the current shape (thumbnails: its depth views)")
            gate_plot = gr.Plot(show_label=False, elem_id="fs-gate")
            with gr.Row():
                with gr.Column():
                    section("Current shape · few-shot adapter (top 5)")
                    adapter_plot = gr.Plot(show_label=False, elem_id="fs-adapter")
                with gr.Column():
                    section("Current shape · zero-shot, same classes (top 5)")
                    zero_plot = gr.Plot(show_label=False, elem_id="fs-zeroshot")
    timer = gr.Timer(POLL_S, active=False)
    # deleted 2 h after its last update, or an hour after its tab closed: its run stops then too
    state = gr.State(None, time_to_live=2 * 3600, delete_callback=stop_fewshot_state)
    return FewShotTab(page=page, **controls, curves=curves, gate_plot=gate_plot, adapter_plot=adapter_plot,
                      zero_plot=zero_plot, timer=timer, state=state)


def _controls(ctx: AppContext) -> dict[str, Any]:
    """Dataset, shots, epochs, gate, more settings, Start/Stop, the status line, Classify."""
    limits, datasets = ctx.limits, ctx.datasets
    if not datasets:
        gr.HTML(figures.message_html(
            "No ModelNet data found, so there is nothing to train on. Download it with "
            "clip2point data download modelnet10 -o DIR and start the app with --data-dir DIR "
            "(or set $CLIP2POINT_DATA).", "info"), elem_id="fs-nodata")
    with gr.Group():
        dataset = Dropdown(datasets or ["modelnet10"], value=(datasets or ["modelnet10"])[0], label="Dataset",
                           interactive=bool(datasets))
        shots = Radio(list(limits.fewshot_shots), value=max(limits.fewshot_shots), label="Shots (shapes per class)")
        epochs = Slider(1, limits.fewshot_max_epochs, value=min(30, limits.fewshot_max_epochs), step=1, label="Epochs")
        gate = Radio([("view · GDPA (learned per-view gate)", "view"), ("none · released DPA (fixed 0.5/0.5)", "none")],
                     value="view", label="Gate")
    with gr.Accordion("More settings", open=False):
        views = Radio([FEWSHOT_VIEWS, DEFAULT_VIEWS], value=FEWSHOT_VIEWS, label="View set")
        limit = Number(200, precision=0, minimum=0, maximum=limits.fewshot_max_test_shapes,
                       label="Test shapes (class-balanced subset; 0 = all)")
        val = Number(4, precision=0, minimum=0, maximum=limits.fewshot_max_val_per_class,
                     label="Validation shapes per class")
    with gr.Row():
        start_btn = gr.Button("Start", variant="primary", interactive=bool(datasets), elem_id="fs-start")
        stop_btn = gr.Button("Stop", variant="stop", interactive=False, elem_id="fs-stop")
    status = gr.HTML(figures.message_html("idle", "info"), elem_id="fs-status")
    classify_btn = gr.Button("Classify the current shape with the adapter", size="sm", elem_id="fs-classify")
    return dict(dataset=dataset, shots=shots, epochs=epochs, gate=gate, views=views, limit=limit, val=val,
                start_btn=start_btn, stop_btn=stop_btn, status=status, classify_btn=classify_btn)


def wire_fewshot(demo: gr.Blocks, tab: FewShotTab, h: FewShotHandlers, ctx: AppContext) -> None:
    """Connect the tab's events: Start/Stop/Classify return at once, the timer polls the run."""
    session = tab.page.state
    light = dict(concurrency_limit=None, show_progress="hidden")
    tab.start_btn.click(h.start, [session, tab.state, tab.dataset, tab.shots, tab.epochs, tab.gate, tab.views,
                                  tab.limit, tab.val], tab.outs, api_name="fewshot_start", concurrency_limit=None)
    tab.timer.tick(h.poll, [session, tab.state], [session, *tab.outs], api_name="fewshot_poll", **light)
    tab.stop_btn.click(h.stop, tab.state, tab.status, api_name="fewshot_stop", **light)
    tab.classify_btn.click(h.classify, [session, tab.state],
                           [session, tab.status, tab.gate_plot, tab.adapter_plot, tab.zero_plot],
                           api_name="fewshot_classify", **ctx.heavy)
    demo.unload(h.on_unload)
