"""The dataset classes every reader returns: a labelled list of y-up point clouds, and batching.

:class:`PointCloudDataset` items are ``(points, label)``: ``points`` a (N, 3) float32 tensor,
**always y-up** (the renderer's world up, as in CLIP2Point's released code), in the raw units of
the files (the renderer centres and scales each cloud itself), ``label`` an int index into
``dataset.class_names`` (the prompt words of the classes). :class:`InMemoryDataset` holds one
(S, N, 3) array (the h5 layouts), :class:`LazyDataset` reads one file per item on first access,
:class:`SubsetDataset` is a view, and :func:`iter_batches` yields batches in dataset order.
"""
from __future__ import annotations

import abc
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DatasetError
from ..io import convert_up_axis

__all__ = [
    "PointCloudDataset", "InMemoryDataset", "LazyDataset", "SubsetDataset", "iter_batches", "SPLITS", "UP_AXES",
    "to_y_up", "natural_key", "read_lines",
]

SPLITS = ("train", "test")
UP_AXES = ("y", "z")


def to_y_up(points: np.ndarray, up: str) -> np.ndarray:
    """(…, 3) float32 points with up axis ``up`` → y-up float32 (no copy when already y-up).

    ``"z"`` data are turned y-up with :func:`clip2point.io.convert_up_axis` ((x, y, z) → (-y, z, -x)).
    """
    points = np.asarray(points, dtype=np.float32)
    if up == "y":
        return points
    flat = np.asarray(convert_up_axis(points.reshape(-1, 3), up), dtype=np.float32)
    return flat.reshape(points.shape)


def natural_key(path: Path) -> list:
    """Sort key putting ``file2`` before ``file10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def read_lines(path: Path) -> list[str]:
    """The non-blank lines of a text file, stripped."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


class PointCloudDataset(Dataset, abc.ABC):
    """Base class: a labelled list of point clouds, returned y-up.

    Attributes:
        class_names: prompt words in label order, e.g. ``["bathtub", ..., "night_stand", ...]``
            (ModelNet10 as the release prompts it; see :func:`clip2point.datasets.open_dataset`'s ``prompt_style``).
        labels: (S,) int64 labels, indices into ``class_names``.
        names: (S,) shape names, e.g. ``"chair_0890"``.
        up: up axis of the raw files (``"y"`` or ``"z"``; ``"mixed"`` for h5 files that differ).
        split: ``"train"`` or ``"test"``.
        num_points: requested points per item (an item may have fewer, see the reader's docstring).
        root: folder the data were read from.
        layout: ``"h5"``, ``"normal_resampled"``, ``"off"``, ``"scanobjectnn"``, ``"objaverse-lvis"``
            (or the parent's, for a subset).
    """

    def __init__(
        self,
        *,
        class_names: Sequence[str],
        labels: np.ndarray,
        names: Sequence[str],
        up: str,
        split: str,
        num_points: int,
        root: Path,
        layout: str,
    ) -> None:
        self.class_names = list(class_names)
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        self.names = list(names)
        self.up = up
        self.split = split
        self.num_points = num_points
        self.root = Path(root)
        self.layout = layout

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def _index(self, i: int) -> int:
        n = len(self)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} shapes")
        return i % n

    @abc.abstractmethod
    def _points(self, i: int) -> np.ndarray:
        """(N, 3) float32 y-up points of item ``i`` (0 ≤ i < len); may be shared, do not modify."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """Return ``(points, label)``: (N, 3) float32 y-up tensor in raw units (a copy), int label."""
        i = self._index(i)
        return torch.from_numpy(np.array(self._points(i), dtype=np.float32)), int(self.labels[i])

    def shape_name(self, i: int) -> str:
        """The shape's name, e.g. ``"chair_0890"``."""
        return self.names[self._index(i)]

    @property
    def points_array(self) -> np.ndarray | None:
        """(S, N, 3) float32 y-up points of all items for batched evaluation, or None (lazy layouts)."""
        return None

    def subset(self, indices: Sequence[int] | np.ndarray) -> SubsetDataset:
        """A cheap view on the items ``indices`` (in that order), e.g. for ``--limit`` or few-shot.

        Raises:
            DatasetError: an index is out of range.
        """
        return SubsetDataset(self, indices)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.layout}, split={self.split!r}, {len(self)} shapes, "
            f"{len(self.class_names)} classes, up={self.up!r}, root={str(self.root)!r})"
        )


class InMemoryDataset(PointCloudDataset):
    """Points held in one (S, N, 3) float32 y-up array (the h5 layouts)."""

    def __init__(self, points: np.ndarray, **kwargs) -> None:
        super().__init__(**kwargs)
        self._array = np.ascontiguousarray(points, dtype=np.float32)

    def _points(self, i: int) -> np.ndarray:
        return self._array[i]

    @property
    def points_array(self) -> np.ndarray:
        return self._array


class LazyDataset(PointCloudDataset):
    """Items read from one file each on first access (``_read`` gives raw-axis points), cached.

    ``cache_size``: None keeps every item read; n ≥ 1 keeps the n most recently used (thread-safe;
    a hit becomes the newest).
    """

    def __init__(self, paths: Sequence[Path], *, cache: bool = True, cache_size: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.paths = [Path(p) for p in paths]
        self.cache_size = cache_size
        self._cache: OrderedDict[int, np.ndarray] | None = OrderedDict() if cache else None
        self._lock = threading.Lock()

    @abc.abstractmethod
    def _read(self, i: int) -> np.ndarray:
        """(N, 3) float32 points of item ``i`` in the file's own axes."""

    def _points(self, i: int) -> np.ndarray:
        cache = self._cache
        if cache is not None:
            with self._lock:
                if i in cache:
                    cache.move_to_end(i)
                    return cache[i]
        if not self.paths[i].is_file():
            raise DatasetError(f"shape file {self.paths[i]} is missing; re-download or re-extract the dataset")
        points = to_y_up(self._read(i), self.up)
        if cache is not None:
            with self._lock:
                cache[i] = points
                cache.move_to_end(i)
                while self.cache_size is not None and len(cache) > self.cache_size:
                    cache.popitem(last=False)
        return points


class SubsetDataset(PointCloudDataset):
    """A view on some items of another dataset (no data copied; see :meth:`PointCloudDataset.subset`)."""

    def __init__(self, parent: PointCloudDataset, indices: Sequence[int] | np.ndarray) -> None:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(parent)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise DatasetError(f"subset indices must lie in [0, {n}); got min {idx.min()}, max {idx.max()}")
        if isinstance(parent, SubsetDataset):  # flatten views of views
            idx, parent = parent.indices[idx], parent.parent
        super().__init__(
            class_names=parent.class_names,
            labels=parent.labels[idx],
            names=[parent.names[j] for j in idx],
            up=parent.up,
            split=parent.split,
            num_points=parent.num_points,
            root=parent.root,
            layout=parent.layout,
        )
        self.parent = parent
        self.indices = idx

    def _points(self, i: int) -> np.ndarray:
        return self.parent._points(int(self.indices[i]))

    @property
    def points_array(self) -> np.ndarray | None:
        full = self.parent.points_array
        return None if full is None else full[self.indices]


def iter_batches(dataset: PointCloudDataset, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (points (b, N, 3) float32 tensor, labels (b,) int64 tensor) batches in order.

    In-memory layouts are sliced from ``points_array``; lazy layouts stack their items, cut to the
    smallest point count of the batch (their files may hold different numbers of points).
    """
    arr = dataset.points_array
    for start in range(0, len(dataset), batch_size):
        idx = range(start, min(start + batch_size, len(dataset)))
        if arr is not None:
            pts = torch.from_numpy(np.ascontiguousarray(arr[start : idx.stop]))
        else:
            items = [dataset[i][0] for i in idx]
            n = min(len(p) for p in items)  # lazy layouts may differ in point count
            pts = torch.stack([p[:n] for p in items])
        yield pts, torch.as_tensor(dataset.labels[start : idx.stop], dtype=torch.int64)
