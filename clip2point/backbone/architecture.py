"""CLIP architectures through open_clip: the model configs (ours included), building a model, loading weights into it."""
from __future__ import annotations

import functools
import importlib
import logging
import sys
import threading
import types
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, Clip2PointError
from ..rng import private_rng, seeded_generator

log = logging.getLogger(__name__)

__all__ = [
    "open_clip_module", "model_image_size", "build_architecture", "random_architecture", "architecture_with_weights",
    "ensure_timm",
]

_CONFIG_DIR = Path(__file__).resolve().parent.parent / "model_configs"


_import_lock = threading.Lock()


def open_clip_module() -> types.ModuleType:
    """The ``open_clip`` package with our model configs registered (``clip2point/model_configs``:
    ``tiny-ViT-test``, a 2-layer model for tests).

    Imported on first use, without loading ``torch._dynamo`` or ``timm`` when neither is loaded
    yet (see :func:`_import_open_clip`): about a third of ``clip2point zeroshot``'s start-up.
    """
    if "open_clip" not in sys.modules:
        with _import_lock:
            _import_open_clip()
    import open_clip

    if "tiny-ViT-test" not in open_clip.list_models():
        open_clip.add_model_config(_CONFIG_DIR)
    return open_clip


class _DeferredModule(types.ModuleType):
    """Stands in for a module while open_clip is imported; any use names the module it defers."""

    def __getattr__(self, name: str):
        raise AttributeError(f"{self.__name__}.{name}: {self.__name__} is deferred while open_clip is imported "
                             "(clip2point.backbone.architecture); import it after that")


def _import_open_clip() -> None:
    """``import open_clip`` without ``torch._dynamo`` and ``timm`` (~1.3 s of its ~2 s on 2 cores).

    open_clip imports torchvision, whose ``ops/roi_align.py`` imports ``torch._dynamo.utils`` at
    import time for one function called only at run time, and timm (for timm-trunk configs), which
    loads ``torch._dynamo`` as well; CLIP2Point's ViT never needs either. For the import only,
    ``torch._dynamo.utils`` is a stand-in whose ``is_compile_supported`` imports the real one when
    called, and ``timm`` is absent (open_clip then leaves ``TimmModel`` disabled;
    :func:`ensure_timm` brings it back for configs that need it). The stand-ins leave
    ``sys.modules`` as soon as the import ends, so a later ``import torch._dynamo`` / ``import
    timm`` (or ``torch.compile``) gets the real modules. Nothing is stood in for when open_clip,
    timm or ``torch._dynamo`` is already loaded.
    """
    if any(name in sys.modules for name in ("open_clip", "timm", "torch._dynamo", "torch._dynamo.utils")):
        importlib.import_module("open_clip")
        return

    def is_compile_supported(device_type):  # torchvision's only use, when roi_align runs deterministically
        from torch._dynamo.utils import is_compile_supported as real

        return real(device_type)

    dynamo, utils = _DeferredModule("torch._dynamo"), _DeferredModule("torch._dynamo.utils")
    dynamo.__path__ = []
    utils.is_compile_supported = is_compile_supported
    stand_ins = {"torch._dynamo": dynamo, "torch._dynamo.utils": utils, "timm": None}  # None: `import timm` fails
    sys.modules.update(stand_ins)
    try:
        importlib.import_module("open_clip")
    finally:
        for name, module in stand_ins.items():
            if name in sys.modules and sys.modules[name] is module:
                del sys.modules[name]


def ensure_timm(model_name: str) -> None:
    """Make open_clip able to build ``model_name``'s timm vision tower, if it has one.

    Call before building through open_clip directly (``create_model``); :func:`build_architecture`
    calls it. timm is deferred when open_clip is imported (see :func:`open_clip_module`).
    """
    cfg = open_clip_module().get_model_config(model_name) or {}
    if "timm_model_name" not in cfg.get("vision_cfg", {}):
        return
    import open_clip.model
    import open_clip.timm_model

    if open_clip.timm_model.timm is None:
        try:
            importlib.import_module("timm")
        except ImportError:
            return  # open_clip says "Please install the latest timm" when the model is built
        open_clip.model.TimmModel = importlib.reload(open_clip.timm_model).TimmModel


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
        ensure_timm(model_name)
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
