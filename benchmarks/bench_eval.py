"""Sharded evaluation benchmark: shapes/s of ``clip2point eval`` in 1 process vs N processes (torchrun, gloo).

Run:  .venv/bin/python benchmarks/bench_eval.py [--shapes 96] [--model ViT-B-32] [--nproc 2] [--threads 0]
                                                [--batch-size 8] [--precision fp32] [--json out.json]
      .venv/bin/python benchmarks/bench_eval.py --smoke        # tiny model, 16 shapes: checks that it runs

Both configurations evaluate the same first ``--shapes`` ModelNet10 test shapes (6 views, the released
prompt) in this one run, one after the other, as the user would run them:

  1. ``python -m clip2point eval ...`` — one process with all ``--threads`` CPU threads;
  2. ``torchrun --standalone --nproc_per_node N -m clip2point eval ...`` — N gloo processes, each with
     ``threads / N`` threads (the same cores, shared), each rank its strided shard, gathered to rank 0;
  3. with ``--thread-baseline``: one process with ``threads / N`` threads (what one rank's share of the
     cores does alone), to tell the sharding's gain from the threading's.

Reported per configuration: the evaluation's seconds (rank 0's ``eval_seconds``: from its first shape to
the gathered result, after a barrier of all ranks: the slowest rank's evaluation), shapes/s from it, the whole command's wall time
(start-up, model load and process-group set-up included), and the ratios N-process / 1-process measured
here. The predictions of both runs are compared (they must be identical). ``--no-cache``: every shape is
rendered and encoded in both runs. Weights are random (the compute is the real architecture's).
On 2 cores, with N = 2, the default run takes about 2-3 minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "modelnet10"


def eval_args(a: argparse.Namespace) -> list[str]:
    return ["-q", "eval", "--dataset", "modelnet10", "--data-dir", str(DATA), "--limit", str(a.shapes),
            "--batch-size", str(a.batch_size), "--model", a.model, "--weights", "random", "--offline",
            "--precision", a.precision, "--device", "cpu", "--no-cache", "--json"]


def run(cmd: list[str], threads: int, tmp: Path) -> tuple[dict, float]:
    """Run one configuration; (its JSON result, the command's wall seconds)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "CLIP2POINT_CACHE_DIR": str(tmp)}
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=3600)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", type=int, default=96)
    ap.add_argument("--model", default="ViT-B-32", help="open_clip architecture (random weights)")
    ap.add_argument("--nproc", type=int, default=2, help="processes of the torchrun configuration")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads in all (0: every core)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"))
    ap.add_argument("--thread-baseline", action="store_true",
                    help="also run 1 process with threads / N threads (separates sharding from threading)")
    ap.add_argument("--smoke", action="store_true", help="tiny-ViT-test, 16 shapes")
    ap.add_argument("--json", metavar="PATH", help="also write the figures here")
    a = ap.parse_args()
    if a.smoke:
        a.model, a.shapes = "tiny-ViT-test", 16
    threads = a.threads or os.cpu_count() or 1
    torchrun = Path(sys.executable).parent / "torchrun"
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    configs = {
        "1 process": ([sys.executable, "-m", "clip2point", *eval_args(a)], threads),
        f"{a.nproc} processes": ([*launcher, "--standalone", "--nproc_per_node", str(a.nproc), "-m", "clip2point",
                                  *eval_args(a)], max(1, threads // a.nproc)),
    }
    if a.thread_baseline and threads // a.nproc != threads:
        configs[f"1 process, {max(1, threads // a.nproc)} thr"] = (configs["1 process"][0], max(1, threads // a.nproc))
    rows, preds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (cmd, per_proc) in configs.items():
            res, wall = run(cmd, per_proc, Path(tmp))
            rows[name] = {"shapes": res["num_shapes"], "threads_per_process": per_proc,
                          "eval_seconds": res["eval_seconds"], "shapes_per_s": round(res["num_shapes"] / res["eval_seconds"], 3),
                          "wall_seconds": round(wall, 2), "shapes_per_s_wall": round(res["num_shapes"] / wall, 3)}
            preds[name] = res["predictions"]
            print(f"{name:>12s}: {rows[name]}", flush=True)
    one, many = rows["1 process"], rows[f"{a.nproc} processes"]
    summary = {"model": a.model, "precision": a.precision, "cpu_threads": threads, "configs": rows,
               "ratio_shapes_per_s": round(many["shapes_per_s"] / one["shapes_per_s"], 3),
               "ratio_wall": round(one["wall_seconds"] / many["wall_seconds"], 3),
               "identical_predictions": all(p == preds["1 process"] for p in preds.values())}
    print(f"{a.nproc} processes / 1 process: shapes/s x{summary['ratio_shapes_per_s']} (evaluation), "
          f"x{summary['ratio_wall']} (whole command); identical predictions: {summary['identical_predictions']}")
    if a.json:
        Path(a.json).write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
