"""Encoder precision: which weight dtype to run CLIP in (fp32, bf16, or chosen by the hardware), and the conversion.

bf16 *weights* (not autocast, which is slower on CPUs) roughly triple CPU encoding speed where the
CPU computes bf16 natively (x86 avx512_bf16 / AMX) with features within cosine 0.9999 of fp32
(issue 11; ``benchmarks/bench_precision.py`` measures both).
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from ..errors import Clip2PointError

__all__ = ["PRECISIONS", "resolve_precision", "convert_precision", "module_dtype", "precision_name"]

#: Accepted ``precision=`` values: "fp32" (the default), "bf16", "auto" (see :func:`resolve_precision`).
PRECISIONS = ("fp32", "bf16", "auto")
_DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
#: Scalars kept in float32 whatever the precision: rounding CLIP's temperature to bf16 (100 → 99.5)
#: would scale every logit.
_FP32_PARAMS = ("logit_scale", "logit_bias")


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


def convert_precision(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast ``model``'s floating weights and buffers to ``dtype`` in place and return it.

    CLIP's temperature (``logit_scale``, and SigLIP's ``logit_bias``) stays float32; integer
    buffers are untouched.
    """
    keep = {n: p.detach().float().clone() for n, p in model.named_parameters(recurse=False) if n in _FP32_PARAMS}
    model.to(dtype)
    for n, value in keep.items():
        getattr(model, n).data = value.to(getattr(model, n).device)
    return model


def module_dtype(module: nn.Module) -> torch.dtype:
    """The dtype of a module's first floating-point parameter (float32 if it has none)."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


def precision_name(dtype: torch.dtype) -> str:
    """"fp32", "bf16" or "fp16" for a floating dtype (else its torch name without "torch.")."""
    return _DTYPE_NAMES.get(dtype, str(dtype).removeprefix("torch."))
