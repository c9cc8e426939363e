"""``torchrun --nproc_per_node 2 -m clip2point eval``: 2 gloo processes give one process's predictions, resume a
killed shard, and refuse result files of other settings (real ModelNet10 shapes, tiny random-weight CLIP)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clip2point.cli import main
from helpers import DATA, needs_data

TINY = ["--model", "tiny-ViT-test", "--weights", "random", "--offline"]
EVAL = ["-q", "eval", "--dataset", "modelnet10", "--data-dir", str(DATA / "modelnet10"), "--limit", "24",
        "--batch-size", "4", "--json", *TINY]
SAME = ("accuracy", "mean_class_accuracy", "per_class_accuracy", "confusion_matrix", "per_view_accuracy", "predictions")


def _torchrun(args: list[str], cache: Path) -> subprocess.CompletedProcess:
    torchrun = Path(sys.executable).parent / "torchrun"
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CLIP2POINT_CACHE_DIR": str(cache)}
    return subprocess.run([*launcher, "--standalone", "--nproc_per_node", "2", "-m", "clip2point", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def _only_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout[-2000:]  # only rank 0 prints: one JSON object
    return json.loads(lines[0])


@needs_data
@pytest.mark.slow
def test_two_gloo_processes_match_one_and_resume_a_killed_shard(tmp_path, capsys):
    assert main([*EVAL, "--no-cache"]) == 0
    one = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    run = tmp_path / "run"
    two = _only_json(_torchrun([*EVAL, "--results-dir", str(run)], tmp_path / "cache-a"))
    assert two["world_size"] == 2 and one["world_size"] == 1
    for key in SAME:
        assert two[key] == one[key], key  # the same per-shape predictions, in dataset order
    assert [p["index"] for p in two["predictions"]] == list(range(24))
    chunks = sorted((run / "shards").glob("r00001-of-00002-*.json"))
    assert len(chunks) == 3 and len(list((run / "shards").glob("r00000-*.json"))) == 3  # 12 shapes each, 4 per batch

    # rank 1 killed after its first batch: its last two chunks never written (a write cut short leaves a temp file)
    for c in chunks[1:]:
        c.unlink()
    (run / "shards" / ".r00001-of-00002-000001.json.99.ab12.tmp").write_text('{"format": "clip2point-ev')
    resumed = _only_json(_torchrun([*EVAL, "--results-dir", str(run)], tmp_path / "cache-b"))
    for key in SAME:
        assert resumed[key] == one[key], key
    assert resumed["view_cache"]["misses"] == 8 and resumed["resumed_rank0"] == 12  # only rank 1's 8 lost shapes encoded

    # one process resumes a 2-process folder: every shape is read back
    assert main([*EVAL, "--results-dir", str(run)]) == 0
    back = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert back["resumed_rank0"] == 24 and back["predictions"] == one["predictions"]

    # other settings: every rank refuses the folder with one clear line, nothing hangs
    bad = _torchrun([*EVAL, "--results-dir", str(run), "--views", "10"], tmp_path / "cache-b")
    assert bad.returncode != 0 and "other settings" in bad.stderr and "views" in bad.stderr
    assert json.loads((run / "results.json").read_text())["predictions"] == one["predictions"]
