"""Image-depth pairs for CLIP2Point pre-training: the training dataset and the per-step depth renders.

CLIP2Point pre-trains on (point cloud, RGB render of view v) pairs (Huang et al., ICCV 2023,
§3.2): 10 views per shape, one random view per sample per step, and the frozen CLIP image
encoder on the RGB side. Pairs come from a source (:mod:`clip2point.pretrain.sources`) through
an on-disk cache of points and image features (:mod:`clip2point.pretrain.pair_cache`);
:class:`PairDataset` draws each step's view, points and distance jitter from it, and
:func:`render_pair_views` renders just the chosen views with the depth renderer's per-sample
cameras. The names of the source and cache modules are re-exported here.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DatasetError
from ..render import Cameras, DepthRenderer, RasterSettings, ViewSet, get_view_set
from .pair_cache import (
    PAIRS_FORMAT, BackboneImageEncoder, ImageFeatureEncoder, build_pair_cache, feature_key, load_pair_arrays,
    read_index,
)
from .sources import SHAPENET55_CLASSES, MeshFolderSource, PairItem, PairSource, ShapeNetRenderSource

log = logging.getLogger(__name__)

__all__ = [
    "PAIRS_FORMAT", "PairItem", "PairSource", "MeshFolderSource", "ShapeNetRenderSource",
    "ImageFeatureEncoder", "BackboneImageEncoder", "feature_key", "build_pair_cache", "read_index",
    "PairDataset", "PairBatch", "collate_pairs", "render_pair_views",
    "SHAPENET55_CLASSES",
]


@dataclass
class PairBatch:
    """A training batch.

    Attributes:
        index: (B,) int64 dataset indices.
        points: (B, n, 3) float32 points (a random subset per sample).
        view: (B,) int64 the chosen view of each sample (0..V-1).
        dist_scale: (B, 2) float32 camera-distance factors ``1 + U(−j, j)`` of the two renders.
        image_features: (B, D) float32 CLIP features of the chosen view's RGB render.
    """

    index: torch.Tensor
    points: torch.Tensor
    view: torch.Tensor
    dist_scale: torch.Tensor
    image_features: torch.Tensor

    def to(self, device: torch.device | str) -> PairBatch:
        """The batch on ``device`` (non-blocking copies)."""
        return PairBatch(*(t.to(device, non_blocking=True) for t in
                           (self.index, self.points, self.view, self.dist_scale, self.image_features)))

    def __len__(self) -> int:
        return int(self.index.shape[0])


def collate_pairs(samples: Sequence[dict[str, torch.Tensor]]) -> PairBatch:
    """Stack :meth:`PairDataset.__getitem__` samples into a :class:`PairBatch`."""
    return PairBatch(*(torch.stack([s[k] for s in samples]) for k in
                       ("index", "points", "view", "dist_scale", "image_features")))


class PairDataset(torch.utils.data.Dataset):
    """Cached pairs with CLIP2Point's per-step sampling.

    Item ``i`` draws, from a generator seeded by ``(seed, epoch, i)`` only — so the draw does not
    depend on the number of processes, the batch composition or a resume:

    * one view ``v`` of the V cached views (uniform);
    * ``num_points`` of the stored points (without replacement; the released code keeps 1,024);
    * two camera-distance factors ``1 + U(−dist_jitter, dist_jitter)`` (released: ±0.1).

    Args:
        points: (M, N, 3) float16/32 unit-sphere points.
        image_features: (M, V, D) float16/32 CLIP features.
        names: M item names; ``classes``: M class names.
        num_points, dist_jitter, seed: see above.
    """

    def __init__(self, points: torch.Tensor, image_features: torch.Tensor, names: Sequence[str],
                 classes: Sequence[str] | None = None, num_points: int = 1024, dist_jitter: float = 0.1,
                 seed: int = 0) -> None:
        if points.dim() != 3 or points.shape[-1] != 3 or image_features.dim() != 3 or len(points) != len(image_features):
            raise DatasetError(f"pair arrays do not fit: points {tuple(points.shape)}, image features {tuple(image_features.shape)}")
        if len(points) == 0:
            raise DatasetError("the pair dataset is empty")
        self.points, self.image_features = points, image_features
        self.names = list(names)
        self.classes = list(classes) if classes is not None else [""] * len(self.names)
        if num_points > points.shape[1]:
            log.warning("only %d points are stored per shape; using all of them (not %d)", points.shape[1], num_points)
        self.num_points = min(int(num_points), int(points.shape[1]))
        self.dist_jitter, self.seed, self.epoch = float(dist_jitter), int(seed), 0
        self.feature_key: str | None = None

    @classmethod
    def from_cache(cls, cache_dir: str | os.PathLike, **kwargs) -> PairDataset:
        """Load every shard of a complete cache into memory (float16: ~12 KB points + 10 KB features per shape at N=2048, D=512).

        Raises:
            DatasetError: no complete cache there, or a damaged shard.
            CheckpointError: a shard named by the index lies outside the cache folder, or is unsafe.
        """
        arrays = load_pair_arrays(cache_dir)
        ds = cls(arrays.points, arrays.image_features, arrays.names, arrays.classes, **kwargs)
        ds.feature_key = arrays.feature_key
        return ds

    @property
    def num_views(self) -> int:
        """V, the cached views per shape."""
        return int(self.image_features.shape[1])

    @property
    def feature_dim(self) -> int:
        """D, the CLIP image-feature size."""
        return int(self.image_features.shape[2])

    def set_epoch(self, epoch: int) -> None:
        """Change the per-sample draws (call at the start of each epoch, like the sampler)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        i = int(i)
        rng = np.random.default_rng([self.seed, self.epoch, i])
        view = int(rng.integers(self.num_views))
        n_stored = self.points.shape[1]
        keep = np.sort(rng.choice(n_stored, self.num_points, replace=False)) if self.num_points < n_stored else slice(None)
        scale = 1.0 + self.dist_jitter * rng.uniform(-1.0, 1.0, size=2)
        return {
            "index": torch.tensor(i, dtype=torch.int64),
            "points": self.points[i][torch.as_tensor(keep) if not isinstance(keep, slice) else keep].to(torch.float32),
            "view": torch.tensor(view, dtype=torch.int64),
            "dist_scale": torch.as_tensor(scale, dtype=torch.float32),
            "image_features": self.image_features[i, view].to(torch.float32),
        }


def render_pair_views(
    points: torch.Tensor,
    view: torch.Tensor,
    dist_scale: torch.Tensor,
    views: str | ViewSet = "10",
    raster: RasterSettings = RasterSettings(),
) -> torch.Tensor:
    """Depth-render only each sample's chosen view, once per distance factor.

    Same maths as :class:`clip2point.render.DepthRenderer` (unit-sphere normalisation, y-up
    look-at cameras, points scaled by 1/dist, nearest-point disks, white background; REFERENCE
    §2) but with a per-sample camera, so a batch renders B·K maps instead of B·V·K. With
    ``dist_scale = 1 + (2u − 1)·j`` it equals ``DepthRenderer(ViewSet.custom([e_v], [a_v],
    [d_v]))(points, dist_jitter=j)`` for that u (CLIP2Point §3.2 augmentation: the same view
    rendered twice with independent distance jitter).

    Args:
        points: (B, N, 3) float32 points (any scale; normalised here), on the render device.
        view: (B,) int64 view indices into ``views``.
        dist_scale: (B, K) float32 factors applied to each view's camera distance.
        views: the view set ("10").
        raster: image size and splat radius.

    Returns:
        (B, K, H, W) float32 depth images in [0, 1], background 1.0; apply
        :func:`clip2point.render.clip_normalize` before the encoder.

    Raises:
        Clip2PointError: bad points (see :func:`clip2point.render.as_points_tensor`).
    """
    vs = get_view_set(views)
    cameras = Cameras.from_views(vs, view.device)[view][:, None].scaled(dist_scale)  # (B, K)
    return DepthRenderer(vs, raster)(points, cameras=cameras)
