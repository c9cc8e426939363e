"""CLIP backbone: an open_clip model, where its weights came from, and a cached text side.

CLIP2Point uses OpenAI's CLIP ViT-B/32 (Huang et al., ICCV 2023, §4.1); we load it through
open_clip. The authors' pre-trained depth encoder (``best_eval.pth``: keys
``module.point_model.<visual key>``) is imported as a second visual tower (§3.2).

Modules: this one (where weights come from, :class:`ClipBackbone`, :func:`load_backbone`);
:mod:`.architecture` (open_clip configs, building a model, loading weights into it);
:mod:`.depth` (the depth encoder); :mod:`.precision` (fp32 / bf16).
"""
from __future__ import annotations

import copy
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

from ..checkpoints import load_state_dict_file
from ..errors import Clip2PointError, WeightsNotFoundError
from ..prompts import DEFAULT_TEMPLATE, as_templates
from ..weights import find_weight_files, weights_dirs
from .architecture import (
    architecture_with_weights, build_architecture, ensure_timm, model_image_size, open_clip_module, random_architecture,
)
from .depth import depth_encoder_architecture, extract_visual_state_dict, load_depth_encoder, visual_activation
from .precision import PRECISIONS, convert_precision, module_dtype, precision_name, resolve_precision

log = logging.getLogger(__name__)

__all__ = [
    "BackboneConfig", "WeightsSource", "ClipBackbone", "load_backbone", "resolve_weights",
    "load_depth_encoder", "extract_visual_state_dict", "build_architecture", "TextFeatureCache",
    "DEFAULT_MODEL", "DEFAULT_TEMPLATE", "model_image_size", "default_tag", "open_clip_module",
    "PRECISIONS", "resolve_precision", "depth_encoder_architecture", "visual_activation",
]

#: CLIP2Point's architecture (Huang et al., §4.1): the default everywhere a model is not named.
DEFAULT_MODEL = "ViT-B-32"
_TEXT_BATCH = 256  # prompts per text-tower pass


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
    oc = open_clip_module()
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
    tags = open_clip_module().list_pretrained_tags_by_model(model_name)
    return "openai" if "openai" in tags else (tags[0] if tags else None)


def resolve_weights(config: BackboneConfig) -> WeightsSource:
    """Decide which weights to load without loading them.

    Order: explicit ``config.weights`` → ``$CLIP2POINT_WEIGHTS`` → files in the weights folders
    named ``<model_name>*`` → open_clip's cache for the model's default tag → a download of that tag
    (when ``allow_download``).

    Raises:
        WeightsNotFoundError: nothing found; the message lists where it looked and how to get weights.
    """
    oc = open_clip_module()
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
    back float32 (L2-normalised unless ``encode_images(normalize=False)``). CLIP's temperature stays
    float32.

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
        return module_dtype(self.model.visual)

    @property
    def precision(self) -> str:
        """The CLIP weights' precision by name: "fp32" or "bf16" ("auto" is resolved at load time)."""
        return precision_name(self.dtype)

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
            model = convert_precision(copy.deepcopy(self.model), dtype)
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
    def text_features(self, classes: Sequence[str], template: str | Sequence[str] = DEFAULT_TEMPLATE) -> torch.Tensor:
        """L2-normalised text features of each class's prompt(s): one template, or an ensemble.

        One template: the feature of ``template.format(c)`` (exactly as before ensembles existed).
        Several templates: CLIP's prompt ensembling (Radford et al., 2021, §3.1.4; OpenAI's
        ``Prompt_Engineering_for_ImageNet`` notebook): each template's feature L2-normalised, the
        mean over the templates, L2-normalised again. All K·C prompts go through the text tower in
        chunks of 256 prompts of similar length (not one pass per template).

        Args:
            classes: C class names (words, e.g. "night stand").
            template: a prompt with one ``{}``, e.g. "image of a {}" (CLIP2Point's release), or a
                sequence of them (see :data:`clip2point.prompts.TEMPLATE_PRESETS`); repeats count once.

        Returns:
            (C, D) float32 on the backbone's device (encoded in the backbone's precision). Cached
            per (precision, templates, classes), thread-safe; the returned tensor is shared: do not
            modify it.

        Raises:
            PromptTemplateError: a template without exactly one bare ``{}`` (see
                :func:`clip2point.prompts.validate_template`), or no templates.
        """
        templates = as_templates(template)
        key = (self.precision, templates, tuple(classes))
        cached = self._text_cache.get(key)
        if cached is not None:
            return cached
        if not classes:
            return self._text_cache.put(key, torch.zeros(0, self.embed_dim, device=self.device))
        prompts = [t.format(c) for t in templates for c in classes]  # template-major: (K, C)
        if len(templates) == 1:  # in class order, as before ensembles existed (bit-identical features)
            feats = torch.cat([self.encode_text_tokens(self.tokenizer(prompts[i : i + _TEXT_BATCH]).to(self.device))
                               for i in range(0, len(prompts), _TEXT_BATCH)])  # bounded activations for long lists
            return self._text_cache.put(key, feats)
        # an ensemble: all K·C prompts in chunks of similar length (the text tower runs on each chunk's longest prompt)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        feats = torch.empty(len(prompts), self.embed_dim, device=self.device)
        for i in range(0, len(order), _TEXT_BATCH):
            idx = order[i : i + _TEXT_BATCH]
            feats[idx] = self.encode_text_tokens(self.tokenizer([prompts[j] for j in idx]).to(self.device))
        # each row is already L2-normalised: the mean over the templates, normalised again
        feats = torch.nn.functional.normalize(feats.view(len(templates), len(classes), -1).mean(dim=0), dim=-1)
        return self._text_cache.put(key, feats)

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
    def encode_images(self, images: torch.Tensor, visual: str | nn.Module | None = None, batch_size: int = 64,
                      normalize: bool = True) -> torch.Tensor:
        """Image features, L2-normalised unless ``normalize=False``.

        Args:
            images: (..., 3, H, W) float32, CLIP-normalised (see ``clip_normalize``); cast to the
                tower's device and dtype (bf16 for a bf16 backbone) batch by batch.
            visual: which tower encodes them: None or "clip" (CLIP's visual tower), "depth" (the
                paired CLIP2Point depth encoder), or any visual module of the same input size (its
                own dtype is used). Nothing is stored: concurrent callers may pass different towers.
            batch_size: images per forward pass.
            normalize: L2-normalise each feature (default); False: the raw visual-tower outputs
                (after CLIP's projection), e.g. the released DPA adapter's input.

        Returns:
            (..., D) float32 on the backbone's device.

        Raises:
            Clip2PointError: "depth" without a paired depth encoder, or an unknown name.
        """
        tower = self.visual(visual)
        dtype = module_dtype(tower)
        lead = images.shape[:-3]
        flat = images.reshape(-1, *images.shape[-3:])
        out = []
        for i in range(0, flat.shape[0], batch_size):
            feats = tower(flat[i : i + batch_size].to(self.device, dtype)).float()
            out.append(torch.nn.functional.normalize(feats, dim=-1) if normalize else feats)
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
    oc = open_clip_module()
    if quick_gelu is None:
        tag_cfg = oc.get_pretrained_cfg(model_name, source.location) if source.kind == "tag" else {}
        quick_gelu = bool(tag_cfg.get("quick_gelu", False)) or source.kind == "file" or (source.kind == "tag" and source.location == "openai")
        if source.kind == "random":
            quick_gelu = bool(oc.get_model_config(model_name).get("quick_gelu", False)) or model_name == DEFAULT_MODEL
    log.info("loading %s with %s", model_name, source.describe())
    cached = _tag_cached(model_name, source.location) if source.kind == "tag" else None
    if source.kind == "tag" and cached is None:  # a download through open_clip (weights_only loading)
        try:
            ensure_timm(model_name)
            model = oc.create_model(model_name, pretrained=source.location, device=device, force_quick_gelu=quick_gelu)
        except Exception as e:
            log.debug("open_clip could not get %s/%s", model_name, source.location, exc_info=True)  # the cause, for --debug
            raise WeightsNotFoundError(
                f"could not get open_clip weights {model_name}/{source.location} ({str(e).splitlines()[0][:200]}). "
                + _how_to_get_weights(config, [f"download of tag {source.location!r}: failed"]).split(". ", 1)[1]
            ) from None
    elif source.kind == "random":
        model = random_architecture(model_name, quick_gelu).to(device)
    else:  # a file, or a tag already in open_clip's cache: read by our safe loader
        path = source.location if source.kind == "file" else cached
        sd, _ = load_state_dict_file(path)
        model = architecture_with_weights(model_name, quick_gelu, sd, path).to(device)
    if dtype != torch.float32:
        convert_precision(model, dtype)
    log.info("precision %s", reason)
    backbone = ClipBackbone(model, oc.get_tokenizer(model_name), model_name, source, precision_reason=reason)
    return backbone.with_depth_encoder(depth_encoder) if depth_encoder is not None else backbone
