"""``clip2point``'s argument parsers: every sub-command's options, their defaults and help.

Options that are settings of a library configuration come from its dataclass fields (see
:func:`clip2point.cliutil.add_config_arguments`); the rest are the command line's own. A
sub-command's options are built only when it is the one being run (:func:`build_parser`), so
``clip2point --help`` imports no model library.
"""
from __future__ import annotations

import argparse

from ..cliutil import HelpFormatter, add_config_arguments
from ..pretrain.cli import PARSERS as PRETRAIN_PARSERS
from .data import DATA_HELP, data_parser
from .eval import EVAL_HELP, eval_parser
from .options import (add_backbone_args, add_cache_args, add_image_size_arg, add_model_args, add_precision_arg,
                      add_render_args, add_shape_args)

__all__ = ["PARSERS", "build_parser", "command_of", "EPILOG", "FEWSHOT_EPILOG"]

EPILOG = """\
examples:
  clip2point info
  clip2point render chair.ply -o views/ --views 10 --format png
  clip2point zeroshot chair.ply --class-set modelnet40 --weights openai
  clip2point zeroshot scan.npy --classes "chair,table,lamp" --template "a depth map of a {}" --json
  clip2point zeroshot chair.ply --class-set modelnet40 --templates clip --weights openai   # a prompt ensemble
  clip2point zeroshot shapes.h5 --index 3 --up z --class-set modelnet10 --weights random
  clip2point eval --dataset modelnet10 --data-dir ../shared/data/modelnet10 --limit 100 --plot cm.png
  clip2point fewshot --dataset modelnet10 --data-dir ../shared/data/modelnet10 --shots 16 -o runs/mn10-16
  clip2point zeroshot chair.ply --adapter runs/mn10-16
  clip2point data download modelnet10 -o data/
  clip2point cache info

weights: without --weights, clip2point looks at $CLIP2POINT_WEIGHTS, then weights/ (ViT-B-32*.pt|.bin|
.safetensors), then open_clip's cache / download of the 'openai' tag. If none is found it stops and says
how to get weights; `--weights random` runs with random weights (scores are then meaningless).
"""


def _info_parser(p: argparse.ArgumentParser) -> None:
    from ..backbone import DEFAULT_MODEL

    p.add_argument("--brief", action="store_true", help="one line per item, no weights lookup")
    p.add_argument("--model", default=DEFAULT_MODEL, help="architecture whose weights to look for")


def _render_parser(p: argparse.ArgumentParser) -> None:
    p.description = ("Render depth views exactly as CLIP2Point does (unit sphere, orthographic, nearest-point disks, white "
                     "background). npy: OUT/<stem>_depth.npy, float32 (V, H, W) in [0, 1] with background 1.0; png: one "
                     "image per view plus a grid.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="point-cloud or mesh files")
    p.add_argument("-o", "--out-dir", required=True, help="output folder (created)")
    p.add_argument("--format", choices=("png", "npy"), default="png")
    add_shape_args(p)
    add_render_args(p, "10")


def _zeroshot_parser(p: argparse.ArgumentParser) -> None:
    from ..classes import CLASS_SETS

    p.description = ("Render each input, encode every view with CLIP, compare with the class prompts; shape logits = sum "
                     "of per-view logits (CLIP2Point's released protocol).")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="point-cloud or mesh files")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--classes", help='comma-separated class names, e.g. "chair,table,lamp"')
    g.add_argument("--class-set", choices=tuple(CLASS_SETS), help="a class-name preset")
    g.add_argument("--adapter", metavar="RUN_DIR",
                   help="classify with a trained few-shot adapter (a `clip2point fewshot` run folder) instead of prompts; "
                        "its classes, views and backbone are used (--model/--weights/--depth-encoder default to the run's)")
    p.add_argument("--top-k", type=int, default=5, help="classes shown per input")
    p.add_argument("--json", action="store_true", help="print one JSON object per input (file, classes, probs, top, view_logits)")
    add_shape_args(p)
    add_render_args(p, "6")
    add_model_args(p)
    add_precision_arg(p, adapter=True)
    add_cache_args(p)


FEWSHOT_EPILOG = """\
what it does:
  picks K shapes per class from the training split (seeded) plus a validation split (--val-per-class
  more shapes per class, disjoint from the shots) to choose the best epoch; renders 10 depth views per
  shape and encodes them ONCE with the frozen encoders (features.safetensors); trains the Gated Dual-Path
  Adapter (CLIP2Point §3.3) on the cached features with AdamW; evaluates the best epoch on the test split.
  Path A is the CLIP2Point depth encoder (--depth-encoder), path B the original CLIP; without a depth
  encoder both paths take CLIP features ("clip+clip"). --gate none is the released, ungated DPA.

writes into RUN_DIR:
  config.json, adapter.safetensors (best on validation), last.safetensors (every epoch, for --resume),
  features.safetensors, metrics.json (accuracies, per-class, confusion, gate weights per view, encoder
  passes, timings), curves.png, gate_weights.png, confusion.png

examples:
  clip2point fewshot --dataset modelnet10 --data-dir ../shared/data/modelnet10 --shots 16 -o runs/mn10-16
  clip2point fewshot --dataset modelnet40 --data-dir data/ --shots 4 --epochs 50 \\
      --depth-encoder weights/best_eval.pth --weights openai -o runs/mn40-4
  clip2point fewshot ... --gate none -o runs/dpa        # the released DPA, for comparison
  clip2point fewshot ... --resume -o runs/mn10-16       # continue an interrupted run (Ctrl-C is safe)
  clip2point fewshot ... --model tiny-ViT-test --weights random --shots 1 --epochs 2 --limit-test 50 -o /tmp/r
  clip2point zeroshot chair.ply --adapter runs/mn10-16  # classify new shapes with the trained adapter
"""


def _fewshot_parser(p: argparse.ArgumentParser) -> None:
    from ..fewshot import FewShotConfig

    p.description = ("Train CLIP2Point's Gated Dual-Path Adapter (GDPA) from K shapes per class and report "
                     "validation/test accuracy, per-view gate weights and plots.")
    p.epilog = FEWSHOT_EPILOG
    add_config_arguments(p, FewShotConfig)  # every FewShotConfig field with a "flag": its default and help
    add_image_size_arg(p)  # the CLI renders at CLIP2Point's 224 px unless told (the library: the model's input size)
    p.add_argument("--json", action="store_true", help="print metrics.json instead of the summary")
    add_backbone_args(p)
    add_precision_arg(p)  # a backbone setting, like --model: its default is BackboneConfig's
    add_cache_args(p)


CACHE_DIR_HELP = "the cache folder (default: $CLIP2POINT_CACHE_DIR, else ~/.cache/clip2point/views)"


def _cache_parser(p: argparse.ArgumentParser) -> None:
    p.description = ("The persistent view-feature cache: features of each shape's views, keyed by the encoder (model, "
                     "weights, precision), the view set and render settings and the shape's points, shared by eval, "
                     "zeroshot, fewshot and the app (see --cache-dir / --no-cache there). Bounded in size: the least "
                     "recently used entries go first.")
    csub = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    for name, help_text in (("info", "how many entries and bytes the cache holds"),
                            ("clear", "delete every entry (the folder stays)")):
        c = csub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        c.add_argument("--cache-dir", metavar="DIR", default=None, help=CACHE_DIR_HELP)


#: sub-command → (one-line help, function adding its options to its parser)
PARSERS = {
    "info": ("versions, device, and which weights were found where", _info_parser),
    "render": ("render depth views of point clouds/meshes to PNG or NPY", _render_parser),
    "zeroshot": ("zero-shot classify point clouds/meshes by class names", _zeroshot_parser),
    "eval": (EVAL_HELP, eval_parser),
    "fewshot": ("few-shot training of the Gated Dual-Path Adapter on ModelNet10/40", _fewshot_parser),
    "data": (DATA_HELP, data_parser),
    "cache": ("the persistent view-feature cache: info, clear", _cache_parser),
    **PRETRAIN_PARSERS,  # pretrain, weights export
}


def command_of(argv: list[str]) -> str | None:
    """The sub-command named in ``argv`` (the first word that is not an option), or None."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in PARSERS else None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``clip2point`` parser.

    Args:
        command: build only this sub-command's options (their defaults come from the library, which
            imports torch); the others are listed by name and help only ("": none, for ``clip2point
            --help``). None builds every one.
    """
    parser = argparse.ArgumentParser(
        prog="clip2point",
        description="CLIP2Point (ICCV 2023): render point clouds to depth maps and classify them with CLIP.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, add_options) in PARSERS.items():
        p = sub.add_parser(name, help=help_text, formatter_class=HelpFormatter)
        if command is None or command == name:
            add_options(p)
    return parser
