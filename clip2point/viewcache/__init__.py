"""A persistent cache of view features on disk, shared by eval, few-shot runs, the app and the widgets.

Modules: :mod:`.keys` (what an entry is keyed by), :mod:`.store` (the folder: entries, bounds,
:class:`ViewFeatureCache`); this one: :func:`encode_point_views` (look up, render and encode the misses).

Encoding rendered views with a CLIP visual tower is what costs time; the same shape seen by the
same encoder through the same cameras always gives the same features. :class:`ViewFeatureCache`
keeps them, one small safetensors file per (settings, shape) under a root folder
(:func:`default_cache_dir`: ``$CLIP2POINT_CACHE_DIR``, else ``~/.cache/clip2point/views``), so
re-running an evaluation, another few-shot seed or gate, or re-opening a shape encodes nothing.

What an entry is keyed by (:meth:`ViewFeatureCache.settings_key` + :func:`shape_digest`):

* the encoder: model name; the weights (sha256 of the weights file — computed once per file
  path/size/mtime and remembered in the cache folder —, the open_clip tag, or "random" + the
  fixed seed of :func:`~clip2point.backbone.architecture.random_architecture`); the activation;
  the dtype (precision); the device type; which visual tower ("clip", or "depth" + the depth
  encoder file's sha256);
* the view set (elevations, azimuths, distances), the render settings (image size, radius,
  normalisation) and a digest of a fixed probe cloud rendered with them (a change of the renderer's
  code changes the key: stale features are never served);
* anything the caller adds (``extra``, e.g. the autocast dtype);
* the shape: sha256 of its (N, 3) float32 points.

Entries hold the **raw** visual-tower outputs (V, D) float32, so callers L2-normalise (zero-shot,
GDPA's default) or not (the released adapter's input). Files are written atomically (temporary file
+ rename, :func:`clip2point.checkpoints.write_bytes_atomic`; not fsynced: a cache is rebuilt, not
restored): two processes writing the same entry leave one whole file (the last rename wins) and a
reader never sees a partial one. Reads are checked (one read of the file, parsed as safetensors —
no code run, sizes checked —, then its settings, shape digest and a checksum of the bytes); a
damaged entry is deleted and encoded again, never trusted. The folder is bounded (``max_bytes``):
past the bound the least recently used entries (access time, refreshed on each hit) are deleted.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from ..backbone import ClipBackbone
from ..render import DepthRenderer, clip_normalize
from .keys import CACHE_FORMAT, RANDOM_WEIGHTS_SEED, render_probe, settings_digest, shape_digest, weights_identity
from .store import (
    CACHE_DIR_ENV, DEFAULT_MAX_BYTES, MAX_ENTRY_BYTES, CacheInfo, CacheStats, ViewFeatureCache, cache_info, clear_cache,
    default_cache_dir,
)

__all__ = [
    "CACHE_DIR_ENV", "DEFAULT_MAX_BYTES", "CACHE_FORMAT", "MAX_ENTRY_BYTES", "RANDOM_WEIGHTS_SEED", "default_cache_dir",
    "CacheInfo", "CacheStats", "cache_info", "clear_cache", "shape_digest", "weights_identity", "render_probe",
    "settings_digest", "ViewFeatureCache", "encode_point_views",
]


@dataclass
class _Lookup:
    """Per tower: the settings key (None: not cacheable) and the features found per shape."""

    settings: str | None
    found: list[torch.Tensor | None] = field(default_factory=list)


def encode_point_views(
    backbone: ClipBackbone,
    renderer: DepthRenderer,
    points: torch.Tensor,
    towers: Sequence[str] = ("clip",),
    *,
    batch_size: int = 64,
    cache: ViewFeatureCache | None = None,
    normalize: bool = True,
    depth: torch.Tensor | None = None,
    extra: Mapping | None = None,
) -> tuple[list[torch.Tensor], int]:
    """Render and encode point clouds' views with one or more visual towers, through the cache.

    Every (shape, tower) is looked up first; only the shapes with a miss are rendered (once for
    all towers), and each tower encodes its misses in one batched pass; the new raw features are
    stored. Without a cache this is plain render → ``clip_normalize`` → encode.

    Args:
        backbone: the encoders. renderer: views and render settings.
        points: (B, N, 3) float32 y-up points (the renderer centres and scales them).
        towers: visual towers by name, "clip" and/or "depth" (see :meth:`ClipBackbone.visual`).
        batch_size: images per encoder forward pass.
        cache: a :class:`ViewFeatureCache`, or None.
        normalize: L2-normalise the features (zero-shot, GDPA); False: raw visual-tower outputs.
        depth: (B, V, H, W) depth images of ``points`` already rendered with ``renderer`` (used
            for the misses instead of rendering again).
        extra: settings that change the features besides the key's (see :meth:`ViewFeatureCache.settings_key`).

    Returns:
        (features, encoded): one (B, V, D) float32 tensor per tower on the backbone's device, and
        the number of images that went through an encoder.

    Raises:
        Clip2PointError: invalid points (see ``DepthRenderer``), "depth" without a depth encoder.
    """
    pts = torch.as_tensor(points, dtype=torch.float32)
    n_shapes, n_views = pts.shape[0], len(renderer.views)
    lookups = [_Lookup(None, [None] * n_shapes) for _ in towers]
    shapes: list[str] = []
    if cache is not None:
        shapes = [shape_digest(p) for p in pts]
        for tower, look in zip(towers, lookups):
            look.settings = cache.settings_key(backbone, tower, renderer, extra)
            if look.settings is not None:
                look.found = [cache.get(look.settings, s, n_views) for s in shapes]
    missing = [i for i in range(n_shapes) if any(look.found[i] is None for look in lookups)]
    encoded = 0
    if missing:
        rows = torch.as_tensor(missing)
        if depth is None:
            images = clip_normalize(renderer(pts[rows].to(backbone.device)))
        else:
            images = clip_normalize(depth[rows.to(depth.device)].to(backbone.device))
        for tower, look in zip(towers, lookups):
            need = [j for j, i in enumerate(missing) if look.found[i] is None]
            if not need:
                continue
            raw = backbone.encode_images(images[torch.as_tensor(need, device=images.device)], tower, batch_size,
                                         normalize=False)
            encoded += raw.shape[0] * raw.shape[1]
            for j, f in zip(need, raw):
                look.found[missing[j]] = f
                if cache is not None and look.settings is not None:
                    cache.put(look.settings, shapes[missing[j]], f)
    out = []
    for look in lookups:
        feats = torch.stack([f.to(backbone.device) for f in look.found]) if n_shapes else \
            torch.zeros(0, n_views, backbone.embed_dim, device=backbone.device)
        out.append(torch.nn.functional.normalize(feats, dim=-1) if normalize else feats)
    return out, encoded
