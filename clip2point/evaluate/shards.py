"""Resumable per-shard result files of a sharded evaluation (``clip2point eval --results-dir DIR``).

The split: rank ``r`` of ``W`` processes evaluates the dataset indices ``r, r + W, r + 2W, …``
(:func:`shard_indices`, strided: every rank gets a mix of all classes, the sizes differ by at most
one shape, and the split depends only on (S, W)).

The folder (:class:`ResultsDir`)::

    DIR/settings.json                        what the results were computed with (eval_settings)
    DIR/shards/r<rank>-of-<W>-<seq>.json     one chunk per batch: indices, labels, predictions, view predictions
    DIR/results.json, DIR/results.md         the merged table (rank 0, at the end)

Each chunk is written atomically (temporary file + rename, :func:`clip2point.checkpoints.write_json_atomic`)
as soon as its batch is classified, so a killed run loses at most one batch per rank; a resumed run
(any number of processes) reads every chunk, keeps each shape already done and evaluates only the
rest. Every chunk carries the digest of its settings; a folder or a chunk written with other settings
(dataset, split, classes, templates, model and weights identity, precision, views, render settings,
num_points, limit, …) is refused with a message naming what differs — results are never mixed.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoints import read_json, write_json_atomic
from ..datasets import PointCloudDataset
from ..errors import Clip2PointError
from ..viewcache import weights_identity
from ..zeroshot import ZeroShotClassifier

__all__ = ["SHARD_FORMAT", "ResultsDirError", "shard_indices", "eval_settings", "settings_digest", "ShardRows",
           "ResultsDir", "missing"]

#: Format tag of settings.json and of every chunk (a new format never reads old files).
SHARD_FORMAT = "clip2point-eval-shard/1"
_CHUNK = re.compile(r"^r(\d{5})-of-(\d{5})-(\d{6})\.json$")
_MAX_CHUNK_BYTES = 64 << 20


class ResultsDirError(Clip2PointError):
    """A --results-dir holds results of other settings, or a damaged/foreign file."""


def shard_indices(num_shapes: int, rank: int, world_size: int) -> np.ndarray:
    """(n_r,) int64 dataset indices of rank ``rank``'s shard: ``rank, rank + W, …`` (strided split)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise Clip2PointError(f"rank {rank} of a world of {world_size} processes is not a valid shard")
    return np.arange(rank, num_shapes, world_size, dtype=np.int64)


def _data_digest(dataset: PointCloudDataset) -> str:
    """sha256 of the dataset's labels and shape names: other files (or another order) give another digest."""
    h = hashlib.sha256(np.ascontiguousarray(dataset.labels, dtype=np.int64).tobytes())
    h.update("\n".join(dataset.names).encode())
    return h.hexdigest()


def _weights_name(source, model_name: str, memo_dir: Path | None) -> str | None:
    if source is None:
        return None
    return weights_identity(source, model_name, memo_dir) or f"{source.kind}:{source.location}"


def eval_settings(classifier: ZeroShotClassifier, dataset: PointCloudDataset, *, dataset_name: str, limit: int,
                  extra: dict | None = None, memo_dir: Path | None = None) -> dict:
    """Everything the per-shape results depend on, JSON-ready (what a results folder is keyed by).

    Args:
        classifier: its classes, templates, backbone (model, weights identity, depth encoder, precision),
            views and render settings are recorded. dataset: its split, num_points, up axis, size and a
            digest of its labels and shape names. dataset_name: e.g. "modelnet10". limit: --limit (0 = all).
        extra: the caller's other settings (e.g. prompt_style). memo_dir: where weights-file digests are
            remembered (see :func:`clip2point.viewcache.weights_identity`).
    """
    bb = classifier.backbone
    views, raster = classifier.views, classifier.renderer.raster
    return {
        "format": SHARD_FORMAT,
        "dataset": dataset_name, "split": dataset.split, "num_points": int(dataset.num_points), "up": dataset.up,
        "limit": int(limit), "num_shapes": len(dataset), "data_digest": _data_digest(dataset),
        "classes": list(classifier.classes),
        "templates": list(getattr(classifier, "templates", None) or [classifier.template]),
        "model": bb.model_name, "weights": _weights_name(bb.weights, bb.model_name, memo_dir),
        "depth_encoder": _weights_name(bb.depth_weights, bb.model_name, memo_dir),
        "encoder": classifier.encoder, "precision": bb.precision,
        "views": {"name": views.name, "elev": list(views.elev), "azim": list(views.azim), "dist": list(views.dist)},
        "image_size": int(raster.image_size), "radius": float(raster.radius),
        "extra": dict(extra or {}),
    }


def settings_digest(settings: dict) -> str:
    """sha256 (hex) of the settings' canonical JSON."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _differences(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new), key=lambda k: (k != "dataset", k))
    diffs = []
    for k in keys:
        if old.get(k) != new.get(k):
            a, b = json.dumps(old.get(k)), json.dumps(new.get(k))
            diffs.append(f"{k}: {a[:60]} there, {b[:60]} now")
    return "; ".join(diffs[:4]) + ("; …" if len(diffs) > 4 else "")


@dataclass
class ShardRows:
    """Per-shape results of some shapes: indices, labels, predictions (n,) int64; view_predictions (n, V) int64."""

    indices: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    view_predictions: np.ndarray

    @staticmethod
    def empty(num_views: int) -> ShardRows:
        z = np.zeros(0, np.int64)
        return ShardRows(z, z.copy(), z.copy(), np.zeros((0, num_views), np.int64))

    @staticmethod
    def concat(parts: Sequence[ShardRows], num_views: int) -> ShardRows:
        if not parts:
            return ShardRows.empty(num_views)
        return ShardRows(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                           ("indices", "labels", "predictions", "view_predictions")))

    def select(self, keep: np.ndarray) -> ShardRows:
        """The rows whose index is in ``keep`` (first occurrence of each index)."""
        _, first = np.unique(self.indices, return_index=True)
        rows = first[np.isin(self.indices[first], keep)]
        rows.sort()
        return ShardRows(self.indices[rows], self.labels[rows], self.predictions[rows], self.view_predictions[rows])


class ResultsDir:
    """A --results-dir: settings.json, the chunks of every rank, the merged results (see the module docstring).

    Args:
        root: the folder (created). settings: :func:`eval_settings` of this run.

    Raises:
        ResultsDirError: the folder's settings.json is damaged or names other settings.
    """

    def __init__(self, root: str | Path, settings: dict) -> None:
        self.root = Path(root)
        self.settings = settings
        self.digest = settings_digest(settings)
        self.shards = self.root / "shards"
        self.check_settings()

    def check_settings(self) -> None:
        """Refuse a folder whose settings.json names other settings (nothing is read or written then)."""
        path = self.root / "settings.json"
        if not path.exists():
            return
        old = read_json(path, "evaluation settings", f"delete {self.root} or pass another --results-dir",
                        ResultsDirError)
        if not isinstance(old, dict) or old.get("format") != SHARD_FORMAT or not isinstance(old.get("settings"), dict):
            raise ResultsDirError(f"{path}: not a clip2point evaluation results folder ({SHARD_FORMAT}); "
                                  "pass another --results-dir")
        if settings_digest(old["settings"]) != self.digest:
            raise ResultsDirError(
                f"--results-dir {self.root} holds results of other settings ({_differences(old['settings'], self.settings)}); "
                "pass another --results-dir, or delete that folder to start over")

    def write_settings(self) -> None:
        """Write settings.json (rank 0, once; atomic)."""
        if not (self.root / "settings.json").exists():
            write_json_atomic(self.root / "settings.json", {"format": SHARD_FORMAT, "settings": self.settings})

    def chunk_files(self) -> list[Path]:
        """Every finished chunk file (temporary files of interrupted writes are not chunks)."""
        if not self.shards.is_dir():
            return []
        return sorted(p for p in self.shards.iterdir() if _CHUNK.match(p.name))

    def load(self, dataset: PointCloudDataset, num_classes: int, num_views: int) -> ShardRows:
        """Every shape already evaluated, from all chunks (checked against this run's settings and dataset).

        Raises:
            ResultsDirError: a chunk of other settings, or damaged (wrong sizes, indices, labels or classes).
        """
        parts = [self._read_chunk(p, dataset, num_classes, num_views) for p in self.chunk_files()]
        return ShardRows.concat(parts, num_views)

    def _read_chunk(self, path: Path, dataset: PointCloudDataset, num_classes: int, num_views: int) -> ShardRows:
        fix = f"delete {path} (its shapes are evaluated again) or pass another --results-dir"
        if path.stat().st_size > _MAX_CHUNK_BYTES:
            raise ResultsDirError(f"{path}: {path.stat().st_size:,} bytes is too large for an evaluation chunk; {fix}")
        obj = read_json(path, "evaluation chunk", fix, ResultsDirError)
        if not isinstance(obj, dict) or obj.get("format") != SHARD_FORMAT:
            raise ResultsDirError(f"{path}: not a clip2point evaluation chunk ({SHARD_FORMAT}); {fix}")
        if obj.get("settings") != self.digest:
            raise ResultsDirError(f"{path}: written with other settings than this run's (settings digest "
                                  f"{str(obj.get('settings'))[:12]}…, this run {self.digest[:12]}…); never mixed: {fix}")
        try:
            rows = ShardRows(*(np.asarray(obj[k], dtype=np.int64) for k in
                               ("indices", "labels", "predictions", "view_predictions")))
        except (KeyError, TypeError, ValueError, OverflowError):
            raise ResultsDirError(f"{path}: damaged evaluation chunk (missing or non-integer fields); {fix}") from None
        n = rows.indices.shape
        ok = (rows.indices.ndim == 1 and rows.labels.shape == n and rows.predictions.shape == n
              and rows.view_predictions.shape == (n[0], num_views))
        ok = ok and (n[0] == 0 or (rows.indices.min() >= 0 and rows.indices.max() < len(dataset)))
        ok = ok and bool(np.all((rows.predictions >= 0) & (rows.predictions < num_classes)))
        ok = ok and bool(np.all((rows.view_predictions >= 0) & (rows.view_predictions < num_classes)))
        if not ok or not np.array_equal(rows.labels, dataset.labels[rows.indices] if n[0] else rows.labels):
            raise ResultsDirError(f"{path}: damaged evaluation chunk (sizes, indices, labels or classes do not fit "
                                  f"this dataset); {fix}")
        return rows

    def next_seq(self, rank: int, world_size: int) -> int:
        """The sequence number after this rank's last chunk (chunks of one rank never overwrite each other)."""
        seqs = [int(m.group(3)) for p in self.chunk_files() if (m := _CHUNK.match(p.name))
                and int(m.group(1)) == rank and int(m.group(2)) == world_size]
        return max(seqs, default=-1) + 1

    def write_chunk(self, rank: int, world_size: int, seq: int, rows: ShardRows) -> Path:
        """Write one chunk atomically: ``shards/r<rank>-of-<W>-<seq>.json``."""
        path = self.shards / f"r{rank:05d}-of-{world_size:05d}-{seq:06d}.json"
        write_json_atomic(path, {"format": SHARD_FORMAT, "settings": self.digest, "rank": rank, "world_size": world_size,
                                 "indices": rows.indices.tolist(), "labels": rows.labels.tolist(),
                                 "predictions": rows.predictions.tolist(),
                                 "view_predictions": rows.view_predictions.tolist()}, indent=None)
        return path


def missing(indices: np.ndarray, done: Iterable[int]) -> np.ndarray:
    """The entries of ``indices`` not in ``done``, in order."""
    return indices[~np.isin(indices, np.fromiter(done, dtype=np.int64))]
