"""Start-up benchmark: `clip2point zeroshot` on one shape in a fresh process, and the bare CLI import.

Run:  .venv/bin/python benchmarks/bench_startup.py [--repeat 3] [--shape examples/points/chair.ply]
                                                  [--model ViT-B-32] [--precision fp32] [--importtime] [--json]

Reports the median (and every run) wall time, and the median CPU time (user + system), of

  1. ``python -m clip2point -q zeroshot SHAPE --class-set modelnet10 --weights random`` in a fresh
     process (random ViT-B/32 weights, explicitly: the compute is the real model's, no weights file
     is read), each run with a fresh, empty view-feature cache folder ($CLIP2POINT_CACHE_DIR), so
     every run renders and encodes like a first run;
  2. ``python -c "import clip2point.cli"`` (what ``clip2point --help`` pays).

``--importtime`` runs (1) once more under ``python -X importtime`` and lists the slowest top-level
imports. ``--root DIR`` measures another checkout (e.g. a ``git worktree`` of an older commit): the
processes run there with ``PYTHONPATH=DIR``. Timings on a shared machine are noisy: compare medians
measured back to back.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env(root: Path, cache_dir: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(root), CLIP2POINT_CACHE_DIR=cache_dir, HF_HUB_OFFLINE="1")
    env.pop("CLIP2POINT_WEIGHTS", None)
    return env


def zeroshot_command(shape: str, model: str, precision: str | None) -> list[str]:
    """The measured command line (``python -m clip2point ...``)."""
    cmd = [sys.executable, "-m", "clip2point", "-q", "zeroshot", shape, "--class-set", "modelnet10",
           "--weights", "random", "--model", model]
    return cmd + (["--precision", precision] if precision else [])


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_runs(cmd: list[str], root: Path, repeat: int) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds) of ``repeat`` fresh processes of ``cmd`` (each with its own empty cache folder).

    CPU seconds (user + system, all threads) are less sensitive to other load on a shared machine than wall time.
    """
    walls, cpus = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="c2p-startup-") as cache:
            c, t = _children_cpu_s(), time.perf_counter()
            out = subprocess.run(cmd, cwd=root, env=_env(root, cache), capture_output=True, text=True)
            walls.append(time.perf_counter() - t)
            cpus.append(_children_cpu_s() - c)
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return walls, cpus


def top_imports(cmd: list[str], root: Path, n: int = 12) -> list[tuple[str, float]]:
    """The ``n`` slowest top-level imports of one run of ``cmd`` (``-X importtime``), seconds (cumulative)."""
    with tempfile.TemporaryDirectory(prefix="c2p-startup-") as cache:
        out = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], cwd=root, env=_env(root, cache),
                             capture_output=True, text=True)
    rows = []
    for line in out.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)  # exactly one space: a top-level import
        if m:
            rows.append((m.group(2).strip(), int(m.group(1)) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:n]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default=str(ROOT / "examples" / "points" / "chair.ply"))
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--precision", default=None, help="pass --precision (default: none, the CLI's default)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--root", default=str(ROOT), help="the checkout to measure")
    ap.add_argument("--importtime", action="store_true", help="also list the slowest imports of one run")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = ap.parse_args(argv)
    root = Path(args.root).resolve()
    cmd = zeroshot_command(str(Path(args.shape).resolve()), args.model, args.precision)
    zs, zs_cpu = timed_runs(cmd, root, args.repeat)
    imp, imp_cpu = timed_runs([sys.executable, "-c", "import clip2point.cli"], root, args.repeat)
    result = {"command": " ".join(["clip2point", *cmd[3:]]), "root": str(root), "cpu_threads": os.cpu_count(),
              "load_average": os.getloadavg()[0],
              "zeroshot_s": {"median": statistics.median(zs), "runs": zs, "cpu_median": statistics.median(zs_cpu)},
              "import_cli_s": {"median": statistics.median(imp), "runs": imp, "cpu_median": statistics.median(imp_cpu)}}
    if args.importtime:
        result["top_imports_s"] = dict(top_imports(cmd, root))
    if args.json:
        print(json.dumps(result))
        return result
    print(f"{result['command']}  (fresh process, empty view cache; {root}; load average {result['load_average']:.1f} "
          f"on {os.cpu_count()} CPUs)")
    print(f"  zeroshot one shape: median {result['zeroshot_s']['median']:.2f} s wall  runs "
          + ", ".join(f"{t:.2f}" for t in zs) + f"  (CPU {result['zeroshot_s']['cpu_median']:.2f} s)")
    print(f"  import clip2point.cli: median {result['import_cli_s']['median']:.2f} s wall  runs "
          + ", ".join(f"{t:.2f}" for t in imp) + f"  (CPU {result['import_cli_s']['cpu_median']:.2f} s)")
    for name, seconds in result.get("top_imports_s", {}).items():
        print(f"    import {name:<28s} {seconds:6.2f} s")
    return result


if __name__ == "__main__":
    main()
