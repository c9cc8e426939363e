"""View-feature cache benchmark: cold vs warm zero-shot evaluation and a few-shot run with another seed.

Run:  .venv/bin/python benchmarks/bench_viewcache.py [--shapes 100] [--model ViT-B-32] [--precision fp32|bf16|auto]
                                                     [--fewshot-test 100] [--epochs 20] [--shots 16] [--device cpu] [--json out.json]

  1. zero-shot evaluation of the first ``--shapes`` ModelNet10 test shapes (6 views, the released
     prompts), once with an empty cache folder (cold: every shape rendered, encoded and stored),
     then again from a new process-level cache object on the same folder (warm: read from disk);
     wall times, their ratio, and the images each pass encoded;
  2. few-shot GDPA (``--shots`` shots, 10 views, ``--fewshot-test`` test shapes, ``--epochs`` epochs) with
     seed 0 on an empty cache, then seed 1 and seed 0 with ``gate="none"`` on the warm cache:
     wall times, encode times and encoded images (seed 1 draws other shots, which are encoded;
     its test shapes are not; the other gate encodes nothing). With the cache warm, a run's time is
     its training (``train_s``).

Both passes run in this one process, one after the other (the ratio is measured in one run).
Weights are random unless ``CLIP2POINT_WEIGHTS`` names a file: the compute is the real model's.
The cache lives in a temporary folder, removed at the end.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "modelnet10"


def zero_shot(backbone, cache_dir: Path, shapes: int, counted: list[int]) -> dict:
    """Cold and warm :func:`evaluate_zero_shot` over the first ``shapes`` test shapes."""
    from clip2point.datasets import open_dataset
    from clip2point.evaluate import evaluate_zero_shot
    from clip2point.viewcache import ViewFeatureCache
    from clip2point.zeroshot import ZeroShotClassifier

    dataset = open_dataset("modelnet10", DATA, "test")
    dataset = dataset.subset(list(range(min(shapes, len(dataset)))))
    out = {}
    for label in ("cold", "warm"):
        cache = ViewFeatureCache(cache_dir)
        clf = ZeroShotClassifier(backbone, dataset.class_names, views="6", cache=cache)
        counted.clear()
        t = time.perf_counter()
        res = evaluate_zero_shot(clf, dataset)
        out[label] = {"seconds": round(time.perf_counter() - t, 3), "encoded_images": sum(counted),
                      "accuracy": round(res.accuracy, 4), **cache.stats.as_dict()}
    out["warm_over_cold"] = round(out["warm"]["seconds"] / out["cold"]["seconds"], 4)
    out["shapes"] = len(dataset)
    return out


def few_shot(backbone, cache_dir: Path, work: Path, test_shapes: int, epochs: int, shots: int = 16) -> dict:
    """A ``shots``-shot run with seed 0 (cold cache), then seed 1 and gate "none" (warm cache)."""
    from clip2point.fewshot import FewShotConfig, run_fewshot
    from clip2point.viewcache import ViewFeatureCache

    out = {}
    for label, seed, gate in (("seed0_cold", 0, "view"), ("seed1_warm", 1, "view"), ("gate_none_warm", 0, "none")):
        cfg = FewShotConfig(dataset="modelnet10", data_dir=str(DATA), out_dir=str(work / label), shots=shots,
                            epochs=epochs, limit_test=test_shapes, seed=seed, gate=gate, plots=False)
        cache = ViewFeatureCache(cache_dir)
        t = time.perf_counter()
        result = run_fewshot(cfg, backbone, cache=cache)
        m = result.metrics
        out[label] = {"seconds": round(time.perf_counter() - t, 3), "encode_s": m["timings_s"]["encode_s"],
                      "train_s": m["timings_s"]["train_s"],
                      "encoded_images": m["encoder_passes"]["this_session"],
                      "test_accuracy": result.test_accuracy, **cache.stats.as_dict()}
    out["seed1_over_cold"] = round(out["seed1_warm"]["seconds"] / out["seed0_cold"]["seconds"], 4)
    out["gate_over_cold"] = round(out["gate_none_warm"]["seconds"] / out["seed0_cold"]["seconds"], 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", type=int, default=100, help="ModelNet10 test shapes for the zero-shot evaluation (908: all)")
    ap.add_argument("--model", default=None, help="open_clip architecture (default: clip2point.backbone.DEFAULT_MODEL)")
    ap.add_argument("--precision", default="fp32", help="fp32, bf16 or auto")
    ap.add_argument("--fewshot-test", type=int, default=100, help="test shapes of the few-shot runs (0: all 908)")
    ap.add_argument("--epochs", type=int, default=20, help="few-shot epochs")
    ap.add_argument("--shots", type=int, default=16, help="few-shot shapes per class")
    ap.add_argument("--skip-fewshot", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    import os

    from clip2point.backbone import DEFAULT_MODEL, load_backbone

    backbone = load_backbone(args.model or DEFAULT_MODEL, weights=os.environ.get("CLIP2POINT_WEIGHTS") or "random",
                             device=args.device, precision=args.precision)
    counted: list[int] = []
    backbone.model.visual.register_forward_hook(lambda m, inp, o: counted.append(inp[0].shape[0]))
    figures = {"model": backbone.model_name, "precision": backbone.precision, "device": args.device}
    with tempfile.TemporaryDirectory(prefix="bench-viewcache-") as tmp:
        figures["zero_shot"] = zero_shot(backbone, Path(tmp) / "cache-zs", args.shapes, counted)
        print(json.dumps({"zero_shot": figures["zero_shot"]}, indent=1), flush=True)
        if not args.skip_fewshot:
            figures["few_shot"] = few_shot(backbone, Path(tmp) / "cache-fs", Path(tmp), args.fewshot_test, args.epochs, args.shots)
            print(json.dumps({"few_shot": figures["few_shot"]}, indent=1), flush=True)
    zs = figures["zero_shot"]
    print(f"zero-shot {zs['shapes']} shapes × 6 views, {figures['model']} {figures['precision']}: "
          f"cold {zs['cold']['seconds']:.2f} s ({zs['cold']['encoded_images']} images encoded), "
          f"warm {zs['warm']['seconds']:.2f} s ({zs['warm']['encoded_images']} encoded): {zs['warm_over_cold']:.3f}×")
    if "few_shot" in figures:
        fs = figures["few_shot"]
        for k in ("seed0_cold", "seed1_warm", "gate_none_warm"):
            print(f"few-shot {k}: {fs[k]['seconds']:.2f} s (encode {fs[k]['encode_s']:.2f} s, train {fs[k]['train_s']:.2f} s, "
                  f"{fs[k]['encoded_images']} images encoded)")
        print(f"few-shot another seed / cold: {fs['seed1_over_cold']:.3f}×, another gate / cold: {fs['gate_over_cold']:.3f}×")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
