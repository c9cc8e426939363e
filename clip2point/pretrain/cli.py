"""Command line of pre-training and weights: ``clip2point pretrain``, ``clip2point weights export|import``.

The main CLI adds these with :func:`add_parsers` and dispatches through :data:`COMMANDS`;
``python -m clip2point.pretrain`` (what ``torchrun -m`` runs) parses the same ``pretrain``
options with :func:`build_parser` and calls the same function. Nothing heavy is imported here
until a command runs.
"""
from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable

from ..cliutil import HelpFormatter

__all__ = ["add_parsers", "add_pretrain_arguments", "PARSERS", "COMMANDS", "build_parser", "main", "cmd_pretrain", "cmd_weights",
           "cmd_weights_import"]


PRETRAIN_DESCRIPTION = """\
CLIP2Point image-depth pre-training (Huang et al., ICCV 2023, §3.2): fine-tune a copy of CLIP's
image encoder into a *depth encoder* whose features of a depth map match CLIP's features of an
RGB picture of the same shape from the same camera.

How it works:
  1. pairs, once: every shape gets a point cloud and 10 RGB views (the 10-view camera set). With
     --meshes they are made here (surface samples; shaded mesh renders, random light per mesh);
     with --shapenet-dir they are read from the authors' ShapeNet-55 files. The frozen CLIP image
     encoder encodes the views once; points + features go to a cached, sharded dataset
     (RUN_DIR/pairs, or --cache). An interrupted build resumes at the last finished shard.
  2. each step, each shape picks one of its 10 views; its points are depth-rendered from that
     camera twice (distance × (1 ± 0.1), random) and encoded by the depth encoder.
  3. loss = L_cross + L_depth / w² + log(w + 1), both NT-Xent (temperature 0.07): the two depth
     renders against each other, and their mean against the cached RGB feature; w is learned.
     Negatives are the whole global batch, gathered across processes under torchrun.
  4. LAMB (lr 6e-3, weight decay 1e-4), cosine schedule restarting every 2 epochs; checkpoints
     every --save-every steps; with --val-data, zero-shot accuracy on a held-out part of
     ModelNet's *train* split after every epoch picks RUN_DIR/best.safetensors.

Written to RUN_DIR: config.json, metrics.jsonl (one line per step / validation), checkpoints/
(step_*.safetensors + .json, last.json), best.safetensors (with --val-data), pairs/ (the cache).
Then `clip2point weights export RUN_DIR -o depth.safetensors` and use it with --depth-encoder.

Multi-GPU: `torchrun --nproc_per_node N -m clip2point.pretrain ARGS` takes the same ARGS; the
batch size stays the global one (split over the N processes)."""

PRETRAIN_EPILOG = """\
examples:
  # smallest run from a fresh clone, on CPU (random weights: it runs, the features mean nothing)
  clip2point pretrain --meshes examples/meshes --model tiny-ViT-test --weights random \\
      --steps 20 --batch-size 8 --save-every 10 -o runs/demo
  clip2point weights export runs/demo -o runs/demo/depth.safetensors
  clip2point zeroshot examples/points/chair.ply --class-set modelnet40 \\
      --model tiny-ViT-test --weights random --depth-encoder runs/demo/depth.safetensors

  # the same on 2 CPU processes (gloo); same losses as one process with batch 8
  torchrun --standalone --nproc_per_node 2 -m clip2point.pretrain --meshes examples/meshes \\
      --model tiny-ViT-test --weights random --steps 20 --batch-size 8 -o runs/demo2

  # the paper's setting: ShapeNet-55 renders, OpenAI ViT-B/32, 8 GPUs, validation on ModelNet10 train
  torchrun --nproc_per_node 8 -m clip2point.pretrain --shapenet-dir data/ --weights openai \\
      --batch-size 256 --epochs 100 --val-data ../shared/data/modelnet10 -o runs/shapenet

  # your own meshes (z-up files need --up z); build the cache first, then train; resume
  clip2point pretrain --meshes my_meshes/ --up z --weights openai --prepare-only -o runs/mine
  clip2point pretrain --meshes my_meshes/ --up z --weights openai --device cuda -o runs/mine
  clip2point pretrain --meshes my_meshes/ --up z --weights openai --device cuda -o runs/mine --resume
  (never put the shapes you will evaluate on, e.g. ModelNet's test folders, under --meshes)

ShapeNet layout (--shapenet-dir DIR; each folder may also sit under DIR/ShapeNet55/):
  DIR/shapenet_pc/<synset>-<model id>.npy      (8192, 3) points (Point-BERT's ShapeNet-55)
  DIR/ShapeNet-55/train.txt                    optional list of "<synset>-<model id>.npy"
  DIR/rendering/<synset>_<model id>/<k>.png    RGB render of view k = 0..9 (the 10-view set)
"""

EXPORT_EPILOG = """\
examples:
  clip2point weights export runs/shapenet -o weights/clip2point_depth.safetensors
  clip2point weights export runs/demo -o last.safetensors --checkpoint last
  clip2point zeroshot chair.ply --class-set modelnet40 --weights openai --depth-encoder weights/clip2point_depth.safetensors
  clip2point eval --dataset modelnet10 --data-dir ../shared/data/modelnet10 --weights openai \\
      --depth-encoder weights/clip2point_depth.safetensors

The file holds the bare CLIP visual-tower keys (conv1.weight, transformer.resblocks.*, proj, ...) and
metadata: format, model_name, source_run, step, checkpoint (best/last), val_accuracy, init_weights.
"""


def add_pretrain_arguments(p: argparse.ArgumentParser) -> None:
    """The ``pretrain`` options (shared by the main CLI and ``python -m clip2point.pretrain``).

    Options that are settings of the run come from :class:`~clip2point.pretrain.config.PretrainConfig`'s
    fields (their defaults and help); the others choose the pair source and what to do.
    """
    from ..cliutil import add_config_arguments
    from ..io import UP_AXES
    from .config import PretrainConfig

    src = p.add_argument_group("pairs (one source, or an existing complete --cache)")
    g = src.add_mutually_exclusive_group()
    g.add_argument("--meshes", metavar="DIR",
                   help="folder of meshes (.off .obj .stl .ply .gltf .glb), searched recursively; the first sub-folder is the class")
    g.add_argument("--shapenet-dir", metavar="DIR", help="the authors' ShapeNet-55 layout (see below)")
    src.add_argument("--shapenet-split", choices=("train", "test", "all"), default="train",
                     help="which ShapeNet-55 list to use (the release pre-trains on train)")
    src.add_argument("--up", choices=UP_AXES, default="y", help="up axis of --meshes files (z for ModelNet OFF)")
    add_config_arguments(src, PretrainConfig, ["cache_dir"])
    src.add_argument("--store-points", type=int, default=2048, help="points stored per shape in the cache (float16)")
    add_config_arguments(src, PretrainConfig, ["shard_size", "keep_images"])
    src.add_argument("--prepare-only", action="store_true", help="build the pair cache, then stop")

    m = p.add_argument_group("model")
    add_config_arguments(m, PretrainConfig, ["model_name", "weights", "device", "precision", "amp", "grad_checkpointing"])
    m.add_argument("--offline", action="store_true", help="never try to download weights")

    t = p.add_argument_group("training")
    add_config_arguments(t, PretrainConfig, ["epochs", "max_steps", "batch_size", "lr", "weight_decay", "num_points",
                                             "temperature", "seed", "num_workers"])
    c = p.add_argument_group("checkpoints and validation")
    add_config_arguments(c, PretrainConfig, ["run_dir", "save_every", "resume", "val_data", "val_dataset", "val_per_class",
                                             "val_views"])


def _pretrain_parser(p: argparse.ArgumentParser) -> None:
    p.description, p.epilog = PRETRAIN_DESCRIPTION, PRETRAIN_EPILOG
    add_pretrain_arguments(p)


IMPORT_EPILOG = """\
what it reads: the `best.pth` the released fewshot.py saves — the DPA state dict (adapter1.*, adapter2.*,
pre_model.* = the depth encoder, ori_model.* = CLIP's visual tower, selector.* = the fixed cameras; a
DataParallel `module.` prefix is fine). It is read as tensors only (pickled code is refused).

what it writes into RUN_DIR: config.json (gate none, adapter input raw, the checkpoint's view set, the
release's bare-cosine head), adapter.safetensors, and depth_encoder.safetensors when pre_model differs from
ori_model. The class prompts are encoded with the CLIP model given here: use the one the adapter was trained
with (the release: ViT-B-32 with OpenAI's weights); a different ori_model is reported.

examples:
  clip2point weights import best.pth -o runs/release-mn40 --weights openai
  clip2point weights import best.pth -o runs/release-mn10 --dataset modelnet10 --weights openai
  clip2point zeroshot chair.ply --adapter runs/release-mn40
"""


def _import_parser(p: argparse.ArgumentParser) -> None:
    from ..backbone import DEFAULT_MODEL, DEFAULT_TEMPLATE

    p.add_argument("file", metavar="FILE", help="the authors' few-shot checkpoint (best.pth of the released fewshot.py)")
    p.add_argument("-o", "--out-dir", required=True, metavar="RUN_DIR", help="the run folder to write (created)")
    p.add_argument("--dataset", choices=("modelnet40", "modelnet10"), default="modelnet40",
                   help="what the adapter was trained on: its classes (the release's prompts) and the run's dataset")
    p.add_argument("--classes", default=None, help='comma-separated class names in the order of the training labels '
                                                   '(default: the --dataset preset)')
    p.add_argument("--template", default=DEFAULT_TEMPLATE, help="prompt template of the class text features")
    p.add_argument("--logit-scale", type=float, default=1.0, help="scale s of the head's logits s·cos (the release: 1)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in RUN_DIR")
    p.add_argument("--model", default=DEFAULT_MODEL, help="the CLIP architecture the adapter was trained with")
    p.add_argument("--weights", default=None, metavar="TAG|PATH|random",
                   help="its CLIP weights (default: the usual lookup, see `clip2point info`; the release: openai)")
    p.add_argument("--device", default="cpu", help="where the prompts are encoded")
    p.add_argument("--offline", action="store_true", help="never try to download weights")


def _weights_parser(p: argparse.ArgumentParser) -> None:
    p.description = "Manage weights: export a pre-trained depth encoder, import the authors' few-shot adapters."
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    e = wsub.add_parser("export", help="write a run's depth encoder as a .safetensors file for --depth-encoder",
                        description="Export the depth encoder of a `clip2point pretrain` run (its best validation "
                                    "checkpoint when it validated, else the last one) as a standalone safetensors file "
                                    "that `zeroshot`, `eval` and the app load with --depth-encoder FILE.",
                        epilog=EXPORT_EPILOG, formatter_class=HelpFormatter)
    e.add_argument("run_dir", metavar="RUN_DIR", help="a `clip2point pretrain` output folder")
    e.add_argument("-o", "--out", required=True, metavar="FILE", help="the .safetensors file to write")
    e.add_argument("--checkpoint", choices=("auto", "best", "last"), default="auto",
                   help="best = highest validation accuracy, last = latest checkpoint, auto = best if the run validated")
    i = wsub.add_parser("import", help="turn the authors' released few-shot checkpoint into a run folder for --adapter",
                        description="Import a few-shot checkpoint of the released CLIP2Point code (its Dual-Path "
                                    "Adapter) as a clip2point run folder that `zeroshot --adapter` and the app load.",
                        epilog=IMPORT_EPILOG, formatter_class=HelpFormatter)
    _import_parser(i)


#: sub-command → (one-line help, function adding its options to its parser); see :func:`clip2point.cli.build_parser`
PARSERS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "pretrain": ("CLIP2Point image-depth pre-training of a depth encoder (one process or torchrun)", _pretrain_parser),
    "weights": ("weights: export a pre-trained depth encoder, import the authors' few-shot adapters", _weights_parser),
}


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add ``pretrain`` and ``weights export`` to the main CLI's sub-commands."""
    for name, (help_text, add_options) in PARSERS.items():
        add_options(subparsers.add_parser(name, help=help_text, formatter_class=HelpFormatter))


def _config(args: argparse.Namespace):
    from ..cliutil import config_from_args
    from .config import PretrainConfig

    return config_from_args(PretrainConfig, args, progress=not getattr(args, "quiet", False),
                            allow_download=not args.offline)


def _source_factory(args: argparse.Namespace) -> Callable[[int], object] | None:
    """A deferred source, built for the model's input size (only rank 0 scans the folder)."""
    from .data import MeshFolderSource, ShapeNetRenderSource

    if args.meshes:
        return lambda size: MeshFolderSource(args.meshes, up=args.up, num_points=args.store_points,
                                             image_size=size, seed=args.seed)
    if args.shapenet_dir:
        return lambda size: ShapeNetRenderSource(args.shapenet_dir, split=args.shapenet_split,
                                                 num_points=args.store_points, image_size=size, seed=args.seed)
    return None


def cmd_pretrain(args: argparse.Namespace) -> int:
    """Run ``clip2point pretrain``; prints a short summary on rank 0."""
    from ..cliutil import check_output_dir
    from ..errors import Clip2PointError
    from .trainer import train

    if int(os.environ.get("RANK", "0")) > 0:
        logging.getLogger("clip2point").setLevel(logging.WARNING)
    else:
        check_output_dir(args.run_dir)  # an unwritable -o fails now, not at the first checkpoint
    if not (args.meshes or args.shapenet_dir or args.cache or args.resume):
        from pathlib import Path

        if not (Path(args.run_dir) / "pairs" / "index.json").is_file():
            raise Clip2PointError("give the pairs: --meshes DIR, --shapenet-dir DIR, or --cache DIR with a built cache")
    cfg = _config(args)
    summary = train(cfg, _source_factory(args), prepare_only=args.prepare_only)
    if args.prepare_only:
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"pair cache ready in {cfg.pairs_dir}")
        return 0
    if summary is not None:
        print(f"pre-trained {summary.steps} steps ({summary.epochs_done:.2f} epochs, {summary.world_size} process(es)) "
              f"in {summary.run_dir}: loss {summary.last.get('loss', float('nan')):.4f} "
              f"(cross {summary.last.get('loss_cross', float('nan')):.4f}, depth {summary.last.get('loss_depth', float('nan')):.4f}, "
              f"w {summary.last.get('w', float('nan')):.3f}), {summary.pairs_per_s:.1f} pairs/s")
        if summary.best_val_accuracy is not None:
            print(f"  best validation accuracy {summary.best_val_accuracy * 100:.2f}% at step {summary.best_step} "
                  f"({summary.run_dir}/best.safetensors)")
        print(f"  export: clip2point weights export {summary.run_dir} -o depth_encoder.safetensors")
    return 0


def cmd_weights_import(args: argparse.Namespace) -> int:
    """Run ``clip2point weights import FILE -o RUN_DIR`` (:func:`clip2point.fewshot.import_released_adapter`)."""
    import sys

    from ..backbone import load_backbone
    from ..classes import parse_classes
    from ..cliutil import check_output_dir
    from ..errors import Clip2PointError
    from ..fewshot import import_released_adapter

    if not os.path.isfile(args.file):
        raise Clip2PointError(f"{args.file}: no such file; give the released fewshot.py's checkpoint (best.pth)")
    out = check_output_dir(args.out_dir)  # before the model loads
    if (out / "config.json").exists() and not args.overwrite:
        raise Clip2PointError(f"{out} already holds a few-shot run; replace it (--overwrite) or choose another -o RUN_DIR")
    backbone = load_backbone(args.model, args.weights, args.device, allow_download=not args.offline)
    run = import_released_adapter(args.file, args.out_dir, backbone, dataset=args.dataset, template=args.template,
                                  classes=parse_classes(args.classes) if args.classes else None,
                                  logit_scale=args.logit_scale, overwrite=args.overwrite)
    imported = run.config_dict.get("imported", {})
    print(f"imported {args.file} into {run.path}/: {len(run.classes)} classes, {run.config.views} views, "
          f"paths {run.paths} (ori_model {imported.get('clip_visual', '?')} {backbone.model_name}, {backbone.weights.describe()})")
    print(f"  classify with: clip2point zeroshot SHAPE --adapter {run.path}")
    if backbone.weights.is_random:
        print("WARNING: CLIP weights are random (--weights random): the imported run's text features are meaningless.",
              file=sys.stderr)
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    """Run ``clip2point weights export`` or ``clip2point weights import``."""
    from pathlib import Path

    from ..cliutil import check_output_file
    from .checkpointing import export_depth_encoder

    if args.weights_command == "import":
        return cmd_weights_import(args)
    if args.weights_command == "export":
        if Path(args.out).suffix == ".safetensors":  # (export_depth_encoder explains any other name)
            check_output_file(args.out)
        path = export_depth_encoder(args.run_dir, args.out, args.checkpoint)
        print(f"wrote {path}; use it with --depth-encoder {path}")
        return 0
    raise AssertionError(args.weights_command)  # argparse restricts the choices


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"pretrain": cmd_pretrain, "weights": cmd_weights}


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m clip2point.pretrain`` (= ``clip2point pretrain``, for torchrun)."""
    p = argparse.ArgumentParser(prog="python -m clip2point.pretrain", description=PRETRAIN_DESCRIPTION,
                                epilog=PRETRAIN_EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    add_pretrain_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m clip2point.pretrain`` / ``torchrun ... -m clip2point.pretrain``."""
    from ..cliutil import run_command, setup_logging

    args = build_parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    setup_logging(args.debug, args.quiet or rank > 0, fmt=f"%(levelname)s [rank {rank}] %(name)s: %(message)s")
    return run_command(cmd_pretrain, args, f"clip2point pretrain [rank {rank}]", "interrupted (resume with --resume)")
