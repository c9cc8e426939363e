"""Few-shot GDPA benchmark: a 16-shot ModelNet10 run with ViT-B/32, 10 views, 100 epochs (cached mode).

Run:  .venv/bin/python benchmarks/bench_fewshot.py [--data ../shared/data] [--device cpu|cuda]
                                                  [--limit-test N] [--epochs 100] [--shots 16] [--out DIR]
                                                  [--precision fp32|bf16|auto] [--val-per-class 4] [--no-plots] [--json]

Reports:
  * wall time split into encoding (train + validation shapes, test shapes), training (all epochs,
    validation included) and the rest (test evaluation, metrics, plots);
  * encoder image passes of this run vs the released recipe at the same epochs (every epoch renders
    and encodes all training and test shapes through both towers), and the released recipe's
    encoding time extrapolated from the per-image encoder time measured here;
  * validation/test accuracy — with random ViT-B/32 weights (none can be downloaded here) these
    only show that the adapter learns from random features; the compute is that of the real model.
``--limit-test N`` evaluates N class-balanced test shapes (0 = all 908) to keep a 2-core CPU run
to a few minutes; the report says how many were used.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> dict:
    from clip2point.backbone import DEFAULT_MODEL
    from clip2point.fewshot import FewShotConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="folder holding modelnet10/")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--shots", type=int, default=FewShotConfig.shots)
    ap.add_argument("--epochs", type=int, default=FewShotConfig.epochs)
    ap.add_argument("--limit-test", type=int, default=FewShotConfig.limit_test, help="class-balanced test shapes (0 = all)")
    ap.add_argument("--gate", default=FewShotConfig.gate, choices=("view", "none"))
    ap.add_argument("--out", default=None, help="run folder (default: a temporary folder)")
    ap.add_argument("--val-per-class", type=int, default=FewShotConfig.val_per_class)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"), help="encoder weights")
    ap.add_argument("--no-plots", action="store_true", help="skip the run's figures (curves, gate weights, confusion)")
    ap.add_argument("--json", action="store_true", help="print only the JSON summary")
    args = ap.parse_args(argv)

    import torch

    from clip2point.backbone import load_backbone
    from clip2point.fewshot import run_fewshot

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_fewshot_")) / "run"
    t0 = time.perf_counter()
    backbone = load_backbone(args.model, weights="random", device=args.device, precision=args.precision)
    t_load = time.perf_counter() - t0
    more = {"precision": args.precision} if "precision" in {f.name for f in dataclasses.fields(FewShotConfig)} else {}
    cfg = FewShotConfig(dataset="modelnet10", data_dir=str(Path(args.data) / "modelnet10"), out_dir=str(out),
                        shots=args.shots, epochs=args.epochs, gate=args.gate, views="10", limit_test=args.limit_test,
                        val_per_class=args.val_per_class, device=args.device, overwrite=True, plots=not args.no_plots,
                        **more)
    marks: dict[str, float] = {}

    def progress(p) -> None:  # wall-clock marks of the stages
        marks.setdefault(f"{p.stage}:{p.split}:start", time.perf_counter())
        marks[f"{p.stage}:{p.split}:end"] = time.perf_counter()
        if not args.json and p.stage == "epoch" and (p.done % 10 == 0 or p.done == 1):
            s = p.stats
            print(f"  epoch {p.done:3d}/{p.total}: loss {s.train_loss:.3f} train {s.train_acc:.3f} val {s.val_acc:.3f}",
                  file=sys.stderr)

    t1 = time.perf_counter()
    result = run_fewshot(cfg, backbone, progress=progress)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize(args.device)
    wall = time.perf_counter() - t1
    m = result.metrics

    def span(stage: str, split: str = "") -> float:
        return marks.get(f"{stage}:{split}:end", 0.0) - marks.get(f"{stage}:{split}:start", 0.0)

    t = m["timings_s"]
    images = m["encoder_passes"]["total"]
    per_image = t["encode_s"] / images if images else float("nan")
    released = m["released_recipe_passes"]
    summary = {
        "device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "precision": backbone.precision,
        "model": f"{args.model} (random weights: accuracies are random-init, not CLIP2Point's)",
        "setting": f"ModelNet10, {args.shots}-shot, {args.epochs} epochs, 10 views, gate {args.gate}, paths {m['paths']}, "
                   f"{m['data']['train_shapes']} train / {m['data']['val_shapes']} val / {m['data']['test_shapes']} of "
                   f"{m['data']['test_shapes_available']} test shapes",
        "model_load_s": round(t_load, 2),
        "wall_s": round(wall, 1),
        "encode_s": t["encode_s"],
        "encode_train_val_s": round(span("encode", "train") + span("encode", "val"), 1),
        "encode_test_s": round(span("encode", "test"), 1),
        "train_s": t["train_s"],
        "train_s_per_epoch": round(t["train_s"] / max(1, m["epochs_completed"]), 4),
        "other_s": round(wall - t["encode_s"] - t["train_s"], 1),
        "encoder_images": images,
        "encoder_s_per_image": round(per_image, 4),
        "released_recipe_images": released,
        "released_recipe_encode_s_estimate": round(released * per_image, 0),
        "reduction_vs_released": round(released / images, 1) if images else None,
        "val_accuracy_random_init": m["val_accuracy"],
        "test_accuracy_random_init": m["test_accuracy"],
        "best_epoch": m["best_epoch"],
        "gate_weights": [round(g, 4) for g in (m["gate_weights"] or [])],
        "run_dir": str(result.run_dir),
    }
    if args.json:
        print(json.dumps(summary))
        return summary
    print(f"\nfew-shot benchmark — {summary['setting']}")
    print(f"  {summary['model']}; {args.device}, {backbone.precision}, {summary['threads']} threads, torch {summary['torch']}")
    print(f"  wall {wall:.1f} s = encode {t['encode_s']:.1f} s (train+val {summary['encode_train_val_s']} s, "
          f"test {summary['encode_test_s']} s) + train {t['train_s']:.1f} s ({summary['train_s_per_epoch'] * 1000:.0f} ms/epoch, "
          f"validation included) + other {summary['other_s']} s (test eval, metrics, plots, checkpoints)")
    print(f"  encoder passes: {images:,} images ({per_image * 1000:.1f} ms each) vs {released:,} for the released recipe "
          f"at {args.epochs} epochs = {summary['reduction_vs_released']}x fewer; the released recipe would spend "
          f"≈ {released * per_image / 3600:.1f} h encoding on this machine")
    print(f"  random-init accuracy: val {m['val_accuracy']:.3f} (best epoch {m['best_epoch']}), test {m['test_accuracy']:.3f}")
    print(f"  run folder: {result.run_dir}")
    return summary


if __name__ == "__main__":
    main()
