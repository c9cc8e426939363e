"""Few-shot learning with the Gated Dual-Path Adapter: data splits, a feature cache, training runs.

CLIP2Point's few-shot protocol (Huang et al., ICCV 2023, §3.3 and §4.3; released ``fewshot.py``):
K shapes per class from the training split, 10 depth views per shape, two frozen encoders (the
CLIP2Point depth encoder and CLIP), a trainable adapter (here :mod:`clip2point.gdpa`), AdamW
(lr 1e-3, weight decay 1e-4), batch 32, 100 epochs. What differs from the released script:

* **Any ModelNet10/40 and K ∈ {1, 2, 4, 8, 16}** through :func:`clip2point.datasets.open_dataset`
  (the released script hard-codes ModelNet40 and 16 shots).
* **A validation split** picks the checkpoint: ``val_per_class`` further training shapes per class,
  disjoint from the shots. The released script picks the best epoch *on the test set*.
* **Encode once** (``mode="cached"``): the frozen encoders see every shape once (and each of
  ``resamples`` point re-samples of the training shapes once); the adapter trains on the cached
  (S, R, V, D) features. The released script renders and encodes the training *and* test shapes
  in every epoch; ``mode="online"`` keeps that behaviour for comparison (train and validation
  shapes re-rendered and re-encoded every epoch, the test set once at the end).
* **Runs are resumable, cancellable and reproducible**: a checkpoint every epoch (atomic), all
  randomness derived from ``(seed, epoch)``, so an interrupted run that is resumed ends exactly
  where an uninterrupted one does (on the CPU; bitwise for the same thread count).
* **"Precise BN"** (``precise_bn=True``): after each epoch the adapter's BatchNorm statistics are
  re-estimated on the epoch's training features before validating. With the released momentum
  running averages, the initial variance of 1 dominates for ~100 optimizer steps, longer than a
  short few-shot run (10 shapes = one step per epoch), and eval-mode predictions collapse.
* **Head temperature**: a learnable logit scale initialised to CLIP's (see :mod:`clip2point.gdpa`);
  the released script uses the bare cosine.

Point re-samples (augmentation): re-sample 0 is the shape as loaded; re-sample r ≥ 1 is a seeded
random subset of ``round(resample_keep · N)`` of its points (the released code re-samples each
epoch from the mesh; our h5 data hold exactly 1,024 points, so subsets play that role).
Validation and test shapes are always used as loaded.

``limit_test=N`` evaluates N test shapes chosen class-balanced and deterministically: the classes'
earliest test shapes in round-robin order (each class's first, then each class's second, ...), so
small limits still cover every class; the result is reported with the number of shapes used.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..backbone import DEFAULT_TEMPLATE, ClipBackbone
from ..datasets import PointCloudDataset, open_dataset
from ..errors import CheckpointError, Clip2PointError, DatasetError
from ..evaluate import EvalResult, iter_batches
from ..gdpa import GATES, GatedDualPathAdapter, GDPAConfig
from ..rng import private_rng
from ..render import DepthRenderer, RasterSettings, ViewSet, clip_normalize, get_view_set
from ..weights import load_state_dict_file, read_json, save_state_dict_atomic, write_json_atomic, write_text_atomic
from ..zeroshot import ZeroShotResult

log = logging.getLogger(__name__)

__all__ = [
    "SHOTS", "MODES", "FewShotConfig", "FewShotSplits", "select_few_shot", "stratified_head", "make_splits",
    "EncoderPasses", "ViewEncoder", "SplitFeatures", "FeatureCache", "encode_split",
    "EpochStats", "Progress", "RunResult", "run_fewshot", "released_recipe_passes",
    "FewShotClassifier", "AdapterResult", "load_adapter", "read_run_config", "RUN_FILES",
]

#: Shots per class (CLIP2Point / PointCLIP few-shot protocol).
SHOTS = (1, 2, 4, 8, 16)
MODES = ("cached", "online")
_CACHE_DTYPES = {"float32": torch.float32, "float16": torch.float16}
#: Files of a run directory.
RUN_FILES = {
    "config": "config.json", "adapter": "adapter.safetensors", "last": "last.safetensors",
    "features": "features.safetensors", "metrics": "metrics.json", "history": "history.jsonl",
    "curves": "curves.png", "gate": "gate_weights.png", "confusion": "confusion.png",
}
_SHAPES_PER_CHUNK = 16  # shapes rendered together (16 × 10 views × 224² float32 ≈ 32 MB)
# Independent random streams, combined with (seed, ...) in np.random.SeedSequence.
_STREAM_SPLIT, _STREAM_RESAMPLE, _STREAM_ONLINE, _STREAM_EPOCH, _STREAM_INIT = 11, 12, 13, 14, 15


# ----------------------------------------------------------------------------------------------
# configuration


@dataclass
class FewShotConfig:
    """Everything that defines a few-shot run (saved as ``config.json`` in the run directory).

    Attributes:
        dataset: "modelnet10" or "modelnet40". data_dir: its folder (see ``open_dataset``).
        out_dir: the run directory (created).
        shots: K shapes per class from the training split, one of :data:`SHOTS`.
        epochs: training epochs (released: 100).
        gate: "view" (GDPA) or "none" (released DPA: fixed 0.5/0.5 average).
        views: view set, "10" (CLIP2Point's few-shot views) or "6".
        image_size: depth image size in pixels (None: the backbone's input size). radius: splat radius (NDC).
        num_points: points per shape read from the dataset. up: override the dataset's up axis.
        val_per_class: validation shapes per class, from the training shapes that are not shots
            (0: no validation; the last epoch is kept).
        limit_test: evaluate N class-balanced test shapes (0 = all; see the module docstring).
        resamples: R cached point re-samples per training shape (1 = none); one is drawn per epoch.
        resample_keep: share of the points kept by a re-sample (r ≥ 1), in (0, 1].
        mode: "cached" (encode once) or "online" (re-render and re-encode every epoch, like the release).
        batch_size, lr, weight_decay: AdamW training (released: 32, 1e-3, 1e-4).
        dropout, gate_hidden: adapter sizes (see :class:`~clip2point.gdpa.GDPAConfig`).
        seed: seeds the shot/validation selection, re-samples, initialisation, shuffling and dropout.
        template: prompt template of the class text features.
        device: "cpu", "cuda", ... (None: the backbone's device).
        cache_dtype: "float32" or "float16" storage of cached features.
        encode_batch_size: images per encoder forward pass.
        precise_bn: after each epoch, re-estimate the BatchNorm statistics on the epoch's training
            features (see ``_Trainer.recalibrate_batchnorm``); False keeps the released running averages.
        plots: write curves.png, gate_weights.png and confusion.png (matplotlib, ~0.5 s each).
        resume: continue the run in ``out_dir`` from its last checkpoint.
        overwrite: replace a run already in ``out_dir`` (otherwise that is an error unless resuming).
    """

    dataset: str = "modelnet10"
    data_dir: str = ""
    out_dir: str = ""
    shots: int = 16
    epochs: int = 100
    gate: str = "view"
    views: str = "10"
    image_size: int | None = None
    radius: float = 0.02
    num_points: int = 1024
    up: str | None = None
    val_per_class: int = 4
    limit_test: int = 0
    resamples: int = 1
    resample_keep: float = 0.8
    mode: str = "cached"
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    dropout: float = 0.075
    gate_hidden: int = 64
    seed: int = 0
    template: str = DEFAULT_TEMPLATE
    device: str | None = None
    cache_dtype: str = "float32"
    encode_batch_size: int = 64
    precise_bn: bool = True
    plots: bool = True
    resume: bool = False
    overwrite: bool = False

    #: fields that may change when a run is resumed
    RESUMABLE_CHANGES = ("epochs", "data_dir", "out_dir", "device", "encode_batch_size", "plots", "resume", "overwrite")

    def validate(self) -> None:
        """Raise :class:`Clip2PointError` with a fix for any invalid setting."""
        if int(self.shots) not in SHOTS:
            raise Clip2PointError(
                f"shots must be one of {', '.join(map(str, SHOTS))} (shapes per class, the CLIP2Point/PointCLIP "
                f"few-shot protocol), got {self.shots!r}"
            )
        if self.gate not in GATES:
            raise Clip2PointError(f"gate must be one of {', '.join(GATES)}, got {self.gate!r}")
        if self.mode not in MODES:
            raise Clip2PointError(f"mode must be 'cached' or 'online', got {self.mode!r}")
        if self.cache_dtype not in _CACHE_DTYPES:
            raise Clip2PointError(f"cache_dtype must be 'float32' or 'float16', got {self.cache_dtype!r}")
        positive = ("epochs", "batch_size", "resamples", "num_points", "encode_batch_size")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise Clip2PointError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        for name in ("val_per_class", "limit_test"):
            if int(getattr(self, name)) < 0:
                raise Clip2PointError(f"{name} must be 0 or more, got {getattr(self, name)!r}")
        if not 0.0 < float(self.resample_keep) <= 1.0:
            raise Clip2PointError(f"resample_keep must lie in (0, 1], got {self.resample_keep!r}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise Clip2PointError(f"need lr > 0 and weight_decay ≥ 0, got lr={self.lr}, weight_decay={self.weight_decay}")
        if not self.out_dir:
            raise Clip2PointError("out_dir (the run directory) is required, e.g. runs/mn10-16shot")
        get_view_set(self.views)  # raises on an unknown view set
        GDPAConfig(gate=self.gate, dropout=self.dropout, gate_hidden=self.gate_hidden)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FewShotConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# ----------------------------------------------------------------------------------------------
# data


@dataclass
class FewShotSplits:
    """Indices of the shapes a run uses.

    Attributes:
        shots: (K·C,) indices into the training split, sorted.
        val: (val_per_class·C,) indices into the training split, disjoint from ``shots``, sorted.
        test: indices into the test split (all, or the class-balanced head for ``limit_test``).
    """

    shots: np.ndarray
    val: np.ndarray
    test: np.ndarray


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *map(int, stream)])


def _torch_seed(seed: int, *stream: int) -> int:
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *map(int, stream)]).generate_state(1, np.uint64)[0] >> 1)


def select_few_shot(
    labels: np.ndarray, num_classes: int, shots: int, val_per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded K-shot selection plus a disjoint validation split, both from the training labels.

    Each class's training shapes are shuffled with a generator seeded by ``(seed, class)``; the
    first ``val_per_class`` become validation shapes, the next ``shots`` the training shots. The
    validation split therefore does not depend on K, and the shots of K are a subset of those of
    any larger K (same seed).

    Returns:
        (shot indices (K·C,), validation indices (val_per_class·C,)), both sorted int64.

    Raises:
        Clip2PointError: K not in :data:`SHOTS`. DatasetError: a class has fewer than
            ``shots + val_per_class`` training shapes.
    """
    if int(shots) not in SHOTS:
        raise Clip2PointError(f"shots must be one of {', '.join(map(str, SHOTS))}, got {shots!r}")
    labels = np.asarray(labels, dtype=np.int64)
    shot_idx, val_idx, short = [], [], []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if len(members) < shots + val_per_class:
            short.append(f"class {c}: {len(members)}")
            continue
        perm = members[_rng(seed, _STREAM_SPLIT, c).permutation(len(members))]
        val_idx.append(perm[:val_per_class])
        shot_idx.append(perm[val_per_class : val_per_class + shots])
    if short:
        raise DatasetError(
            f"{len(short)} classes have fewer than shots + val_per_class = {shots + val_per_class} training shapes "
            f"({', '.join(short[:5])}); use fewer shots or a smaller validation split"
        )
    cat = lambda parts: np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)  # noqa: E731
    return cat(shot_idx), cat(val_idx)


def stratified_head(labels: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` shapes in class-balanced round-robin order (each class's earliest shapes first).

    Returns sorted int64 indices; all indices when ``n`` is 0 or at least ``len(labels)``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if n <= 0 or n >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    per_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    order = [m[rank] for rank in range(max(map(len, per_class))) for m in per_class if rank < len(m)]
    return np.sort(np.asarray(order[:n], dtype=np.int64))


def make_splits(config: FewShotConfig) -> tuple[PointCloudDataset, PointCloudDataset, FewShotSplits]:
    """Open the train and test splits of ``config.dataset`` and choose the shots, validation and test shapes.

    Raises:
        DatasetError: the dataset is missing or too small (see :func:`open_dataset`, :func:`select_few_shot`).
    """
    train = open_dataset(config.dataset, config.data_dir, "train", num_points=config.num_points, up=config.up)
    test = open_dataset(config.dataset, config.data_dir, "test", num_points=config.num_points, up=config.up)
    if train.class_names != test.class_names:
        raise DatasetError(f"{config.data_dir}: train and test splits list different classes")
    shots, val = select_few_shot(train.labels, len(train.class_names), config.shots, config.val_per_class, config.seed)
    return train, test, FewShotSplits(shots, val, stratified_head(test.labels, config.limit_test))


# ----------------------------------------------------------------------------------------------
# encoding


@dataclass
class EncoderPasses:
    """Images that went through a frozen image encoder, per split (``count`` adds to them)."""

    counts: dict[str, int] = field(default_factory=dict)

    def count(self, split: str, images: int) -> None:
        self.counts[split] = self.counts.get(split, 0) + int(images)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def merged(self, other: dict[str, int]) -> dict[str, int]:
        """``counts`` plus ``other``, per split."""
        out = dict(other)
        for k, v in self.counts.items():
            out[k] = out.get(k, 0) + v
        return out

    def since(self, before: dict[str, int]) -> dict[str, int]:
        """Images counted since the snapshot ``before`` (a copy of ``counts``), per split."""
        return {k: v - before.get(k, 0) for k, v in self.counts.items() if v != before.get(k, 0)}


def released_recipe_passes(epochs: int, train_shapes: int, test_shapes: int, views: int) -> int:
    """Encoder image passes of the released few-shot script: every epoch renders all training and
    test shapes and runs both visual towers (DPA) on every view."""
    return int(epochs) * (int(train_shapes) + int(test_shapes)) * int(views) * 2


class ViewEncoder:
    """Render point clouds and encode the views with both GDPA paths, counting encoder passes.

    Path A is the CLIP2Point depth encoder when the backbone has one ("depth+clip"), else CLIP
    ("clip+clip": each view is encoded once and both paths share the features). Path B is CLIP.

    Args:
        backbone: the frozen encoders. views, image_size, radius: rendering settings.
        paths: "depth+clip", "clip+clip", or None (decide from the backbone).
        batch_size: images per encoder forward pass.
        passes: counter to add the encoded images to.
    """

    def __init__(
        self,
        backbone: ClipBackbone,
        views: str | ViewSet = "10",
        image_size: int | None = None,
        radius: float = 0.02,
        paths: str | None = None,
        batch_size: int = 64,
        passes: EncoderPasses | None = None,
    ) -> None:
        self.backbone = backbone
        self.renderer = DepthRenderer(get_view_set(views), RasterSettings(image_size or backbone.image_size, radius))
        self.paths = paths or ("depth+clip" if backbone.depth_encoder is not None else "clip+clip")
        if self.paths not in ("depth+clip", "clip+clip"):
            raise Clip2PointError(f"paths must be 'depth+clip' or 'clip+clip', got {self.paths!r}")
        if self.paths == "depth+clip" and backbone.depth_encoder is None:
            raise Clip2PointError(
                "this adapter was trained with a CLIP2Point depth encoder (paths depth+clip) but none is loaded; "
                "pass --depth-encoder FILE (the same file as for training)"
            )
        self.batch_size = int(batch_size)
        self.passes = passes if passes is not None else EncoderPasses()

    @property
    def shared(self) -> bool:
        """True when both paths take the same (CLIP) features."""
        return self.paths == "clip+clip"

    @property
    def num_views(self) -> int:
        return len(self.renderer.views)  # type: ignore[arg-type]

    @property
    def encoders(self) -> tuple[str, ...]:
        return ("clip",) if self.shared else ("depth", "clip")

    def _autocast(self):
        dev = self.backbone.device
        return torch.autocast("cuda", dtype=_amp_dtype()) if dev.type == "cuda" else nullcontext()

    def encode(self, points: torch.Tensor, split: str = "") -> tuple[torch.Tensor, torch.Tensor]:
        """(b, N, 3) y-up points → (f_A, f_B), each (b, V, D) float32, L2-normalised, on the backbone's device.

        With shared paths f_B is f_A (the same tensor). Raises Clip2PointError for invalid points.
        """
        images = clip_normalize(self.renderer(points.to(self.backbone.device)))
        feats = []
        with self._autocast():
            for enc in self.encoders:
                feats.append(self.backbone.encode_images(images, enc, self.batch_size).float().clone())
                self.passes.count(split, images.shape[0] * images.shape[1])
        return (feats[0], feats[0]) if self.shared else (feats[0], feats[1])


def _resample(points: torch.Tensor, ids: Sequence[int], keep: float, seed: int, *stream: int) -> torch.Tensor:
    """Seeded random subsets of ``round(keep · N)`` points per shape: (b, N, 3) → (b, M, 3), original order."""
    n = points.shape[1]
    m = max(2, min(n, int(round(keep * n))))
    if m >= n:
        return points
    idx = np.stack([np.sort(_rng(seed, *stream, int(i)).choice(n, m, replace=False)) for i in ids])
    return points[torch.arange(len(ids))[:, None], torch.from_numpy(idx)]


@dataclass
class SplitFeatures:
    """Cached features of one split.

    Attributes:
        a: (S, R, V, D) path-A features (R re-samples; R = 1 for validation/test), float16/32, CPU.
        b: (S, R, V, D) path-B features, or None when both paths share ``a`` ("clip+clip").
        labels: (S,) int64. indices: (S,) int64 indices into the dataset split.
    """

    a: torch.Tensor
    b: torch.Tensor | None
    labels: torch.Tensor
    indices: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def resamples(self) -> int:
        return int(self.a.shape[1])

    def pick(self, choice: torch.Tensor | None = None, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(f_A, f_B), each (S, V, D) float32 on ``device``: re-sample ``choice[s]`` of shape s (default 0)."""
        rows = torch.arange(len(self))
        choice = torch.zeros(len(self), dtype=torch.int64) if choice is None else choice
        fa = self.a[rows, choice].to(device=device, dtype=torch.float32)
        fb = fa if self.b is None else self.b[rows, choice].to(device=device, dtype=torch.float32)
        return fa, fb

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        out = {f"{prefix}.a": self.a, f"{prefix}.labels": self.labels, f"{prefix}.indices": self.indices}
        if self.b is not None:
            out[f"{prefix}.b"] = self.b
        return out

    @classmethod
    def from_tensors(cls, sd: dict[str, torch.Tensor], prefix: str) -> SplitFeatures | None:
        if f"{prefix}.a" not in sd:
            return None
        return cls(sd[f"{prefix}.a"], sd.get(f"{prefix}.b"), sd[f"{prefix}.labels"], sd[f"{prefix}.indices"])


@dataclass
class FeatureCache:
    """Features of the splits encoded once, with what produced them (saved as ``features.safetensors``).

    Attributes:
        splits: "train", "val", "test" → :class:`SplitFeatures` (those encoded so far).
        fingerprint: the settings that determine the features (backbone, views, shapes, re-samples, ...);
            a cache whose fingerprint differs from the run's is ignored.
        passes: encoder image passes spent on the cached features, per split.
    """

    splits: dict[str, SplitFeatures] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    passes: dict[str, int] = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> Path:
        tensors: dict[str, torch.Tensor] = {}
        for name, split in self.splits.items():
            tensors.update(split.tensors(name))
        meta = {"format": "clip2point-features/1", "fingerprint": json.dumps(self.fingerprint, sort_keys=True),
                "passes": json.dumps(self.passes)}
        return save_state_dict_atomic(tensors, path, meta)

    @classmethod
    def load(cls, path: str | os.PathLike, fingerprint: dict[str, Any]) -> FeatureCache | None:
        """The cache at ``path`` if it exists and matches ``fingerprint``; None otherwise (logged)."""
        if not Path(path).is_file():
            return None
        try:
            sd, meta = load_state_dict_file(path)
        except CheckpointError as err:
            log.warning("ignoring the feature cache: %s", err)
            return None
        try:
            stored = json.loads(meta.get("fingerprint", "{}"))
            passes = {str(k): int(v) for k, v in json.loads(meta.get("passes", "{}")).items()}
        except (ValueError, TypeError, AttributeError) as err:
            log.warning("ignoring the feature cache %s: damaged metadata (%s)", path, err)
            return None
        if not isinstance(stored, dict) or stored != json.loads(json.dumps(fingerprint, sort_keys=True)):
            stored = stored if isinstance(stored, dict) else {}
            changed = sorted(k for k in set(stored) | set(fingerprint) if stored.get(k) != fingerprint.get(k))
            log.warning("feature cache %s was made with other settings (%s); encoding again", path, ", ".join(changed))
            return None
        splits = {n: s for n in ("train", "val", "test") if (s := SplitFeatures.from_tensors(sd, n)) is not None}
        log.info("reusing cached features of %s from %s", ", ".join(splits) or "no split", path)
        return cls(splits, fingerprint, passes)


def encode_split(
    encoder: ViewEncoder,
    dataset: PointCloudDataset,
    indices: np.ndarray,
    split: str,
    resamples: int = 1,
    resample_keep: float = 1.0,
    seed: int = 0,
    stream: Sequence[int] = (_STREAM_RESAMPLE,),
    dtype: torch.dtype = torch.float32,
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SplitFeatures | None:
    """Render and encode the shapes ``dataset[indices]`` (R re-samples each) into :class:`SplitFeatures`.

    Re-sample 0 is the shape as loaded, re-sample r ≥ 1 a seeded subset (see :func:`_resample`,
    seeded by ``(seed, *stream, r, dataset index)``). ``progress`` gets the number of shapes done
    after each chunk; ``should_stop`` is checked between chunks (None is returned when it fires).
    """
    sub = dataset.subset(indices)
    a_parts, b_parts = [], []
    for start, (pts, _lab) in zip(range(0, len(sub), _SHAPES_PER_CHUNK), iter_batches(sub, _SHAPES_PER_CHUNK)):
        if should_stop is not None and should_stop():
            return None
        ids = indices[start : start + len(pts)]
        fa_r, fb_r = [], []
        for r in range(resamples):
            p = pts if r == 0 else _resample(pts, ids, resample_keep, seed, *stream, r)
            fa, fb = encoder.encode(p, split)
            fa_r.append(fa.to("cpu", dtype))
            fb_r.append(None if encoder.shared else fb.to("cpu", dtype))
        a_parts.append(torch.stack(fa_r, dim=1))
        if not encoder.shared:
            b_parts.append(torch.stack(fb_r, dim=1))  # type: ignore[arg-type]
        if progress is not None:
            progress(len(pts))
    if not a_parts:  # an empty split (e.g. val_per_class=0)
        a_parts = [torch.zeros(0, resamples, encoder.num_views, encoder.backbone.embed_dim, dtype=dtype)]
        b_parts = [] if encoder.shared else list(a_parts)
    return SplitFeatures(
        torch.cat(a_parts), torch.cat(b_parts) if b_parts else None,
        torch.as_tensor(sub.labels, dtype=torch.int64), torch.as_tensor(np.asarray(indices), dtype=torch.int64),
    )


# ----------------------------------------------------------------------------------------------
# training


@dataclass
class EpochStats:
    """One epoch of training: mean train loss and accuracy (train mode, with dropout), validation
    accuracy/loss (eval mode; NaN without a validation split), the validation gate per view, seconds."""

    epoch: int
    train_loss: float
    train_acc: float
    val_acc: float
    val_loss: float
    val_gate: list[float]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
        return float(self.metrics.get("val_accuracy", float("nan")))

    @property
    def test_accuracy(self) -> float | None:
        return None if self.test is None else self.test.accuracy


def _amp_dtype() -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float16


def _batches(perm: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Split a permutation into batches; a last batch of one shape joins the previous one (BatchNorm
    needs two samples in training mode)."""
    chunks = list(perm.split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


class _Trainer:
    """The adapter, its optimizer and AMP state, with checkpoint (de)serialisation."""

    def __init__(self, model: GatedDualPathAdapter, config: FewShotConfig, device: torch.device) -> None:
        self.model, self.device = model, device
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        amp = device.type == "cuda"
        self.autocast = (lambda: torch.autocast("cuda", dtype=_amp_dtype())) if amp else nullcontext
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp and _amp_dtype() == torch.float16)

    def train_epoch(self, fa: torch.Tensor, fb: torch.Tensor, labels: torch.Tensor, batch_size: int,
                    generator: torch.Generator, should_stop: Callable[[], bool]) -> tuple[float, float] | None:
        """One pass over the shapes in a seeded order; (mean loss, accuracy), or None if stopped."""
        self.model.train()
        loss_sum, correct = 0.0, 0
        perm = torch.randperm(len(labels), generator=generator)
        for idx in _batches(perm, batch_size):
            if should_stop():
                return None
            idx = idx.to(fa.device)
            with self.autocast():
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
                with self.autocast():
                    self.model(fa[idx], fb[idx])
        finally:
            for m, mom in zip(norms, momenta):
                m.momentum = mom
            self.model.eval()

    @torch.no_grad()
    def evaluate(self, fa: torch.Tensor, fb: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> dict[str, Any]:
        """Eval-mode predictions, mean loss, accuracy and gate weights (S, V) of the given features."""
        self.model.eval()
        preds, gates, shape_gates, loss_sum = [], [], [], 0.0
        for start in range(0, len(labels), batch_size):
            sl = slice(start, start + batch_size)
            with self.autocast():
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
        """Atomic checkpoint: adapter weights (``model.*``), optimizer tensors (``optim.*``), JSON state."""
        opt = self.optimizer.state_dict()
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        for i, st in opt["state"].items():
            tensors.update({f"optim.{i}.{k}": v for k, v in st.items() if isinstance(v, torch.Tensor)})
        meta = {
            "format": "clip2point-fewshot-checkpoint/1", "state": json.dumps(state),
            "param_groups": json.dumps(opt["param_groups"]), "scaler": json.dumps(self.scaler.state_dict()),
            "gdpa": self.model.config.to_json(),
        }
        save_state_dict_atomic(tensors, path, meta)

    def load(self, path: Path) -> dict[str, Any]:
        """Restore a checkpoint written by :meth:`save`; returns its JSON state."""
        sd, meta = load_state_dict_file(path)
        if meta.get("format") != "clip2point-fewshot-checkpoint/1":
            raise CheckpointError(f"{path} is not a clip2point few-shot checkpoint; start a new run (without --resume)")
        try:
            self.model.load_state_dict({k[6:]: v for k, v in sd.items() if k.startswith("model.")})
            state: dict[int, dict[str, torch.Tensor]] = {}
            for k, v in sd.items():
                if k.startswith("optim."):
                    _, i, name = k.split(".", 2)
                    state.setdefault(int(i), {})[name] = v
            self.optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
            scaler = json.loads(meta.get("scaler", "{}"))
            if scaler and self.scaler.is_enabled():
                self.scaler.load_state_dict(scaler)
            run_state = json.loads(meta["state"])
            int(run_state["epoch"]), int(run_state["best_epoch"]), float(run_state["best_val_acc"])
            return run_state
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as err:
            raise CheckpointError(f"{path}: the checkpoint does not fit this run or is damaged ({type(err).__name__}: "
                                  f"{' '.join(str(err).split())[:160]}); start a new run (without --resume)") from None


def _stop_checker(should_stop: Callable[[], bool] | Any | None) -> Callable[[], bool]:
    if should_stop is None:
        return lambda: False
    if hasattr(should_stop, "is_set"):  # threading.Event
        return should_stop.is_set
    return should_stop


def _nan_to_none(obj: Any) -> Any:
    """Replace float NaN/inf by None recursively (strict JSON for metrics.json)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def _backbone_info(backbone: ClipBackbone, paths: str) -> dict[str, Any]:
    return {
        "model_name": backbone.model_name, "describe": backbone.describe(), "random_weights": backbone.weights.is_random,
        "weights_kind": backbone.weights.kind, "weights_location": backbone.weights.location,
        "depth_encoder": backbone.depth_weights.location if backbone.depth_weights else None,
        "embed_dim": backbone.embed_dim, "paths": paths,
    }


def _run_file(run_dir: Path, key: str) -> Path:
    """``run_dir / RUN_FILES[key]``, refusing a link that leads out of the run folder (it may come from anywhere)."""
    path = run_dir / RUN_FILES[key]
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
    path = _run_file(Path(run_dir), "config")
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
                 "depth_encoder": (str, type(None))}
        problems += [f"backbone field {k!r} has the wrong type" for k, t in types.items() if k in info and not isinstance(info[k], t)]
    if problems:
        raise CheckpointError(f"{path} is not a valid few-shot run config ({'; '.join(problems)}); the run folder is "
                              "damaged, train the run again")
    return cfg


class _HistoryFile:
    """``history.jsonl``: one JSON line per finished epoch, appended (a checkpoint never rewrites the history)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def restore(self, epochs_done: int, legacy: list[dict] | None = None) -> list[EpochStats]:
        """The history of epochs 1..``epochs_done`` (the checkpoint's), dropping lines written after it.

        ``legacy``: the history a pre-``history.jsonl`` checkpoint kept in its state (used when given).
        """
        if legacy is not None:
            rows = [dict(h) for h in legacy]
        elif epochs_done and self.path.is_file():
            rows = []
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rows.append(json.loads(line))
                except ValueError:  # a line cut by a crash: only ever the last one
                    break
        else:
            rows = []
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
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(json.dumps(stats.as_dict()) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _prepare_run_dir(config: FewShotConfig) -> tuple[Path, bool]:
    """Create the run directory; returns (path, resuming: a run with the same settings is there).

    Raises:
        Clip2PointError: it holds a run and neither resume nor overwrite is set.
        CheckpointError: resuming with settings other than epochs/device/paths changed.
    """
    run_dir = Path(config.out_dir)
    cfg_path = run_dir / RUN_FILES["config"]
    if cfg_path.is_file() and not config.resume:
        if not config.overwrite:
            raise Clip2PointError(
                f"{run_dir} already holds a few-shot run; resume it (--resume), replace it (--overwrite) "
                "or choose another output folder"
            )
        for name in RUN_FILES.values():
            (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    if config.resume and cfg_path.is_file():
        old = FewShotConfig.from_dict(read_run_config(run_dir)["fewshot"])
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


def _check_same_backbone(run_dir: Path, backbone: ClipBackbone) -> None:
    """Resuming needs the encoders the run started with (its features and adapter depend on them)."""
    before = read_run_config(run_dir)["backbone"].get("describe")
    if before and before != backbone.describe():
        raise CheckpointError(
            f"cannot resume {run_dir}: it was trained with {before!r}, not {backbone.describe()!r}; "
            "load the same --model/--weights/--depth-encoder"
        )


def _fingerprint(config: FewShotConfig, backbone: ClipBackbone, paths: str, image_size: int) -> dict[str, Any]:
    keys = ("dataset", "shots", "views", "radius", "num_points", "up", "val_per_class", "limit_test",
            "resamples", "resample_keep", "seed", "cache_dtype")
    return {**{k: getattr(config, k) for k in keys}, "image_size": image_size, "paths": paths,
            "backbone": backbone.describe(), "model_name": backbone.model_name}


class _Run:
    """State of one :func:`run_fewshot` call (kept in one object so each step is a small method)."""

    def __init__(self, config: FewShotConfig, backbone: ClipBackbone, progress, should_stop) -> None:
        config.validate()
        self.config, self.backbone = config, backbone
        self.progress = progress or (lambda p: None)
        self.stop = _stop_checker(should_stop)
        self.device = torch.device(config.device) if config.device else backbone.device
        if backbone.device != self.device:
            log.info("moving the backbone to %s", self.device)
            backbone.to(self.device)
        self.passes = EncoderPasses()  # encoder images of this call
        self.online_passes: dict[str, int] = {}  # online mode: train/val encodings over all sessions
        self.timings = {"encode_s": 0.0, "train_s": 0.0, "test_s": 0.0}
        self.train_ds, self.test_ds, self.splits = make_splits(config)  # data errors before touching out_dir
        self.run_dir, self.resuming = _prepare_run_dir(config)
        if self.resuming:
            _check_same_backbone(self.run_dir, backbone)
        self.classes = list(self.train_ds.class_names)
        self.encoder = ViewEncoder(backbone, config.views, config.image_size, config.radius,
                                   batch_size=config.encode_batch_size, passes=self.passes)
        self.paths = self.encoder.paths
        self.view_labels = self.encoder.renderer.views.labels()  # type: ignore[union-attr]
        image_size = self.encoder.renderer.raster.image_size
        self.fingerprint = _fingerprint(config, backbone, self.paths, image_size)
        self.cache_path = _run_file(self.run_dir, "features") if self.resuming else self.run_dir / RUN_FILES["features"]
        self.cache = (FeatureCache.load(self.cache_path, self.fingerprint) if self.resuming else None) or FeatureCache(
            fingerprint=self.fingerprint)
        if config.resamples > 1 and config.resample_keep >= 1.0:
            log.warning("resamples=%d with resample_keep=1: every re-sample is the whole shape", config.resamples)
        log.info("few-shot %s: %d-shot, %d classes, %d train / %d val / %d test shapes, paths %s, %s",
                 config.dataset, config.shots, len(self.classes), len(self.splits.shots), len(self.splits.val),
                 len(self.splits.test), self.paths, backbone.describe())
        if self.paths == "clip+clip":
            log.info("no depth encoder loaded: both GDPA paths take CLIP features (paths clip+clip), encoded once")

    # -- model -------------------------------------------------------------------------------
    def build_model(self) -> GatedDualPathAdapter:
        cfg = self.config
        gcfg = GDPAConfig(views=self.encoder.num_views, dim=self.backbone.embed_dim, num_classes=len(self.classes),
                          gate=cfg.gate, dropout=cfg.dropout, gate_hidden=cfg.gate_hidden)
        text = self.backbone.text_features(self.classes, cfg.template)
        with private_rng(torch.Generator().manual_seed(_torch_seed(cfg.seed, _STREAM_INIT))):  # global RNG untouched
            model = GatedDualPathAdapter(gcfg, text, self.backbone.logit_scale)
        return model.to(self.device)

    # -- features ----------------------------------------------------------------------------
    def _encode(self, split: str, dataset, indices: np.ndarray, resamples: int = 1, stream=(_STREAM_RESAMPLE,)):
        t = time.perf_counter()
        done = 0

        def report(n: int) -> None:
            nonlocal done
            done += n
            self.progress(Progress("encode", done, len(indices), split))

        self.progress(Progress("encode", 0, len(indices), split))
        feats = encode_split(self.encoder, dataset, indices, split, resamples, self.config.resample_keep,
                             self.config.seed, stream, _CACHE_DTYPES[self.config.cache_dtype], report, self.stop)
        self.timings["encode_s"] += time.perf_counter() - t
        return feats

    def cached(self, split: str, dataset, indices: np.ndarray, resamples: int = 1) -> SplitFeatures | None:
        """Features of a split from the cache, or encoded now and added to the cache file."""
        if split in self.cache.splits:
            return self.cache.splits[split]
        before = self.passes.counts.get(split, 0)
        feats = self._encode(split, dataset, indices, resamples)
        if feats is None:
            return None
        self.cache.splits[split] = feats
        self.cache.passes[split] = self.passes.counts.get(split, 0) - before
        self.cache.save(self.cache_path)
        return feats

    def online_features(self, epoch: int) -> tuple[SplitFeatures, SplitFeatures] | None:
        """Re-render and re-encode the training (fresh re-samples) and validation shapes for one epoch."""
        keep = self.config.resample_keep if self.config.resamples > 1 else 1.0
        sub = self.train_ds.subset(self.splits.shots)
        t, before = time.perf_counter(), dict(self.passes.counts)
        parts = []
        for start, (pts, _l) in zip(range(0, len(sub), _SHAPES_PER_CHUNK), iter_batches(sub, _SHAPES_PER_CHUNK)):
            if self.stop():
                return None
            ids = self.splits.shots[start : start + len(pts)]
            parts.append(self.encoder.encode(_resample(pts, ids, keep, self.config.seed, _STREAM_ONLINE, epoch), "train"))
        self.timings["encode_s"] += time.perf_counter() - t
        fa = torch.cat([p[0] for p in parts])[:, None]
        fb = None if self.encoder.shared else torch.cat([p[1] for p in parts])[:, None]
        train = SplitFeatures(fa, fb, torch.as_tensor(sub.labels), torch.as_tensor(self.splits.shots))
        val = self._encode("val", self.train_ds, self.splits.val)
        for k, n in self.passes.since(before).items():
            self.online_passes[k] = self.online_passes.get(k, 0) + n
        return None if val is None else (train, val)

    # -- checkpoints -------------------------------------------------------------------------
    def write_config(self, model: GatedDualPathAdapter) -> None:
        write_json_atomic(self.run_dir / RUN_FILES["config"], {
            "format": "clip2point-fewshot-run/1", "fewshot": self.config.to_dict(), "gdpa": asdict(model.config),
            "classes": self.classes, "view_labels": self.view_labels, "paths": self.paths,
            "backbone": _backbone_info(self.backbone, self.paths),
        })

    def save_best(self, trainer: _Trainer, epoch: int, val_acc: float) -> None:
        meta = {"format": "clip2point-gdpa/1", "gdpa": trainer.model.config.to_json(), "epoch": epoch,
                "val_accuracy": val_acc, "classes": json.dumps(self.classes), "paths": self.paths,
                "views": self.config.views, "template": self.config.template}
        save_state_dict_atomic(trainer.model.state_dict(), self.run_dir / RUN_FILES["adapter"], meta)

    # -- main loop ---------------------------------------------------------------------------
    def execute(self) -> RunResult:
        cfg = self.config
        t_run = time.perf_counter()
        model = self.build_model()
        trainer = _Trainer(model, cfg, self.device)
        state: dict[str, Any] = {"epoch": 0, "best_epoch": 0, "best_val_acc": -1.0, "best_val_loss": math.inf,
                                 "online_passes": {}}
        if self.resuming and _run_file(self.run_dir, "last").is_file():
            state = trainer.load(self.run_dir / RUN_FILES["last"])
            self.online_passes = dict(state.get("online_passes", {}))
            log.info("resuming %s after epoch %d (best epoch %d)", self.run_dir, state["epoch"], state["best_epoch"])
        self.write_config(model)
        history_file = _HistoryFile(_run_file(self.run_dir, "history"))
        history = history_file.restore(state["epoch"], state.pop("history", None))
        status, train, val = "completed", None, None
        if cfg.mode == "cached":
            train = self.cached("train", self.train_ds, self.splits.shots, cfg.resamples)
            val = self.cached("val", self.train_ds, self.splits.val) if train is not None else None
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
            state.update(epoch=epoch, online_passes=self.online_passes)
            trainer.save(self.run_dir / RUN_FILES["last"], state)
            self.progress(Progress("epoch", epoch, cfg.epochs, stats=stats, best_val_acc=state["best_val_acc"]))
            if self.stop():
                status = "cancelled" if epoch < cfg.epochs else status
                break
        if state["best_epoch"]:  # report (and test) the kept checkpoint, not the weights in memory
            trainer.model.load_state_dict(load_state_dict_file(self.run_dir / RUN_FILES["adapter"])[0])
        test = self.test(trainer) if status == "completed" and state["best_epoch"] else None
        self.timings["total_s"] = time.perf_counter() - t_run
        metrics = self.write_metrics(status, state, history, test, trainer)
        self.progress(Progress("done", epoch, cfg.epochs))
        return RunResult(self.run_dir, status, metrics, history, state["best_epoch"], test[0] if test else None)

    def run_epoch(self, trainer: _Trainer, epoch: int, train: SplitFeatures | None,
                  val: SplitFeatures | None) -> EpochStats | None:
        """Train one epoch (seeded by (seed, epoch)) and validate; None when stopped."""
        cfg, t_epoch = self.config, time.perf_counter()
        dropout = torch.Generator(device=self.device).manual_seed(_torch_seed(cfg.seed, _STREAM_EPOCH, epoch))
        trainer.model.set_dropout_generator(dropout)  # this epoch's dropout masks; the global RNG is never reseeded
        gen = torch.Generator().manual_seed(_torch_seed(cfg.seed, _STREAM_EPOCH, epoch, 1))
        if cfg.mode == "online":
            fresh = self.online_features(epoch)
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

    def update_best(self, trainer: _Trainer, state: dict[str, Any], stats: EpochStats) -> None:
        """Keep ``adapter.safetensors`` at the best validation accuracy (ties: lower validation loss;
        without a validation split: the latest epoch)."""
        no_val = stats.val_acc != stats.val_acc
        better = no_val or stats.val_acc > state["best_val_acc"] or (
            stats.val_acc == state["best_val_acc"] and stats.val_loss < state["best_val_loss"])
        if better:
            state.update(best_epoch=stats.epoch, best_val_acc=stats.val_acc, best_val_loss=stats.val_loss)
            self.save_best(trainer, stats.epoch, stats.val_acc)

    def test(self, trainer: _Trainer) -> tuple[EvalResult, torch.Tensor, torch.Tensor] | None:
        """Evaluate the model (the best checkpoint) on the test shapes: (EvalResult, gate (S, V), shape gate (S,))."""
        test = self.cached("test", self.test_ds, self.splits.test)
        if test is None:
            return None
        t = time.perf_counter()
        self.progress(Progress("test", 0, len(test), "test"))
        ev = trainer.evaluate(*test.pick(device=self.device), test.labels.to(self.device))
        self.timings["test_s"] += time.perf_counter() - t
        result = EvalResult(self.classes, test.labels.numpy(), ev["predictions"].numpy().astype(np.int64))
        return result, ev["gate"], ev["shape_gate"]

    # -- reporting ---------------------------------------------------------------------------
    def write_metrics(self, status: str, state: dict[str, Any], history: list[EpochStats], test, trainer) -> dict:
        cfg, v = self.config, self.encoder.num_views
        n_train, n_val, n_test = len(self.splits.shots), len(self.splits.val), len(self.splits.test)
        p = 1 if self.encoder.shared else 2
        done_passes = EncoderPasses(dict(self.cache.passes)).merged(self.online_passes)
        released = released_recipe_passes(cfg.epochs, n_train, n_test, v)
        total = sum(done_passes.values())
        best = next((h for h in history if h.epoch == state["best_epoch"]), None)
        importance = trainer.model.importance().detach().float().cpu().tolist()
        metrics: dict[str, Any] = {
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
            "shape_gate_mean": float(test[2].mean()) if test else None,
            "view_importance": importance, "view_labels": self.view_labels,
            "data": {"train_shapes": n_train, "val_shapes": n_val, "test_shapes": n_test,
                     "test_shapes_available": len(self.test_ds), "limit_test": cfg.limit_test,
                     "shots": [self.train_ds.names[i] for i in self.splits.shots],
                     "val": [self.train_ds.names[i] for i in self.splits.val]},
            "encoder_passes": {**done_passes, "total": total, "this_session": self.passes.total},
            "released_recipe_passes": released,
            "online_mode_passes": cfg.epochs * (n_train + n_val) * v * p + n_test * v * p,
            "reduction_vs_released": released / total if total else None,
            "timings_s": {k: round(t, 3) for k, t in self.timings.items()},
            "history": [h.as_dict() for h in history],
            "plots": {},
        }
        metrics["plots"] = self.write_plots(metrics, history) if cfg.plots else {}
        metrics = _nan_to_none(metrics)
        write_json_atomic(self.run_dir / RUN_FILES["metrics"], metrics)
        return metrics

    def write_plots(self, metrics: dict[str, Any], history: list[EpochStats]) -> dict[str, str]:
        from ..plots import save_confusion_matrix, save_gate_weights, save_training_curves

        cfg, out = self.config, {}
        tag = f"{cfg.dataset} {cfg.shots}-shot, gate {cfg.gate}, {self.paths}" + (
            " (random weights)" if self.backbone.weights.is_random else "")
        if history:
            out["curves"] = str(save_training_curves([h.as_dict() for h in history], self.run_dir / RUN_FILES["curves"],
                                                     title=f"{tag}: best val epoch {metrics['best_epoch']}"))
        gate, where = metrics["gate_weights"], "test"
        if gate is None and metrics["val_gate_weights"]:
            gate, where = metrics["val_gate_weights"], "validation"
        if gate:
            names = ("depth encoder", "CLIP") if self.paths == "depth+clip" else ("path A (CLIP)", "path B (CLIP)")
            out["gate"] = str(save_gate_weights(gate, self.view_labels, self.run_dir / RUN_FILES["gate"],
                                                title=f"{tag}: gate per view, mean over the {where} set",
                                                importance=metrics["view_importance"], path_names=names))
        if metrics["test"]:
            acc = metrics["test_accuracy"] * 100
            out["confusion"] = str(save_confusion_matrix(
                np.asarray(metrics["test"]["confusion_matrix"]), self.classes, self.run_dir / RUN_FILES["confusion"],
                title=f"{tag}: test {acc:.2f}% ({metrics['data']['test_shapes']} shapes)"))
        return out


def run_fewshot(
    config: FewShotConfig,
    backbone: ClipBackbone,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | Any | None = None,
) -> RunResult:
    """Train a GDPA few-shot classifier and write a run directory (see :data:`RUN_FILES`).

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
    return _Run(config, backbone, progress, should_stop).execute()


# ----------------------------------------------------------------------------------------------
# inference with a trained adapter


@dataclass
class AdapterResult(ZeroShotResult):
    """Scores of B shapes by a trained GDPA adapter (a :class:`~clip2point.zeroshot.ZeroShotResult`
    without per-view logits: the aggregators mix the views).

    Attributes (besides classes, logits (B, C), probs = softmax(logits) (B, C), view_labels):
        gate: (B, V) share of path A (the depth encoder) per view. importance: (V,) view importances.
        shape_gate: (B,) share of path A in the fused feature. paths: "depth+clip" or "clip+clip".
    """

    gate: torch.Tensor | None = None
    importance: torch.Tensor | None = None
    shape_gate: torch.Tensor | None = None
    paths: str = ""

    def view_votes(self, index: int = 0) -> list[str]:
        raise Clip2PointError("an adapter has no per-view votes (its aggregators mix the views); see gate_weights")

    def as_dict(self, index: int = 0) -> dict:
        """JSON-ready: classes, probs, top, view_labels, gate_weights (V), view_importance (V), paths."""
        return {
            **self._summary(index),
            "gate_weights": [round(float(g), 5) for g in self.gate[index].tolist()] if self.gate is not None else None,
            "view_importance": [round(float(g), 5) for g in self.importance.tolist()] if self.importance is not None else None,
            "path_a_share": round(float(self.shape_gate[index]), 5) if self.shape_gate is not None else None,
            "paths": self.paths,
        }


class FewShotClassifier:
    """Classify point clouds with a trained GDPA adapter (see :func:`load_adapter`).

    Attributes:
        adapter: the :class:`GatedDualPathAdapter` (eval mode). encoder: renders and encodes both paths.
        classes: class names. run_config: the run's ``config.json`` content.
    """

    def __init__(self, adapter: GatedDualPathAdapter, encoder: ViewEncoder, classes: Sequence[str],
                 run_config: dict[str, Any] | None = None) -> None:
        self.adapter = adapter.eval()
        self.encoder = encoder
        self.classes = list(classes)
        self.run_config = run_config or {}

    @property
    def views(self) -> ViewSet:
        return self.encoder.renderer.views  # type: ignore[return-value]

    @property
    def paths(self) -> str:
        return self.encoder.paths

    @torch.no_grad()
    def predict_features(self, f_a: torch.Tensor, f_b: torch.Tensor) -> AdapterResult:
        """Score (B, V, D) features of both paths."""
        dev = self.adapter.text_features.device
        out = self.adapter(f_a.to(dev, torch.float32), f_b.to(dev, torch.float32))
        logits = out.logits.float().cpu()
        return AdapterResult(
            self.classes, None, logits, torch.softmax(logits, dim=-1), None, self.views.labels(),  # type: ignore[arg-type]
            gate=out.gate.float().cpu(), importance=out.importance.float().cpu(),
            shape_gate=out.shape_gate.float().cpu(), paths=self.paths,
        )

    def predict(self, points, keep_depth: bool = False) -> AdapterResult:
        """Render (N, 3) or (B, N, 3) y-up points, encode both paths, classify.

        Raises:
            Clip2PointError: empty, NaN/inf or degenerate points.
        """
        from ..render import as_points_tensor

        pts = as_points_tensor(points)
        res = self.predict_features(*self.encoder.encode(pts))
        if keep_depth:
            res.depth = self.encoder.renderer(pts.to(self.encoder.backbone.device)).cpu()
        return res


def load_adapter(run_dir: str | os.PathLike, backbone: ClipBackbone, device: str | torch.device | None = None,
                 batch_size: int = 64) -> FewShotClassifier:
    """Load the best adapter of a run directory for inference.

    Args:
        run_dir: a directory written by :func:`run_fewshot` (``config.json`` + ``adapter.safetensors``).
        backbone: the frozen encoders; it must have the run's architecture, and a depth encoder if the
            run used one (a warning is logged when its weights differ from the run's).
        device: where to run (None: the backbone's device; the backbone is moved otherwise).

    Raises:
        CheckpointError: missing or unreadable files, or a backbone that does not fit the adapter.
    """
    run = Path(run_dir)
    run_cfg = read_run_config(run)
    ad_path = _run_file(run, "adapter")
    if not ad_path.is_file():
        raise CheckpointError(f"{run} has no adapter.safetensors yet (no epoch finished); resume the run with --resume")
    try:
        fcfg, gcfg = FewShotConfig.from_dict(run_cfg["fewshot"]), GDPAConfig.from_dict(run_cfg["gdpa"])
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{run / RUN_FILES['config']} is unreadable ({err}); the run directory is damaged") from None
    if backbone.embed_dim != gcfg.dim:
        raise CheckpointError(
            f"{run}: the adapter expects {gcfg.dim}-d features ({run_cfg['backbone'].get('model_name')}), "
            f"this backbone ({backbone.model_name}) gives {backbone.embed_dim}; pass --model/--weights of the run"
        )
    if device is not None and backbone.device != torch.device(device):
        backbone.to(device)
    paths = run_cfg["paths"]
    if paths == "clip+clip" and backbone.depth_encoder is not None:
        log.warning("the adapter was trained without a depth encoder; using CLIP for both paths")
    trained_with = run_cfg["backbone"].get("describe")
    if trained_with and trained_with != backbone.describe():
        log.warning("adapter trained with backbone %r, now running with %r: scores may not be meaningful",
                    trained_with, backbone.describe())
    encoder = ViewEncoder(backbone, fcfg.views, fcfg.image_size, fcfg.radius, paths=paths, batch_size=batch_size)
    sd, _ = load_state_dict_file(ad_path)
    if "text_features" not in sd:
        raise CheckpointError(f"{ad_path} holds no GDPA adapter (no text_features); the file is damaged")
    if gcfg.views != encoder.num_views or len(run_cfg["classes"]) != gcfg.num_classes:
        raise CheckpointError(f"{run / RUN_FILES['config']}: {gcfg.views} views and {gcfg.num_classes} classes in 'gdpa' "
                              f"do not fit the run's {encoder.num_views} views and {len(run_cfg['classes'])} classes")
    with torch.device("meta"):  # the config's sizes are checked against the file before anything is allocated
        expected = GatedDualPathAdapter(gcfg, torch.empty(gcfg.num_classes, gcfg.dim)).state_dict()
    wrong = [k for k in expected if k not in sd or tuple(sd[k].shape) != tuple(expected[k].shape)]
    if wrong or set(sd) - set(expected):
        raise CheckpointError(f"{ad_path} does not fit its config.json (keys/shapes differ: "
                              f"{', '.join((wrong or sorted(set(sd) - set(expected)))[:3])}); the run folder is damaged")
    adapter = GatedDualPathAdapter(gcfg, sd["text_features"])
    adapter.load_state_dict(sd)
    return FewShotClassifier(adapter.to(backbone.device), encoder, run_cfg["classes"], run_cfg)
