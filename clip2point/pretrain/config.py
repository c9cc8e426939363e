"""The settings of a pre-training run: :class:`PretrainConfig` (the one place its defaults are written).

Each field that is a command-line option says so in its metadata (``flag``, ``help``, and
``choices``/``metavar`` where useful); :mod:`clip2point.pretrain.cli` builds ``clip2point pretrain``'s
options from them (see :func:`clip2point.cliutil.add_config_arguments`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..backbone import DEFAULT_MODEL, DEFAULT_TEMPLATE, PRECISIONS, BackboneConfig
from ..datasets import DATASET_NAMES
from ..errors import Clip2PointError
from ..render import VIEW_SETS
from .losses import DEFAULT_TEMPERATURE

__all__ = ["PretrainConfig"]


def _opt(default, flag: str | tuple[str, ...], help: str, **more) -> object:  # noqa: A002 - argparse's word
    """A field that is also a command-line option."""
    return field(default=default, metadata={"flag": flag, "help": help, **more})


@dataclass
class PretrainConfig:
    """Everything a pre-training run needs (``clip2point pretrain``'s options are built from these fields).

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
        amp: "auto" (bf16 autocast on CUDA, off on CPU), "bf16" or "off": the training forward.
        precision: "fp32", "bf16" or "auto": the frozen CLIP's weights (pair-cache image features;
            validation's text features, and the encoder under validation is a copy in that dtype).
            The depth encoder starts from, and trains, fp32 weights whatever this is.
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

    run_dir: str = field(metadata={"flag": ("-o", "--run-dir"), "required": True, "metavar": "RUN_DIR",
                                   "help": "output folder (created)"})
    cache_dir: str | None = _opt(None, "--cache", "pair cache folder (default RUN_DIR/pairs); share one between runs",
                                 metavar="DIR")
    model_name: str = _opt(DEFAULT_MODEL, "--model", "open_clip architecture (tiny-ViT-test: a 2-layer test model)")
    weights: str | None = _opt(None, "--weights", "CLIP weights the depth encoder starts from and the image features "
                               "come from (default: the usual lookup, see `clip2point info`)", metavar="TAG|PATH|random")
    epochs: int = _opt(100, "--epochs", "passes over the pairs (released: 100)")
    max_steps: int | None = _opt(None, "--steps", "stop after N optimizer steps in total (overrides --epochs when smaller)")
    batch_size: int = _opt(256, "--batch-size", "global batch: pairs per step over all processes (released: 256)")
    lr: float = _opt(6e-3, "--lr", "LAMB learning rate (released: 6e-3)")
    weight_decay: float = _opt(1e-4, "--weight-decay", "LAMB weight decay")
    restart_epochs: int = 2
    eta_min: float = 1e-5
    num_points: int = _opt(1024, "--num-points", "points per shape per step (random subset of the stored ones)")
    temperature: float = _opt(DEFAULT_TEMPERATURE, "--temperature", "NT-Xent temperature")
    dist_jitter: float = 0.1
    seed: int = _opt(0, "--seed", "seeds the cache's sampling/lights and every training draw")
    device: str = _opt("auto", "--device", "auto (cuda:LOCAL_RANK when available), cpu, cuda, cuda:1")
    amp: str = _opt("auto", "--amp", "bf16 autocast of the depth encoder being trained (auto: on CUDA only)",
                    choices=("auto", "bf16", "off"))
    precision: str = _opt(BackboneConfig.precision, "--precision",
                          "weights of the frozen CLIP (the pair cache's image features, validation's text features and "
                          "a copy of the encoder for validation): fp32, bf16, or auto (bf16 where the device computes "
                          "it natively; `clip2point info`); the encoder is trained from fp32 weights either way",
                          choices=PRECISIONS)
    grad_checkpointing: bool = _opt(False, "--grad-checkpointing",
                                    "recompute transformer blocks in backward: less GPU memory, slower")
    save_every: int = _opt(500, "--save-every", "checkpoint every N steps (0: only at the end); a ViT-B-32 checkpoint "
                           "with LAMB state is ~1 GB, the last 2 are kept")
    keep_checkpoints: int = 2
    val_data: str | None = _opt(None, "--val-data", "ModelNet folder: validate zero-shot after every epoch on its TRAIN split",
                                metavar="DIR")
    val_dataset: str = _opt("modelnet10", "--val-dataset", "the validation dataset", choices=DATASET_NAMES)
    val_per_class: int = _opt(10, "--val-per-class", "validation shapes per class (the first N of the train split)")
    val_views: str = _opt("6", "--val-views", "zero-shot view set for validation (6: the released zero-shot protocol; "
                          "the released pre-training validated with 10)",
                          choices=tuple(sorted(VIEW_SETS, key=lambda name: (len(name), name))))
    val_template: str = DEFAULT_TEMPLATE
    val_batch_size: int = 32
    shard_size: int = _opt(128, "--shard-size", "shapes per cache shard (the unit of resuming a build)")
    keep_images: bool = _opt(False, "--keep-images", "also store the RGB views (uint8, ~1.5 MB per shape): for inspection, "
                             "and to re-encode for another backbone without rendering")
    num_workers: int = _opt(0, "--workers", "DataLoader workers (pairs are in memory; 0 is fine)")
    resume: bool = _opt(False, "--resume", "continue RUN_DIR from its last checkpoint (same step, same state)")
    progress: bool = True
    allow_download: bool = True

    @property
    def pairs_dir(self) -> Path:
        """The pair cache folder: ``cache_dir``, else ``run_dir/pairs``."""
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
            (self.precision in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"),
            (self.save_every >= 0 and self.keep_checkpoints >= 1, "--save-every must be ≥ 0"),
            (self.val_per_class >= 1, f"--val-per-class must be ≥ 1, got {self.val_per_class}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise Clip2PointError(msg)
