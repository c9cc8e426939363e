"""The authors' few-shot checkpoints: read CLIP2Point's released DPA state dict, write a run folder from it.

The released few-shot script (``fewshot.py`` of github.com/tyhuang0428/CLIP2Point, Huang et al.,
ICCV 2023, §3.3) saves ``model.state_dict()`` of its ``DPA`` module (``best.pth``; the README's
``best_test.pth``). Its keys (a ``module.`` prefix, from DataParallel, is accepted too):

* ``pre_model.<visual key>``: the depth encoder (a CLIP ViT visual tower loaded from the
  pre-trained ``best_eval.pth``; CLIP itself when the DPA was trained without ``--ckpt``);
* ``ori_model.<visual key>``: the original CLIP visual tower (frozen);
* ``adapter1.*`` / ``adapter2.*``: the two ``SimplifiedAdapter`` aggregators (path of ``pre_model``
  / of ``ori_model``): ``fusion_ratio`` (V,), ``global_f.0.bn.*`` (BatchNorm over the D channels of
  every view), ``global_f.3.*`` (Linear V·D → D), ``global_f.4.*`` (BatchNorm1d(D)), ``global_f.7.*``
  (Linear D → D); indices 1, 2, 5, 6 are Dropout/Flatten/ReLU/Dropout without weights;
* ``selector.view_selector.views_{azim,elev,dist}``: the fixed cameras (``--dim 0``, the default).
  A learned view selector (``--dim 512``: ``selector.feature_extractor.*``,
  ``selector.view_selector.view_transformer.*``) moves the cameras per shape and is refused.

The DPA has no classifier weights: it scores ``normalize(0.5·g1 + 0.5·g2)`` against the normalised
text features of ``"image of a {class}"`` (bare cosine; ModelNet40's 40 classes in the release), so
the classes are a choice at import time. :func:`import_released_adapter` writes a run folder that
:func:`~clip2point.fewshot.infer.load_adapter` and :class:`~clip2point.fewshot.rundir.RunFolder`
read: gate "none" (this project's released-DPA mode), adapter input "raw" (the DPA feeds the raw
tower outputs), logit scale 1 (the bare cosine), and the depth encoder as the run's own
``depth_encoder.safetensors``.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..backbone import DEFAULT_TEMPLATE, ClipBackbone
from ..checkpoints import file_digest, load_state_dict_file, save_state_dict_atomic
from ..classes import get_class_set
from ..datasets import DATASET_NAMES
from ..errors import CheckpointError, Clip2PointError
from ..gdpa import GatedDualPathAdapter, GDPAConfig
from ..pretrain.checkpointing import DEPTH_ENCODER_FORMAT
from ..render import VIEW_SETS, get_view_set
from .config import FewShotConfig
from .rundir import OPTIONAL_RUN_FILES, RunFolder, prepare_run_dir, save_adapter, write_run_config

log = logging.getLogger(__name__)

__all__ = ["RELEASED_DPA_LAYOUT", "ReleasedDPA", "read_released_dpa", "import_released_adapter"]

#: ``layout`` recorded in an imported run's config.json.
RELEASED_DPA_LAYOUT = "clip2point-release-dpa"

#: SimplifiedAdapter key → GlobalViewAggregator key (prefixes; the rest of the key is kept).
_AGGREGATOR_KEYS = (
    ("fusion_ratio", "view_weights"), ("global_f.0.bn.", "view_norm."), ("global_f.3.", "mlp.2."),
    ("global_f.4.", "mlp.3."), ("global_f.7.", "mlp.6."),
)
_PATHS = {"adapter1": "aggregator_a", "adapter2": "aggregator_b"}  # pre_model's path is A, ori_model's B


@dataclass
class ReleasedDPA:
    """A released DPA checkpoint, split into what a run folder needs.

    Attributes:
        adapter: GDPA state-dict entries of both aggregators (``aggregator_a.*``, ``aggregator_b.*``).
        depth: the ``pre_model`` visual-tower state dict (bare keys), or None when absent.
        clip: the ``ori_model`` visual-tower state dict (bare keys), or None when absent.
        views: V. dim: D. view_set: the name of the matching :data:`clip2point.render.VIEW_SETS` entry.
    """

    adapter: dict[str, torch.Tensor]
    depth: dict[str, torch.Tensor] | None
    clip: dict[str, torch.Tensor] | None
    views: int
    dim: int
    view_set: str

    @property
    def depth_is_clip(self) -> bool:
        """True when ``pre_model`` equals ``ori_model`` (a DPA trained without a pre-trained depth encoder)."""
        d, c = self.depth, self.clip
        return d is not None and c is not None and d.keys() == c.keys() and all(torch.equal(d[k], c[k]) for k in d)


def _sub(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor] | None:
    out = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    return out or None


def _aggregator(path: Path, sd: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    src = _sub(sd, f"{name}.") or {}
    out = {}
    for key, value in src.items():
        new = next((ours + key[len(theirs):] for theirs, ours in _AGGREGATOR_KEYS if key.startswith(theirs)), None)
        if new is None:
            raise CheckpointError(f"{path}: unexpected key {name}.{key} in a released DPA adapter; is this CLIP2Point's "
                                  "fewshot.py checkpoint?")
        out[f"{_PATHS[name]}.{new}"] = value
    return out


def _view_set(path: Path, sd: dict[str, torch.Tensor], views: int) -> str:
    """The view-set name of the checkpoint's fixed cameras (or, without selector buffers, of V views)."""
    if any(k.startswith(("selector.feature_extractor.", "selector.view_selector.view_transformer.")) for k in sd):
        raise CheckpointError(f"{path}: this DPA was trained with a learned view selector (--dim 512), which moves the "
                              "cameras per shape; only the fixed cameras of the released default (--dim 0) can be imported")
    cams = [sd.get(f"selector.view_selector.views_{k}") for k in ("elev", "azim", "dist")]
    for name, vs in VIEW_SETS.items():
        if len(vs) != views:
            continue
        if all(c is None for c in cams) or all(
                c is not None and c.numel() == views and torch.allclose(c.double().flatten(), torch.tensor(v, dtype=torch.float64))
                for c, v in zip(cams, (vs.elev, vs.azim, vs.dist))):
            return name
    raise CheckpointError(f"{path}: its {views} cameras are not one of the view sets {', '.join(VIEW_SETS)}; "
                          "it cannot be imported")


def read_released_dpa(path: str | os.PathLike) -> ReleasedDPA:
    """Read a released DPA checkpoint safely (:func:`clip2point.checkpoints.load_state_dict_file`: no code runs).

    Raises:
        CheckpointError: unreadable or unsafe file, no ``adapter1.*``/``adapter2.*`` keys, keys or
            sizes that are not the released aggregators', a learned view selector, unknown cameras.
    """
    path = Path(path)
    raw, _meta = load_state_dict_file(path)
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in raw.items()}
    if not any(k.startswith("adapter1.") for k in sd) or not any(k.startswith("adapter2.") for k in sd):
        sample = ", ".join(list(sd)[:4])
        raise CheckpointError(f"{path}: not a released CLIP2Point few-shot (DPA) checkpoint: no adapter1.*/adapter2.* keys "
                              f"(keys start with: {sample}); a pre-trained depth encoder (best_eval.pth) goes to --depth-encoder")
    adapter = {**_aggregator(path, sd, "adapter1"), **_aggregator(path, sd, "adapter2")}
    try:
        views, dim = int(adapter["aggregator_a.view_weights"].numel()), int(adapter["aggregator_a.mlp.6.weight"].shape[0])
    except KeyError as err:
        raise CheckpointError(f"{path}: the released adapters lack {err.args[0]}; the checkpoint is incomplete") from None
    return ReleasedDPA(adapter, _sub(sd, "pre_model."), _sub(sd, "ori_model."), views, dim, _view_set(path, sd, views))


def _compare_clip(dpa: ReleasedDPA, backbone: ClipBackbone, path: Path) -> dict[str, Any]:
    """How ``ori_model`` compares with the backbone's CLIP visual tower (recorded in config.json)."""
    if dpa.clip is None:
        return {"clip_visual": "absent"}
    own = backbone.model.visual.state_dict()
    if dpa.clip.keys() != own.keys() or any(dpa.clip[k].shape != own[k].shape for k in own):
        raise CheckpointError(f"{path}: its CLIP visual tower (ori_model.*) does not fit {backbone.model_name}; load the "
                              "backbone it was trained with (the release: ViT-B-32, OpenAI weights)")
    diff = max(float((dpa.clip[k].float() - own[k].float().cpu()).abs().max()) if own[k].numel() else 0.0 for k in own)
    tol = 1e-6 if backbone.dtype == torch.float32 else 2e-2  # bf16 weights round to ~3 significant digits
    if diff > tol:
        log.warning("%s: the adapter was trained on other CLIP weights than %s (max |Δ| %.3g); its scores will not "
                    "be the release's", path, backbone.describe(), diff)
    return {"clip_visual": "matches" if diff <= tol else "differs", "clip_visual_max_abs_diff": diff}


def _run_config(run_dir: Path, dpa: ReleasedDPA, dataset: str, template: str, overwrite: bool) -> FewShotConfig:
    """The FewShotConfig of an imported run: the released recipe (16 shots, 100 epochs, AdamW 1e-3/1e-4, batch 32)."""
    if dataset not in DATASET_NAMES:
        raise Clip2PointError(f"dataset must be one of {', '.join(DATASET_NAMES)}, got {dataset!r}")
    return FewShotConfig(dataset=dataset, out_dir=str(run_dir), shots=16, epochs=100, gate="none", views=dpa.view_set,
                         val_per_class=0, template=template, adapter_input="raw", precise_bn=False, plots=False,
                         overwrite=overwrite)


def import_released_adapter(
    path: str | os.PathLike,
    run_dir: str | os.PathLike,
    backbone: ClipBackbone,
    *,
    classes: Sequence[str] | None = None,
    dataset: str = "modelnet40",
    template: str = DEFAULT_TEMPLATE,
    logit_scale: float = 1.0,
    overwrite: bool = False,
) -> RunFolder:
    """Turn the authors' few-shot checkpoint (a DPA state dict, see the module docstring) into a run folder.

    The run is what :func:`~clip2point.fewshot.infer.load_adapter` (``clip2point zeroshot --adapter``,
    the app) loads: ``config.json`` (gate "none", adapter input "raw", the checkpoint's view set,
    ``imported``: source file, sha256, layout, how ``ori_model`` compares with ``backbone``) and
    ``adapter.safetensors``; with a depth encoder (``pre_model.*`` other than ``ori_model.*``) also
    ``depth_encoder.safetensors`` (paths "depth+clip"; load_adapter pairs it with a backbone that has
    none). No metrics.json (the checkpoint carries no results).

    Args:
        path: the checkpoint (``best.pth`` of the released ``fewshot.py``), read safely.
        run_dir: the run folder to write (created).
        backbone: the CLIP model the adapter was trained with (ViT-B-32, OpenAI weights in the
            release): its text tower encodes the class prompts; ``ori_model.*`` is checked against its
            visual tower (a warning when they differ, CheckpointError when the shapes do not fit).
        classes: the C class names, in the order of the training labels (prompt words). Default: the
            preset of ``dataset`` (ModelNet40's 40 classes, as the released script prompts them).
        dataset: "modelnet40" (the release's) or "modelnet10", recorded in the run's config.
        template: the prompt template ("image of a {}", the release's).
        logit_scale: the head's scale s (logits = s·cos): 1, the released bare cosine.
        overwrite: replace a run already in ``run_dir``.

    Returns:
        The written run, read back by :class:`~clip2point.fewshot.rundir.RunFolder`.

    Raises:
        CheckpointError: see :func:`read_released_dpa`; features of another width than the backbone's;
            a depth encoder or CLIP tower that does not fit the backbone.
        Clip2PointError: ``run_dir`` holds a run (and not ``overwrite``), an unknown dataset, a bad scale.
    """
    path, run_dir = Path(path), Path(run_dir)
    dpa = read_released_dpa(path)
    if dpa.dim != backbone.embed_dim:
        raise CheckpointError(f"{path}: the adapters take {dpa.dim}-d features, {backbone.model_name} gives "
                              f"{backbone.embed_dim}; load the backbone it was trained with (the release: ViT-B-32)")
    if not (math.isfinite(logit_scale) and logit_scale > 0):
        raise Clip2PointError(f"logit_scale must be a positive number, got {logit_scale!r}")
    names = list(classes) if classes is not None else get_class_set(dataset)
    imported = {"file": str(path), "sha256": file_digest(path), "layout": RELEASED_DPA_LAYOUT,
                **_compare_clip(dpa, backbone, path)}
    config = _run_config(run_dir, dpa, dataset, template, overwrite)
    gcfg = GDPAConfig(views=dpa.views, dim=dpa.dim, num_classes=len(names), gate="none", input="raw")
    adapter = GatedDualPathAdapter(gcfg, backbone.text_features(names, template), logit_scale)
    missing, unexpected = adapter.load_state_dict(dpa.adapter, strict=False)
    missing = [k for k in missing if k not in ("text_features", "log_logit_scale")]
    if missing or unexpected:
        raise CheckpointError(f"{path}: the released adapters do not fit a {dpa.views}-view, {dpa.dim}-d aggregator "
                              f"({', '.join((missing or unexpected)[:3])}); the checkpoint is damaged")
    run_dir, _ = prepare_run_dir(config)
    paths, paired = "clip+clip", backbone
    if dpa.depth is not None and not dpa.depth_is_clip:
        depth_file = save_state_dict_atomic(dpa.depth, run_dir / OPTIONAL_RUN_FILES["depth_encoder"], {
            "format": DEPTH_ENCODER_FORMAT, "model_name": backbone.model_name, "activation": "quick_gelu",
            "source": f"pre_model.* of {path.name} (CLIP2Point's released DPA)"})
        paths, paired = "depth+clip", backbone.with_depth_encoder(depth_file.resolve())  # checks that it fits
    elif dpa.depth is not None:
        log.info("%s: pre_model equals ori_model (trained without a depth encoder): both paths take CLIP", path)
    view_labels = get_view_set(dpa.view_set).labels()
    write_run_config(run_dir, config, gcfg, names, view_labels, paths, paired, extra={"imported": imported})
    save_adapter(run_dir, adapter, 0, float("nan"), names, paths, config)
    log.info("imported %s into %s (%d views, %d classes, paths %s)", path, run_dir, dpa.views, len(names), paths)
    return RunFolder(run_dir)
