"""Helpers shared by the ``clip2point`` sub-commands: device, progress bar, option checks, inputs, backbone, cache.

Heavy libraries (torch, open_clip, the models) are imported inside the functions, when they run.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

__all__ = ["PLOT_SUFFIXES", "device_name", "progress_bar", "check_numbers", "load_inputs", "view_cache", "log_cache",
           "backbone_from_args", "classes_from_args", "templates_from_args"]

PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def device_name(name: str) -> str:
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def progress_bar(args, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="shape", disable=args.quiet or total <= 1, file=sys.stderr)


def check_numbers(args) -> None:
    """Numeric options a user can get wrong, checked before any work (one clear line each)."""
    from ..errors import Clip2PointError
    from ..render import MAX_IMAGE_SIZE

    checks = [
        ("num_points", lambda v: v >= 0, "--num-points must be ≥ 0 (0 keeps every point), got {}"),
        ("batch_size", lambda v: v >= 1, "--batch-size must be ≥ 1, got {}"),
        ("top_k", lambda v: v >= 1, "--top-k must be ≥ 1, got {}"),
        ("limit", lambda v: v >= 0, "--limit must be ≥ 0 (0 = all shapes), got {}"),
        ("index", lambda v: v >= 0, "--index must be ≥ 0 (the first shape is 0), got {}"),
        ("image_size", lambda v: 1 <= v <= MAX_IMAGE_SIZE,
         f"--image-size must be between 1 and {MAX_IMAGE_SIZE} pixels (CLIP uses 224), got {{}}"),
        ("radius", lambda v: 0 < v < 2, "--radius must be in (0, 2) NDC units (0.02 ≈ 2.2 px at 224², CLIP2Point's), got {}"),
    ]
    for name, ok, msg in checks:
        value = getattr(args, name, None)
        if value is not None and not ok(value):
            raise Clip2PointError(msg.format(value))
    if getattr(args, "image_size", None) is not None:
        from ..render import RasterSettings

        try:
            RasterSettings(args.image_size, args.radius)
        except ValueError as e:  # the renderer's own rules, in case they are stricter
            raise Clip2PointError(f"--image-size {args.image_size} / --radius {args.radius}: {e}") from None


def load_inputs(args):
    """(path, PointCloud) per input; every failure names the file."""
    from ..errors import Clip2PointError
    from ..io import load_point_cloud

    for path in args.inputs:
        try:
            pc = load_point_cloud(path, num_points=args.num_points or None, up=args.up, seed=args.seed, index=args.index)
        except (Clip2PointError, OSError, KeyboardInterrupt):
            raise
        except MemoryError:
            size = Path(path).stat().st_size if Path(path).is_file() else 0
            raise Clip2PointError(f"{path}: not enough memory to read this file ({size:,} bytes on disk); it may declare "
                                  "more points than it holds, or be too large for this machine") from None
        except Exception as e:  # noqa: BLE001 - a reader choked on a malformed file
            if args.debug:
                raise
            raise Clip2PointError(
                f"{path}: could not read this file ({type(e).__name__}: {' '.join(str(e).split())[:200]}); it is malformed "
                "or in a layout clip2point does not read (if it is valid, re-run with --debug and report it)") from None
        yield path, pc


def view_cache(args):
    """The persistent view-feature cache the options ask for (--cache-dir DIR, default folder), or None (--no-cache)."""
    if getattr(args, "no_cache", False):
        return None
    from ..viewcache import ViewFeatureCache

    return ViewFeatureCache(args.cache_dir)  # None: $CLIP2POINT_CACHE_DIR, else ~/.cache/clip2point/views


def log_cache(cache) -> None:
    if cache is not None:
        logging.getLogger("clip2point").info("view-feature cache %s: %s", cache.root, cache.stats.as_dict())


def backbone_from_args(args, precision: str | None = None):
    """The backbone the options ask for, in ``precision`` (default: ``--precision``, else the library's default)."""
    from ..backbone import DEFAULT_MODEL, BackboneConfig, load_backbone

    precision = precision or getattr(args, "precision", None) or BackboneConfig.precision
    t = time.perf_counter()
    bb = load_backbone(args.model or DEFAULT_MODEL, args.weights, device_name(args.device), args.depth_encoder,
                       allow_download=not args.offline, precision=precision)
    logging.getLogger("clip2point").info("loaded %s in %.1f s (precision %s)", bb.describe(), time.perf_counter() - t,
                                         bb.precision_reason)
    if bb.weights.is_random:
        print("WARNING: CLIP weights are random (--weights random): the scores below are meaningless.", file=sys.stderr)
    return bb


def classes_from_args(args) -> list[str]:
    from ..classes import get_class_set, parse_classes

    return get_class_set(args.class_set) if args.class_set else parse_classes(args.classes)


def templates_from_args(args) -> tuple[str, ...]:
    """The prompt templates the options ask for: ``--templates PRESET|FILE``, else ``--template``, else the default.

    Call it before any slow work: a bad template or file is one clear line (exit status 2).

    Raises:
        PromptTemplateError: the message names the option (and the file and line for a template file).
    """
    from ..prompts import DEFAULT_TEMPLATE, PromptTemplateError, as_templates, resolve_templates

    spec = getattr(args, "templates", None)
    try:
        if spec is not None:
            return resolve_templates(spec)
        return as_templates(getattr(args, "template", None) or DEFAULT_TEMPLATE)
    except PromptTemplateError as e:
        raise PromptTemplateError(f"--templates {spec}: {e}" if spec is not None else f"--template: {e}") from None
