"""A persistent cache of view features on disk, shared by eval, few-shot runs, the app and the widgets.

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
GDPA's default) or not (the released adapter's input). Files are written atomically (temporary
file + rename, through :mod:`clip2point.checkpoints`): two processes writing the same entry leave
one whole file (the last rename wins) and a reader never sees a partial one. Reads are checked
(one read of the file, parsed as safetensors — no code run, sizes checked —, settings, shape digest and a checksum of the bytes); a damaged
entry is deleted and encoded again, never trusted. The folder is bounded (``max_bytes``): past the
bound the least recently used entries (access time, refreshed on each hit) are deleted.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .backbone import ClipBackbone, WeightsSource, visual_activation
from .backbone.precision import module_dtype
from .checkpoints import (
    STALE_TEMP_AGE_S, file_digest, read_json, save_state_dict_atomic, write_json_atomic,
)
from .errors import Clip2PointError
from .render import DepthRenderer, clip_normalize

log = logging.getLogger(__name__)

__all__ = [
    "CACHE_DIR_ENV", "DEFAULT_MAX_BYTES", "CACHE_FORMAT", "MAX_ENTRY_BYTES", "default_cache_dir", "CacheInfo", "CacheStats",
    "cache_info", "clear_cache", "shape_digest", "weights_identity", "ViewFeatureCache", "encode_point_views",
]

#: Environment variable naming the cache folder.
CACHE_DIR_ENV = "CLIP2POINT_CACHE_DIR"
#: Default bound on the cache folder's size (2 GiB ≈ 100,000 shapes × 10 views × 512 floats).
DEFAULT_MAX_BYTES = 2 * 1024**3
#: Format tag of an entry (in its header and in every key: a new format never reads old entries).
CACHE_FORMAT = "clip2point-view-features/1"
#: Eviction deletes down to this share of ``max_bytes`` (so it does not run on every write).
EVICT_TO = 0.9
#: Largest entry file read (a (V, D) float32 tensor is ~20 kB for 10 views × 512).
MAX_ENTRY_BYTES = 64 * 1024**2
_SUFFIX = ".safetensors"
_DIGESTS_FILE = "weights-digests.json"
_MAX_DIGESTS = 64
#: The seed :func:`clip2point.backbone.architecture.random_architecture` builds random weights from.
RANDOM_WEIGHTS_SEED = 0


def default_cache_dir() -> Path:
    """``$CLIP2POINT_CACHE_DIR`` if set, else ``~/.cache/clip2point/views`` (not created here)."""
    env = os.environ.get(CACHE_DIR_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "clip2point" / "views"


@dataclass(frozen=True)
class CacheInfo:
    """What a cache folder holds.

    Attributes:
        entries: cached (settings, shape) entries. bytes: their total size on disk.
        root: the folder. max_bytes: its bound (None: not known to the caller).
    """

    entries: int
    bytes: int
    root: Path
    max_bytes: int | None = None

    def describe(self) -> str:
        """One line, e.g. "1,234 entries, 24.1 MB of 2.1 GB in /home/me/.cache/clip2point/views"."""
        bound = f" of {self.max_bytes / 1e9:.1f} GB" if self.max_bytes else ""
        return f"{self.entries:,} entries, {self.bytes / 1e6:.1f} MB{bound} in {self.root}"


@dataclass
class CacheStats:
    """Counters of one :class:`ViewFeatureCache` object (this process only).

    Attributes:
        hits, misses: (settings, shape) look-ups found / not found. written: entries stored.
        dropped: damaged entries deleted. evicted: entries deleted to stay under ``max_bytes``.
    """

    hits: int = 0
    misses: int = 0
    written: int = 0
    dropped: int = 0
    evicted: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a dict."""
        return asdict(self)


def _entries(root: Path) -> list[os.DirEntry]:
    """The entry files under ``root`` (two levels: ``<xx>/<key>.safetensors``); [] for a missing folder."""
    out: list[os.DirEntry] = []
    try:
        subdirs = [e for e in os.scandir(root) if e.is_dir(follow_symlinks=False) and len(e.name) == 2]
    except OSError:
        return out
    for sub in subdirs:
        try:
            out.extend(e for e in os.scandir(sub.path)
                       if e.name.endswith(_SUFFIX) and not e.name.startswith(".") and e.is_file(follow_symlinks=False))
        except OSError:
            continue
    return out


def _sized(entries: Sequence[os.DirEntry]) -> list[tuple[float, int, str]]:
    """(last use, size, path) of each entry still there (an entry another process removed is skipped)."""
    out = []
    for e in entries:
        try:
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        out.append((max(st.st_atime, st.st_mtime), st.st_size, e.path))
    return out


def cache_info(root: str | os.PathLike | None = None, max_bytes: int | None = DEFAULT_MAX_BYTES) -> CacheInfo:
    """Entries and bytes of the cache folder ``root`` (default :func:`default_cache_dir`); nothing is created."""
    root = Path(root) if root is not None else default_cache_dir()
    sized = _sized(_entries(root))
    return CacheInfo(len(sized), sum(s for _, s, _ in sized), root, max_bytes)


def clear_cache(root: str | os.PathLike | None = None) -> int:
    """Delete every entry of the cache folder ``root`` (default :func:`default_cache_dir`); returns how many.

    The folder itself stays; temporary files of writers that died long ago are removed too,
    those of running writers are left (their rename then simply adds one entry).
    """
    root = Path(root) if root is not None else default_cache_dir()
    removed = 0
    for e in _entries(root):
        try:
            os.unlink(e.path)
            removed += 1
        except FileNotFoundError:
            continue
    now = time.time()
    try:
        subdirs = [Path(e.path) for e in os.scandir(root) if e.is_dir(follow_symlinks=False) and len(e.name) == 2]
    except OSError:
        subdirs = []
    for sub in subdirs:
        for tmp in sub.glob(".*.tmp"):
            try:
                if now - tmp.lstat().st_mtime > STALE_TEMP_AGE_S:
                    _remove_tree(tmp)
            except OSError:
                continue
        try:
            sub.rmdir()  # only when empty
        except OSError:
            pass
    (root / _DIGESTS_FILE).unlink(missing_ok=True)
    return removed


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            _remove_tree(child)
        path.rmdir()
    else:
        path.unlink(missing_ok=True)


def shape_digest(points: torch.Tensor | np.ndarray) -> str:
    """sha256 (hex) of one shape's points as (N, 3) float32 C-order bytes, with N: its content's identity."""
    arr = points.detach().to("cpu", torch.float32).numpy() if isinstance(points, torch.Tensor) \
        else np.asarray(points, dtype=np.float32)
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    h = hashlib.sha256(f"{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


_digest_lock = threading.Lock()
_digests: dict[str, str] = {}


def _digest_memo_key(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"


def _file_identity(path: str, memo_dir: Path | None) -> str | None:
    """sha256 of a weights file, remembered per (path, size, mtime, inode) in this process and in
    ``memo_dir/weights-digests.json`` (a damaged memo is ignored); None when the file cannot be read."""
    key = _digest_memo_key(path)
    if key is None:
        return None
    with _digest_lock:
        if key in _digests:
            return _digests[key]
    memo_path = memo_dir / _DIGESTS_FILE if memo_dir is not None else None
    memo: dict = {}
    if memo_path is not None and memo_path.is_file():
        try:
            loaded = read_json(memo_path, "weights digest memo")
            memo = loaded if isinstance(loaded, dict) else {}
        except Clip2PointError:
            memo = {}
    digest = memo.get(key)
    if not (isinstance(digest, str) and len(digest) == 64):
        try:
            digest = file_digest(path)
        except OSError:
            return None
        if memo_path is not None:
            memo = {k: v for k, v in list(memo.items())[-(_MAX_DIGESTS - 1):]}
            memo[key] = digest
            try:
                write_json_atomic(memo_path, memo)
            except Clip2PointError as err:
                log.debug("weights digest memo not written: %s", err)
    with _digest_lock:
        _digests[key] = digest
    return digest


def weights_identity(source: WeightsSource, model_name: str, memo_dir: Path | None = None) -> str | None:
    """A stable name for a set of weights: "file:<sha256>", "tag:<model>/<tag>", "random:<model>/seed<n>";
    None when it cannot be named (an in-memory module, an unreadable file)."""
    if source.kind == "random":
        return f"random:{model_name}/seed{RANDOM_WEIGHTS_SEED}"
    if source.kind == "tag":
        return f"tag:{model_name}/{source.location}"
    if source.kind in ("file", "depth-encoder") and os.path.isfile(source.location):
        digest = _file_identity(source.location, memo_dir)
        return None if digest is None else f"file:{digest}"
    return None


_probe_lock = threading.Lock()
_probes: dict[tuple, str] = {}


def _render_probe(renderer: DepthRenderer) -> str:
    """sha256 of a fixed 256-point cloud rendered on the CPU with ``renderer``'s settings (cached per settings)."""
    views = renderer.views
    key = (tuple(views.elev), tuple(views.azim), tuple(views.dist), renderer.raster.image_size,
           float(renderer.raster.radius), bool(renderer.normalize))
    with _probe_lock:
        if key in _probes:
            return _probes[key]
    g = torch.Generator().manual_seed(20240611)
    pts = torch.rand(1, 256, 3, generator=g) * 2 - 1
    pts[0, :4] = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    digest = hashlib.sha256(renderer(pts).contiguous().numpy().tobytes()).hexdigest()
    with _probe_lock:
        _probes[key] = digest
    return digest


class ViewFeatureCache:
    """Raw view features of shapes on disk, keyed by encoder, precision, views, render settings and shape.

    Thread-safe and safe across processes (see the module docstring). Errors writing an entry
    (disk full, read-only folder) are logged and ignored: the cache never makes a run fail.

    Args:
        root: the folder (created on the first write); None: :func:`default_cache_dir`.
        max_bytes: bound on the folder's size; past it the least recently used entries are deleted
            (down to 90 %).

    Attributes:
        stats: :class:`CacheStats` of this object.
    """

    def __init__(self, root: str | os.PathLike | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.max_bytes = int(max_bytes)
        if self.max_bytes <= 0:
            raise Clip2PointError(f"max_bytes must be positive, got {max_bytes!r}")
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self._bytes: int | None = None  # estimate of the folder's size; None until first scanned

    def __repr__(self) -> str:
        return f"ViewFeatureCache({str(self.root)!r}, max_bytes={self.max_bytes})"

    def info(self) -> CacheInfo:
        """See :func:`cache_info`."""
        return cache_info(self.root, self.max_bytes)

    def clear(self) -> int:
        """See :func:`clear_cache`."""
        with self._lock:
            self._bytes = None
        return clear_cache(self.root)

    def settings_key(self, backbone: ClipBackbone, tower: str | None, renderer: DepthRenderer,
                     extra: Mapping | None = None) -> str | None:
        """Digest of everything but the shape that determines ``tower``'s features of ``renderer``'s views.

        Args:
            backbone: the encoders. tower: "clip" (or None) or "depth"; a module passed directly
                is not cacheable. renderer: view set and render settings.
            extra: JSON-able settings the caller adds (e.g. ``{"autocast": "bfloat16"}``).

        Returns:
            A hex digest, or None when the features cannot be keyed (an in-memory encoder, e.g. the
            one being pre-trained, or an unreadable weights file): then nothing is cached.
        """
        name = "clip" if tower in (None, "clip") else tower
        if name == "clip":
            source: WeightsSource | None = backbone.weights
        elif name == "depth":
            source = backbone.depth_weights
        else:
            return None
        if source is None or backbone.visual(name) is None:
            return None
        identity = weights_identity(source, backbone.model_name, self.root)
        if identity is None:
            return None
        module = backbone.visual(name)
        views = renderer.views
        settings = {
            "format": CACHE_FORMAT, "model": backbone.model_name, "tower": name, "weights": identity,
            "activation": visual_activation(module), "dtype": str(module_dtype(module)),
            "device": backbone.device.type,
            "views": {"elev": list(views.elev), "azim": list(views.azim), "dist": list(views.dist)},
            "raster": {"image_size": int(renderer.raster.image_size), "radius": float(renderer.raster.radius)},
            "normalize": bool(renderer.normalize), "render_probe": _render_probe(renderer),
            "extra": dict(extra or {}),
        }
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()

    def path(self, settings: str, shape: str) -> Path:
        """The entry file of (settings, shape) digests."""
        key = hashlib.sha256(f"{settings}:{shape}".encode()).hexdigest()
        return self.root / key[:2] / f"{key}{_SUFFIX}"

    def get(self, settings: str, shape: str, views: int | None = None) -> torch.Tensor | None:
        """The (V, D) float32 raw features of (settings, shape) on the CPU, or None.

        A missing entry is a miss; a damaged one (unreadable, wrong header, settings, shape, size
        or checksum, or ``views`` rows when given) is deleted and is a miss.
        """
        p = self.path(settings, shape)
        try:
            data, inode = _read_once(p)
        except FileNotFoundError:
            self._count(misses=1)
            return None
        except OSError as err:
            log.warning("view-feature cache entry %s unreadable (%s); encoding again", p, err)
            self._count(misses=1)
            return None
        feats = _parse_entry(data, settings, shape, views)
        if feats is None:
            log.warning("dropping a damaged view-feature cache entry (does not parse or match its key and checksum): %s", p)
            self._count(misses=1, dropped=1)
            _unlink_if_same(p, inode)
            return None
        try:
            os.utime(p)  # last use, for LRU eviction (atime alone is unreliable: noatime mounts)
        except OSError:
            pass
        self._count(hits=1)
        return feats

    def put(self, settings: str, shape: str, features: torch.Tensor) -> None:
        """Store (V, D) raw features of (settings, shape) atomically, then keep the folder under ``max_bytes``."""
        feats = features.detach().to("cpu", torch.float32).contiguous()
        p = self.path(settings, shape)
        meta = {"format": CACHE_FORMAT, "settings": settings, "shape": shape, "checksum": _checksum(feats)}
        try:
            save_state_dict_atomic({"features": feats}, p, meta)
            size = p.stat().st_size
        except (Clip2PointError, OSError) as err:
            log.warning("view-feature cache entry not written (%s); continuing without it", err)
            return
        self._count(written=1)
        with self._lock:
            if self._bytes is None:
                self._bytes = cache_info(self.root).bytes
            else:
                self._bytes += size
            over = self._bytes > self.max_bytes
        if over:
            self.evict()

    def evict(self) -> int:
        """Delete least recently used entries until the folder holds at most 90 % of ``max_bytes``; returns how many."""
        sized = sorted(_sized(_entries(self.root)))
        total = sum(s for _, s, _ in sized)
        removed = 0
        target = int(self.max_bytes * EVICT_TO) if total > self.max_bytes else total
        for _, size, path in sized:
            if total <= target:
                break
            try:
                os.unlink(path)
                removed += 1
            except FileNotFoundError:
                pass  # another process evicted it
            total -= size
        with self._lock:
            self._bytes = total
        self._count(evicted=removed)
        return removed

    def _count(self, **counts: int) -> None:
        with self._lock:
            for k, v in counts.items():
                setattr(self.stats, k, getattr(self.stats, k) + v)


def _read_once(p: Path) -> tuple[bytes, int]:
    """The bytes of an entry file read through ONE open (header and data of the same version even while
    another process renames a new version over it), and its inode. Raises OSError (FileNotFoundError: no entry)."""
    with open(p, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_size > MAX_ENTRY_BYTES:
            raise OSError(f"{st.st_size:,} bytes, more than an entry ({MAX_ENTRY_BYTES:,})")
        return f.read(MAX_ENTRY_BYTES + 1), st.st_ino


def _parse_entry(data: bytes, settings: str, shape: str, views: int | None) -> torch.Tensor | None:
    """The features of an entry's bytes when they parse as safetensors (no code run, sizes checked) and
    match the key and checksum; None otherwise."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        n = int.from_bytes(data[:8], "little")
        if len(data) < 8 or 8 + n > len(data):
            return None
        meta = json.loads(data[8 : 8 + n].decode("utf-8")).get("__metadata__") or {}
        sd = load(data)
    except (SafetensorError, ValueError, UnicodeDecodeError, AttributeError, RuntimeError):
        return None
    feats = sd.get("features")
    ok = (set(sd) == {"features"} and feats is not None and feats.dim() == 2 and feats.dtype == torch.float32
          and isinstance(meta, dict) and meta.get("format") == CACHE_FORMAT and meta.get("settings") == settings
          and meta.get("shape") == shape and (views is None or feats.shape[0] == views)
          and meta.get("checksum") == _checksum(feats))
    return feats.clone() if ok else None


def _unlink_if_same(p: Path, inode: int) -> None:
    """Delete ``p`` unless another process has meanwhile renamed a new entry over it."""
    try:
        if os.stat(p).st_ino == inode:
            os.unlink(p)
    except OSError:
        pass


def _checksum(feats: torch.Tensor) -> str:
    return hashlib.blake2b(feats.numpy().tobytes(), digest_size=16).hexdigest() + f":{tuple(feats.shape)}"


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
