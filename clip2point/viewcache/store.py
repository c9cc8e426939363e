"""The cache folder: one safetensors file per entry, written atomically, read once and checked, bounded (LRU)."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..backbone import ClipBackbone
from ..checkpoints import STALE_TEMP_AGE_S, write_bytes_atomic
from ..errors import Clip2PointError
from ..render import DepthRenderer
from .keys import CACHE_FORMAT, DIGESTS_FILE, settings_digest

log = logging.getLogger(__name__)

__all__ = [
    "CACHE_DIR_ENV", "DEFAULT_MAX_BYTES", "EVICT_TO", "MAX_ENTRY_BYTES", "default_cache_dir", "CacheInfo", "CacheStats",
    "cache_info", "clear_cache", "ViewFeatureCache",
]

#: Environment variable naming the cache folder.
CACHE_DIR_ENV = "CLIP2POINT_CACHE_DIR"
#: Default bound on the cache folder's size (2 GiB ≈ 100,000 shapes × 10 views × 512 floats).
DEFAULT_MAX_BYTES = 2 * 1024**3
#: Eviction deletes down to this share of ``max_bytes`` (so it does not run on every write).
EVICT_TO = 0.9
#: Largest entry file read (a (V, D) float32 tensor is ~20 kB for 10 views × 512).
MAX_ENTRY_BYTES = 64 * 1024**2
_SUFFIX = ".safetensors"


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
    (root / DIGESTS_FILE).unlink(missing_ok=True)
    return removed


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            _remove_tree(child)
        path.rmdir()
    else:
        path.unlink(missing_ok=True)


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
        """See :func:`~clip2point.viewcache.keys.settings_digest` (weights digests remembered in :attr:`root`)."""
        return settings_digest(backbone, tower, renderer, extra, self.root)

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
        from safetensors.torch import save

        feats = features.detach().to("cpu", torch.float32).contiguous()
        p = self.path(settings, shape)
        meta = {"format": CACHE_FORMAT, "settings": settings, "shape": shape, "checksum": _checksum(feats)}
        try:
            data = save({"features": feats}, metadata=meta)
            write_bytes_atomic(p, data, durable=False)  # a cache: no fsync (a damaged entry is detected and re-encoded)
            size = len(data)
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
