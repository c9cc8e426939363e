"""Training a few-shot run: :class:`AdapterTrainer` (the adapter, its optimizer and AMP state) and
:func:`run_fewshot` (a whole run: splits, features, epochs, checkpoints, test, metrics).

Reproducibility: every random choice derives from ``(config.seed, stream, epoch)`` (see
:mod:`clip2point.fewshot.config`) through private generators, so an interrupted run that is
resumed ends exactly where an uninterrupted one does (on the CPU; bitwise for the same thread count).
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..backbone import ClipBackbone
from ..checkpoints import load_state_dict_file, load_training_state, save_training_state
from ..evaluate import EvalResult
from ..gdpa import GatedDualPathAdapter, GDPAConfig
from ..rng import private_rng
from ..viewcache import ViewFeatureCache
from .config import STREAM_EPOCH, STREAM_INIT, FewShotConfig, make_splits, torch_seed
from .features import (
    EncoderPasses, FeatureCache, RunFeatures, SplitFeatures, ViewEncoder, amp_dtype, autocast, released_recipe_passes,
)
from .rundir import (
    RUN_FILES, EpochStats, HistoryFile, check_same_backbone, legacy_resume_config, prepare_run_dir, run_file, save_adapter,
    write_metrics, write_run_config,
)

log = logging.getLogger(__name__)

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_FORMAT_V1", "EpochStats", "Progress", "RunResult", "AdapterTrainer", "run_fewshot"]

#: ``format`` of ``last.safetensors`` (the training state a run resumes from), and the earlier one still read.
CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_V1 = "clip2point-fewshot-checkpoint/2", "clip2point-fewshot-checkpoint/1"


@dataclass
class Progress:
    """A progress report of :func:`run_fewshot`.

    Attributes:
        stage: "encode" (``done``/``total`` shapes of ``split``), "epoch" (``done``/``total`` epochs,
            ``stats`` set), "test" (evaluating the best checkpoint), "done".
        best_val_acc: the best validation accuracy so far (epoch reports).
    """

    stage: str
    done: int
    total: int
    split: str = ""
    stats: EpochStats | None = None
    best_val_acc: float = float("nan")


@dataclass
class RunResult:
    """Outcome of :func:`run_fewshot`.

    Attributes:
        run_dir: the run directory. status: "completed" or "cancelled".
        metrics: the content of ``metrics.json``. history: one :class:`EpochStats` per epoch done.
        best_epoch: epoch of ``adapter.safetensors`` (0 when none was saved).
        test: test-set evaluation of the best checkpoint (None when cancelled).
    """

    run_dir: Path
    status: str
    metrics: dict[str, Any]
    history: list[EpochStats]
    best_epoch: int
    test: EvalResult | None = None

    @property
    def val_accuracy(self) -> float:
        """The best epoch's validation accuracy in [0, 1] (NaN without one)."""
        return float(self.metrics.get("val_accuracy", float("nan")))

    @property
    def test_accuracy(self) -> float | None:
        """Top-1 test accuracy of the best checkpoint in [0, 1]; None when not tested."""
        return None if self.test is None else self.test.accuracy


def _batches(perm: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Split a permutation into batches; a last batch of one shape joins the previous one (BatchNorm
    needs two samples in training mode)."""
    chunks = list(perm.split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


class AdapterTrainer:
    """The adapter, its AdamW optimizer and AMP state, with checkpoint (de)serialisation.

    Args:
        model: the adapter (on ``device``). config: lr and weight decay. device: where it trains
            (autocast, bfloat16 or float16 with loss scaling, on CUDA).
    """

    def __init__(self, model: GatedDualPathAdapter, config: FewShotConfig, device: torch.device) -> None:
        self.model, self.device = model, device
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and amp_dtype() == torch.float16)

    def train_epoch(self, fa: torch.Tensor, fb: torch.Tensor, labels: torch.Tensor, batch_size: int,
                    generator: torch.Generator, should_stop: Callable[[], bool]) -> tuple[float, float] | None:
        """One pass over the (S, V, D) features in a seeded order; (mean loss, accuracy), or None if stopped."""
        self.model.train()
        loss_sum, correct = 0.0, 0
        perm = torch.randperm(len(labels), generator=generator)
        for idx in _batches(perm, batch_size):
            if should_stop():
                return None
            idx = idx.to(fa.device)
            with autocast(self.device):
                out = self.model(fa[idx], fb[idx])
                loss = F.cross_entropy(out.logits.float(), labels[idx])
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((out.logits.argmax(dim=1) == labels[idx]).sum())
        return loss_sum / len(labels), correct / len(labels)

    @torch.no_grad()
    def recalibrate_batchnorm(self, fa: torch.Tensor, fb: torch.Tensor, batch_size: int) -> None:
        """Re-estimate the BatchNorm running statistics on the given training features ("precise BN").

        Every BatchNorm layer's running mean/variance is reset and set to the average of the batch
        statistics of one pass over the shapes in order (BatchNorm in training mode, dropout off,
        no gradients). The released code keeps PyTorch's momentum-0.1 running averages, whose
        initial variance of 1 dominates for roughly the first 100 steps — longer than a whole short
        few-shot run (1 shot × 10 classes is one step per epoch), and CLIP features vary by only
        ~1e-4 per channel — so validation in eval mode would see wrongly scaled features.
        """
        norms = [m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        self.model.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the pass
            m.train()
        try:
            for idx in _batches(torch.arange(fa.shape[0], device=fa.device), batch_size):
                with autocast(self.device):
                    self.model(fa[idx], fb[idx])
        finally:
            for m, mom in zip(norms, momenta):
                m.momentum = mom
            self.model.eval()

    @torch.no_grad()
    def evaluate(self, fa: torch.Tensor, fb: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> dict[str, Any]:
        """Eval-mode scores of (S, V, D) features: ``predictions`` (S,) int64, mean ``loss``, ``accuracy``
        (NaN for S = 0), ``gate`` (S, V) and ``shape_gate`` (S,) float32, on the CPU."""
        self.model.eval()
        preds, gates, shape_gates, loss_sum = [], [], [], 0.0
        for start in range(0, len(labels), batch_size):
            sl = slice(start, start + batch_size)
            with autocast(self.device):
                out = self.model(fa[sl], fb[sl])
            loss_sum += float(F.cross_entropy(out.logits.float(), labels[sl], reduction="sum"))
            preds.append(out.logits.argmax(dim=1).cpu())
            gates.append(out.gate.float().cpu())
            shape_gates.append(out.shape_gate.float().cpu())
        n = max(1, len(labels))
        pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.int64)
        return {
            "predictions": pred, "loss": loss_sum / n,
            "accuracy": float((pred == labels.cpu()).float().mean()) if len(labels) else float("nan"),
            "gate": torch.cat(gates) if gates else torch.zeros(0, self.model.config.views),
            "shape_gate": torch.cat(shape_gates) if shape_gates else torch.zeros(0),
        }

    def save(self, path: Path, state: dict[str, Any]) -> None:
        """Atomic checkpoint (format :data:`CHECKPOINT_FORMAT`, see
        :func:`~clip2point.checkpoints.save_training_state`): adapter weights, optimizer and scaler
        state, the run's JSON ``state`` and the adapter's config (header ``gdpa``)."""
        save_training_state(path, self.model, self.optimizer, scaler=self.scaler, format=CHECKPOINT_FORMAT,
                            state=state, metadata={"gdpa": self.model.config.to_json()})

    def load(self, path: Path) -> dict[str, Any]:
        """Restore a checkpoint written by :meth:`save` (or by clip2point before the shared
        serialiser: format ``clip2point-fewshot-checkpoint/1``); returns its JSON state.

        Raises:
            CheckpointError: another format, or a checkpoint that does not fit or is damaged.
        """
        def check(state: dict[str, Any]) -> None:
            int(state["epoch"]), int(state["best_epoch"]), float(state["best_val_acc"])

        return load_training_state(path, self.model, self.optimizer, scaler=self.scaler,
                                   format=(CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_V1), check_state=check,
                                   fix="start a new run (without --resume)")


def _stop_checker(should_stop: Callable[[], bool] | Any | None) -> Callable[[], bool]:
    if should_stop is None:
        return lambda: False
    if hasattr(should_stop, "is_set"):  # threading.Event
        return should_stop.is_set
    return should_stop


def _fingerprint(config: FewShotConfig, backbone: ClipBackbone, paths: str, image_size: int) -> dict[str, Any]:
    """The settings that determine a run's cached features (see :class:`FeatureCache`)."""
    keys = ("dataset", "shots", "views", "radius", "num_points", "up", "val_per_class", "limit_test",
            "resamples", "resample_keep", "seed", "cache_dtype")
    extra = {"features": "raw"} if config.adapter_input == "raw" else {}  # a "normalized" adapter takes either kind
    return {**{k: getattr(config, k) for k in keys}, "image_size": image_size, "paths": paths,
            "backbone": backbone.describe(), "model_name": backbone.model_name, **extra}


def _class_gate(gate: torch.Tensor, labels: np.ndarray, num_classes: int) -> list[list[float]]:
    """(C, V) mean gate per true class of (S, V) gates; NaN rows for classes without shapes."""
    lab = torch.as_tensor(labels)
    return [gate[lab == c].mean(dim=0).tolist() if bool((lab == c).any()) else [float("nan")] * gate.shape[1]
            for c in range(num_classes)]


class _Run:
    """State of one :func:`run_fewshot` call (kept in one object so each step is a small method)."""

    def __init__(self, config: FewShotConfig, backbone: ClipBackbone, progress, should_stop,
                 view_cache: ViewFeatureCache | None = None) -> None:
        config = legacy_resume_config(config)
        config.validate()
        self.config, self.backbone = config, backbone
        self.progress = progress or (lambda p: None)
        self.stop = _stop_checker(should_stop)
        self.device = torch.device(config.device) if config.device else backbone.device
        if backbone.device != self.device:
            log.info("moving the backbone to %s", self.device)
            backbone.to(self.device)
        self.timings = {"encode_s": 0.0, "train_s": 0.0, "test_s": 0.0}
        self.train_ds, self.test_ds, self.splits = make_splits(config)  # data errors before touching out_dir
        self.run_dir, self.resuming = prepare_run_dir(config)
        if self.resuming:
            check_same_backbone(self.run_dir, backbone)
        self.classes = list(self.train_ds.class_names)
        encoder = ViewEncoder(backbone, config.views, config.image_size, config.radius, batch_size=config.encode_batch_size,
                              passes=EncoderPasses(), cache=view_cache, normalize=False)  # raw; the adapter normalises if asked
        self.paths, self.view_labels = encoder.paths, encoder.views.labels()
        fingerprint = _fingerprint(config, backbone, self.paths, encoder.renderer.raster.image_size)
        cache_path = run_file(self.run_dir, "features") if self.resuming else self.run_dir / RUN_FILES["features"]
        cache = (FeatureCache.load(cache_path, fingerprint) if self.resuming else None) or FeatureCache(fingerprint=fingerprint)
        self.features = RunFeatures(encoder, config, cache, cache_path, self.report_encoding, self.stop)
        if config.resamples > 1 and config.resample_keep >= 1.0:
            log.warning("resamples=%d with resample_keep=1: every re-sample is the whole shape", config.resamples)
        log.info("few-shot %s: %d-shot, %d classes, %d train / %d val / %d test shapes, paths %s, %s",
                 config.dataset, config.shots, len(self.classes), len(self.splits.shots), len(self.splits.val),
                 len(self.splits.test), self.paths, backbone.describe())
        if self.paths == "clip+clip":
            log.info("no depth encoder loaded: both GDPA paths take CLIP features (paths clip+clip), encoded once")

    def report_encoding(self, split: str, done: int, total: int) -> None:
        self.progress(Progress("encode", done, total, split))

    def build_model(self) -> GatedDualPathAdapter:
        """A new adapter on the run's device, initialised from ``(seed, STREAM_INIT)``."""
        cfg = self.config
        gcfg = GDPAConfig(views=len(self.view_labels), dim=self.backbone.embed_dim, num_classes=len(self.classes),
                          gate=cfg.gate, dropout=cfg.dropout, gate_hidden=cfg.gate_hidden, input=cfg.adapter_input)
        text = self.backbone.text_features(self.classes, cfg.template)
        with private_rng(torch.Generator().manual_seed(torch_seed(cfg.seed, STREAM_INIT))):  # global RNG untouched
            model = GatedDualPathAdapter(gcfg, text, self.backbone.logit_scale)
        return model.to(self.device)

    def start(self, trainer: AdapterTrainer) -> tuple[dict[str, Any], HistoryFile, list[EpochStats]]:
        """The run's state (restored from ``last.safetensors`` when resuming), its history file and history."""
        state: dict[str, Any] = {"epoch": 0, "best_epoch": 0, "best_val_acc": -1.0, "best_val_loss": math.inf,
                                 "online_passes": {}}
        if self.resuming and run_file(self.run_dir, "last").is_file():
            state = trainer.load(self.run_dir / RUN_FILES["last"])
            self.features.online_passes = dict(state.get("online_passes", {}))
            log.info("resuming %s after epoch %d (best epoch %d)", self.run_dir, state["epoch"], state["best_epoch"])
        write_run_config(self.run_dir, self.config, trainer.model.config, self.classes, self.view_labels, self.paths,
                         self.backbone)
        history_file = HistoryFile(run_file(self.run_dir, "history"))
        return state, history_file, history_file.restore(state["epoch"], state.pop("history", None))

    def execute(self) -> RunResult:
        """Train (or resume) to ``config.epochs``, test the best checkpoint, write metrics.json."""
        cfg, t_run = self.config, time.perf_counter()
        trainer = AdapterTrainer(self.build_model(), cfg, self.device)
        state, history_file, history = self.start(trainer)
        status, train, val = "completed", None, None
        if cfg.mode == "cached":
            train = self.features.cached("train", self.train_ds, self.splits.shots, cfg.resamples)
            val = self.features.cached("val", self.train_ds, self.splits.val) if train is not None else None
            if train is None or val is None:
                status = "cancelled"
        epoch = state["epoch"]
        while status == "completed" and epoch < cfg.epochs:
            stats = self.run_epoch(trainer, epoch + 1, train, val)
            if stats is None:
                status = "cancelled"
                break
            epoch = stats.epoch
            history.append(stats)
            history_file.append(stats)  # before the checkpoint: a crash in between leaves a line that resume drops
            self.update_best(trainer, state, stats)
            state.update(epoch=epoch, online_passes=self.features.online_passes)
            trainer.save(self.run_dir / RUN_FILES["last"], state)
            self.progress(Progress("epoch", epoch, cfg.epochs, stats=stats, best_val_acc=state["best_val_acc"]))
            if self.stop():
                status = "cancelled" if epoch < cfg.epochs else status
                break
        if state["best_epoch"]:  # report (and test) the kept checkpoint, not the weights in memory
            trainer.model.load_state_dict(load_state_dict_file(self.run_dir / RUN_FILES["adapter"])[0])
        test = self.test(trainer) if status == "completed" and state["best_epoch"] else None
        if status == "completed" and test is None and self.stop():  # stopped while encoding the test shapes
            status = "cancelled"
        self.timings["total_s"] = time.perf_counter() - t_run
        metrics = write_metrics(self.run_dir, self.metrics(status, state, history, test, trainer), self.classes,
                                cfg.plots)
        self.progress(Progress("done", epoch, cfg.epochs))
        return RunResult(self.run_dir, status, metrics, history, state["best_epoch"], test[0] if test else None)

    def run_epoch(self, trainer: AdapterTrainer, epoch: int, train: SplitFeatures | None,
                  val: SplitFeatures | None) -> EpochStats | None:
        """Train one epoch (seeded by (seed, epoch)) and validate; None when stopped."""
        cfg, t_epoch = self.config, time.perf_counter()
        dropout = torch.Generator(device=self.device).manual_seed(torch_seed(cfg.seed, STREAM_EPOCH, epoch))
        trainer.model.set_dropout_generator(dropout)  # this epoch's dropout masks; the global RNG is never reseeded
        gen = torch.Generator().manual_seed(torch_seed(cfg.seed, STREAM_EPOCH, epoch, 1))
        if cfg.mode == "online":
            fresh = self.features.online(epoch, self.train_ds, self.splits.shots, self.splits.val)
            if fresh is None:
                return None
            train, val = fresh
        assert train is not None and val is not None
        t = time.perf_counter()
        choice = torch.randint(train.resamples, (len(train),), generator=gen)
        fa, fb = train.pick(choice, self.device)
        done = trainer.train_epoch(fa, fb, train.labels.to(self.device), cfg.batch_size, gen, self.stop)
        if done is None:
            return None
        if cfg.precise_bn:
            trainer.recalibrate_batchnorm(fa, fb, cfg.batch_size)
        ev = trainer.evaluate(*val.pick(device=self.device), val.labels.to(self.device))
        self.timings["train_s"] += time.perf_counter() - t
        gate = ev["gate"].mean(dim=0).tolist() if len(val) else []
        return EpochStats(epoch, done[0], done[1], ev["accuracy"], ev["loss"] if len(val) else float("nan"), gate,
                          time.perf_counter() - t_epoch)

    def update_best(self, trainer: AdapterTrainer, state: dict[str, Any], stats: EpochStats) -> None:
        """Keep ``adapter.safetensors`` at the best validation accuracy (ties: lower validation loss;
        without a validation split: the latest epoch)."""
        no_val = stats.val_acc != stats.val_acc
        better = no_val or stats.val_acc > state["best_val_acc"] or (
            stats.val_acc == state["best_val_acc"] and stats.val_loss < state["best_val_loss"])
        if better:
            state.update(best_epoch=stats.epoch, best_val_acc=stats.val_acc, best_val_loss=stats.val_loss)
            save_adapter(self.run_dir, trainer.model, stats.epoch, stats.val_acc, self.classes, self.paths, self.config)

    def test(self, trainer: AdapterTrainer) -> tuple[EvalResult, torch.Tensor, torch.Tensor] | None:
        """Evaluate the model (the best checkpoint) on the test shapes: (EvalResult, gate (S, V), shape gate (S,))."""
        test = self.features.cached("test", self.test_ds, self.splits.test)
        if test is None:
            return None
        t = time.perf_counter()
        self.progress(Progress("test", 0, len(test), "test"))
        ev = trainer.evaluate(*test.pick(device=self.device), test.labels.to(self.device))
        self.timings["test_s"] += time.perf_counter() - t
        result = EvalResult(self.classes, test.labels.numpy(), ev["predictions"].numpy().astype(np.int64))
        return result, ev["gate"], ev["shape_gate"]

    def metrics(self, status: str, state: dict[str, Any], history: list[EpochStats], test, trainer) -> dict[str, Any]:
        """The content of ``metrics.json`` (before plots; see :func:`~clip2point.fewshot.rundir.write_metrics`)."""
        cfg, v = self.config, len(self.view_labels)
        n_train, n_val, n_test = len(self.splits.shots), len(self.splits.val), len(self.splits.test)
        p = 1 if self.paths == "clip+clip" else 2
        passes = self.features.encoder.passes
        done_passes = EncoderPasses(dict(self.features.cache.passes)).merged(self.features.online_passes)
        released = released_recipe_passes(cfg.epochs, n_train, n_test, v)
        total = sum(done_passes.values())
        best = next((h for h in history if h.epoch == state["best_epoch"]), None)
        self.timings["encode_s"] = self.features.seconds
        return {
            "status": status, "dataset": cfg.dataset, "shots": cfg.shots, "gate": cfg.gate, "mode": cfg.mode,
            "paths": self.paths, "backbone": self.backbone.describe(), "random_weights": self.backbone.weights.is_random,
            "epochs_planned": cfg.epochs, "epochs_completed": state["epoch"], "best_epoch": state["best_epoch"],
            "train_loss": history[-1].train_loss if history else None,
            "train_accuracy": history[-1].train_acc if history else None,
            "val_accuracy": state["best_val_acc"] if state["best_epoch"] else None,
            "val_gate_weights": best.val_gate if best else None,
            "test_accuracy": test[0].accuracy if test else None,
            "test": test[0].as_dict() if test else None,
            "gate_weights": test[1].mean(dim=0).tolist() if test else None,
            "class_gate_weights": _class_gate(test[1], test[0].labels, len(self.classes)) if test else None,
            "shape_gate_mean": float(test[2].mean()) if test else None,
            "view_importance": trainer.model.importance().detach().float().cpu().tolist(),
            "view_labels": self.view_labels,
            "data": {"train_shapes": n_train, "val_shapes": n_val, "test_shapes": n_test,
                     "test_shapes_available": len(self.test_ds), "limit_test": cfg.limit_test,
                     "shots": [self.train_ds.names[i] for i in self.splits.shots],
                     "val": [self.train_ds.names[i] for i in self.splits.val]},
            "encoder_passes": {**done_passes, "total": total, "this_session": passes.total},
            "released_recipe_passes": released,
            "online_mode_passes": cfg.epochs * (n_train + n_val) * v * p + n_test * v * p,
            "reduction_vs_released": released / total if total else None,
            "timings_s": {k: round(t, 3) for k, t in self.timings.items()},
            "history": [h.as_dict() for h in history],
        }


def run_fewshot(
    config: FewShotConfig,
    backbone: ClipBackbone,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | Any | None = None,
    cache: ViewFeatureCache | None = None,
) -> RunResult:
    """Train a GDPA few-shot classifier and write a run directory (see :data:`~clip2point.fewshot.rundir.RUN_FILES`).

    Steps: choose the shots and validation shapes (seeded), encode them once (``mode="cached"``,
    ``features.safetensors``), train the adapter with AdamW for ``config.epochs`` epochs, validate
    after each epoch, checkpoint every epoch (``last.safetensors``; ``adapter.safetensors`` at the
    best validation accuracy), evaluate the best checkpoint on the test shapes, write
    ``metrics.json`` and the plots.

    Args:
        config: the run settings (``config.resume`` continues ``config.out_dir``).
        backbone: frozen encoders; with a depth encoder the paths are depth+clip, else clip+clip.
            Moved to ``config.device`` when that is set.
        progress: called with :class:`Progress` reports (encoding chunks, every epoch, test, done).
        should_stop: a callable returning True, or a ``threading.Event``, checked between steps and
            encoding chunks. The run then stops cleanly: the checkpoints of the epochs done stay,
            ``metrics.json`` says ``"status": "cancelled"`` and ``resume=True`` continues it.
        cache: a :class:`~clip2point.viewcache.ViewFeatureCache` shared across runs (another seed or
            gate encodes only shapes not seen before); None = no persistent cache. It holds the raw
            visual-tower features; the results do not depend on it.

    Returns:
        :class:`RunResult`.

    Raises:
        Clip2PointError: invalid settings; DatasetError: data missing or too small; CheckpointError:
            an unusable run directory to resume.

    Reproducibility: every random choice derives from ``(config.seed, epoch)`` through private
    generators (initialisation, dropout masks, shuffling, re-samples): nothing process-global is
    changed, so runs may train in background threads beside other work. Bitwise-repeatable runs
    on the CPU also want torch's deterministic-algorithms flag, which the ``clip2point fewshot``
    command turns on while it runs (a library call never flips it). Training uses autocast
    (bfloat16, else float16 with loss scaling) on CUDA.
    """
    return _Run(config, backbone, progress, should_stop, cache).execute()
