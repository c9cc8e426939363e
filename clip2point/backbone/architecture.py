"""CLIP architectures through open_clip: the model configs (ours included), building a model, loading weights into it."""
from __future__ import annotations

import functools
import logging
import types
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, Clip2PointError
from ..rng import private_rng, seeded_generator

log = logging.getLogger(__name__)

__all__ = [
    "open_clip_module", "model_image_size", "build_architecture", "random_architecture", "architecture_with_weights",
]

_CONFIG_DIR = Path(__file__).resolve().parent.parent / "model_configs"


def open_clip_module() -> types.ModuleType:
    """The ``open_clip`` package (imported on first use: it takes seconds) with our model configs registered
    (``clip2point/model_configs``: ``tiny-ViT-test``, a 2-layer model for tests)."""
    import open_clip

    if "tiny-ViT-test" not in open_clip.list_models():
        open_clip.add_model_config(_CONFIG_DIR)
    return open_clip


@functools.lru_cache(maxsize=16)
def model_image_size(model_name: str) -> int:
    """Input size (pixels, square side) of ``model_name``'s visual tower, from its open_clip config.

    No weights are loaded and no model is built. An unknown name, or a config without
    ``vision_cfg.image_size``, gives 224 (CLIP's usual size).
    """
    cfg = open_clip_module().get_model_config(model_name) or {}
    size = cfg.get("vision_cfg", {}).get("image_size", 224)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def build_architecture(model_name: str, quick_gelu: bool = False) -> nn.Module:
    """An open_clip model of architecture ``model_name`` on the CPU, with open_clip's own random init.

    Built from the model config directly (``open_clip.model.CLIP`` / ``CustomTextCLIP``), as
    ``open_clip.create_model`` does, but without its "initialized randomly" warning, which open_clip
    sends to the *root* logger (silencing it there would change logging for the whole process).
    Initialisation draws from torch's current generator: wrap the call in
    :func:`clip2point.rng.private_rng` for reproducible weights.

    Raises:
        Clip2PointError: unknown architecture.
    """
    oc = open_clip_module()
    cfg = oc.get_model_config(model_name)
    if cfg is None:
        raise Clip2PointError(f"unknown CLIP model {model_name!r}; see open_clip.list_models() (e.g. ViT-B-32, ViT-B-16)")
    if quick_gelu:
        cfg["quick_gelu"] = True
    if "timm_model_name" in cfg.get("vision_cfg", {}):
        cfg["vision_cfg"]["timm_model_pretrained"] = False
    hf_text = "hf_model_name" in cfg.get("text_cfg", {})
    if hf_text:
        cfg["text_cfg"]["hf_model_pretrained"] = False
    from open_clip.model import CLIP, CustomTextCLIP

    cls = CustomTextCLIP if (cfg.pop("custom_text", False) or hf_text) else CLIP
    if "multimodal_cfg" in cfg:
        from open_clip.coca_model import CoCa

        cls = CoCa
    return cls(**cfg)


def random_architecture(model_name: str, quick_gelu: bool) -> nn.Module:
    """open_clip's own random initialisation drawn from a private generator: the same weights in
    every run, and the process-wide RNG is neither reseeded nor advanced."""
    with private_rng(seeded_generator(0, "random-weights", model_name)):
        return build_architecture(model_name, quick_gelu)


def architecture_with_weights(model_name: str, quick_gelu: bool, sd: dict[str, torch.Tensor], path: str) -> nn.Module:
    """``model_name`` holding a checkpoint's weights, float32 on the CPU.

    Built on the meta device and given the checkpoint's tensors (no random initialisation to
    overwrite: ~1 s and one model's memory less for ViT-B-32); the non-persistent causal masks are
    rebuilt. An architecture that cannot be built that way is built and loaded the plain way.

    Raises:
        CheckpointError: the weights do not fit the architecture.
    """
    try:
        with torch.device("meta"):
            model = build_architecture(model_name, quick_gelu)
    except Exception as e:  # noqa: BLE001 - any failure only means "use the plain way"
        log.debug("%s cannot be built on the meta device (%s); building it with random weights first", model_name, e)
    else:
        _load_full_clip(model, sd, path, model_name, assign=True)
        if _rebuild_causal_masks(model):
            return model
    model = random_architecture(model_name, quick_gelu)
    _load_full_clip(model, sd, path, model_name)
    return model


def _rebuild_causal_masks(model: nn.Module) -> bool:
    """Materialise the causal ``attn_mask`` buffers (not in checkpoints) of a meta-built, loaded model.

    Returns False when anything else is still on the meta device (the caller then builds it plainly).
    """
    for module in model.modules():
        for name, buf in list(module.named_buffers(recurse=False)):
            if buf is None or not buf.is_meta:
                continue
            if name != "attn_mask" or buf.dim() != 2 or buf.shape[0] != buf.shape[1]:
                return False
            setattr(module, name, torch.full(tuple(buf.shape), float("-inf"), dtype=buf.dtype).triu_(1))  # open_clip's mask
    return not any(t.is_meta for t in model.state_dict().values())


def _load_full_clip(model: nn.Module, sd: dict[str, torch.Tensor], path: str, model_name: str, assign: bool = False) -> None:
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    for k in ("input_resolution", "context_length", "vocab_size"):
        sd.pop(k, None)
    if any(k.startswith("point_model.") for k in sd):
        raise CheckpointError(f"{path} is a CLIP2Point depth-encoder checkpoint, not CLIP weights; pass it as --depth-encoder instead")
    try:
        from open_clip.factory import convert_state_dict

        sd = convert_state_dict(model, sd)
        if "logit_scale" in sd and sd["logit_scale"].ndim != model.logit_scale.ndim:
            sd["logit_scale"] = sd["logit_scale"].reshape(model.logit_scale.shape)
        if assign:  # the module's tensors become these: give them its dtypes (OpenAI's files are fp16), contiguous
            own = model.state_dict()
            sd = {k: v.to(own[k].dtype).contiguous() if k in own and v.is_floating_point() else v for k, v in sd.items()}
        model.load_state_dict(sd, strict=True, assign=assign)
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(
            f"{path}: these weights do not fit {model_name} ({str(e).splitlines()[0][:200]}); "
            "pass --model with the architecture they were trained for"
        ) from None
