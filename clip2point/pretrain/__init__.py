"""CLIP2Point image-depth pre-training (Huang et al., ICCV 2023, §3.2).

Pieces (imported lazily: ``import clip2point.pretrain`` loads neither torch nor a model):

- :mod:`.data` — pair sources (a mesh folder; the authors' ShapeNet-55 renders), the cached,
  sharded, resumable pair dataset with pre-computed frozen-CLIP image features, the training
  dataset and the per-sample two-distance depth render of the chosen view.
- :mod:`.losses` — NT-Xent and the released total loss ``L_c + L_d / w² + log(w + 1)``, with
  negatives gathered across processes.
- :mod:`.config` — :class:`PretrainConfig`, the run's settings and their defaults (the CLI's options).
- :mod:`.model` — the depth encoder being trained, LAMB + cosine warm restarts, one optimizer step.
- :mod:`.distributed` — one process or N under torchrun (DDP): rank, device, process group.
- :mod:`.checkpointing` — resumable step checkpoints, the best depth encoder, its export.
- :mod:`.trainer` — the run: data, resume, steps, checkpoints, zero-shot validation on ModelNet's
  train split, metrics (and re-exports the names above for ``from clip2point.pretrain.trainer import X``).
- :mod:`.cli` — ``clip2point pretrain`` / ``clip2point weights export``; ``python -m clip2point.pretrain``.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "PretrainConfig": ".config",
    "PretrainModel": ".model",
    "train": ".trainer",
    "train_step": ".model",
    "export_depth_encoder": ".checkpointing",
    "MeshFolderSource": ".data",
    "ShapeNetRenderSource": ".data",
    "build_pair_cache": ".data",
    "PairDataset": ".data",
    "render_pair_views": ".data",
    "nt_xent": ".losses",
    "combined_loss": ".losses",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'clip2point.pretrain' has no attribute {name!r}")
