"""Background few-shot runs for any front end (no UI toolkit imported here).

:class:`FewShotRunner` runs :func:`clip2point.fewshot.run_fewshot` in a daemon thread and keeps a
thread-safe :class:`RunState` (status, per-epoch history, progress, error, result) that a UI polls
(:attr:`FewShotRunner.state`) or receives through ``on_update`` on every progress report. The
Jupyter :class:`ui.widgets.FewShotPanel` and the Gradio app's Few-shot tab both drive this class.

Example:
    >>> runner = FewShotRunner(FewShotConfig(out_dir="runs/x", data_dir=..., shots=2, epochs=5), backbone)
    >>> runner.start(); state = runner.wait()
    >>> state.status, state.history[-1]["val_acc"], state.run_dir
"""
from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from clip2point.fewshot import FewShotConfig, Progress, RunResult, run_fewshot

log = logging.getLogger(__name__)

__all__ = ["RunState", "FewShotRunner", "STATUSES"]

#: Every value of :attr:`RunState.status`.
STATUSES = ("idle", "running", "completed", "cancelled", "failed")


@dataclass
class RunState:
    """What a UI shows about a few-shot run (a snapshot; mutate-free for the reader).

    Attributes:
        status: "idle", "running", "completed", "cancelled" or "failed".
        history: one dict per finished epoch (``EpochStats.as_dict()``: epoch, train_loss,
            train_acc, val_acc, val_loss, val_gate, seconds) plus ``best_val_acc``.
        stage: the latest progress stage ("encode", "epoch", "test", "done"; "" before the first).
        done, total: progress within the stage (shapes encoded, epochs done, ...).
        split: the split being encoded ("train", "val", "test") during "encode".
        error: the error message of a failed run, else None.
        run_dir: the run directory (known from the config at start).
        result: the :class:`~clip2point.fewshot.RunResult` once the run returned.
    """

    status: str = "idle"
    history: list[dict] = field(default_factory=list)
    stage: str = ""
    done: int = 0
    total: int = 0
    split: str = ""
    error: str | None = None
    run_dir: Path | None = None
    result: RunResult | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "cancelled", "failed")

    @property
    def fraction(self) -> float:
        """Progress of the current stage in [0, 1] (1 once finished)."""
        if self.status in ("completed", "cancelled"):
            return 1.0
        return min(1.0, self.done / self.total) if self.total else 0.0

    def describe(self) -> str:
        """One line for a status label."""
        if self.status == "failed":
            return f"failed: {self.error}"
        if self.status in ("idle", "completed", "cancelled"):
            extra = ""
            if self.result is not None and self.result.test_accuracy is not None:
                extra = f" · test accuracy {self.result.test_accuracy:.1%}"
            return f"{self.status}{extra}" + (f" ({len(self.history)} epochs)" if self.history else "")
        what = {"encode": f"encoding {self.split} shapes", "epoch": "training", "test": "testing", "done": "writing"}
        return f"{what.get(self.stage, 'starting')} {self.done}/{self.total}" if self.total else "starting…"


class FewShotRunner:
    """Run one few-shot training in a daemon thread, with cooperative cancellation.

    Args:
        config: the run's :class:`FewShotConfig` (copied; validated by ``run_fewshot``).
        backbone: the frozen :class:`~clip2point.backbone.ClipBackbone`.
        on_update: called with a :class:`RunState` snapshot on every progress report and when the
            run ends (from the worker thread; exceptions it raises are logged, never fatal).
    """

    def __init__(self, config: FewShotConfig, backbone, on_update: Callable[[RunState], None] | None = None) -> None:
        self.config = copy.deepcopy(config)
        self.backbone = backbone
        self.on_update = on_update
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = RunState(run_dir=Path(config.out_dir) if config.out_dir else None)

    # -- public API ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the run in a daemon thread. Raises RuntimeError when it was already started."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("this runner was already started; make a new FewShotRunner for another run")
            self._state.status = "running"
            self._thread = threading.Thread(target=self._work, name="clip2point-fewshot", daemon=True)
        self._notify()
        self._thread.start()

    def stop(self) -> None:
        """Ask the run to stop (it ends after the current step, status "cancelled")."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> RunState:
        """Wait for the run to end (or ``timeout`` seconds); returns the state then."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.state

    @property
    def state(self) -> RunState:
        """A snapshot of the run's state (safe to read from any thread)."""
        with self._lock:
            return replace(self._state, history=[dict(h) for h in self._state.history])

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- worker --------------------------------------------------------------------------------
    def _notify(self) -> None:
        if self.on_update is None:
            return
        try:
            self.on_update(self.state)
        except Exception:  # noqa: BLE001 - a UI callback must not kill the run
            log.exception("few-shot on_update callback failed")

    def _progress(self, p: Progress) -> None:
        with self._lock:
            s = self._state
            s.stage, s.done, s.total, s.split = p.stage, int(p.done), int(p.total), p.split
            if p.stage == "epoch" and p.stats is not None:
                s.history.append({**p.stats.as_dict(), "best_val_acc": p.best_val_acc})
        self._notify()

    def _work(self) -> None:
        try:
            result = run_fewshot(self.config, self.backbone, progress=self._progress, should_stop=self._stop)
        except BaseException as err:  # noqa: BLE001 - reported in the state
            log.warning("few-shot run failed: %s", err)
            with self._lock:
                self._state.status, self._state.error = "failed", str(err) or type(err).__name__
        else:
            with self._lock:
                s = self._state
                s.result, s.run_dir = result, Path(result.run_dir)
                s.status = "cancelled" if result.status == "cancelled" else "completed"
                if not s.history and result.history:
                    s.history = [h.as_dict() for h in result.history]
        self._notify()
