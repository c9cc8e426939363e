"""`clip2point` command line: render depth views, zero-shot classify, evaluate, few-shot train, manage data.

Every error a user can cause ends with one clear line on stderr naming the file or option and the
fix, and exit status 2 (the full traceback with --debug); a bug in clip2point is also one line, exit
status 1, asking to re-run with --debug and report it (see :mod:`clip2point.cliutil`). Output paths
(-o, --plot) are checked before the long work starts. Weight files — --weights, --depth-encoder,
$CLIP2POINT_WEIGHTS, the weights folders, and files a run folder's config.json names — are read
without running code (see :mod:`clip2point.checkpoints`).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from .cliutil import (
    HelpFormatter, add_config_arguments, check_output_dir, check_output_file, config_from_args, run_command, setup_logging,
)
from .pretrain.cli import COMMANDS as PRETRAIN_COMMANDS
from .pretrain.cli import PARSERS as PRETRAIN_PARSERS

__all__ = ["main", "build_parser", "command_of"]

PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")

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

weights: without --weights, clip2point looks at $CLIP2POINT_WEIGHTS, then weights/ (ViT-B-32*.pt|.bin|
.safetensors), then open_clip's cache / download of the 'openai' tag. If none is found it stops and says
how to get weights; `--weights random` runs with random weights (scores are then meaningless).
"""


def _view_set_names() -> tuple[str, ...]:
    from .render import VIEW_SETS

    return tuple(sorted(VIEW_SETS, key=lambda name: (len(name), name)))


def _add_shape_args(p: argparse.ArgumentParser) -> None:
    from .io import UP_AXES

    p.add_argument("--up", choices=UP_AXES, default="y",
                   help="up axis of the input: z for ModelNet OFF data and its samples (mapped (x,y,z)->(-y,z,-x)), y otherwise")
    p.add_argument("--num-points", type=int, default=1024, help="points kept per shape (farthest point sampling); 0 keeps all")
    p.add_argument("--index", type=int, default=0, help="which shape of a multi-shape .h5/.npy/.npz file")
    p.add_argument("--seed", type=int, default=0, help="seed of point sampling")


def _add_image_size_arg(p: argparse.ArgumentParser) -> None:
    from .render import RasterSettings

    p.add_argument("--image-size", type=int, default=RasterSettings.image_size, help="depth image size in pixels (H = W)")


def _add_render_args(p: argparse.ArgumentParser, default_views: str) -> None:
    from .render import RasterSettings

    p.add_argument("--views", choices=_view_set_names(), default=default_views,
                   help="view set: 6 = released zero-shot views, 10 = pre-training/few-shot views")
    _add_image_size_arg(p)
    p.add_argument("--radius", type=float, default=RasterSettings.radius,
                   help="splat radius in NDC units (0.02 ≈ 2.2 px at 224²)")


def _add_backbone_args(p: argparse.ArgumentParser) -> None:
    from .backbone import DEFAULT_MODEL

    p.add_argument("--model", default=None, help=f"open_clip architecture (default: {DEFAULT_MODEL}; with --adapter, the run's)")
    p.add_argument("--weights", default=None, metavar="TAG|PATH|random",
                   help="CLIP weights: an open_clip tag (openai), a checkpoint file, or 'random' (meaningless scores); "
                        "files are read without running code (pickled code and TorchScript code are refused)")
    p.add_argument("--depth-encoder", default=None, metavar="PATH",
                   help="CLIP2Point depth encoder (authors' best_eval.pth or `clip2point weights export` output); used instead of CLIP's visual tower")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda when available)")
    p.add_argument("--offline", action="store_true", help="never try to download weights")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    from .backbone import DEFAULT_TEMPLATE

    _add_backbone_args(p)
    p.add_argument("--template", default=DEFAULT_TEMPLATE, help="prompt template; {} is replaced by the class name")
    p.add_argument("--batch-size", type=int, default=32, help="shapes per batch")


def _info_parser(p: argparse.ArgumentParser) -> None:
    from .backbone import DEFAULT_MODEL

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
    from .classes import CLASS_SETS

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


def _eval_parser(p: argparse.ArgumentParser) -> None:
    from .datasets import DATASET_NAMES
    from .io import UP_AXES

    p.add_argument("--dataset", choices=DATASET_NAMES, required=True)
    p.add_argument("--data-dir", required=True, help="folder with the dataset (h5, ply_hdf5_2048, normal_resampled or OFF layout)")
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N shapes (0 = all)")
    p.add_argument("--num-points", type=int, default=1024, help="points per shape")
    p.add_argument("--up", choices=UP_AXES, default=None, help="override the dataset's up axis")
    p.add_argument("--plot", metavar="PNG", help="save the confusion matrix as a PNG")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    _add_render_args(p, "6")
    _add_model_args(p)


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
    from .fewshot import FewShotConfig

    p.description = ("Train CLIP2Point's Gated Dual-Path Adapter (GDPA) from K shapes per class and report "
                     "validation/test accuracy, per-view gate weights and plots.")
    p.epilog = FEWSHOT_EPILOG
    add_config_arguments(p, FewShotConfig)  # every FewShotConfig field with a "flag": its default and help
    _add_image_size_arg(p)  # the CLI renders at CLIP2Point's 224 px unless told (the library: the model's input size)
    p.add_argument("--json", action="store_true", help="print metrics.json instead of the summary")
    _add_backbone_args(p)


def _data_parser(p: argparse.ArgumentParser) -> None:
    from .datasets import DATASET_URLS

    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    d = dsub.add_parser("download", help="download and unzip the official ModelNet archive", formatter_class=HelpFormatter)
    d.add_argument("name", choices=tuple(DATASET_URLS))
    d.add_argument("-o", "--out-dir", default="data", help="where to unzip")


#: sub-command → (one-line help, function adding its options to its parser)
PARSERS = {
    "info": ("versions, device, and which weights were found where", _info_parser),
    "render": ("render depth views of point clouds/meshes to PNG or NPY", _render_parser),
    "zeroshot": ("zero-shot classify point clouds/meshes by class names", _zeroshot_parser),
    "eval": ("zero-shot accuracy on ModelNet10/40 (accuracy, per-class, confusion matrix)", _eval_parser),
    "fewshot": ("few-shot training of the Gated Dual-Path Adapter on ModelNet10/40", _fewshot_parser),
    "data": ("datasets: download ModelNet10/40", _data_parser),
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


def _device(name: str) -> str:
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _progress(args, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="shape", disable=args.quiet or total <= 1, file=sys.stderr)


def _check_numbers(args) -> None:
    """Numeric options a user can get wrong, checked before any work (one clear line each)."""
    from .errors import Clip2PointError
    from .render import MAX_IMAGE_SIZE

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
        from .render import RasterSettings

        try:
            RasterSettings(args.image_size, args.radius)
        except ValueError as e:  # the renderer's own rules, in case they are stricter
            raise Clip2PointError(f"--image-size {args.image_size} / --radius {args.radius}: {e}") from None


def _load_inputs(args):
    """(path, PointCloud) per input; every failure names the file."""
    from .errors import Clip2PointError
    from .io import load_point_cloud

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


def cmd_render(args) -> int:
    import numpy as np

    from .plots import save_view_grid
    from .render import DepthRenderer, RasterSettings

    _check_numbers(args)
    out = check_output_dir(args.out_dir)
    renderer = DepthRenderer(args.views, RasterSettings(args.image_size, args.radius))
    labels = renderer.views.labels()
    with _progress(args, len(args.inputs), "render") as bar:
        for path, pc in _load_inputs(args):
            depth = renderer(pc.points)[0].numpy()  # (V, H, W)
            stem = Path(path).stem + (f"_{args.index}" if args.index else "")
            if args.format == "npy":
                np.save(out / f"{stem}_depth.npy", depth.astype(np.float32))
                written = f"{stem}_depth.npy"
            else:
                from PIL import Image

                for k, img in enumerate(depth):
                    Image.fromarray((img * 255).round().astype(np.uint8)).save(out / f"{stem}_view{k:02d}.png")
                save_view_grid(depth, labels, out / f"{stem}_grid.png", title=f"{Path(path).name}: {len(pc)} points")
                written = f"{stem}_view00..{len(depth) - 1:02d}.png, {stem}_grid.png"
            bar.update(1)
            logging.getLogger("clip2point").info("%s -> %s/%s", path, out, written)
    print(f"wrote {len(args.inputs)} shape(s) × {len(labels)} views to {out}/")
    return 0


def _backbone(args):
    from .backbone import DEFAULT_MODEL, load_backbone

    t = time.perf_counter()
    bb = load_backbone(args.model or DEFAULT_MODEL, args.weights, _device(args.device), args.depth_encoder,
                       allow_download=not args.offline)
    logging.getLogger("clip2point").info("loaded %s in %.1f s", bb.describe(), time.perf_counter() - t)
    if bb.weights.is_random:
        print("WARNING: CLIP weights are random (--weights random): the scores below are meaningless.", file=sys.stderr)
    return bb


def _classes(args) -> list[str]:
    from .classes import get_class_set, parse_classes

    return get_class_set(args.class_set) if args.class_set else parse_classes(args.classes)


def _adapter_backbone(args, run):
    """Backbone for `zeroshot --adapter`: --model/--weights/--depth-encoder default to the run's.

    Args:
        run: the :class:`~clip2point.fewshot.rundir.RunFolder` of ``args.adapter``.

    Files the run's config.json names are read like any other checkpoint (safe loader only: no
    pickled code, no TorchScript code); the log says which file the config points at.
    """
    info = run.backbone_info
    logger = logging.getLogger("clip2point")
    if args.model is None and info.get("model_name"):
        args.model = info["model_name"]
    if args.weights is None and info.get("weights_kind") in ("random", "tag", "file"):
        args.weights = "random" if info["weights_kind"] == "random" else info.get("weights_location")
        if info["weights_kind"] == "file":
            logger.info("the run's config.json points at CLIP weights file %s (read safely: tensors only)", args.weights)
    if args.depth_encoder is None and info.get("paths") == "depth+clip" and info.get("depth_encoder"):
        args.depth_encoder = info["depth_encoder"]
        logger.info("the run's config.json points at depth encoder %s (read safely: tensors only)", args.depth_encoder)
    return _backbone(args)


def cmd_zeroshot_adapter(args, run, clouds) -> int:
    """``zeroshot --adapter RUN_DIR``: classify with the run's trained adapter (``run``: its RunFolder)."""
    from .fewshot import load_adapter

    clf = load_adapter(run.path, _adapter_backbone(args, run), batch_size=args.batch_size * 10)
    with _progress(args, len(clouds), "adapter") as bar:
        for path, pc in clouds:
            res = clf.predict(pc.points)
            if args.json:
                print(json.dumps({"file": str(path), "adapter": str(args.adapter), **res.as_dict()}))
            else:
                print(f"{path}  ({len(pc)} points, {len(res.view_labels)} views, adapter {args.adapter}, paths {res.paths})")
                for name, prob in res.top(args.top_k):
                    print(f"  {name:<16s} {prob * 100:6.2f}%  {'█' * round(prob * 30)}")
                path_a = "depth encoder" if res.paths == "depth+clip" else "path A"
                print(f"  gate per view (share from {path_a}): " + ", ".join(f"{g:.2f}" for g in res.gate[0].tolist()))
            bar.update(1)
    return 0


def cmd_zeroshot(args) -> int:
    from .zeroshot import ZeroShotClassifier

    if args.adapter is None and args.classes is None and args.class_set is None:
        from .errors import Clip2PointError

        raise Clip2PointError("say what to classify into: --classes \"chair,table\", --class-set modelnet40, or --adapter RUN_DIR")
    _check_numbers(args)
    if args.adapter is not None:
        from .fewshot.rundir import RunFolder

        run = RunFolder(args.adapter)  # a damaged run folder fails before the inputs are read
        return cmd_zeroshot_adapter(args, run, list(_load_inputs(args)))
    classes = _classes(args)
    clouds = list(_load_inputs(args))  # read (and validate) every file before loading the model
    clf = ZeroShotClassifier(_backbone(args), classes, args.template, args.views, image_size=args.image_size,
                             radius=args.radius, batch_size=args.batch_size * int(args.views))
    with _progress(args, len(clouds), "zero-shot") as bar:
        for path, pc in clouds:
            res = clf.predict(pc.points, keep_depth=False)
            if args.json:
                print(json.dumps({"file": str(path), **res.as_dict()}))
            else:
                print(f"{path}  ({len(pc)} points, {len(res.view_labels)} views, template {clf.template!r})")
                for name, prob in res.top(args.top_k):
                    print(f"  {name:<16s} {prob * 100:6.2f}%  {'█' * round(prob * 30)}")
                print("  per-view winners: " + ", ".join(res.view_votes()))
            bar.update(1)
    return 0


def cmd_eval(args) -> int:
    from .datasets import open_dataset
    from .evaluate import evaluate_zero_shot
    from .zeroshot import ZeroShotClassifier

    _check_numbers(args)
    if args.plot:
        from .errors import Clip2PointError

        if Path(args.plot).suffix.lower() not in PLOT_SUFFIXES:
            raise Clip2PointError(f"--plot {args.plot}: name the figure *.png (or {', '.join(PLOT_SUFFIXES[1:])})")
        check_output_file(args.plot)  # before the long evaluation, not after
    ds = open_dataset(args.dataset, args.data_dir, args.split, num_points=args.num_points, up=args.up)
    if args.limit:
        ds = ds.subset(range(min(args.limit, len(ds))))
    clf = ZeroShotClassifier(_backbone(args), ds.class_names, args.template, args.views,
                             image_size=args.image_size, radius=args.radius, batch_size=args.batch_size * int(args.views))
    with _progress(args, len(ds), f"eval {args.dataset}/{args.split}") as bar:
        res = evaluate_zero_shot(clf, ds, batch_size=args.batch_size, progress=bar.update)
    if args.plot:
        from .plots import save_confusion_matrix

        save_confusion_matrix(res.confusion, res.classes, args.plot,
                              title=f"{args.dataset} {args.split}: zero-shot {res.accuracy * 100:.2f}% ({len(res.labels)} shapes)")
    if args.json:
        print(json.dumps({"dataset": args.dataset, "split": args.split, "weights": clf.backbone.describe(), **res.as_dict()}))
        return 0
    print(f"{args.dataset} {args.split}: {len(res.labels)} shapes, {clf.backbone.describe()}")
    print(f"  accuracy {res.accuracy * 100:.2f}%   mean class accuracy {res.mean_class_accuracy * 100:.2f}%")
    for name, acc in res.per_class_accuracy.items():
        print(f"  {name:<14s} {'   n/a' if acc != acc else f'{acc * 100:6.2f}%'}")
    if args.plot:
        print(f"  confusion matrix: {args.plot}")
    return 0


def _run_with_progress(args, config, backbone, stop):
    """run_fewshot with tqdm bars (encoding per split, epochs with loss/accuracy); the first Ctrl-C
    stops the run cleanly after the current step (status "cancelled", resumable), a second aborts."""
    import signal
    import threading

    from tqdm.auto import tqdm

    from .fewshot import run_fewshot

    bars: dict[str, object] = {}

    def progress(p) -> None:
        key = {"epoch": "train", "encode": f"encode {p.split}"}.get(p.stage)
        if key is None:  # test / done
            for b in bars.values():
                b.close()
            return
        bar = bars.get(key)
        if bar is None or (p.stage == "encode" and p.done == 0):
            train = p.stage == "epoch"
            if config.mode == "online" and not train:  # per-epoch re-encoding: only the epoch bar
                return
            for b in bars.values():  # stages run one after the other
                b.close()
            bar = bars[key] = tqdm(total=p.total, desc=key, unit="epoch" if train else "shape", file=sys.stderr,
                                   initial=max(0, p.done - 1) if train else 0, disable=args.quiet)
        bar.update(p.done - bar.n)
        if p.stats is not None:
            bar.set_postfix(loss=f"{p.stats.train_loss:.3f}", train=f"{p.stats.train_acc:.2f}", val=f"{p.stats.val_acc:.2f}")

    def on_sigint(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after the current step (checkpoints kept; --resume continues); Ctrl-C again aborts",
              file=sys.stderr)

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if main_thread else None
    try:
        return run_fewshot(config, backbone, progress=progress, should_stop=stop)
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
        for b in bars.values():
            b.close()


def cmd_fewshot(args) -> int:
    import threading

    from .fewshot import FewShotConfig

    config = config_from_args(FewShotConfig, args, image_size=args.image_size, device=_device(args.device))
    config.validate()  # settings errors before the model loads
    _check_numbers(args)
    check_output_dir(args.out_dir)  # an unwritable -o fails now, not after encoding
    import torch

    backbone = _backbone(args)
    stop = threading.Event()
    # bitwise-repeatable kernels for this command only (a library call never flips this process-wide flag)
    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        result = _run_with_progress(args, config, backbone, stop)
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
    m = result.metrics
    if args.json:
        print(json.dumps(m))
        return 0 if result.status == "completed" else 130

    def pct(x):
        return "n/a" if x is None else f"{x * 100:.2f}%"

    print(f"{args.dataset} {args.shots}-shot, gate {args.gate}, paths {m['paths']}: {result.status} "
          f"after {m['epochs_completed']}/{m['epochs_planned']} epochs ({m['backbone']})")
    print(f"  best epoch {m['best_epoch']}: val {pct(m['val_accuracy'])} ({m['data']['val_shapes']} shapes), "
          f"test {pct(m['test_accuracy'])} ({m['data']['test_shapes']} of {m['data']['test_shapes_available']} shapes), "
          f"last train {pct(m['train_accuracy'])}")
    if m["gate_weights"]:
        print("  gate per view (test mean, share from path A): " + ", ".join(f"{g:.2f}" for g in m["gate_weights"]))
    ep = m["encoder_passes"]
    print(f"  encoder passes: {ep['total']:,} images ({ep['this_session']:,} this session) vs {m['released_recipe_passes']:,} "
          f"for the released recipe at {m['epochs_planned']} epochs ({m['reduction_vs_released'] or 0:.0f}x fewer)")
    t = m["timings_s"]
    print(f"  time: encode {t['encode_s']:.1f} s, train {t['train_s']:.1f} s, test {t['test_s']:.1f} s, total {t['total_s']:.1f} s")
    print(f"  run folder: {result.run_dir}/ (metrics.json" + "".join(f", {Path(v).name}" for v in m["plots"].values()) + ")")
    if result.status != "completed":
        print(f"  resume with: clip2point fewshot ... --resume -o {result.run_dir}")
        return 130
    return 0


def cmd_info(args) -> int:
    import platform

    import numpy
    import torch

    from . import __version__
    from .weights import KNOWN_CHECKPOINTS, find_weight_files, weights_dirs

    def version(mod: str) -> str:
        from importlib.metadata import PackageNotFoundError, version as v

        try:
            return v(mod)
        except PackageNotFoundError:
            return "not installed"

    print(f"clip2point {__version__}  python {platform.python_version()}  torch {torch.__version__}  "
          f"open_clip {version('open_clip_torch')}  open3d {version('open3d')}  numpy {numpy.__version__}")
    cuda = torch.cuda.is_available()
    print(f"device: {'cuda (' + torch.cuda.get_device_name(0) + ')' if cuda else 'cpu'} "
          f"({torch.get_num_threads()} CPU threads); entry points take --device")
    if args.brief:
        return 0
    print("weights folders: " + ", ".join(f"{d}{'' if d.is_dir() else ' (missing)'}" for d in weights_dirs()))
    files = find_weight_files()
    print("files there: " + (", ".join(str(f) for f in files) if files else "none"))
    from .backbone import BackboneConfig, resolve_weights
    from .errors import WeightsNotFoundError

    try:
        src = resolve_weights(BackboneConfig(args.model, allow_download=False))
        print(f"CLIP weights for {args.model}: {src.describe()}")
    except WeightsNotFoundError as e:
        print(f"CLIP weights for {args.model}: NOT FOUND. {e}")
    print("known checkpoints:")
    for k in KNOWN_CHECKPOINTS:
        print(f"  {k.name:<22s} {k.kind:<13s} {k.source}\n  {'':<22s} how: {k.how}")
    return 0


def cmd_data(args) -> int:
    from .datasets import download_dataset

    check_output_dir(args.out_dir)
    path = download_dataset(args.name, args.out_dir, progress=not args.quiet)
    print(f"{args.name} ready in {path}; use --data-dir {path}")
    return 0


COMMANDS = {"info": cmd_info, "render": cmd_render, "zeroshot": cmd_zeroshot, "eval": cmd_eval, "fewshot": cmd_fewshot,
            "data": cmd_data, **PRETRAIN_COMMANDS}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(command_of(argv) or "").parse_args(argv)
    setup_logging(args.debug, args.quiet)
    return run_command(COMMANDS[args.command], args, f"clip2point {args.command}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
