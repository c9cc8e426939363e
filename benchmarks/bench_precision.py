"""Precision benchmark: ViT-B/32 encoding in fp32 vs bf16 weights, speed and agreement.

Run:  .venv/bin/python benchmarks/bench_precision.py [--shapes 20] [--repeat 7] [--device cpu|cuda] [--json out.json]

  1. encode time of 10 rendered views of one real ModelNet10 shape (median of ``--repeat``
     interleaved runs, after a warm-up), fp32 vs bf16 weights, and their ratio — measured in the
     same run, on the same machine (``clip2point.backbone.resolve_precision("auto")`` says whether
     this hardware computes bf16 natively);
  2. zero-shot agreement on the first ``--shapes`` ModelNet10 test shapes taken round-robin over
     the 10 classes (6 views, the released prompts): top-1 agreement of bf16 vs fp32 predictions,
     the minimum cosine between their view features, and the largest logit difference. Random
     weights add one bias to every shape's logits, so the agreement is also given on logits with
     each class's mean over the shapes removed (there predictions differ from shape to shape).

Weights are random unless ``CLIP2POINT_WEIGHTS`` names a file (none can be downloaded here): the
compute is the real ViT-B/32's, but random weights see every shape alike (few distinct predicted
classes), so the top-1 agreement says little; the feature cosine and the logit difference are the
direct measures. On a shared machine the timings are noisy; the ratio, measured interleaved in one
run, is the figure.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "modelnet10" / "modelnet10_pcd1024_test.h5"


def real_shapes(n: int):
    """n ModelNet10 test shapes, round-robin over the classes: (n, 1024, 3) float32 y-up, labels (n,)."""
    import h5py
    import numpy as np

    from clip2point.io import convert_up_axis

    with h5py.File(DATA, "r") as f:
        labels = f["label"][:, 0]
        per_class = [list(np.flatnonzero(labels == c)) for c in range(int(labels.max()) + 1)]
        order = [idx[i] for i in range(max(map(len, per_class))) for idx in per_class if i < len(idx)][:n]
        points = f["data"][sorted(order)]
        chosen = labels[sorted(order)]
    return convert_up_axis(points, "z").astype(np.float32), chosen.astype(np.int64)


def interleaved_medians(fns: dict, repeat: int, sync) -> dict[str, float]:
    """Median wall time (s) of each function, runs interleaved so load changes hit both alike."""
    for fn in fns.values():  # warm-up
        fn()
        sync()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            sync()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", type=int, default=20, help="ModelNet10 test shapes for the agreement figures (908: all)")
    ap.add_argument("--repeat", type=int, default=7, help="timed runs of each precision")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    import torch

    from clip2point.backbone import DEFAULT_TEMPLATE, load_backbone, resolve_precision
    from clip2point.classes import get_class_set
    from clip2point.render import DepthRenderer, clip_normalize
    from clip2point.zeroshot import score_views

    if not DATA.exists():
        sys.exit(f"ModelNet10 test data not found at {DATA} (see ../shared/data/README.md)")
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    _, reason = resolve_precision("auto", args.device)
    print(f"device {args.device}, {torch.get_num_threads()} threads; precision auto would choose {reason}")

    t = time.perf_counter()
    fp32 = load_backbone("ViT-B-32", weights=os.environ.get("CLIP2POINT_WEIGHTS") or "random", device=args.device)
    t_load = time.perf_counter() - t
    t = time.perf_counter()
    bf16 = fp32.with_precision("bf16")
    t_convert = time.perf_counter() - t
    points, labels = real_shapes(args.shapes)
    pts = torch.from_numpy(points).to(args.device)

    views10 = clip_normalize(DepthRenderer("10")(pts[:1]))[0]
    med = interleaved_medians({"fp32": lambda: fp32.encode_images(views10), "bf16": lambda: bf16.encode_images(views10)},
                              args.repeat, sync)
    ratio = med["bf16"] / med["fp32"]
    print(f"[1] ViT-B-32, 10 views of one shape (median of {args.repeat}): fp32 {med['fp32'] * 1e3:.0f} ms, "
          f"bf16 {med['bf16'] * 1e3:.0f} ms -> bf16/fp32 = {ratio:.2f}x  (model load {t_load:.1f} s, bf16 copy {t_convert:.1f} s)")

    classes = get_class_set("modelnet10")
    renderer = DepthRenderer("6")
    feats: dict[str, list] = {"fp32": [], "bf16": []}
    texts = {k: bb.text_features(classes, DEFAULT_TEMPLATE) for k, bb in (("fp32", fp32), ("bf16", bf16))}
    t_enc = {"fp32": 0.0, "bf16": 0.0}
    for i in range(0, len(pts), 16):
        images = clip_normalize(renderer(pts[i : i + 16]))
        for k, bb in (("fp32", fp32), ("bf16", bf16)):
            t = time.perf_counter()
            feats[k].append(bb.encode_images(images))
            sync()
            t_enc[k] += time.perf_counter() - t
    f32, f16 = torch.cat(feats["fp32"]), torch.cat(feats["bf16"])
    res32 = score_views(f32, texts["fp32"], fp32.logit_scale, classes)
    res16 = score_views(f16, texts["bf16"], bf16.logit_scale, classes)
    agree = (res32.logits.argmax(1) == res16.logits.argmax(1)).float().mean().item()
    min_cos = (f32 * f16).sum(-1).min().item()
    text_cos = (texts["fp32"] * texts["bf16"]).sum(-1).min().item()
    max_logit = (res32.logits - res16.logits).abs().max().item()
    acc = {k: (r.logits.argmax(1).numpy() == labels).mean().item() for k, r in (("fp32", res32), ("bf16", res16))}
    distinct = len(set(res32.logits.argmax(1).tolist()))
    # random weights add one bias to every shape's logits; without it, predictions differ from shape to shape
    c32, c16 = (r.logits - r.logits.mean(0, keepdim=True) for r in (res32, res16))
    centred_agree = (c32.argmax(1) == c16.argmax(1)).float().mean().item()
    centred_distinct = len(set(c32.argmax(1).tolist()))
    print(f"[2] zero-shot, {len(pts)} real ModelNet10 test shapes x 6 views: top-1 agreement bf16 vs fp32 {agree * 100:.1f} % "
          f"({distinct} distinct fp32 predictions); centred logits (each class's mean over the shapes removed) "
          f"{centred_agree * 100:.1f} % ({centred_distinct} distinct); "
          f"min view-feature cosine {min_cos:.5f}, min text-feature cosine {text_cos:.5f}, "
          f"max |shape logit difference| {max_logit:.3f} (sum of 6 views, scale {fp32.logit_scale:.0f}); "
          f"encode fp32 {t_enc['fp32']:.1f} s, bf16 {t_enc['bf16']:.1f} s ({t_enc['bf16'] / t_enc['fp32']:.2f}x); "
          f"accuracy ({fp32.weights.describe()}) fp32 {acc['fp32'] * 100:.1f} %, bf16 {acc['bf16'] * 100:.1f} %")
    if args.json:
        args.json.write_text(json.dumps({
            "device": args.device, "threads": torch.get_num_threads(), "auto": reason,
            "encode_10_views_s": med, "bf16_over_fp32": ratio, "shapes": len(pts), "top1_agreement": agree, "distinct_fp32_predictions": distinct,
            "centred_top1_agreement": centred_agree, "centred_distinct": centred_distinct, "weights": fp32.weights.describe(),
            "min_view_feature_cosine": min_cos, "min_text_feature_cosine": text_cos, "max_abs_logit_diff": max_logit,
            "encode_s": t_enc, "accuracy_random_weights": acc,
        }, indent=2))


if __name__ == "__main__":
    main()
