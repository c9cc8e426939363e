"""Published zero-shot numbers (``PAPER_ZERO_SHOT``) and the paper-style table of ``clip2point eval --table``.

Every number names its source and the setting it was measured in; where the CLIP2Point paper
publishes none for a dataset (or we could not verify it), the table shows "—" rather than a guess.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["PaperNumber", "PAPER_ZERO_SHOT", "OTHER_REPORTS", "paper_number", "table_row", "format_table"]


@dataclass(frozen=True)
class PaperNumber:
    """One published top-1 accuracy (percent), where it comes from and in which setting.

    Attributes:
        accuracy: top-1 %, or None when the source publishes none for this dataset.
        source: who reported it. variant: the setting (backbone, weights, views, prompt, dataset variant).
    """

    accuracy: float | None
    source: str
    variant: str

    def as_dict(self) -> dict:
        return asdict(self)


_PAPER = "CLIP2Point paper (Huang et al., ICCV 2023)"
_RELEASE = "ViT-B/32 + pre-trained depth encoder, 6 views, 'image of a {}', 1,024 points"

#: CLIP2Point's own zero-shot top-1 (%) per dataset name of :data:`clip2point.datasets.DATASET_NAMES`
#: (REFERENCE.md §7). ScanObjectNN: the paper's own figure could not be verified with our sources,
#: so it stays None ("—"); OpenShape's re-run of the release is in :data:`OTHER_REPORTS`.
PAPER_ZERO_SHOT: dict[str, PaperNumber] = {
    "modelnet10": PaperNumber(66.6, _PAPER, _RELEASE + ", ModelNet10 test split (908 shapes)"),
    "modelnet40": PaperNumber(49.38, _PAPER, _RELEASE + ", ModelNet40 test split (2,468 shapes)"),
    "scanobjectnn-obj-only": PaperNumber(None, _PAPER, "not verified here (see OTHER_REPORTS)"),
    "scanobjectnn-obj-bg": PaperNumber(None, _PAPER, "not verified here (see OTHER_REPORTS)"),
    "scanobjectnn-pb-t50-rs": PaperNumber(None, _PAPER, "not verified here (see OTHER_REPORTS)"),
    "objaverse-lvis": PaperNumber(None, _PAPER, "the paper predates Objaverse-LVIS: no number"),
}

_OPENSHAPE = "OpenShape (Liu et al., NeurIPS 2023), re-running CLIP2Point's released checkpoint"
_SONN = PaperNumber(25.5, _OPENSHAPE, "ScanObjectNN; which variant is not stated in our reference (REFERENCE.md §7)")

#: Other published runs of CLIP2Point's release, shown beside the paper's number (REFERENCE.md §7).
OTHER_REPORTS: dict[str, tuple[PaperNumber, ...]] = {
    "modelnet40": (PaperNumber(49.5, _OPENSHAPE, "ModelNet40 test split"),),
    "scanobjectnn-obj-only": (_SONN,),
    "scanobjectnn-obj-bg": (_SONN,),
    "scanobjectnn-pb-t50-rs": (_SONN,),
}


def paper_number(dataset: str) -> PaperNumber | None:
    """The paper's zero-shot number for ``dataset`` (None: a dataset the table does not know)."""
    return PAPER_ZERO_SHOT.get(dataset)


def table_row(dataset: str, split: str, metrics: dict | None, error: str | None = None) -> dict:
    """One row of the table: our result (``EvalResult.as_dict()`` or None with ``error``) beside the published numbers.

    Returns:
        {"dataset", "split", "num_shapes", "num_classes", "classes_present" (classes with a shape: a partial
        dataset or --limit shows here), "accuracy" (%), "mean_class_accuracy" (%), "paper" ({accuracy,
        source, variant} or None), "other_reports" ([...]), "error"} — accuracies in percent, None when absent.
    """
    paper = paper_number(dataset)

    def pct(key: str) -> float | None:
        v = None if metrics is None else metrics.get(key)
        return None if v is None or v != v else round(100 * float(v), 2)

    confusion = None if metrics is None else metrics.get("confusion_matrix")
    return {
        "dataset": dataset, "split": split,
        "num_shapes": None if metrics is None else metrics.get("num_shapes"),
        "num_classes": None if metrics is None or "classes" not in metrics else len(metrics["classes"]),
        "classes_present": None if confusion is None else sum(1 for row in confusion if sum(row)),
        "accuracy": pct("accuracy"), "mean_class_accuracy": pct("mean_class_accuracy"),
        "paper": None if paper is None else paper.as_dict(),
        "other_reports": [r.as_dict() for r in OTHER_REPORTS.get(dataset, ())],
        "error": error,
    }


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def format_table(rows: list[dict], weights: str, random_weights: bool, limit: int = 0, setting: str = "") -> str:
    """The paper-style table as Markdown: dataset × (ours, CLIP2Point paper, other reports), with its notes
    (``setting``: ours in words — views, templates, points, precision — printed beside the paper's)."""
    ours = "ours, RANDOM weights" if random_weights else "ours"
    lines = [f"| dataset | shapes | classes | {ours} top-1 % | mean class % | CLIP2Point paper % | other reports % |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        paper = r["paper"] or {}
        other = "; ".join(f"{_num(o['accuracy'])} ({o['source'].split(' (')[0]}: {o['variant']})" for o in r["other_reports"])
        if r["error"]:
            lines.append(f"| {r['dataset']} | — | — | error: {r['error']} | — | {_num(paper.get('accuracy'))} | {other or '—'} |")
            continue
        classes = "—" if r.get("classes_present") is None else f"{r['classes_present']}/{r['num_classes']}"
        lines.append(f"| {r['dataset']} ({r['split']}) | {r['num_shapes']} | {classes} | {_num(r['accuracy'])} | "
                     f"{_num(r['mean_class_accuracy'])} | {_num(paper.get('accuracy'))} | {other or '—'} |")
    notes = [f"weights: {weights}"] + ([f"ours: {setting}"] if setting else [])
    if random_weights:
        notes.append("RANDOM weights: our numbers measure nothing but chance; pass real CLIP weights "
                     "(--weights openai, --depth-encoder best_eval.pth) to compare with the paper")
    if limit:
        notes.append(f"--limit {limit}: only the first {limit} shapes of each dataset (the paper uses the full test split)")
    if any(r.get("classes_present") is not None and r["classes_present"] < r["num_classes"] for r in rows):
        notes.append("classes a/b: only a of the b classes have shapes here (a partial dataset or --limit): "
                      "not comparable with the paper's full test split")
    notes.append(f"paper: {_PAPER}, {_RELEASE}; '—' = no number published (or none we could verify)")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes])
