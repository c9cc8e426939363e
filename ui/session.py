"""What the clip2point app does, without any UI: models, shapes, views, scores.

Every front end (the Gradio app in :mod:`ui.app`, a Jupyter-widgets front end, scripts) drives
the same objects:

* :data:`REGISTRY` — a process-wide :class:`ModelRegistry`: CLIP backbones, CLIP2Point depth
  encoders and ModelNet datasets are loaded **once, lazily**, behind a lock, and shared by every
  user session. Text features are cached by the backbone itself.
* :class:`Session` — one user's state: the current :class:`Shape`, its :class:`RenderedViews`
  (depth maps + CLIP image views from the same cameras) and a small cache of encoded view
  features, so changing the classes or the prompt re-scores without re-rendering or
  re-encoding anything (CLIP2Point zero-shot, Huang et al., ICCV 2023, §4.2: per-view
  logits summed over views).
* :func:`classify_file` — the stateless one-call path (file + class names → probabilities).
* :class:`AppLimits` — what one request to the app may ask for (points, classes, template,
  views, radius, indices, few-shot settings, upload read time/memory, run caps), checked by a
  :class:`Session` built with them; uploads are then read by :func:`ui.loading.read_file_shape`
  in a time- and memory-limited child process.

Nothing here imports a UI toolkit. Long steps report through an optional
``progress(fraction, message)`` callback.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from clip2point.classes import CLASS_SETS, parse_classes
from clip2point.errors import CheckpointError, Clip2PointError, PointCloudFileError, WeightsNotFoundError
from clip2point.io import SUPPORTED_MESH_EXTENSIONS, SUPPORTED_POINT_EXTENSIONS, Mesh, load_mesh
from ui.loading import IMAGE_VIEW_POINTS, MULTI_SHAPE_EXTENSIONS, file_errors, read_file_shape

log = logging.getLogger(__name__)

__all__ = [
    "REPO_ROOT", "EXAMPLES_DIR", "DEFAULT_EXAMPLE", "DEFAULT_MODEL", "DEFAULT_TEMPLATE", "DEFAULT_NUM_POINTS",
    "DEFAULT_VIEWS", "DEFAULT_RADIUS", "DEFAULT_CLASS_SET", "VIEW_SETS", "ENCODERS", "CLASS_PRESETS",
    "UPLOAD_EXTENSIONS", "Progress", "EncodeBatcher", "ModelSpec", "LoadedModel", "DepthEncoderHandle", "WeightsStatus",
    "ModelRegistry", "REGISTRY", "ShapeSource", "Shape", "RenderedViews", "Session", "classify_file",
    "AppLimits", "RequestLimitError", "example_names", "example_path", "example_thumbnails", "find_data_dir", "available_datasets",
    "dataset_class_counts", "dataset_indices", "resolve_device", "model_image_size", "probe_weights", "warm_up",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = REPO_ROOT / "examples"
DEFAULT_EXAMPLE = "chair"
DEFAULT_MODEL = "ViT-B-32"
#: CLIP2Point's released zero-shot prompt (REFERENCE §4).
DEFAULT_TEMPLATE = "image of a {}"
DEFAULT_NUM_POINTS = 1024
#: The released zero-shot view set ("10" is the pre-training set).
DEFAULT_VIEWS = "6"
DEFAULT_RADIUS = 0.02
DEFAULT_CLASS_SET = "modelnet40"
VIEW_SETS = ("6", "10")
#: Encoder ids and their names in the UI.
ENCODERS: dict[str, str] = {"clip": "CLIP visual tower", "depth": "CLIP2Point depth encoder"}
#: Everything the core reads (point clouds and meshes), for upload widgets.
UPLOAD_EXTENSIONS: tuple[str, ...] = tuple(sorted(set(SUPPORTED_POINT_EXTENSIONS) | set(SUPPORTED_MESH_EXTENSIONS)))
_FEATURE_CACHE_SIZE = 8
_DATASET_NAMES = ("modelnet10", "modelnet40")

#: ``progress(fraction in [0, 1], message)``; front ends adapt it to their progress widget.
Progress = Callable[[float, str], None]


# ----------------------------------------------------------------------------------------------
# limits of what one request may ask for


class RequestLimitError(Clip2PointError):
    """A request asked for more than the app allows (:class:`AppLimits`); the message names the
    value, the allowed range and what to do."""


def _as_int(value: object, what: str) -> int:
    """``value`` as an int (ints, integral floats, numeric strings), else a RequestLimitError."""
    if isinstance(value, bool):
        raise RequestLimitError(f"{what} must be a whole number, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise RequestLimitError(f"{what} must be a whole number, got {str(value)[:40]!r}") from None
    if not np.isfinite(f) or f != int(f):
        raise RequestLimitError(f"{what} must be a whole number, got {str(value)[:40]}")
    return int(f)


def _as_float(value: object, what: str) -> float:
    if isinstance(value, bool):
        raise RequestLimitError(f"{what} must be a number, got {value!r}")
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise RequestLimitError(f"{what} must be a number, got {str(value)[:40]!r}") from None
    if not np.isfinite(f):
        raise RequestLimitError(f"{what} must be a finite number, got {f}")
    return f


@dataclass(frozen=True)
class AppLimits:
    """Everything one request to the app may ask for, in one place (``python -m ui.app`` options).

    The app's sliders stop at these values and **every handler checks them again on the server**,
    so a script calling the API (``gradio_client``) gets the same bounds as the page, each
    violation a one-line :class:`RequestLimitError` that names the value, the range and the fix.

    Attributes:
        min_points, max_points: points classified per shape (default 16–8,192; the page's slider
            covers 256–8,192). 8,192 points render in well under a second on a CPU.
        max_classes: class names per request (default 1,000: 18.6 s for a first ViT-B-32 request
            on a shared 2-core CPU, text encoding included, ~+400 MiB transient server memory;
            10,000 names took 113 s).
        max_class_chars: characters per class name (default 100; CLIP reads 77 tokens at most).
        max_template_chars: characters of the prompt template (default 200).
        view_sets: view sets offered ("6" zero-shot, "10" pre-training).
        min_radius, max_radius: splat radius in NDC units (default 0.005–0.06, the slider's range).
        max_top_k: classes shown in the chart (default 10).
        max_shape_index: highest shape index in a multi-shape upload (default 100,000; the file's
            own count is checked when it is read).
        fewshot_shots: shapes per class a few-shot run may take (CLIP2Point/PointCLIP protocol).
        fewshot_max_epochs: epochs of a few-shot run (default 200; released: 100).
        fewshot_max_test_shapes: test shapes a run evaluates (default 5,000; 0 = the whole split,
            ModelNet40 has 2,468).
        fewshot_max_val_per_class: validation shapes per class (default 20).
        max_runs: few-shot runs training at once on the server (default 2); more are refused.
        max_runs_per_session: few-shot runs per browser tab / API client session (default 1).
        load_timeout_s: seconds an uploaded file may take to read (default 60) and
        load_memory_mb: address space in MiB the reading child process may use (default 4,096).
            Reading runs in a child process (``clip2point.sandbox.call_limited``) that is killed
            when either is exceeded; the request fails with a clear error, the server carries on.
        runs_max_age_days: app run folders older than this are deleted at start-up and before
            each new run (default 30; None keeps them forever). Running runs are never touched.
        max_file_mb: largest upload in MB (default 200; enforced by gradio's ``max_file_size``).
    """

    min_points: int = 16
    max_points: int = 8192
    max_classes: int = 1000
    max_class_chars: int = 100
    max_template_chars: int = 200
    view_sets: tuple[str, ...] = VIEW_SETS
    min_radius: float = 0.005
    max_radius: float = 0.06
    max_top_k: int = 10
    max_shape_index: int = 100_000
    fewshot_shots: tuple[int, ...] = (1, 2, 4, 8, 16)
    fewshot_max_epochs: int = 200
    fewshot_max_test_shapes: int = 5000
    fewshot_max_val_per_class: int = 20
    max_runs: int = 2
    max_runs_per_session: int = 1
    load_timeout_s: float = 60.0
    load_memory_mb: int = 4096
    runs_max_age_days: float | None = 30.0
    max_file_mb: int = 200

    def __post_init__(self) -> None:
        if not 1 <= self.min_points <= self.max_points:
            raise Clip2PointError(f"AppLimits: need 1 <= min_points <= max_points, got {self.min_points}, {self.max_points}")
        if not 0.0 < self.min_radius <= self.max_radius <= 0.2:
            raise Clip2PointError(f"AppLimits: need 0 < min_radius <= max_radius <= 0.2, got {self.min_radius}, {self.max_radius}")
        for name in ("max_classes", "max_class_chars", "max_template_chars", "max_top_k", "fewshot_max_epochs",
                     "max_runs", "max_runs_per_session", "load_memory_mb", "max_file_mb"):
            if int(getattr(self, name)) < 1:
                raise Clip2PointError(f"AppLimits.{name} must be at least 1, got {getattr(self, name)}")
        if not self.load_timeout_s > 0:
            raise Clip2PointError(f"AppLimits.load_timeout_s must be positive, got {self.load_timeout_s}")
        if self.runs_max_age_days is not None and not self.runs_max_age_days > 0:
            raise Clip2PointError(f"AppLimits.runs_max_age_days must be positive or None, got {self.runs_max_age_days}")

    @property
    def max_classes_chars(self) -> int:
        """Longest class-list text accepted before it is even split (names, commas and spaces)."""
        return self.max_classes * (self.max_class_chars + 3)

    # -- checks: each returns the clean value or raises RequestLimitError ---------------------
    def check_num_points(self, value: object) -> int:
        n = _as_int(value, "number of points")
        if not self.min_points <= n <= self.max_points:
            raise RequestLimitError(f"number of points {n:,} is out of range: this app classifies "
                                    f"{self.min_points:,} to {self.max_points:,} points per shape; pick a number in it")
        return n

    def check_views(self, value: object) -> str:
        v = str(value)
        if v not in self.view_sets:
            raise RequestLimitError(f"view set {str(value)[:40]!r} is unknown; choose one of {', '.join(self.view_sets)}")
        return v

    def check_radius(self, value: object) -> float:
        r = _as_float(value, "splat radius")
        if not self.min_radius <= r <= self.max_radius:
            raise RequestLimitError(f"splat radius {r:g} is out of range: choose {self.min_radius:g} to "
                                    f"{self.max_radius:g} (NDC units)")
        return r

    def check_top_k(self, value: object) -> int:
        k = _as_int(value, "top-k")
        if not 1 <= k <= self.max_top_k:
            raise RequestLimitError(f"top-k {k} is out of range: the chart shows 1 to {self.max_top_k} classes")
        return k

    def check_shape_index(self, value: object) -> int:
        i = _as_int(0 if value is None else value, "shape index")
        if not 0 <= i <= self.max_shape_index:
            raise RequestLimitError(f"shape index {i:,} is out of range: use 0 to {self.max_shape_index:,} "
                                    "(and fewer than the shapes in the file)")
        return i

    def check_template(self, value: object) -> str:
        if not isinstance(value, str):
            raise RequestLimitError(f"the prompt template must be text with {{}} for the class name, got {type(value).__name__}")
        if len(value) > self.max_template_chars:
            raise RequestLimitError(f"the prompt template is {len(value):,} characters long; this app takes at most "
                                    f"{self.max_template_chars}, e.g. \"image of a {{}}\"")
        return value

    def check_classes(self, value: object) -> list[str]:
        """The class names of a comma-separated string (or a list), within the count and length limits."""
        if isinstance(value, str):
            if len(value) > self.max_classes_chars:
                raise RequestLimitError(f"the class list is {len(value):,} characters long; this app takes at most "
                                        f"{self.max_classes:,} names of up to {self.max_class_chars} characters")
            names = parse_classes(value)
        elif isinstance(value, (list, tuple)):
            if len(value) > self.max_classes:
                raise RequestLimitError(f"{len(value):,} class names given; this app scores at most {self.max_classes:,} "
                                        "at once; send fewer")
            names = parse_classes([str(v)[: self.max_class_chars + 1] for v in value])
        else:
            raise RequestLimitError(f"classes must be comma-separated text, got {type(value).__name__}")
        if len(names) > self.max_classes:
            raise RequestLimitError(f"{len(names):,} class names given; this app scores at most {self.max_classes:,} "
                                    "at once; send fewer")
        long = next((n for n in names if len(n) > self.max_class_chars), None)
        if long is not None:
            raise RequestLimitError(f"class name {long[:30]!r}… is {len(long):,} characters long; this app takes at "
                                    f"most {self.max_class_chars} per name")
        return names

    def check_fewshot(self, shots: object, epochs: object, limit_test: object, val_per_class: object) -> tuple[int, int, int, int]:
        """(shots, epochs, test shapes, validation shapes per class) of a few-shot run, within the limits."""
        k = _as_int(shots, "shots")
        if k not in self.fewshot_shots:
            raise RequestLimitError(f"shots must be one of {', '.join(map(str, self.fewshot_shots))}, got {k}")
        e = _as_int(epochs, "epochs")
        if not 1 <= e <= self.fewshot_max_epochs:
            raise RequestLimitError(f"epochs {e:,} is out of range: a run in this app trains 1 to "
                                    f"{self.fewshot_max_epochs} epochs")
        t = _as_int(limit_test or 0, "test shapes")
        if not 0 <= t <= self.fewshot_max_test_shapes:
            raise RequestLimitError(f"test shapes {t:,} is out of range: use 0 (the whole split) to "
                                    f"{self.fewshot_max_test_shapes:,}")
        v = _as_int(val_per_class or 0, "validation shapes per class")
        if not 0 <= v <= self.fewshot_max_val_per_class:
            raise RequestLimitError(f"validation shapes per class {v:,} is out of range: use 0 to "
                                    f"{self.fewshot_max_val_per_class}")
        return k, e, t, v


def _no_progress(_fraction: float, _message: str) -> None:
    return None


# ----------------------------------------------------------------------------------------------
# examples, data folders


def example_names() -> list[str]:
    """Names of the procedural example objects (``examples/meshes/<name>.ply``), sorted."""
    return sorted(p.stem for p in (EXAMPLES_DIR / "meshes").glob("*.ply"))


def example_path(name: str, kind: str = "meshes") -> Path:
    """Path of an example object (``kind`` "meshes" or "points").

    Raises:
        Clip2PointError: unknown example name.
    """
    names = example_names()
    if kind not in ("meshes", "points") or not isinstance(name, str) or name not in names:
        raise Clip2PointError(f"unknown example {str(name)[:40]!r}; choose one of {', '.join(names)}")
    path = EXAMPLES_DIR / kind / f"{name}.ply"  # a listed name: never a path outside examples/
    if not path.is_file():
        raise Clip2PointError(f"example {name!r} has no {kind} file; choose one of {', '.join(names)}")
    return path


#: Class-name presets offered by the UI: the core's sets plus the 14 example objects.
CLASS_PRESETS: dict[str, list[str]] = {**{k: list(v) for k, v in CLASS_SETS.items()}, "examples": example_names()}


@functools.lru_cache(maxsize=4)
def example_thumbnails(size: int = 144) -> tuple[tuple[np.ndarray, str], ...]:
    """(uint8 RGB image, name) of every example mesh seen from above-front-right (cached)."""
    from clip2point.render import ViewSet, render_mesh_views

    view = ViewSet.custom([25.0], [35.0])
    thumbs = []
    for name in example_names():
        img = render_mesh_views(load_mesh(example_path(name)), view, size, antialias=2)[0]
        thumbs.append(((img.numpy() * 255).round().astype(np.uint8), name))
    return tuple(thumbs)


def find_data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The ModelNet data folder: ``explicit``, else ``$CLIP2POINT_DATA``, else ``../shared/data``.

    ``../shared/data`` is looked up beside the repository and beside the working directory.
    Returns None when none of them is a folder.
    """
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit).expanduser())
    elif os.environ.get("CLIP2POINT_DATA"):
        candidates.append(Path(os.environ["CLIP2POINT_DATA"]).expanduser())
    else:
        candidates += [REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    return next((c for c in candidates if c.is_dir()), None)


# ----------------------------------------------------------------------------------------------
# models


def resolve_device(device: str | None) -> str:
    """"auto"/None → "cuda" when available, else "cpu"; anything else is returned unchanged."""
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


@functools.lru_cache(maxsize=16)
def model_image_size(model_name: str) -> int:
    """Input size of a model's visual tower from its open_clip config (no weights loaded)."""
    from clip2point.backbone import _open_clip

    cfg = _open_clip().get_model_config(model_name) or {}
    size = cfg.get("vision_cfg", {}).get("image_size", 224)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


@dataclass(frozen=True)
class ModelSpec:
    """Which backbone to use: what ``load_backbone`` gets, plus an optional depth encoder file.

    Attributes:
        model_name: open_clip architecture ("ViT-B-32"; "tiny-ViT-test" for tests).
        weights: None (search the usual places, random if none), "random", a tag or a file.
        device: "auto", "cpu", "cuda", "cuda:1", ...
        depth_encoder: a CLIP2Point depth-encoder file to offer from the start, or None.
    """

    model_name: str = DEFAULT_MODEL
    weights: str | None = None
    device: str = "auto"
    depth_encoder: str | None = None

    @property
    def key(self) -> tuple[str, str | None, str]:
        """Identity of the backbone (the depth encoder is cached separately)."""
        return (self.model_name, self.weights, resolve_device(self.device))


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
    """A CLIP2Point depth encoder loaded for one backbone (shared, keyed by file content)."""

    module: torch.nn.Module
    name: str
    path: str
    digest: str


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
    """

    level: str
    model_name: str
    device: str
    weights: str
    encoder: str
    detail: str = ""
    loaded: bool = False

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


def _describe_source(source) -> str:
    """A WeightsSource in words."""
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
        backbone = load_backbone(spec.model_name, spec.weights, device)
    except WeightsNotFoundError as err:
        reason = str(err)
    except CheckpointError as err:
        if spec.weights is not None:  # the user named this file: tell them, do not hide it
            raise
        reason = f"the weights file that was found could not be used: {err}"
    if reason is not None:
        log.warning("no usable CLIP weights (%s); loading random weights, scores are meaningless", reason)
        backbone = load_backbone(spec.model_name, "random", device)
    seconds = time.perf_counter() - t0
    log.info("loaded %s in %.1f s", backbone.describe(), seconds)
    return LoadedModel(backbone, spec, reason, seconds)


def _file_digest(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class _Pending:
    """One caller's images waiting in an :class:`EncodeBatcher`."""

    __slots__ = ("key", "images", "encode", "result", "error", "done")

    def __init__(self, key: tuple, images: torch.Tensor, encode: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.key, self.images, self.encode = key, images, encode
        self.result: torch.Tensor | None = None
        self.error: BaseException | None = None
        self.done = False


class EncodeBatcher:
    """One encoder pass at a time, in arrival order, optionally batching concurrent requests.

    Leader/follower, no extra thread: callers that arrive while a pass runs wait; when it ends,
    one of them encodes what queued up meanwhile (same encoder, up to ``max_images`` images; the
    oldest request always goes) and hands each caller its rows. A lone request is encoded at
    once. An error fails only its own pass.

    ``max_images=1`` (the default) encodes one request per pass, first come first served. On a
    2-core CPU batching did not raise throughput (10 clients: 1.3–1.6 req/s either way, within
    run-to-run noise) and made the slowest requests slower (p95 7.8–10.3 s batched vs 6.3–8.1 s;
    ``benchmarks/bench_app.py --batch-images``), so it is meant for GPUs, where one pass over many
    images costs about as much as one over a few.

    Attributes:
        batches, images: how many passes ran and how many images they encoded.
    """

    def __init__(self, max_images: int = 1) -> None:
        self.max_images = int(max_images)
        self._cv = threading.Condition()
        self._pending: list[_Pending] = []
        self._running = False
        self.batches = 0
        self.images = 0

    def encode(self, key: tuple, images: torch.Tensor, encode: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``encode(images)`` for (N, ...) images, possibly batched with other callers of the same ``key``."""
        item = _Pending(key, images, encode)
        with self._cv:
            self._pending.append(item)
            while not item.done:
                if self._running:
                    self._cv.wait()
                    continue
                self._running = True
                batch = self._take()
                self._cv.release()
                try:
                    self._run(batch)
                finally:
                    self._cv.acquire()
                    self._running = False
                    self._cv.notify_all()
        if item.error is not None:
            raise item.error
        return item.result

    def _take(self) -> list[_Pending]:
        """Remove and return the next batch: queued items with the first item's key, up to max_images."""
        key, batch, total, rest = self._pending[0].key, [], 0, []
        for it in self._pending:
            n = len(it.images)
            if it.key == key and (not batch or total + n <= self.max_images):
                batch.append(it)
                total += n
            else:
                rest.append(it)
        self._pending = rest
        return batch

    def _run(self, batch: list[_Pending]) -> None:
        try:
            feats = batch[0].encode(torch.cat([it.images for it in batch]))
            start = 0
            for it in batch:
                it.result = feats[start : start + len(it.images)].clone()
                start += len(it.images)
            self.batches += 1
            self.images += start
        except BaseException as err:  # noqa: BLE001 - handed to every caller of this batch
            for it in batch:
                it.error = err
        finally:
            for it in batch:
                it.done = True


#: Shapes of one-file-per-shape dataset layouts (OFF meshes) kept in memory per split.
DATASET_SHAPE_CACHE = 64


class _LRUCache(OrderedDict):
    """A dict that keeps its ``maxsize`` most recently used items (for a dataset's per-shape cache)."""

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self.maxsize = int(maxsize)
        self._lock = threading.RLock()

    def __contains__(self, key) -> bool:  # a hit becomes the newest, so a get right after it finds it
        with self._lock:
            if not super().__contains__(key):
                return False
            self.move_to_end(key)
            return True

    def __getitem__(self, key):
        with self._lock:
            value = super().__getitem__(key)
            self.move_to_end(key)
            return value

    def __setitem__(self, key, value) -> None:
        with self._lock:
            super().__setitem__(key, value)
            self.move_to_end(key)
            while len(self) > self.maxsize:
                self.popitem(last=False)


class ModelRegistry:
    """Process-wide cache of heavy objects, safe to use from many threads.

    Backbones are keyed by :attr:`ModelSpec.key`, depth encoders by (backbone, file content),
    datasets by (folder, name, split, up). Each is built once, on first use; concurrent first
    requests for the same object wait for one load instead of loading twice.
    """

    def __init__(self) -> None:
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

    def model(self, spec: ModelSpec, progress: Progress = _no_progress) -> LoadedModel:
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
            digest = _file_digest(real)
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
        from clip2point.backbone import load_depth_encoder

        if not Path(path).is_file():
            raise CheckpointError(f"depth encoder file {path} not found; check the path")
        try:
            digest = self.file_digest(path)
        except OSError as err:
            raise CheckpointError(f"depth encoder file {Path(path).name} cannot be read ({err.strerror or err}); "
                                  "check its permissions") from err
        model = self.model(spec)

        def build() -> DepthEncoderHandle:
            module = load_depth_encoder(path, model.backbone.model.visual).to(model.backbone.device)
            return DepthEncoderHandle(module, Path(path).name, str(path), digest)

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
            ds = open_dataset(name, data_dir, split, num_points=IMAGE_VIEW_POINTS, up=up)
            if isinstance(getattr(ds, "_cache", None), dict):  # per-shape cache of lazy (file-per-shape) layouts
                ds._cache = _LRUCache(DATASET_SHAPE_CACHE)
            return ds

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


#: The registry every session shares unless given another one.
REGISTRY = ModelRegistry()


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


def available_datasets(data_dir: str | os.PathLike | None, registry: ModelRegistry = REGISTRY) -> list[str]:
    """Names of the ModelNet datasets whose test split opens in ``data_dir`` (empty if None)."""
    if data_dir is None:
        return []
    found = []
    for name in _DATASET_NAMES:
        try:
            registry.dataset(data_dir, name, "test")
            found.append(name)
        except Clip2PointError as err:
            log.info("dataset %s not available in %s: %s", name, data_dir, err)
    return found


def dataset_class_counts(dataset) -> list[tuple[str, int]]:
    """(class name, number of shapes) of the classes present in a dataset, in label order."""
    counts = np.bincount(dataset.labels, minlength=len(dataset.class_names))
    return [(c, int(n)) for c, n in zip(dataset.class_names, counts) if n]


def dataset_indices(dataset, class_name: str | None) -> np.ndarray:
    """Dataset indices of the shapes of one class (all shapes for None/"" /"all")."""
    if not class_name or class_name == "all":
        return np.arange(len(dataset))
    if class_name not in dataset.class_names:
        raise Clip2PointError(f"class {class_name!r} is not in this dataset")
    return np.flatnonzero(dataset.labels == dataset.class_names.index(class_name))


# ----------------------------------------------------------------------------------------------
# shapes and views


@dataclass(frozen=True)
class ShapeSource:
    """Where a shape comes from, enough to load it again with other settings.

    Attributes:
        kind: "file" (an upload or any path), "example" (a name) or "dataset".
        path: the file path (kind "file"), the example name (kind "example").
        index: shape index in a multi-shape file, or the dataset index.
        dataset, split, data_dir: for kind "dataset".
        display: a name for people (the uploaded file's name).
    """

    kind: str
    path: str = ""
    index: int = 0
    dataset: str = ""
    split: str = "test"
    data_dir: str = ""
    display: str = ""

    @classmethod
    def file(cls, path: str | os.PathLike, index: int = 0, display: str = "") -> ShapeSource:
        return cls("file", str(path), int(index), display=display or Path(path).name)

    @classmethod
    def example(cls, name: str) -> ShapeSource:
        example_path(name)  # validates the name
        return cls("example", name, display=f"{name} (example mesh)")

    @classmethod
    def from_dataset(cls, data_dir: str | os.PathLike, dataset: str, split: str, index: int) -> ShapeSource:
        return cls("dataset", index=int(index), dataset=dataset, split=split, data_dir=str(data_dir))


@dataclass
class Shape:
    """A loaded shape, ready to render.

    Attributes:
        name: for people ("chair.ply", "modelnet10 test #12 · chair_0890").
        points: (N, 3) float32 y-up points that are rendered and classified.
        colors: (N, 3) colours of ``points`` in [0, 1], or None.
        mesh: the triangle mesh (y-up) when the input was a mesh: its CLIP image views are ray-cast.
        dense_points, dense_colors, dense_normals: up to :data:`IMAGE_VIEW_POINTS` points for the
            CLIP image views of point clouds (None for meshes).
        up: the up axis the file was read with ("y" or "z").
        num_input_points: points (or mesh vertices) in the file.
        true_label: the dataset label, for dataset shapes.
        source: how to load it again; ``num_points``: the requested count.
        key: identity for caches.
        seconds: load time.
    """

    name: str
    points: np.ndarray
    colors: np.ndarray | None
    mesh: Mesh | None
    dense_points: np.ndarray | None
    dense_colors: np.ndarray | None
    dense_normals: np.ndarray | None
    up: str
    num_input_points: int
    true_label: str | None
    source: ShapeSource
    num_points: int
    key: str
    seconds: float = 0.0

    @property
    def kind(self) -> str:
        return "mesh" if self.mesh is not None else "points"


@dataclass
class RenderedViews:
    """One shape seen from one view set.

    Attributes:
        depth: (V, H, W) float32 depth images in [0, 1] (near dark, background 1.0): CLIP input.
        images: (V, H, W, 3) uint8 CLIP image views from the same cameras (background white), or
            None when they were not asked for.
        labels: "elev 0°, azim 90°" per view.
        view_set, radius, image_size: render settings.
        seconds: time per step ("depth", "images").
        key: identity for the feature cache.
        cache: free space for front ends (e.g. encoded PNGs).
    """

    depth: torch.Tensor
    images: np.ndarray | None
    labels: list[str]
    view_set: str
    radius: float
    image_size: int
    seconds: dict[str, float]
    key: tuple
    cache: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.labels)


def _check_num_points(num_points: int) -> int:
    n = _as_int(num_points, "number of points")
    if n < 16:
        raise Clip2PointError(f"number of points must be at least 16, got {n}")
    return n


def _check_up(up: str) -> str:
    if up not in ("y", "z"):
        raise Clip2PointError(f"up axis must be 'y' or 'z', got {up!r}")
    return up


#: Kept for callers of the old private names (the code now lives in :mod:`ui.loading`).
_file_errors = file_errors


def _load_file_shape(path: Path, index: int, num_points: int, up: str, display: str,
                     limits: AppLimits | None = None) -> tuple:
    """(points, colors, mesh, dense (points, colors, normals), num_input) of a file.

    See :func:`ui.loading.read_file_shape`. With ``limits``, the file is read in a child process
    under ``limits.load_timeout_s`` and ``limits.load_memory_mb`` (``clip2point.sandbox.call_limited``),
    so a file that makes a reader hang or allocate without bound fails with a clear error and the
    server keeps its memory; without, it is read in this process.

    Raises:
        PointCloudFileError, UnsupportedFormatError: unreadable, corrupt or unsupported file.
        Clip2PointError: the time or memory limit was hit (the sandbox's error, naming the limit).
    """
    args = (str(path), int(index), int(num_points), up, display or path.name, IMAGE_VIEW_POINTS)
    if limits is None:
        return read_file_shape(*args)
    from clip2point.errors import ResourceLimitError, SandboxError
    from clip2point.sandbox import call_limited

    name = display or path.name
    t0 = time.perf_counter()
    try:
        return call_limited(read_file_shape, *args, timeout_s=float(limits.load_timeout_s),
                            memory_mb=int(limits.load_memory_mb))
    except (ResourceLimitError, SandboxError) as err:  # say which file, in the user's words
        what = f"{read_file_shape.__module__}.{read_file_shape.__qualname__}"
        msg = str(err).replace(what, "reading it")
        log.warning("upload %s refused: %s", name, msg)
        raise type(err)(f"{name}: {msg}") from None
    finally:
        log.debug("sandboxed read of %s: %.2f s", name, time.perf_counter() - t0)


def load_shape(
    source: ShapeSource,
    num_points: int = DEFAULT_NUM_POINTS,
    up: str | None = "y",
    registry: ModelRegistry = REGISTRY,
    limits: AppLimits | None = None,
) -> Shape:
    """Load a shape from a file, an example or a dataset.

    Args:
        source: what to load.
        num_points: points to classify (farthest point sampling for files; the first N for
            dataset shapes, as ModelNet loaders do).
        up: the file's up axis ("y"/"z"); for datasets None means the dataset's own axis.
        registry: where datasets are cached.
        limits: the app's limits: bounds ``num_points`` and the shape index, and reads files of
            kind "file" (uploads) in a child process with a time and memory limit. None: no
            bounds beyond the core's, files read in this process (scripts, notebooks).

    Raises:
        PointCloudFileError, UnsupportedFormatError: unreadable or unsupported file.
        Clip2PointError, DatasetError: bad settings, dataset or index; a limit exceeded.
    """
    t0 = time.perf_counter()
    num_points = _check_num_points(num_points) if limits is None else limits.check_num_points(num_points)
    index = _as_int(source.index, "shape index") if limits is None else limits.check_shape_index(source.index)
    true_label = None
    if source.kind == "dataset":
        ds = registry.dataset(source.data_dir, source.dataset, source.split)  # the data's own up axis
        if up is not None and _check_up(up) != ds.up:  # the user overrides it
            ds = registry.dataset(source.data_dir, source.dataset, source.split, up)
        if not 0 <= index < len(ds):
            raise Clip2PointError(f"shape index {index} is out of range: {source.dataset} {source.split} has "
                                  f"{len(ds)} shapes (0 to {len(ds) - 1})")
        pts, label = ds[index]
        all_points = np.asarray(pts)
        points, colors, mesh, dense = all_points[:num_points], None, None, (all_points, None, None)
        true_label, up, num_input = ds.class_names[label], ds.up, len(all_points)
        name = f"{source.dataset} {source.split} #{index} · {ds.shape_name(index)}"
    else:
        up = _check_up(up or "y")
        if index < 0:
            raise Clip2PointError(f"shape index must be 0 or more, got {index}")
        path = example_path(source.path) if source.kind == "example" else Path(source.path)
        file_limits = limits if source.kind == "file" else None  # the examples are the repository's own files
        points, colors, mesh, dense, num_input = _load_file_shape(path, index, num_points, up, source.display,
                                                                  file_limits)
        name = source.display or path.name
        if source.kind == "file" and path.suffix.lower() in MULTI_SHAPE_EXTENSIONS and index:
            name += f" #{index}"
    key = hashlib.sha1(repr((source, num_points, up)).encode()).hexdigest()[:16]
    return Shape(name, points, colors, mesh, *dense, up, num_input, true_label, source, num_points, key,
                 time.perf_counter() - t0)


def render_views(
    shape: Shape, views: str = DEFAULT_VIEWS, radius: float = DEFAULT_RADIUS, image_size: int = 224, images: bool = True
) -> RenderedViews:
    """Depth maps (what CLIP sees) and CLIP image views (what an RGB camera sees) of a shape.

    Depth: ``clip2point.render.render_depth`` (REFERENCE §2). Image views: a mesh is ray-cast
    and shaded from the same cameras (perspective at 2·dist, as the released pre-training
    renders); a point cloud is splatted from the depth cameras, coloured by its colours or
    shaded by its normals. ``images=False`` skips the image views (scripts that only classify).

    Raises:
        Clip2PointError: unknown view set, bad radius, degenerate points.
    """
    from clip2point.render import get_view_set, render_depth, render_mesh_views, render_point_views

    view_set = get_view_set(str(views))
    radius = float(radius)
    if not 16 <= int(image_size) <= 1024:
        raise Clip2PointError(f"image size must lie in 16..1024 pixels, got {image_size}")
    if not 0.0 < radius <= 0.2:
        raise Clip2PointError(f"splat radius must lie in (0, 0.2] NDC units, got {radius}")
    t0 = time.perf_counter()
    depth = render_depth(shape.points, view_set, image_size, radius)[0].cpu()
    t1 = time.perf_counter()
    rgb = None
    if images and shape.mesh is not None:
        rgb = render_mesh_views(shape.mesh, view_set, image_size)
    elif images:
        rgb = render_point_views(shape.dense_points, shape.dense_colors, shape.dense_normals, view_set, image_size, radius)
    if rgb is not None:  # display only: 8 bits per channel keep a session's memory small
        rgb = (rgb.cpu().numpy() * 255.0).round().astype(np.uint8)
    t2 = time.perf_counter()
    return RenderedViews(
        depth, rgb, view_set.labels(), str(views), radius, int(image_size),
        {"depth": t1 - t0, "images": t2 - t1}, (shape.key, str(views), radius, int(image_size)),
    )


def encode_views(model: LoadedModel, views: RenderedViews, depth_encoder: DepthEncoderHandle | None = None,
                 batcher: EncodeBatcher | None = None) -> torch.Tensor:
    """(V, D) L2-normalised features of the depth views, by CLIP's tower or a depth encoder.

    With a ``batcher``, concurrent calls are encoded together (same numbers, fewer passes).
    """
    from clip2point.render import clip_normalize

    backbone = model.backbone
    images = clip_normalize(views.depth.to(backbone.device))  # (V, 3, H, W)
    tower = depth_encoder.module if depth_encoder is not None else None  # None: CLIP's visual tower

    def encode(x: torch.Tensor) -> torch.Tensor:
        return backbone.encode_images(x, tower)

    if batcher is None:
        return encode(images)
    key = (model.spec.key, depth_encoder.digest if depth_encoder else "clip")
    return batcher.encode(key, images, encode)


def score_features(model: LoadedModel, features: torch.Tensor, classes: str | Sequence[str], template: str,
                   views: RenderedViews):
    """Zero-shot scores of one shape's (V, D) view features (CLIP2Point §4.2, the core's code path).

    Returns:
        A :class:`clip2point.zeroshot.ZeroShotResult` with B = 1 (no depth images attached).

    Raises:
        Clip2PointError / UnknownClassSetError: empty or duplicated classes, a template without ``{}``.
    """
    from clip2point.zeroshot import score_views

    names = parse_classes(classes)
    backbone = model.backbone
    return score_views(features, backbone.text_features(names, template), backbone.logit_scale, names, views.labels)


# ----------------------------------------------------------------------------------------------
# a user's session


class Session:
    """One user's state: shape → views → cached view features → scores.

    Example:
        >>> s = Session(ModelSpec("tiny-ViT-test", "random"))
        >>> s.load(ShapeSource.example("chair")); s.render("6")
        >>> s.classify("chair,table,lamp").top(1)

    Attributes:
        spec: the backbone to use (shared through ``registry``).
        encoder: "clip" or "depth" (the latter needs :meth:`load_depth_encoder` or ``spec.depth_encoder``).
        shape, views, result: the current shape, its views and its latest scores.
        counters: how often each step really ran ("load", "render", "encode", "score").
        limits: the app's :class:`AppLimits`, checked by :meth:`load`, :meth:`render` and
            :meth:`classify` (uploads are then read in a time- and memory-limited child process);
            None (scripts, notebooks): only the core's checks.
    """

    def __init__(self, spec: ModelSpec | None = None, registry: ModelRegistry = REGISTRY,
                 limits: AppLimits | None = None) -> None:
        self.spec = spec or ModelSpec()
        self.registry = registry
        self.limits = limits
        self.encoder = "depth" if self.spec.depth_encoder else "clip"
        self.depth_encoder_path: str | None = self.spec.depth_encoder
        self.shape: Shape | None = None
        self.views: RenderedViews | None = None
        self.result = None
        self.classes: list[str] = []
        self.template = DEFAULT_TEMPLATE
        self.counters: Counter[str] = Counter()
        #: wall time of the latest "encode" (only when it really ran) and "score" steps.
        self.seconds: dict[str, float] = {}
        self._features: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._depth_handle: DepthEncoderHandle | None = None  # the loaded encoder of depth_encoder_path

    # -- model ------------------------------------------------------------------------------
    def model(self, progress: Progress = _no_progress) -> LoadedModel:
        """The shared backbone (loaded on first use)."""
        return self.registry.model(self.spec, progress)

    def image_size(self) -> int:
        """The backbone's input size (from the config when the model is not loaded yet)."""
        loaded = self.registry.loaded(self.spec)
        return loaded.backbone.image_size if loaded else model_image_size(self.spec.model_name)

    def depth_encoder(self) -> DepthEncoderHandle | None:
        """The depth encoder in use (None when the CLIP visual tower encodes the views)."""
        if self.encoder != "depth":
            return None
        if not self.depth_encoder_path:
            raise Clip2PointError("no CLIP2Point depth encoder loaded; upload one (best_eval.pth) first")
        handle = self._depth_handle
        if handle is None or handle.path != str(self.depth_encoder_path):  # kept: no re-hash per re-score
            handle = self._depth_handle = self.registry.depth_encoder(self.spec, self.depth_encoder_path)
        return handle

    def load_depth_encoder(self, path: str | os.PathLike) -> DepthEncoderHandle:
        """Load a CLIP2Point depth-encoder file and switch to it.

        Raises:
            CheckpointError: unreadable file, or one that does not fit the backbone.
        """
        handle = self.registry.depth_encoder(self.spec, path)
        self.depth_encoder_path, self.encoder, self._depth_handle = str(path), "depth", handle
        return handle

    def set_encoder(self, encoder: str) -> None:
        """Encode the depth views with "clip" (CLIP visual tower) or "depth" (CLIP2Point).

        Raises:
            Clip2PointError: unknown name, or "depth" before a depth encoder was loaded.
        """
        if encoder not in ENCODERS:
            raise Clip2PointError(f"encoder must be one of {', '.join(ENCODERS)}, got {encoder!r}")
        if encoder == "depth" and not self.depth_encoder_path:
            raise Clip2PointError("no CLIP2Point depth encoder loaded; upload one (best_eval.pth, .pth/.safetensors) first")
        self.encoder = encoder

    def weights_status(self) -> WeightsStatus:
        """The banner's content; resolves (never loads) the weights if the model is not loaded.

        Before the model is loaded the weights are looked up once per server without network
        access (:meth:`ModelRegistry.probe`); when nothing is found locally but a download may
        still work on first use, the level is "pending".
        """
        loaded = self.registry.loaded(self.spec)
        device = resolve_device(self.spec.device)
        encoder = ENCODERS[self.encoder]
        if self.encoder == "depth" and self.depth_encoder_path:
            encoder += f" ({Path(self.depth_encoder_path).name})"
        if loaded is not None:
            source, reason = loaded.backbone.weights, loaded.fallback_reason
        else:
            source, reason = self.registry.probe(self.spec)
            if source is None and _may_download(self.spec):
                return WeightsStatus("pending", self.spec.model_name, device,
                                     "not found on this machine; a download is tried when the model first loads",
                                     encoder, reason or "", False)
        if source is None or source.is_random:
            detail = reason or "random weights were asked for (--weights random)"
            return WeightsStatus("random", self.spec.model_name, device, "random initialisation", encoder, detail,
                                 loaded is not None)
        return WeightsStatus("ok", self.spec.model_name, device, _describe_source(source), encoder, "", loaded is not None)

    # -- shape and views --------------------------------------------------------------------
    def load(self, source: ShapeSource, num_points: int = DEFAULT_NUM_POINTS, up: str | None = "y") -> Shape:
        """Load a shape (see :func:`load_shape`) and make it current; forgets old views and scores."""
        shape = load_shape(source, num_points, up, self.registry, self.limits)
        self.counters["load"] += 1
        self.shape, self.views, self.result, self.seconds = shape, None, None, {}
        return shape

    def render(self, views: str = DEFAULT_VIEWS, radius: float = DEFAULT_RADIUS, images: bool = True) -> RenderedViews:
        """Render the current shape (cached: the same settings return the same views)."""
        shape = self._need_shape()
        if self.limits is not None:
            views, radius = self.limits.check_views(views), self.limits.check_radius(radius)
        size = self.image_size()
        old = self.views
        if old is not None and old.key == (shape.key, str(views), float(radius), size) and (old.images is not None or not images):
            return old
        self.views = render_views(shape, views, radius, size, images)
        self.counters["render"] += 1
        self.result, self.seconds = None, {}
        return self.views

    @property
    def scores_due(self) -> bool:
        """Views are rendered but not scored yet (what a front end's second step should do)."""
        return self.views is not None and self.result is None

    def _need_shape(self) -> Shape:
        if self.shape is None:
            raise Clip2PointError("no shape loaded yet; upload a file or pick an example first")
        return self.shape

    # -- features and scores ----------------------------------------------------------------
    def features(self, progress: Progress = _no_progress) -> torch.Tensor:
        """(V, D) features of the current views with the current encoder (cached per shape/views/encoder)."""
        if self.views is None:
            self.render()
        model = self.model(progress)
        enc = self.depth_encoder()
        key = (self.views.key, self.spec.key, enc.digest if enc else "clip")
        if key in self._features:
            self._features.move_to_end(key)
            return self._features[key]
        progress(0.5, f"encoding {len(self.views)} views with the {ENCODERS[self.encoder]}…")
        t0 = time.perf_counter()
        feats = encode_views(model, self.views, enc, self.registry.batcher)
        self.seconds["encode"] = time.perf_counter() - t0
        self.counters["encode"] += 1
        self._features[key] = feats
        while len(self._features) > _FEATURE_CACHE_SIZE:
            self._features.popitem(last=False)
        return feats

    def classify(self, classes: str | Sequence[str], template: str = DEFAULT_TEMPLATE,
                 progress: Progress = _no_progress):
        """Zero-shot scores of the current shape (a ``ZeroShotResult``, B = 1).

        Re-scoring with other classes or another template reuses the cached view features
        (and the backbone's cached text features): nothing is re-rendered or re-encoded.
        """
        if self.limits is not None:
            names, template = self.limits.check_classes(classes), self.limits.check_template(template)
        else:
            names = parse_classes(classes)
        feats = self.features(progress)
        progress(0.9, "scoring…")
        t0 = time.perf_counter()
        self.result = score_features(self.model(), feats, names, template, self.views)
        self.seconds["score"] = time.perf_counter() - t0
        self.classes, self.template = names, template
        self.counters["score"] += 1
        return self.result


def classify_file(
    path: str | os.PathLike,
    classes: str | Sequence[str],
    template: str = DEFAULT_TEMPLATE,
    views: str = DEFAULT_VIEWS,
    up: str = "y",
    num_points: int = DEFAULT_NUM_POINTS,
    spec: ModelSpec | None = None,
    registry: ModelRegistry = REGISTRY,
    index: int = 0,
    limits: AppLimits | None = None,
) -> dict[str, float]:
    """Classify one file: ``{class: probability}``, most probable first (sums to 1).

    ``limits`` (the app's): bounds every argument and reads the file in a limited child process.

    Raises:
        PointCloudFileError, UnsupportedFormatError, Clip2PointError: bad file or arguments
            (RequestLimitError: beyond ``limits``).
    """
    if path is None or not str(path):
        raise PointCloudFileError("no file given; pass a point-cloud or mesh file")
    if limits is not None:  # cheap checks first: nothing is read for a request that will be refused
        limits.check_classes(classes)
        limits.check_template(template)
        limits.check_views(views)
        limits.check_num_points(num_points)
        _check_up(up)
    session = Session(spec, registry, limits)
    session.load(ShapeSource.file(path, index), num_points, up)
    session.render(views, images=False)
    result = session.classify(classes, template)
    return dict(result.top(len(result.classes)))
