"""The few-shot run folder: its files, how a run writes them, and :class:`RunFolder`, the one reader.

A run folder (see :data:`RUN_FILES`) holds ``config.json`` (the :class:`FewShotConfig`, the adapter's
:class:`~clip2point.gdpa.GDPAConfig`, classes, view labels, paths, how the backbone was loaded),
``adapter.safetensors`` (the best epoch's adapter), ``last.safetensors`` (the last epoch's training
state), ``features.safetensors`` (the feature cache), ``history.jsonl`` (one :class:`EpochStats` per
line), ``metrics.json`` (the outcome) and the plots; a run imported from the authors' checkpoint
(:mod:`clip2point.fewshot.released`) also has its own ``depth_encoder.safetensors``. A run folder may come from anywhere: every read
goes through :func:`run_file` (no link out of the folder) and checks what it parses.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..backbone import ClipBackbone
from ..checkpoints import json_safe, read_json, save_state_dict_atomic, write_json_atomic, write_text_atomic
from ..errors import CheckpointError, Clip2PointError
from ..gdpa import GatedDualPathAdapter, GDPAConfig
from .config import FewShotConfig

log = logging.getLogger(__name__)

__all__ = [
    "RUN_FILES", "OPTIONAL_RUN_FILES", "RUN_FORMAT", "ADAPTER_FORMAT", "run_file", "read_run_config", "EpochStats", "HistoryFile",
    "prepare_run_dir", "legacy_resume_config", "check_same_backbone", "backbone_info", "write_run_config", "save_adapter",
    "write_metrics", "write_plots", "GateWeights", "RunFolder",
]

#: Files of a run directory.
RUN_FILES = {
    "config": "config.json", "adapter": "adapter.safetensors", "last": "last.safetensors",
    "features": "features.safetensors", "metrics": "metrics.json", "history": "history.jsonl",
    "curves": "curves.png", "gate": "gate_weights.png", "confusion": "confusion.png",
}
#: Files only some runs have: ``depth_encoder`` (a run's own depth encoder, from an imported checkpoint).
OPTIONAL_RUN_FILES = {"depth_encoder": "depth_encoder.safetensors"}
#: ``format`` of config.json and of the adapter file's metadata.
RUN_FORMAT, ADAPTER_FORMAT = "clip2point-fewshot-run/1", "clip2point-gdpa/1"


def run_file(run_dir: str | os.PathLike, key: str) -> Path:
    """``run_dir / RUN_FILES[key]`` (or :data:`OPTIONAL_RUN_FILES`), refusing a link that leads out of the
    run folder (it may come from anywhere).

    Raises:
        CheckpointError: the file exists and resolves outside the folder.
    """
    run_dir = Path(run_dir)
    path = run_dir / {**RUN_FILES, **OPTIONAL_RUN_FILES}[key]
    if path.exists() and run_dir.resolve() not in path.resolve().parents:
        raise CheckpointError(f"{path} points outside its run folder (to {path.resolve()}); refusing to read it")
    return path


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a few-shot run folder, checked (it may come from anywhere).

    Returns:
        The parsed dict: ``fewshot`` (the :class:`FewShotConfig` fields) and ``gdpa`` dicts,
        ``classes`` (list of str), ``paths`` ("depth+clip" or "clip+clip"), ``backbone`` (dict,
        how the run's encoders were loaded; may be empty), ``view_labels``.

    Raises:
        CheckpointError: no config.json (or a link leading out of the folder), unreadable or invalid
            JSON, or fields of the wrong type.
    """
    path = run_file(run_dir, "config")
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a few-shot run folder (no config.json); train one with `clip2point fewshot`")
    cfg = read_json(path, "run config", "the run folder is damaged, train the run again")
    problems = []
    if not isinstance(cfg, dict):
        problems.append("not a JSON object")
        cfg = {}
    for key, kind in (("fewshot", dict), ("gdpa", dict), ("classes", list)):
        if not isinstance(cfg.get(key), kind):
            problems.append(f"{key!r} missing or not a {kind.__name__}")
    if isinstance(cfg.get("classes"), list) and not all(isinstance(c, str) for c in cfg["classes"]):
        problems.append("'classes' holds non-strings")
    cfg.setdefault("paths", "clip+clip")
    if cfg["paths"] not in ("depth+clip", "clip+clip"):
        problems.append(f"'paths' is {str(cfg['paths'])[:40]!r}")
    info = cfg.setdefault("backbone", {})
    if not isinstance(info, dict):
        problems.append("'backbone' is not an object")
    else:
        types = {"model_name": str, "weights_kind": str, "weights_location": str, "paths": str, "describe": str,
                 "depth_encoder": (str, type(None)), "precision": str}
        problems += [f"backbone field {k!r} has the wrong type" for k, t in types.items() if k in info and not isinstance(info[k], t)]
    if problems:
        raise CheckpointError(f"{path} is not a valid few-shot run config ({'; '.join(problems)}); the run folder is "
                              "damaged, train the run again")
    return cfg


# ----------------------------------------------------------------------------------------------
# history.jsonl


@dataclass
class EpochStats:
    """One epoch of training (one line of ``history.jsonl``): mean train loss and accuracy (train
    mode, with dropout), validation accuracy/loss (eval mode; NaN without a validation split), the
    validation gate per view (V,) (share of path A, mean over the validation shapes), seconds."""

    epoch: int
    train_loss: float
    train_acc: float
    val_acc: float
    val_loss: float
    val_gate: list[float]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


class HistoryFile:
    """``history.jsonl``: one JSON line per finished epoch, appended (a checkpoint never rewrites the history)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[Any]:
        """The parsed lines, up to the first that is not JSON (a line cut by a crash: only ever the last one)."""
        rows = []
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    break
        return rows

    def restore(self, epochs_done: int, legacy: list[dict] | None = None) -> list[EpochStats]:
        """The history of epochs 1..``epochs_done`` (the checkpoint's), dropping lines written after it.

        ``legacy``: the history a pre-``history.jsonl`` checkpoint kept in its state (used when given).

        Raises:
            CheckpointError: the file lacks some of the epochs done.
        """
        rows = [dict(h) for h in legacy] if legacy is not None else self.read() if epochs_done else []
        by_epoch = {int(r["epoch"]): r for r in rows if isinstance(r, dict) and 0 < int(r.get("epoch", 0)) <= epochs_done}
        if len(by_epoch) != epochs_done:
            raise CheckpointError(f"{self.path} holds {len(by_epoch)} of the {epochs_done} epochs the checkpoint has "
                                  "done; the run folder is damaged, start it again without --resume")
        history = [EpochStats(**{f.name: by_epoch[e][f.name] for f in fields(EpochStats)}) for e in sorted(by_epoch)]
        lines = "".join(json.dumps(h.as_dict()) + "\n" for h in history)
        if not self.path.is_file() or self.path.read_text(encoding="utf-8") != lines:
            write_text_atomic(self.path, lines)
        return history

    def append(self, stats: EpochStats) -> None:
        """Append one line (flushed and synced; never through a link)."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(json.dumps(stats.as_dict()) + "\n")
            f.flush()
            os.fsync(f.fileno())


# ----------------------------------------------------------------------------------------------
# writing a run


def prepare_run_dir(config: FewShotConfig) -> tuple[Path, bool]:
    """Create the run directory; returns (path, resuming: a run with the same settings is there).

    Raises:
        Clip2PointError: it holds a run and neither resume nor overwrite is set.
        CheckpointError: resuming with settings other than :attr:`FewShotConfig.RESUMABLE_CHANGES` changed.
    """
    run_dir = Path(config.out_dir)
    cfg_path = run_dir / RUN_FILES["config"]
    if cfg_path.is_file() and not config.resume:
        if not config.overwrite:
            raise Clip2PointError(
                f"{run_dir} already holds a few-shot run; resume it (--resume), replace it (--overwrite) "
                "or choose another output folder"
            )
        for name in [*RUN_FILES.values(), *OPTIONAL_RUN_FILES.values()]:
            (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    if config.resume and cfg_path.is_file():
        old = RunFolder(run_dir).config
        changed = [f.name for f in fields(FewShotConfig) if f.name not in FewShotConfig.RESUMABLE_CHANGES
                   and getattr(old, f.name) != getattr(config, f.name)]
        if changed:
            raise CheckpointError(
                f"cannot resume {run_dir}: these settings differ from the run's config.json: "
                + ", ".join(f"{n} ({getattr(old, n)!r} → {getattr(config, n)!r})" for n in changed)
                + "; only epochs, device and paths may change"
            )
        return run_dir, True
    if config.resume:
        log.info("%s holds no run to resume; starting a new one", run_dir)
    return run_dir, False


def legacy_resume_config(config: FewShotConfig) -> FewShotConfig:
    """``config``, resuming a run whose config.json predates some of
    :data:`FewShotConfig.LEGACY_VALUES`' fields: with those fields as that run had them (logged).

    A run started before ``adapter_input``/``prompt_style`` existed fed normalised features and
    spaced class names; resuming it with today's defaults would otherwise be refused as a change of
    settings. Returns ``config`` itself when not resuming or nothing is missing.
    """
    cfg_path = Path(config.out_dir) / RUN_FILES["config"]
    if not config.resume or not cfg_path.is_file():
        return config
    stored = RunFolder(config.out_dir).config_dict["fewshot"]
    adopt = {k: v for k, v in FewShotConfig.LEGACY_VALUES.items() if k not in stored and getattr(config, k) != v}
    if not adopt:
        return config
    log.info("resuming a run started before %s existed: using %s", ", ".join(adopt),
             ", ".join(f"{k}={v!r}" for k, v in adopt.items()))
    return replace(config, **adopt)


def check_same_backbone(run_dir: Path, backbone: ClipBackbone) -> None:
    """Resuming needs the encoders the run started with (its features and adapter depend on them).

    Raises:
        CheckpointError: the run's config.json names another backbone.
    """
    before = RunFolder(run_dir).backbone_info.get("describe")
    if before and before != backbone.describe():
        raise CheckpointError(
            f"cannot resume {run_dir}: it was trained with {before!r}, not {backbone.describe()!r}; "
            "load the same --model/--weights/--depth-encoder"
        )


def backbone_info(backbone: ClipBackbone, paths: str) -> dict[str, Any]:
    """How the run's encoders were loaded (the ``backbone`` entry of config.json)."""
    return {
        "model_name": backbone.model_name, "describe": backbone.describe(), "random_weights": backbone.weights.is_random,
        "weights_kind": backbone.weights.kind, "weights_location": backbone.weights.location,
        "depth_encoder": backbone.depth_weights.location if backbone.depth_weights else None,
        "embed_dim": backbone.embed_dim, "paths": paths, "precision": backbone.precision,
    }


def write_run_config(run_dir: Path, config: FewShotConfig, gdpa: GDPAConfig, classes: list[str],
                     view_labels: list[str], paths: str, backbone: ClipBackbone, extra: dict[str, Any] | None = None) -> Path:
    """Write ``config.json`` atomically (format :data:`RUN_FORMAT`); returns its path.

    ``extra``: more top-level entries (e.g. ``imported``: where an imported run came from)."""
    return write_json_atomic(run_dir / RUN_FILES["config"], {
        "format": RUN_FORMAT, "fewshot": config.to_dict(), "gdpa": asdict(gdpa), "classes": classes,
        "view_labels": view_labels, "paths": paths, "backbone": backbone_info(backbone, paths), **(extra or {}),
    })


def save_adapter(run_dir: Path, model: GatedDualPathAdapter, epoch: int, val_accuracy: float, classes: list[str],
                 paths: str, config: FewShotConfig) -> Path:
    """Write the adapter's weights as ``adapter.safetensors`` (atomic; format :data:`ADAPTER_FORMAT`)."""
    meta = {"format": ADAPTER_FORMAT, "gdpa": model.config.to_json(), "epoch": epoch,
            "val_accuracy": val_accuracy, "classes": json.dumps(classes), "paths": paths,
            "views": config.views, "template": config.template}
    return save_state_dict_atomic(model.state_dict(), run_dir / RUN_FILES["adapter"], meta)


def write_metrics(run_dir: Path, metrics: dict[str, Any], classes: list[str], plots: bool) -> dict[str, Any]:
    """Write the plots (when ``plots``; their paths go to ``metrics["plots"]``) and ``metrics.json``
    (atomic; NaN/inf written as null). Returns the metrics as written."""
    metrics = {**metrics, "plots": write_plots(run_dir, metrics, classes) if plots else {}}
    metrics = json_safe(metrics)
    write_json_atomic(run_dir / RUN_FILES["metrics"], metrics)
    return metrics


def write_plots(run_dir: Path, metrics: dict[str, Any], classes: list[str]) -> dict[str, str]:
    """curves.png (with a history), gate_weights.png (with a gate, see :meth:`GateWeights.from_metrics`)
    and confusion.png (with a test result) of a run's ``metrics``; returns {name: path}."""
    from ..plots import save_confusion_matrix, save_gate_weights, save_training_curves

    out = {}
    tag = f"{metrics['dataset']} {metrics['shots']}-shot, gate {metrics['gate']}, {metrics['paths']}" + (
        " (random weights)" if metrics["random_weights"] else "")
    if metrics["history"]:
        out["curves"] = str(save_training_curves(metrics["history"], run_dir / RUN_FILES["curves"],
                                                 title=f"{tag}: best val epoch {metrics['best_epoch']}"))
    gate = GateWeights.from_metrics(metrics)
    if gate is not None:
        names = ("depth encoder", "CLIP") if gate.paths == "depth+clip" else ("path A (CLIP)", "path B (CLIP)")
        out["gate"] = str(save_gate_weights(gate.per_view.tolist(), gate.view_labels, run_dir / RUN_FILES["gate"],
                                            title=f"{tag}: gate per view, mean over the {gate.split} set",
                                            importance=metrics["view_importance"], path_names=names))
    if metrics["test"]:
        acc = metrics["test_accuracy"] * 100
        out["confusion"] = str(save_confusion_matrix(
            np.asarray(metrics["test"]["confusion_matrix"]), classes, run_dir / RUN_FILES["confusion"],
            title=f"{tag}: test {acc:.2f}% ({metrics['data']['test_shapes']} shapes)"))
    return out


# ----------------------------------------------------------------------------------------------
# reading a run


def _float_array(value: Any, what: str, ndim: int) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)  # None (a class without test shapes) becomes NaN
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != ndim:
        raise CheckpointError(f"metrics.json: {what!r} is not a {ndim}-d list of numbers; the run folder is damaged")
    return arr


@dataclass(frozen=True)
class GateWeights:
    """The gate of a trained adapter, averaged over the test shapes (else the validation shapes).

    Attributes:
        split: "test" (the best epoch's adapter on the test shapes) or "validation" (the best epoch's
            validation mean: a run cancelled before its test).
        per_view: (V,) float64, mean α per view: the share of path A (the depth encoder, or CLIP's
            first path with ``paths`` "clip+clip") in [0, 1].
        per_class: (C, V) float64 mean α per true class and view over the test shapes (NaN rows for
            classes without test shapes), or None (validation split, or a run older than this field).
        view_labels: V labels ("elev 0°, azim 0°"). classes: C class names (empty when unknown).
        importance: (V,) view importances (sum 1) of the adapter's aggregator, or None.
        paths: "depth+clip" or "clip+clip".
    """

    split: str
    per_view: np.ndarray
    per_class: np.ndarray | None
    view_labels: list[str]
    classes: list[str]
    importance: np.ndarray | None = None
    paths: str = "clip+clip"

    @classmethod
    def from_metrics(cls, metrics: dict[str, Any], classes: list[str] | None = None,
                     view_labels: list[str] | None = None) -> GateWeights | None:
        """The gate of a run's metrics (``metrics.json``, or ``RunResult.metrics``): the test mean
        (``gate_weights``) when the run was tested, else the best epoch's validation mean
        (``val_gate_weights``), else None (no epoch validated).

        Args:
            classes, view_labels: used when the metrics do not name them (older runs).

        Raises:
            CheckpointError: the gate fields are not lists of numbers of fitting sizes.
        """
        per_view, split = metrics.get("gate_weights"), "test"
        if not per_view:
            per_view, split = metrics.get("val_gate_weights"), "validation"
        if not per_view:
            return None
        gate = _float_array(per_view, f"{'val_' if split == 'validation' else ''}gate_weights", 1)
        per_class = metrics.get("class_gate_weights") if split == "test" else None
        by_class = None if per_class is None else _float_array(per_class, "class_gate_weights", 2)
        importance = metrics.get("view_importance")
        imp = None if importance is None else _float_array(importance, "view_importance", 1)
        names = list((metrics.get("test") or {}).get("classes") or classes or [])
        if (by_class is not None and by_class.shape != (len(names), len(gate))) or (imp is not None and imp.shape != gate.shape):
            raise CheckpointError("metrics.json: the gate fields do not fit the run's views and classes; "
                                  "the run folder is damaged")
        labels = list(metrics.get("view_labels") or view_labels or [])
        return cls(split, gate, by_class, labels, names, imp, str(metrics.get("paths") or "clip+clip"))


class RunFolder:
    """A few-shot run folder written by :func:`~clip2point.fewshot.run_fewshot`, read and checked.

    The constructor reads and checks ``config.json`` (see :func:`read_run_config`); ``metrics``
    is read on first access. Every file is read through :func:`run_file` (no link leading out).

    Args:
        path: the run folder.

    Attributes:
        path: the run folder. config_dict: the checked ``config.json``.

    Raises:
        CheckpointError: no config.json, unreadable, not JSON, or fields of the wrong type.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.config_dict: dict[str, Any] = read_run_config(self.path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def file(self, key: str) -> Path:
        """The path of one of :data:`RUN_FILES` or :data:`OPTIONAL_RUN_FILES` (it may not exist yet);
        CheckpointError for a link leading out."""
        return run_file(self.path, key)

    def _section(self, key: str, parse: Any) -> Any:
        try:
            return parse(self.config_dict[key])
        except (ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{self.file('config')} is unreadable ({err}); the run directory is damaged") from None

    @property
    def config(self) -> FewShotConfig:
        """The run's :class:`FewShotConfig` (CheckpointError when its fields do not fit)."""
        return self._section("fewshot", FewShotConfig.from_dict)

    @property
    def gdpa_config(self) -> GDPAConfig:
        """The adapter's :class:`~clip2point.gdpa.GDPAConfig` (CheckpointError when invalid)."""
        return self._section("gdpa", GDPAConfig.from_dict)

    @property
    def classes(self) -> list[str]:
        """The C class names, in label order."""
        return list(self.config_dict["classes"])

    @property
    def view_labels(self) -> list[str]:
        """The V view labels (empty for runs older than this field)."""
        return [str(v) for v in self.config_dict.get("view_labels") or []]

    @property
    def paths(self) -> str:
        """"depth+clip" or "clip+clip"."""
        return self.config_dict["paths"]

    @property
    def backbone_info(self) -> dict[str, Any]:
        """How the run's encoders were loaded: ``model_name``, ``describe``, ``weights_kind``,
        ``weights_location``, ``depth_encoder``, ``paths``, ... (may be empty; types checked)."""
        return self.config_dict["backbone"]

    @property
    def depth_encoder_file(self) -> Path | None:
        """The run's own depth encoder (``depth_encoder.safetensors``, e.g. imported with the authors'
        few-shot checkpoint), or None (the run used the depth encoder the backbone was loaded with)."""
        path = self.file("depth_encoder")
        return path if path.is_file() else None

    @cached_property
    def metrics(self) -> dict[str, Any] | None:
        """``metrics.json`` (read once), or None while the run has not written it.

        Raises:
            CheckpointError: unreadable, not JSON, or not a JSON object.
        """
        path = self.file("metrics")
        if not path.is_file():
            return None
        metrics = read_json(path, "run metrics", "the run folder is damaged")
        if not isinstance(metrics, dict):
            raise CheckpointError(f"{path} is not a JSON object; the run folder is damaged")
        return metrics

    @property
    def history(self) -> list[dict[str, Any]]:
        """One dict per finished epoch (the :class:`EpochStats` fields), from ``history.jsonl``
        (``metrics.json``'s history for runs older than that file)."""
        path = self.file("history")
        rows = HistoryFile(path).read() if path.is_file() else (self.metrics or {}).get("history") or []
        return [r for r in rows if isinstance(r, dict)]

    def gate_weights(self) -> GateWeights | None:
        """The run's gate (test mean, else validation mean; see :meth:`GateWeights.from_metrics`), or
        None (no metrics.json yet, or no epoch validated)."""
        metrics = self.metrics
        return None if metrics is None else GateWeights.from_metrics(metrics, self.classes, self.view_labels)
