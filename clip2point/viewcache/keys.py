"""What a view-feature cache entry is keyed by: the encoder and its weights, the views, the render settings, the shape."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ..backbone import ClipBackbone, WeightsSource, visual_activation
from ..backbone.precision import module_dtype
from ..checkpoints import file_digest, read_json, write_json_atomic
from ..errors import Clip2PointError
from ..render import DepthRenderer

log = logging.getLogger(__name__)

__all__ = ["CACHE_FORMAT", "RANDOM_WEIGHTS_SEED", "DIGESTS_FILE", "shape_digest", "weights_identity", "render_probe",
           "settings_digest"]

#: Format tag of an entry (in its header and in every key: a new format never reads old entries).
CACHE_FORMAT = "clip2point-view-features/1"
#: The seed :func:`clip2point.backbone.architecture.random_architecture` builds random weights from.
RANDOM_WEIGHTS_SEED = 0
#: File in the cache folder remembering weights files' digests (path, size, mtime, inode → sha256).
DIGESTS_FILE = "weights-digests.json"
_MAX_DIGESTS = 64


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
    memo_path = memo_dir / DIGESTS_FILE if memo_dir is not None else None
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


def render_probe(renderer: DepthRenderer) -> str:
    """sha256 of a fixed 256-point cloud rendered on the CPU with ``renderer``'s settings (cached per settings):
    part of every key, so a change of the renderer's code (other pixels) never serves stale features."""
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


def settings_digest(backbone: ClipBackbone, tower: str | None, renderer: DepthRenderer,
                    extra: Mapping | None = None, memo_dir: Path | None = None) -> str | None:
    """Digest of everything but the shape that determines ``tower``'s features of ``renderer``'s views.

    Args:
        backbone: the encoders. tower: "clip" (or None) or "depth"; a module passed directly
            is not cacheable. renderer: view set and render settings.
        extra: JSON-able settings the caller adds (e.g. ``{"autocast": "bfloat16"}``).
        memo_dir: where weights-file digests are remembered (see :func:`weights_identity`).

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
    identity = weights_identity(source, backbone.model_name, memo_dir)
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
        "normalize": bool(renderer.normalize), "render_probe": render_probe(renderer),
        "extra": dict(extra or {}),
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
