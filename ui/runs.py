"""Background few-shot runs for any front end (no UI toolkit imported here).

:class:`FewShotRunner` runs :func:`clip2point.fewshot.run_fewshot` in a daemon thread and keeps a
thread-safe :class:`RunState` (status, per-epoch history, progress, error, result) that a UI polls
(:attr:`FewShotRunner.state`) or receives through ``on_update`` on every progress report. The
Jupyter :class:`ui.widgets.FewShotPanel` and the Gradio app's Few-shot tab both drive this class.

A server that many people use starts its runs through a :class:`RunPool`: at most
``max_running`` runs train at once and at most ``max_per_owner`` per owner (a browser session),
an owner's runs are stopped when its session ends (:meth:`RunPool.stop_owner`), and
:func:`clean_old_runs` deletes run folders older than a limit, never one that is running.

Example:
    >>> runner = FewShotRunner(FewShotConfig(out_dir="runs/x", data_dir=..., shots=2, epochs=5), backbone)
    >>> runner.start(); state = runner.wait()
    >>> state.status, state.history[-1]["val_acc"], state.run_dir
"""
from __future__ import annotations

import copy
import logging
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from clip2point.errors import Clip2PointError
from clip2point.fewshot import FewShotConfig, Progress, RunResult, run_fewshot
from clip2point.fewshot.rundir import GateWeights
from clip2point.viewcache import ViewFeatureCache

log = logging.getLogger(__name__)

__all__ = ["RunState", "FewShotRunner", "STATUSES", "RunPool", "RunLimitError", "clean_old_runs", "RUN_DIR_PATTERN"]

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

    def gate_weights(self) -> GateWeights | None:
        """The finished run's gate: the test mean per view (else the best epoch's validation mean),
        from its metrics (:meth:`clip2point.fewshot.rundir.GateWeights.from_metrics`, the same
        reader as ``RunFolder.gate_weights()``); None before the run returned or without a
        validated epoch."""
        return None if self.result is None else GateWeights.from_metrics(self.result.metrics)

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
        cache: the persistent view-feature cache (``clip2point.viewcache``): shapes encoded before
            (another seed or gate of the same dataset) are not encoded again; None: encode all.
    """

    def __init__(self, config: FewShotConfig, backbone, on_update: Callable[[RunState], None] | None = None,
                 cache: ViewFeatureCache | None = None) -> None:
        self.config = copy.deepcopy(config)
        self.backbone = backbone
        self.cache = cache
        self.on_update = on_update
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = RunState(run_dir=Path(config.out_dir) if config.out_dir else None)
        #: who started it (a :class:`RunPool` owner: the app's browser session id), "" otherwise.
        self.owner = ""

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
        """Ask the run to stop: it ends within one batch (or one encoder chunk), status "cancelled"."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

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
            result = run_fewshot(self.config, self.backbone, progress=self._progress, should_stop=self._stop,
                                 cache=self.cache)
        except BaseException as err:  # noqa: BLE001 - reported in the state
            if isinstance(err, Clip2PointError):  # a user error: one line says it all
                log.warning("few-shot run %s failed: %s", self.config.out_dir, err)
            else:  # a bug or a resource problem: keep the traceback
                log.exception("few-shot run %s failed", self.config.out_dir)
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


# ----------------------------------------------------------------------------------------------
# many runs on one server


class RunLimitError(Clip2PointError):
    """A new run would exceed a :class:`RunPool`'s limits; the message says which and what to do."""


class RunPool:
    """The few-shot runs of one server: capped in number, owned by sessions, stoppable per owner.

    Args:
        max_running: runs training at once on the server; one more is refused (RunLimitError).
        max_per_owner: runs training at once per owner (a browser session id).

    Thread-safe: the check and the start happen under one lock, so two sessions clicking Start
    together cannot both slip under the cap.
    """

    def __init__(self, max_running: int = 2, max_per_owner: int = 1) -> None:
        if max_running < 1 or max_per_owner < 1:
            raise Clip2PointError(f"run limits must be at least 1, got {max_running} and {max_per_owner}")
        self.max_running = int(max_running)
        self.max_per_owner = int(max_per_owner)
        self._lock = threading.Lock()
        self._runs: list[tuple[str, FewShotRunner]] = []

    def _prune(self) -> None:
        self._runs = [(o, r) for o, r in self._runs if r.running]

    def start(self, owner: str, config: FewShotConfig, backbone,
              on_update: Callable[[RunState], None] | None = None,
              cache: ViewFeatureCache | None = None) -> FewShotRunner:
        """Start a run for ``owner`` (its :class:`FewShotRunner`, already running; ``cache``: see there).

        Raises:
            RunLimitError: the owner or the server already runs as many runs as allowed.
        """
        with self._lock:
            self._prune()
            mine = sum(1 for o, _ in self._runs if o == owner)
            if mine >= self.max_per_owner:
                raise RunLimitError(
                    f"this session already has {mine} few-shot run(s) training (at most {self.max_per_owner} per "
                    "session); stop it with Stop or wait for it to end")
            if len(self._runs) >= self.max_running:
                raise RunLimitError(
                    f"the server is already training {len(self._runs)} few-shot runs, its limit; try again when one "
                    "ends (the operator sets it with --max-runs)")
            runner = FewShotRunner(config, backbone, on_update, cache)
            runner.owner = owner
            runner.start()
            self._runs.append((owner, runner))
        log.info("few-shot run started for session %s in %s (%d running)", owner[:8], config.out_dir, len(self._runs))
        return runner

    def active(self, owner: str | None = None) -> list[FewShotRunner]:
        """Runs still training (of ``owner``, or all)."""
        with self._lock:
            self._prune()
            return [r for o, r in self._runs if owner is None or o == owner]

    def stop_owner(self, owner: str) -> int:
        """Ask every run of ``owner`` to stop (its session ended); returns how many were asked."""
        runs = self.active(owner)
        for r in runs:
            r.stop()
        if runs:
            log.info("session %s ended: stopping its %d few-shot run(s)", owner[:8], len(runs))
        return len(runs)

    def stop_all(self, wait_s: float | None = None) -> None:
        """Stop every run (server shutdown, tests); optionally wait up to ``wait_s`` for each."""
        runs = self.active()
        for r in runs:
            r.stop()
        if wait_s is not None:
            for r in runs:
                r.wait(wait_s)

    def running_dirs(self) -> set[Path]:
        """Resolved run folders of the runs still training (never to be cleaned)."""
        return {Path(r.config.out_dir).resolve() for r in self.active() if r.config.out_dir}


#: Names of the app's run folders (``<YYYYmmdd-HHMMSS>`` with an optional ``-N``): the only ones cleaned.
RUN_DIR_PATTERN = re.compile(r"^\d{8}-\d{6}(-\d+)?$")


def _last_change(folder: Path) -> float:
    """Newest mtime of a folder and the entries directly inside it (seconds since the epoch)."""
    newest = folder.lstat().st_mtime
    for entry in folder.iterdir():
        try:
            newest = max(newest, entry.lstat().st_mtime)
        except OSError:  # removed meanwhile
            continue
    return newest


def clean_old_runs(root: str | Path, max_age_days: float | None, keep: Iterable[Path] = (),
                   now: float | None = None) -> list[Path]:
    """Delete the app's run folders in ``root`` not changed for ``max_age_days`` days.

    Only real folders (no symlinks) named like the app's runs (:data:`RUN_DIR_PATTERN`) are
    considered; folders in ``keep`` (the runs still training) are never touched. None or a
    missing ``root`` deletes nothing.

    Returns:
        The deleted folders.
    """
    root = Path(root)
    if max_age_days is None or not root.is_dir():
        return []
    keep_set = {Path(k).resolve() for k in keep}
    limit = (time.time() if now is None else now) - float(max_age_days) * 86400.0
    removed: list[Path] = []
    for entry in sorted(root.iterdir()):
        if entry.is_symlink() or not entry.is_dir() or not RUN_DIR_PATTERN.match(entry.name):
            continue
        if entry.resolve() in keep_set:
            continue
        try:
            if _last_change(entry) >= limit:
                continue
            shutil.rmtree(entry)
        except OSError as err:
            log.warning("could not delete old run folder %s: %s", entry, err)
            continue
        removed.append(entry)
    if removed:
        log.info("deleted %d run folder(s) older than %g days in %s", len(removed), max_age_days, root)
    return removed
