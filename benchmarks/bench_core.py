"""Core pipeline benchmark: rendering vs CLIP encoding, dataset throughput, memory, CLI overhead.

Run:  .venv/bin/python benchmarks/bench_core.py [--data ../shared/data] [--device cpu|cuda] [--quick]

Every figure is a ratio against a reference measured in the same run, on the same machine:
  1. render 10 views of one 1,024-point shape at 224²  vs  ViT-B/32 image encoding of those views
  2. render all ModelNet10 test shapes × 10 views (batches of 64)  → seconds, shapes/s
  3. peak memory of rendering one batch of 64 shapes (fresh process, RSS growth)
  4. `clip2point zeroshot` on one shape (fresh process, wall)  vs  model load + encode measured alone
Weights are random (none can be downloaded here); the compute is identical to the real ViT-B/32.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timeit(fn, repeat: int, warmup: int = 1) -> float:
    """Median wall time of fn() in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def load_modelnet10_test(data: Path):
    from clip2point.datasets import open_dataset

    ds = open_dataset("modelnet10", data / "modelnet10", "test")
    import torch

    return torch.from_numpy(ds.points_array)


def bench_render_vs_encode(points, device: str, quick: bool, precision: str = "fp32") -> dict:
    import torch

    from clip2point.backbone import load_backbone
    from clip2point.render import DepthRenderer, clip_normalize

    renderer = DepthRenderer("10")
    shape = points[:1].to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def render():
        renderer(shape)
        sync()

    t_render = timeit(render, repeat=5 if quick else 30, warmup=3)
    bb = load_backbone("ViT-B-32", weights="random", device=device, precision=precision)
    images = clip_normalize(renderer(shape))[0]

    def encode():
        bb.encode_images(images)
        sync()

    t_encode = timeit(encode, repeat=2 if quick else 5)
    return {"render_10_views_s": t_render, "encode_10_views_s": t_encode, "render_share_of_encode": t_render / t_encode}


def bench_dataset(points, device: str, quick: bool) -> dict:
    import torch

    from clip2point.render import DepthRenderer

    renderer = DepthRenderer("10")
    pts = points.to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def run():
        for i in range(0, len(pts), 64):
            renderer(pts[i : i + 64])
        sync()

    t = timeit(run, repeat=1 if quick else 3)
    return {"shapes": len(pts), "views": 10, "render_all_s": t, "shapes_per_s": len(pts) / t}


MEMORY_CHILD = r"""
import sys, torch, numpy as np
sys.path.insert(0, sys.argv[1])
from clip2point.render import DepthRenderer
def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key)) / 1024
pts = torch.from_numpy(np.load(sys.argv[2]))
r = DepthRenderer("10"); r(pts[:1])
open("/proc/self/clear_refs", "w").write("5")  # reset the peak-RSS mark (VmHWM) to the current RSS
before = status("VmRSS:")
out = r(pts)
print(status("VmHWM:") - before, out.numel() * 4 / 2**20)
"""


def bench_memory(points) -> dict:
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "b.npy", points[:64].numpy())
        out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(ROOT), str(Path(tmp) / "b.npy")],
                             capture_output=True, text=True, check=True)
    peak, output = map(float, out.stdout.split())
    return {"batch": 64, "peak_rss_growth_mb": peak, "of_which_output_mb": output}


PHASES_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
t0 = time.perf_counter()
import torch
from clip2point.backbone import open_clip_module
open_clip_module()  # open_clip as clip2point imports it (without torch._dynamo)
t1 = time.perf_counter()
from clip2point.backbone import load_backbone
from clip2point.classes import MODELNET10
from clip2point.render import DepthRenderer, clip_normalize
import numpy as np
bb = load_backbone("ViT-B-32", weights="random")
t2 = time.perf_counter()
text = bb.text_features(MODELNET10)
views = clip_normalize(DepthRenderer("6")(torch.from_numpy(np.load(sys.argv[2]))))
t3 = time.perf_counter()
bb.encode_images(views)
t4 = time.perf_counter()
print(json.dumps({"import_torch_open_clip_s": t1 - t0, "model_load_s": t2 - t1, "text_encode_s": t3 - t2, "image_encode_s": t4 - t3}))
"""


def bench_cli(points) -> dict:
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        shape = Path(tmp) / "shape.npy"
        np.save(shape, points[0].numpy())
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        cmd = [sys.executable, "-m", "clip2point", "-q", "zeroshot", str(shape), "--class-set", "modelnet10",
               "--weights", "random", "--json"]
        walls = []
        for k in range(3):  # each run with an empty view-feature cache: it renders and encodes like a first run
            env["CLIP2POINT_CACHE_DIR"] = str(Path(tmp) / f"cache{k}")
            t = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True, env=env, cwd=ROOT)
            walls.append(time.perf_counter() - t)
        phases = [json.loads(subprocess.run([sys.executable, "-c", PHASES_CHILD, str(ROOT), str(shape)], capture_output=True,
                                            text=True, check=True, env=env).stdout) for _ in range(3)]
    ph = {k: statistics.median(p[k] for p in phases) for k in phases[0]}
    wall = statistics.median(walls)
    load_encode = ph["model_load_s"] + ph["text_encode_s"] + ph["image_encode_s"]
    return {
        "cli_wall_s": wall, **ph,
        "wall_over_imports_load_encode": wall / (ph["import_torch_open_clip_s"] + load_encode),
        "wall_over_load_encode_only": wall / load_encode,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"),
                    help="encoder weights of [1] (rendering must stay <= 5 %% of encoding with bf16 too)")
    args = ap.parse_args()
    import torch

    points = load_modelnet10_test(args.data)
    res = {"device": args.device, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    print(f"device {args.device}, {res['torch_threads']} torch threads, {len(points)} ModelNet10 test shapes")
    r = bench_render_vs_encode(points, args.device, args.quick, args.precision)
    print(f"[1] 10 views, 1,024 points, 224²: render {r['render_10_views_s'] * 1e3:.1f} ms vs ViT-B/32 {args.precision} encode "
          f"{r['encode_10_views_s'] * 1e3:.0f} ms -> render = {r['render_share_of_encode'] * 100:.2f} % of encode (target <= 5 %)")
    d = bench_dataset(points, args.device, args.quick)
    print(f"[2] ModelNet10 test, {d['shapes']} shapes x 10 views: {d['render_all_s']:.2f} s "
          f"({d['shapes_per_s']:.0f} shapes/s; target <= 5 s on 2 CPU cores)")
    res.update(render=r, dataset=d)
    if args.device == "cpu":
        m = bench_memory(points)
        print(f"[3] batch of 64 shapes x 10 views: peak RSS growth {m['peak_rss_growth_mb']:.0f} MB "
              f"(of which the output tensor {m['of_which_output_mb']:.0f} MB; target <= 2048 MB)")
        c = bench_cli(points)
        print(f"[4] `clip2point zeroshot` one shape: wall {c['cli_wall_s']:.2f} s = imports {c['import_torch_open_clip_s']:.2f} s "
              f"(torch + open_clip) + model load {c['model_load_s']:.2f} s + text {c['text_encode_s']:.2f} s + "
              f"views {c['image_encode_s']:.2f} s + rest;\n    wall / (imports + load + encode) = "
              f"{c['wall_over_imports_load_encode']:.2f} (target <= 1.3); wall / (load + encode) = {c['wall_over_load_encode_only']:.2f}")
        res.update(memory=m, cli=c)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
