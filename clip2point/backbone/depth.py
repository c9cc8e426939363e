"""CLIP2Point's depth encoder: its own architecture (an OpenAI-CLIP ViT: QuickGELU) and its checkpoint layouts.

The authors' pre-trained depth encoder (``best_eval.pth``: keys ``module.point_model.<visual key>``)
or one exported by ``clip2point weights export`` is loaded as a second visual tower (Huang et al.,
ICCV 2023, §3.2).
"""
from __future__ import annotations

import copy
import logging
import os

import torch
from torch import nn

from ..errors import CheckpointError
from ..checkpoints import load_state_dict_file
from .architecture import open_clip_module

log = logging.getLogger(__name__)

__all__ = ["extract_visual_state_dict", "visual_activation", "depth_encoder_architecture", "load_depth_encoder"]


def extract_visual_state_dict(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """Pull a CLIP visual-tower state dict out of the checkpoint layouts we know.

    Layouts (checked in this order):
      * CLIP2Point release ``best_eval.pth``: ``[module.]point_model.<visual key>`` (REFERENCE §3);
        ``image_model.*`` (the frozen image encoder) and ``weights`` are ignored.
      * a full CLIP / open_clip model: ``visual.<key>``.
      * a bare visual tower: ``conv1.weight``, ``class_embedding``, ... (our exported depth encoders).

    Returns:
        (visual_state_dict, layout name).

    Raises:
        CheckpointError: none of the layouts matches.
    """
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}
    for prefix, layout in (("point_model.", "clip2point-release"), ("visual.", "clip-model")):
        sub = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if sub:
            return sub, layout
    if "conv1.weight" in sd or any(k.startswith("trunk.") for k in sd):
        return sd, "visual-tower"
    sample = ", ".join(list(sd)[:5])
    raise CheckpointError(
        f"no CLIP visual tower in this checkpoint (keys start with: {sample}); expected CLIP2Point's best_eval.pth "
        "(module.point_model.*), a CLIP model (visual.*) or a depth encoder exported by `clip2point weights export`"
    )


def visual_activation(visual: nn.Module) -> str:
    """The MLP activation of a CLIP visual tower: "quick_gelu" (OpenAI's), "gelu", or "other"."""
    open_clip_module()  # imported the quick way first
    from open_clip.transformer import QuickGELU

    kinds = {"quick_gelu" if isinstance(m, QuickGELU) else "gelu" for m in visual.modules() if isinstance(m, (QuickGELU, nn.GELU))}
    return kinds.pop() if len(kinds) == 1 else "other"


def depth_encoder_architecture(template_visual: nn.Module, quick_gelu: bool = True) -> nn.Module:
    """A copy of a CLIP visual tower with the depth encoder's own architecture settings.

    CLIP2Point's depth encoder is an OpenAI-CLIP ViT (Huang et al., §3.2) and so always uses
    QuickGELU, whatever activation the paired CLIP model has (open_clip's non-OpenAI weights use
    GELU). Shapes, dtype and device are the template's; weights are copied (load your own).

    Args:
        template_visual: a CLIP visual tower (``backbone.model.visual``); not modified.
        quick_gelu: True (OpenAI's QuickGELU, the release) or False (GELU). Applied to open_clip
            ``VisionTransformer`` towers; other towers (timm trunks) are copied unchanged.

    Returns:
        The copy, in the template's train/eval mode and ``requires_grad`` state.
    """
    open_clip_module()
    from open_clip.transformer import QuickGELU, VisionTransformer

    encoder = copy.deepcopy(template_visual)
    if not isinstance(encoder, VisionTransformer):
        log.debug("%s is not an open_clip VisionTransformer: its activation is kept", type(encoder).__name__)
        return encoder
    for parent in encoder.modules():
        for name, child in parent.named_children():
            if isinstance(child, (QuickGELU, nn.GELU)):
                setattr(parent, name, QuickGELU() if quick_gelu else nn.GELU())
    return encoder


def _trained_activation(meta: dict[str, str]) -> bool | None:
    """QuickGELU (True) / GELU (False) as a depth-encoder file's metadata records it; None when it does not.

    Files written by ``clip2point pretrain`` record ``activation``; older ones name the CLIP weights
    the encoder started from (``init_weights``): a copy of that tower, GELU for open_clip tags other
    than "openai" unless their config says QuickGELU.
    """
    if meta.get("activation") in ("quick_gelu", "gelu"):
        return meta["activation"] == "quick_gelu"
    init, model_name = meta.get("init_weights", ""), meta.get("model_name", "")
    if not init.startswith("tag ") or not model_name or meta.get("format", "").split("/")[0] != "clip2point-depth-encoder":
        return None
    tag = init.split()[1]
    oc = open_clip_module()
    if tag == "openai" or model_name not in oc.list_models():
        return True if tag == "openai" else None
    tag_cfg = oc.get_pretrained_cfg(model_name, tag) or {}
    return bool(tag_cfg.get("quick_gelu", False) or (oc.get_model_config(model_name) or {}).get("quick_gelu", False))


def load_depth_encoder(path: str | os.PathLike, template_visual: nn.Module, quick_gelu: bool | None = None) -> nn.Module:
    """Load a CLIP2Point depth encoder into a copy of ``template_visual`` with the depth encoder's architecture.

    Args:
        path: ``best_eval.pth`` from the authors, or a file written by ``clip2point weights export``.
        template_visual: the CLIP visual tower of the same architecture (copied, not modified);
            the encoder gets its dtype (the backbone's precision) and device.
        quick_gelu: the encoder's activation (see :func:`depth_encoder_architecture`); None =
            what the file's metadata records (``activation``, or for older ``clip2point pretrain``
            exports the CLIP weights it started from), else QuickGELU (OpenAI's, the release's).

    Returns:
        A frozen, eval-mode visual module.

    Raises:
        CheckpointError: unreadable file, unknown layout, or keys/shapes that do not fit the
            architecture (the message says which model it expects).
    """
    sd, meta = load_state_dict_file(path)
    visual_sd, layout = extract_visual_state_dict(sd)
    if quick_gelu is None:
        recorded = _trained_activation(meta)
        quick_gelu = True if recorded is None else recorded
    encoder = depth_encoder_architecture(template_visual, quick_gelu)
    own = encoder.state_dict()
    missing = [k for k in own if k not in visual_sd]
    unexpected = [k for k in visual_sd if k not in own]
    bad = [k for k in own if k in visual_sd and tuple(visual_sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        detail = "; ".join(
            f"{name}: {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''}"
            for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", bad)) if keys
        )
        raise CheckpointError(f"{path}: depth encoder does not fit this CLIP visual tower ({detail}); "
                              "load it with the model it was trained with (CLIP2Point's release: ViT-B-32)")
    encoder.load_state_dict({k: visual_sd[k].to(own[k].dtype) for k in own})
    log.info("loaded depth encoder from %s (%s layout, %s)", path, layout, "QuickGELU" if quick_gelu else "GELU")
    return encoder.eval().requires_grad_(False)
