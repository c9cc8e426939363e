"""Heavy objects shared by every user of the app: backbones, depth encoders, datasets.

* :data:`REGISTRY` — the process-wide :class:`ModelRegistry`: CLIP backbones
  (:class:`ModelSpec` → :class:`LoadedModel`), CLIP2Point depth encoders
  (:class:`DepthEncoderHandle`, keyed by file content) and ModelNet datasets are loaded **once,
  lazily**, behind a lock, and shared by every session. Text features are cached by the
  backbone itself.
* :attr:`ModelRegistry.batcher` — the :class:`~ui.batcher.EncodeBatcher` every session's encodes go through;
  :attr:`ModelRegistry.view_cache` — the persistent view-feature cache (``clip2point.viewcache``) they read first.
* :func:`probe_weights` and :meth:`ModelRegistry.weights_status` — where the weights come from,
  without loading them (:class:`WeightsStatus`, what the app's banner says).
* :func:`warm_up` — pay the one-time costs before the first request.

Nothing here imports a UI toolkit. Long steps report through an optional
``progress(fraction, message)`` callback (:data:`Progress`).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from clip2point.checkpoints import file_digest
from clip2point.errors import CheckpointError, Clip2PointError, WeightsNotFoundError
from clip2point.viewcache import ViewFeatureCache
from ui.batcher import EncodeBatcher
from ui.defaults import DEFAULT_MODEL, DEFAULT_PRECISION, DEFAULT_TEMPLATE, PRECISIONS
from ui.loading import IMAGE_VIEW_POINTS

log = logging.getLogger(__name__)

__all__ = [
    "Progress", "no_progress", "resolve_device", "ModelSpec", "LoadedModel", "DepthEncoderHandle", "WeightsStatus",
    "probe_weights", "describe_weights", "DATASET_SHAPE_CACHE", "ModelRegistry",
    "REGISTRY", "warm_up", "choose_view_cache",
]

#: ``progress(fraction in [0, 1], message)``; front ends adapt it to their progress widget.
Progress = Callable[[float, str], None]


def no_progress(_fraction: float, _message: str) -> None:
    """A :data:`Progress` that reports nothing (the default of every long step)."""
    return None


def resolve_device(device: str | None) -> str:
    """"auto"/None → "cuda" when available, else "cpu"; anything else is returned unchanged."""
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


@dataclass(frozen=True)
class ModelSpec:
    """Which backbone to use: what ``load_backbone`` gets, plus an optional depth encoder file.

    Attributes:
        model_name: open_clip architecture ("ViT-B-32"; "tiny-ViT-test" for tests).
        weights: None (search the usual places, random if none), "random", a tag or a file.
        device: "auto", "cpu", "cuda", "cuda:1", ...
        depth_encoder: a CLIP2Point depth-encoder file to offer from the start, or None.
        precision: the encoders' weight dtype, "fp32", "bf16" or "auto" (bf16 where the CPU/GPU
            computes it natively; see :func:`clip2point.backbone.resolve_precision`).

    Raises:
        Clip2PointError: an unknown precision name.
    """

    model_name: str = DEFAULT_MODEL
    weights: str | None = None
    device: str = "auto"
    depth_encoder: str | None = None
    precision: str = DEFAULT_PRECISION

    def __post_init__(self) -> None:
        name = str(self.precision).strip().lower()
        if name not in PRECISIONS:
            raise Clip2PointError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        object.__setattr__(self, "precision", name)

    def resolved_precision(self) -> tuple[str, str]:
        """("fp32" | "bf16", why): what :attr:`precision` means on this spec's device (``auto`` resolved)."""
        from clip2point.backbone import resolve_precision
        from clip2point.backbone.precision import precision_name

        dtype, reason = resolve_precision(self.precision, resolve_device(self.device))
        return precision_name(dtype), reason

    @property
    def key(self) -> tuple[str, str | None, str, str]:
        """Identity of the backbone: model, weights, device and the resolved precision (``auto``
        and the dtype it picks share one backbone; the depth encoder is cached separately)."""
        return (self.model_name, self.weights, resolve_device(self.device), self.resolved_precision()[0])


@dataclass
class LoadedModel:
    """A loaded, frozen backbone shared by all sessions.

    Attributes:
        backbone: the :class:`clip2point.backbone.ClipBackbone`.
        spec: what was asked for.
        fallback_reason: why random weights were loaded instead (the ``WeightsNotFoundError``
            message, which says how to get real weights), or None.
        seconds: load time.
    """

    backbone: object
    spec: ModelSpec
    fallback_reason: str | None
    seconds: float

    def text_features(self, classes: Sequence[str], template: str) -> torch.Tensor:
        """(C, D) normalised text features (cached, thread-safely, by the backbone)."""
        return self.backbone.text_features(list(classes), template)


@dataclass(frozen=True)
class DepthEncoderHandle:
    """A CLIP2Point depth encoder loaded for one backbone (shared, keyed by file content).

    Attributes:
        module: the encoder (the backbone's dtype and device). name, path: its file. digest: its content.
        backbone: the CLIP backbone paired with it (``ClipBackbone.with_depth_encoder``: shares the
            CLIP model; what the persistent view-feature cache keys the "depth" tower by), or None.
    """

    module: torch.nn.Module
    name: str
    path: str
    digest: str
    backbone: object | None = None


@dataclass(frozen=True)
class WeightsStatus:
    """What a banner says about the model.

    Attributes:
        level: "ok" (real weights), "random" (scores meaningless) or "pending" (not loaded yet,
            nothing found on this machine, and a download will be tried when the model loads).
        model_name, device: the backbone.
        weights: where the CLIP weights come from, in words.
        encoder: which tower encodes the depth views, in words.
        detail: for random weights, why and how to get real ones.
        loaded: whether the model is in memory.
        precision: the encoders' weight dtype, "fp32" or "bf16" (``auto`` resolved).
        precision_reason: why, in one phrase (``resolve_precision``'s, e.g. "bf16 (auto): this CPU
            has native bf16 instructions (avx512_bf16)").
    """

    level: str
    model_name: str
    device: str
    weights: str
    encoder: str
    detail: str = ""
    loaded: bool = False
    precision: str = DEFAULT_PRECISION
    precision_reason: str = ""

    @property
    def is_random(self) -> bool:
        return self.level == "random"


def _may_download(spec: ModelSpec) -> bool:
    """Whether loading ``spec`` may still find weights by downloading (no weights or a tag named)."""
    from clip2point.backbone import default_tag

    w = spec.weights
    if w is None:
        return not os.environ.get("CLIP2POINT_WEIGHTS") and default_tag(spec.model_name) is not None
    return w.lower() != "random" and not any(sep in w for sep in "/\\") and Path(w).suffix not in (
        ".pt", ".pth", ".bin", ".safetensors")


def describe_weights(source) -> str:
    """A :class:`clip2point.backbone.WeightsSource` in words ("OpenAI CLIP (pretrained tag 'openai', …)")."""
    if source.is_random:
        return "random initialisation"
    if source.kind == "tag":
        name = "OpenAI CLIP" if source.location == "openai" else f"open_clip tag '{source.location}'"
        return f"{name} (pretrained tag '{source.location}', {source.found_by})"
    return f"file {Path(source.location).name} ({source.found_by})"


def probe_weights(spec: ModelSpec, allow_download: bool = True) -> tuple[object | None, str | None]:
    """Resolve ``spec``'s weights without loading them: (WeightsSource, None) or (None, reason).

    ``allow_download=False`` never touches the network: a pretrained tag that is not cached is
    then "not found" (with ``True``, up to a 3-s probe of the download host when nothing local
    is found). Never raises for missing weights: the reason is the ``WeightsNotFoundError`` message.
    """
    from clip2point.backbone import BackboneConfig, resolve_weights

    try:
        return resolve_weights(BackboneConfig(spec.model_name, spec.weights, allow_download=allow_download)), None
    except WeightsNotFoundError as err:
        return None, str(err)


def _load_backbone(spec: ModelSpec) -> LoadedModel:
    """Load a backbone; fall back to random weights (saying why) when none can be found."""
    from clip2point.backbone import load_backbone

    t0 = time.perf_counter()
    device = resolve_device(spec.device)
    reason = None
    try:
        backbone = load_backbone(spec.model_name, spec.weights, device, precision=spec.precision)
    except WeightsNotFoundError as err:
        reason = str(err)
    except CheckpointError as err:
        if spec.weights is not None:  # the user named this file: tell them, do not hide it
            raise
        reason = f"the weights file that was found could not be used: {err}"
    if reason is not None:
        log.warning("no usable CLIP weights (%s); loading random weights, scores are meaningless", reason)
        backbone = load_backbone(spec.model_name, "random", device, precision=spec.precision)
    seconds = time.perf_counter() - t0
    log.info("loaded %s in %.1f s", backbone.describe(), seconds)
    return LoadedModel(backbone, spec, reason, seconds)


#: Shapes of one-file-per-shape dataset layouts (OFF meshes) kept in memory per split.
DATASET_SHAPE_CACHE = 64


class ModelRegistry:
    """Process-wide cache of heavy objects, safe to use from many threads.

    Backbones are keyed by :attr:`ModelSpec.key`, depth encoders by (backbone, file content),
    datasets by (folder, name, split, up). Each is built once, on first use; concurrent first
    requests for the same object wait for one load instead of loading twice.

    Args:
        view_cache: the persistent view-feature cache of its sessions (:data:`REGISTRY`'s is
            ``ViewFeatureCache()``: ``$CLIP2POINT_CACHE_DIR``, else ``~/.cache/clip2point/views``);
            None (the default): sessions encode every shape they have not encoded themselves.
    """

    def __init__(self, view_cache: ViewFeatureCache | None = None) -> None:
        #: the persistent view-feature cache every session of this registry reads and fills
        #: (``clip2point.viewcache``; the app's ``--cache-dir`` / ``--no-cache``), or None.
        self.view_cache = view_cache
        self._lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}
        self._models: dict[tuple, LoadedModel] = {}
        self._depth: dict[tuple, DepthEncoderHandle] = {}
        self._datasets: dict[tuple, object] = {}
        self._digests: dict[tuple, str] = {}
        self._probes: dict[tuple, tuple[object | None, str | None]] = {}
        self.loads: Counter[str] = Counter()
        #: batches the encodes of concurrent sessions (all backbones share it; keys differ).
        self.batcher = EncodeBatcher()

    def _get(self, store: dict, key: tuple, build: Callable[[], object], kind: str):
        with self._lock:
            if key in store:
                return store[key]
            key_lock = self._key_locks.setdefault((kind, key), threading.Lock())
        with key_lock:
            with self._lock:
                if key in store:
                    return store[key]
            value = build()
            with self._lock:
                store[key] = value
                self.loads[kind] += 1
            return value

    def model(self, spec: ModelSpec, progress: Progress = no_progress) -> LoadedModel:
        """The backbone for ``spec`` (loaded on first use)."""
        if spec.key not in self._models:
            progress(0.05, f"loading {spec.model_name} (once per server)…")
        return self._get(self._models, spec.key, lambda: _load_backbone(spec), "model")

    def loaded(self, spec: ModelSpec) -> LoadedModel | None:
        """The backbone for ``spec`` if it is already loaded, else None (never loads)."""
        with self._lock:
            return self._models.get(spec.key)

    def file_digest(self, path: str | os.PathLike) -> str:
        """SHA-256 prefix of a file's content, hashed once per (real path, size, mtime).

        Re-scoring with a depth encoder asks for its identity on every request; reading a
        350 MB checkpoint each time would cost seconds, so the answer is cached until the file
        changes (``loads["hash"]`` counts real hashes).
        """
        real = os.path.realpath(path)
        st = os.stat(real)
        key = (real, st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            digest = self._digests.get(key)
        if digest is None:
            digest = file_digest(real)[:16]
            with self._lock:
                self._digests[key] = digest
                self.loads["hash"] += 1
                while len(self._digests) > 256:  # uploads come and go: keep the newest
                    self._digests.pop(next(iter(self._digests)))
        return digest

    def depth_encoder(self, spec: ModelSpec, path: str | os.PathLike) -> DepthEncoderHandle:
        """A CLIP2Point depth encoder for ``spec``'s backbone, read from ``path`` once per content.

        The file is hashed once (see :meth:`file_digest`), loaded once per content.

        Raises:
            CheckpointError: unreadable file or one that does not fit the backbone.
        """
        if not Path(path).is_file():
            raise CheckpointError(f"depth encoder file {path} not found; check the path")
        try:
            digest = self.file_digest(path)
        except OSError as err:
            raise CheckpointError(f"depth encoder file {Path(path).name} cannot be read ({err.strerror or err}); "
                                  "check its permissions") from err
        model = self.model(spec)

        def build() -> DepthEncoderHandle:
            paired = model.backbone.with_depth_encoder(os.path.realpath(path))  # the backbone's dtype and device
            return DepthEncoderHandle(paired.depth_encoder, Path(path).name, str(path), digest, paired)

        return self._get(self._depth, (spec.key, digest), build, "depth_encoder")

    def dataset(self, data_dir: str | os.PathLike, name: str, split: str = "test", up: str | None = None):
        """A ModelNet split opened once, with up to :data:`IMAGE_VIEW_POINTS` points per shape.

        That is all the page can use (the classified points are the first N ≤ ``max_points``
        of them, the image views splat all of them). Files that store fewer (the h5 layouts)
        give theirs; OFF meshes are surface-sampled at this size, and the shapes read from
        one-file-per-shape layouts are kept in a bounded LRU cache
        (:data:`DATASET_SHAPE_CACHE` shapes per split), not forever.
        """
        from clip2point.datasets import open_dataset

        key = (str(Path(data_dir).resolve()), name, split, up)

        def build():
            return open_dataset(name, data_dir, split, num_points=IMAGE_VIEW_POINTS, up=up,
                                cache_size=DATASET_SHAPE_CACHE)

        return self._get(self._datasets, key, build, "dataset")

    def probe(self, spec: ModelSpec) -> tuple[object | None, str | None]:
        """:func:`probe_weights` without network access, cached per (model, weights).

        The banner asks on every render; the answer changes only when files are added, so it is
        worked out once (no 3-second socket probe of the download host per page view).
        """
        key = (spec.model_name, spec.weights)
        with self._lock:
            if key in self._probes:
                return self._probes[key]
        result = probe_weights(spec, allow_download=False)
        with self._lock:
            self._probes[key] = result
            self.loads["probe"] += 1
        return result

    def weights_status(self, spec: ModelSpec, encoder: str) -> WeightsStatus:
        """What a banner says about ``spec``'s backbone; resolves (never loads) the weights if it is
        not loaded yet. ``encoder``: which tower encodes the depth views, in words.

        Before the model is loaded the weights are looked up once per server without network
        access (:meth:`probe`); when nothing is found locally but a download may still work on
        first use, the level is "pending".
        """
        loaded = self.loaded(spec)
        device = resolve_device(spec.device)
        precision = spec.resolved_precision()  # this spec's reason ("auto" shares the backbone of its dtype)
        if loaded is not None:
            source, reason = loaded.backbone.weights, loaded.fallback_reason
        else:
            source, reason = self.probe(spec)
            if source is None and _may_download(spec):
                return WeightsStatus("pending", spec.model_name, device,
                                     "not found on this machine; a download is tried when the model first loads",
                                     encoder, reason or "", False, *precision)
        if source is None or source.is_random:
            detail = reason or "random weights were asked for (--weights random)"
            return WeightsStatus("random", spec.model_name, device, "random initialisation", encoder, detail,
                                 loaded is not None, *precision)
        return WeightsStatus("ok", spec.model_name, device, describe_weights(source), encoder, "", loaded is not None,
                             *precision)

    def clear(self) -> None:
        """Forget everything (tests)."""
        with self._lock:
            self._models.clear()
            self._depth.clear()
            self._datasets.clear()
            self._digests.clear()
            self._probes.clear()
            self._key_locks.clear()
            self.loads.clear()


def choose_view_cache(cache: ViewFeatureCache | bool | None, registry: ModelRegistry) -> ViewFeatureCache | None:
    """A front end's ``cache=`` argument as a cache: True → ``registry.view_cache``; False/None → no
    cache; a :class:`~clip2point.viewcache.ViewFeatureCache` → itself."""
    if cache is True:
        return registry.view_cache
    return cache or None


#: The registry every session shares unless given another one (with the default persistent view-feature cache).
REGISTRY = ModelRegistry(ViewFeatureCache())


def warm_up(spec: ModelSpec, registry: ModelRegistry = REGISTRY, classes: Sequence[str] = (),
            template: str = DEFAULT_TEMPLATE) -> LoadedModel:
    """Load a backbone (and ``spec``'s depth encoder), cache the text features of ``classes``, and
    run the visual tower once, so the first real request pays none of these one-time costs."""
    from clip2point.render import clip_normalize

    t0 = time.perf_counter()
    model = registry.model(spec)
    if classes:
        model.text_features(list(classes), template)
    blank = clip_normalize(torch.ones(1, model.backbone.image_size, model.backbone.image_size))
    model.backbone.encode_images(blank.to(model.backbone.device))
    if spec.depth_encoder:
        registry.depth_encoder(spec, spec.depth_encoder)
    log.info("warm-up done in %.1f s", time.perf_counter() - t0)
    return model
