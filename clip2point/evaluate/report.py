"""The results table of one evaluation: results.json (everything) and a readable Markdown table (results.md)."""
from __future__ import annotations

import math
from pathlib import Path

from ..checkpoints import write_json_atomic, write_text_atomic
from .result import EvalResult, json_safe

__all__ = ["MAX_MARKDOWN_CLASSES", "format_markdown", "write_results"]

#: Above this many classes results.md leaves the confusion matrix to results.json.
MAX_MARKDOWN_CLASSES = 40


def _pct(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def format_markdown(result: EvalResult, title: str, weights: str) -> str:
    """Markdown: overall and mean class accuracy, per-class accuracy, per-view accuracy, confusion matrix."""
    out = [f"# {title}", "", f"- weights: {weights}", f"- shapes: {len(result.labels)}",
           f"- accuracy (top-1): {_pct(result.accuracy)} %", f"- mean class accuracy: {_pct(result.mean_class_accuracy)} %",
           "", "## Per class", "", "| class | shapes | accuracy % |", "|---|---:|---:|"]
    totals = result.confusion.sum(axis=1)
    for (name, acc), n in zip(result.per_class_accuracy.items(), totals):
        out.append(f"| {name} | {int(n)} | {_pct(acc)} |")
    per_view = result.per_view_accuracy
    if per_view is not None:
        out += ["", "## Per view (each view's own top-1; the shape's prediction sums the views' logits)", "",
                "| view | accuracy % |", "|---|---:|"]
        labels = result.view_labels or [f"view {v}" for v in range(len(per_view))]
        out += [f"| {lab} | {_pct(acc)} |" for lab, acc in zip(labels, per_view)]
    if len(result.classes) <= MAX_MARKDOWN_CLASSES:
        out += ["", "## Confusion matrix (rows: true class, columns: predicted)", "",
                "| true \\ predicted | " + " | ".join(result.classes) + " |",
                "|---|" + "---:|" * len(result.classes)]
        out += [f"| {name} | " + " | ".join(str(int(x)) for x in row) + " |"
                for name, row in zip(result.classes, result.confusion)]
    else:
        out += ["", f"(confusion matrix of {len(result.classes)} classes: see results.json)"]
    return "\n".join(out) + "\n"


def write_results(folder: str | Path, payload: dict, markdown: str) -> tuple[Path, Path]:
    """Write ``folder``/results.json (``payload``, NaN as null) and results.md atomically; returns both paths."""
    folder = Path(folder)
    return (write_json_atomic(folder / "results.json", json_safe(payload)),
            write_text_atomic(folder / "results.md", markdown))
