"""The clip2point app: see every step of CLIP2Point zero-shot classification in the browser.

Run ``python -m ui.app --help``. The page shows, for one shape: the points in 3-D with the
cameras around them, per view the depth map CLIP reads beside the CLIP image view from the same
camera, and the zero-shot result (probabilities, and a per-view × per-class logit heat-map with
each view's vote). This module only wires widgets to :mod:`ui.session` (the logic) and
:mod:`ui.figures` (the pictures).

Safe to share (``--share``): every endpoint checks its arguments on the server against one
:class:`~ui.session.AppLimits` (the controls' ranges come from it too) and refuses with one clear
line; uploads are read in a child process with a time and memory limit (``--load-timeout``,
``--load-memory-mb``); few-shot runs are capped per server and per session (``--max-runs``), stop
when their tab closes, and old run folders are deleted (``--runs-max-age-days``).

Scripts use the same server through ``gradio_client``::

    from gradio_client import Client, handle_file
    Client("http://127.0.0.1:7860/").predict(handle_file("chair.ply"), "chair,table", api_name="/classify")
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from clip2point.errors import Clip2PointError
from ui import figures
from ui.runs import FewShotRunner, RunLimitError, RunPool, RunState, clean_old_runs
from ui.session import (
    CLASS_PRESETS,
    DEFAULT_CLASS_SET,
    DEFAULT_EXAMPLE,
    DEFAULT_MODEL,
    DEFAULT_NUM_POINTS,
    DEFAULT_RADIUS,
    DEFAULT_TEMPLATE,
    DEFAULT_VIEWS,
    ENCODERS,
    REGISTRY,
    AppLimits,
    REPO_ROOT,
    UPLOAD_EXTENSIONS,
    ModelRegistry,
    ModelSpec,
    Session,
    ShapeSource,
    available_datasets,
    classify_file,
    dataset_class_counts,
    dataset_indices,
    example_names,
    example_thumbnails,
    find_data_dir,
    probe_weights,
    resolve_device,
    score_features,
    warm_up,
)

log = logging.getLogger(__name__)

__all__ = ["build_app", "main", "parse_args", "Clip2PointApp", "MAX_FILE_SIZE", "CONCURRENCY_LIMIT", "AppLimits"]

#: gradio's upload limit (``AppLimits.max_file_mb`` of the default limits).
MAX_FILE_SIZE = f"{AppLimits().max_file_mb}mb"
#: Heavy events (load + render + encode) handled at once; more queue. Loading and rendering run
#: in parallel; encoder passes go one at a time through ``ui.session.EncodeBatcher`` (batched on GPUs).
CONCURRENCY_LIMIT = 8
_COMPUTE = "compute"

THEME = gr.themes.Soft(
    primary_hue="indigo",
    secondary_hue="amber",
    neutral_hue="slate",
    radius_size="md",
    font=["Inter", "ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
).set(
    block_title_background_fill="transparent",
    block_title_background_fill_dark="transparent",
    block_title_padding="0",
    block_title_text_color="*neutral_700",
    block_title_text_color_dark="*neutral_200",
    block_title_text_size="*text_sm",
    block_label_background_fill="*neutral_100",
    block_label_text_color="*neutral_600",
    block_label_text_size="*text_sm",
)

APP_CSS = figures.CSS + """
.gradio-container {max-width: 1560px !important}
#c2p-header {display:flex; align-items:baseline; gap:.8rem; flex-wrap:wrap; margin:.2rem 0 .1rem}
#c2p-header h1 {font-size:1.55rem; margin:0; font-weight:800; letter-spacing:-.01em}
#c2p-header h1 span {color:#4f46e5}
#c2p-header p {margin:0; opacity:.75; font-size:.92rem}
#c2p-header a {color:inherit !important; text-decoration:underline; padding:0 !important; margin:0 !important;
  background:none !important}
.c2p-section {font-size:.78rem; font-weight:700; text-transform:uppercase; letter-spacing:.08em; opacity:.65;
  margin:.35rem 0 -.2rem .15rem}
#c2p-examples .grid-container {grid-template-columns:repeat(5, minmax(0, 1fr)) !important; gap:6px !important;
  grid-template-rows:none !important; grid-auto-rows:auto !important; height:auto !important}
#c2p-examples .grid-wrap {height:auto !important; min-height:0 !important; padding:6px !important}
#c2p-examples {height:auto !important}
#c2p-examples .thumbnail-item {width:100% !important; height:auto !important; aspect-ratio:1/1; background:#fff}
#c2p-examples .thumbnail-item img {object-fit:contain}
#c2p-examples .caption-label {font-size:.68rem; padding:0 .3rem; max-width:95%}
#c2p-examples .icon-button-wrapper {display:none !important}
#status:not(:has(.c2p-msg)) {display:none}
#prediction {min-height:118px}
#c2p-sidebar {gap:.6rem}
.c2p-footnote {font-size:.78rem; opacity:.7}
"""

_HEADER = """
<div id="c2p-header">
  <h1>clip2point <span>·</span> zero-shot 3-D classification, every step visible</h1>
  <p>Points → multi-view depth maps → CLIP features → per-view logits → prediction
  (CLIP2Point, Huang et al., ICCV 2023, <a href="https://arxiv.org/abs/2210.01055" target="_blank">arXiv 2210.01055</a>).</p>
</div>
"""

_API_NOTE = """
**Use this app from Python** (`pip install gradio_client`):

```python
from gradio_client import Client, handle_file
client = Client("http://127.0.0.1:7860/")   # this server's address
probs = client.predict(handle_file("chair.ply"), "chair,table,lamp", api_name="/classify")
# {'chair': 0.71, 'lamp': 0.17, 'table': 0.12}   optional: template, up axis ("y"/"z"), views ("6"/"10"), number of points
```
Every control is an API endpoint too; the "Use via API" link at the bottom lists them.
"""


def _api_note(limits: AppLimits) -> str:
    """The "Use from Python" text, with the limits the server enforces on every endpoint."""
    return _API_NOTE + (
        f"\n**Limits of this server** (checked on every endpoint, scripts included): {limits.min_points:,}–"
        f"{limits.max_points:,} points · at most {limits.max_classes:,} classes of up to {limits.max_class_chars} "
        f"characters · templates up to {limits.max_template_chars} characters · view sets "
        f"{', '.join(limits.view_sets)} · splat radius {limits.min_radius:g}–{limits.max_radius:g} · uploads up to "
        f"{limits.max_file_mb} MB, read within {limits.load_timeout_s:g} s and {limits.load_memory_mb:,} MiB · "
        f"{limits.max_runs} few-shot run(s) at once per server, {limits.max_runs_per_session} per session. "
        "A request beyond them gets a one-line error.\n"
    )


class Clip2PointApp(gr.Blocks):
    """``gr.Blocks`` whose :meth:`launch` defaults to the app's theme, CSS and upload limit.

    Attributes (set by :func:`build_app`):
        limits: the :class:`AppLimits` every handler checks.
        run_pool: the server's :class:`~ui.runs.RunPool` of few-shot runs.
        runs_dir: where the few-shot runs go.
    """

    limits: AppLimits = AppLimits()
    run_pool: RunPool | None = None
    runs_dir: Path | None = None

    def launch(self, *args: Any, **kwargs: Any):  # noqa: D102 - see gr.Blocks.launch
        kwargs.setdefault("theme", THEME)
        kwargs.setdefault("css", APP_CSS)
        kwargs.setdefault("max_file_size", f"{self.limits.max_file_mb}mb")
        return super().launch(*args, **kwargs)


# ----------------------------------------------------------------------------------------------
# input components whose refusals are one clear line (no traceback in the server log)


class _QuietRefusal:
    """Mixin for gradio input components: a value the component refuses (out of a slider's range,
    not one of a radio's choices, not a number) becomes a one-line ``gr.Error`` that names the
    control and the allowed values, logged as one line instead of a traceback.

    The subclasses keep gradio's class names, so the page uses the same front-end components.
    """

    def preprocess(self, payload: Any) -> Any:  # noqa: D102 - gradio's, with clearer refusals
        try:
            bounded = getattr(self, "minimum", None) is not None or getattr(self, "maximum", None) is not None
            if bounded and isinstance(payload, float) and not math.isfinite(payload):
                raise ValueError("not a finite number")  # gradio's range check lets NaN through
            return super().preprocess(payload)  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - gr.Error or a TypeError from comparing a bad payload
            label = getattr(self, "label", None) or type(self).__name__.lower()
            shown = repr(payload) if len(repr(payload)) <= 40 else repr(payload)[:40] + "…"
            lo, hi = getattr(self, "minimum", None), getattr(self, "maximum", None)
            choices = getattr(self, "choices", None)
            if lo is not None or hi is not None:
                allowed = f"use {lo:g} to {hi:g}" if lo is not None and hi is not None else (
                    f"use at least {lo:g}" if lo is not None else f"use at most {hi:g}")
            elif choices:
                allowed = "choose one of " + ", ".join(str(v) for _, v in choices)[:300]
            else:
                allowed = "check the value"
            msg = f"{label}: {shown} is not allowed here; {allowed}"
            log.info("refused a request: %s", msg)
            raise gr.Error(msg, print_exception=False) from None


def _quiet_components() -> tuple[type, ...]:
    """Slider, Number, Radio and Dropdown with :class:`_QuietRefusal` (same names as gradio's).

    gradio's component metaclass writes a ``.pyi`` stub beside the module that defines a component
    subclass; that would put a generated file into this repository on import, so the stub writer
    is switched off while these four classes are made.
    """
    import gradio.component_meta as meta

    original = meta.create_or_modify_pyi
    meta.create_or_modify_pyi = lambda *_args, **_kwargs: None
    try:
        return tuple(type(base.__name__, (_QuietRefusal, base),
                          {"__module__": __name__, "__doc__": f"``gr.{base.__name__}`` with one-line refusals."})
                     for base in (gr.Slider, gr.Number, gr.Radio, gr.Dropdown))
    finally:
        meta.create_or_modify_pyi = original


Slider, Number, Radio, Dropdown = _quiet_components()


# ----------------------------------------------------------------------------------------------
# presentation of session objects


def _banner(session: Session) -> str:
    return figures.weights_banner_html(session.weights_status())


def _plot(session: Session, color_by: str):
    shape, views = session.shape, session.views
    if shape is None:
        return None
    elev, azim, labels = (), (), ()
    if views is not None:
        from clip2point.render import get_view_set

        vs = get_view_set(views.view_set)
        elev, azim, labels = vs.elev, vs.azim, views.labels
    return figures.point_cloud_figure(shape.points, shape.colors, "colors" if color_by == "file colours" else "height",
                                      elev, azim, labels)


def _info(session: Session) -> str:
    shape, views = session.shape, session.views
    if shape is None:
        return ""
    seconds = {"load": shape.seconds}
    if views is not None:
        seconds.update(views.seconds)
        seconds.update(session.seconds)
    return figures.shape_info_html(shape.name, shape.kind, len(shape.points), shape.num_input_points, shape.up,
                                   len(views) if views is not None else None, seconds)


def _cards(session: Session) -> str:
    views, result = session.views, session.result
    if views is None:
        return figures.empty_html("Load a shape to see its depth maps and CLIP image views.")
    votes = probs = pred = None
    if result is not None:
        votes, probs = result.view_votes(), result.view_vote_probs()
        pred = result.predictions()[0]
    return figures.view_cards_html(views.depth.numpy(), views.images, views.labels, votes, probs, pred, views.cache)


def _result_outputs(session: Session, top_k: int) -> tuple[str, Any, Any]:
    """(prediction html, probability figure, heat-map) of the session's latest result."""
    res, shape = session.result, session.shape
    truth = shape.true_label if shape is not None else None
    top_class, top_prob = res.top(1)[0]
    random_weights = session.weights_status().is_random
    pred = figures.prediction_html(top_class, top_prob, res.view_logits.shape[1], len(res.classes), truth,
                                   random_weights, _encoder_name(session), res.view_votes())
    bars = figures.probability_figure(res.classes, res.probs[0].numpy(), int(top_k), truth)
    heat = figures.view_logit_heatmap(res.classes, res.view_logits[0].numpy(), res.view_labels, true_label=truth)
    return pred, bars, heat


def _encoder_name(session: Session) -> str:
    """Which tower scored the views, for the prediction card."""
    return ENCODERS[session.encoder]


def _error_message(err: BaseException, what: str = "request") -> str:
    """The one line a user sees; logs it (one line for user errors, a traceback for the rest).

    Must be called inside the ``except`` block (for the traceback).
    """
    if isinstance(err, Clip2PointError):
        msg = " ".join(str(err).split())  # one line, whatever the message held
        log.info("%s refused: %s", what, msg)
    else:
        log.exception("%s failed with an unexpected error", what)
        msg = f"internal error ({type(err).__name__}: {' '.join(str(err).split())[:300]}); see the server log"
    return msg


def _error(err: BaseException, what: str = "request") -> str:
    """Show an error as a toast and return the status-box HTML (see :func:`_error_message`)."""
    msg = _error_message(err, what)
    gr.Warning(msg)
    return figures.message_html(msg, "error")


def _html_path(path: Path) -> str:
    """A path for the page: relative to the repository when inside it."""
    try:
        shown = Path(path).resolve().relative_to(REPO_ROOT)
    except ValueError:
        shown = Path(path)
    return figures._esc(str(shown))


def _progress_adapter(progress: gr.Progress):
    return lambda fraction, message: progress(fraction, desc=message)



# ----------------------------------------------------------------------------------------------
# few-shot tab (background runs of clip2point.fewshot through ui.runs.FewShotRunner)

#: Where the app's few-shot runs go (one ``<timestamp>`` folder per run; gitignored).
FEWSHOT_RUNS_DIR = REPO_ROOT / "runs" / "app"
#: Names of the view sets in the page.
VIEW_SET_NAMES = {"6": "zero-shot", "10": "pre-training"}
_FEWSHOT_POLL_S = 1.0


@dataclass
class _FewShot:
    """One browser tab's few-shot state: the current run and its loaded adapter."""

    runner: FewShotRunner | None = None
    classifier: Any = None
    classifier_dir: str = ""
    shown_epochs: int = -1


def _new_run_dir(root: Path) -> Path:
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


def _fewshot_status(state: RunState, epochs: int) -> str:
    """The status line: status/stage, epoch x/y, validation accuracy (best so far), test accuracy."""
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
    return figures.message_html(" · ".join(parts), kind)


def _run_gate_mean(state: RunState) -> tuple[list[float] | None, str]:
    """The run's per-view gate averaged over the test shapes (else the validation shapes)."""
    metrics = state.result.metrics if state.result is not None else {}
    if metrics.get("gate_weights"):
        return metrics["gate_weights"], "test set (mean)"
    if metrics.get("val_gate_weights"):
        return metrics["val_gate_weights"], "validation set (mean)"
    return None, ""


def stop_fewshot_state(fs: Any) -> None:
    """``delete_callback`` of a tab's few-shot state: gradio calls it when the state is dropped
    (idle past its time-to-live, or its tab closed); the tab's run, if any, is asked to stop."""
    runner = getattr(fs, "runner", None)
    if runner is not None and runner.running:
        log.info("few-shot state of a closed or idle tab deleted: stopping its run in %s", runner.config.out_dir)
        runner.stop()


# ----------------------------------------------------------------------------------------------
# the app


def build_app(
    model_name: str = DEFAULT_MODEL,
    weights: str | None = None,
    device: str = "auto",
    data_dir: str | os.PathLike | None = None,
    depth_encoder: str | None = None,
    registry: ModelRegistry = REGISTRY,
    concurrency_limit: int = CONCURRENCY_LIMIT,
    runs_dir: str | os.PathLike | None = None,
    limits: AppLimits | None = None,
    run_pool: RunPool | None = None,
) -> gr.Blocks:
    """Build the app (nothing heavy is loaded until the first request needs it).

    Args:
        model_name: open_clip architecture ("ViT-B-32"; "tiny-ViT-test" in tests).
        weights: None (search; random with a red banner if none found), "random", a tag, a file.
        device: "auto", "cpu", "cuda", ...
        data_dir: ModelNet folder for the dataset browser (default: ``$CLIP2POINT_DATA`` or ``../shared/data``).
        depth_encoder: a CLIP2Point depth-encoder file to start with (``best_eval.pth``).
        registry: where models are cached (shared by all sessions).
        concurrency_limit: heavy events running at once.
        runs_dir: where the Few-shot tab writes its runs (default ``runs/app`` in the repository).
        limits: what one request may ask for (default :class:`AppLimits()`): the controls' ranges,
            checked again by every handler on the server; upload read limits; few-shot run caps;
            the age after which run folders are deleted (at start-up and before each new run).
        run_pool: the few-shot runs of this server (default: a new pool with ``limits``' caps).

    Returns:
        A queued :class:`Clip2PointApp` (a ``gr.Blocks``); call ``.launch()``.
    """
    limits = limits or AppLimits()
    spec = ModelSpec(model_name, weights, device, depth_encoder)
    data_root = find_data_dir(data_dir)
    datasets = available_datasets(data_root, registry)
    thumbs = [(img, name) for img, name in example_thumbnails()]
    names = example_names()
    runs_root = Path(runs_dir) if runs_dir is not None else FEWSHOT_RUNS_DIR
    pool = run_pool or RunPool(limits.max_runs, limits.max_runs_per_session)
    clean_old_runs(runs_root, limits.runs_max_age_days, keep=pool.running_dirs())

    def new_session(session: Session | None) -> Session:
        return session if isinstance(session, Session) else Session(spec, registry, limits)

    def initial_banner() -> str:
        return _banner(Session(spec, registry, limits))

    # ---------------------------------------------------------------- step 1: shape → views
    def show_views(session: Session | None, source: ShapeSource | None, up: str | None, num_points: int, views: str,
                   radius: float, color_by: str, progress: gr.Progress, set_up: bool = False) -> tuple:
        """Load (if ``source``) and render; returns the ``view_outs`` (scores follow in a chained event).

        Splitting the views from the scores puts the views on screen while the encoder runs
        (a single streaming event would keep its progress overlay on every output until the end).
        ``set_up``: show the up axis the shape was read with in the up-axis control.
        """
        session = new_session(session)
        try:
            progress(0.0, desc="reading the shape…")
            views, radius = limits.check_views(views), limits.check_radius(radius)  # before any work
            if source is not None:
                session.load(source, limits.check_num_points(num_points), up)
            progress(0.3, desc=f"rendering {views} views…")
            session.render(views, radius)
        except Exception as err:  # noqa: BLE001 - shown to the user, the app keeps running
            return (session, _error(err, "loading a shape")) + (gr.skip(),) * 8
        if session.scores_due:  # no stale scores beside new views
            n = len(session.views)
            waiting = figures.message_html(f"Encoding {n} views and scoring…", "info")
            bars = figures.placeholder_figure(f"encoding {n} views…", 200)
            heat = figures.placeholder_figure("per-view logits follow", 200)
        else:  # same views as before (render cache hit): their scores stay
            waiting = bars = heat = gr.skip()
        up_value = session.shape.up if set_up else gr.skip()
        return (session, "", _info(session), _plot(session, color_by), _cards(session), waiting, bars, heat,
                _banner(session), up_value)

    # ---------------------------------------------------------------- step 2: views → scores
    def rescore(session: Session | None, classes: str, template: str, top_k: int, progress=gr.Progress()) -> tuple:
        """Encode the views (unless cached) and score them; new classes/template/top-k re-score from the cache."""
        session = new_session(session)
        if session.views is None:
            return session, figures.message_html("Load a shape first.", "info"), *(gr.skip(),) * 6
        try:
            top_k = limits.check_top_k(top_k)  # classes and template: checked by the session
            session.classify(classes, template, _progress_adapter(progress))
            pred, bars, heat = _result_outputs(session, top_k)
        except Exception as err:  # noqa: BLE001
            return session, _error(err, "scoring"), "", *(gr.skip(),) * 5
        return session, "", pred, bars, heat, _cards(session), _banner(session), _info(session)

    def scores_after_views(session: Session | None, classes: str, template: str, top_k: int,
                           progress=gr.Progress()) -> tuple:
        """The chained second step of every loader: scores, only if its views step succeeded."""
        session = new_session(session)
        if not session.scores_due:  # the views step failed (and said so): keep the page as it is
            return (session,) + (gr.skip(),) * 7
        return rescore(session, classes, template, top_k, progress)

    # ---------------------------------------------------------------- loaders (step 1 of each source)
    def on_start(session, up, n, views, radius, color_by, progress=gr.Progress()):
        return show_views(session, ShapeSource.example(DEFAULT_EXAMPLE), "y", n, views, radius, color_by, progress,
                          set_up=True)

    def on_upload(session, file, index, up, n, views, radius, color_by, progress=gr.Progress()):
        if not file:
            return (new_session(session), figures.message_html("No file received.", "error")) + (gr.skip(),) * 8
        try:
            path = Path(file if isinstance(file, str) else getattr(file, "name", file))
            source = ShapeSource.file(path, limits.check_shape_index(index), display=path.name)
        except Exception as err:  # noqa: BLE001
            return (new_session(session), _error(err, "upload")) + (gr.skip(),) * 8
        return show_views(session, source, up, n, views, radius, color_by, progress)

    def on_example(session, name, up, n, views, radius, color_by, progress=gr.Progress()):
        try:
            source = ShapeSource.example(name)
        except Clip2PointError as err:
            return (new_session(session), _error(err, "example")) + (gr.skip(),) * 8
        return show_views(session, source, "y", n, views, radius, color_by, progress, set_up=True)

    def on_gallery(evt: gr.SelectData):
        return names[evt.index] if evt is not None and 0 <= evt.index < len(names) else gr.skip()

    def on_reload(session, up, n, views, radius, color_by, progress=gr.Progress()):
        session = new_session(session)
        source = session.shape.source if session.shape is not None else ShapeSource.example(DEFAULT_EXAMPLE)
        return show_views(session, source, up, n, views, radius, color_by, progress)

    def on_rerender(session, up, n, views, radius, color_by, progress=gr.Progress()):
        session = new_session(session)
        source = None if session.shape is not None else ShapeSource.example(DEFAULT_EXAMPLE)
        return show_views(session, source, up, n, views, radius, color_by, progress)

    def on_color(session, color_by):
        session = new_session(session)
        return _plot(session, color_by) if session.shape is not None else gr.skip()

    def on_preset(preset):
        return ", ".join(CLASS_PRESETS[preset]) if preset in CLASS_PRESETS else gr.skip()

    def on_encoder(session, encoder, classes, template, top_k, progress=gr.Progress()):
        session = new_session(session)
        try:
            session.set_encoder(encoder)
        except Clip2PointError as err:
            return (session, _error(err, "encoder"), *(gr.skip(),) * 4, _banner(session), gr.skip(), session.encoder)
        return (*rescore(session, classes, template, top_k, progress), session.encoder)

    def on_depth_file(session, file, classes, template, top_k, progress=gr.Progress()):
        session = new_session(session)
        if not file:
            return (session, "", *(gr.skip(),) * 4, _banner(session), gr.skip(), session.encoder)
        try:
            progress(0.1, desc="loading the depth encoder…")
            try:
                handle = session.load_depth_encoder(str(file))
            except Clip2PointError as err:  # the upload's temporary path means nothing to the user: its name does
                raise type(err)(str(err).replace(str(file), Path(str(file)).name)) from None
            gr.Info(f"CLIP2Point depth encoder {handle.name} loaded; depth views are now encoded by it")
        except Exception as err:  # noqa: BLE001
            return (session, _error(err, "depth encoder upload"), *(gr.skip(),) * 4, _banner(session), gr.skip(),
                    session.encoder)
        return (*rescore(session, classes, template, top_k, progress), session.encoder)

    def api_classify(file, classes, template=DEFAULT_TEMPLATE, up="y", views=DEFAULT_VIEWS,
                     num_points=DEFAULT_NUM_POINTS) -> dict[str, float]:
        """Classify a point-cloud/mesh file: {class: probability}, most probable first.

        Every argument is checked against the app's limits before the file is read; the file is
        read in a child process with the app's time and memory limits.
        """
        try:
            path = file if isinstance(file, str) else getattr(file, "name", None)
            return classify_file(path, classes, DEFAULT_TEMPLATE if template is None else template,
                                 DEFAULT_VIEWS if views is None else views, up or "y",
                                 DEFAULT_NUM_POINTS if num_points is None else num_points, spec, registry,
                                 limits=limits)
        except Exception as err:  # noqa: BLE001 - never a bare 500 for a script
            raise gr.Error(_error_message(err, "/classify"), print_exception=False) from None

    # dataset browser
    def _ds(name: str, split: str):
        if name not in datasets or split not in ("test", "train"):
            raise Clip2PointError(f"unknown dataset {str(name)[:40]!r} / split {str(split)[:20]!r}; choose one of "
                                  f"{', '.join(datasets) or 'none (no data found)'} and test or train")
        return registry.dataset(data_root, name, split)

    def on_dataset(name, split):
        try:
            ds = _ds(name, split)
        except Clip2PointError as err:
            return _error(err, "dataset"), gr.skip(), gr.skip()
        counts = dataset_class_counts(ds)
        choices = [(f"all classes · {len(ds)}", "all")] + [(f"{c} · {n}", c) for c, n in counts]
        return "", gr.update(choices=choices, value="all"), gr.update(maximum=max(len(ds) - 1, 0), value=0)

    def on_dataset_class(name, split, cls):
        try:
            n = len(dataset_indices(_ds(name, split), cls))
        except Clip2PointError as err:
            return _error(err, "dataset class"), gr.skip()
        return "", gr.update(maximum=max(n - 1, 0), value=0)

    def on_dataset_random(name, split, cls):
        try:
            n = len(dataset_indices(_ds(name, split), cls))
        except Clip2PointError:
            return gr.skip()
        return random.randrange(n) if n else 0

    def on_dataset_load(session, name, split, cls, idx, n, views, radius, color_by, progress=gr.Progress()):
        try:
            indices = dataset_indices(_ds(name, split), cls)
            i = limits.check_shape_index(idx)
            if not len(indices):
                raise Clip2PointError(f"{name} {split} has no {cls} shapes; pick another class")
            if not i < len(indices):
                raise Clip2PointError(f"shape index {i} is out of range for {cls}: it has {len(indices)} shapes "
                                      f"(0 to {len(indices) - 1})")
            source = ShapeSource.from_dataset(data_root, name, split, int(indices[i]))
        except Exception as err:  # noqa: BLE001
            return (new_session(session), _error(err, "dataset shape")) + (gr.skip(),) * 8
        return show_views(session, source, None, n, views, radius, color_by, progress, set_up=True)


    # ---------------------------------------------------------------- few-shot tab
    def fs_results(session: Session | None, fs: _FewShot, state: RunState) -> tuple:
        """(session, gate figure, adapter figure, zero-shot figure, note) of a finished run on the
        current shape of the main tab (the default example when none is loaded)."""
        from clip2point.fewshot import load_adapter

        session = new_session(session)
        if state.result is None or not state.result.best_epoch or state.run_dir is None:
            msg = "no epoch finished, so there is no adapter to show"
            return session, figures.placeholder_figure(msg, 200), None, None, msg
        backbone = registry.model(spec).backbone
        if fs.classifier is None or fs.classifier_dir != str(state.run_dir):
            fs.classifier, fs.classifier_dir = load_adapter(state.run_dir, backbone), str(state.run_dir)
        clf = fs.classifier
        if session.shape is None:
            session.load(ShapeSource.example(DEFAULT_EXAMPLE), DEFAULT_NUM_POINTS, "y")
        shape = session.shape
        res = clf.predict(shape.points, keep_depth=True)
        thumbs = [figures.png_data_uri(d) for d in res.depth[0].numpy()] if res.depth is not None else []
        mean, mean_name = _run_gate_mean(state)
        gate = figures.gate_views_figure(res.view_labels, mean, res.gate[0].numpy(), thumbs, mean_name or "mean")
        truth = shape.true_label
        adapter = figures.probability_figure(clf.classes, res.probs[0].numpy(), 5, truth)
        template = clf.run_config.get("fewshot", {}).get("template", DEFAULT_TEMPLATE)
        zs = score_features(session.model(), session.features(), clf.classes, template, session.views)
        zero = figures.probability_figure(zs.classes, zs.probs[0].numpy(), 5, truth)
        top, p = res.top(1)[0]
        ztop, zp = zs.top(1)[0]
        note = (f"{shape.name}: adapter → {top} ({p:.1%}) · zero-shot with the same {len(clf.classes)} classes → "
                f"{ztop} ({zp:.1%})" + (f" · true label {truth}" if truth else ""))
        return session, gate, adapter, zero, note

    def fs_buttons(running: bool) -> tuple:
        return gr.update(interactive=not running and bool(datasets)), gr.update(interactive=running)

    def fs_start(session, fs, dataset, shots, epochs, gate, views, limit_test, val_per_class,
                 request: gr.Request = None):
        """Start a few-shot run in the background (the timer then polls it).

        Refused with a one-line message when an argument is beyond ``limits``, when this session
        already runs ``limits.max_runs_per_session`` runs or the server ``limits.max_runs``.
        Old run folders are cleaned first (``limits.runs_max_age_days``).
        """
        fs = fs if isinstance(fs, _FewShot) else _FewShot()
        owner = getattr(request, "session_hash", None) or f"state-{id(fs)}"
        try:
            from clip2point.fewshot import FewShotConfig

            if fs.runner is not None and fs.runner.running:
                raise RunLimitError("a few-shot run is already training in this tab; stop it (Stop) or wait for it "
                                    "to end")
            if not datasets:
                raise Clip2PointError("no ModelNet data found: clip2point data download modelnet10 -o DIR, "
                                      "then start the app with --data-dir DIR")
            if dataset not in datasets:
                raise Clip2PointError(f"unknown dataset {str(dataset)[:40]!r}; choose one of {', '.join(datasets)}")
            if gate not in ("view", "none"):
                raise Clip2PointError(f"gate must be 'view' or 'none', got {str(gate)[:40]!r}")
            shots, epochs, limit_test, val_per_class = limits.check_fewshot(shots, epochs, limit_test, val_per_class)
            views = limits.check_views(views)
            clean_old_runs(runs_root, limits.runs_max_age_days, keep=pool.running_dirs())
            cfg = FewShotConfig(dataset=dataset, data_dir=str(data_root), out_dir="", shots=shots, epochs=epochs,
                                gate=gate, views=views, limit_test=limit_test, val_per_class=val_per_class, plots=False)
            backbone = registry.model(spec).backbone  # shared with the zero-shot tab; its device is the run's
            cfg.out_dir = str(_new_run_dir(runs_root))
            try:
                cfg.validate()
                runner = pool.start(owner, cfg, backbone)
            except Exception:
                Path(cfg.out_dir).rmdir()  # still empty: a refused start leaves no folder behind
                raise
        except Exception as err:  # noqa: BLE001 - shown to the user
            running = fs.runner is not None and fs.runner.running
            return (fs, _error(err, "few-shot start")) + (gr.skip(),) * 5 + fs_buttons(running)
        fs.runner, fs.classifier, fs.classifier_dir, fs.shown_epochs = runner, None, "", 0
        wait = figures.placeholder_figure("results appear when the run ends", 200)
        return (fs, _fewshot_status(runner.state, cfg.epochs), figures.training_curves_figure([]), wait, None, None,
                gr.Timer(active=True), *fs_buttons(True))

    def fs_poll(session, fs):
        """Tick: status line and curves of the run; when it ends, its gate weights and the current shape."""
        if not isinstance(fs, _FewShot) or fs.runner is None:
            return (session, fs) + (gr.skip(),) * 5 + (gr.Timer(active=False),) + fs_buttons(False)
        state = fs.runner.state
        epochs = fs.runner.config.epochs
        curves = gr.skip()
        if len(state.history) != fs.shown_epochs or state.finished:
            curves, fs.shown_epochs = figures.training_curves_figure(state.history), len(state.history)
        status = _fewshot_status(state, epochs)
        if not state.finished:
            return (session, fs, status, curves) + (gr.skip(),) * 3 + (gr.skip(), *fs_buttons(True))
        gate = adapter = zero = gr.skip()
        if state.status != "failed":
            try:
                session, gate, adapter, zero, note = fs_results(session, fs, state)
                status = _fewshot_status(state, epochs)[:-len("</div>")] + f"<br>{figures._esc(note)}</div>"
            except Exception as err:  # noqa: BLE001
                status = _error(err)
        return (session, fs, status, curves, gate, adapter, zero, gr.Timer(active=False), *fs_buttons(False))

    def fs_stop(fs):
        """Ask the run to stop after its current step (the poll then shows "cancelled")."""
        if isinstance(fs, _FewShot) and fs.runner is not None and fs.runner.running:
            fs.runner.stop()
            return figures.message_html("stopping after the current step…", "info")
        return gr.skip()

    def fs_classify(session, fs):
        """Classify the main tab's current shape with the finished run's adapter (and zero-shot)."""
        if not isinstance(fs, _FewShot) or fs.runner is None or not fs.runner.state.finished:
            return (session, figures.message_html("Train an adapter first (Start), then wait for it to end.", "info"),
                    gr.skip(), gr.skip(), gr.skip())
        state = fs.runner.state
        try:
            session, gate, adapter, zero, note = fs_results(session, fs, state)
        except Exception as err:  # noqa: BLE001
            return session, _error(err), gr.skip(), gr.skip(), gr.skip()
        return session, figures.message_html(note, "info"), gate, adapter, zero

    def on_unload(request: gr.Request = None):
        """The browser tab closed or reloaded (its heartbeat ended): stop the session's runs."""
        owner = getattr(request, "session_hash", None)
        if owner:
            pool.stop_owner(owner)

    # ---------------------------------------------------------------- layout
    with Clip2PointApp(title="clip2point — CLIP2Point zero-shot, every step visible", fill_width=True,
                       analytics_enabled=False) as demo:
        state = gr.State(None, time_to_live=2 * 3600)  # a Session per browser tab, dropped after 2 h idle
        gr.HTML(_HEADER)
        banner = gr.HTML(initial_banner(), elem_id="banner")
        status = gr.HTML("", elem_id="status")
        with gr.Tabs(elem_id="c2p-tabs"):
            with gr.Tab("Zero-shot", id="zeroshot"):
                with gr.Row(equal_height=False):
                    # ------------------------------------------------ sidebar: inputs and settings
                    with gr.Column(scale=4, min_width=330, elem_id="c2p-sidebar"):
                        gr.HTML('<div class="c2p-section">1 · Shape</div>')
                        with gr.Tabs():
                            with gr.Tab("Examples", id="examples"):
                                gallery = gr.Gallery(thumbs, columns=5, rows=3, height="auto", allow_preview=False,
                                                     show_label=False, object_fit="contain", elem_id="c2p-examples")
                                example = Dropdown(names, value=DEFAULT_EXAMPLE, label="Example object", elem_id="example")
                            with gr.Tab("Upload", id="upload"):
                                upload = gr.File(label="Drop a point cloud or mesh", file_types=list(UPLOAD_EXTENSIONS),
                                                 type="filepath", height=120, elem_id="upload")
                                shape_index = Number(0, precision=0, minimum=0, maximum=limits.max_shape_index,
                                                     label="Shape index (multi-shape .h5 / .npz / .npy)")
                                gr.HTML(f'<div class="c2p-footnote">Reads {" ".join(UPLOAD_EXTENSIONS)} · up to '
                                        f'{limits.max_file_mb} MB · read within {limits.load_timeout_s:g} s and '
                                        f'{limits.load_memory_mb:,} MiB · meshes are surface-sampled · set the file\'s up '
                                        'axis below</div>')
                            with gr.Tab("ModelNet", id="dataset"):
                                if datasets:
                                    first = registry.dataset(data_root, datasets[0], "test")
                                    ds_name = Dropdown(datasets, value=datasets[0], label="Dataset")
                                    ds_split = Radio(["test", "train"], value="test", label="Split")
                                    ds_class = Dropdown(
                                        [(f"all classes · {len(first)}", "all")]
                                        + [(f"{c} · {k}", c) for c, k in dataset_class_counts(first)],
                                        value="all", label="Class")
                                    ds_index = Slider(0, max(len(first) - 1, 0), value=0, step=1, label="Shape (index within the class)")
                                    with gr.Row():
                                        ds_load = gr.Button("Load shape", variant="primary", size="sm")
                                        ds_random = gr.Button("Random shape", size="sm")
                                    gr.HTML(f'<div class="c2p-footnote">From {data_root} · the true label is shown with the prediction · '
                                            'up axis set from the data</div>')
                                else:
                                    gr.HTML(figures.message_html(
                                        "No ModelNet data found. Set $CLIP2POINT_DATA or pass --data-dir DIR "
                                        "(download: clip2point data download modelnet10 -o DIR).", "info"))
                        gr.HTML('<div class="c2p-section">2 · Rendering</div>')
                        with gr.Group():
                            with gr.Row():
                                up = Radio(["y", "z"], value="y", label="Up axis of the file", info="ModelNet OFF data: z",
                                              elem_id="up")
                                views = Radio([(f"{v} · {VIEW_SET_NAMES.get(v, 'views')}", v) for v in limits.view_sets],
                                             value=DEFAULT_VIEWS,
                                                 label="View set", elem_id="views")
                            num_points = Slider(256, limits.max_points, value=DEFAULT_NUM_POINTS, step=256,
                                                label="Points (farthest point sampling)")
                            radius = Slider(limits.min_radius, limits.max_radius, value=DEFAULT_RADIUS, step=0.0025,
                                            label="Splat radius (NDC; 0.02 ≈ 2.2 px)")
                            color_by = Radio(["height", "file colours"], value="height", label="3-D view colour",
                                                info="file colours: point clouds that store RGB")
                        gr.HTML('<div class="c2p-section">3 · Classes &amp; prompt</div>')
                        with gr.Group():
                            preset = Dropdown([("ModelNet40 (40)", "modelnet40"), ("ModelNet10 (10)", "modelnet10"),
                                                  ("ScanObjectNN (15)", "scanobjectnn"), ("The 14 examples", "examples")],
                                                 value=DEFAULT_CLASS_SET, label="Class set preset")
                            classes = gr.Textbox(", ".join(CLASS_PRESETS[DEFAULT_CLASS_SET]), lines=3, max_lines=6,
                                                 max_length=limits.max_classes_chars, elem_id="classes",
                                                 label=f"Classes (comma-separated, editable; up to {limits.max_classes:,} "
                                                       f"names of {limits.max_class_chars} characters)")
                            template = gr.Textbox(DEFAULT_TEMPLATE, label="Prompt template ({} = the class name)",
                                                  max_length=limits.max_template_chars,
                                                  elem_id="template")
                            top_k = Slider(1, limits.max_top_k, value=min(5, limits.max_top_k), step=1,
                                           label="Classes shown in the chart (top-k)")
                        score_btn = gr.Button("Score these classes", variant="primary", elem_id="score")
                        with gr.Accordion("4 · Encoder (CLIP or CLIP2Point depth encoder)", open=False):
                            encoder = Radio([(v, k) for k, v in ENCODERS.items()], value=Session(spec, registry).encoder,
                                               label="Depth views are encoded by")
                            depth_file = gr.File(label="CLIP2Point depth encoder (best_eval.pth / .pth / .safetensors)",
                                                 file_types=[".pth", ".pt", ".safetensors", ".bin"], type="filepath", height=90)
                    # ------------------------------------------------ main area: outputs
                    with gr.Column(scale=11, min_width=600):
                        with gr.Row(equal_height=False):
                            with gr.Column(scale=6, min_width=360):
                                gr.HTML('<div class="c2p-section">Points and cameras</div>')
                                plot3d = gr.Plot(show_label=False, elem_id="points3d")
                                info = gr.HTML("", elem_id="shape-info")
                            with gr.Column(scale=5, min_width=320):
                                gr.HTML('<div class="c2p-section">Zero-shot result</div>')
                                prediction = gr.HTML(figures.empty_html("Scores appear here."), elem_id="prediction")
                                bars = gr.Plot(show_label=False, elem_id="probabilities")
                        gr.HTML('<div class="c2p-section">Views: depth map CLIP reads · CLIP image view from the same camera</div>')
                        cards = gr.HTML(figures.empty_html("Loading the example…"), elem_id="views")
                        gr.HTML('<div class="c2p-section">Per-view logits · ★ = the class each view votes for</div>')
                        heatmap = gr.Plot(show_label=False, elem_id="heatmap")
                        with gr.Accordion("Use from Python (gradio_client) · API", open=False):
                            gr.Markdown(_api_note(limits))
            with gr.Tab("Few-shot", id="fewshot"):
                gr.HTML('<div class="c2p-footnote">Train a GDPA few-shot adapter on K shapes per class on top of the '
                        'frozen backbone of this app (CLIP2Point §3.3, the few-shot protocol of PointCLIP); runs go '
                        f'to {_html_path(runs_root)}/&lt;timestamp&gt; on {resolve_device(spec.device)}. '
                        f'{limits.max_runs} run(s) train at once on this server, {limits.max_runs_per_session} per tab; '
                        'a run stops when its tab closes'
                        + (f'; run folders older than {limits.runs_max_age_days:g} days are deleted'
                           if limits.runs_max_age_days else '') + '.</div>')
                with gr.Row(equal_height=False):
                    with gr.Column(scale=4, min_width=330):
                        if not datasets:
                            gr.HTML(figures.message_html(
                                "No ModelNet data found, so there is nothing to train on. Download it with "
                                "clip2point data download modelnet10 -o DIR and start the app with --data-dir DIR "
                                "(or set $CLIP2POINT_DATA).", "info"), elem_id="fs-nodata")
                        with gr.Group():
                            fs_dataset = Dropdown(datasets or ["modelnet10"], value=(datasets or ["modelnet10"])[0],
                                                     label="Dataset", interactive=bool(datasets))
                            fs_shots = Radio(list(limits.fewshot_shots), value=max(limits.fewshot_shots),
                                             label="Shots (shapes per class)")
                            fs_epochs = Slider(1, limits.fewshot_max_epochs, value=min(30, limits.fewshot_max_epochs), step=1,
                                               label="Epochs")
                            fs_gate = Radio([("view · GDPA (learned per-view gate)", "view"),
                                                ("none · released DPA (fixed 0.5/0.5)", "none")], value="view",
                                               label="Gate")
                        with gr.Accordion("More settings", open=False):
                            fs_views = Radio(["10", "6"], value="10", label="View set")
                            fs_limit = Number(200, precision=0, minimum=0, maximum=limits.fewshot_max_test_shapes,
                                                 label="Test shapes (class-balanced subset; 0 = all)")
                            fs_val = Number(4, precision=0, minimum=0, maximum=limits.fewshot_max_val_per_class,
                                            label="Validation shapes per class")
                        with gr.Row():
                            fs_start_btn = gr.Button("Start", variant="primary", interactive=bool(datasets),
                                                     elem_id="fs-start")
                            fs_stop_btn = gr.Button("Stop", variant="stop", interactive=False, elem_id="fs-stop")
                        fs_status = gr.HTML(figures.message_html("idle", "info"), elem_id="fs-status")
                        fs_classify_btn = gr.Button("Classify the current shape with the adapter", size="sm",
                                                    elem_id="fs-classify")
                    with gr.Column(scale=11, min_width=600):
                        gr.HTML('<div class="c2p-section">Training: loss and accuracy per epoch</div>')
                        fs_curves = gr.Plot(show_label=False, elem_id="fs-curves")
                        gr.HTML('<div class="c2p-section">Gate per view (share of path A): mean over the test set · '
                                'the current shape (thumbnails: its depth views)</div>')
                        fs_gate_plot = gr.Plot(show_label=False, elem_id="fs-gate")
                        with gr.Row():
                            with gr.Column():
                                gr.HTML('<div class="c2p-section">Current shape · few-shot adapter (top 5)</div>')
                                fs_adapter_plot = gr.Plot(show_label=False, elem_id="fs-adapter")
                            with gr.Column():
                                gr.HTML('<div class="c2p-section">Current shape · zero-shot, same classes (top 5)</div>')
                                fs_zero_plot = gr.Plot(show_label=False, elem_id="fs-zeroshot")
                fs_timer = gr.Timer(_FEWSHOT_POLL_S, active=False)
                # deleted 2 h after its last update, or an hour after its tab closed: its run stops then too
                fs_state = gr.State(None, time_to_live=2 * 3600, delete_callback=stop_fewshot_state)
        # hidden components of the /classify API endpoint
        with gr.Row(visible=False):
            api_file = gr.File(label="point cloud or mesh file", file_types=list(UPLOAD_EXTENSIONS), visible=False)
            api_classes = gr.Textbox("chair, table, lamp", label="classes (comma-separated)", visible=False)
            api_template = gr.Textbox(DEFAULT_TEMPLATE, label="prompt template", visible=False)
            api_up = Radio(["y", "z"], value="y", label="up axis of the file", visible=False)
            api_views = Radio(list(limits.view_sets), value=DEFAULT_VIEWS, label="view set", visible=False)
            api_points = Number(DEFAULT_NUM_POINTS, precision=0, minimum=limits.min_points, maximum=limits.max_points,
                                label="number of points", visible=False)
            api_out = gr.JSON(label="class probabilities", visible=False)
            api_button = gr.Button(visible=False)

        # ---------------------------------------------------------------- wiring
        render_settings = [up, num_points, views, radius, color_by]
        view_outs = [state, status, info, plot3d, cards, prediction, bars, heatmap, banner, up]
        score_inputs = [state, classes, template, top_k]
        score_outs = [state, status, prediction, bars, heatmap, cards, banner, info]
        heavy = dict(concurrency_id=_COMPUTE, concurrency_limit=concurrency_limit)
        scoring = dict(heavy, show_progress_on=[prediction])

        def views_then_scores(event, fn, inputs, name: str, **kw):
            """Step 1 (views, shown at once) chained to step 2 (scores), each with its API name."""
            return event(fn, inputs, view_outs, api_name=name, **heavy, **kw).then(
                scores_after_views, score_inputs, score_outs, api_name=f"{name}_scores", **scoring)

        views_then_scores(demo.load, on_start, [state, *render_settings], "startup")
        views_then_scores(upload.upload, on_upload, [state, upload, shape_index, *render_settings], "load_file")
        gallery.select(on_gallery, None, example, api_name="pick_example", queue=False).then(
            on_example, [state, example, *render_settings], view_outs, api_name="load_picked_example", **heavy).then(
            scores_after_views, score_inputs, score_outs, api_name="load_picked_example_scores", **scoring)
        views_then_scores(example.input, on_example, [state, example, *render_settings], "load_example")
        views_then_scores(up.input, on_reload, [state, *render_settings], "set_up_axis")
        views_then_scores(num_points.release, on_reload, [state, *render_settings], "set_num_points")
        views_then_scores(views.input, on_rerender, [state, *render_settings], "set_view_set")
        views_then_scores(radius.release, on_rerender, [state, *render_settings], "set_radius")
        color_by.input(on_color, [state, color_by], plot3d, api_name="set_point_colours")
        preset.input(on_preset, preset, classes, api_name="pick_class_preset", queue=False).then(
            rescore, score_inputs, score_outs, api_name="score_preset", **scoring)
        score_btn.click(rescore, score_inputs, score_outs, api_name="score", **scoring)
        classes.submit(rescore, score_inputs, score_outs, api_name="set_classes", **scoring)
        template.submit(rescore, score_inputs, score_outs, api_name="set_template", **scoring)
        top_k.release(rescore, score_inputs, score_outs, api_name="set_top_k", **scoring)
        encoder.input(on_encoder, [state, encoder, *score_inputs[1:]], [*score_outs, encoder],
                      api_name="set_encoder", **scoring)
        depth_file.upload(on_depth_file, [state, depth_file, *score_inputs[1:]], [*score_outs, encoder],
                          api_name="load_depth_encoder", **scoring)
        if datasets:
            ds_name.input(on_dataset, [ds_name, ds_split], [status, ds_class, ds_index], api_name="pick_dataset")
            ds_split.input(on_dataset, [ds_name, ds_split], [status, ds_class, ds_index], api_name="pick_split")
            ds_class.input(on_dataset_class, [ds_name, ds_split, ds_class], [status, ds_index], api_name="pick_dataset_class")
            ds_inputs = [state, ds_name, ds_split, ds_class, ds_index, num_points, views, radius, color_by]
            views_then_scores(ds_load.click, on_dataset_load, ds_inputs, "load_dataset_shape")
            views_then_scores(ds_index.release, on_dataset_load, ds_inputs, "load_dataset_index")
            ds_random.click(on_dataset_random, [ds_name, ds_split, ds_class], ds_index, api_name="pick_random_shape",
                            queue=False).then(
                on_dataset_load, ds_inputs, view_outs, api_name="load_random_shape", **heavy).then(
                scores_after_views, score_inputs, score_outs, api_name="load_random_shape_scores", **scoring)
        # few-shot tab: start/stop/classify return at once; the run is a thread polled by the timer
        light = dict(concurrency_limit=None, show_progress="hidden")
        fs_outs = [fs_state, fs_status, fs_curves, fs_gate_plot, fs_adapter_plot, fs_zero_plot, fs_timer,
                   fs_start_btn, fs_stop_btn]
        fs_start_btn.click(fs_start, [state, fs_state, fs_dataset, fs_shots, fs_epochs, fs_gate, fs_views, fs_limit,
                                      fs_val], fs_outs, api_name="fewshot_start", concurrency_limit=None)
        fs_timer.tick(fs_poll, [state, fs_state], [state, *fs_outs], api_name="fewshot_poll", **light)
        fs_stop_btn.click(fs_stop, fs_state, fs_status, api_name="fewshot_stop", **light)
        fs_classify_btn.click(fs_classify, [state, fs_state], [state, fs_status, fs_gate_plot, fs_adapter_plot,
                                                               fs_zero_plot], api_name="fewshot_classify", **heavy)
        api_button.click(api_classify, [api_file, api_classes, api_template, api_up, api_views, api_points], api_out,
                         api_name="classify", **heavy)
        demo.unload(on_unload)
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=256)
    demo.limits, demo.run_pool, demo.runs_dir = limits, pool, runs_root
    return demo


# ----------------------------------------------------------------------------------------------
# command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see ``python -m ui.app --help``)."""
    p = argparse.ArgumentParser(
        prog="python -m ui.app",
        description="clip2point app: load a point cloud or mesh, see its CLIP2Point depth views and CLIP image "
                    "views, and classify it zero-shot with CLIP — every step visible in the browser.",
        epilog="examples:\n"
               "  python -m ui.app                               # http://127.0.0.1:7860, weights found automatically\n"
               "  python -m ui.app --weights openai --port 8080  # OpenAI CLIP ViT-B/32 (open_clip cache or download)\n"
               "  python -m ui.app --depth-encoder weights/best_eval.pth   # CLIP2Point's pre-trained depth encoder\n"
               "  python -m ui.app --weights random --data-dir ../shared/data\n\n"
               "Without usable weights the app still starts, with random weights and a red banner that says how to\n"
               "get real ones. Scripts: gradio_client Client(url).predict(handle_file(path), 'chair,table', api_name='/classify').",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface; default %(default)s)")
    p.add_argument("--port", type=int, default=7860, help="port (default %(default)s)")
    p.add_argument("--share", action="store_true", help="also create a public gradio.live link")
    p.add_argument("--model", default=DEFAULT_MODEL, help="open_clip architecture (default %(default)s, CLIP2Point's)")
    p.add_argument("--weights", default=None, metavar="TAG|PATH|random",
                   help="CLIP weights: an open_clip tag (openai), a checkpoint file, or 'random'. Default: "
                        "$CLIP2POINT_WEIGHTS, weights/, the open_clip cache, a download — random if none is found")
    p.add_argument("--depth-encoder", default=None, metavar="PATH",
                   help="CLIP2Point pre-trained depth encoder (the authors' best_eval.pth); can also be uploaded in the page")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, … (default %(default)s)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="ModelNet data for the dataset browser (default: $CLIP2POINT_DATA, else ../shared/data if present)")
    p.add_argument("--concurrency", type=int, default=CONCURRENCY_LIMIT,
                   help="heavy requests processed at once; the rest queue (default %(default)s)")
    p.add_argument("--batch-images", type=int, default=None, metavar="N",
                   help="most depth images encoded in one pass when requests arrive together (default: 64 on CUDA, "
                        "1 = one request per pass on CPU, which kept tail latency lower there)")
    p.add_argument("--no-warmup", action="store_true", help="do not load the model in the background at start-up")
    d = AppLimits()
    g = p.add_argument_group("limits (every request is checked against them on the server; see ui.session.AppLimits)")
    g.add_argument("--load-timeout", type=float, default=d.load_timeout_s, metavar="SECONDS",
                   help="an uploaded file must be read within this time, in a child process that is killed "
                        "otherwise (default %(default)s)")
    g.add_argument("--load-memory-mb", type=int, default=d.load_memory_mb, metavar="MIB",
                   help="memory (address space) that reading one upload may use (default %(default)s)")
    g.add_argument("--max-runs", type=int, default=d.max_runs, metavar="N",
                   help="few-shot runs training at once on this server; more are refused (default %(default)s; "
                        f"{d.max_runs_per_session} per browser session)")
    g.add_argument("--runs-dir", default=None, metavar="DIR",
                   help="where the Few-shot tab writes its runs (default runs/app in the repository)")
    g.add_argument("--runs-max-age-days", type=float, default=d.runs_max_age_days, metavar="DAYS",
                   help="delete app run folders not changed for this many days, at start-up and before each new run; "
                        "running runs are never deleted; 0 keeps them forever (default %(default)s)")
    args = p.parse_args(argv)
    try:
        args.limits = AppLimits(load_timeout_s=args.load_timeout, load_memory_mb=args.load_memory_mb,
                                max_runs=args.max_runs, runs_max_age_days=args.runs_max_age_days or None)
    except Clip2PointError as err:
        msg = str(err).replace("AppLimits.", "").replace("AppLimits: ", "")
        for field_name, flag in (("load_timeout_s", "--load-timeout"), ("load_memory_mb", "--load-memory-mb"),
                                 ("max_runs", "--max-runs"), ("runs_max_age_days", "--runs-max-age-days")):
            msg = msg.replace(field_name, flag)
        p.error(msg)
    if args.device != "auto" and not (args.device == "cpu" or args.device.startswith("cuda") or args.device == "mps"):
        p.error(f"--device must be auto, cpu, cuda or cuda:N, got {args.device!r}")
    if args.weights is not None and args.weights.lower() != "random":
        _source, reason = probe_weights(ModelSpec(args.model, args.weights, args.device))
        if reason:
            p.error(reason)
    if args.depth_encoder and not Path(args.depth_encoder).is_file():
        p.error(f"--depth-encoder {args.depth_encoder}: file not found")
    if args.data_dir and not Path(args.data_dir).is_dir():
        p.error(f"--data-dir {args.data_dir}: not a folder")
    return args


def _warm_up(spec: ModelSpec, registry: ModelRegistry) -> None:
    """Load the model, the default prompts' text features (and the depth encoder) in the background."""
    try:
        warm_up(spec, registry, CLASS_PRESETS[DEFAULT_CLASS_SET], DEFAULT_TEMPLATE)
    except Exception:  # noqa: BLE001 - the first request will show the error in the page
        log.exception("background model load failed")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m ui.app``."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.batch_images is None:
        args.batch_images = 64 if resolve_device(args.device).startswith("cuda") else 1
    REGISTRY.batcher.max_images = max(1, args.batch_images)
    demo = build_app(args.model, args.weights, args.device, args.data_dir, args.depth_encoder,
                     concurrency_limit=args.concurrency, runs_dir=args.runs_dir, limits=args.limits)
    if not args.no_warmup:
        spec = ModelSpec(args.model, args.weights, args.device, args.depth_encoder)
        threading.Thread(target=_warm_up, args=(spec, REGISTRY), name="clip2point-warmup", daemon=True).start()
    demo.launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
