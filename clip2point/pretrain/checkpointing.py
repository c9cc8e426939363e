"""Pre-training checkpoints on disk: resumable step checkpoints, the best depth encoder, its export.

A run folder holds ``checkpoints/step_XXXXXXXX.safetensors`` + ``.json`` (the training state, written
by :func:`clip2point.checkpoints.save_training_state`; the JSON indexes it and holds the step, the
optimizer/scheduler JSON, the config and the best validation so far), ``checkpoints/last.json`` (a
copy of the latest JSON, replaced last), ``best.safetensors`` + ``best.json`` (the depth encoder at
the best validation accuracy). Every file name read from a JSON must lie inside its folder.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoints import (
    load_state_dict_file, load_training_state, read_json, resolve_inside, save_state_dict_atomic, save_training_state,
    write_json_atomic,
)
from ..errors import CheckpointError

log = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_FORMAT", "DEPTH_ENCODER_FORMAT", "save_checkpoint", "checkpoint_state", "read_checkpoint",
    "load_checkpoint", "save_best", "export_depth_encoder",
]

CHECKPOINT_FORMAT = "clip2point-pretrain-checkpoint/1"
DEPTH_ENCODER_FORMAT = "clip2point-depth-encoder/1"


def save_checkpoint(
    ckpt_dir: str | os.PathLike,
    step: int,
    model: nn.Module,
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
    model: nn.Module,
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


def save_best(run_dir: str | os.PathLike, model: nn.Module, info: dict[str, Any]) -> Path:
    """Write ``best.safetensors`` (the depth encoder with bare visual keys, usable as --depth-encoder) and ``best.json``.

    Args:
        run_dir: the run folder. model: a :class:`~clip2point.pretrain.model.PretrainModel`.
        info: JSON-able description (model_name, step, val_accuracy, …), also stored as header strings.

    Returns:
        The path of ``best.safetensors``.
    """
    run_dir = Path(run_dir)
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
