"""The on-disk pair cache of CLIP2Point pre-training: every shape rendered and encoded once.

The CLIP image encoder is frozen during pre-training (Huang et al., ICCV 2023, §3.2), so its
features of each RGB view never change: :func:`build_pair_cache` renders (or reads) and encodes
every shape of a :class:`~clip2point.pretrain.sources.PairSource` once, and training reads points
and image features from the cache (no mesh rendering, no PNG decoding, no image encoder in the
training loop).

Cache layout (``CACHE_DIR``, by default ``RUN_DIR/pairs``)::

    index.json                    format, source settings, feature key, shards, complete flag
    shard_00000.safetensors       points (M, N, 3) float16, unit sphere, y-up
                                  image_features (M, V, D) float16, L2-normalised CLIP features
                                  images (M, V, H, W, 3) uint8   (only with keep_images)
                                  metadata: names, classes, items (JSON lists), feature_key

Shards and the index are written atomically (temporary file + rename), the index after each
shard, so an interrupted build resumes at the first missing shard. Image features are keyed by
the image encoder (model name + weights description): a different backbone re-encodes them
(from the stored images when ``keep_images`` was used, else by rendering again).
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from ..checkpoints import load_state_dict_file, read_json, resolve_inside, save_state_dict_atomic, write_json_atomic
from ..errors import Clip2PointError, DatasetError
from ..render import rgb_clip_input
from .sources import PairItem, PairSource

log = logging.getLogger(__name__)

__all__ = [
    "PAIRS_FORMAT", "INDEX_NAME", "DEFAULT_SHARD_SIZE", "ImageFeatureEncoder", "BackboneImageEncoder", "feature_key",
    "build_pair_cache", "read_index", "shard_path", "PairArrays", "load_pair_arrays",
]

#: Format tag of ``index.json`` and of every shard's metadata.
PAIRS_FORMAT = "clip2point-pairs/1"
INDEX_NAME = "index.json"
#: Shapes per shard file.
DEFAULT_SHARD_SIZE = 128


class ImageFeatureEncoder(Protocol):
    """Encodes (K, H, W, 3) uint8 RGB images into (K, D) float32 features; ``key`` names it."""

    key: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


def feature_key(backbone) -> str:
    """Identity of a backbone's image features: ``"<model>|<weights kind>:<location>[:<bytes>]"``."""
    w = backbone.weights
    key = f"{backbone.model_name}|{w.kind}:{w.location}"
    if w.kind == "file" and os.path.isfile(w.location):
        key += f":{os.path.getsize(w.location)}"
    return key


class BackboneImageEncoder:
    """The frozen CLIP image encoder of a :class:`~clip2point.backbone.ClipBackbone`.

    Args:
        backbone: the CLIP backbone (its ``model.visual``; on any device).
        batch_size: images per forward pass.
    """

    def __init__(self, backbone, batch_size: int = 64) -> None:
        self.backbone = backbone
        self.batch_size = batch_size
        self.key = feature_key(backbone)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(K, H, W, 3) uint8 → (K, D) float32 L2-normalised features on the CPU.

        Raises:
            DatasetError: the images are not the model's input size.
        """
        size = self.backbone.image_size
        if tuple(images.shape[1:3]) != (size, size):
            raise DatasetError(f"{self.backbone.model_name} encodes {size}×{size} images, got "
                               f"{images.shape[1]}×{images.shape[2]}; render the views at image_size={size}")
        x = rgb_clip_input(images.to(torch.float32) / 255.0)
        return self.backbone.encode_images(x, "clip", self.batch_size).cpu()



def _index_problem(index: Any) -> str | None:
    """What is wrong with a parsed ``index.json`` (None when its structure is sound)."""
    if not isinstance(index, dict):
        return "not a JSON object"
    if index.get("format") != PAIRS_FORMAT:
        return f"format {index.get('format')!r}, expected {PAIRS_FORMAT}"
    if not isinstance(index.get("shards"), list) or not isinstance(index.get("feature_key", ""), str):
        return "'shards' is not a list"
    for k, e in enumerate(index["shards"]):
        ok = (isinstance(e, dict) and (e.get("file") is None or isinstance(e.get("file"), str))
              and isinstance(e.get("items"), list) and isinstance(e.get("feature_key", ""), str)
              and isinstance(e.get("count", 0), int))
        if not ok:
            return f"shard entry {k} is malformed"
    return None


def read_index(cache_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The cache's ``index.json`` (None when absent), its structure checked.

    Shard file names in it are only ever opened through :func:`clip2point.weights.resolve_inside`
    (they must lie in the cache folder).

    Raises:
        DatasetError: the file exists but cannot be read or is not a pair-cache index.
    """
    path = Path(cache_dir) / INDEX_NAME
    if not path.is_file():
        return None
    index = read_json(path, "pair-cache index", "delete the folder to rebuild it", DatasetError)
    problem = _index_problem(index)
    if problem:
        raise DatasetError(f"{path}: not a clip2point pair cache ({problem}); delete the folder to rebuild it")
    return index


def shard_path(cache_dir: str | os.PathLike, entry: dict[str, Any]) -> Path:
    """The shard file of an index entry, inside the cache folder.

    Raises:
        CheckpointError: the name leads outside the cache folder.
    """
    return resolve_inside(cache_dir, entry["file"], "pair-cache shard")


def _encode_item_images(encoder: ImageFeatureEncoder, images: np.ndarray) -> torch.Tensor:
    """(M, V, H, W, 3) uint8 → (M, V, D) float16."""
    M, V = images.shape[:2]
    feats = encoder(torch.from_numpy(images.reshape(M * V, *images.shape[2:])))
    return feats.reshape(M, V, -1).to(torch.float16)


def _write_shard(path: Path, items: list[str], stored: list[PairItem], feats: torch.Tensor, key: str,
                 keep_images: bool) -> dict[str, Any]:
    tensors = {
        "points": torch.from_numpy(np.stack([s.points for s in stored])).to(torch.float16),
        "image_features": feats,
    }
    if keep_images:
        tensors["images"] = torch.from_numpy(np.stack([s.images for s in stored]))
    names = [s.name for s in stored]
    meta = {"format": PAIRS_FORMAT, "names": json.dumps(names), "classes": json.dumps([s.label for s in stored]),
            "items": json.dumps(items), "feature_key": key}
    save_state_dict_atomic(tensors, path, meta)
    return {"file": path.name, "items": items, "names": names, "count": len(stored), "feature_key": key,
            "has_images": keep_images, "feature_dim": int(feats.shape[-1]), "num_views": int(feats.shape[1])}


def _reencode_shard(cache_dir: Path, entry: dict[str, Any], encoder: ImageFeatureEncoder) -> dict[str, Any]:
    """Replace a shard's image features from its stored images (no rendering)."""
    path = shard_path(cache_dir, entry)
    tensors, meta = load_state_dict_file(path)
    tensors["image_features"] = _encode_item_images(encoder, tensors["images"].numpy())
    meta["feature_key"] = encoder.key
    save_state_dict_atomic(tensors, path, meta)
    return {**entry, "feature_key": encoder.key, "feature_dim": int(tensors["image_features"].shape[-1])}


def _usable_prefix(cache_dir: Path, index: dict | None, expected: list[list[str]] | None,
                   encoder: ImageFeatureEncoder | None) -> tuple[list[dict], int]:
    """Shards of ``index`` that can be kept (re-encoded where needed), and how many were re-encoded."""
    kept: list[dict] = []
    reencoded = 0
    for k, entry in enumerate((index or {}).get("shards", [])):
        if expected is not None and (k >= len(expected) or entry["items"] != expected[k]):
            break
        if entry["file"] is not None and not shard_path(cache_dir, entry).is_file():
            break
        if encoder is not None and entry["file"] is not None and entry["feature_key"] != encoder.key:
            if not entry.get("has_images"):
                break
            entry = _reencode_shard(cache_dir, entry, encoder)
            reencoded += 1
        kept.append(entry)
    return kept, reencoded


def build_pair_cache(
    cache_dir: str | os.PathLike,
    source: PairSource | None,
    encoder: ImageFeatureEncoder | None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    keep_images: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Build (or resume, or re-key) the cached pair dataset; return its index.

    Items are processed in shards of ``shard_size``; each finished shard is written atomically
    and recorded in ``index.json`` before the next starts. On a new call the longest prefix of
    recorded shards whose item lists still match the source is kept; shards whose features came
    from another encoder are re-encoded from their stored images (``keep_images``) or rebuilt.

    Args:
        cache_dir: the cache folder (created).
        source: where pairs come from; None = use the cache as it is (it must be complete;
            features of another encoder can then only be recomputed from stored images).
        encoder: the frozen CLIP image encoder (None: only check that a complete cache exists).
        shard_size: items per shard.
        keep_images: also store the uint8 RGB views (inspection; re-encoding without rendering).
        progress: show a tqdm bar.

    Returns:
        The index dict (``complete`` is True).

    Raises:
        DatasetError: no source and no usable complete cache; every item failed to load.
    """
    cache_dir = Path(cache_dir)
    index = read_index(cache_dir)
    if source is None:
        if index is None or not index.get("complete"):
            raise DatasetError(f"{cache_dir}: no complete pair cache; pass --meshes DIR or --shapenet-dir DIR to build it")
        kept, reencoded = _usable_prefix(cache_dir, index, None, encoder)
        if len(kept) != len(index["shards"]):
            raise DatasetError(
                f"{cache_dir}: image features were computed with {index['shards'][len(kept)]['feature_key']}, not "
                f"{encoder.key if encoder else '?'}, and no images are stored to re-encode them; pass the source "
                "(--meshes/--shapenet-dir) to rebuild, or use the --model/--weights it was built with"
            )
        if reencoded:
            index["shards"] = kept
            index["feature_key"] = encoder.key if encoder else index["feature_key"]
            write_json_atomic(cache_dir / INDEX_NAME, index)
        return index

    settings = source.settings()
    names = source.item_names()
    if index is not None and (index.get("source") != settings or index.get("shard_size") != shard_size
                              or index.get("keep_images") != keep_images):
        log.warning("pair cache %s was built with other settings; rebuilding it", cache_dir)
        index = None
    chunks = [names[i : i + shard_size] for i in range(0, len(names), shard_size)]
    kept, reencoded = _usable_prefix(cache_dir, index, chunks, encoder)
    if encoder is None and len(kept) < len(chunks):
        raise DatasetError(f"{cache_dir}: the pair cache is incomplete and no image encoder was given to finish it")
    key = encoder.key if encoder is not None else (index or {}).get("feature_key", "")
    _remove_stale_shards(cache_dir, kept)
    index = {"format": PAIRS_FORMAT, "source": settings, "source_root": str(getattr(source, "root", "")),
             "shard_size": shard_size, "keep_images": keep_images, "feature_key": key,
             "num_items": len(names), "shards": kept, "complete": len(kept) == len(chunks)}
    if reencoded:
        log.info("re-encoded %d shard(s) from stored images for %s", reencoded, key)
    if index["complete"]:
        write_json_atomic(cache_dir / INDEX_NAME, index)
        log.info("pair cache %s is complete (%d items in %d shards)", cache_dir, len(names), len(kept))
        return index
    write_json_atomic(cache_dir / INDEX_NAME, index)
    done = sum(len(c) for c in chunks[: len(kept)])
    if done:
        log.info("resuming the pair cache at shard %d (%d of %d items done)", len(kept), done, len(names))
    from tqdm.auto import tqdm

    start = time.perf_counter()
    with tqdm(total=len(names), initial=done, desc="render+encode pairs", unit="shape", disable=not progress) as bar:
        for k in range(len(kept), len(chunks)):
            index["shards"].append(_build_shard(cache_dir, k, k * shard_size, chunks[k], source, encoder, keep_images, bar.update))
            index["complete"] = k == len(chunks) - 1
            write_json_atomic(cache_dir / INDEX_NAME, index)
    stored = sum(e["count"] for e in index["shards"])
    if stored == 0:
        raise DatasetError(f"none of the {len(names)} shapes could be loaded (see the warnings above)")
    log.info("pair cache %s: %d pairs in %.1f s", cache_dir, stored, time.perf_counter() - start)
    return index


def _remove_stale_shards(cache_dir: Path, kept: list[dict]) -> None:
    keep = {e["file"] for e in kept}
    for p in cache_dir.glob("shard_*.safetensors"):
        if p.name not in keep:
            p.unlink()


def _build_shard(cache_dir: Path, k: int, offset: int, items: list[str], source: PairSource,
                 encoder: ImageFeatureEncoder, keep_images: bool, update: Callable[[int], Any]) -> dict[str, Any]:
    """Load items ``offset …`` of ``source``, encode their views, write shard ``k``; its index entry."""
    stored: list[PairItem] = []
    for j, name in enumerate(items):
        try:
            stored.append(source.load(offset + j))
        except Clip2PointError as e:
            log.warning("skipping %s: %s", name, e)
        update(1)
    if not stored:
        return {"file": None, "items": items, "names": [], "count": 0, "feature_key": encoder.key, "has_images": keep_images}
    feats = _encode_item_images(encoder, np.stack([s.images for s in stored]))
    return _write_shard(cache_dir / f"shard_{k:05d}.safetensors", items, stored, feats, encoder.key, keep_images)


class PairArrays(NamedTuple):
    """Every shape of a complete pair cache, in memory (see :func:`load_pair_arrays`)."""

    points: torch.Tensor  # (M, N, 3) float16
    image_features: torch.Tensor  # (M, V, D) float16
    names: list[str]
    classes: list[str]
    feature_key: str


def load_pair_arrays(cache_dir: str | os.PathLike) -> PairArrays:
    """Load every shard of a complete cache into memory (float16: ~12 KB points + 10 KB features per shape at N=2048, D=512).

    Raises:
        DatasetError: no complete cache there, or a damaged shard.
        CheckpointError: a shard named by the index lies outside the cache folder, or is unsafe.
    """
    index = read_index(cache_dir)
    if index is None or not index.get("complete"):
        raise DatasetError(f"{cache_dir}: no complete pair cache; build it first (clip2point pretrain --meshes DIR ...)")
    pts, feats, names, classes = [], [], [], []
    for entry in index["shards"]:
        if entry["file"] is None:
            continue
        path = shard_path(cache_dir, entry)
        tensors, meta = load_state_dict_file(path)
        try:
            shard_names = json.loads(meta["names"])
            shard_classes = json.loads(meta.get("classes", "[]")) or [""] * len(tensors["points"])
            p, f = tensors["points"], tensors["image_features"]
        except (KeyError, ValueError) as e:
            raise DatasetError(f"{path}: not a pair-cache shard ({type(e).__name__}: {e}); delete the cache folder to "
                               "rebuild it") from None
        if not (isinstance(shard_names, list) and isinstance(shard_classes, list)
                and len(shard_names) == len(shard_classes) == len(p) == len(f)):
            raise DatasetError(f"{path}: the shard's names, classes, points and features disagree in number; delete "
                               "the cache folder to rebuild it")
        pts.append(p)
        feats.append(f)
        names += shard_names
        classes += shard_classes
    if not pts:
        raise DatasetError(f"{cache_dir}: the pair cache holds no shapes")
    return PairArrays(torch.cat(pts), torch.cat(feats), names, classes, index["feature_key"])
