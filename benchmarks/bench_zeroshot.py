"""Zero-shot throughput on the ModelNet10 test split: evaluation shapes/s per precision, and rendering alone.

Run:  .venv/bin/python benchmarks/bench_zeroshot.py [--device cpu|cuda] [--model ViT-B-32] [--limit N]
                                                   [--precisions fp32 bf16] [--batch 64] [--json]

  1. rendering alone: every test shape × 6 views (the zero-shot set) and × 10 views (few-shot and
     pre-training), batches of ``--batch`` shapes already on the device, 224² → shapes/s and views/s;
  2. per precision: the whole zero-shot evaluation (``clip2point.evaluate.evaluate_zero_shot``:
     reading the shapes, rendering 6 views, encoding, scoring; no view-feature cache) after one
     warm-up batch → wall seconds, shapes/s, images/s, top-1 agreement with the first precision,
     and on CUDA the peak GPU memory. The bf16 backbone is a converted copy of the fp32 one.

Weights are random (none can be downloaded on these machines): the compute is the real model's,
the accuracies are meaningless. Every timing is taken after ``torch.cuda.synchronize`` on CUDA.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def open_test_split(data: Path, limit: int):
    """The ModelNet10 test split (the first ``limit`` shapes when ``limit`` > 0)."""
    from clip2point.datasets import open_dataset

    ds = open_dataset("modelnet10", data / "modelnet10", "test")
    return ds.subset(range(min(limit, len(ds)))) if limit else ds


def bench_render(ds, device: str, batch: int, views: str) -> dict:
    """Rendering throughput of every shape of ``ds`` × the view set ``views`` (shapes already on the device)."""
    from clip2point.datasets import iter_batches
    from clip2point.render import DepthRenderer

    renderer = DepthRenderer(views)
    batches = [pts.to(device) for pts, _ in iter_batches(ds, batch)]
    renderer(batches[0])  # warm-up (kernels, allocator)
    _sync(device)
    t = time.perf_counter()
    for pts in batches:
        renderer(pts)
    _sync(device)
    seconds = time.perf_counter() - t
    shapes = sum(len(p) for p in batches)
    nviews = len(renderer.views.labels())
    return {"views": nviews, "shapes": shapes, "seconds": seconds, "shapes_per_s": shapes / seconds,
            "views_per_s": shapes * nviews / seconds}


def bench_eval(backbone, ds, device: str, batch: int, reference=None) -> dict:
    """One zero-shot evaluation of ``ds`` with ``backbone`` (after a warm-up batch)."""
    import numpy as np
    import torch

    from clip2point.datasets import iter_batches
    from clip2point.evaluate import evaluate_zero_shot
    from clip2point.zeroshot import ZeroShotClassifier

    clf = ZeroShotClassifier(backbone, ds.class_names, views="6", batch_size=batch * 6)
    clf.predict(next(iter(iter_batches(ds, batch)))[0], keep_depth=False)  # warm-up
    _sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    t = time.perf_counter()
    res = evaluate_zero_shot(clf, ds, batch_size=batch)
    _sync(device)
    seconds = time.perf_counter() - t
    out = {"precision": backbone.precision, "shapes": len(res.labels), "seconds": seconds,
           "shapes_per_s": len(res.labels) / seconds, "images_per_s": len(res.labels) * 6 / seconds,
           "accuracy_random_weights": res.accuracy, "predictions": res.predictions}
    if reference is not None:
        out["top1_agreement_with_" + reference["precision"]] = float(np.mean(res.predictions == reference["predictions"]))
    if device.startswith("cuda"):
        out["peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def main(argv: list[str] | None = None) -> dict:
    from clip2point.backbone import DEFAULT_MODEL

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="folder holding modelnet10/")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:k]")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="open_clip architecture (random weights)")
    ap.add_argument("--limit", type=int, default=0, help="the first N test shapes (0 = all 908)")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=("fp32", "bf16", "auto"))
    ap.add_argument("--batch", type=int, default=64, help="shapes per batch")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)

    import torch

    from clip2point.backbone import load_backbone

    ds = open_test_split(args.data, args.limit)
    cuda = args.device.startswith("cuda")
    result = {"device": torch.cuda.get_device_name(args.device) if cuda else f"cpu ({torch.get_num_threads()} threads)",
              "model": args.model, "torch": torch.__version__, "shapes": len(ds),
              "render": [bench_render(ds, args.device, args.batch, v) for v in ("6", "10")]}
    backbone = load_backbone(args.model, weights="random", device=args.device)
    runs: list[dict] = []
    for p in args.precisions:
        runs.append(bench_eval(backbone.with_precision(p), ds, args.device, args.batch, runs[0] if runs else None))
    for r in runs:
        r.pop("predictions")
    result["zeroshot"] = runs
    if args.json:
        print(json.dumps(result))
        return result
    print(f"zero-shot throughput, ModelNet10 test ({len(ds)} shapes), {args.model} random weights, {result['device']}, "
          f"torch {result['torch']}")
    for r in result["render"]:
        print(f"  render {r['views']:2d} views: {r['shapes_per_s']:8.1f} shapes/s ({r['views_per_s']:.0f} views/s, "
              f"{r['seconds']:.2f} s)")
    for r in runs:
        extra = "".join(f", {k.replace('_', ' ')} {v * 100:.1f}%" for k, v in r.items() if k.startswith("top1_agreement"))
        mem = f", peak GPU memory {r['peak_gpu_mem_gib']:.2f} GiB" if "peak_gpu_mem_gib" in r else ""
        print(f"  eval {r['precision']}: {r['shapes_per_s']:8.1f} shapes/s ({r['images_per_s']:.0f} images/s, "
              f"{r['seconds']:.2f} s){extra}{mem}")
    return result


if __name__ == "__main__":
    main()
