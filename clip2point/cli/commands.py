"""What each ``clip2point`` sub-command does (``cmd_<name>(args) -> exit status``), and :data:`COMMANDS`.

Heavy libraries (torch, open_clip, the models) are imported inside the commands, when they run.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from ..cliutil import check_output_dir, config_from_args
from ..pretrain.cli import COMMANDS as PRETRAIN_COMMANDS
from .common import (PLOT_SUFFIXES, backbone_from_args, check_numbers, classes_from_args, device_name, load_inputs, log_cache,
                     progress_bar, templates_from_args, view_cache)
from .data import cmd_data
from .eval import cmd_eval, cmd_eval_compare_precision

__all__ = ["COMMANDS", "PLOT_SUFFIXES", "cmd_info", "cmd_render", "cmd_zeroshot", "cmd_zeroshot_adapter", "cmd_eval",
           "cmd_fewshot", "cmd_data", "cmd_cache", "cmd_eval_compare_precision"]

def cmd_render(args) -> int:
    import numpy as np

    from ..plots import save_view_grid
    from ..render import DepthRenderer, RasterSettings

    check_numbers(args)
    out = check_output_dir(args.out_dir)
    renderer = DepthRenderer(args.views, RasterSettings(args.image_size, args.radius))
    labels = renderer.views.labels()
    with progress_bar(args, len(args.inputs), "render") as bar:
        for path, pc in load_inputs(args):
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
    if args.precision is None:  # the precision the adapter was trained with (runs before the option: fp32)
        args.precision = info.get("precision")
    return backbone_from_args(args)


def _classify_each(args, clouds, desc: str, predict, extra: dict, header, footer) -> None:
    """Classify each (path, PointCloud) with ``predict(points)`` and print it: one JSON object per input
    (``file``, ``extra``, the result's ``as_dict()``) with --json, else a header line, the top-k bars and ``footer(res)``."""
    with progress_bar(args, len(clouds), desc) as bar:
        for path, pc in clouds:
            res = predict(pc.points)
            if args.json:
                print(json.dumps({"file": str(path), **extra, **res.as_dict()}))
            else:
                print(f"{path}  ({len(pc)} points, {len(res.view_labels)} views, {header(res)})")
                for name, prob in res.top(args.top_k):
                    print(f"  {name:<16s} {prob * 100:6.2f}%  {'█' * round(prob * 30)}")
                print(footer(res))
            bar.update(1)


def cmd_zeroshot_adapter(args, run, clouds) -> int:
    """``zeroshot --adapter RUN_DIR``: classify with the run's trained adapter (``run``: its RunFolder)."""
    from ..fewshot import load_adapter

    cache = view_cache(args)
    clf = load_adapter(run.path, _adapter_backbone(args, run), batch_size=args.batch_size * 10, cache=cache)

    def gate_line(res) -> str:
        path_a = "depth encoder" if res.paths == "depth+clip" else "path A"
        return f"  gate per view (share from {path_a}): " + ", ".join(f"{g:.2f}" for g in res.gate[0].tolist())

    _classify_each(args, clouds, "adapter", clf.predict, {"adapter": str(args.adapter)},
                   lambda res: f"adapter {args.adapter}, paths {res.paths}", gate_line)
    log_cache(cache)
    return 0


def cmd_zeroshot(args) -> int:
    from ..prompts import describe_templates
    from ..zeroshot import ZeroShotClassifier

    if args.adapter is None and args.classes is None and args.class_set is None:
        from ..errors import Clip2PointError

        raise Clip2PointError("say what to classify into: --classes \"chair,table\", --class-set modelnet40, or --adapter RUN_DIR")
    check_numbers(args)
    if args.adapter is not None:
        from ..fewshot.rundir import RunFolder

        if args.templates is not None:
            from ..errors import Clip2PointError

            raise Clip2PointError("--templates does not apply with --adapter: the adapter's text side is the run's own "
                                  "(its config.json template); drop --templates")

        run = RunFolder(args.adapter)  # a damaged run folder fails before the inputs are read
        return cmd_zeroshot_adapter(args, run, list(load_inputs(args)))
    classes = classes_from_args(args)
    templates = templates_from_args(args)  # a bad template or template file fails before any work
    clouds = list(load_inputs(args))  # read (and validate) every file before loading the model
    cache = view_cache(args)
    clf = ZeroShotClassifier(backbone_from_args(args), classes, templates, args.views, image_size=args.image_size,
                             radius=args.radius, batch_size=args.batch_size * int(args.views), cache=cache)
    _classify_each(args, clouds, "zero-shot", lambda points: clf.predict(points, keep_depth=False),
                   {"templates": list(clf.templates)}, lambda res: f"template {describe_templates(clf.templates)}",
                   lambda res: "  per-view winners: " + ", ".join(res.view_votes()))
    log_cache(cache)
    return 0


def _run_with_progress(args, config, backbone, stop, cache=None):
    """run_fewshot with tqdm bars (encoding per split, epochs with loss/accuracy); the first Ctrl-C
    stops the run cleanly after the current step (status "cancelled", resumable), a second aborts."""
    import signal
    import threading

    from tqdm.auto import tqdm

    from ..fewshot import run_fewshot

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
        return run_fewshot(config, backbone, progress=progress, should_stop=stop, cache=cache)
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
        for b in bars.values():
            b.close()


def cmd_fewshot(args) -> int:
    import threading

    from ..fewshot import FewShotConfig

    config = config_from_args(FewShotConfig, args, image_size=args.image_size, device=device_name(args.device))
    config.validate()  # settings errors before the model loads
    check_numbers(args)
    check_output_dir(args.out_dir)  # an unwritable -o fails now, not after encoding
    import torch

    backbone = backbone_from_args(args)
    stop = threading.Event()
    # bitwise-repeatable kernels for this command only (a library call never flips this process-wide flag)
    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    cache = view_cache(args)
    try:
        result = _run_with_progress(args, config, backbone, stop, cache)
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
    log_cache(cache)
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

    from .. import __version__
    from ..weights import KNOWN_CHECKPOINTS, find_weight_files, weights_dirs

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
    _print_auto_precision(["cpu", "cuda"] if cuda else ["cpu"])
    if args.brief:
        return 0
    print("weights folders: " + ", ".join(f"{d}{'' if d.is_dir() else ' (missing)'}" for d in weights_dirs()))
    files = find_weight_files()
    print("files there: " + (", ".join(str(f) for f in files) if files else "none"))
    from ..backbone import BackboneConfig, resolve_weights
    from ..errors import WeightsNotFoundError

    try:
        src = resolve_weights(BackboneConfig(args.model, allow_download=False))
        print(f"CLIP weights for {args.model}: {src.describe()}")
    except WeightsNotFoundError as e:
        print(f"CLIP weights for {args.model}: NOT FOUND. {e}")
    from ..viewcache import cache_info

    print(f"view-feature cache: {cache_info().describe()} (`clip2point cache clear` empties it; --no-cache skips it)")
    print("known checkpoints:")
    for k in KNOWN_CHECKPOINTS:
        print(f"  {k.name:<22s} {k.kind:<13s} {k.source}\n  {'':<22s} how: {k.how}")
    return 0


def _print_auto_precision(devices: list[str]) -> None:
    """What ``--precision auto`` picks on each device, and why (:func:`clip2point.backbone.resolve_precision`)."""
    from ..backbone import resolve_precision

    for device in devices:
        _, reason = resolve_precision("auto", device)
        print(f"--precision auto on {device}: {reason} (the default is fp32)")


def cmd_cache(args) -> int:
    """``clip2point cache info|clear``."""
    from ..viewcache import cache_info, clear_cache, default_cache_dir

    root = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    if args.cache_command == "info":
        print(f"view-feature cache: {cache_info(root).describe()}")
    else:
        print(f"removed {clear_cache(root):,} entries from {root}")
    return 0


COMMANDS = {"info": cmd_info, "render": cmd_render, "zeroshot": cmd_zeroshot, "eval": cmd_eval, "fewshot": cmd_fewshot,
            "data": cmd_data, "cache": cmd_cache,
            **PRETRAIN_COMMANDS}
