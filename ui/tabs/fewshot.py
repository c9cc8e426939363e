"""The Few-shot tab: train a GDPA adapter in the background, compare it with zero-shot, reopen saved runs.

Start, Stop and Classify return at once; the run is a thread (:class:`ui.runs.FewShotRunner`,
started through the server's :class:`ui.runs.RunPool`, which caps runs per server and per tab)
polled by a timer. Before Start the tab shows what the run will cost (:func:`ui.runs.estimate_run`,
from the measured encoder speed); while encoding, progress with elapsed time and time left. When
it ends, its mean gate per view and the adapter's and zero-shot's scores on the Zero-shot tab's
current shape are shown (:func:`ui.adapters.compare_on_shape`). Runs stay on disk: the run
browser (:func:`ui.runs.list_runs`) reopens one after a page reload and classifies with its adapter.
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
from ui.runs import (FULL_PROTOCOL_COMMAND, QUICK_RUN, FewShotRunner, RunLimitError, RunState, clean_old_runs,
                     estimate_run, list_runs)
from ui.session import Session
from ui.tabs.common import AppContext, Dropdown, Number, Page, Radio, Slider, html_path, section, show_error

log = logging.getLogger(__name__)

__all__ = ["FewShotState", "FewShotTab", "FewShotHandlers", "build_fewshot_tab", "wire_fewshot", "new_run_dir",
           "fewshot_status_html", "run_gate_mean", "stop_fewshot_state", "runs_table_html", "POLL_S"]

#: Seconds between two polls of a running run.
POLL_S = 1.0


@dataclass
class FewShotState:
    """One browser tab's few-shot state: the current run, the run opened from the run browser, the
    depth encoder loaded in this tab, and the loaded adapter."""

    runner: FewShotRunner | None = None
    classifier: Any = None
    classifier_dir: str = ""
    shown_epochs: int = -1
    opened: str = ""
    depth: Any = None


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


def fewshot_status_html(state: RunState, epochs: int = 0, note: str = "") -> str:
    """The status line: what the run does (one progress text, see :meth:`RunState.describe`), the
    validation accuracy (best so far), the run folder once finished, and ``note`` on a second line."""
    parts = [state.describe()]
    if state.history and state.status != "failed":
        last = state.history[-1]
        val, best = last.get("val_acc"), last.get("best_val_acc")
        if val is not None and val == val:
            parts.append(f"val acc {val:.1%}" + (f" (best {best:.1%})" if best is not None and best == best else ""))
    if state.run_dir is not None and state.finished:
        parts.append(f"run folder {state.run_dir.name}")
    kind = "error" if state.status == "failed" else "info"
    html = figures.message_html(" · ".join(parts), kind)
    return html[:-len("</div>")] + f"<br>{figures.escape(note)}</div>" if note else html


def run_gate_mean(gate) -> tuple[list[float] | None, str]:
    """A run's per-view gate (a :class:`~clip2point.fewshot.rundir.GateWeights`, or a
    :class:`RunState`) averaged over the test shapes, else the validation shapes, and which:
    "test set (mean)" or "validation set (mean, the run was not tested)" ((None, "") without one)."""
    gate = gate.gate_weights() if isinstance(gate, RunState) else gate
    if gate is None:
        return None, ""
    return gate.per_view.tolist(), ("test set (mean)" if gate.split == "test"
                                    else "validation set (mean, the run was not tested)")


def stop_fewshot_state(fs: Any) -> None:
    """``delete_callback`` of a tab's few-shot state: gradio calls it when the state is dropped
    (idle past its time-to-live, or its tab closed); the tab's run, if any, is asked to stop."""
    runner = getattr(fs, "runner", None)
    if runner is not None and runner.running:
        log.info("few-shot state of a closed or idle tab deleted: stopping its run in %s", runner.config.out_dir)
        runner.stop()


def runs_table_html(runs) -> str:
    """The run browser's table: folder, settings, accuracy, status, date (newest first)."""
    if not runs:
        return figures.empty_html("No saved runs yet: Start one above; it stays here after a reload.")
    rows = []
    for r in runs:
        acc = (f"{r.test_accuracy:.1%} test" if r.test_accuracy is not None
               else f"{r.val_accuracy:.1%} val" if r.val_accuracy is not None else "—")
        rows.append(f"<tr><td><code>{figures.escape(r.path.name)}</code></td><td>{figures.escape(r.dataset)}</td>"
                    f"<td>{r.shots}</td><td>{figures.escape(r.gate)}</td><td>{figures.escape(r.views)}</td>"
                    f"<td>{figures.escape(r.paths)}</td><td>{r.epochs}/{r.epochs_planned}</td><td>{acc}"
                    f"{' (random weights)' if r.random_weights else ''}</td><td>{figures.escape(r.status)}</td>"
                    f"<td>{r.date}</td></tr>")
    head = "".join(f"<th style='text-align:left;padding-right:.6rem'>{h}</th>" for h in (
        "run", "dataset", "shots", "gate", "views", "paths", "epochs", "accuracy", "status", "date"))
    return (f'<div class="c2p-info" id="fs-runs-table" style="overflow-x:auto"><table style="font-size:.8rem">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


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
    cost: gr.HTML
    paths_note: gr.HTML
    depth_file: gr.File
    classify_btn: gr.Button
    runs: gr.Dropdown
    refresh_btn: gr.Button
    runs_table: gr.HTML
    curves: gr.Plot
    gate_head: gr.HTML
    gate_plot: gr.Plot
    adapter_plot: gr.Plot
    zero_plot: gr.Plot
    timer: gr.Timer
    state: gr.State

    @property
    def settings(self) -> list:
        """The run settings, in the order of :meth:`FewShotHandlers.start`'s arguments."""
        return [self.dataset, self.shots, self.epochs, self.gate, self.views, self.limit, self.val]

    @property
    def outs(self) -> list:
        """Outputs of Start and of each poll (after the session)."""
        return [self.state, self.status, self.curves, self.gate_head, self.gate_plot, self.adapter_plot,
                self.zero_plot, self.timer, self.start_btn, self.stop_btn]


# ----------------------------------------------------------------------------------------------
# handlers


class FewShotHandlers:
    """The tab's event handlers."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    # -- the backbone a run uses -----------------------------------------------------------------
    def run_backbone(self, session: Session | None, fs: FewShotState):
        """The frozen encoders of a new run: with the depth encoder loaded in this tab, else the one
        the Zero-shot tab uses, else the app's backbone (a depth encoder only if the app has one)."""
        if fs.depth is not None and fs.depth.backbone is not None:
            return fs.depth.backbone
        if isinstance(session, Session) and session.encoder == "depth" and session.depth_encoder_path:
            handle = session.depth_encoder()
            if handle is not None and handle.backbone is not None:
                return handle.backbone
        if self.ctx.spec.depth_encoder:  # the app was started with --depth-encoder
            return self.ctx.registry.depth_encoder(self.ctx.spec, self.ctx.spec.depth_encoder).backbone
        return self.ctx.registry.model(self.ctx.spec).backbone

    def paths_html(self, session: Session | None, fs: FewShotState) -> str:
        """Which encoders the two GDPA paths use, and the clip+clip warning with how to fix it."""
        backbone = self.run_backbone(session, fs)
        if backbone.depth_encoder is not None:
            name = fs.depth.name if fs.depth is not None else "loaded"
            return figures.message_html(f"Paths depth+clip: path A = CLIP2Point depth encoder ({name}), "
                                        "path B = CLIP. The gate chooses between them per view.", "info")
        return ('<div class="c2p-msg error" id="fs-clipclip" style="background:rgba(217,119,6,.08);'
                'border-color:rgba(217,119,6,.45);color:inherit">'
                f"<b>Paths clip+clip.</b> {figures.escape(gate_figures.CLIP_CLIP_NOTE)} Load one below.</div>")

    def on_depth_file(self, session, fs, file, *settings):
        """Load a CLIP2Point depth encoder for this tab's runs (path A), then the new paths and cost."""
        fs = fs if isinstance(fs, FewShotState) else FewShotState()
        if file:
            try:
                fs.depth = self.ctx.registry.depth_encoder(self.ctx.spec, str(file))
            except Exception as err:  # noqa: BLE001 - the upload's temporary path means nothing to the user
                msg = str(err).replace(str(file), Path(str(file)).name)
                return fs, figures.message_html(f"depth encoder not loaded: {msg}", "error"), gr.skip()
        else:
            fs.depth = None
        return fs, self.paths_html(session, fs), self.estimate(session, fs, *settings)

    # -- cost ------------------------------------------------------------------------------------
    def estimate(self, session, fs, dataset, shots, epochs, gate, views, limit_test, val_per_class) -> str:
        """What a run with these settings will encode and about how long (before Start)."""
        from clip2point.fewshot import FewShotConfig

        ctx = self.ctx
        fs = fs if isinstance(fs, FewShotState) else FewShotState()
        if not ctx.datasets or dataset not in ctx.datasets:
            return ""
        try:
            shots, epochs, limit_test, val_per_class = ctx.limits.check_fewshot(shots, epochs, limit_test, val_per_class)
            cfg = FewShotConfig(dataset=dataset, shots=shots, epochs=epochs, gate=gate, views=ctx.limits.check_views(views),
                                limit_test=limit_test, val_per_class=val_per_class, out_dir="-")
            train = ctx.registry.dataset(ctx.data_root, dataset, "train")
            test = ctx.registry.dataset(ctx.data_root, dataset, "test")
            cost = estimate_run(cfg, self.run_backbone(session, fs), train.labels, len(test))
        except Exception as err:  # noqa: BLE001 - an estimate never blocks the tab
            return figures.message_html(f"no cost estimate: {figures.escape(str(err))}", "info")
        return (f'<div class="c2p-info" id="fs-cost"><b>This run:</b> {figures.escape(cost.describe())}.</div>')

    # -- results ---------------------------------------------------------------------------------
    def results(self, session: Session | None, fs: FewShotState, run_dir: Path | None, gate) -> tuple:
        """(session, gate heading, gate figure, adapter figure, zero-shot figure, note) of a run's
        adapter on the current shape of the Zero-shot tab (the default example when none is loaded)."""
        from clip2point.fewshot import load_adapter
        from clip2point.fewshot.rundir import RunFolder

        ctx = self.ctx
        session = ctx.new_session(session)
        if run_dir is None or not (Path(run_dir) / "adapter.safetensors").is_file():
            msg = "no epoch finished, so there is no adapter to show"
            return session, "", figures.placeholder_figure(msg, 200), None, None, msg
        if fs.classifier is None or fs.classifier_dir != str(run_dir):
            run = RunFolder(run_dir)
            backbone = self.run_backbone(session, fs)
            if run.paths == "depth+clip" and backbone.depth_encoder is None and run.depth_encoder_file is None:
                raise Clip2PointError(f"run {run.path.name} was trained with a CLIP2Point depth encoder "
                                      f"({Path(str(run.backbone_info.get('depth_encoder') or '?')).name}); "
                                      "load it in this tab (Depth encoder) to classify with its adapter")
            fs.classifier = load_adapter(run, backbone, cache=ctx.registry.view_cache)
            fs.classifier_dir = str(run_dir)
        cmp = compare_on_shape(session, fs.classifier)
        head, gate_fig, adapter, zero = self.figures(cmp, gate)
        return session, head, gate_fig, adapter, zero, cmp.note()

    @staticmethod
    def figures(cmp: AdapterComparison, gate) -> tuple:
        """(heading, gate per view: run mean and this shape, adapter top 5, zero-shot top 5)."""
        res, zs, truth = cmp.adapter, cmp.zero_shot, cmp.true_label
        thumbs = depth_thumbnails(res.depth[0] if res.depth is not None else None)
        mean, mean_name = run_gate_mean(gate)
        paths = res.paths or "clip+clip"
        a, b = gate_figures.path_names(paths)
        head = (f"Gate per view: α = share of path A ({a}) vs path B ({b}) · bars: "
                f"{mean_name or 'no run mean'} and {cmp.shape_name} (thumbnails: its depth views)")
        fig = gate_figures.gate_views_figure(res.view_labels, mean, res.gate[0].numpy(), thumbs, mean_name or "mean",
                                             paths=paths)
        adapter = figures.probability_figure(res.classes, res.probs[0].numpy(), 5, truth)
        zero = figures.probability_figure(zs.classes, zs.probs[0].numpy(), 5, truth)
        return _section_html(head), fig, adapter, zero

    def buttons(self, running: bool) -> tuple:
        """(Start, Stop) updates: Start while idle and data exists, Stop while running."""
        return gr.update(interactive=not running and bool(self.ctx.datasets)), gr.update(interactive=running)

    # -- a run -----------------------------------------------------------------------------------
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
            runner = self.start_run(owner, session, fs, dataset, shots, epochs, gate, views, limit_test, val_per_class)
        except Exception as err:  # noqa: BLE001 - shown to the user
            running = fs.runner is not None and fs.runner.running
            return (fs, show_error(err, "few-shot start")) + (gr.skip(),) * 6 + self.buttons(running)
        fs.runner, fs.classifier, fs.classifier_dir, fs.shown_epochs, fs.opened = runner, None, "", 0, ""
        wait = figures.placeholder_figure("results appear when the run ends", 200)
        return (fs, fewshot_status_html(runner.state), gate_figures.training_curves_figure([]),
                _section_html("Gate per view"), wait, None, None, gr.Timer(active=True), *self.buttons(True))

    def start_run(self, owner: str, session, fs: FewShotState, dataset, shots, epochs, gate, views, limit_test,
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
        backbone = self.run_backbone(session, fs)  # shared with the zero-shot tab; its device is the run's
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
            return (session, fs) + (gr.skip(),) * 6 + (gr.Timer(active=False),) + self.buttons(False)
        state = fs.runner.state
        curves = gr.skip()
        if len(state.history) != fs.shown_epochs or state.finished:
            curves, fs.shown_epochs = gate_figures.training_curves_figure(state.history), len(state.history)
        status = fewshot_status_html(state)
        if not state.finished:
            return (session, fs, status, curves) + (gr.skip(),) * 4 + (gr.skip(), *self.buttons(True))
        head = gate = adapter = zero = gr.skip()
        if state.status != "failed":
            try:
                session, head, gate, adapter, zero, note = self.results(session, fs, state.run_dir, state)
                status = fewshot_status_html(state, note=note)
            except Exception as err:  # noqa: BLE001
                status = show_error(err)
        return (session, fs, status, curves, head, gate, adapter, zero, gr.Timer(active=False), *self.buttons(False))

    def stop(self, fs):
        """Ask the run to stop within one training step or encoder batch (the poll then shows "cancelled")."""
        if isinstance(fs, FewShotState) and fs.runner is not None and fs.runner.running:
            fs.runner.stop()
            return fewshot_status_html(fs.runner.state)
        return gr.skip()

    # -- saved runs ------------------------------------------------------------------------------
    def list_runs(self, fs=None):
        """(run dropdown update, run table) of the run folders on disk, newest first."""
        runs = list_runs(self.ctx.runs_root)
        opened = fs.opened if isinstance(fs, FewShotState) else ""
        choices = [(r.label(), str(r.path)) for r in runs]
        value = opened if any(c[1] == opened for c in choices) else None
        return gr.update(choices=choices, value=value), runs_table_html(runs)

    def open_run(self, session, fs, choice):
        """Open a saved run: its curves, its gate and its adapter on the current shape."""
        from clip2point.fewshot.rundir import RunFolder

        fs = fs if isinstance(fs, FewShotState) else FewShotState()
        if not choice:
            return (session, fs) + (gr.skip(),) * 6
        try:
            path = self.checked_run_path(choice)
            run = RunFolder(path)
            curves = gate_figures.training_curves_figure(run.history)
            fs.opened = str(path)
            if fs.runner is not None and not fs.runner.running:
                fs.runner = None  # Classify now uses the opened run
            session, head, gate, adapter, zero, note = self.results(session, fs, path, run.gate_weights())
        except Exception as err:  # noqa: BLE001
            return (session, fs, show_error(err, "opening the run")) + (gr.skip(),) * 5
        text = f"opened run {path.name} ({run.config.dataset}, {run.config.shots}-shot, gate {run.config.gate}) · {note}"
        return session, fs, figures.message_html(text, "info"), curves, head, gate, adapter, zero

    def checked_run_path(self, choice: str) -> Path:
        """``choice`` as a run folder directly inside the runs folder (nothing else is opened)."""
        root = self.ctx.runs_root.resolve()
        path = Path(str(choice)).resolve()
        if path.parent != root or not (path / "config.json").is_file():
            raise Clip2PointError(f"{Path(str(choice)).name!r} is not a run of this app; pick one from the list")
        return path

    def classify(self, session, fs):
        """Classify the Zero-shot tab's current shape with the adapter of the finished or opened run."""
        fs = fs if isinstance(fs, FewShotState) else FewShotState()
        if fs.runner is not None and fs.runner.state.finished:
            run_dir, gate = fs.runner.state.run_dir, fs.runner.state
        elif fs.runner is None and fs.opened:
            from clip2point.fewshot.rundir import RunFolder

            run_dir = Path(fs.opened)
            gate = RunFolder(run_dir).gate_weights()
        else:
            return (session, figures.message_html("Train an adapter first (Start) and wait for it to end, or open "
                                                  "a saved run.", "info"), gr.skip(), gr.skip(), gr.skip(), gr.skip())
        try:
            session, head, gate_fig, adapter, zero, note = self.results(session, fs, run_dir, gate)
        except Exception as err:  # noqa: BLE001
            return session, show_error(err), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return session, figures.message_html(note, "info"), head, gate_fig, adapter, zero

    def on_unload(self, request: gr.Request = None):
        """The browser tab closed or reloaded (its heartbeat ended): stop the session's runs."""
        owner = getattr(request, "session_hash", None)
        if owner:
            self.ctx.pool.stop_owner(owner)


# ----------------------------------------------------------------------------------------------
# layout and wiring


def _section_html(title: str) -> str:
    return f'<div class="c2p-section">{figures.escape(title)}</div>'


def _header(ctx: AppContext) -> str:
    """The tab's header: what it does, the default run's size, the full protocol, where runs go."""
    limits = ctx.limits
    return (
        '<div id="fs-header" style="margin:.2rem 0 .4rem"><div style="font-size:1.15rem;font-weight:700">'
        'Few-shot · train a Gated Dual-Path Adapter on K shapes per class</div>'
        '<div class="c2p-footnote">The frozen backbone of this app encodes each shape\'s views once; the adapter '
        '(CLIP2Point §3.3: path A = CLIP2Point depth encoder, path B = CLIP, a learned gate per view) trains on '
        f'the cached features. The defaults ({QUICK_RUN["shots"]} shots, {QUICK_RUN["limit_test"]} test shapes) '
        'take about a minute on a laptop CPU; the full protocol (16 shots, 100 epochs, every test shape): '
        f'<code>{figures.escape(FULL_PROTOCOL_COMMAND)}</code>. Runs go to {html_path(ctx.runs_root)}/&lt;timestamp&gt; '
        f'on {resolve_device(ctx.spec.device)} and stay listed under Saved runs; {limits.max_runs} run(s) train at '
        f'once on this server, {limits.max_runs_per_session} per tab; a run stops when its tab closes'
        + (f'; run folders older than {limits.runs_max_age_days:g} days are deleted' if limits.runs_max_age_days else '')
        + '.</div></div>')


def build_fewshot_tab(ctx: AppContext, page: Page) -> FewShotTab:
    """Lay the tab out (call inside ``gr.Tab``): header; Start/Stop, status, cost and settings;
    curves, gate and results; saved runs."""
    gr.HTML(_header(ctx))
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=330):
            controls = _controls(ctx)
        with gr.Column(scale=11, min_width=600):
            section("Training: loss and accuracy per epoch")
            curves = gr.Plot(show_label=False, elem_id="fs-curves")
            gate_head = gr.HTML(_section_html("Gate per view (α = share of path A, the CLIP2Point depth encoder; "
                                              "path B = CLIP)"), elem_id="fs-gate-head")
            gate_plot = gr.Plot(show_label=False, elem_id="fs-gate")
            with gr.Row():
                with gr.Column():
                    section("Current shape · few-shot adapter (top 5)")
                    adapter_plot = gr.Plot(show_label=False, elem_id="fs-adapter")
                with gr.Column():
                    section("Current shape · zero-shot, same classes (top 5)")
                    zero_plot = gr.Plot(show_label=False, elem_id="fs-zeroshot")
            section("Saved runs (on disk: they survive a reload)")
            runs_table = gr.HTML(runs_table_html(list_runs(ctx.runs_root)), elem_id="fs-runs")
    timer = gr.Timer(POLL_S, active=False)
    # deleted 2 h after its last update, or an hour after its tab closed: its run stops then too
    state = gr.State(None, time_to_live=2 * 3600, delete_callback=stop_fewshot_state)
    return FewShotTab(page=page, **controls, runs_table=runs_table, curves=curves, gate_head=gate_head,
                      gate_plot=gate_plot, adapter_plot=adapter_plot, zero_plot=zero_plot, timer=timer, state=state)


def _controls(ctx: AppContext) -> dict[str, Any]:
    """Start/Stop and the status first (visible at 1280×720), the cost, the settings, the paths,
    Classify, the run picker."""
    limits, datasets = ctx.limits, ctx.datasets
    if not datasets:
        gr.HTML(figures.message_html(
            "No ModelNet data found, so there is nothing to train on. Download it with "
            "clip2point data download modelnet10 -o DIR and start the app with --data-dir DIR "
            "(or set $CLIP2POINT_DATA).", "info"), elem_id="fs-nodata")
    with gr.Row():
        start_btn = gr.Button("Start", variant="primary", interactive=bool(datasets), elem_id="fs-start")
        stop_btn = gr.Button("Stop", variant="stop", interactive=False, elem_id="fs-stop")
    status = gr.HTML(figures.message_html("idle", "info"), elem_id="fs-status")
    cost = gr.HTML("", elem_id="fs-cost-box")
    with gr.Group():
        dataset = Dropdown(datasets or ["modelnet10"], value=(datasets or ["modelnet10"])[0], label="Dataset",
                           interactive=bool(datasets))
        shots = Radio(list(limits.fewshot_shots), label="Shots (shapes per class)", elem_id="fs-shots",
                      value=QUICK_RUN["shots"] if QUICK_RUN["shots"] in limits.fewshot_shots else min(limits.fewshot_shots))
        epochs = Slider(1, limits.fewshot_max_epochs, value=min(QUICK_RUN["epochs"], limits.fewshot_max_epochs), step=1,
                        label="Epochs", elem_id="fs-epochs")
        gate = Radio([("view · GDPA (learned per-view gate)", "view"), ("none · released DPA (fixed 0.5/0.5)", "none")],
                     value="view", label="Gate")
    with gr.Accordion("More settings", open=False, elem_id="fs-more"):
        views = Radio([FEWSHOT_VIEWS, DEFAULT_VIEWS], value=FEWSHOT_VIEWS, label="View set")
        limit = Number(min(QUICK_RUN["limit_test"], limits.fewshot_max_test_shapes), precision=0, minimum=0,
                       maximum=limits.fewshot_max_test_shapes, label="Test shapes (class-balanced subset; 0 = all)",
                       elem_id="fs-limit")
        val = Number(min(QUICK_RUN["val_per_class"], limits.fewshot_max_val_per_class), precision=0, minimum=0,
                     maximum=limits.fewshot_max_val_per_class, label="Validation shapes per class",
                     elem_id="fs-val")
    paths_note = gr.HTML("", elem_id="fs-paths")
    with gr.Accordion("Depth encoder (path A)", open=False):
        depth_file = gr.File(label="CLIP2Point depth encoder (best_eval.pth / .pth / .safetensors)",
                             file_types=[".pth", ".pt", ".safetensors", ".bin"], type="filepath", height=90,
                             elem_id="fs-depth-file")
    classify_btn = gr.Button("Classify the current shape with the adapter", size="sm", elem_id="fs-classify")
    with gr.Row(equal_height=True):
        runs = Dropdown([], value=None, label="Saved runs: open one (curves, gate, classify)", elem_id="fs-runs-pick",
                        scale=4)
        refresh_btn = gr.Button("↻", size="sm", scale=0, min_width=40, elem_id="fs-runs-refresh")
    return dict(dataset=dataset, shots=shots, epochs=epochs, gate=gate, views=views, limit=limit, val=val,
                start_btn=start_btn, stop_btn=stop_btn, status=status, cost=cost, paths_note=paths_note,
                depth_file=depth_file, classify_btn=classify_btn, runs=runs, refresh_btn=refresh_btn)


def wire_fewshot(demo: gr.Blocks, tab: FewShotTab, h: FewShotHandlers, ctx: AppContext) -> None:
    """Connect the tab's events: Start/Stop/Classify return at once, the timer polls the run; the
    cost estimate follows the settings; the run list is read on page load and after each run."""
    session = tab.page.state
    light = dict(concurrency_limit=None, show_progress="hidden")
    settings = tab.settings
    tab.start_btn.click(h.start, [session, tab.state, *settings], tab.outs, api_name="fewshot_start",
                        concurrency_limit=None)
    poll = tab.timer.tick(h.poll, [session, tab.state], [session, *tab.outs], api_name="fewshot_poll", **light)
    poll.then(h.list_runs, tab.state, [tab.runs, tab.runs_table], api_name=False, **light)
    tab.stop_btn.click(h.stop, tab.state, tab.status, api_name="fewshot_stop", **light)
    results = [tab.gate_head, tab.gate_plot, tab.adapter_plot, tab.zero_plot]
    tab.classify_btn.click(h.classify, [session, tab.state], [session, tab.status, *results],
                           api_name="fewshot_classify", **ctx.heavy)
    for control in settings:
        control.change(h.estimate, [session, tab.state, *settings], tab.cost, api_name=False, **light)
    tab.depth_file.change(h.on_depth_file, [session, tab.state, tab.depth_file, *settings],
                          [tab.state, tab.paths_note, tab.cost], api_name="fewshot_depth_encoder", **ctx.heavy)
    tab.refresh_btn.click(h.list_runs, tab.state, [tab.runs, tab.runs_table], api_name="fewshot_runs", **light)
    tab.runs.input(h.open_run, [session, tab.state, tab.runs], [session, tab.state, tab.status, tab.curves, *results],
                   api_name="fewshot_open_run", **ctx.heavy)
    demo.load(h.list_runs, None, [tab.runs, tab.runs_table], api_name=False, **light)
    demo.load(lambda s, fs, *a: (h.paths_html(s, fs if isinstance(fs, FewShotState) else FewShotState()),
                                 h.estimate(s, fs, *a)),
              [session, tab.state, *settings], [tab.paths_note, tab.cost], api_name=False, **light)
    demo.unload(h.on_unload)
