"""One user's session of the app, without any UI: shape → views → cached view features → scores.

Every front end (the Gradio app in :mod:`ui.app`, the Jupyter widgets in :mod:`ui.widgets`,
scripts) drives the same objects:

* :class:`Session` — one user's state: the current :class:`~ui.shapes.Shape`, its
  :class:`~ui.shapes.RenderedViews` (depth maps + CLIP image views from the same cameras) and a
  small cache of encoded view features, so changing the classes or the prompt re-scores without
  re-rendering or re-encoding anything (CLIP2Point zero-shot, Huang et al., ICCV 2023, §4.2:
  per-view logits summed over views). A shape another session (or an earlier run of the app,
  the CLI, a notebook) already encoded with the same encoder, weights, precision, views and
  render settings is read from the persistent view-feature cache (``clip2point.viewcache``,
  ``registry.view_cache``) instead of encoded. Heavy objects come from the shared
  :data:`~ui.registry.REGISTRY`; a Session built with the app's :class:`~ui.limits.AppLimits`
  checks every request against them, and uploads are then read by
  :func:`ui.loading.read_file_shape` in a time- and memory-limited child process.
* :func:`classify_file` — the stateless one-call path (file + class names → probabilities).
* :func:`encode_views`, :func:`score_features` — the two steps a Session runs, for callers that
  hold their own features.

Where the rest lives: :mod:`ui.registry` (models, depth encoders, datasets, the encode batcher),
:mod:`ui.shapes` (examples, datasets, loading and rendering shapes), :mod:`ui.limits` (what a
request may ask for), :mod:`ui.defaults`. Their public names are re-exported here, as before.

Nothing here imports a UI toolkit. Long steps report through an optional
``progress(fraction, message)`` callback.
"""
from __future__ import annotations

import logging
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch

from clip2point.backbone import model_image_size
from clip2point.classes import parse_classes
from clip2point.errors import Clip2PointError, PointCloudFileError
from clip2point.viewcache import ViewFeatureCache, shape_digest
from ui.batcher import EncodeBatcher
from ui.defaults import (
    DEFAULT_CLASS_SET,
    DEFAULT_EXAMPLE,
    DEFAULT_MODEL,
    DEFAULT_NUM_POINTS,
    DEFAULT_RADIUS,
    DEFAULT_TEMPLATE,
    DEFAULT_VIEWS,
    ENCODERS,
    EXAMPLES_DIR,
    REPO_ROOT,
    UPLOAD_EXTENSIONS,
    VIEW_SETS,
)
from ui.limits import AppLimits, RequestLimitError, check_up, parse_templates
from ui.registry import (
    REGISTRY,
    DepthEncoderHandle,
    LoadedModel,
    ModelRegistry,
    ModelSpec,
    Progress,
    WeightsStatus,
    choose_view_cache,
    no_progress,
    probe_weights,
    resolve_device,
    warm_up,
)
from ui.shapes import (
    CLASS_PRESETS,
    RenderedViews,
    Shape,
    ShapeSource,
    available_datasets,
    dataset_class_counts,
    dataset_indices,
    example_names,
    example_path,
    example_thumbnails,
    find_data_dir,
    load_shape,
    render_views,
    turn_shape,
)

log = logging.getLogger(__name__)

__all__ = [
    "Session", "CacheLookup", "classify_file", "encode_views", "score_features", "FEATURE_CACHE_SIZE",
    # re-exported from ui.defaults, ui.limits, ui.registry and ui.shapes (their homes)
    "REPO_ROOT", "EXAMPLES_DIR", "DEFAULT_EXAMPLE", "DEFAULT_MODEL", "DEFAULT_TEMPLATE", "DEFAULT_NUM_POINTS",
    "DEFAULT_VIEWS", "DEFAULT_RADIUS", "DEFAULT_CLASS_SET", "VIEW_SETS", "ENCODERS", "CLASS_PRESETS",
    "UPLOAD_EXTENSIONS", "Progress", "EncodeBatcher", "ModelSpec", "LoadedModel", "DepthEncoderHandle", "WeightsStatus",
    "ModelRegistry", "REGISTRY", "ShapeSource", "Shape", "RenderedViews", "AppLimits", "RequestLimitError",
    "example_names", "example_path", "example_thumbnails", "find_data_dir", "available_datasets",
    "dataset_class_counts", "dataset_indices", "load_shape", "render_views", "resolve_device", "probe_weights",
    "warm_up", "model_image_size",
]

#: Encoded view features a session keeps (per shape/views/encoder), most recent first out last.
FEATURE_CACHE_SIZE = 8


def encode_views(model: LoadedModel, views: RenderedViews, depth_encoder: DepthEncoderHandle | None = None,
                 batcher: EncodeBatcher | None = None, normalize: bool = True) -> torch.Tensor:
    """(V, D) float32 features of the depth views, by CLIP's tower or a depth encoder.

    ``normalize``: L2-normalised (default), or the raw visual-tower outputs (what the persistent
    view-feature cache stores). With a ``batcher``, concurrent calls are encoded together (same
    numbers, fewer passes).
    """
    from clip2point.render import clip_normalize

    backbone = model.backbone
    images = clip_normalize(views.depth.to(backbone.device))  # (V, 3, H, W)
    tower = depth_encoder.module if depth_encoder is not None else None  # None: CLIP's visual tower

    def encode(x: torch.Tensor) -> torch.Tensor:
        return backbone.encode_images(x, tower, normalize=normalize)

    if batcher is None:
        return encode(images)
    key = (model.spec.key, depth_encoder.digest if depth_encoder else "clip", normalize)
    return batcher.encode(key, images, encode)


def score_features(model: LoadedModel, features: torch.Tensor, classes: str | Sequence[str],
                   template: str | Sequence[str], views: RenderedViews):
    """Zero-shot scores of one shape's (V, D) view features (CLIP2Point §4.2, the core's code path).

    ``template``: one template, or several (a prompt ensemble: text features averaged over them,
    ``ClipBackbone.text_features``).

    Returns:
        A :class:`clip2point.zeroshot.ZeroShotResult` with B = 1 (no depth images attached).

    Raises:
        Clip2PointError / UnknownClassSetError / PromptTemplateError: empty or duplicated classes, a
            template without exactly one ``{}``.
    """
    from clip2point.zeroshot import score_views

    names = parse_classes(classes)
    backbone = model.backbone
    return score_views(features, backbone.text_features(names, template), backbone.logit_scale, names, views.labels)


class CacheLookup(NamedTuple):
    """One shape's entry in a persistent view-feature cache: the cache, the settings digest
    (encoder, weights, precision, views, render settings) and the shape's points digest."""

    cache: ViewFeatureCache
    settings: str
    shape: str


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
        counters: how often each step really ran ("load", "render", "encode", "score"), and
            "cached": view features read from the persistent cache instead of encoded.
        cache: the persistent view-feature cache (:attr:`view_cache`): True (default) the
            registry's (``registry.view_cache``), False none, or a ``ViewFeatureCache``.
        limits: the app's :class:`AppLimits`, checked by :meth:`load`, :meth:`render` and
            :meth:`classify` (uploads are then read in a time- and memory-limited child process);
            None (scripts, notebooks): only the core's checks.
    """

    def __init__(self, spec: ModelSpec | None = None, registry: ModelRegistry = REGISTRY,
                 limits: AppLimits | None = None, cache: ViewFeatureCache | bool = True) -> None:
        self.spec = spec or ModelSpec()
        self.registry = registry
        self.limits = limits
        self.cache = cache
        self.encoder = "depth" if self.spec.depth_encoder else "clip"
        self.depth_encoder_path: str | None = self.spec.depth_encoder
        self.shape: Shape | None = None
        self.views: RenderedViews | None = None
        self.result = None
        self.classes: list[str] = []
        self.template = DEFAULT_TEMPLATE
        #: the templates of the latest result (several: a prompt ensemble).
        self.templates: tuple[str, ...] = (DEFAULT_TEMPLATE,)
        self.counters: Counter[str] = Counter()
        #: wall time of the latest "encode" (only when it really ran) and "score" steps.
        self.seconds: dict[str, float] = {}
        self._features: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._depth_handle: DepthEncoderHandle | None = None  # the loaded encoder of depth_encoder_path

    # -- model ------------------------------------------------------------------------------
    def model(self, progress: Progress = no_progress) -> LoadedModel:
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
        """The banner's content (see :meth:`ModelRegistry.weights_status`; never loads the model)."""
        encoder = ENCODERS[self.encoder]
        if self.encoder == "depth" and self.depth_encoder_path:
            encoder += f" ({Path(self.depth_encoder_path).name})"
        return self.registry.weights_status(self.spec, encoder)

    # -- shape and views --------------------------------------------------------------------
    def load(self, source: ShapeSource, num_points: int = DEFAULT_NUM_POINTS, up: str | None = "y") -> Shape:
        """Load a shape (see :func:`load_shape`) and make it current; forgets old views and scores.

        Reloading the current source (other points or up axis) keeps the turns made with :meth:`turn`.
        """
        shape = load_shape(source, num_points, up, self.registry, self.limits)
        if self.shape is not None and self.shape.source == source:
            for axis in self.shape.turns:
                shape = turn_shape(shape, axis)
        self.counters["load"] += 1
        self.shape, self.views, self.result, self.seconds = shape, None, None, {}
        return shape

    def turn(self, axis: str) -> Shape:
        """Turn the current shape by +90° about ``axis`` ("x", "y", "z"; see :func:`ui.shapes.turn_shape`);
        forgets old views and scores. ``axis="reset"`` undoes every turn."""
        shape = self._need_shape()
        if axis == "reset":
            if shape.turns:
                shape = load_shape(shape.source, shape.num_points, shape.up, self.registry, self.limits)
        else:
            shape = turn_shape(shape, axis)
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
    @property
    def view_cache(self) -> ViewFeatureCache | None:
        """The persistent view-feature cache this session reads first and fills (see ``cache``), or None."""
        return choose_view_cache(self.cache, self.registry)

    def features(self, progress: Progress = no_progress) -> torch.Tensor:
        """(V, D) L2-normalised features of the current views with the current encoder.

        Kept per shape/views/encoder in the session (:data:`FEATURE_CACHE_SIZE`); a shape seen
        before by another session is read from the persistent :attr:`view_cache` (keyed by encoder,
        weights, precision, views, render settings and the points) instead of encoded again.
        """
        if self.views is None:
            self.render()
        model = self.model(progress)
        enc = self.depth_encoder()
        key = (self.views.key, self.spec.key, enc.digest if enc else "clip")
        if key in self._features:
            self._features.move_to_end(key)
            return self._features[key]
        t0 = time.perf_counter()
        lookup = self._cache_lookup(model, enc)
        raw = None if lookup is None else lookup.cache.get(lookup.settings, lookup.shape, len(self.views))
        if raw is not None:
            self.seconds["cached features"] = time.perf_counter() - t0
            self.counters["cached"] += 1
        else:
            progress(0.5, f"encoding {len(self.views)} views with the {ENCODERS[self.encoder]}…")
            raw = encode_views(model, self.views, enc, self.registry.batcher, normalize=False)
            self.seconds["encode"] = time.perf_counter() - t0
            self.counters["encode"] += 1
            if lookup is not None:
                lookup.cache.put(lookup.settings, lookup.shape, raw)
        feats = torch.nn.functional.normalize(raw.to(model.backbone.device), dim=-1)
        self._features[key] = feats
        while len(self._features) > FEATURE_CACHE_SIZE:
            self._features.popitem(last=False)
        return feats

    def _cache_lookup(self, model: LoadedModel, enc: DepthEncoderHandle | None) -> CacheLookup | None:
        """Where the current views' features live in the persistent cache (None: no cache, or not keyable)."""
        cache = self.view_cache
        if cache is None or self.views.renderer is None or (enc is not None and enc.backbone is None):
            return None
        settings = cache.settings_key(enc.backbone if enc else model.backbone, "depth" if enc else "clip",
                                      self.views.renderer)
        return None if settings is None else CacheLookup(cache, settings, shape_digest(self._need_shape().points))

    def classify(self, classes: str | Sequence[str], template: str | Sequence[str] = DEFAULT_TEMPLATE,
                 progress: Progress = no_progress):
        """Zero-shot scores of the current shape (a ``ZeroShotResult``, B = 1).

        ``template``: one template with ``{}``, several (a list, or text with one per line: a prompt
        ensemble), or a preset name of ``clip2point.prompts.TEMPLATE_PRESETS`` (see
        :func:`ui.limits.parse_templates`). A failed call leaves no result (``result`` is None), so
        no front end shows scores that do not match what was asked.

        Re-scoring with other classes or another template reuses the cached view features
        (and the backbone's cached text features): nothing is re-rendered or re-encoded.
        """
        try:
            if self.limits is not None:
                names, templates = self.limits.check_classes(classes), self.limits.check_templates(template)
            else:
                names, templates = parse_classes(classes), parse_templates(template)
            feats = self.features(progress)
            progress(0.9, "scoring…")
            t0 = time.perf_counter()
            self.result = score_features(self.model(), feats, names, templates, self.views)
        except BaseException:
            self.result = None  # no result that does not match the request: front ends clear or mark it
            raise
        self.seconds["score"] = time.perf_counter() - t0
        self.classes, self.templates = names, templates
        self.template = "\n".join(templates)
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
        limits.check_templates(template)
        limits.check_views(views)
        limits.check_num_points(num_points)
        check_up(up)
    session = Session(spec, registry, limits)
    session.load(ShapeSource.file(path, index), num_points, up)
    session.render(views, images=False)
    result = session.classify(classes, template)
    return dict(result.top(len(result.classes)))
