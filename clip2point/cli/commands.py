"""What each ``clip2point`` sub-command does (``cmd_<name>(args) -> exit status``), and :data:`COMMANDS`.

Heavy libraries (torch, open_clip, the models) are imported inside the commands, when they run.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from ..cliutil import check_output_dir, check_output_file, config_from_args
from ..pretrain.cli import COMMANDS as PRETRAIN_COMMANDS

__all__ = ["COMMANDS", "PLOT_SUFFIXES", "cmd_info", "cmd_render", "cmd_zeroshot", "cmd_zeroshot_adapter", "cmd_eval",
           "cmd_fewshot", "cmd_data", "cmd_cache", "cmd_eval_compare_precision"]

PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


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


def _load_inputs(args):
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


def cmd_render(args) -> int:
    import numpy as np

    from ..plots import save_view_grid
    from ..render import DepthRenderer, RasterSettings

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


def _view_cache(args):
    """The persistent view-feature cache the options ask for (--cache-dir DIR, default folder), or None (--no-cache)."""
    if getattr(args, "no_cache", False):
        return None
    from ..viewcache import ViewFeatureCache

    return ViewFeatureCache(args.cache_dir)  # None: $CLIP2POINT_CACHE_DIR, else ~/.cache/clip2point/views


def _log_cache(cache) -> None:
    if cache is not None:
        logging.getLogger("clip2point").info("view-feature cache %s: %s", cache.root, cache.stats.as_dict())


def _backbone(args, precision: str | None = None):
    """The backbone the options ask for, in ``precision`` (default: ``--precision``, else the library's default)."""
    from ..backbone import DEFAULT_MODEL, BackboneConfig, load_backbone

    precision = precision or getattr(args, "precision", None) or BackboneConfig.precision
    t = time.perf_counter()
    bb = load_backbone(args.model or DEFAULT_MODEL, args.weights, _device(args.device), args.depth_encoder,
                       allow_download=not args.offline, precision=precision)
    logging.getLogger("clip2point").info("loaded %s in %.1f s (precision %s)", bb.describe(), time.perf_counter() - t,
                                         bb.precision_reason)
    if bb.weights.is_random:
        print("WARNING: CLIP weights are random (--weights random): the scores below are meaningless.", file=sys.stderr)
    return bb


def _classes(args) -> list[str]:
    from ..classes import get_class_set, parse_classes

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
    if args.precision is None:  # the precision the adapter was trained with (runs before the option: fp32)
        args.precision = info.get("precision")
    return _backbone(args)


def cmd_zeroshot_adapter(args, run, clouds) -> int:
    """``zeroshot --adapter RUN_DIR``: classify with the run's trained adapter (``run``: its RunFolder)."""
    from ..fewshot import load_adapter

    cache = _view_cache(args)
    clf = load_adapter(run.path, _adapter_backbone(args, run), batch_size=args.batch_size * 10, cache=cache)
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
    _log_cache(cache)
    return 0


def cmd_zeroshot(args) -> int:
    from ..zeroshot import ZeroShotClassifier

    if args.adapter is None and args.classes is None and args.class_set is None:
        from ..errors import Clip2PointError

        raise Clip2PointError("say what to classify into: --classes \"chair,table\", --class-set modelnet40, or --adapter RUN_DIR")
    _check_numbers(args)
    if args.adapter is not None:
        from ..fewshot.rundir import RunFolder

        run = RunFolder(args.adapter)  # a damaged run folder fails before the inputs are read
        return cmd_zeroshot_adapter(args, run, list(_load_inputs(args)))
    classes = _classes(args)
    clouds = list(_load_inputs(args))  # read (and validate) every file before loading the model
    cache = _view_cache(args)
    clf = ZeroShotClassifier(_backbone(args), classes, args.template, args.views, image_size=args.image_size,
                             radius=args.radius, batch_size=args.batch_size * int(args.views), cache=cache)
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
    _log_cache(cache)
    return 0


def _eval_dataset(args):
    """The dataset of ``clip2point eval`` (``--limit`` applied), after checking the options and the --plot path."""
    from ..datasets import open_dataset

    _check_numbers(args)
    if args.plot:
        from ..errors import Clip2PointError

        if Path(args.plot).suffix.lower() not in PLOT_SUFFIXES:
            raise Clip2PointError(f"--plot {args.plot}: name the figure *.png (or {', '.join(PLOT_SUFFIXES[1:])})")
        check_output_file(args.plot)  # before the long evaluation, not after
    ds = open_dataset(args.dataset, args.data_dir, args.split, num_points=args.num_points, up=args.up,
                      prompt_style=args.prompt_style)
    return ds.subset(range(min(args.limit, len(ds)))) if args.limit else ds


def cmd_eval_compare_precision(args, ds) -> int:
    """``eval --compare-precision``: the evaluation in fp32 and bf16 on the same shapes (see :mod:`.compare`)."""
    from .compare import compare_precisions, format_comparison

    backbone = _backbone(args, "fp32")
    with _progress(args, len(ds), f"fp32 vs bf16 {args.dataset}/{args.split}") as bar:
        cmp = compare_precisions(backbone, ds, args.template, args.views, args.image_size, args.radius, args.batch_size,
                                 args.batch_size * int(args.views), progress=bar.update)
    if args.json:
        print(json.dumps({"dataset": args.dataset, "split": args.split, "weights": backbone.describe(),
                          "compare_precision": cmp.as_dict()}))
    else:
        print(format_comparison(cmp, f"{args.dataset} {args.split} ({backbone.describe()})"))
    return 0


def cmd_eval(args) -> int:
    from ..evaluate import evaluate_zero_shot
    from ..zeroshot import ZeroShotClassifier

    ds = _eval_dataset(args)
    if args.compare_precision:
        return cmd_eval_compare_precision(args, ds)
    cache = _view_cache(args)
    clf = ZeroShotClassifier(_backbone(args), ds.class_names, args.template, args.views, image_size=args.image_size,
                             radius=args.radius, batch_size=args.batch_size * int(args.views), cache=cache)
    with _progress(args, len(ds), f"eval {args.dataset}/{args.split}") as bar:
        res = evaluate_zero_shot(clf, ds, batch_size=args.batch_size, progress=bar.update)
    _log_cache(cache)
    if args.plot:
        from ..plots import save_confusion_matrix

        save_confusion_matrix(res.confusion, res.classes, args.plot,
                              title=f"{args.dataset} {args.split}: zero-shot {res.accuracy * 100:.2f}% ({len(res.labels)} shapes)")
    if args.json:
        print(json.dumps({"dataset": args.dataset, "split": args.split, "weights": clf.backbone.describe(), **res.as_dict(),
                          "view_cache": None if cache is None else {"root": str(cache.root), **cache.stats.as_dict()}}))
        return 0
    print(f"{args.dataset} {args.split}: {len(res.labels)} shapes, {clf.backbone.describe()}")
    print(f"  accuracy {res.accuracy * 100:.2f}%   mean class accuracy {res.mean_class_accuracy * 100:.2f}%")
    for name, acc in res.per_class_accuracy.items():
        print(f"  {name:<14s} {'   n/a' if acc != acc else f'{acc * 100:6.2f}%'}")
    if args.plot:
        print(f"  confusion matrix: {args.plot}")
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
    cache = _view_cache(args)
    try:
        result = _run_with_progress(args, config, backbone, stop, cache)
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
    _log_cache(cache)
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


def cmd_data(args) -> int:
    from ..datasets import download_dataset

    check_output_dir(args.out_dir)
    path = download_dataset(args.name, args.out_dir, progress=not args.quiet)
    print(f"{args.name} ready in {path}; use --data-dir {path}")
    return 0


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
