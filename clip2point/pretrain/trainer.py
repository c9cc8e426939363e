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
import datetime
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

from ..errors import CheckpointError, Clip2PointError
from ..render import RasterSettings, clip_normalize
from ..checkpoints import (
    load_state_dict_file, load_training_state, read_json, resolve_inside, save_state_dict_atomic, save_training_state,
    write_json_atomic, write_text_atomic,
)
from .data import (
    BackboneImageEncoder, PairBatch, PairDataset, PairSource, build_pair_cache, collate_pairs, feature_key,
    render_pair_views,
)
from .losses import DEFAULT_TEMPERATURE, PretrainLosses, combined_loss, gather_features

log = logging.getLogger(__name__)

__all__ = [
    "PretrainConfig", "DistEnv", "PretrainModel", "TrainSummary", "init_distributed", "make_optimizer",
    "make_scheduler", "train_step", "train", "save_checkpoint", "load_checkpoint", "read_checkpoint", "checkpoint_state",
    "export_depth_encoder",
    "validation_subset", "CHECKPOINT_FORMAT", "DEPTH_ENCODER_FORMAT",
]

CHECKPOINT_FORMAT = "clip2point-pretrain-checkpoint/1"
DEPTH_ENCODER_FORMAT = "clip2point-depth-encoder/1"


@dataclass
class PretrainConfig:
    """Everything a pre-training run needs (the CLI maps its options 1:1 onto these fields).

    Attributes:
        run_dir: output folder: config.json, metrics.jsonl, checkpoints/, best.safetensors, pairs/.
        cache_dir: the pair cache (default ``run_dir/pairs``).
        model_name, weights: CLIP architecture and weights (see :func:`clip2point.backbone.load_backbone`);
            the depth encoder starts as a copy of its visual tower, the image features come from it.
        epochs: passes over the pairs (released: 100). ``max_steps``: stop after this many
            optimizer steps in total (None: ``epochs`` decides).
        batch_size: the **global** batch (pairs per step over all processes; released: 256).
        lr, weight_decay: LAMB settings (released: 6e-3, 1e-4).
        restart_epochs, eta_min: cosine warm restarts every ``restart_epochs`` epochs, floor ``eta_min``.
        num_points: points per sample per step (released: 1,024). temperature: NT-Xent's (0.07).
        dist_jitter: camera-distance jitter of the two renders, ``dist·(1 + U(−j, j))`` (0.1).
        seed: seeds sampling order, per-sample draws and torch's RNG.
        device: "auto" (cuda:LOCAL_RANK when available), "cpu", "cuda", "cuda:1".
        amp: "auto" (bf16 autocast on CUDA, off on CPU), "bf16" or "off".
        grad_checkpointing: recompute transformer blocks in backward (less memory, ~30 % slower).
        save_every: checkpoint every N steps (0: only at the end). keep_checkpoints: how many to keep.
        val_data: ModelNet folder for validation (None: no validation); ``val_dataset``
            "modelnet10"/"modelnet40"; ``val_per_class`` shapes per class from its **train** split;
            ``val_views`` zero-shot view set; ``val_template`` prompt.
        shard_size, keep_images: pair-cache options (see :func:`~clip2point.pretrain.data.build_pair_cache`).
        num_workers: DataLoader workers (the pairs are in memory; 0 is usually enough).
        resume: continue from ``run_dir/checkpoints/last.json``.
        progress: tqdm bars on rank 0. allow_download: let open_clip download weights.
    """

    run_dir: str
    cache_dir: str | None = None
    model_name: str = "ViT-B-32"
    weights: str | None = None
    epochs: int = 100
    max_steps: int | None = None
    batch_size: int = 256
    lr: float = 6e-3
    weight_decay: float = 1e-4
    restart_epochs: int = 2
    eta_min: float = 1e-5
    num_points: int = 1024
    temperature: float = DEFAULT_TEMPERATURE
    dist_jitter: float = 0.1
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    grad_checkpointing: bool = False
    save_every: int = 500
    keep_checkpoints: int = 2
    val_data: str | None = None
    val_dataset: str = "modelnet10"
    val_per_class: int = 10
    val_views: str = "6"
    val_template: str = "image of a {}"
    val_batch_size: int = 32
    shard_size: int = 128
    keep_images: bool = False
    num_workers: int = 0
    resume: bool = False
    progress: bool = True
    allow_download: bool = True

    @property
    def pairs_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else Path(self.run_dir) / "pairs"

    def validate(self) -> None:
        """Raises Clip2PointError for impossible settings."""
        checks = [
            (self.batch_size >= 2, f"--batch-size must be at least 2 (contrastive loss), got {self.batch_size}"),
            (self.epochs >= 1, f"--epochs must be ≥ 1, got {self.epochs}"),
            (self.max_steps is None or self.max_steps >= 1, f"--steps must be ≥ 1, got {self.max_steps}"),
            (self.lr > 0 and self.weight_decay >= 0, "--lr must be > 0 and --weight-decay ≥ 0"),
            (self.num_points >= 2, f"--num-points must be ≥ 2, got {self.num_points}"),
            (0 < self.temperature < float("inf"), f"--temperature must be a positive number (CLIP2Point: 0.07), got {self.temperature}"),
            (self.shard_size >= 1, f"--shard-size must be ≥ 1, got {self.shard_size}"),
            (self.num_workers >= 0, f"--workers must be ≥ 0, got {self.num_workers}"),
            (0 <= self.dist_jitter < 1, f"distance jitter must lie in [0, 1), got {self.dist_jitter}"),
            (self.amp in ("auto", "bf16", "off"), f"--amp must be auto, bf16 or off, got {self.amp!r}"),
            (self.save_every >= 0 and self.keep_checkpoints >= 1, "--save-every must be ≥ 0"),
            (self.val_per_class >= 1, f"--val-per-class must be ≥ 1, got {self.val_per_class}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise Clip2PointError(msg)


# --------------------------------------------------------------------------------------------
# processes


@dataclass
class DistEnv:
    """This process's place in the run: rank, world size, device, backend ("" without a process group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str = ""
    slow_group: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process (a no-op in a world of one)."""
        if self.backend:
            import torch.distributed as dist

            if self.backend == "nccl":
                dist.barrier(device_ids=[self.device.index or 0])
            else:
                dist.barrier()

    def slow_barrier(self) -> None:
        """A barrier on a CPU (gloo) group with a 2-day timeout: for waiting on rank 0's downloads
        and pair-cache build, which may take far longer than NCCL's collective timeout."""
        if self.backend:
            import torch.distributed as dist

            dist.barrier(group=self.slow_group)


def _pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise Clip2PointError("--device cuda was requested but CUDA is not available; use --device cpu")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev


def init_distributed(device: str = "auto") -> DistEnv:
    """Join the torchrun process group when launched by torchrun, else a world of one.

    torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; the backend is NCCL
    for CUDA devices and gloo on CPU. Without those variables no process group is created and
    every collective is skipped (the same code path with world size 1).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if "RANK" not in os.environ or "MASTER_ADDR" not in os.environ:
        return DistEnv(0, 1, 0, dev, "")
    import torch.distributed as dist

    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world,
                                **({"device_id": dev} if dev.type == "cuda" else {}))
    slow = dist.new_group(backend="gloo", timeout=datetime.timedelta(days=2))
    return DistEnv(rank, world, local_rank, dev, backend, slow)


def shutdown_distributed(env: DistEnv) -> None:
    if env.backend:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


# --------------------------------------------------------------------------------------------
# model, optimizer, step


class PretrainModel(nn.Module):
    """The trainable half of CLIP2Point pre-training: the depth encoder and the loss balance w.

    Args:
        visual: a CLIP visual tower (copied; the copy is trainable, the original is untouched).
        temperature: NT-Xent temperature.
        amp_dtype: autocast dtype for the encoder forward (``torch.bfloat16``) or None.
        grad_checkpointing: open_clip's ``set_grad_checkpointing`` on the copy.

    State-dict keys: ``depth_encoder.<CLIP visual key>`` and ``w``.
    """

    def __init__(self, visual: nn.Module, temperature: float = DEFAULT_TEMPERATURE,
                 amp_dtype: torch.dtype | None = None, grad_checkpointing: bool = False) -> None:
        super().__init__()
        self.depth_encoder = copy.deepcopy(visual).requires_grad_(True).train()
        if grad_checkpointing:
            if not hasattr(self.depth_encoder, "set_grad_checkpointing"):
                raise Clip2PointError(f"{type(visual).__name__} does not support gradient checkpointing")
            self.depth_encoder.set_grad_checkpointing(True)
        self.w = nn.Parameter(torch.ones([]))
        self.temperature = temperature
        self.amp_dtype = amp_dtype

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) CLIP-normalised depth images → (n, D) float32 raw features."""
        with torch.autocast(images.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            return self.depth_encoder(images).float()

    def forward(self, depth_a: torch.Tensor, depth_b: torch.Tensor, image_features: torch.Tensor) -> PretrainLosses:
        """Losses of the global batch (features gathered from every process).

        Args:
            depth_a, depth_b: (b, 3, H, W) the two jittered renders of each sample's view.
            image_features: (b, D) frozen CLIP features of that view's RGB render.
        """
        b = depth_a.shape[0]
        feats = self.encode(torch.cat([depth_a, depth_b]))  # one pass, like the released code
        za, zb = gather_features(feats[:b]), gather_features(feats[b:])
        img = gather_features(image_features.float(), with_grad=False)
        return combined_loss(za, zb, img, self.w, self.temperature)


def make_optimizer(model: nn.Module, lr: float = 6e-3, weight_decay: float = 1e-4) -> torch.optim.Optimizer:
    """LAMB (``timm.optim.Lamb``) over all trainable parameters, configured like torch_optimizer.Lamb's defaults."""
    from timm.optim import Lamb

    params = [p for p in model.parameters() if p.requires_grad]
    return Lamb(params, lr=lr, weight_decay=weight_decay, bias_correction=False, max_grad_norm=None)


def make_scheduler(optimizer: torch.optim.Optimizer, steps_per_epoch: int, restart_epochs: int = 2,
                   eta_min: float = 1e-5) -> torch.optim.lr_scheduler.CosineAnnealingWarmRestarts:
    """Cosine annealing with warm restarts every ``restart_epochs`` epochs, stepped per iteration (released)."""
    return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=max(1, restart_epochs * steps_per_epoch), T_mult=1, eta_min=eta_min)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    batch: PairBatch,
    views: str = "10",
    raster: RasterSettings = RasterSettings(),
) -> dict[str, float]:
    """One optimizer step: render the chosen views twice, encode, gather, NT-Xent, LAMB, schedule.

    Args:
        model: a :class:`PretrainModel`, or DDP around one.
        batch: this process's share of the global batch (any device; moved to the model's).
        views: the view set the cache's views were rendered from.

    Returns:
        ``loss``, ``loss_cross``, ``loss_depth``, ``w`` (before the update) and ``lr`` (used).
    """
    device = next(model.parameters()).device
    batch = batch.to(device)
    with torch.no_grad():
        depth = render_pair_views(batch.points, batch.view, batch.dist_scale, views, raster)  # (b, 2, H, W)
        images = clip_normalize(depth)  # (b, 2, 3, H, W)
    lr = float(optimizer.param_groups[0]["lr"])
    losses = model(images[:, 0], images[:, 1], batch.image_features)
    values = losses.as_floats()
    optimizer.zero_grad(set_to_none=True)
    losses.total.backward()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return {**values, "lr": lr}


# --------------------------------------------------------------------------------------------
# checkpoints


def save_checkpoint(
    ckpt_dir: str | os.PathLike,
    step: int,
    model: PretrainModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    extra: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write ``step_XXXXXXXX.safetensors`` + ``.json`` atomically, then point ``last.json`` at them.

    The tensors (model, optimizer moments) go to safetensors via
    :func:`clip2point.checkpoints.save_training_state`; the JSON holds the step, optimizer
    hyper-parameters, scheduler state and ``extra`` (config, best validation). No random state
    is saved: every random draw of a run comes from generators seeded by (seed, epoch, index),
    never from the process-wide RNGs (older checkpoints' ``rng`` entries are ignored). ``last.json`` is replaced last, so a crash at any moment leaves the previous
    checkpoint usable. Older step checkpoints beyond ``keep`` are deleted.

    Returns:
        The path of the step's JSON file.
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tensor_file = f"step_{step:08d}.safetensors"
    parts = save_training_state(ckpt_dir / tensor_file, model, optimizer, scheduler, format=CHECKPOINT_FORMAT,
                                metadata={"step": str(step)})
    meta = {
        "format": CHECKPOINT_FORMAT,
        "step": int(step),
        "tensors": tensor_file,
        **parts,
        "rng": {},  # every draw comes from generators seeded by (seed, epoch, index): no global RNG state to keep
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **(extra or {}),
    }
    step_json = ckpt_dir / f"step_{step:08d}.json"
    write_json_atomic(step_json, meta)
    write_json_atomic(ckpt_dir / "last.json", meta)
    for old in sorted(ckpt_dir.glob("step_*.json"))[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".safetensors").unlink(missing_ok=True)
    return step_json


_DAMAGED = "the run folder is damaged"
_CHECKPOINT_FIELDS = {"step": int, "tensors": str, "optimizer": dict, "scheduler": dict, "rng": dict}


def checkpoint_state(ckpt_json: str | os.PathLike) -> tuple[dict[str, Any], Path]:
    """(JSON state, tensor file) of a checkpoint, checked without reading the tensors.

    The tensor file named by the JSON's ``"tensors"`` must lie in the JSON's folder (see
    :func:`clip2point.checkpoints.resolve_inside`).

    Raises:
        CheckpointError: missing, unreadable, malformed, not a clip2point pre-training checkpoint,
            or naming a tensor file outside its folder (absolute path, ``..``, a symlink elsewhere).
    """
    path = Path(ckpt_json)
    meta = read_json(path, "pre-training checkpoint", _DAMAGED)
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path}: not a clip2point pre-training checkpoint (format {fmt!r})")
    bad = [k for k, t in _CHECKPOINT_FIELDS.items() if not isinstance(meta.get(k), t) or isinstance(meta.get(k), bool)]
    if bad or meta["step"] < 0:
        raise CheckpointError(f"{path}: malformed checkpoint ({', '.join(bad) or 'step'} missing or of the wrong type); "
                              "resume from another checkpoint or start again")
    if not isinstance(meta.get("best", {}), dict) or not isinstance(meta.get("config", {}), dict):
        raise CheckpointError(f"{path}: malformed checkpoint ('best' or 'config' is not an object)")
    return meta, resolve_inside(path.parent, meta["tensors"], "checkpoint tensor file")


def read_checkpoint(ckpt_json: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(JSON state, tensors) of a checkpoint written by :func:`save_checkpoint`.

    The tensor file must lie in the JSON's folder (see :func:`checkpoint_state`) and is read with
    the safe loader (:func:`clip2point.checkpoints.load_state_dict_file`).

    Raises:
        CheckpointError: see :func:`checkpoint_state`; an unreadable or unsafe tensor file.
    """
    meta, tensor_file = checkpoint_state(ckpt_json)
    tensors, _ = load_state_dict_file(tensor_file)
    return meta, tensors


def load_checkpoint(
    ckpt_json: str | os.PathLike,
    model: PretrainModel,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> dict[str, Any]:
    """Restore a checkpoint in place; return its JSON state (``step``, ``best``, ``config`` …).

    Raises:
        CheckpointError: unreadable, or the model does not fit it.
    """
    meta, tensor_file = checkpoint_state(ckpt_json)
    load_training_state(tensor_file, model, optimizer, scheduler, format=CHECKPOINT_FORMAT, label=ckpt_json,
                        parts={"optimizer": meta["optimizer"], "scheduler": meta["scheduler"]},
                        fix="resume with the --model it was trained with, from another checkpoint, or start again")
    return meta


def _save_best(run_dir: Path, model: PretrainModel, info: dict[str, Any]) -> Path:
    """``best.safetensors``: the depth encoder with bare visual keys (usable as --depth-encoder), plus best.json."""
    sd = {k: v for k, v in model.depth_encoder.state_dict().items()}
    meta = {"format": DEPTH_ENCODER_FORMAT, **{k: str(v) for k, v in info.items()}}
    path = save_state_dict_atomic(sd, run_dir / "best.safetensors", meta)
    write_json_atomic(run_dir / "best.json", info)
    return path


def export_depth_encoder(run_dir: str | os.PathLike, out: str | os.PathLike, which: str = "auto") -> Path:
    """Write a run's depth encoder as a standalone safetensors file for ``--depth-encoder``.

    Keys are the bare CLIP visual-tower keys (``conv1.weight``, ``transformer.resblocks.0…``),
    which :func:`clip2point.backbone.load_depth_encoder` accepts; metadata: ``format``
    (clip2point-depth-encoder/1), ``model_name``, ``source_run``, ``step``, ``checkpoint``
    (best/last), ``val_accuracy`` (best only), ``init_weights``.

    Args:
        run_dir: a ``clip2point pretrain`` output folder.
        out: the file to write (must end in ``.safetensors``).
        which: "best" (highest validation accuracy), "last" (latest checkpoint) or "auto"
            (best when the run validated, else last).

    Raises:
        CheckpointError: no such run / checkpoint, or a bad output name.
    """
    run_dir, out = Path(run_dir), Path(out)
    if out.suffix != ".safetensors":
        raise CheckpointError(f"{out}: the exported depth encoder is a safetensors file; name it *.safetensors")
    if which not in ("auto", "best", "last"):
        raise CheckpointError(f"--checkpoint must be best, last or auto, got {which!r}")
    best, last = run_dir / "best.safetensors", run_dir / "checkpoints" / "last.json"
    if which == "auto":
        which = "best" if best.is_file() else "last"
    if which == "best":
        if not best.is_file():
            raise CheckpointError(f"{run_dir}: no best.safetensors (the run had no --val-data); use --checkpoint last")
        sd, _ = load_state_dict_file(best)
        info = read_json(run_dir / "best.json", "best checkpoint's description", _DAMAGED) if (run_dir / "best.json").is_file() else {}
        if not isinstance(info, dict):
            raise CheckpointError(f"{run_dir / 'best.json'}: not a JSON object; the run folder is damaged")
    else:
        if not last.is_file():
            raise CheckpointError(f"{run_dir}: no checkpoints/last.json; is this a `clip2point pretrain` output folder?")
        meta, tensors = read_checkpoint(last)
        prefix = "model.depth_encoder."
        sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        cfg = meta.get("config", {})
        info = {"model_name": cfg.get("model_name", ""), "step": meta["step"], "init_weights": meta.get("init_weights", "")}
    if not sd:
        raise CheckpointError(f"{run_dir}: the {which} checkpoint holds no depth-encoder tensors; is this a `clip2point pretrain` run?")
    metadata = {
        "format": DEPTH_ENCODER_FORMAT,
        "model_name": str(info.get("model_name", "")),
        "source_run": str(run_dir.resolve()),
        "step": str(info.get("step", "")),
        "checkpoint": which,
        "init_weights": str(info.get("init_weights", "")),
    }
    if "val_accuracy" in info:
        metadata["val_accuracy"] = str(info["val_accuracy"])
    path = save_state_dict_atomic(sd, out, metadata)
    log.info("exported the %s depth encoder of %s (step %s) to %s", which, run_dir, metadata["step"], path)
    return path


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


def _validate(backbone, encoder: nn.Module, val_set, cfg: PretrainConfig) -> dict[str, float]:
    """Zero-shot accuracy of the depth encoder being trained, paired with (never put into) the backbone."""
    from ..evaluate import evaluate_zero_shot
    from ..zeroshot import ZeroShotClassifier

    was_training = encoder.training
    encoder.eval()
    try:
        paired = backbone.with_depth_encoder(encoder, name="the encoder being pre-trained")
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
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.writer is not None:
            group = "val" if record.get("event") == "val" else "train"
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.writer.add_scalar(f"{group}/{k}", v, record["step"])

    def close(self) -> None:
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


def _prepare_pairs(cfg: PretrainConfig, env: DistEnv, backbone, source: PairSource | Callable[[int], PairSource] | None) -> None:
    """Rank 0 builds/resumes the pair cache (on its device); the others wait for it."""
    if env.is_main:
        if source is not None and not hasattr(source, "item_names"):
            source = source(backbone.image_size)  # a factory: only rank 0 scans the source folder
        backbone.to(env.device)
        try:
            build_pair_cache(cfg.pairs_dir, source, BackboneImageEncoder(backbone), cfg.shard_size,
                             cfg.keep_images, progress=cfg.progress)
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


def _train(cfg: PretrainConfig, env: DistEnv, source: PairSource | Callable[[int], PairSource] | None, prepare_only: bool,
           on_step: Callable[[int, dict[str, float]], None] | None) -> TrainSummary | None:
    run_dir = Path(cfg.run_dir)
    resume_from = _check_run_dir(cfg)
    if cfg.batch_size % env.world_size:
        raise Clip2PointError(f"--batch-size {cfg.batch_size} (global) must be divisible by the {env.world_size} processes")
    val_set = None
    if cfg.val_data and env.is_main and not prepare_only:
        val_set = validation_subset(cfg.val_data, cfg.val_dataset, cfg.val_per_class, cfg.num_points)
        log.info("validation: %d shapes of %s/train (%d per class; test is never used)", len(val_set), cfg.val_dataset, cfg.val_per_class)
    if env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    backbone = _load_init_backbone(cfg, env)
    _prepare_pairs(cfg, env, backbone, source)
    if prepare_only:
        return None

    dataset = PairDataset.from_cache(cfg.pairs_dir, num_points=cfg.num_points, dist_jitter=cfg.dist_jitter, seed=cfg.seed)
    if dataset.feature_key != feature_key(backbone):
        raise Clip2PointError(f"{cfg.pairs_dir}: features were computed with {dataset.feature_key}, not {feature_key(backbone)}")
    model = PretrainModel(backbone.model.visual, cfg.temperature, _amp_dtype(cfg, env.device), cfg.grad_checkpointing).to(env.device)
    init_weights = backbone.weights.describe()
    if env.is_main and val_set is not None:
        backbone.to(env.device)  # the text tower and logit scale for zero-shot validation
    else:
        del backbone
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
    step, best = 0, {"val_accuracy": None, "step": None}
    if resume_from is not None:
        meta = load_checkpoint(resume_from, model, optimizer, scheduler)
        saved_best = meta.get("best") or {}
        step = int(meta["step"])
        best = {"val_accuracy": saved_best.get("val_accuracy"), "step": saved_best.get("step")}
        if not isinstance(best["val_accuracy"], (int, float, type(None))):
            raise CheckpointError(f"{resume_from}: malformed checkpoint ('best' holds {best['val_accuracy']!r})")
        old = meta.get("config", {})
        for k in ("model_name", "batch_size", "seed", "num_points"):
            if k in old and old[k] != getattr(cfg, k):
                log.warning("resuming with %s=%r, but the run was started with %r", k, getattr(cfg, k), old[k])
        log.info("resumed from %s at step %d", resume_from, step)
    ddp = model
    if env.backend:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    raster = RasterSettings(max_elements=64_000_000 if env.device.type == "cuda" else RasterSettings().max_elements)

    metrics = None
    if env.is_main:
        write_json_atomic(run_dir / "config.json", {**dataclasses.asdict(cfg), "world_size": env.world_size,
                                                     "steps_per_epoch": steps_per_epoch, "total_steps": total,
                                                     "pairs": len(dataset), "init_weights": init_weights})
        metrics = MetricsLog(run_dir, resume_step=step if resume_from else 0)
        log.info("pre-training %s on %d pairs: %d processes × %d = batch %d, %d steps/epoch, %d steps, device %s%s",
                 cfg.model_name, len(dataset), env.world_size, local_bs, cfg.batch_size, steps_per_epoch, total,
                 env.device, ", bf16" if model.amp_dtype else "")

    def checkpoint_extra() -> dict[str, Any]:
        return {"epoch": step // steps_per_epoch, "best": best, "config": dataclasses.asdict(cfg),
                "world_size": env.world_size, "init_weights": init_weights}

    def run_validation() -> None:
        nonlocal best
        if env.is_main and val_set is not None:
            res = _validate(backbone, model.depth_encoder, val_set, cfg)
            improved = best["val_accuracy"] is None or res["val_accuracy"] > best["val_accuracy"]
            if improved:
                best = {"val_accuracy": res["val_accuracy"], "step": step}
                _save_best(run_dir, model, {"model_name": cfg.model_name, "step": step, "val_accuracy": res["val_accuracy"],
                                            "val_dataset": cfg.val_dataset, "init_weights": init_weights})
            metrics.write({"event": "val", "step": step, "epoch": step / steps_per_epoch, **res, "best": improved})
            log.info("step %d: validation accuracy %.2f%%%s", step, 100 * res["val_accuracy"], " (best)" if improved else "")
        env.barrier()

    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=step, desc="pretrain", unit="step", disable=not (env.is_main and cfg.progress),
               file=sys.stderr)
    start, start_step, last, saved_at, validated_at = time.perf_counter(), step, {}, step, None
    try:
        while step < total:
            epoch, first = divmod(step, steps_per_epoch)
            sampler.set_epoch(epoch)
            dataset.set_epoch(epoch)
            order = list(sampler)[first * local_bs : steps_per_epoch * local_bs]
            loader = torch.utils.data.DataLoader(dataset, batch_size=local_bs, sampler=order, drop_last=True,
                                                 collate_fn=collate_pairs, num_workers=cfg.num_workers,
                                                 pin_memory=env.device.type == "cuda",
                                                 generator=torch.Generator().manual_seed(cfg.seed + epoch))  # not the global RNG
            for batch in loader:
                t0 = time.perf_counter()
                last = train_step(ddp, optimizer, scheduler, batch, "10", raster)
                step += 1
                last["pairs_per_s"] = cfg.batch_size / max(time.perf_counter() - t0, 1e-9)
                if env.is_main:
                    metrics.write({"step": step, "epoch": step / steps_per_epoch, **last,
                                   "time": round(time.perf_counter() - start, 3)})
                    bar.update(1)
                    bar.set_postfix(loss=f"{last['loss']:.4f}", w=f"{last['w']:.3f}")
                    if on_step is not None:
                        on_step(step, last)
                if cfg.save_every and step % cfg.save_every == 0:
                    if env.is_main:
                        save_checkpoint(run_dir / "checkpoints", step, model, optimizer, scheduler, checkpoint_extra(), cfg.keep_checkpoints)
                    saved_at = step
                if step >= total:
                    break
            if step % steps_per_epoch == 0:
                run_validation()
                validated_at = step
        if val_set is not None and validated_at != step and step > start_step:
            run_validation()
        if saved_at != step and env.is_main:
            save_checkpoint(run_dir / "checkpoints", step, model, optimizer, scheduler, checkpoint_extra(), cfg.keep_checkpoints)
    finally:
        bar.close()
        if metrics is not None:
            metrics.close()
    if not env.is_main:
        return None
    elapsed = time.perf_counter() - start
    return TrainSummary(str(run_dir), step, step / steps_per_epoch, last, best["val_accuracy"], best["step"],
                        (step - start_step) * cfg.batch_size / elapsed if step > start_step else 0.0, env.world_size)
