"""Zero-shot classification of point clouds: render views, encode, compare with class prompts.

CLIP2Point's released zero-shot protocol (Huang et al., ICCV 2023, §4.2): L2-normalised per-view
image features · L2-normalised text features of ``"image of a {class}"`` give per-view logits;
the shape's logits are their sum over views (equal weights, no post-search).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .backbone import DEFAULT_TEMPLATE, ClipBackbone
from .classes import parse_classes
from .errors import Clip2PointError
from .prompts import as_templates
from .render import DepthRenderer, RasterSettings, ViewSet, clip_normalize, get_view_set
from .viewcache import ViewFeatureCache, encode_point_views

__all__ = ["DEFAULT_TEMPLATE", "ClassScores", "ScoredShapes", "ZeroShotClassifier", "ZeroShotResult", "score_views"]


@dataclass
class ClassScores:
    """Scores of B shapes against C classes: what every classifier's result holds.

    Attributes:
        classes: the C class names, in score order.
        logits: (B, C) float32 scores (their scale depends on the classifier).
        probs: (B, C) float32 class probabilities (each row sums to 1).
    """

    classes: list[str]
    logits: torch.Tensor
    probs: torch.Tensor

    def top(self, k: int = 5, index: int = 0) -> list[tuple[str, float]]:
        """The k most probable (class, probability) pairs of shape ``index``."""
        p = self.probs[index]
        vals, idx = p.topk(min(k, p.numel()))
        return [(self.classes[i], float(v)) for v, i in zip(vals.tolist(), idx.tolist())]

    def predictions(self) -> list[str]:
        """Predicted class name per shape (argmax of ``logits``)."""
        return [self.classes[i] for i in self.logits.argmax(dim=1).tolist()]

    def as_dict(self, index: int = 0) -> dict:
        """JSON-ready scores of shape ``index``: classes, probs (rounded to 6 digits), the top 5 (class, prob) pairs."""
        return {
            "classes": list(self.classes),
            "probs": [round(float(p), 6) for p in self.probs[index].tolist()],
            "top": [{"class": c, "prob": round(p, 6)} for c, p in self.top(5, index)],
        }


class ScoredShapes:
    """Base of classifier results built on :class:`ClassScores` (held as ``scores``): the read-only
    ``classes``, ``logits``, ``probs`` and :meth:`top` / :meth:`predictions` are the scores'."""

    scores: ClassScores

    @property
    def classes(self) -> list[str]:
        """The C class names, in score order."""
        return self.scores.classes

    @property
    def logits(self) -> torch.Tensor:
        """(B, C) float32 class scores."""
        return self.scores.logits

    @property
    def probs(self) -> torch.Tensor:
        """(B, C) float32 class probabilities."""
        return self.scores.probs

    def top(self, k: int = 5, index: int = 0) -> list[tuple[str, float]]:
        """The k most probable (class, probability) pairs of shape ``index``."""
        return self.scores.top(k, index)

    def predictions(self) -> list[str]:
        """Predicted class name per shape (argmax of ``logits``)."""
        return self.scores.predictions()


@dataclass
class ZeroShotResult(ScoredShapes):
    """Zero-shot scores of B shapes against C classes seen from V views.

    Attributes:
        scores: :class:`ClassScores`: ``logits`` (B, C) float32, the sum of ``view_logits`` over
            views (CLIP2Point's aggregation); ``probs`` (B, C) float32 ``softmax(logits / V)``, i.e.
            CLIP's softmax of the mean view logit; ``classes`` (also read as ``result.classes``,
            ``result.logits``, ``result.probs``).
        view_logits: (B, V, C) float32: ``logit_scale · cos(view feature, text feature)``.
        depth: (B, V, H, W) depth images that were classified (in [0, 1], background 1).
        view_labels: V strings ("elev 0°, azim 90°").
    """

    scores: ClassScores
    view_logits: torch.Tensor
    depth: torch.Tensor | None = None
    view_labels: list[str] = field(default_factory=list)

    def view_votes(self, index: int = 0) -> list[str]:
        """The winning class of each view of shape ``index``."""
        return [self.classes[i] for i in self.view_logits[index].argmax(dim=1).tolist()]

    def view_vote_probs(self, index: int = 0) -> list[float]:
        """Each view's softmax probability of its own winning class (see :meth:`view_votes`)."""
        return torch.softmax(self.view_logits[index], dim=-1).amax(dim=-1).tolist()

    def as_dict(self, index: int = 0) -> dict:
        """JSON-ready result of one shape: classes, probs, top (class, prob) pairs, view_labels, view_logits (V×C)."""
        return {
            **self.scores.as_dict(index),
            "view_labels": list(self.view_labels),
            "view_logits": [[round(float(x), 5) for x in row] for row in self.view_logits[index].tolist()],
        }


def score_views(
    view_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: float,
    classes: Sequence[str],
    view_labels: Sequence[str] = (),
    depth: torch.Tensor | None = None,
) -> ZeroShotResult:
    """Zero-shot scores from encoded views: a pure function (no model, no state, thread-safe).

    CLIP2Point's released protocol (§4.2): per-view logits ``logit_scale · f_v · t_c`` of
    L2-normalised view and text features, summed over the views (equal weights, no post-search).

    Args:
        view_features: (B, V, D) or (V, D) float, L2-normalised features of each shape's views.
        text_features: (C, D) float, L2-normalised features of the class prompts.
        logit_scale: CLIP's temperature ``exp(logit_scale)`` (100 for OpenAI's weights).
        classes: the C class names, in ``text_features`` order.
        view_labels: V labels ("elev 0°, azim 90°"), kept in the result.
        depth: optional (B, V, H, W) depth images to attach to the result.

    Returns:
        A :class:`ZeroShotResult` on the CPU: ``view_logits`` (B, V, C) = ``s · cos(f_v, t_c)``,
        ``logits`` (B, C) their sum over the views, ``probs`` (B, C) = softmax(logits / V) =
        softmax(s · mean_v cos): CLIP's own image-text probability (its learned temperature s)
        applied to the mean cosine over the views.

    Probabilities and the released code: the released ``zeroshot.py`` takes softmax(Σ_v cos), with
    no CLIP temperature and a sharpness that grows with the number of views. Both rank the classes
    identically (same top-k, same accuracy); only the probabilities differ. The release's are close
    to uniform (a cosine margin of 0.03 over 6 views is a logit margin of 0.18: the winner of 10
    classes gets ≈ 12 %), whereas softmax(s · mean) is what CLIP reports for a single image and does
    not change with V (≈ 69 % for the same margin). The released probabilities are one step away:
    ``torch.softmax(result.logits / logit_scale, dim=-1)``.

    Raises:
        Clip2PointError: mismatched shapes.
    """
    feats = view_features if view_features.dim() == 3 else view_features.unsqueeze(0)
    if feats.dim() != 3 or text_features.dim() != 2 or feats.shape[-1] != text_features.shape[-1]:
        raise Clip2PointError(
            f"view features {tuple(view_features.shape)} and text features {tuple(text_features.shape)} do not fit: "
            "expected (B, V, D) or (V, D) and (C, D)"
        )
    if len(classes) != text_features.shape[0]:
        raise Clip2PointError(f"{len(classes)} class names for {text_features.shape[0]} text features")
    view_logits = float(logit_scale) * feats.float() @ text_features.to(feats.device, torch.float32).T
    logits = view_logits.sum(dim=1)
    probs = torch.softmax(logits / view_logits.shape[1], dim=-1)
    return ZeroShotResult(ClassScores(list(classes), logits.cpu(), probs.cpu()), view_logits.cpu(),
                          None if depth is None else depth.cpu(), list(view_labels))


class ZeroShotClassifier:
    """Classify point clouds by class names, CLIP2Point-style.

    Args:
        backbone: a :class:`~clip2point.backbone.ClipBackbone` (see ``load_backbone``).
        classes: class names (words) or a comma-separated string.
        template: prompt template with one ``{}`` (default CLIP2Point's "image of a {}"), or a
            sequence of templates: a prompt ensemble, averaged in text-feature space (see
            :meth:`~clip2point.backbone.ClipBackbone.text_features`; presets and template files:
            :func:`clip2point.prompts.resolve_templates`). None: the default.
        views: "6" (released zero-shot default), "10", or a :class:`ViewSet`.
        encoder: "auto" (the depth encoder when one is loaded, else CLIP), "clip", or "depth".
        image_size, radius: rendering settings (defaults: the backbone's input size, 0.02 NDC).
        batch_size: images per encoder forward pass.
        cache: a :class:`~clip2point.viewcache.ViewFeatureCache` (persistent view features: a shape
            seen before with the same encoder and views is not encoded again), or None (default).

    Attributes:
        templates: the templates in use, a non-empty tuple (one for a single template).

    Raises:
        PromptTemplateError: a template without exactly one bare ``{}``.

    Example:
        >>> clf = ZeroShotClassifier(load_backbone(weights="openai"), ["chair", "table"])
        >>> clf.predict(load_point_cloud("chair.ply", up="z").points).top(1)
    """

    def __init__(
        self,
        backbone: ClipBackbone,
        classes: str | Sequence[str],
        template: str | Sequence[str] | None = DEFAULT_TEMPLATE,
        views: str | int | ViewSet = "6",
        encoder: str = "auto",
        image_size: int | None = None,
        radius: float = 0.02,
        batch_size: int = 64,
        cache: ViewFeatureCache | None = None,
    ) -> None:
        self.backbone = backbone
        self.cache = cache
        self.renderer = DepthRenderer(get_view_set(views), RasterSettings(image_size or backbone.image_size, radius))
        self.batch_size = batch_size
        self.encoder = encoder
        self.templates: tuple[str, ...] = (DEFAULT_TEMPLATE,)
        self.set_prompts(classes, DEFAULT_TEMPLATE if template is None else template)

    @property
    def views(self) -> ViewSet:
        return self.renderer.views  # type: ignore[return-value]

    @property
    def template(self) -> str | tuple[str, ...]:
        """The single template in use, or the tuple of an ensemble (see :attr:`templates`)."""
        return self.templates[0] if len(self.templates) == 1 else self.templates

    def set_prompts(self, classes: str | Sequence[str], template: str | Sequence[str] | None = None) -> None:
        """Change the class list and/or the template(s) (None keeps them); text features come from the backbone's cache.

        Raises:
            PromptTemplateError: an invalid template (nothing is changed then).
            UnknownClassSetError: an empty or duplicated class list.
        """
        templates = self.templates if template is None else as_templates(template)
        classes = parse_classes(classes)
        self.text_features = self.backbone.text_features(classes, templates)
        self.classes, self.templates = classes, templates

    def _encoder_name(self) -> str:
        if self.encoder == "auto":
            return "depth" if self.backbone.depth_encoder is not None else "clip"
        if self.encoder not in ("clip", "depth"):
            raise Clip2PointError(f"encoder must be 'auto', 'clip' or 'depth', got {self.encoder!r}")
        return self.encoder

    def render(self, points) -> torch.Tensor:
        """(B, V, H, W) depth images of (N, 3) or (B, N, 3) points, on the backbone's device."""
        pts = torch.as_tensor(points, dtype=torch.float32) if not isinstance(points, torch.Tensor) else points
        return self.renderer(pts.to(self.backbone.device))

    def view_features(self, depth: torch.Tensor) -> torch.Tensor:
        """(B, V, D) L2-normalised features of depth images (B, V, H, W) (not cached: see :meth:`point_features`)."""
        return self.backbone.encode_images(clip_normalize(depth), self._encoder_name(), self.batch_size)

    def point_features(self, points, depth: torch.Tensor | None = None) -> torch.Tensor:
        """(B, V, D) L2-normalised view features of (N, 3) or (B, N, 3) points, through :attr:`cache`.

        Only shapes not in the cache are rendered (or taken from ``depth`` (B, V, H, W), already
        rendered) and encoded. Raises Clip2PointError for invalid points.
        """
        pts = torch.as_tensor(points, dtype=torch.float32)
        pts = pts.unsqueeze(0) if pts.dim() == 2 else pts
        feats, _ = encode_point_views(self.backbone, self.renderer, pts, (self._encoder_name(),),
                                      batch_size=self.batch_size, cache=self.cache, depth=depth)
        return feats[0]

    def scores(self, view_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(view_logits (B,V,C), logits (B,C), probs (B,C)) from view features (B, V, D); see :func:`score_views`."""
        res = score_views(view_features, self.text_features, self.backbone.logit_scale, self.classes)
        return res.view_logits, res.logits, res.probs

    def predict(self, points, keep_depth: bool = True) -> ZeroShotResult:
        """Score (N, 3) or (B, N, 3) point clouds (y-up; any units) against the classes.

        Probabilities: see :func:`score_views`.

        Raises:
            Clip2PointError: empty, NaN/inf or degenerate points (see ``render_depth``).
        """
        if self.cache is None:
            depth = self.render(points)
            feats = self.view_features(depth)
        else:
            depth = self.render(points) if keep_depth else None
            feats = self.point_features(points, depth)
        return score_views(feats, self.text_features, self.backbone.logit_scale, self.classes,
                           self.views.labels(), depth if keep_depth else None)
