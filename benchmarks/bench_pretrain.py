"""Pre-training throughput: pairs/second of one full CLIP2Point training step.

Run:  .venv/bin/python benchmarks/bench_pretrain.py [--device cpu|cuda] [--batch N] [--steps K] [--json]

One step = what :func:`clip2point.pretrain.trainer.train_step` does in a real run: depth-render
each pair's chosen view twice (1,024 points, 224², distance jitter), encode the 2·B images with
the trainable ViT-B/32 depth encoder, NT-Xent losses, backward, LAMB update, scheduler step.
The RGB side costs nothing here: its features come from the pair cache. Weights are random (none
can be downloaded on these machines); the compute is identical to OpenAI's ViT-B/32.

* CPU (default): batch 16, fp32; reports pairs/s and the rendering share of the step.
* ``--device cuda``: bf16 autocast, batch 256 (the released batch) by default; also reports the
  peak GPU memory of a batch-256 step with and without gradient checkpointing
  (``torch.cuda.max_memory_allocated``, reset before each measurement).
* ``--amp bf16|off`` forces autocast on or off (default auto: bf16 on CUDA only, as ``clip2point pretrain``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthetic_batch(batch: int, num_points: int, feature_dim: int, seed: int = 0):
    """A PairBatch drawn like training draws it, from the 14 example point clouds (2,048 points each)."""
    import numpy as np
    import torch

    from clip2point.io import load_point_cloud
    from clip2point.pretrain.data import PairDataset, collate_pairs

    clouds = [load_point_cloud(p, num_points=2048).points for p in sorted((ROOT / "examples" / "points").glob("*.ply"))]
    reps = -(-batch // len(clouds))
    points = torch.from_numpy(np.stack(clouds * reps)[:batch]).to(torch.float16)
    g = torch.Generator().manual_seed(seed)
    feats = torch.nn.functional.normalize(torch.randn(batch, 10, feature_dim, generator=g), dim=-1).to(torch.float16)
    ds = PairDataset(points, feats, [f"shape{i}" for i in range(batch)], num_points=num_points, seed=seed)
    return collate_pairs([ds[i] for i in range(batch)])


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def bench_step(backbone, device: str, batch: int, steps: int, bf16: bool, grad_ckpt: bool = False) -> dict:
    """Median step time and pairs/s of ``steps`` timed steps (after one warm-up step)."""
    import torch

    from clip2point.pretrain.data import render_pair_views
    from clip2point.pretrain.model import PretrainModel, make_optimizer, make_scheduler, train_step
    from clip2point.render import RasterSettings

    model = PretrainModel(backbone.model.visual, amp_dtype=torch.bfloat16 if bf16 else None,
                          grad_checkpointing=grad_ckpt).to(device)
    opt = make_optimizer(model)
    sched = make_scheduler(opt, steps_per_epoch=100)
    data = synthetic_batch(batch, 1024, backbone.embed_dim).to(device)
    raster = RasterSettings(max_elements=64_000_000) if device.startswith("cuda") else RasterSettings()
    times = []
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(steps + 1):
        _sync(device)
        t = time.perf_counter()
        metrics = train_step(model, opt, sched, data, "10", raster)
        _sync(device)
        if i:  # the first step warms up allocators / kernels
            times.append(time.perf_counter() - t)
    step_s = statistics.median(times)

    def render():
        with torch.no_grad():
            render_pair_views(data.points, data.view, data.dist_scale, "10", raster)
        _sync(device)

    render()
    t = time.perf_counter()
    render()
    render_s = time.perf_counter() - t
    out = {"batch": batch, "step_s": step_s, "pairs_per_s": batch / step_s, "render_s": render_s,
           "render_share": render_s / step_s, "loss": metrics["loss"], "bf16": bf16, "grad_checkpointing": grad_ckpt}
    if device.startswith("cuda"):
        out["peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    del model, opt
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out


def main(argv: list[str] | None = None) -> int:
    from clip2point.backbone import DEFAULT_MODEL

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:k]")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="open_clip architecture (random weights)")
    ap.add_argument("--batch", type=int, default=None, help="pairs per step (default: 16 on CPU, 256 on CUDA)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps after one warm-up (default: 2 on CPU, 10 on CUDA)")
    ap.add_argument("--amp", choices=("auto", "bf16", "off"), default="auto",
                    help="bf16 autocast of the training step (auto: on CUDA only)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)

    import torch

    from clip2point.backbone import load_backbone

    cuda = args.device.startswith("cuda")
    bf16 = args.amp == "bf16" or (args.amp == "auto" and cuda)
    batch = args.batch or (256 if cuda else 16)
    steps = args.steps or (10 if cuda else 2)
    backbone = load_backbone(args.model, weights="random", device="cpu")
    result = {"device": torch.cuda.get_device_name() if cuda else f"cpu ({torch.get_num_threads()} threads)",
              "model": args.model, "torch": torch.__version__,
              "step": bench_step(backbone, args.device, batch, steps, bf16=bf16)}
    if cuda:  # memory of the released batch, with and without gradient checkpointing
        result["batch256"] = bench_step(backbone, args.device, 256, 2, bf16=bf16)
        result["batch256_grad_ckpt"] = bench_step(backbone, args.device, 256, 2, bf16=bf16, grad_ckpt=True)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    s = result["step"]
    print(f"{result['model']} pre-training step on {result['device']}, torch {result['torch']}, "
          f"{'bf16' if s['bf16'] else 'fp32'}, random weights")
    print(f"  batch {s['batch']}: {s['step_s']:.2f} s/step = {s['pairs_per_s']:.2f} pairs/s "
          f"(rendering 2 views/pair: {s['render_s'] * 1e3:.0f} ms = {s['render_share'] * 100:.1f} % of the step)")
    for key, label in (("batch256", "batch 256"), ("batch256_grad_ckpt", "batch 256 + grad checkpointing")):
        if key in result:
            r = result[key]
            print(f"  {label}{', bf16' if r['bf16'] else ''}: {r['pairs_per_s']:.0f} pairs/s, "
                  f"peak GPU memory {r['peak_gpu_mem_gib']:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
