"""benchmarks/: the GPU script runs its code paths tiny on the CPU (``--smoke``); the start-up and encoder-bound benchmarks run.

Both start fresh Python processes (each imports torch and open_clip), so they are marked slow.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import DATA, needs_data

ROOT = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, PY=sys.executable, DATA=str(DATA), CLIP2POINT_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("CLIP2POINT_WEIGHTS", None)
    return env


@pytest.mark.slow
@needs_data
def test_gpu_script_smoke_runs_every_figure_on_the_cpu(tmp_path):
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--smoke"], capture_output=True, text=True,
                         timeout=600, env=_env(tmp_path), cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    text = out.stdout
    for needle in ("render  6 views:", "render 10 views:", "eval fp32:", "eval bf16:", "top1 agreement with fp32",
                   "few-shot benchmark", "cpu, fp32", "cpu, bf16", "pre-training step on cpu", ", bf16, random weights",
                   "pairs/s", "gpu.sh: done"):
        assert needle in text, needle
    assert "1-shot, 2 epochs" in text


def test_gpu_script_refuses_without_a_gpu_or_with_unknown_options(tmp_path):
    script = str(ROOT / "benchmarks" / "gpu.sh")
    out = subprocess.run(["bash", script, "--bogus"], capture_output=True, text=True, env=_env(tmp_path))
    assert out.returncode == 2 and "unknown option --bogus" in out.stderr
    out = subprocess.run(["bash", script, "--help"], capture_output=True, text=True, env=_env(tmp_path))
    assert out.returncode == 0 and "--smoke" in out.stdout
    import torch

    if not torch.cuda.is_available():
        out = subprocess.run(["bash", script], capture_output=True, text=True, env=_env(tmp_path))
        assert out.returncode == 1 and "no CUDA GPU" in out.stderr


@pytest.mark.slow
def test_startup_benchmark_reports_medians(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_startup.py"), "--repeat", "1",
                          "--model", "tiny-ViT-test", "--json"], capture_output=True, text=True, timeout=300,
                         env=_env(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout)
    assert res["command"].startswith("clip2point -q zeroshot") and "--weights random" in res["command"]
    assert len(res["zeroshot_s"]["runs"]) == 1 and res["zeroshot_s"]["median"] > res["import_cli_s"]["median"] > 0


@pytest.mark.slow
def test_encoder_bound_benchmark_reports_every_figure(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_encoder_bound.py"), "--model", "tiny-ViT-test",
                          "--batch", "2,4", "--repeat", "1"], capture_output=True, text=True, timeout=300, env=_env(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(res["tower_ms"]) == set(res["encode_ms"]) == {"fp32/2", "fp32/4", "bf16/2", "bf16/4"}
    assert all(v > 0 for v in [*res["tower_ms"].values(), *res["encode_ms"].values()])
    assert res["gemm_bf16_over_fp32"] > 0 and res["tower_bf16_over_fp32"] > 0
