"""Zero-shot evaluation: one process or sharded over processes and nodes (torchrun), resumable, with the paper's numbers.

Modules: :mod:`.result` (:class:`EvalResult`, :func:`evaluate_zero_shot`: one process), :mod:`.shards`
(the split of a dataset over ranks and the resumable per-shard result files of ``--results-dir``),
:mod:`.sharded` (:func:`evaluate_sharded`: each rank its shard, results gathered exactly to rank 0),
:mod:`.report` (results.json / results.md), :mod:`.paper` (``PAPER_ZERO_SHOT``, the paper-style table).
``iter_batches`` lives in :mod:`clip2point.datasets` (re-exported here, where it used to live).
"""
from __future__ import annotations

from .paper import OTHER_REPORTS, PAPER_ZERO_SHOT, PaperNumber, format_table, paper_number, table_row
from .report import format_markdown, write_results
from .result import EvalResult, classify_batch, evaluate_zero_shot, iter_batches, json_safe
from .sharded import ShardReport, evaluate_sharded, gather_rows, sum_counts
from .shards import SHARD_FORMAT, ResultsDir, ResultsDirError, ShardRows, eval_settings, shard_indices

__all__ = [
    "EvalResult", "evaluate_zero_shot", "iter_batches", "classify_batch", "json_safe",
    "evaluate_sharded", "gather_rows", "sum_counts", "ShardReport",
    "SHARD_FORMAT", "ResultsDir", "ResultsDirError", "ShardRows", "eval_settings", "shard_indices",
    "format_markdown", "write_results",
    "PaperNumber", "PAPER_ZERO_SHOT", "OTHER_REPORTS", "paper_number", "table_row", "format_table",
]
