"""CLIP backbone: an open_clip model, where its weights came from, and a cached text side.

CLIP2Point uses OpenAI's CLIP ViT-B/32 (Huang et al., ICCV 2023, §4.1); we load it through
open_clip. The authors' pre-trained depth encoder (``best_eval.pth``: keys
``module.point_model.<visual key>``) is imported as a second visual tower (§3.2).
"""
from __future__ import annotations

import copy
import functools
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError, Clip2PointError, WeightsNotFoundError
from .rng import private_rng, seeded_generator
from .weights import find_weight_files, load_state_dict_file, weights_dirs

log = logging.getLogger(__name__)

__all__ = [
    "BackboneConfig", "WeightsSource", "ClipBackbone", "load_backbone", "resolve_weights",
    "load_depth_encoder", "extract_visual_state_dict", "build_architecture", "TextFeatureCache",
    "DEFAULT_MODEL", "DEFAULT_TEMPLATE", "model_image_size", "default_tag",
    "PRECISIONS", "resolve_precision", "depth_encoder_architecture", "visual_activation",
]

#: CLIP2Point's architecture (Huang et al., §4.1): the default everywhere a model is not named.
DEFAULT_MODEL = "ViT-B-32"
#: Prompt template of CLIP2Point's released zero-shot code (§4).
DEFAULT_TEMPLATE = "image of a {}"
_CONFIG_DIR = Path(__file__).parent / "model_configs"
_TEXT_BATCH = 256  # prompts per text-tower pass
#: Accepted ``precision=`` values: "fp32" (the default), "bf16", "auto" (see :func:`resolve_precision`).
PRECISIONS = ("fp32", "bf16", "auto")
_DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
#: Scalars kept in float32 whatever the precision: rounding CLIP's temperature to bf16 (100 → 99.5)
#: would scale every logit.
_FP32_PARAMS = ("logit_scale", "logit_bias")


def _open_clip():
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
    cfg = _open_clip().get_model_config(model_name) or {}
    size = cfg.get("vision_cfg", {}).get("image_size", 224)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags from ``/proc/cpuinfo`` (Linux: x86 "flags", ARM "Features"); None elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return None


def _cpu_bf16() -> tuple[bool, str]:
    """(native bf16 on this CPU, why): True only for x86 avx512_bf16 / AMX, where bf16 weights measured faster."""
    flags = _cpu_flags()
    if flags is not None:
        native = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
        if native:
            return True, f"this CPU has native bf16 instructions ({', '.join(native)})"
        if "bf16" in flags:  # ARMv8.6 BF16: present, but PyTorch's speed there is unmeasured here
            return False, ("this ARM CPU has bf16 instructions, but bf16 is chosen automatically only on x86 CPUs "
                           "with avx512_bf16 or AMX; pass precision bf16 to try it")
        return False, "this CPU has no native bf16 instructions (no avx512_bf16 or amx_bf16 flag in /proc/cpuinfo)"
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)  # PyTorch's own cpuinfo probe (x86)
    try:
        if probe is not None and probe():
            return True, "this CPU has native bf16 instructions (avx512_bf16, as reported by PyTorch)"
    except Exception:  # noqa: BLE001 - a private probe: any failure means "cannot tell"
        pass
    return False, "cannot tell whether this CPU has native bf16 instructions (no /proc/cpuinfo); pass precision bf16 to try it"


def _device_bf16(device: torch.device) -> tuple[bool, str]:
    """(native bf16 on ``device``, why)."""
    if device.type == "cpu":
        return _cpu_bf16()
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False, "CUDA is not available"
        if torch.version.hip:
            return True, "ROCm GPUs compute bf16 natively"
        props = torch.cuda.get_device_properties(device.index if device.index is not None else torch.cuda.current_device())
        cc = f"compute capability {props.major}.{props.minor}"
        if props.major >= 8:
            return True, f"{props.name} computes bf16 natively ({cc})"
        return False, f"{props.name} has no native bf16 ({cc}, needs 8.0 or newer)"
    return False, f"bf16 is not chosen automatically on {device.type} devices"


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> tuple[torch.dtype, str]:
    """The weight dtype for a ``precision`` choice on ``device``, and why (a sentence for ``clip2point info``).

    "fp32" → float32; "bf16" → bfloat16 (also where it is not native: the reason then warns that it
    may be slower); "auto" → bfloat16 where the hardware computes it natively — an x86 CPU with
    avx512_bf16 or AMX (read from ``/proc/cpuinfo`` on Linux, PyTorch's probe elsewhere), a CUDA
    GPU of compute capability ≥ 8.0, a ROCm GPU — else float32 (conservative: other CPUs, MPS).
    On this project's 2-core avx512_bf16 CPU, ViT-B-32 bf16 weights encode ~3.5× faster than fp32
    with feature cosine ≥ 0.9999 (``benchmarks/bench_precision.py``).

    Args:
        precision: one of :data:`PRECISIONS` (case-insensitive).
        device: where the model runs.

    Returns:
        (torch.float32 or torch.bfloat16, reason), e.g. ``(torch.bfloat16, "bf16 (auto): this CPU has
        native bf16 instructions (avx512_bf16)")``.

    Raises:
        Clip2PointError: an unknown precision name.
    """
    name = str(precision).strip().lower()
    if name not in PRECISIONS:
        raise Clip2PointError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if name == "fp32":
        return torch.float32, "fp32: full precision (the default)"
    native, why = _device_bf16(torch.device(device))
    if name == "bf16":
        return torch.bfloat16, "bf16: requested" + ("" if native else f" ({why}: it may be slower than fp32)")
    if native:
        return torch.bfloat16, f"bf16 (auto): {why}"
    return torch.float32, f"fp32 (auto): {why}"


def _convert_precision(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast ``model``'s floating weights and buffers to ``dtype`` in place; CLIP's temperature stays float32."""
    keep = {n: p.detach().float().clone() for n, p in model.named_parameters(recurse=False) if n in _FP32_PARAMS}
    model.to(dtype)
    for n, value in keep.items():
        getattr(model, n).data = value.to(getattr(model, n).device)
    return model


def _module_dtype(module: nn.Module) -> torch.dtype:
    """The dtype of a module's first floating-point parameter (float32 if it has none)."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


@dataclass(frozen=True)
class WeightsSource:
    """Where a model's weights came from.

    Attributes:
        kind: "tag" (open_clip pretrained tag), "file", "random", "depth-encoder".
        location: the tag or the file path ("" for random).
        found_by: how it was found: "explicit", "$CLIP2POINT_WEIGHTS", "weights folder",
            "open_clip cache", "download".
    """

    kind: str
    location: str
    found_by: str = "explicit"

    @property
    def is_random(self) -> bool:
        return self.kind == "random"

    def describe(self) -> str:
        if self.is_random:
            return "random initialisation — scores are meaningless"
        return f"{self.kind} {self.location} ({self.found_by})"


@dataclass
class BackboneConfig:
    """What to load.

    Attributes:
        model_name: an open_clip architecture (``open_clip.list_models()``), default ViT-B-32.
        weights: None (look in the usual places), "random", an open_clip pretrained tag
            (e.g. "openai"), or a checkpoint file path.
        quick_gelu: activation; None = OpenAI's QuickGELU for OpenAI-style weights (tag "openai",
            files, random init of the OpenAI architecture), the tag's own setting otherwise.
        allow_download: let open_clip download a pretrained tag when it is not cached.
        precision: "fp32" (default), "bf16" or "auto" (see :func:`resolve_precision`).
    """

    model_name: str = DEFAULT_MODEL
    weights: str | None = None
    quick_gelu: bool | None = None
    allow_download: bool = True
    precision: str = "fp32"


def _tag_cached(model_name: str, tag: str) -> str | None:
    """The local path of an open_clip pretrained tag's file if it is already downloaded."""
    oc = _open_clip()
    cfg = oc.get_pretrained_cfg(model_name, tag)
    if not cfg:
        return None
    if cfg.get("file"):
        return cfg["file"] if os.path.isfile(cfg["file"]) else None
    url = cfg.get("url", "")
    if url:
        p = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if p.is_file():
            return str(p)
    hub = cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - huggingface_hub comes with open_clip
            return None
        repo, filename = os.path.split(hub)
        for fn in ([filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]):
            hit = try_to_load_from_cache(repo, fn)
            if isinstance(hit, str) and os.path.isfile(hit):
                return hit
    return None


#: How long a download-host probe's answer is reused (seconds).
HUB_PROBE_TTL_S = 300.0
_hub_probe: dict[str, float | bool] = {}
_hub_probe_lock = threading.Lock()


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Quick check that open_clip's download host answers (saves a long wait when offline).

    The answer is cached for :data:`HUB_PROBE_TTL_S` seconds, so a server that asks often (a
    page banner) opens at most one connection per interval.
    """
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    import socket

    with _hub_probe_lock:
        if time.monotonic() - float(_hub_probe.get("at", -1e18)) < HUB_PROBE_TTL_S:
            return bool(_hub_probe["ok"])
        try:
            socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
            ok = True
        except OSError:
            ok = False
        _hub_probe.update(at=time.monotonic(), ok=ok)
        return ok


def default_tag(model_name: str) -> str | None:
    """open_clip's first pretrained tag for a model ("openai" for ViT-B-32), None if it has none."""
    tags = _open_clip().list_pretrained_tags_by_model(model_name)
    return "openai" if "openai" in tags else (tags[0] if tags else None)


def resolve_weights(config: BackboneConfig) -> WeightsSource:
    """Decide which weights to load without loading them.

    Order: explicit ``config.weights`` → ``$CLIP2POINT_WEIGHTS`` → files in the weights folders
    named ``<model_name>*`` → open_clip's cache for the model's default tag → a download of that tag
    (when ``allow_download``).

    Raises:
        WeightsNotFoundError: nothing found; the message lists where it looked and how to get weights.
    """
    oc = _open_clip()
    if config.model_name not in oc.list_models():
        raise Clip2PointError(f"unknown CLIP model {config.model_name!r}; see open_clip.list_models() (e.g. ViT-B-32, ViT-B-16)")
    looked: list[str] = []
    choice, found_by = config.weights, "explicit"
    if choice is None and os.environ.get("CLIP2POINT_WEIGHTS"):
        choice, found_by = os.environ["CLIP2POINT_WEIGHTS"], "$CLIP2POINT_WEIGHTS"
    if choice is not None:
        choice = str(choice)
        if choice.lower() == "random":
            return WeightsSource("random", "", found_by)
        if os.path.isfile(choice):
            return WeightsSource("file", str(Path(choice)), found_by)
        if choice in oc.list_pretrained_tags_by_model(config.model_name):
            cached = _tag_cached(config.model_name, choice)
            if cached:
                return WeightsSource("tag", choice, "open_clip cache")
            if config.allow_download and _hub_reachable():
                return WeightsSource("tag", choice, "download")
            raise WeightsNotFoundError(_how_to_get_weights(config, [f"open_clip cache for tag {choice!r}: not downloaded, and the download host is unreachable or downloads are off"]))
        if any(sep in choice for sep in "/\\") or Path(choice).suffix in (".pt", ".pth", ".bin", ".safetensors"):
            raise WeightsNotFoundError(f"weights file {choice} does not exist; check the path, or run `clip2point info` to see what was found")
        tags = ", ".join(oc.list_pretrained_tags_by_model(config.model_name)) or "none"
        raise WeightsNotFoundError(
            f"{choice!r} is neither a file nor a pretrained tag of {config.model_name} (tags: {tags}); "
            "pass a checkpoint path, a tag, or 'random'"
        )
    looked.append("$CLIP2POINT_WEIGHTS: not set")
    files = find_weight_files(config.model_name)
    if files:
        return WeightsSource("file", str(files[0]), "weights folder")
    looked.append("weights folders: " + ", ".join(str(d) for d in weights_dirs()) + f" (no {config.model_name}* file)")
    tag = default_tag(config.model_name)
    if tag:
        if _tag_cached(config.model_name, tag):
            return WeightsSource("tag", tag, "open_clip cache")
        looked.append(f"open_clip cache for tag {tag!r}: not downloaded")
        if config.allow_download and _hub_reachable():
            return WeightsSource("tag", tag, "download")
        looked.append("download: " + ("host unreachable (offline?)" if config.allow_download else "disabled"))
    raise WeightsNotFoundError(_how_to_get_weights(config, looked))


def _how_to_get_weights(config: BackboneConfig, looked: Sequence[str]) -> str:
    return (
        f"no CLIP weights found for {config.model_name}. Looked in: " + "; ".join(looked) + ". "
        f"To fix: on a machine with internet run `clip2point zeroshot ... --weights openai` once (open_clip caches it), "
        f"or copy a checkpoint (e.g. OpenAI's {config.model_name}.pt) into weights/, or set CLIP2POINT_WEIGHTS=/path/to/file; "
        "or pass --weights random to run with random weights (scores are meaningless)."
    )


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
    oc = _open_clip()
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


class TextFeatureCache:
    """A thread-safe LRU cache of text features keyed by (precision, template, classes).

    One cache serves every pairing of a CLIP model with depth encoders and every precision of it
    (see :meth:`ClipBackbone.with_depth_encoder`, :meth:`ClipBackbone.with_precision`): text
    features depend on the CLIP model and its precision only.
    Lookups and inserts hold the lock; encoding happens outside it (two threads asking for the
    same new prompts may both encode them once; the result is the same).
    """

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = int(max_entries)
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    def get(self, key: tuple) -> torch.Tensor | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: tuple, value: torch.Tensor) -> torch.Tensor:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class ClipBackbone(nn.Module):
    """A frozen CLIP model plus an optional CLIP2Point depth encoder, with cached text features.

    Use :func:`load_backbone` to build one. All encoders are in eval mode and frozen, and a
    backbone is **safe to share between threads**: nothing a caller does changes it. The depth
    encoder is fixed at construction; :meth:`with_depth_encoder` returns *another* backbone
    that shares this one's CLIP model and text-feature cache (an immutable pairing). The
    text-feature cache locks itself. (``.to(device)`` moves the shared modules: do it before
    sharing, never while others use the backbone.)

    Precision: the weights' dtype is the backbone's (:attr:`dtype`, :attr:`precision`; see
    :func:`resolve_precision`); inputs are cast to it inside the encoders and features always come
    back float32, L2-normalised. CLIP's temperature stays float32.

    Attributes:
        model: the open_clip CLIP model.
        depth_encoder: a second visual tower (CLIP2Point), or None (read-only).
        weights: where the CLIP weights came from; ``depth_weights`` likewise for the depth encoder.
        precision_reason: why this precision was chosen (a sentence for ``clip2point info``).
    """

    def __init__(self, model: nn.Module, tokenizer, model_name: str, weights: WeightsSource,
                 depth_encoder: nn.Module | None = None, depth_weights: WeightsSource | None = None,
                 text_cache: TextFeatureCache | None = None, precision_reason: str | None = None) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.weights = weights
        self._depth = depth_encoder  # used as given (load_depth_encoder returns it frozen, in eval mode)
        self._depth_weights = depth_weights if depth_encoder is not None else None
        self._text_cache = text_cache if text_cache is not None else TextFeatureCache()
        self.precision_reason = precision_reason or f"{self.precision}: the weights' dtype as built"

    @property
    def depth_encoder(self) -> nn.Module | None:
        """The CLIP2Point depth encoder paired with this backbone, or None (fixed at construction)."""
        return self._depth

    @property
    def depth_weights(self) -> WeightsSource | None:
        """Where the depth encoder came from, or None."""
        return self._depth_weights

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The CLIP weights' dtype: torch.float32 (default) or torch.bfloat16."""
        return _module_dtype(self.model.visual)

    @property
    def precision(self) -> str:
        """The CLIP weights' precision by name: "fp32" or "bf16" ("auto" is resolved at load time)."""
        return _DTYPE_NAMES.get(self.dtype, str(self.dtype).removeprefix("torch."))

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[1]) if hasattr(self.model, "text_projection") else int(self.model.visual.output_dim)

    @property
    def image_size(self) -> int:
        size = getattr(self.model.visual, "image_size", 224)
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def logit_scale(self) -> float:
        """CLIP's learned temperature, exp(logit_scale) (100 for OpenAI's weights)."""
        return float(self.model.logit_scale.exp().item())

    def with_depth_encoder(self, encoder: str | os.PathLike | nn.Module | None, name: str | None = None) -> ClipBackbone:
        """This CLIP model paired with another depth encoder (or none), as a new backbone.

        The CLIP model, tokenizer and text-feature cache are shared (nothing is copied or
        reloaded); this backbone is not modified, so callers on other threads are unaffected.

        Args:
            encoder: a checkpoint file (CLIP2Point's ``best_eval.pth`` or an exported depth
                encoder, read by :func:`load_depth_encoder`), an already loaded visual tower
                (used as is: e.g. the encoder being pre-trained, for validation), or None.
            name: how :meth:`describe` names a module passed directly (default "in-memory").

        Raises:
            CheckpointError: unreadable file or one that does not fit this CLIP visual tower.
        """
        if encoder is None:
            module, source = None, None
        elif isinstance(encoder, nn.Module):
            module, source = encoder, WeightsSource("depth-encoder", name or "in-memory", "explicit")
        else:
            module = load_depth_encoder(encoder, self.model.visual).to(self.device)  # the template's dtype
            source = WeightsSource("depth-encoder", str(encoder))
        return ClipBackbone(self.model, self.tokenizer, self.model_name, self.weights, module, source,
                            self._text_cache, self.precision_reason)

    def with_precision(self, precision: str) -> ClipBackbone:
        """This backbone in another precision, as a new backbone (this one is not modified).

        The CLIP model and the paired depth encoder are copied and converted (memory: one more
        model); the tokenizer and text-feature cache (keyed by precision) are shared. The same
        precision returns a backbone sharing this one's modules. Convert from fp32: a bf16
        backbone converted back to fp32 keeps its bf16-rounded weights.

        Args:
            precision: "fp32", "bf16" or "auto" (see :func:`resolve_precision`).

        Raises:
            Clip2PointError: an unknown precision name.
        """
        dtype, reason = resolve_precision(precision, self.device)
        model, depth = self.model, self._depth
        if dtype != self.dtype:
            model = _convert_precision(copy.deepcopy(self.model), dtype)
            depth = None if depth is None else copy.deepcopy(depth).to(dtype)
        return ClipBackbone(model, self.tokenizer, self.model_name, self.weights, depth, self._depth_weights,
                            self._text_cache, reason)

    def describe(self) -> str:
        """One line: model, weights, precision (unless fp32), depth encoder."""
        s = f"{self.model_name}, weights: {self.weights.describe()}"
        if self.precision != "fp32":
            s += f", {self.precision}"
        if self.depth_weights is not None:
            s += f"; depth encoder: {self.depth_weights.location}"
        return s

    @torch.inference_mode()
    def text_features(self, classes: Sequence[str], template: str = DEFAULT_TEMPLATE) -> torch.Tensor:
        """L2-normalised text features of ``template.format(c)`` for each class.

        Args:
            classes: C class names (words, e.g. "night stand").
            template: a prompt with one ``{}``, e.g. "image of a {}" (CLIP2Point's release).

        Returns:
            (C, D) float32 on the backbone's device (encoded in the backbone's precision). Cached
            per (precision, template, classes), thread-safe; the returned tensor is shared: do not
            modify it.

        Raises:
            Clip2PointError: the template has no ``{}`` placeholder.
        """
        if "{}" not in template:
            raise Clip2PointError(f"prompt template {template!r} has no '{{}}' placeholder for the class name, e.g. \"image of a {{}}\"")
        key = (self.precision, template, tuple(classes))
        cached = self._text_cache.get(key)
        if cached is not None:
            return cached
        prompts = [template.format(c) for c in classes]
        feats = [self.encode_text_tokens(self.tokenizer(prompts[i : i + _TEXT_BATCH]).to(self.device))
                 for i in range(0, len(prompts), _TEXT_BATCH)]  # bounded activations for long class lists
        return self._text_cache.put(key, torch.cat(feats) if feats else torch.zeros(0, self.embed_dim, device=self.device))

    @torch.inference_mode()
    def encode_text_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """L2-normalised features of (C, 77) token ids, (C, D) float32 (computed in the model's dtype).

        CLIP's text tower is causal and pools the end-of-text token (the largest id), so tokens
        after it cannot change the result: we run the tower on the longest prompt's length
        instead of the padded 77 (about 8× less compute for short prompts; same features up to
        float rounding). Falls back to open_clip's ``encode_text`` for other text towers.
        """
        m = self.model
        if type(m).__name__ != "CLIP" or getattr(m, "text_pool_type", "argmax") != "argmax" or m.attn_mask is None:
            return m.encode_text(tokens, normalize=True).float()
        from open_clip.transformer import text_global_pool

        length = int(tokens.argmax(dim=-1).max()) + 1
        tokens = tokens[:, :length]
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(tokens).to(cast) + m.positional_embedding[:length].to(cast)
        x = m.ln_final(m.transformer(x, attn_mask=m.attn_mask[:length, :length]))
        x = text_global_pool(x, tokens, "argmax")
        x = m.text_projection(x) if isinstance(m.text_projection, nn.Linear) else x @ m.text_projection
        return torch.nn.functional.normalize(x.float(), dim=-1)

    @torch.inference_mode()
    def encode_images(self, images: torch.Tensor, visual: str | nn.Module | None = None, batch_size: int = 64) -> torch.Tensor:
        """L2-normalised image features.

        Args:
            images: (..., 3, H, W) float32, CLIP-normalised (see ``clip_normalize``); cast to the
                tower's device and dtype (bf16 for a bf16 backbone) batch by batch.
            visual: which tower encodes them: None or "clip" (CLIP's visual tower), "depth" (the
                paired CLIP2Point depth encoder), or any visual module of the same input size (its
                own dtype is used). Nothing is stored: concurrent callers may pass different towers.
            batch_size: images per forward pass.

        Returns:
            (..., D) float32 on the backbone's device.

        Raises:
            Clip2PointError: "depth" without a paired depth encoder, or an unknown name.
        """
        tower = self.visual(visual)
        dtype = _module_dtype(tower)
        lead = images.shape[:-3]
        flat = images.reshape(-1, *images.shape[-3:])
        out = [
            torch.nn.functional.normalize(tower(flat[i : i + batch_size].to(self.device, dtype)).float(), dim=-1)
            for i in range(0, flat.shape[0], batch_size)
        ]
        return torch.cat(out).reshape(*lead, -1)

    def visual(self, encoder: str | nn.Module | None = "clip") -> nn.Module:
        """The visual tower: "clip" (or None), "depth", or a module (returned as is)."""
        if isinstance(encoder, nn.Module):
            return encoder
        if encoder == "depth":
            if self._depth is None:
                raise Clip2PointError("no depth encoder loaded; pass --depth-encoder FILE (e.g. CLIP2Point's best_eval.pth)")
            return self._depth
        if encoder not in (None, "clip"):
            raise Clip2PointError(f"encoder must be 'clip' or 'depth', got {encoder!r}")
        return self.model.visual


def load_backbone(
    model_name: str = DEFAULT_MODEL,
    weights: str | None = None,
    device: torch.device | str = "cpu",
    depth_encoder: str | os.PathLike | None = None,
    quick_gelu: bool | None = None,
    allow_download: bool = True,
    precision: str = "fp32",
) -> ClipBackbone:
    """Build a frozen CLIP backbone (and optionally a CLIP2Point depth encoder).

    Args:
        model_name: open_clip architecture, default "ViT-B-32" (CLIP2Point's).
        weights: None (search: $CLIP2POINT_WEIGHTS, weights/, open_clip cache, download),
            "random", an open_clip pretrained tag, or a checkpoint path (OpenAI ``.pt``,
            open_clip ``.bin``/``.safetensors``).
        device: "cpu", "cuda", "cuda:1", ... Nothing is hard-coded to a GPU.
        depth_encoder: path to CLIP2Point's ``best_eval.pth`` or an exported depth encoder.
        quick_gelu: see :class:`BackboneConfig` (the CLIP model's; the depth encoder always
            uses QuickGELU, see :func:`depth_encoder_architecture`).
        allow_download: allow open_clip to download a pretrained tag.
        precision: "fp32" (default), "bf16" or "auto": the weights of the CLIP model and the
            depth encoder are converted to that dtype (:func:`resolve_precision` says which and
            why; ``backbone.precision_reason`` keeps it). Features are float32 either way.

    Raises:
        Clip2PointError: unknown model or precision name.
        WeightsNotFoundError: no weights found (message says how to get them).
        CheckpointError: a weights file is corrupt, unsafe, or does not fit ``model_name``.
    """
    config = BackboneConfig(model_name, weights, quick_gelu, allow_download, precision)
    dtype, reason = resolve_precision(precision, device)
    source = resolve_weights(config)
    oc = _open_clip()
    if quick_gelu is None:
        tag_cfg = oc.get_pretrained_cfg(model_name, source.location) if source.kind == "tag" else {}
        quick_gelu = bool(tag_cfg.get("quick_gelu", False)) or source.kind == "file" or (source.kind == "tag" and source.location == "openai")
        if source.kind == "random":
            quick_gelu = bool(oc.get_model_config(model_name).get("quick_gelu", False)) or model_name == DEFAULT_MODEL
    log.info("loading %s with %s", model_name, source.describe())
    cached = _tag_cached(model_name, source.location) if source.kind == "tag" else None
    if source.kind == "tag" and cached is None:  # a download through open_clip (weights_only loading)
        try:
            model = oc.create_model(model_name, pretrained=source.location, device=device, force_quick_gelu=quick_gelu)
        except Exception as e:
            raise WeightsNotFoundError(
                f"could not get open_clip weights {model_name}/{source.location} ({str(e).splitlines()[0][:200]}). "
                + _how_to_get_weights(config, [f"download of tag {source.location!r}: failed"]).split(". ", 1)[1]
            ) from None
    elif source.kind == "random":
        model = _random_architecture(model_name, quick_gelu).to(device)
    else:  # a file, or a tag already in open_clip's cache: read by our safe loader
        path = source.location if source.kind == "file" else cached
        sd, _ = load_state_dict_file(path)
        model = _architecture_with_weights(model_name, quick_gelu, sd, path).to(device)
    if dtype != torch.float32:
        _convert_precision(model, dtype)
    log.info("precision %s", reason)
    backbone = ClipBackbone(model, oc.get_tokenizer(model_name), model_name, source, precision_reason=reason)
    return backbone.with_depth_encoder(depth_encoder) if depth_encoder is not None else backbone


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
    oc = _open_clip()
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


def _random_architecture(model_name: str, quick_gelu: bool) -> nn.Module:
    """open_clip's own random initialisation drawn from a private generator: the same weights in
    every run, and the process-wide RNG is neither reseeded nor advanced."""
    with private_rng(seeded_generator(0, "random-weights", model_name)):
        return build_architecture(model_name, quick_gelu)


def _architecture_with_weights(model_name: str, quick_gelu: bool, sd: dict[str, torch.Tensor], path: str) -> nn.Module:
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
    model = _random_architecture(model_name, quick_gelu)
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
