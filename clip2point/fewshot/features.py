"""Frozen-encoder features of a few-shot run: view encoding, encoder-pass accounting, the on-disk feature cache.

:class:`ViewEncoder` renders point clouds and encodes the views with both GDPA paths;
:func:`encode_split` turns a dataset split into :class:`SplitFeatures` (R point re-samples per shape);
:class:`FeatureCache` keeps them in ``features.safetensors`` with the settings that made them;
:class:`RunFeatures` is what a run asks for its features (cached once, or re-encoded every epoch).

Point re-samples (augmentation): re-sample 0 is the shape as loaded; re-sample r ≥ 1 is a seeded
random subset of ``round(resample_keep · N)`` of its points (the released code re-samples each
epoch from the mesh; our h5 data hold exactly 1,024 points, so subsets play that role).
Validation and test shapes are always used as loaded.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..backbone import ClipBackbone
from ..checkpoints import load_state_dict_file, save_state_dict_atomic
from ..datasets import PointCloudDataset, iter_batches
from ..errors import CheckpointError, Clip2PointError
from ..render import DepthRenderer, RasterSettings, ViewSet, get_view_set
from ..viewcache import ViewFeatureCache, encode_point_views
from .config import CACHE_DTYPES, STREAM_ONLINE, STREAM_RESAMPLE, FewShotConfig, seeded_rng

log = logging.getLogger(__name__)

__all__ = [
    "SHAPES_PER_CHUNK", "CPU_IMAGES_PER_CHUNK", "EncoderPasses", "released_recipe_passes", "amp_dtype", "autocast", "ViewEncoder",
    "resample_points", "SplitFeatures", "FeatureCache", "encode_split", "RunFeatures",
]

#: Most shapes rendered and encoded together (16 × 10 views × 224² float32 ≈ 32 MB). A chunk is
#: also cut to one encoder batch (:attr:`ViewEncoder.shapes_per_batch`), so a stop request or a
#: progress report waits for at most one encoder forward pass; on the CPU that pass holds about
#: :data:`CPU_IMAGES_PER_CHUNK` images (~1 s for ViT-B-32 fp32 on 2 cores: the CPU's cost per image
#: does not depend on the batch, a GPU's does, so there chunks fill ``encode_batch_size``).
SHAPES_PER_CHUNK = 16
CPU_IMAGES_PER_CHUNK = 24


@dataclass
class EncoderPasses:
    """Images that went through a frozen image encoder, per split (``count`` adds to them)."""

    counts: dict[str, int] = field(default_factory=dict)

    def count(self, split: str, images: int) -> None:
        """Add ``images`` encoded images to ``split``."""
        self.counts[split] = self.counts.get(split, 0) + int(images)

    @property
    def total(self) -> int:
        """Images counted over all splits."""
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


def amp_dtype() -> torch.dtype:
    """The autocast dtype on CUDA: bfloat16 where supported, else float16 (which needs loss scaling)."""
    return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device) -> AbstractContextManager:
    """Autocast to :func:`amp_dtype` on a CUDA ``device``; a no-op context elsewhere."""
    return torch.autocast("cuda", dtype=amp_dtype()) if device.type == "cuda" else nullcontext()


class ViewEncoder:
    """Render point clouds and encode the views with both GDPA paths, counting encoder passes.

    Path A is the CLIP2Point depth encoder when the backbone has one ("depth+clip"), else CLIP
    ("clip+clip": each view is encoded once and both paths share the features). Path B is CLIP.

    Args:
        backbone: the frozen encoders. views, image_size, radius: rendering settings.
        paths: "depth+clip", "clip+clip", or None (decide from the backbone).
        batch_size: images per encoder forward pass.
        passes: counter to add the encoded images to (only images that really went through an encoder).
        cache: a :class:`~clip2point.viewcache.ViewFeatureCache` shared across runs (a shape seen
            before with the same encoders, views and points is neither rendered nor encoded again), or None.
        normalize: L2-normalise the features (default); False: the raw visual-tower outputs.

    Raises:
        Clip2PointError: unknown ``paths``, or "depth+clip" without a depth encoder loaded.
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
        cache: ViewFeatureCache | None = None,
        normalize: bool = True,
    ) -> None:
        self.backbone = backbone
        self.cache, self.normalize = cache, bool(normalize)
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
    def views(self) -> ViewSet:
        """The rendered view set."""
        return self.renderer.views  # type: ignore[return-value]

    @property
    def num_views(self) -> int:
        """V, the views per shape."""
        return len(self.views)

    @property
    def shapes_per_batch(self) -> int:
        """Shapes whose views fill one encoder batch (at least 1, at most :data:`SHAPES_PER_CHUNK`;
        on the CPU at most :data:`CPU_IMAGES_PER_CHUNK` images): the chunk :func:`encode_split`
        encodes between two stop checks and progress reports (2 shapes of 10 views on the CPU)."""
        per_shape = self.num_views * len(self.encoders)
        images = self.batch_size if self.backbone.device.type != "cpu" else min(self.batch_size, CPU_IMAGES_PER_CHUNK)
        return max(1, min(SHAPES_PER_CHUNK, images // per_shape))

    @property
    def encoders(self) -> tuple[str, ...]:
        """The backbone encoders run per view: ("clip",) or ("depth", "clip")."""
        return ("clip",) if self.shared else ("depth", "clip")

    def encode(self, points: torch.Tensor, split: str = "") -> tuple[torch.Tensor, torch.Tensor]:
        """(b, N, 3) y-up points → (f_A, f_B), each (b, V, D) float32 on the backbone's device,
        L2-normalised unless ``normalize=False``.

        With shared paths f_B is f_A (the same tensor). Shapes found in the cache are neither
        rendered nor encoded. Raises Clip2PointError for invalid points.
        """
        device = self.backbone.device
        extra = {"autocast": str(amp_dtype())} if device.type == "cuda" else None
        with autocast(device):
            feats, encoded = encode_point_views(self.backbone, self.renderer, points, self.encoders,
                                                batch_size=self.batch_size, cache=self.cache,
                                                normalize=self.normalize, extra=extra)
        self.passes.count(split, encoded)
        feats = [f.float().clone() for f in feats]
        return (feats[0], feats[0]) if self.shared else (feats[0], feats[1])


def resample_points(points: torch.Tensor, ids: Sequence[int], keep: float, seed: int, *stream: int) -> torch.Tensor:
    """Seeded random subsets of ``round(keep · N)`` points per shape: (b, N, 3) → (b, M, 3), original order.

    Shape ``j`` keeps the points drawn by a generator seeded with ``(seed, *stream, ids[j])``; with
    ``keep`` ≥ 1 the points are returned unchanged.
    """
    n = points.shape[1]
    m = max(2, min(n, int(round(keep * n))))
    if m >= n:
        return points
    idx = np.stack([np.sort(seeded_rng(seed, *stream, int(i)).choice(n, m, replace=False)) for i in ids])
    return points[torch.arange(len(ids))[:, None], torch.from_numpy(idx)]


def _shape_chunks(dataset: PointCloudDataset, indices: np.ndarray,
                  per_chunk: int = SHAPES_PER_CHUNK) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(dataset indices (b,), points (b, N, 3)) of ``dataset[indices]``, ``per_chunk`` shapes at a time."""
    sub = dataset.subset(indices)
    for start, (pts, _labels) in zip(range(0, len(sub), per_chunk), iter_batches(sub, per_chunk)):
        yield indices[start : start + len(pts)], pts


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
        """R, the re-samples per shape."""
        return int(self.a.shape[1])

    def pick(self, choice: torch.Tensor | None = None, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(f_A, f_B), each (S, V, D) float32 on ``device``: re-sample ``choice[s]`` of shape s (default 0)."""
        rows = torch.arange(len(self))
        choice = torch.zeros(len(self), dtype=torch.int64) if choice is None else choice
        fa = self.a[rows, choice].to(device=device, dtype=torch.float32)
        fb = fa if self.b is None else self.b[rows, choice].to(device=device, dtype=torch.float32)
        return fa, fb

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors under ``prefix.a``, ``prefix.b`` (if any), ``prefix.labels``, ``prefix.indices``."""
        out = {f"{prefix}.a": self.a, f"{prefix}.labels": self.labels, f"{prefix}.indices": self.indices}
        if self.b is not None:
            out[f"{prefix}.b"] = self.b
        return out

    @classmethod
    def from_tensors(cls, sd: dict[str, torch.Tensor], prefix: str) -> SplitFeatures | None:
        """The split stored under ``prefix`` by :meth:`tensors`, or None when ``sd`` has none."""
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
        """Write the cache atomically (format ``clip2point-features/1``); returns the path."""
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
    stream: Sequence[int] = (STREAM_RESAMPLE,),
    dtype: torch.dtype = torch.float32,
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SplitFeatures | None:
    """Render and encode the shapes ``dataset[indices]`` (R re-samples each) into :class:`SplitFeatures`.

    Re-sample 0 is the shape as loaded, re-sample r ≥ 1 a seeded subset (see :func:`resample_points`,
    seeded by ``(seed, *stream, r, dataset index)``). ``progress`` gets the number of shapes done
    after each chunk (one encoder batch of shapes, :attr:`ViewEncoder.shapes_per_batch`);
    ``should_stop`` is checked between chunks (None is returned when it fires).
    """
    a_parts, b_parts = [], []
    for ids, pts in _shape_chunks(dataset, indices, encoder.shapes_per_batch):
        if should_stop is not None and should_stop():
            return None
        fa_r, fb_r = [], []
        for r in range(resamples):
            p = pts if r == 0 else resample_points(pts, ids, resample_keep, seed, *stream, r)
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
        torch.as_tensor(dataset.labels[np.asarray(indices, dtype=np.int64)], dtype=torch.int64),
        torch.as_tensor(np.asarray(indices), dtype=torch.int64),
    )


class RunFeatures:
    """The features a few-shot run trains, validates and tests on.

    ``mode="cached"`` (:meth:`cached`): each split is encoded once and kept in the run's
    :class:`FeatureCache`; ``mode="online"`` (:meth:`online`): the training shapes (a fresh seeded
    re-sample each epoch) and the validation shapes are rendered and encoded again every epoch,
    like the released script.

    Args:
        encoder: renders and encodes; its ``passes`` count this session's encoder images.
        config: the run's settings (re-samples, seed, cache dtype).
        cache: the feature cache (loaded from, or new for) ``cache_path``.
        report: called with (split, shapes done, shapes total) while encoding.
        should_stop: checked between chunks of shapes.

    Attributes:
        online_passes: online mode's train/val encoder images, over all sessions of the run.
        seconds: time spent encoding in this session.
    """

    def __init__(self, encoder: ViewEncoder, config: FewShotConfig, cache: FeatureCache, cache_path: Path,
                 report: Callable[[str, int, int], None], should_stop: Callable[[], bool]) -> None:
        self.encoder, self.config = encoder, config
        self.cache, self.cache_path = cache, cache_path
        self.report, self.stop = report, should_stop
        self.online_passes: dict[str, int] = {}
        self.seconds = 0.0

    def encode(self, split: str, dataset: PointCloudDataset, indices: np.ndarray, resamples: int = 1) -> SplitFeatures | None:
        """Encode ``dataset[indices]`` now (see :func:`encode_split`); None when stopped."""
        t, done = time.perf_counter(), 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            self.report(split, done, len(indices))

        self.report(split, 0, len(indices))
        cfg = self.config
        feats = encode_split(self.encoder, dataset, indices, split, resamples, cfg.resample_keep, cfg.seed,
                             (STREAM_RESAMPLE,), CACHE_DTYPES[cfg.cache_dtype], progress, self.stop)
        self.seconds += time.perf_counter() - t
        return feats

    def cached(self, split: str, dataset: PointCloudDataset, indices: np.ndarray, resamples: int = 1) -> SplitFeatures | None:
        """Features of a split from the cache, or encoded now and added to the cache file; None when stopped."""
        if split in self.cache.splits:
            return self.cache.splits[split]
        before = self.encoder.passes.counts.get(split, 0)
        feats = self.encode(split, dataset, indices, resamples)
        if feats is None:
            return None
        self.cache.splits[split] = feats
        self.cache.passes[split] = self.encoder.passes.counts.get(split, 0) - before
        self.cache.save(self.cache_path)
        return feats

    def online(self, epoch: int, dataset: PointCloudDataset, shots: np.ndarray,
               val: np.ndarray) -> tuple[SplitFeatures, SplitFeatures] | None:
        """Re-render and re-encode the training shots (re-sample of ``(seed, epoch)``) and validation
        shapes of ``dataset`` for one epoch: (train, val) features on the encoder's device; None when stopped."""
        keep = self.config.resample_keep if self.config.resamples > 1 else 1.0
        t, before = time.perf_counter(), dict(self.encoder.passes.counts)
        parts = []
        for ids, pts in _shape_chunks(dataset, shots, self.encoder.shapes_per_batch):
            if self.stop():
                return None
            parts.append(self.encoder.encode(resample_points(pts, ids, keep, self.config.seed, STREAM_ONLINE, epoch),
                                             "train"))
        self.seconds += time.perf_counter() - t
        fa = torch.cat([p[0] for p in parts])[:, None]
        fb = None if self.encoder.shared else torch.cat([p[1] for p in parts])[:, None]
        train = SplitFeatures(fa, fb, torch.as_tensor(dataset.labels[shots]), torch.as_tensor(shots))
        val_feats = self.encode("val", dataset, val)
        for k, n in self.encoder.passes.since(before).items():
            self.online_passes[k] = self.online_passes.get(k, 0) + n
        return None if val_feats is None else (train, val_feats)
