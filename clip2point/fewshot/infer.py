"""Inference with a trained few-shot adapter: :func:`load_adapter` → :class:`FewShotClassifier` → :class:`AdapterResult`."""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..backbone import ClipBackbone
from ..checkpoints import load_state_dict_file
from ..errors import CheckpointError
from ..gdpa import GatedDualPathAdapter
from ..render import ViewSet, as_points_tensor
from ..viewcache import ViewFeatureCache
from ..zeroshot import ClassScores, ScoredShapes
from .features import ViewEncoder
from .rundir import RunFolder

log = logging.getLogger(__name__)

__all__ = ["AdapterResult", "FewShotClassifier", "load_adapter"]


@dataclass
class AdapterResult(ScoredShapes):
    """Scores of B shapes by a trained GDPA adapter (no per-view logits: the aggregators mix the views).

    Attributes:
        scores: :class:`~clip2point.zeroshot.ClassScores`: ``logits`` (B, C) float32 (the adapter's
            scaled cosine logits), ``probs`` = softmax(logits) (B, C), ``classes`` (also read as
            ``result.classes``, ``result.logits``, ``result.probs``).
        view_labels: V strings. gate: (B, V) share of path A (the depth encoder) per view.
        importance: (V,) view importances. shape_gate: (B,) share of path A in the fused feature.
        paths: "depth+clip" or "clip+clip". depth: (B, V, H, W) depth images (``keep_depth=True``), else None.
    """

    scores: ClassScores
    view_labels: list[str] = field(default_factory=list)
    gate: torch.Tensor | None = None
    importance: torch.Tensor | None = None
    shape_gate: torch.Tensor | None = None
    paths: str = ""
    depth: torch.Tensor | None = None

    def as_dict(self, index: int = 0) -> dict:
        """JSON-ready: classes, probs, top, view_labels, gate_weights (V), view_importance (V), path_a_share, paths."""
        return {
            **self.scores.as_dict(index),
            "view_labels": list(self.view_labels),
            "gate_weights": [round(float(g), 5) for g in self.gate[index].tolist()] if self.gate is not None else None,
            "view_importance": [round(float(g), 5) for g in self.importance.tolist()] if self.importance is not None else None,
            "path_a_share": round(float(self.shape_gate[index]), 5) if self.shape_gate is not None else None,
            "paths": self.paths,
        }


class FewShotClassifier:
    """Classify point clouds with a trained GDPA adapter (see :func:`load_adapter`).

    Attributes:
        adapter: the :class:`GatedDualPathAdapter` (eval mode). encoder: renders and encodes both paths.
        classes: class names. run_config: the run's ``config.json`` content.
    """

    def __init__(self, adapter: GatedDualPathAdapter, encoder: ViewEncoder, classes: Sequence[str],
                 run_config: dict[str, Any] | None = None) -> None:
        self.adapter = adapter.eval()
        self.encoder = encoder
        self.classes = list(classes)
        self.run_config = run_config or {}

    @property
    def views(self) -> ViewSet:
        """The view set the adapter was trained on."""
        return self.encoder.views

    @property
    def paths(self) -> str:
        """"depth+clip" or "clip+clip"."""
        return self.encoder.paths

    @torch.no_grad()
    def predict_features(self, f_a: torch.Tensor, f_b: torch.Tensor) -> AdapterResult:
        """Score (B, V, D) features of both paths (any device and float dtype): the raw visual-tower
        outputs (see :class:`~clip2point.gdpa.GDPAConfig` ``input``); the result is on the CPU."""
        dev = self.adapter.text_features.device
        out = self.adapter(f_a.to(dev, torch.float32), f_b.to(dev, torch.float32))
        logits = out.logits.float().cpu()
        return AdapterResult(
            ClassScores(self.classes, logits, torch.softmax(logits, dim=-1)), self.views.labels(),
            gate=out.gate.float().cpu(), importance=out.importance.float().cpu(),
            shape_gate=out.shape_gate.float().cpu(), paths=self.paths,
        )

    def predict(self, points, keep_depth: bool = False) -> AdapterResult:
        """Render (N, 3) or (B, N, 3) y-up points, encode both paths, classify.

        Raises:
            Clip2PointError: empty, NaN/inf or degenerate points.
        """
        pts = as_points_tensor(points)
        res = self.predict_features(*self.encoder.encode(pts))
        if keep_depth:
            res.depth = self.encoder.renderer(pts.to(self.encoder.backbone.device)).cpu()
        return res


def _check_adapter_file(run: RunFolder, sd: dict[str, torch.Tensor], encoder: ViewEncoder) -> None:
    """Refuse an adapter file or config that do not fit each other, before anything is allocated."""
    gcfg, ad_path, cfg_path = run.gdpa_config, run.file("adapter"), run.file("config")
    if "text_features" not in sd:
        raise CheckpointError(f"{ad_path} holds no GDPA adapter (no text_features); the file is damaged")
    if gcfg.views != encoder.num_views or len(run.classes) != gcfg.num_classes:
        raise CheckpointError(f"{cfg_path}: {gcfg.views} views and {gcfg.num_classes} classes in 'gdpa' "
                              f"do not fit the run's {encoder.num_views} views and {len(run.classes)} classes")
    with torch.device("meta"):  # the config's sizes are checked against the file before anything is allocated
        expected = GatedDualPathAdapter(gcfg, torch.empty(gcfg.num_classes, gcfg.dim)).state_dict()
    wrong = [k for k in expected if k not in sd or tuple(sd[k].shape) != tuple(expected[k].shape)]
    if wrong or set(sd) - set(expected):
        raise CheckpointError(f"{ad_path} does not fit its config.json (keys/shapes differ: "
                              f"{', '.join((wrong or sorted(set(sd) - set(expected)))[:3])}); the run folder is damaged")


def load_adapter(run_dir: str | os.PathLike | RunFolder, backbone: ClipBackbone, device: str | torch.device | None = None,
                 batch_size: int = 64, cache: ViewFeatureCache | None = None) -> FewShotClassifier:
    """Load the best adapter of a run directory for inference.

    Args:
        run_dir: a directory written by :func:`~clip2point.fewshot.run_fewshot` (``config.json`` +
            ``adapter.safetensors``), or its :class:`~clip2point.fewshot.rundir.RunFolder` (already read).
        backbone: the frozen encoders; it must have the run's architecture, and a depth encoder if the
            run used one (a warning is logged when its weights differ from the run's). A run with its
            own ``depth_encoder.safetensors`` (imported, see :func:`~clip2point.fewshot.released.import_released_adapter`)
            pairs it with a backbone that has no depth encoder (the backbone itself is not modified).
        device: where to run (None: the backbone's device; the backbone is moved otherwise).
        batch_size: images per encoder forward pass.
        cache: a :class:`~clip2point.viewcache.ViewFeatureCache` (shapes seen before are not encoded
            again), or None.

    Raises:
        CheckpointError: missing or unreadable files, or a backbone that does not fit the adapter.
        Clip2PointError: the run used a depth encoder and ``backbone`` has none.
    """
    run = run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)
    ad_path = run.file("adapter")
    if not ad_path.is_file():
        raise CheckpointError(f"{run.path} has no adapter.safetensors yet (no epoch finished); resume the run with --resume")
    fcfg, gcfg = run.config, run.gdpa_config
    if backbone.embed_dim != gcfg.dim:
        raise CheckpointError(
            f"{run.path}: the adapter expects {gcfg.dim}-d features ({run.backbone_info.get('model_name')}), "
            f"this backbone ({backbone.model_name}) gives {backbone.embed_dim}; pass --model/--weights of the run"
        )
    if device is not None and backbone.device != torch.device(device):
        backbone.to(device)
    if run.paths == "depth+clip" and backbone.depth_encoder is None and run.depth_encoder_file is not None:
        log.info("using the run's own depth encoder %s", run.depth_encoder_file)
        backbone = backbone.with_depth_encoder(run.depth_encoder_file.resolve())
    if run.paths == "clip+clip" and backbone.depth_encoder is not None:
        log.warning("the adapter was trained without a depth encoder; using CLIP for both paths")
    trained_with = run.backbone_info.get("describe")
    if trained_with and trained_with != backbone.describe():
        log.warning("adapter trained with backbone %r, now running with %r: scores may not be meaningful",
                    trained_with, backbone.describe())
    encoder = ViewEncoder(backbone, fcfg.views, fcfg.image_size, fcfg.radius, paths=run.paths, batch_size=batch_size,
                          cache=cache, normalize=False)  # raw tower outputs: the adapter normalises if its config says so
    sd, _ = load_state_dict_file(ad_path)
    _check_adapter_file(run, sd, encoder)
    adapter = GatedDualPathAdapter(gcfg, sd["text_features"])
    adapter.load_state_dict(sd)
    return FewShotClassifier(adapter.to(backbone.device), encoder, run.classes, run.config_dict)
