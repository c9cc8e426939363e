"""``clip2point eval``: zero-shot accuracy on a labelled dataset — one process or sharded with torchrun, resumable,
and ``--table``: every dataset under a data root beside the paper's numbers (its options and what it does)."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..cliutil import add_config_arguments, check_output_file
from .common import (PLOT_SUFFIXES, backbone_from_args, check_numbers, log_cache, progress_bar, templates_from_args,
                     view_cache)
from .options import add_cache_args, add_model_args, add_precision_arg, add_render_args

__all__ = ["eval_parser", "cmd_eval", "cmd_eval_compare_precision", "cmd_eval_table", "EVAL_HELP", "EVAL_EPILOG"]

EVAL_HELP = "zero-shot accuracy on a dataset (per class, per view, confusion), sharded with torchrun; --table: the paper's table"

EVAL_EPILOG = """\
what it does:
  renders each test shape from the views, encodes them with CLIP (or the CLIP2Point depth encoder), scores the
  class prompts and reports top-1 accuracy, mean class accuracy, per-class accuracy, per-view accuracy (each
  view's own top-1) and the confusion matrix. Under torchrun every process takes a shard of the shapes
  (indices rank, rank+N, rank+2N, ...; gloo on CPU, NCCL with one GPU per process) and process 0 gathers the
  per-shape results exactly: the same predictions as one process. With --results-dir each process writes its
  results batch by batch (DIR/shards/), so a killed run resumes where it stopped (with any number of processes);
  a folder written with other settings (dataset, split, classes, templates, weights, precision, views, render
  settings, --num-points, --limit) is refused, never mixed. Process 0 writes DIR/results.json and DIR/results.md.

--json: ONE JSON object, the last line of stdout: accuracy, mean_class_accuracy, per_class_accuracy,
  per_view_accuracy, classes, confusion_matrix, and predictions — one {"index", "label", "predicted"} per shape
  in dataset order, label and predicted as class names (the "classes" list). Accuracies are fractions in [0, 1];
  null where a class has no shape.

examples:
  # one process
  clip2point eval --dataset modelnet10 --data-dir data/modelnet10 --weights openai --plot cm.png
  # 4 processes on one node (CPU: gloo; GPUs: one per process), resumable
  torchrun --standalone --nproc_per_node 4 -m clip2point eval --dataset modelnet40 --data-dir data/ \\
      --weights openai --depth-encoder weights/best_eval.pth --results-dir runs/eval-mn40
  # two nodes with 8 GPUs each (run on both; --results-dir on a shared file system, or local per node)
  torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint host0:29500 \\
      -m clip2point eval --dataset objaverse-lvis --data-dir data/objaverse-lvis --results-dir /shared/eval-lvis
  # resume after an interruption: the same command again (finished batches are read, not recomputed)
  clip2point eval --dataset modelnet40 --data-dir data/ --weights openai --results-dir runs/eval-mn40
  # machine-readable
  clip2point eval --dataset modelnet10 --data-dir data/modelnet10 --limit 50 --json | tail -n 1 | jq .accuracy
  # the paper's table for every dataset found under data/ (add --limit 100 for a quick one)
  clip2point eval --table --data-root data/ --weights openai --depth-encoder weights/best_eval.pth
  clip2point eval --table --data-root data/ --json
"""


def eval_parser(p: argparse.ArgumentParser) -> None:
    from ..datasets import DATASET_NAMES
    from ..fewshot import FewShotConfig
    from ..io import UP_AXES

    p.description = ("Zero-shot accuracy of CLIP2Point's released protocol on a labelled dataset, in one process or "
                     "sharded over processes and nodes with torchrun; --table evaluates every dataset under a data "
                     "root and prints it beside the paper's numbers.")
    p.epilog = EVAL_EPILOG
    p.add_argument("--dataset", choices=DATASET_NAMES, help="the dataset to evaluate (not with --table)")
    p.add_argument("--data-dir", help="folder with the dataset (h5, ply_hdf5_2048, normal_resampled or OFF layout, ...)")
    p.add_argument("--table", action="store_true",
                   help="evaluate every dataset found under --data-root and print the paper-style table "
                        "(dataset x accuracy) beside CLIP2Point's published numbers")
    p.add_argument("--data-root", default="data", help="with --table: the folder holding the datasets")
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N shapes of each dataset (0 = all)")
    p.add_argument("--num-points", type=int, default=1024, help="points per shape")
    p.add_argument("--up", choices=UP_AXES, default=None, help="override the dataset's up axis")
    add_config_arguments(p, FewShotConfig, ["prompt_style"])  # the same option, default and help as few-shot's
    p.add_argument("--results-dir", metavar="DIR",
                   help="write per-shard results batch by batch (resume: run the same command again), results.json "
                        "and results.md here; with --table one sub-folder per dataset")
    p.add_argument("--plot", metavar="PNG", nargs="?", const="",
                   help="save the confusion matrix as a PNG (bare --plot: DIR/confusion.png of --results-dir)")
    p.add_argument("--json", action="store_true", help="print one JSON object (the last line of stdout)")
    p.add_argument("--compare-precision", action="store_true",
                   help="run the evaluation in fp32 and in bf16 on the same shapes and report top-1 agreement of the "
                        "predictions, the largest feature difference and the smallest cosine (--precision and the view "
                        "cache are not used; one process)")
    add_render_args(p, "6")
    add_model_args(p)
    add_precision_arg(p)
    add_cache_args(p)


def _plot_path(args) -> str | None:
    """The confusion PNG's path (checked now, before the long evaluation), or None."""
    from ..errors import Clip2PointError

    if args.plot is None:
        return None
    if args.plot == "":
        if not args.results_dir:
            raise Clip2PointError("a bare --plot writes DIR/confusion.png of --results-dir DIR; give --plot cm.png or --results-dir")
        return str(Path(args.results_dir) / "confusion.png")
    if Path(args.plot).suffix.lower() not in PLOT_SUFFIXES:
        raise Clip2PointError(f"--plot {args.plot}: name the figure *.png (or {', '.join(PLOT_SUFFIXES[1:])})")
    return args.plot


def check_eval_args(args) -> None:
    """The option combinations a user can get wrong, one clear line each (before any work)."""
    from ..errors import Clip2PointError

    check_numbers(args)
    templates_from_args(args)  # a bad --template/--templates fails here, before any work
    if args.table:
        bad = [o for o, v in (("--dataset", args.dataset), ("--data-dir", args.data_dir), ("--plot", args.plot),
                              ("--compare-precision", args.compare_precision)) if v not in (None, False)]
        if bad:
            raise Clip2PointError(f"--table evaluates every dataset under --data-root; drop {', '.join(bad)} "
                                  "(per-dataset results go to --results-dir DIR/<dataset>/)")
    elif not args.dataset or not args.data_dir:
        raise Clip2PointError("name the dataset: --dataset NAME --data-dir DIR (or --table --data-root DIR for every dataset)")
    if args.compare_precision and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise Clip2PointError("--compare-precision runs in one process; run it without torchrun")
    plot = _plot_path(args)
    if plot:
        check_output_file(plot)  # before the long evaluation, not after


def eval_dataset(args, name: str | None = None, data_dir: str | None = None):
    """The dataset of ``clip2point eval`` (``--limit`` applied)."""
    from ..datasets import open_dataset

    ds = open_dataset(name or args.dataset, data_dir or args.data_dir, args.split, num_points=args.num_points,
                      up=args.up, prompt_style=args.prompt_style)
    return ds.subset(range(min(args.limit, len(ds)))) if args.limit else ds


def cmd_eval_compare_precision(args, ds) -> int:
    """``eval --compare-precision``: the evaluation in fp32 and bf16 on the same shapes (see :mod:`.compare`)."""
    from .compare import compare_precisions, format_comparison

    backbone = backbone_from_args(args, "fp32")
    with progress_bar(args, len(ds), f"fp32 vs bf16 {args.dataset}/{args.split}") as bar:
        cmp = compare_precisions(backbone, ds, templates_from_args(args), args.views, args.image_size, args.radius,
                                 args.batch_size, args.batch_size * int(args.views), progress=bar.update)
    if args.json:
        print(json.dumps({"dataset": args.dataset, "split": args.split, "weights": backbone.describe(),
                          "compare_precision": cmp.as_dict()}))
    else:
        print(format_comparison(cmp, f"{args.dataset} {args.split} ({backbone.describe()})"))
    return 0


def _classifier(args, env, classes):
    """The zero-shot classifier on this rank's device (each torchrun rank: its local GPU), with the view cache."""
    from ..zeroshot import ZeroShotClassifier

    cache = view_cache(args)
    rank_args = argparse.Namespace(**{**vars(args), "device": str(env.device)})
    return ZeroShotClassifier(backbone_from_args(rank_args), classes, templates_from_args(args), args.views,
                              image_size=args.image_size, radius=args.radius,
                              batch_size=args.batch_size * int(args.views), cache=cache)


def run_evaluation(args, env, clf, ds, name: str, results_dir: str | None):
    """Evaluate ``ds`` sharded over ``env`` (resuming from ``results_dir``); on rank 0: (EvalResult, JSON payload)."""
    from ..evaluate import ResultsDir, eval_settings, evaluate_sharded, format_markdown, json_safe, sum_counts
    from ..evaluate import write_results

    results = None
    if results_dir:
        memo = None if clf.cache is None else clf.cache.root
        settings = eval_settings(clf, ds, dataset_name=name, limit=args.limit,
                                 extra={"prompt_style": args.prompt_style}, memo_dir=memo)
        results = ResultsDir(results_dir, settings)
    shard = len(range(env.rank, len(ds), env.world_size))
    desc = f"eval {name}/{args.split}" + (f" (rank 0 of {env.world_size})" if env.world_size > 1 else "")
    with progress_bar(args if env.is_main else argparse.Namespace(quiet=True), shard, desc) as bar:
        res, report = evaluate_sharded(clf, ds, env, batch_size=args.batch_size, results=results, progress=bar.update)
    cache = clf.cache
    log_cache(cache)
    stats = None if cache is None else sum_counts(env, cache.stats.as_dict())
    if res is None:
        return None, None
    payload = {"dataset": name, "split": args.split, "weights": clf.backbone.describe(),
               "random_weights": clf.backbone.weights.is_random, "templates": list(clf.templates), **res.as_dict(),
               "predictions": res.prediction_records(), "world_size": env.world_size,
               "results_dir": None if results is None else str(results.root), "resumed_rank0": report.resumed,
               "eval_seconds": round(report.seconds, 3),
               "view_cache": None if cache is None else {"root": str(cache.root), **stats}}
    if results is not None:
        from ..prompts import describe_templates

        title = f"{name} {args.split}: zero-shot, {args.views} views, {describe_templates(clf.templates)}"
        write_results(results.root, payload, format_markdown(res, title, clf.backbone.describe()))
    return res, json_safe(payload)


def _print_result(args, res, payload, plot: str | None) -> None:
    if args.json:
        print(json.dumps(payload))
        return
    print(f"{payload['dataset']} {args.split}: {len(res.labels)} shapes, {payload['weights']}"
          + (f", {payload['world_size']} processes" if payload["world_size"] > 1 else ""))
    print(f"  accuracy {res.accuracy * 100:.2f}%   mean class accuracy {res.mean_class_accuracy * 100:.2f}%")
    for name, acc in res.per_class_accuracy.items():
        print(f"  {name:<14s} {'   n/a' if acc != acc else f'{acc * 100:6.2f}%'}")
    for view, acc in zip(res.view_labels, res.per_view_accuracy or []):
        print(f"  view {view:<20s} {'   n/a' if acc != acc else f'{acc * 100:6.2f}%'} (alone)")
    if payload["results_dir"]:
        print(f"  results: {Path(payload['results_dir']) / 'results.json'} (+ results.md)")
    if plot:
        print(f"  confusion matrix: {plot}")


def cmd_eval(args) -> int:
    from ..pretrain.distributed import init_distributed, shutdown_distributed

    check_eval_args(args)
    if args.table:
        return cmd_eval_table(args)
    ds = eval_dataset(args)
    if args.compare_precision:
        return cmd_eval_compare_precision(args, ds)
    env = init_distributed(args.device)
    try:
        clf = _classifier(args, env, ds.class_names)
        res, payload = run_evaluation(args, env, clf, ds, args.dataset, args.results_dir)
        if res is None:  # not rank 0: rank 0 reports
            return 0
        plot = _plot_path(args)
        if plot:
            from ..plots import save_confusion_matrix

            save_confusion_matrix(res.confusion, res.classes, plot,
                                  title=f"{args.dataset} {args.split}: zero-shot {res.accuracy * 100:.2f}% ({len(res.labels)} shapes)")
        _print_result(args, res, payload, plot)
        return 0
    finally:
        shutdown_distributed(env)


def _found_datasets(root: str) -> dict:
    from ..errors import Clip2PointError

    try:
        from ..datasets import find_datasets
    except ImportError:  # pragma: no cover - an older datasets module
        raise Clip2PointError("this clip2point cannot look for datasets under a root; use --dataset/--data-dir") from None
    if not Path(root).is_dir():
        raise Clip2PointError(f"--data-root {root} does not exist; download data with `clip2point data download modelnet10 -o {root}`")
    found = find_datasets(root)
    if not found:
        raise Clip2PointError(f"no dataset found under --data-root {root}; download one with "
                              f"`clip2point data download modelnet10 -o {root}` or point --data-root at your data")
    return found


def cmd_eval_table(args) -> int:
    """``eval --table``: every dataset found under --data-root, beside the paper's numbers."""
    from ..errors import DatasetError
    from ..evaluate import format_table, table_row
    from ..pretrain.distributed import init_distributed, shutdown_distributed

    found = _found_datasets(args.data_root)
    env = init_distributed(args.device)
    try:
        rows, clf = [], None
        for name, data_dir in found.items():
            try:
                ds = eval_dataset(args, name, str(data_dir))
            except DatasetError as e:
                rows.append(table_row(name, args.split, None, str(e).split(";")[0][:120]))
                continue
            if clf is None:
                clf = _classifier(args, env, ds.class_names)
            else:
                clf.set_prompts(ds.class_names)
            sub = None if not args.results_dir else str(Path(args.results_dir) / name)
            res, payload = run_evaluation(args, env, clf, ds, name, sub)
            rows.append(table_row(name, args.split, None if res is None else res.as_dict()))
        if not env.is_main:
            return 0
        weights = clf.backbone.describe() if clf is not None else "(no dataset could be opened)"
        random_weights = clf is not None and clf.backbone.weights.is_random
        from ..prompts import describe_templates

        setting = (f"{args.views} views, templates {describe_templates(templates_from_args(args))}, {args.num_points} points, "
                   f"{args.image_size} px, radius {args.radius}, {'' if clf is None else clf.backbone.precision}")
        if args.json:
            print(json.dumps({"table": rows, "weights": weights, "random_weights": random_weights, "limit": args.limit,
                              "split": args.split, "setting": setting, "data_root": str(args.data_root),
                              "world_size": env.world_size}))
        else:
            print(format_table(rows, weights, random_weights, args.limit, setting))
        return 0
    finally:
        shutdown_distributed(env)
