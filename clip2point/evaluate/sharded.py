"""Zero-shot evaluation sharded over processes and nodes (torchrun), gathered exactly, resumable.

One process (no torchrun) runs the same code in a world of one, without ``torch.distributed``.
Under ``torchrun`` each rank joins the process group of :func:`clip2point.pretrain.distributed.init_distributed`
(the engine pre-training uses: gloo on CPU, NCCL with each rank on its local GPU), renders and encodes
its shard (:func:`~clip2point.evaluate.shards.shard_indices`: indices ``rank, rank + W, …``), and the
per-shape integer results (index, label, prediction, per-view predictions) are gathered to rank 0 with
``all_gather`` of int64 tensors: exact, no floating-point reduction, so every shape's prediction is
the one its rank computed. Batches are cut from each rank's own shard, so a shape may share its batch
with other shapes than in one process; encoding is per image, and the predictions agree with one
process (tested with 2 gloo processes on real ModelNet10 shapes).

With a :class:`~clip2point.evaluate.shards.ResultsDir`, each rank writes a chunk per batch and a
resumed run evaluates only the shapes without a result (see :mod:`.shards`).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import torch

from ..datasets import PointCloudDataset, iter_batches
from ..errors import Clip2PointError
from ..pretrain.distributed import DistEnv
from ..zeroshot import ZeroShotClassifier
from .result import EvalResult, classify_batch
from .shards import ResultsDir, ShardRows, missing, shard_indices

log = logging.getLogger(__name__)

__all__ = ["evaluate_sharded", "gather_rows", "sum_counts", "ShardReport"]


class ShardReport:
    """What this rank did: shapes in its shard, how many came from result files, how many were evaluated, seconds."""

    def __init__(self, shard: int, resumed: int, evaluated: int, seconds: float) -> None:
        self.shard, self.resumed, self.evaluated, self.seconds = shard, resumed, evaluated, seconds

    def as_dict(self) -> dict:
        return {"shard": self.shard, "resumed": self.resumed, "evaluated": self.evaluated,
                "seconds": round(self.seconds, 3)}


def _collective_device(env: DistEnv) -> torch.device:
    return env.device if env.backend == "nccl" else torch.device("cpu")


def gather_rows(env: DistEnv, rows: ShardRows, num_views: int) -> ShardRows | None:
    """Every rank's rows, concatenated in rank order, on rank 0 (None on the other ranks; ``rows`` itself
    in a world of one). Exact: int64 tensors through ``all_gather`` (padded to the largest shard)."""
    if not env.backend or env.world_size == 1:
        return rows
    import torch.distributed as dist

    dev = _collective_device(env)
    width = 3 + num_views
    table = np.concatenate([rows.indices[:, None], rows.labels[:, None], rows.predictions[:, None],
                            rows.view_predictions.reshape(-1, num_views)], axis=1).astype(np.int64)
    count = torch.tensor([table.shape[0]], dtype=torch.int64, device=dev)
    counts = [torch.zeros_like(count) for _ in range(env.world_size)]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    padded = torch.zeros(max(sizes), width, dtype=torch.int64, device=dev)
    padded[: table.shape[0]] = torch.from_numpy(table).to(dev)
    tables = [torch.zeros_like(padded) for _ in range(env.world_size)]
    dist.all_gather(tables, padded)
    if not env.is_main:
        return None
    full = torch.cat([t[:n] for t, n in zip(tables, sizes)]).cpu().numpy()
    return ShardRows(full[:, 0].copy(), full[:, 1].copy(), full[:, 2].copy(), full[:, 3:].copy())


def sum_counts(env: DistEnv, counts: dict[str, int]) -> dict[str, int]:
    """``counts`` summed over the ranks (every rank gets the sums; the same dict in a world of one)."""
    if not env.backend or env.world_size == 1 or not counts:
        return dict(counts)
    import torch.distributed as dist

    keys = list(counts)  # the same order on every rank (built by the same code)
    t = torch.tensor([int(counts[k]) for k in keys], dtype=torch.int64, device=_collective_device(env))
    dist.all_reduce(t)
    return dict(zip(keys, (int(x) for x in t.tolist())))


def _merge(rows: ShardRows, classifier: ZeroShotClassifier, num_shapes: int) -> EvalResult:
    order = np.argsort(rows.indices, kind="stable")
    idx = rows.indices[order]
    if not np.array_equal(idx, np.arange(num_shapes)):
        raise Clip2PointError(f"the gathered results cover {len(np.unique(idx))} of {num_shapes} shapes "
                              f"({len(idx)} rows); this is a bug in clip2point, please report it")
    return EvalResult(list(classifier.classes), rows.labels[order], rows.predictions[order],
                      rows.view_predictions[order], classifier.views.labels(), idx)


def evaluate_sharded(
    classifier: ZeroShotClassifier,
    dataset: PointCloudDataset,
    env: DistEnv | None = None,
    *,
    batch_size: int = 32,
    results: ResultsDir | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[EvalResult | None, ShardReport]:
    """Zero-shot top-1 on ``dataset``: this rank's shard, gathered to rank 0.

    Args:
        classifier: the classifier (its classes must be the dataset's, in order; its cache is used).
        dataset: the same dataset on every rank. env: this process's place (default: a world of one).
        batch_size: shapes per batch. results: the --results-dir (resume + per-batch chunks), or None.
        progress: called with the number of this rank's shapes done (also those read from result files).

    Returns:
        (result, report): the :class:`EvalResult` of every shape in dataset order on rank 0 (None on the
        other ranks), and this rank's :class:`ShardReport` (its seconds: from a barrier of all ranks to the
        gathered result, i.e. the slowest rank's evaluation).

    Raises:
        ResultsDirError: ``results`` holds other settings or damaged chunks. Clip2PointError: invalid points.
    """
    env = env or DistEnv()
    env.barrier()  # every rank starts together: the report's seconds are the evaluation's, not the start-up's
    t0 = time.perf_counter()
    n_views, n_classes = len(classifier.views), len(classifier.classes)
    mine = shard_indices(len(dataset), env.rank, env.world_size)
    parts, seq = [ShardRows.empty(n_views)], 0
    if results is not None:
        if env.is_main:
            results.write_settings()
        parts = [results.load(dataset, n_classes, n_views).select(mine)]
        seq = results.next_seq(env.rank, env.world_size)
    resumed = len(parts[0].indices)
    if progress is not None and resumed:
        progress(resumed)
    todo = missing(mine, parts[0].indices)
    for start, (pts, lab) in zip(range(0, len(todo), batch_size), iter_batches(dataset.subset(todo), batch_size)):
        pred, views = classify_batch(classifier, pts)
        rows = ShardRows(todo[start : start + len(lab)], lab.numpy().astype(np.int64), pred, views)
        if results is not None:
            results.write_chunk(env.rank, env.world_size, seq, rows)
            seq += 1
        parts.append(rows)
        if progress is not None:
            progress(len(lab))
    gathered = gather_rows(env, ShardRows.concat(parts, n_views), n_views)  # a collective: waits for every rank
    report = ShardReport(len(mine), resumed, len(todo), time.perf_counter() - t0)
    log.info("rank %d/%d: %d shapes (%d from result files, %d evaluated); all ranks gathered after %.1f s", env.rank,
             env.world_size, report.shard, report.resumed, report.evaluated, report.seconds)
    return (None if gathered is None else _merge(gathered, classifier, len(dataset))), report
