"""How fast can this CPU encode views at all? The floor under every clip2point speed figure.

Run:  .venv/bin/python benchmarks/bench_encoder_bound.py [--model ViT-B-32] [--batch 10,30,60] [--compile]
      .venv/bin/python benchmarks/bench_encoder_bound.py --model tiny-ViT-test --batch 4 --repeat 1   # smoke

Measured in one run, per precision (fp32, bf16), random weights (the real architecture's compute):

* the bare visual tower (``backbone.model.visual`` on a (B, 3, 224, 224) tensor of the tower's dtype,
  ``torch.inference_mode``): ms per image for each batch size;
* clip2point's ``ClipBackbone.encode_images`` on the same images (what eval, few-shot and the app call):
  ms per image, and its ratio to the bare tower (1.0 = nothing around the encoder left to remove);
* a GEMM of the tower's MLP shape ((50·B) × width @ width × 4·width): bf16 / fp32 time ratio — the
  hardware's own bf16 speed-up, which bounds any bf16 gain;
* with ``--compile``: the bf16 tower under ``torch.compile`` (inductor), compile seconds and ms per image.

Prints one line per figure and a JSON summary as the last line.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clip2point.backbone import load_backbone  # noqa: E402


def best_ms(fn, repeat: int) -> float:
    """Best of ``repeat`` timed calls after one warm-up call, in milliseconds."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument("--batch", default="10,30,60", help="comma-separated batch sizes (images per forward pass)")
    p.add_argument("--repeat", type=int, default=3, help="timed calls per figure (best is reported)")
    p.add_argument("--compile", action="store_true", help="also time the bf16 tower under torch.compile")
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batch.split(",")]
    torch.manual_seed(0)
    out: dict = {"model": args.model, "threads": torch.get_num_threads(), "tower_ms": {}, "encode_ms": {}}
    for precision in ("fp32", "bf16"):
        bb = load_backbone(args.model, weights="random", precision=precision)
        tower = bb.model.visual.eval()
        dtype = next(tower.parameters()).dtype
        size = bb.image_size
        for b in batches:
            x = torch.rand(b, 3, size, size)
            with torch.inference_mode():
                t_tower = best_ms(lambda: tower(x.to(dtype)), args.repeat) / b
            t_enc = best_ms(lambda: bb.encode_images(x[:, None], "clip", b), args.repeat) / b
            out["tower_ms"][f"{precision}/{b}"] = round(t_tower, 2)
            out["encode_ms"][f"{precision}/{b}"] = round(t_enc, 2)
            print(f"{precision} batch {b:4d}: tower {t_tower:7.2f} ms/image   encode_images {t_enc:7.2f} ms/image "
                  f"({t_enc / t_tower:.2f}x the tower)", flush=True)
        if precision == "bf16" and args.compile:
            x = torch.rand(batches[-1], 3, size, size).to(dtype)
            with torch.inference_mode():
                start = time.perf_counter()
                compiled = torch.compile(tower)
                compiled(x)
                out["compile_seconds"] = round(time.perf_counter() - start, 1)
                out["compiled_bf16_ms"] = round(best_ms(lambda: compiled(x), args.repeat) / len(x), 2)
            print(f"bf16 torch.compile: {out['compile_seconds']} s to compile, {out['compiled_bf16_ms']} ms/image", flush=True)
        width = tower.transformer.width if hasattr(tower, "transformer") else 768
    b = batches[-1]
    a32, w32 = torch.rand(50 * b, width), torch.rand(width, 4 * width)
    a16, w16 = a32.bfloat16(), w32.bfloat16()
    with torch.inference_mode():
        g32 = best_ms(lambda: a32 @ w32, args.repeat * 3)
        g16 = best_ms(lambda: a16 @ w16, args.repeat * 3)
    out["gemm_bf16_over_fp32"] = round(g16 / g32, 3)
    last = batches[-1]
    out["tower_bf16_over_fp32"] = round(out["tower_ms"][f"bf16/{last}"] / out["tower_ms"][f"fp32/{last}"], 3)
    print(f"GEMM {50 * b}x{width} @ {width}x{4 * width}: fp32 {g32:.2f} ms, bf16 {g16:.2f} ms ({g16 / g32:.2f}x)")
    print(f"tower bf16 / fp32 at batch {last}: {out['tower_bf16_over_fp32']:.2f}x")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
