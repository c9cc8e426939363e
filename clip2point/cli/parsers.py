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

__all__ = ["PARSERS", "build_parser", "command_of", "EPILOG", "FEWSHOT_EPILOG"]

EPILOG = """\
examples:
  clip2point info
  clip2point render chair.ply -o views/ --views 10 --format png
  clip2point zeroshot chair.ply --class-set modelnet40 --weights openai
  clip2point zeroshot scan.npy --classes "chair,table,lamp" --template "a depth map of a {}" --json
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


def _view_set_names() -> tuple[str, ...]:
    from ..render import VIEW_SETS

    return tuple(sorted(VIEW_SETS, key=lambda name: (len(name), name)))


def _add_shape_args(p: argparse.ArgumentParser) -> None:
    from ..io import UP_AXES

    p.add_argument("--up", choices=UP_AXES, default="y",
                   help="up axis of the input: z for ModelNet OFF data and its samples (mapped (x,y,z)->(-y,z,-x)), y otherwise")
    p.add_argument("--num-points", type=int, default=1024, help="points kept per shape (farthest point sampling); 0 keeps all")
    p.add_argument("--index", type=int, default=0, help="which shape of a multi-shape .h5/.npy/.npz file")
    p.add_argument("--seed", type=int, default=0, help="seed of point sampling")


def _add_image_size_arg(p: argparse.ArgumentParser) -> None:
    from ..render import RasterSettings

    p.add_argument("--image-size", type=int, default=RasterSettings.image_size, help="depth image size in pixels (H = W)")


def _add_render_args(p: argparse.ArgumentParser, default_views: str) -> None:
    from ..render import RasterSettings

    p.add_argument("--views", choices=_view_set_names(), default=default_views,
                   help="view set: 6 = released zero-shot views, 10 = pre-training/few-shot views")
    _add_image_size_arg(p)
    p.add_argument("--radius", type=float, default=RasterSettings.radius,
                   help="splat radius in NDC units (0.02 ≈ 2.2 px at 224²)")


PRECISION_HELP = ("encoder weights: fp32 (exact), bf16, or auto (bf16 where this CPU/GPU computes it "
                  "natively — ~3x faster encoding on such CPUs, features within cosine 0.999 — else fp32; "
                  "`clip2point info` says what auto picks here and why)")


#: Appended to a help that states its default itself: formats to nothing, and keeps argparse from adding "(default: None)".
OWN_DEFAULT = "%(default).0s"


def _add_precision_arg(p: argparse.ArgumentParser, adapter: bool = False) -> None:
    """--precision, default the library's (``BackboneConfig.precision``); with ``adapter``, None: the run's."""
    from ..backbone import PRECISIONS, BackboneConfig

    if adapter:
        p.add_argument("--precision", choices=PRECISIONS, default=None,
                       help=PRECISION_HELP + f" (default: {BackboneConfig.precision}; with --adapter, the run's){OWN_DEFAULT}")
    else:
        p.add_argument("--precision", choices=PRECISIONS, default=BackboneConfig.precision, help=PRECISION_HELP)


def _add_cache_args(p: argparse.ArgumentParser) -> None:
    """--cache-dir / --no-cache: the persistent view-feature cache (:mod:`clip2point.viewcache`)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--cache-dir", metavar="DIR", default=None,
                   help="view-feature cache: shapes encoded before with the same encoder, precision, views and render "
                        "settings are not encoded again (default: $CLIP2POINT_CACHE_DIR, else ~/.cache/clip2point/views; "
                        "`clip2point cache info|clear`)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the view-feature cache")


def _add_backbone_args(p: argparse.ArgumentParser) -> None:
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


def _add_model_args(p: argparse.ArgumentParser) -> None:
    from ..backbone import DEFAULT_TEMPLATE

    _add_backbone_args(p)
    p.add_argument("--template", default=DEFAULT_TEMPLATE, help="prompt template; {} is replaced by the class name")
    p.add_argument("--batch-size", type=int, default=32, help="shapes per batch")


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
    _add_shape_args(p)
    _add_render_args(p, "10")


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
    _add_shape_args(p)
    _add_render_args(p, "6")
    _add_model_args(p)
    _add_precision_arg(p, adapter=True)
    _add_cache_args(p)


def _eval_parser(p: argparse.ArgumentParser) -> None:
    from ..datasets import DATASET_NAMES
    from ..fewshot import FewShotConfig
    from ..io import UP_AXES

    p.add_argument("--dataset", choices=DATASET_NAMES, required=True)
    p.add_argument("--data-dir", required=True, help="folder with the dataset (h5, ply_hdf5_2048, normal_resampled or OFF layout)")
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N shapes (0 = all)")
    p.add_argument("--num-points", type=int, default=1024, help="points per shape")
    p.add_argument("--up", choices=UP_AXES, default=None, help="override the dataset's up axis")
    add_config_arguments(p, FewShotConfig, ["prompt_style"])  # the same option, default and help as few-shot's
    p.add_argument("--plot", metavar="PNG", help="save the confusion matrix as a PNG")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--compare-precision", action="store_true",
                   help="run the evaluation in fp32 and in bf16 on the same shapes and report top-1 agreement of the "
                        "predictions, the largest feature difference and the smallest cosine (--precision and the view cache are not used)")
    _add_render_args(p, "6")
    _add_model_args(p)
    _add_precision_arg(p)
    _add_cache_args(p)


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
    _add_image_size_arg(p)  # the CLI renders at CLIP2Point's 224 px unless told (the library: the model's input size)
    p.add_argument("--json", action="store_true", help="print metrics.json instead of the summary")
    _add_backbone_args(p)
    _add_precision_arg(p)  # a backbone setting, like --model: its default is BackboneConfig's
    _add_cache_args(p)


def _data_parser(p: argparse.ArgumentParser) -> None:
    from ..datasets import DATASET_URLS

    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    d = dsub.add_parser("download", help="download and unzip the official ModelNet archive", formatter_class=HelpFormatter)
    d.add_argument("name", choices=tuple(DATASET_URLS))
    d.add_argument("-o", "--out-dir", default="data", help="where to unzip")


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
    "eval": ("zero-shot accuracy on ModelNet10/40 (accuracy, per-class, confusion matrix)", _eval_parser),
    "fewshot": ("few-shot training of the Gated Dual-Path Adapter on ModelNet10/40", _fewshot_parser),
    "data": ("datasets: download ModelNet10/40", _data_parser),
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
