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

__all__ = ["RunState", "FewShotRunner", "STATUSES", "RunPool", "RunLimitError", "clean_old_runs", "RUN_DIR_PATTERN",
           "format_seconds", "encoder_speed", "RunCost", "estimate_run", "RunSummary", "summarize_run", "list_runs",
           "QUICK_RUN", "FULL_PROTOCOL_COMMAND"]

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
        epochs: the epochs the run was started for.
        started, stage_started: ``time.monotonic()`` of the start and of the current stage (the
            split being encoded), with ``stage_done_at_start`` shapes already done then (the ETA
            counts from there). stop_requested_at: when Stop was asked for (None: not asked).
        ended: ``time.monotonic()`` of the end (None while running).
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
    epochs: int = 0
    started: float = 0.0
    stage_started: float = 0.0
    stage_done_at_start: int = 0
    stop_requested_at: float | None = None
    ended: float | None = None

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

    @property
    def stop_latency(self) -> float | None:
        """Seconds from the stop request to the run's end (None unless stopped and ended)."""
        if self.stop_requested_at is None or self.ended is None:
            return None
        return max(0.0, self.ended - self.stop_requested_at)

    def eta(self, now: float | None = None) -> tuple[float, float | None]:
        """(seconds elapsed in the current stage, estimated seconds left or None) from its pace."""
        now = time.monotonic() if now is None else now
        elapsed = max(0.0, now - self.stage_started) if self.stage_started else 0.0
        done = self.done - self.stage_done_at_start
        if done <= 0 or self.total <= 0 or elapsed <= 0:
            return elapsed, None
        return elapsed, elapsed / done * max(0, self.total - self.done)

    def describe(self, now: float | None = None) -> str:
        """One line for a status label: what the run does now, with its progress, elapsed time and
        the time left ("encoding the training shapes 12/40 · 0:05 elapsed · about 0:14 left",
        "training · epoch 9/30", "cancelled after 12 of 30 epochs · ...")."""
        if self.status == "failed":
            return f"failed: {self.error}"
        if self.status == "idle":
            return "idle"
        if self.finished:
            return self._describe_end()
        stopping = " · stopping…" if self.stop_requested_at is not None else ""
        if self.stage == "encode":
            split = {"train": "training", "val": "validation"}.get(self.split, self.split)
            elapsed, left = self.eta(now)
            return (f"encoding the {split} shapes {self.done}/{self.total} · {format_seconds(elapsed)} elapsed"
                    + (f" · about {format_seconds(left)} left" if left is not None else "") + stopping)
        if self.stage == "epoch":
            return f"training · epoch {self.done}/{self.total or self.epochs}" + stopping
        if self.stage == "test":
            return f"testing the best epoch on {self.total} test shapes" + stopping
        if self.stage == "done":
            return "writing the results"
        return "starting…" + stopping

    def _describe_end(self) -> str:
        n = len(self.history)
        if self.status == "cancelled":
            text = f"cancelled after {n} of {self.epochs} epochs" if self.epochs else f"cancelled after {n} epochs"
        else:
            text = f"completed · {n} epochs"
        if self.result is not None and self.result.test_accuracy is not None:
            text += f" · test accuracy {self.result.test_accuracy:.1%}"
        latency = self.stop_latency
        if self.status == "cancelled" and latency is not None:
            text += f" · stopped {latency:.1f} s after Stop"
        return text


def format_seconds(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour on)."""
    s = int(round(max(0.0, seconds)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


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
        self._state = RunState(run_dir=Path(config.out_dir) if config.out_dir else None, epochs=int(config.epochs))
        #: who started it (a :class:`RunPool` owner: the app's browser session id), "" otherwise.
        self.owner = ""

    # -- public API ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the run in a daemon thread. Raises RuntimeError when it was already started."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("this runner was already started; make a new FewShotRunner for another run")
            self._state.status = "running"
            self._state.started = self._state.stage_started = time.monotonic()
            self._thread = threading.Thread(target=self._work, name="clip2point-fewshot", daemon=True)
        self._notify()
        self._thread.start()

    def stop(self) -> None:
        """Ask the run to stop: it ends within one training step or one encoder batch, status
        "cancelled" (the time it took: :attr:`RunState.stop_latency`)."""
        with self._lock:
            if self._state.stop_requested_at is None and not self._state.finished:
                self._state.stop_requested_at = time.monotonic()
        self._stop.set()
        self._notify()

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
            if (p.stage, p.split) != (s.stage, s.split) or int(p.done) < s.done:
                s.stage_started, s.stage_done_at_start = time.monotonic(), int(p.done)
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
                self._state.ended = time.monotonic()
        else:
            with self._lock:
                s = self._state
                s.result, s.run_dir = result, Path(result.run_dir)
                s.status = "cancelled" if result.status == "cancelled" else "completed"
                s.ended = time.monotonic()
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


# ----------------------------------------------------------------------------------------------
# what a run will cost


#: Measured images per second of each (backbone, device, precision), kept for the process.
_SPEEDS: dict[tuple[str, str, str], float] = {}
_SPEED_LOCK = threading.Lock()


def encoder_speed(backbone, images: int = 16) -> float:
    """Images per second one visual tower of ``backbone`` encodes (measured once per model,
    weights, device and precision, then remembered: ~1 s for ViT-B-32 on a laptop CPU).

    One warm-up pass of 2 images, then ``images`` images in one batch, as a few-shot run encodes them.
    """
    import torch

    key = (backbone.describe(), str(backbone.device), str(backbone.precision))
    with _SPEED_LOCK:
        if key in _SPEEDS:
            return _SPEEDS[key]
        size = backbone.image_size
        x = torch.rand(images, 3, size, size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            backbone.encode_images(x[:2], normalize=False)
            t = time.perf_counter()
            backbone.encode_images(x, normalize=False)
            speed = images / max(time.perf_counter() - t, 1e-6)
        _SPEEDS[key] = speed
        log.info("encoder speed of %s on %s: %.1f images/s", backbone.describe(), backbone.device, speed)
        return speed


@dataclass
class RunCost:
    """What a few-shot run will encode and about how long that takes (before it starts).

    Attributes:
        shapes: shapes per split ("train", "val", "test"). views: V. towers: encoders per view (1
            for clip+clip, 2 with a depth encoder). images: images to encode (at most; shapes in the
            view-feature cache are read instead). images_per_s: the measured encoder speed (one
            tower). seconds: the estimated encoding time. epochs: training epochs (seconds on cached features).
    """

    shapes: dict[str, int]
    views: int
    towers: int
    images_per_s: float
    epochs: int

    @property
    def images(self) -> int:
        return sum(self.shapes.values()) * self.views * self.towers

    @property
    def seconds(self) -> float:
        return self.images / max(self.images_per_s, 1e-6)

    def describe(self) -> str:
        """One line: shapes, images, estimated time and the measured speed behind it."""
        n = self.shapes
        return (f"{n.get('train', 0)} training + {n.get('val', 0)} validation + {n.get('test', 0)} test shapes × "
                f"{self.views} views{' × 2 encoders' if self.towers == 2 else ''} = {self.images:,} images to encode: "
                f"about {format_seconds(self.seconds)} at the measured {self.images_per_s:.0f} images/s (shapes "
                f"encoded before are read from the view-feature cache), then {self.epochs} epochs on cached "
                "features (seconds)")


def estimate_run(config: FewShotConfig, backbone, train_labels, test_count: int) -> RunCost:
    """The :class:`RunCost` of ``config`` on a dataset with these training labels ((N,) ints) and
    ``test_count`` test shapes, with ``backbone``'s measured speed (:func:`encoder_speed`)."""
    import numpy as np

    from clip2point.render import get_view_set

    counts = np.bincount(np.asarray(train_labels, dtype=np.int64))
    classes = int((counts > 0).sum())
    test = test_count if config.limit_test <= 0 else min(int(config.limit_test), test_count)
    shapes = {"train": classes * int(config.shots) * int(config.resamples), "val": classes * int(config.val_per_class),
              "test": int(test)}
    towers = 2 if getattr(backbone, "depth_encoder", None) is not None else 1
    return RunCost(shapes, len(get_view_set(config.views)), towers, encoder_speed(backbone), int(config.epochs))


# ----------------------------------------------------------------------------------------------
# the runs on disk


@dataclass
class RunSummary:
    """One run folder, as a run browser lists it (read through :class:`~clip2point.fewshot.rundir.RunFolder`).

    Attributes:
        path: the folder. status: "completed", "cancelled", or "unfinished" (no metrics.json: still
            training, or interrupted). dataset, shots, gate, views, paths: its settings.
        epochs, epochs_planned: epochs done and asked for. val_accuracy, test_accuracy: in [0, 1]
            or None. modified: the folder's last change (seconds since the epoch). random_weights:
            trained on random CLIP weights (its numbers are meaningless).
    """

    path: Path
    status: str
    dataset: str
    shots: int
    gate: str
    views: str
    paths: str
    epochs: int
    epochs_planned: int
    val_accuracy: float | None
    test_accuracy: float | None
    modified: float
    random_weights: bool

    @property
    def date(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(self.modified))

    def label(self) -> str:
        """One line naming the run: folder · dataset K-shot · gate · accuracy · date."""
        acc = (f"test {self.test_accuracy:.1%}" if self.test_accuracy is not None
               else f"val {self.val_accuracy:.1%}" if self.val_accuracy is not None else self.status)
        return f"{self.path.name} · {self.dataset} {self.shots}-shot · gate {self.gate} · {acc} · {self.date}"


def summarize_run(path: str | Path) -> RunSummary:
    """The :class:`RunSummary` of one run folder.

    Raises:
        CheckpointError: not a run folder (no config.json) or a damaged one.
    """
    from clip2point.fewshot.rundir import RunFolder

    run = RunFolder(path)
    cfg, metrics = run.config, run.metrics or {}
    history = run.history
    return RunSummary(
        run.path, str(metrics.get("status") or "unfinished"), cfg.dataset, int(cfg.shots), cfg.gate, cfg.views, run.paths,
        int(metrics.get("epochs_completed") or len(history)), int(cfg.epochs), metrics.get("val_accuracy"),
        metrics.get("test_accuracy"), _last_change(run.path),
        bool(metrics.get("random_weights", run.backbone_info.get("random_weights", False))))


def list_runs(root: str | Path, limit: int = 200) -> list[RunSummary]:
    """The few-shot run folders directly under ``root`` (newest first, at most ``limit``);
    folders that are not runs, or damaged ones, are skipped (logged)."""
    from clip2point.errors import CheckpointError

    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for entry in root.iterdir():
        if entry.is_symlink() or not entry.is_dir() or not (entry / "config.json").is_file():
            continue
        try:
            out.append(summarize_run(entry))
        except (CheckpointError, OSError) as err:
            log.info("skipping %s in the run list: %s", entry, err)
    out.sort(key=lambda r: r.modified, reverse=True)
    return out[:limit]


#: Settings of a quick few-shot run (the app's and FewShotPanel's defaults): 4 shots, 2 validation
#: shapes per class and 60 test shapes of ModelNet10 are 120 shapes × 10 views = 1,200 images, about
#: 50 s with ViT-B-32 fp32 on a 2-core laptop CPU (~23 images/s; bf16 ~80/s), then 30 epochs in seconds.
QUICK_RUN = {"shots": 4, "epochs": 30, "val_per_class": 2, "limit_test": 60, "views": "10"}

#: The command that runs the full few-shot protocol (CLIP2Point §4.3 / PointCLIP: 16 shots, the
#: released 100 epochs, every test shape; encoding ModelNet40 takes about an hour on a laptop CPU).
FULL_PROTOCOL_COMMAND = ("clip2point fewshot --dataset modelnet40 --data-dir DIR --shots 16 --epochs 100 "
                         "--depth-encoder best_eval.pth --precision auto -o runs/mn40-16shot")
