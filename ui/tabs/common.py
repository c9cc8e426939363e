"""What every tab of the app shares: its context, the page-wide components, input components whose
refusals are one clear line, and error reporting.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from clip2point.errors import Clip2PointError
from ui import figures
from ui.defaults import REPO_ROOT
from ui.limits import AppLimits
from ui.registry import ModelRegistry, ModelSpec, Progress
from ui.runs import RunPool
from ui.session import Session

log = logging.getLogger(__name__)

__all__ = [
    "AppContext", "Page", "QuietRefusal", "Slider", "Number", "Radio", "Dropdown", "File", "COMPUTE", "error_message",
    "show_error", "html_path", "progress_adapter", "section",
]

#: gradio's concurrency id of the heavy events (load + render + encode); they share one limit.
COMPUTE = "compute"


@dataclass
class AppContext:
    """What the handlers of one app share (built once by :func:`ui.app.build_app`).

    Attributes:
        spec: the backbone every session uses. registry: where models and datasets are cached.
        limits: what one request may ask for (checked by every handler).
        data_root: the ModelNet folder, or None. datasets: the datasets found in it.
        runs_root: where few-shot runs go. pool: the server's few-shot runs.
        concurrency_limit: heavy events running at once.
    """

    spec: ModelSpec
    registry: ModelRegistry
    limits: AppLimits
    data_root: Path | None
    datasets: list[str]
    runs_root: Path
    pool: RunPool
    concurrency_limit: int

    def new_session(self, session: Session | None) -> Session:
        """``session`` if it is one (a browser tab's state), else a new one with the app's limits."""
        return session if isinstance(session, Session) else Session(self.spec, self.registry, self.limits)

    @property
    def heavy(self) -> dict[str, Any]:
        """Event options of heavy events (they queue behind :data:`COMPUTE`'s limit)."""
        return dict(concurrency_id=COMPUTE, concurrency_limit=self.concurrency_limit)

    def scoring(self, progress_on: gr.components.Component) -> dict[str, Any]:
        """Event options of scoring events: heavy, with the progress overlay on ``progress_on`` only."""
        return dict(self.heavy, show_progress_on=[progress_on])


@dataclass
class Page:
    """Components every tab writes to: the per-tab :class:`Session` state, the weights banner and
    the status line."""

    state: gr.State
    banner: gr.HTML
    status: gr.HTML


def section(title: str) -> gr.HTML:
    """A small upper-case section title."""
    return gr.HTML(f'<div class="c2p-section">{title}</div>')


# ----------------------------------------------------------------------------------------------
# input components whose refusals are one clear line (no traceback in the server log)


class QuietRefusal:
    """Mixin for gradio input components: a value the component refuses (out of a slider's range,
    not one of a radio's choices, not a number, a file of a type it does not take) becomes a
    one-line ``gr.Error`` that names the control and the allowed values, logged as one line
    instead of a traceback (API user errors are one line; bugs keep their traceback).

    The subclasses keep gradio's class names, so the page uses the same front-end components.
    """

    def preprocess(self, payload: Any) -> Any:  # noqa: D102 - gradio's, with clearer refusals
        try:
            bounded = getattr(self, "minimum", None) is not None or getattr(self, "maximum", None) is not None
            if bounded and isinstance(payload, float) and not math.isfinite(payload):
                raise ValueError("not a finite number")  # gradio's range check lets NaN through
            return super().preprocess(payload)  # type: ignore[misc]
        except Exception as err:  # noqa: BLE001 - gr.Error or a TypeError from comparing a bad payload
            label = getattr(self, "label", None) or type(self).__name__.lower()
            if isinstance(err, gr.Error) and _allowed(self) == "check the value":  # e.g. a file of the wrong type
                msg = f"{label}: {' '.join(str(err.message).split())[:400]}"
            else:
                msg = f"{label}: {_shown(payload)} is not allowed here; {_allowed(self)}"
            log.info("refused a request: %s", msg)
            raise gr.Error(msg, print_exception=False) from None


def _shown(payload: Any) -> str:
    """A refused value for a message: its repr, cut at 40 characters."""
    return repr(payload) if len(repr(payload)) <= 40 else repr(payload)[:40] + "…"


def _allowed(component: Any) -> str:
    """What a component accepts, in words (its range or its choices)."""
    lo, hi = getattr(component, "minimum", None), getattr(component, "maximum", None)
    choices = getattr(component, "choices", None)
    if lo is not None and hi is not None:
        return f"use {lo:g} to {hi:g}"
    if lo is not None or hi is not None:
        return f"use at least {lo:g}" if lo is not None else f"use at most {hi:g}"
    if choices:
        return "choose one of " + ", ".join(str(v) for _, v in choices)[:300]
    return "check the value"


def _quiet_components() -> tuple[type, ...]:
    """Slider, Number, Radio, Dropdown and File with :class:`QuietRefusal` (same names as gradio's).

    gradio's component metaclass writes a ``.pyi`` stub beside the module that defines a component
    subclass; that would put a generated file into this repository on import, so the stub writer
    is switched off while these four classes are made.
    """
    import gradio.component_meta as meta

    original = meta.create_or_modify_pyi
    meta.create_or_modify_pyi = lambda *_args, **_kwargs: None
    try:
        return tuple(type(base.__name__, (QuietRefusal, base),
                          {"__module__": __name__, "__doc__": f"``gr.{base.__name__}`` with one-line refusals."})
                     for base in (gr.Slider, gr.Number, gr.Radio, gr.Dropdown, gr.File))
    finally:
        meta.create_or_modify_pyi = original


Slider, Number, Radio, Dropdown, File = _quiet_components()


# ----------------------------------------------------------------------------------------------
# errors and small adapters


def error_message(err: BaseException, what: str = "request") -> str:
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


def show_error(err: BaseException, what: str = "request") -> str:
    """Show an error as a toast and return the status-box HTML (see :func:`error_message`)."""
    msg = error_message(err, what)
    gr.Warning(msg)
    return figures.message_html(msg, "error")


def html_path(path: Path) -> str:
    """A path for the page (escaped): relative to the repository when inside it."""
    try:
        shown = Path(path).resolve().relative_to(REPO_ROOT)
    except ValueError:
        shown = Path(path)
    return figures.escape(str(shown))


def progress_adapter(progress: gr.Progress) -> Progress:
    """A session ``progress(fraction, message)`` callback that drives a ``gr.Progress``."""
    return lambda fraction, message: progress(fraction, desc=message)
