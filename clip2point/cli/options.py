"""Options shared by several ``clip2point`` sub-commands (shape, render, backbone, precision, cache).

Each ``add_*`` function adds one group of options to a sub-command's parser; defaults come from
the library (imported when the sub-command's parser is built, see :func:`.parsers.build_parser`).
"""
from __future__ import annotations

import argparse

__all__ = ["view_set_names", "add_shape_args", "add_image_size_arg", "add_render_args", "add_precision_arg",
           "add_cache_args", "add_backbone_args", "add_model_args", "add_template_args", "PRECISION_HELP", "OWN_DEFAULT",
           "TEMPLATES_HELP"]


def view_set_names() -> tuple[str, ...]:
    from ..render import VIEW_SETS

    return tuple(sorted(VIEW_SETS, key=lambda name: (len(name), name)))


def add_shape_args(p: argparse.ArgumentParser) -> None:
    from ..io import UP_AXES

    p.add_argument("--up", choices=UP_AXES, default="y",
                   help="up axis of the input: z for ModelNet OFF data and its samples (mapped (x,y,z)->(-y,z,-x)), y otherwise")
    p.add_argument("--num-points", type=int, default=1024, help="points kept per shape (farthest point sampling); 0 keeps all")
    p.add_argument("--index", type=int, default=0, help="which shape of a multi-shape .h5/.npy/.npz file")
    p.add_argument("--seed", type=int, default=0, help="seed of point sampling")


def add_image_size_arg(p: argparse.ArgumentParser) -> None:
    from ..render import RasterSettings

    p.add_argument("--image-size", type=int, default=RasterSettings.image_size, help="depth image size in pixels (H = W)")


def add_render_args(p: argparse.ArgumentParser, default_views: str) -> None:
    from ..render import RasterSettings

    p.add_argument("--views", choices=view_set_names(), default=default_views,
                   help="view set: 6 = released zero-shot views, 10 = pre-training/few-shot views")
    add_image_size_arg(p)
    p.add_argument("--radius", type=float, default=RasterSettings.radius,
                   help="splat radius in NDC units (0.02 ≈ 2.2 px at 224²)")


PRECISION_HELP = ("encoder weights: fp32 (exact), bf16, or auto (bf16 where this CPU/GPU computes it "
                  "natively — ~3x faster encoding on such CPUs, features within cosine 0.999 — else fp32; "
                  "`clip2point info` says what auto picks here and why)")


#: Appended to a help that states its default itself: formats to nothing, and keeps argparse from adding "(default: None)".
OWN_DEFAULT = "%(default).0s"


def add_precision_arg(p: argparse.ArgumentParser, adapter: bool = False) -> None:
    """--precision, default the library's (``BackboneConfig.precision``); with ``adapter``, None: the run's."""
    from ..backbone import PRECISIONS, BackboneConfig

    if adapter:
        p.add_argument("--precision", choices=PRECISIONS, default=None,
                       help=PRECISION_HELP + f" (default: {BackboneConfig.precision}; with --adapter, the run's){OWN_DEFAULT}")
    else:
        p.add_argument("--precision", choices=PRECISIONS, default=BackboneConfig.precision, help=PRECISION_HELP)


def add_cache_args(p: argparse.ArgumentParser) -> None:
    """--cache-dir / --no-cache: the persistent view-feature cache (:mod:`clip2point.viewcache`)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--cache-dir", metavar="DIR", default=None,
                   help="view-feature cache: shapes encoded before with the same encoder, precision, views and render "
                        "settings are not encoded again (default: $CLIP2POINT_CACHE_DIR, else ~/.cache/clip2point/views; "
                        "`clip2point cache info|clear`)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the view-feature cache")


def add_backbone_args(p: argparse.ArgumentParser) -> None:
    from ..backbone import DEFAULT_MODEL

    p.add_argument("--model", default=None,
                   help=f"open_clip architecture (default: {DEFAULT_MODEL}; with --adapter, the run's){OWN_DEFAULT}")
    p.add_argument("--weights", default=None, metavar="TAG|PATH|random",
                   help="CLIP weights: an open_clip tag (openai), a checkpoint file, or 'random' (meaningless scores); "
                        "files are read without running code (pickled code and TorchScript code are refused)")
    p.add_argument("--depth-encoder", default=None, metavar="PATH",
                   help="CLIP2Point depth encoder (authors' best_eval.pth or `clip2point weights export` output); used instead of CLIP's visual tower")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda when available)")
    p.add_argument("--offline", action="store_true", help="never try to download weights")


TEMPLATES_HELP = ("a prompt ensemble, averaged in text-feature space (CLIP's prompt ensembling): a preset ({presets}), "
                  "or a UTF-8 file with one template per line ('#' comments and blank lines skipped)")


def add_template_args(p: argparse.ArgumentParser) -> None:
    """--template TEMPLATE | --templates PRESET|FILE (mutually exclusive); read them with :func:`.common.templates_from_args`."""
    from ..prompts import DEFAULT_TEMPLATE, TEMPLATE_PRESETS

    g = p.add_mutually_exclusive_group()
    g.add_argument("--template", default=DEFAULT_TEMPLATE,
                   help="prompt template; {} is replaced by the class name (exactly one {}; {{ }} for literal braces)")
    g.add_argument("--templates", default=None, metavar="PRESET|FILE",
                   help=TEMPLATES_HELP.format(presets=", ".join(TEMPLATE_PRESETS)))


def add_model_args(p: argparse.ArgumentParser) -> None:
    add_backbone_args(p)
    add_template_args(p)
    p.add_argument("--batch-size", type=int, default=32, help="shapes per batch")
