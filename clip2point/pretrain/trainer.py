"""CLIP2Point image-depth pre-training loop: one code path for one process and for torchrun/DDP.

Huang et al., ICCV 2023, §3.2, and the released ``pretraining.py``: the depth encoder (a copy of
CLIP's visual tower, fully trained) learns from depth renders of one random view per shape,
against the frozen CLIP image features of that view's RGB render (read from the pair cache,
see :mod:`clip2point.pretrain.data`); LAMB, lr 6e-3, weight decay 1e-4, cosine annealing with
warm restarts every 2 epochs (η_min 1e-5), stepped every iteration; batch 256, 100 epochs.

What differs from the release, on purpose:

* **Negatives across processes.** Under ``torchrun`` (DDP; NCCL on GPUs, gloo on CPU) features
  are all-gathered with gradients, so every process contrasts against the *global* batch; the
  released DataParallel code only contrasted within each GPU's share. ``--batch-size`` is the
  global batch; a 2-process run gives the same losses as one process with that batch.
* **Validation never touches a test set**: zero-shot accuracy on a held-out part of ModelNet's
  *train* split (first N shapes per class) picks the best checkpoint (the release picked on test).
* **Reproducible and resumable**: each sample's view, point subset and distance jitter depend
  only on (seed, epoch, index), drawn from their own seeded generators (a run never seeds or
  reads the process-wide RNGs, so it can run in a notebook beside other work); checkpoints hold
  model, optimizer and scheduler state, and ``resume`` continues at the same step with the same
  state.

Optimizer detail: ``timm.optim.Lamb`` with ``bias_correction=False`` and no global gradient
clipping, the closest match to ``torch_optimizer.Lamb``'s defaults used by the released code
(which also clamps the weight norm at 10 in the trust ratio; timm does not).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..backbone.precision import module_dtype
from ..checkpoints import write_json_atomic, write_text_atomic
from ..errors import CheckpointError, Clip2PointError
from ..render import RasterSettings
from .checkpointing import (
    CHECKPOINT_FORMAT, DEPTH_ENCODER_FORMAT, checkpoint_state, export_depth_encoder, load_checkpoint, read_checkpoint,
    save_best, save_checkpoint,
)
from .config import PretrainConfig
from .data import BackboneImageEncoder, PairDataset, PairSource, build_pair_cache, collate_pairs, feature_key
from .distributed import DistEnv, init_distributed, shutdown_distributed
from .model import PretrainModel, make_optimizer, make_scheduler, train_step

log = logging.getLogger(__name__)

__all__ = [
    "train", "TrainSummary", "MetricsLog", "validation_subset", "validate_encoder", "frozen_backbone", "image_feature_key",
    # re-exported: the pieces of a run, each in its own module
    "PretrainConfig", "DistEnv", "init_distributed", "shutdown_distributed", "PretrainModel", "make_optimizer",
    "make_scheduler", "train_step", "save_checkpoint", "load_checkpoint", "read_checkpoint", "checkpoint_state",
    "save_best", "export_depth_encoder", "CHECKPOINT_FORMAT", "DEPTH_ENCODER_FORMAT",
]


# --------------------------------------------------------------------------------------------
# validation and metrics


def validation_subset(data_dir: str | os.PathLike, dataset: str = "modelnet10", per_class: int = 10, num_points: int = 1024):
    """The first ``per_class`` shapes of each class of the dataset's **train** split (never test).

    Raises:
        DatasetError: the folder holds no such dataset.
    """
    from ..datasets import open_dataset

    ds = open_dataset(dataset, data_dir, "train", num_points=num_points)
    idx = np.concatenate([np.flatnonzero(ds.labels == c)[:per_class] for c in range(len(ds.class_names))])
    return ds.subset(np.sort(idx))


def validate_encoder(backbone, encoder: nn.Module, val_set, cfg: PretrainConfig) -> dict[str, float]:
    """Zero-shot accuracy of the depth encoder being trained, paired with (never put into) the backbone.

    Args:
        backbone: the CLIP backbone (its text tower and logit scale; its precision is validation's:
            a bf16 backbone encodes with a bf16 copy of ``encoder``). encoder: the depth encoder.
        val_set: a dataset from :func:`validation_subset`. cfg: ``val_template``, ``val_views``, ``val_batch_size``.

    Returns:
        ``val_accuracy``, ``val_mean_class_accuracy`` (fractions in [0, 1]) and ``val_shapes``.
    """
    from ..evaluate import evaluate_zero_shot
    from ..zeroshot import ZeroShotClassifier

    was_training = encoder.training
    encoder.eval()
    try:
        tower = encoder  # a bf16 backbone validates a bf16 copy (the trained weights stay fp32)
        if module_dtype(encoder) != backbone.dtype:
            tower = copy.deepcopy(encoder).to(backbone.dtype)
        paired = backbone.with_depth_encoder(tower, name="the encoder being pre-trained")
        clf = ZeroShotClassifier(paired, val_set.class_names, cfg.val_template, cfg.val_views, encoder="depth",
                                 batch_size=cfg.val_batch_size * int(cfg.val_views))
        res = evaluate_zero_shot(clf, val_set, batch_size=cfg.val_batch_size)
    finally:
        encoder.train(was_training)
    return {"val_accuracy": res.accuracy, "val_mean_class_accuracy": res.mean_class_accuracy, "val_shapes": len(res.labels)}


def _record_step(line: str) -> int | None:
    """The step of one metrics.jsonl line; None for a blank or damaged line (e.g. cut by a kill)."""
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    step = rec.get("step", 0) if isinstance(rec, dict) else None
    return step if isinstance(step, int) else None


class MetricsLog:
    """Rank-0 metrics: one JSON object per line in ``metrics.jsonl`` (+ TensorBoard when installed)."""

    def __init__(self, run_dir: Path, resume_step: int | None = None, tensorboard: bool = True) -> None:
        self.path = run_dir / "metrics.jsonl"
        if resume_step is not None and self.path.is_file():  # drop records after the checkpoint we resume from
            keep = [ln for ln in self.path.read_text(encoding="utf-8", errors="replace").splitlines()
                    if _record_step(ln) is not None and _record_step(ln) <= resume_step]
            write_text_atomic(self.path, "".join(ln + "\n" for ln in keep))
        self.file = open(self.path, "a")
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                log.debug("tensorboard not installed; metrics go to %s only", self.path)

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (flushed) and its numbers to TensorBoard (``val/…`` or ``train/…``)."""
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.writer is not None:
            group = "val" if record.get("event") == "val" else "train"
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.writer.add_scalar(f"{group}/{k}", v, record["step"])

    def close(self) -> None:
        """Close the file and the TensorBoard writer."""
        self.file.close()
        if self.writer is not None:
            self.writer.close()


@dataclass
class TrainSummary:
    """What a run did: steps, last losses, best validation, where things were written."""

    run_dir: str
    steps: int
    epochs_done: float
    last: dict[str, float]
    best_val_accuracy: float | None
    best_step: int | None
    pairs_per_s: float
    world_size: int


# --------------------------------------------------------------------------------------------
# the run


def _amp_dtype(cfg: PretrainConfig, device: torch.device) -> torch.dtype | None:
    if cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def _load_init_backbone(cfg: PretrainConfig, env: DistEnv):
    """Load CLIP on the CPU (rank 0 first, so a download happens once)."""
    from ..backbone import load_backbone

    if not env.is_main:
        env.slow_barrier()
    backbone = load_backbone(cfg.model_name, cfg.weights, "cpu", allow_download=cfg.allow_download)
    if env.is_main:
        env.slow_barrier()
    return backbone


def frozen_backbone(backbone, precision: str, device: torch.device | str):
    """The frozen CLIP of a run in ``precision`` ("auto" resolved for ``device``, where it will run).

    Returns ``backbone`` itself (shared modules) in its own precision, else a converted copy: the
    depth encoder being trained is copied from the fp32 ``backbone``, never from this one.
    """
    from ..backbone import resolve_precision
    from ..backbone.precision import precision_name

    dtype, reason = resolve_precision(precision, device)
    log.info("frozen CLIP (image features, validation) in %s", reason)
    return backbone if dtype == backbone.dtype else backbone.with_precision(precision_name(dtype))


def image_feature_key(backbone) -> str:
    """Identity of the pair cache's image features: :func:`~clip2point.pretrain.pair_cache.feature_key`, plus the
    precision unless fp32 (so fp32 caches keep their key, and bf16 features never pass for fp32 ones)."""
    key = feature_key(backbone)
    return key if backbone.precision == "fp32" else f"{key}|{backbone.precision}"


def _prepare_pairs(cfg: PretrainConfig, env: DistEnv, backbone, source: PairSource | Callable[[int], PairSource] | None) -> None:
    """Rank 0 builds/resumes the pair cache (on its device) with the frozen ``backbone``; the others wait for it."""
    if env.is_main:
        if source is not None and not hasattr(source, "item_names"):
            source = source(backbone.image_size)  # a factory: only rank 0 scans the source folder
        backbone.to(env.device)
        try:
            encoder = BackboneImageEncoder(backbone)
            encoder.key = image_feature_key(backbone)
            build_pair_cache(cfg.pairs_dir, source, encoder, cfg.shard_size, cfg.keep_images, progress=cfg.progress)
        finally:
            backbone.to("cpu")
            env.slow_barrier()  # reached on errors too, so the others stop waiting and fail on the missing cache
    else:
        env.slow_barrier()


def _check_run_dir(cfg: PretrainConfig) -> Path | None:
    last = Path(cfg.run_dir) / "checkpoints" / "last.json"
    if cfg.resume:
        if not last.is_file():
            raise Clip2PointError(f"--resume: {cfg.run_dir} has no checkpoint (checkpoints/last.json); drop --resume to start")
        checkpoint_state(last)  # a damaged or tampered checkpoint fails now, before the model and pairs load
        return last
    if last.is_file():
        raise Clip2PointError(f"{cfg.run_dir} already holds a run (checkpoints/last.json); pass --resume to continue it "
                              "or choose a new -o RUN_DIR")
    return None


def train(
    cfg: PretrainConfig,
    source: PairSource | Callable[[int], PairSource] | None = None,
    prepare_only: bool = False,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainSummary | None:
    """Run (or resume) CLIP2Point image-depth pre-training.

    Works the same in one process and under ``torchrun --nproc_per_node N -m clip2point.pretrain``.

    Args:
        cfg: the run's settings.
        source: builds/extends the pair cache at ``cfg.pairs_dir`` (None: use the cache as is), or
            a factory ``f(image_size) -> PairSource`` (called on rank 0 only, so only it scans the
            folder; ``image_size`` is the CLIP model's input size).
        prepare_only: build the pair cache and return None.
        on_step: called on rank 0 after each step with (step, metrics) — tests use it.

    Returns:
        A :class:`TrainSummary` on rank 0, None elsewhere (and with ``prepare_only``).

    Raises:
        Clip2PointError: bad settings, no data, a run folder that conflicts with ``resume``.
        CheckpointError / DatasetError / WeightsNotFoundError: see the messages.
    """
    cfg.validate()
    env = init_distributed(cfg.device)
    try:
        return _train(cfg, env, source, prepare_only, on_step)
    finally:
        shutdown_distributed(env)


@dataclass
class _Session:
    """A run being trained (rank-local): data, model, optimizer, schedule, progress; built by :func:`_session`."""

    cfg: PretrainConfig
    env: DistEnv
    dataset: PairDataset
    sampler: Any
    model: PretrainModel
    optimizer: torch.optim.Optimizer
    scheduler: Any
    backbone: Any  # kept on rank 0 for validation only, else None
    val_set: Any
    init_weights: str
    local_bs: int
    steps_per_epoch: int
    total: int
    step: int = 0
    best: dict[str, Any] = field(default_factory=lambda: {"val_accuracy": None, "step": None})
    ddp: nn.Module | None = None
    raster: RasterSettings = field(default_factory=RasterSettings)
    metrics: MetricsLog | None = None

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.run_dir)

    def resume(self, path: Path) -> None:
        """Restore model, optimizer, scheduler, step and best validation from a checkpoint."""
        meta = load_checkpoint(path, self.model, self.optimizer, self.scheduler)
        saved_best = meta.get("best") or {}
        self.step = int(meta["step"])
        self.best = {"val_accuracy": saved_best.get("val_accuracy"), "step": saved_best.get("step")}
        if not isinstance(self.best["val_accuracy"], (int, float, type(None))):
            raise CheckpointError(f"{path}: malformed checkpoint ('best' holds {self.best['val_accuracy']!r})")
        old = meta.get("config", {})
        for k in ("model_name", "batch_size", "seed", "num_points"):
            if k in old and old[k] != getattr(self.cfg, k):
                log.warning("resuming with %s=%r, but the run was started with %r", k, getattr(self.cfg, k), old[k])
        log.info("resumed from %s at step %d", path, self.step)

    def start(self, resumed: bool) -> None:
        """Wrap the model for DDP; on rank 0 write config.json and open metrics.jsonl."""
        cfg, env = self.cfg, self.env
        self.ddp = self.model
        if env.backend:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(self.model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
        self.raster = RasterSettings(max_elements=64_000_000 if env.device.type == "cuda" else RasterSettings().max_elements)
        if env.is_main:
            write_json_atomic(self.run_dir / "config.json", {
                **dataclasses.asdict(cfg), "world_size": env.world_size, "steps_per_epoch": self.steps_per_epoch,
                "total_steps": self.total, "pairs": len(self.dataset), "init_weights": self.init_weights})
            self.metrics = MetricsLog(self.run_dir, resume_step=self.step if resumed else 0)
            log.info("pre-training %s on %d pairs: %d processes × %d = batch %d, %d steps/epoch, %d steps, device %s%s",
                     cfg.model_name, len(self.dataset), env.world_size, self.local_bs, cfg.batch_size, self.steps_per_epoch,
                     self.total, env.device, ", bf16" if self.model.amp_dtype else "")

    def save(self) -> None:
        """A step checkpoint (rank 0 only)."""
        extra = {"epoch": self.step // self.steps_per_epoch, "best": self.best, "config": dataclasses.asdict(self.cfg),
                 "world_size": self.env.world_size, "init_weights": self.init_weights}
        save_checkpoint(self.run_dir / "checkpoints", self.step, self.model, self.optimizer, self.scheduler, extra,
                        self.cfg.keep_checkpoints)

    def validate(self) -> None:
        """Zero-shot validation on rank 0 (keeps best.safetensors), then a barrier for every process."""
        cfg = self.cfg
        if self.env.is_main and self.val_set is not None:
            res = validate_encoder(self.backbone, self.model.depth_encoder, self.val_set, cfg)
            improved = self.best["val_accuracy"] is None or res["val_accuracy"] > self.best["val_accuracy"]
            if improved:
                self.best = {"val_accuracy": res["val_accuracy"], "step": self.step}
                save_best(self.run_dir, self.model, {"model_name": cfg.model_name, "step": self.step,
                                                     "val_accuracy": res["val_accuracy"], "val_dataset": cfg.val_dataset,
                                                     "init_weights": self.init_weights})
            self.metrics.write({"event": "val", "step": self.step, "epoch": self.step / self.steps_per_epoch, **res,
                                "best": improved})
            log.info("step %d: validation accuracy %.2f%%%s", self.step, 100 * res["val_accuracy"], " (best)" if improved else "")
        self.env.barrier()

    def loader(self, epoch: int, first: int) -> torch.utils.data.DataLoader:
        """This process's batches of ``epoch`` from its ``first`` step on (seeded; never the global RNG)."""
        cfg = self.cfg
        self.sampler.set_epoch(epoch)
        self.dataset.set_epoch(epoch)
        order = list(self.sampler)[first * self.local_bs : self.steps_per_epoch * self.local_bs]
        return torch.utils.data.DataLoader(self.dataset, batch_size=self.local_bs, sampler=order, drop_last=True,
                                           collate_fn=collate_pairs, num_workers=cfg.num_workers,
                                           pin_memory=self.env.device.type == "cuda",
                                           generator=torch.Generator().manual_seed(cfg.seed + epoch))

    def train_one(self, batch, start: float, bar, on_step: Callable[[int, dict[str, float]], None] | None) -> dict[str, float]:
        """One step, then (rank 0) its metrics line, the progress bar and ``on_step``."""
        t0 = time.perf_counter()
        last = train_step(self.ddp, self.optimizer, self.scheduler, batch, "10", self.raster)
        self.step += 1
        last["pairs_per_s"] = self.cfg.batch_size / max(time.perf_counter() - t0, 1e-9)
        if self.env.is_main:
            self.metrics.write({"step": self.step, "epoch": self.step / self.steps_per_epoch, **last,
                                "time": round(time.perf_counter() - start, 3)})
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss']:.4f}", w=f"{last['w']:.3f}")
            if on_step is not None:
                on_step(self.step, last)
        return last

    def run(self, on_step: Callable[[int, dict[str, float]], None] | None) -> TrainSummary | None:
        """Train to ``total`` steps: checkpoints every ``save_every`` steps and at the end, validation every epoch."""
        from tqdm.auto import tqdm

        cfg, env = self.cfg, self.env
        bar = tqdm(total=self.total, initial=self.step, desc="pretrain", unit="step",
                   disable=not (env.is_main and cfg.progress), file=sys.stderr)
        start, start_step, last, saved_at, validated_at = time.perf_counter(), self.step, {}, self.step, None
        try:
            while self.step < self.total:
                for batch in self.loader(*divmod(self.step, self.steps_per_epoch)):
                    last = self.train_one(batch, start, bar, on_step)
                    if cfg.save_every and self.step % cfg.save_every == 0:
                        if env.is_main:
                            self.save()
                        saved_at = self.step
                    if self.step >= self.total:
                        break
                if self.step % self.steps_per_epoch == 0:
                    self.validate()
                    validated_at = self.step
            # every rank takes this branch (val_set exists on rank 0 only): validate() ends in a barrier
            if cfg.val_data and validated_at != self.step and self.step > start_step:
                self.validate()
            if saved_at != self.step and env.is_main:
                self.save()
        finally:
            bar.close()
            if self.metrics is not None:
                self.metrics.close()
        if not env.is_main:
            return None
        elapsed = time.perf_counter() - start
        done = self.step - start_step
        return TrainSummary(str(self.run_dir), self.step, self.step / self.steps_per_epoch, last, self.best["val_accuracy"],
                            self.best["step"], done * cfg.batch_size / elapsed if done > 0 else 0.0, env.world_size)


def _session(cfg: PretrainConfig, env: DistEnv, backbone, frozen, val_set) -> _Session:
    """The dataset, model, sampler, optimizer and schedule of a run whose pair cache is ready.

    ``backbone``: the fp32 CLIP the depth encoder is copied from; ``frozen``: the same CLIP in the
    run's precision (its features are the cache's; it validates).
    """
    dataset = PairDataset.from_cache(cfg.pairs_dir, num_points=cfg.num_points, dist_jitter=cfg.dist_jitter, seed=cfg.seed)
    expected = image_feature_key(frozen)
    if dataset.feature_key != expected:
        raise Clip2PointError(f"{cfg.pairs_dir}: features were computed with {dataset.feature_key}, not {expected}")
    model = PretrainModel(backbone.model.visual, cfg.temperature, _amp_dtype(cfg, env.device), cfg.grad_checkpointing).to(env.device)
    init_weights = backbone.weights.describe()
    if env.is_main and val_set is not None:
        backbone = frozen.to(env.device)  # the text tower and logit scale for zero-shot validation
    else:
        backbone = None
    local_bs = cfg.batch_size // env.world_size
    sampler = torch.utils.data.distributed.DistributedSampler(
        dataset, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=cfg.seed, drop_last=False)
    steps_per_epoch = len(sampler) // local_bs
    if steps_per_epoch == 0:
        raise Clip2PointError(f"--batch-size {cfg.batch_size} is larger than the {len(dataset)} cached pairs; lower it")
    total = cfg.epochs * steps_per_epoch if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * steps_per_epoch)
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    scheduler = make_scheduler(optimizer, steps_per_epoch, cfg.restart_epochs, cfg.eta_min)
    return _Session(cfg, env, dataset, sampler, model, optimizer, scheduler, backbone, val_set, init_weights,
                    local_bs, steps_per_epoch, total)


def _train(cfg: PretrainConfig, env: DistEnv, source: PairSource | Callable[[int], PairSource] | None, prepare_only: bool,
           on_step: Callable[[int, dict[str, float]], None] | None) -> TrainSummary | None:
    resume_from = _check_run_dir(cfg)
    if cfg.batch_size % env.world_size:
        raise Clip2PointError(f"--batch-size {cfg.batch_size} (global) must be divisible by the {env.world_size} processes")
    val_set = None
    if cfg.val_data and env.is_main and not prepare_only:
        val_set = validation_subset(cfg.val_data, cfg.val_dataset, cfg.val_per_class, cfg.num_points)
        log.info("validation: %d shapes of %s/train (%d per class; test is never used)", len(val_set), cfg.val_dataset, cfg.val_per_class)
    if env.is_main:
        Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    backbone = _load_init_backbone(cfg, env)
    frozen = frozen_backbone(backbone, cfg.precision, env.device)
    _prepare_pairs(cfg, env, frozen, source)
    if prepare_only:
        return None
    session = _session(cfg, env, backbone, frozen, val_set)
    del backbone, frozen  # the session keeps the frozen one on rank 0 when it validates
    if resume_from is not None:
        session.resume(resume_from)
    session.start(resumed=resume_from is not None)
    return session.run(on_step)
