"""Image-depth pairs for CLIP2Point pre-training: sources, an on-disk cache, the training dataset.

CLIP2Point pre-trains on (point cloud, RGB render of view v) pairs (Huang et al., ICCV 2023,
§3.2): 10 views per shape, one random view per sample per step, and the frozen CLIP image
encoder on the RGB side. Because that encoder is frozen, its features never change: we render
and encode every shape **once** into a cached pair dataset, and training reads points and image
features from it (no mesh rendering, no PNG decoding, no image encoder in the training loop).

Sources
    * :class:`MeshFolderSource` — any folder of meshes the core reads
      (:data:`clip2point.io.SUPPORTED_MESH_EXTENSIONS`), searched recursively; the class of a
      mesh is its first sub-folder under the root (``""`` at the root). Per mesh: ``num_points``
      uniform surface samples and the 10 RGB views of :func:`clip2point.render.render_mesh_views`
      (the released setting: perspective camera at 2·dist, white background, a random
      directional light seeded per mesh).
    * :class:`ShapeNetRenderSource` — the authors' ShapeNet-55 layout (see its docstring).

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
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..errors import Clip2PointError, DatasetError
from ..io import SUPPORTED_MESH_EXTENSIONS, load_mesh, normalize_unit_sphere, sample_surface
from ..render import Cameras, DepthRenderer, RasterSettings, ViewSet, get_view_set, render_mesh_views, rgb_clip_input
from ..weights import load_state_dict_file, read_json, resolve_inside, save_state_dict_atomic, write_json_atomic

log = logging.getLogger(__name__)

__all__ = [
    "PAIRS_FORMAT", "PairItem", "PairSource", "MeshFolderSource", "ShapeNetRenderSource",
    "ImageFeatureEncoder", "BackboneImageEncoder", "feature_key", "build_pair_cache", "read_index",
    "PairDataset", "PairBatch", "collate_pairs", "render_pair_views",
    "SHAPENET55_CLASSES",
]

PAIRS_FORMAT = "clip2point-pairs/1"
INDEX_NAME = "index.json"
DEFAULT_STORED_POINTS = 2048
DEFAULT_SHARD_SIZE = 128

#: ShapeNet-55 synset → prompt word, in the released code's label order (``cat_labels`` of
#: ``datasets/shapenet.py`` paired with ``val_prompts`` of ``pretraining.py``).
SHAPENET55_CLASSES: dict[str, str] = dict(zip(
    "02691156 02747177 02773838 02801938 02808440 02818832 02828884 02843684 02871439 02876657 02880940 "
    "02924116 02933112 02942699 02946921 02954340 02958343 02992529 03001627 03046257 03085013 03207941 "
    "03211117 03261776 03325088 03337140 03467517 03513137 03593526 03624134 03636649 03642806 03691459 "
    "03710193 03759954 03761084 03790512 03797390 03928116 03938244 03948459 03991062 04004475 04074963 "
    "04090263 04099429 04225987 04256520 04330267 04379243 04401088 04460130 04468005 04530566 04554684".split(),
    ["airplane", "ashcan", "bag", "basket", "bathtub", "bed", "bench", "birdhouse", "bookshelf", "bottle", "bowl",
     "bus", "cabinet", "camera", "can", "cap", "car", "cellular telephone", "chair", "clock", "computer keyboard",
     "dishwasher", "display", "earphone", "faucet", "file", "guitar", "helmet", "jar", "knife", "lamp", "laptop",
     "loudspeaker", "mailbox", "microphone", "microwave", "motorcycle", "mug", "piano", "pillow", "pistol", "pot",
     "printer", "remote control", "rifle", "rocket", "skateboard", "sofa", "stove", "table", "telephone", "tower",
     "train", "vessel", "washer"],
    strict=True,
))


# --------------------------------------------------------------------------------------------
# sources


@dataclass
class PairItem:
    """One shape of a pair source.

    Attributes:
        name: unique item name (relative mesh path, or ``<synset>_<model id>``).
        label: class name ("" when unknown).
        points: (N, 3) float32, centred at the centroid, farthest point at norm 1, y-up.
        images: (V, H, W, 3) uint8 RGB views, view k from camera k of the 10-view set.
    """

    name: str
    label: str
    points: np.ndarray
    images: np.ndarray


class PairSource(Protocol):
    """Where pairs come from. ``settings()`` must change whenever item content would change."""

    def settings(self) -> dict[str, Any]: ...
    def item_names(self) -> list[str]: ...
    def load(self, i: int) -> PairItem: ...


def _unit_sphere(points: np.ndarray) -> np.ndarray:
    """(N, 3) float32 points centred with the farthest at norm 1 (DatasetError when all coincide)."""
    return normalize_unit_sphere(points, error=DatasetError, what="the shape")


def _item_seed(seed: int, name: str, salt: int = 0) -> int:
    """A stable per-item seed (independent of item order and of Python's hash randomisation)."""
    return (zlib.crc32(f"{seed}:{salt}:{name}".encode()) & 0x7FFFFFFF)


def _to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    a = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)


class MeshFolderSource:
    """Meshes in a folder (recursive): surface samples + the 10 shaded RGB views of each.

    Args:
        root: folder searched recursively for :data:`clip2point.io.SUPPORTED_MESH_EXTENSIONS`
            files (a ``.ply`` without faces fails at load time and is skipped with a warning).
        up: the files' up axis, "y" or "z" (ModelNet OFF meshes are z-up).
        num_points: surface samples stored per mesh (uniform by area, seeded per mesh).
        image_size: RGB view size in pixels (224 for ViT-B/32).
        views: the view set of the RGB renders ("10", CLIP2Point's pre-training set).
        seed: base seed of the per-mesh point sampling and random light.

    Raises:
        DatasetError: the folder does not exist or holds no mesh file.
    """

    kind = "meshes"

    def __init__(self, root: str | os.PathLike, up: str = "y", num_points: int = DEFAULT_STORED_POINTS,
                 image_size: int = 224, views: str | ViewSet = "10", seed: int = 0) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DatasetError(f"mesh folder {self.root} does not exist; pass a folder of .off/.obj/.stl/.ply/.glb meshes")
        self.up, self.num_points, self.image_size, self.seed = up, int(num_points), int(image_size), int(seed)
        self.views = get_view_set(views)
        self.paths = sorted(
            (p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_MESH_EXTENSIONS),
            key=lambda p: p.relative_to(self.root).as_posix(),
        )
        if not self.paths:
            raise DatasetError(f"no mesh files ({' '.join(SUPPORTED_MESH_EXTENSIONS)}) found under {self.root}")
        self._names = [p.relative_to(self.root).as_posix() for p in self.paths]

    def settings(self) -> dict[str, Any]:
        return {"kind": self.kind, "up": self.up, "num_points": self.num_points, "image_size": self.image_size,
                "views": [list(self.views.elev), list(self.views.azim), list(self.views.dist)], "seed": self.seed,
                "renderer": "render_mesh_views/perspective"}

    def item_names(self) -> list[str]:
        return list(self._names)

    def label(self, i: int) -> str:
        parts = Path(self._names[i]).parts
        return parts[0] if len(parts) > 1 else ""

    def load(self, i: int) -> PairItem:
        """Sample and render mesh ``i``.

        Raises:
            Clip2PointError: unreadable mesh, no faces, zero area (the builder skips it).
        """
        name = self._names[i]
        mesh = load_mesh(self.paths[i], up=self.up)
        points = sample_surface(mesh.vertices, mesh.faces, self.num_points, seed=_item_seed(self.seed, name, 1))
        images = render_mesh_views(mesh, self.views, self.image_size, seed=_item_seed(self.seed, name, 2))
        return PairItem(name, self.label(i), _unit_sphere(points), _to_uint8(images))


class ShapeNetRenderSource:
    """The authors' ShapeNet-55 pre-training data: point clouds plus 10 PNG renders per model.

    Expected layout under ``root`` (the released code's ``data/`` folder; each path may also sit
    under ``root/ShapeNet55/``)::

        shapenet_pc/<synset>-<model id>.npy       (8192, 3) float points (Point-BERT's ShapeNet-55)
        ShapeNet-55/train.txt, test.txt           optional lists of "<synset>-<model id>.npy"
        rendering/<synset>_<model id>/<k>.png     RGB render of view k = 0..9 (10-view set)

    Models without all 10 PNGs are
    skipped (counted in the log). Images of another size are resized (shorter side, bicubic) and
    centre-cropped to ``image_size``, like CLIP's preprocessing; RGBA is composited on white.

    Args:
        root: the data folder.
        split: "train" (released pre-training), "test" (the models of that list file), or "all"
            (every ``.npy`` in ``shapenet_pc``). Without a ``ShapeNet-55`` folder every ``.npy`` is used.
        num_points: points kept per model (a seeded random subset; all when fewer).
        image_size: views are resized to this size.
        num_views: PNGs per model (10).
        seed: seed of the point subsets.

    Raises:
        DatasetError: no point-cloud folder, no render folder, or no complete model.
    """

    kind = "shapenet55"

    def __init__(self, root: str | os.PathLike, split: str = "train", num_points: int = DEFAULT_STORED_POINTS,
                 image_size: int = 224, num_views: int = 10, seed: int = 0) -> None:
        self.root = Path(root).expanduser()
        if split not in ("train", "test", "all"):
            raise DatasetError(f"ShapeNet split must be train, test or all, got {split!r}")
        self.split, self.num_points, self.image_size = split, int(num_points), int(image_size)
        self.num_views, self.seed = int(num_views), int(seed)
        self.pc_dir = self._first_dir("shapenet_pc")
        self.render_dir = self._first_dir("rendering")
        files = self._listed_files()
        self._names: list[str] = []
        self._pc: list[Path] = []
        missing = 0
        for fname in files:
            stem = Path(fname).stem
            if "-" not in stem:
                continue
            synset, model = stem.split("-", 1)
            name = f"{synset}_{model}"
            pc = self.pc_dir / fname
            if pc.is_file() and all((self.render_dir / name / f"{k}.png").is_file() for k in range(self.num_views)):
                self._names.append(name)
                self._pc.append(pc)
            else:
                missing += 1
        if missing:
            log.warning("ShapeNet: skipped %d of %d models without a point cloud or all %d renders", missing, len(files), self.num_views)
        if not self._names:
            raise DatasetError(
                f"no complete ShapeNet model under {self.root}: expected shapenet_pc/<synset>-<id>.npy and "
                f"rendering/<synset>_<id>/0..{self.num_views - 1}.png (see `clip2point pretrain --help`)"
            )

    def _first_dir(self, name: str) -> Path:
        for cand in (self.root / name, self.root / "ShapeNet55" / name):
            if cand.is_dir():
                return cand
        raise DatasetError(
            f"{self.root}: no '{name}' folder (looked in {self.root}/{name} and {self.root}/ShapeNet55/{name}); "
            "the expected layout is shapenet_pc/<synset>-<id>.npy + rendering/<synset>_<id>/<k>.png"
        )

    def _listed_files(self) -> list[str]:
        """``.npy`` names of the split's list; every ``.npy`` for "all" or when there is no list folder."""
        everything = sorted(p.name for p in self.pc_dir.glob("*.npy"))
        if self.split == "all":
            return everything
        lists = [d / "ShapeNet-55" / f"{self.split}.txt" for d in (self.root, self.root / "ShapeNet55")]
        lines = [ln.strip() for f in lists if f.is_file() for ln in f.read_text().splitlines() if ln.strip()]
        if lines:
            return sorted(dict.fromkeys(lines))
        if any(f.parent.is_dir() for f in lists):
            raise DatasetError(f"{self.root}: ShapeNet-55/{self.split}.txt not found; pass the split that exists, or 'all'")
        return everything

    def settings(self) -> dict[str, Any]:
        return {"kind": self.kind, "split": self.split, "num_points": self.num_points, "image_size": self.image_size,
                "num_views": self.num_views, "seed": self.seed}

    def item_names(self) -> list[str]:
        return list(self._names)

    def label(self, i: int) -> str:
        synset = self._names[i].split("_", 1)[0]
        return SHAPENET55_CLASSES.get(synset, synset)

    def _read_png(self, path: Path) -> np.ndarray:
        from PIL import Image

        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                white = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(white, im)
            im = im.convert("RGB")
            S = self.image_size
            if im.size != (S, S):
                w, h = im.size
                scale = S / min(w, h)
                im = im.resize((max(S, round(w * scale)), max(S, round(h * scale))), Image.BICUBIC)
                w, h = im.size
                left, top = (w - S) // 2, (h - S) // 2
                im = im.crop((left, top, left + S, top + S))
            return np.asarray(im, dtype=np.uint8)

    def load(self, i: int) -> PairItem:
        """Read model ``i``'s points and PNGs.

        Raises:
            DatasetError: unreadable ``.npy`` (pickled, wrong shape, NaN) or PNG.
        """
        name, path = self._names[i], self._pc[i]
        try:
            pts = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise DatasetError(f"{path}: cannot read the point cloud ({e})") from None
        if pts.ndim != 2 or pts.shape[1] < 3 or len(pts) < 2 or not np.isfinite(pts[:, :3]).all():
            raise DatasetError(f"{path}: expected an (N, 3) finite point array, got shape {pts.shape}")
        pts = pts[:, :3].astype(np.float32)
        if len(pts) > self.num_points:
            rng = np.random.default_rng(_item_seed(self.seed, name, 1))
            pts = pts[np.sort(rng.choice(len(pts), self.num_points, replace=False))]
        try:
            images = np.stack([self._read_png(self.render_dir / name / f"{k}.png") for k in range(self.num_views)])
        except OSError as e:
            raise DatasetError(f"{self.render_dir / name}: cannot read a render ({e})") from None
        return PairItem(name, self.label(i), _unit_sphere(pts), images)


# --------------------------------------------------------------------------------------------
# image features


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


# --------------------------------------------------------------------------------------------
# the on-disk cache


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


def _shard_path(cache_dir: str | os.PathLike, entry: dict[str, Any]) -> Path:
    """The shard file of an index entry, inside the cache folder (CheckpointError otherwise)."""
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
    path = _shard_path(cache_dir, entry)
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
        if entry["file"] is not None and not _shard_path(cache_dir, entry).is_file():
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


# --------------------------------------------------------------------------------------------
# training dataset


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
        index = read_index(cache_dir)
        if index is None or not index.get("complete"):
            raise DatasetError(f"{cache_dir}: no complete pair cache; build it first (clip2point pretrain --meshes DIR ...)")
        pts, feats, names, classes = [], [], [], []
        for entry in index["shards"]:
            if entry["file"] is None:
                continue
            path = _shard_path(cache_dir, entry)
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
        ds = cls(torch.cat(pts), torch.cat(feats), names, classes, **kwargs)
        ds.feature_key = index["feature_key"]
        return ds

    @property
    def num_views(self) -> int:
        return int(self.image_features.shape[1])

    @property
    def feature_dim(self) -> int:
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


# --------------------------------------------------------------------------------------------
# rendering the chosen views


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
