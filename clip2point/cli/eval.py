"""``clip2point eval``: zero-shot accuracy on a labelled dataset (its options and what it does)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cliutil import add_config_arguments, check_output_file
from .common import PLOT_SUFFIXES, backbone_from_args, check_numbers, log_cache, progress_bar, view_cache
from .options import add_cache_args, add_model_args, add_precision_arg, add_render_args

__all__ = ["eval_parser", "cmd_eval", "cmd_eval_compare_precision", "EVAL_HELP"]

EVAL_HELP = "zero-shot accuracy on ModelNet10/40 (accuracy, per-class, confusion matrix)"


def eval_parser(p: argparse.ArgumentParser) -> None:
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
    add_render_args(p, "6")
    add_model_args(p)
    add_precision_arg(p)
    add_cache_args(p)


def eval_dataset(args):
    """The dataset of ``clip2point eval`` (``--limit`` applied), after checking the options and the --plot path."""
    from ..datasets import open_dataset

    check_numbers(args)
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

    backbone = backbone_from_args(args, "fp32")
    with progress_bar(args, len(ds), f"fp32 vs bf16 {args.dataset}/{args.split}") as bar:
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

    ds = eval_dataset(args)
    if args.compare_precision:
        return cmd_eval_compare_precision(args, ds)
    cache = view_cache(args)
    clf = ZeroShotClassifier(backbone_from_args(args), ds.class_names, args.template, args.views, image_size=args.image_size,
                             radius=args.radius, batch_size=args.batch_size * int(args.views), cache=cache)
    with progress_bar(args, len(ds), f"eval {args.dataset}/{args.split}") as bar:
        res = evaluate_zero_shot(clf, ds, batch_size=args.batch_size, progress=bar.update)
    log_cache(cache)
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
