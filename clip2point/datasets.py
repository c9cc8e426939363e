"""ModelNet datasets for evaluation and few-shot learning.

:func:`open_dataset` finds a ModelNet10/ModelNet40 split in a folder and returns a
:class:`PointCloudDataset` whose items are ``(points, label)``: ``points`` a (N, 3) float32
tensor, **always y-up** (the renderer's world up, as in CLIP2Point's released code), in the raw
units of the files (not normalised: the renderer centres and scales each cloud itself), and
``label`` an int index into ``dataset.class_names`` (the prompt words of the classes: by default
as CLIP2Point's released code prompts the dataset, ModelNet10 by its folder names such as
``"night_stand"``, ModelNet40 as words such as ``"night stand"``; ``prompt_style="spaced"``
writes words for both, see :func:`clip2point.classes.class_names`).

Layouts recognised, tried in this order in ``data_dir`` and then in each of its immediate
sub-folders (those whose name contains the dataset name first):

1. **HDF5 files** ``*_<split>.h5`` / ``*<split><k>.h5`` (several files per split are concatenated
   in natural order): our shared ``modelnet10_pcd1024_{train,test}.h5`` and
   ``modelnet40nr_*_2048_{train,test}.h5``, and PointNet's ``modelnet40_ply_hdf5_2048``
   (``ply_data_train0.h5`` ...). Keys ``data`` (S, N, 3) and ``label`` (S, 1); optional ``name``
   (S,) bytes, else PointNet's ``ply_data_<split>_<k>_id2file.json``. Class names: the file
   attribute ``class_names`` (JSON list), else ``shape_names.txt`` /
   ``<name>_shape_names.txt`` / ``modelnet40_shape_names.txt`` beside the files. The folder
   matches ``modelnet10``/``modelnet40`` when it lists exactly 10/40 classes.
2. **modelnet40_normal_resampled** (PointNet++): ``<name>_{train,test}.txt`` listing shape ids,
   ``<name>_shape_names.txt`` (else the preset's class order), ``<class>/<id>.txt`` with comma-separated
   ``x,y,z,nx,ny,nz`` rows (10,000 per file). Read lazily per item.
3. **Official OFF folders** (``ModelNet10/<class>/{train,test}/<class>_0001.off``): each item is
   :func:`clip2point.io.load_point_cloud` of the mesh: area-weighted surface samples
   (``io.DEFAULT_MESH_POINTS``) thinned to ``num_points`` by farthest point sampling (io's
   default, the same as for a single mesh file, and an even coverage like the FPS/Poisson-disk
   h5 data), seeded by the item index so items are deterministic, cached in memory after the
   first access. The class folders must be a subset of the preset for the name (and a folder
   named ``ModelNet10``/``ModelNet40`` must match it); labels index the full preset.

Number of points: files holding N ≥ ``num_points`` points per shape (h5 arrays, the 10k-row
``.txt`` files) give their **first** ``num_points`` points, as the common loaders (PointNet,
PointNet++, CLIP2Point) do; this is an FPS-ordered subset for the PointNet++ files and an
arbitrary subset otherwise. Shapes with fewer points give all of them.

Up axis of the raw files (the ``up=`` argument overrides it for the whole dataset):

* h5: the file attribute ``up`` if present; else by file name (:data:`H5_UP_PATTERNS`):
  ``*pcd*`` (samples of the raw, z-up OFF meshes) → ``"z"``; ``modelnet40nr*`` and
  ``ply_data_*`` → ``"y"``; any other name → ``"y"`` with a warning (PointNet convention).
* normal_resampled: ``"y"``. OFF meshes: ``"z"``.

``"z"`` data are turned y-up with :func:`clip2point.io.convert_up_axis` ((x, y, z) → (-y, z, -x)).
"""
from __future__ import annotations

import abc
import fnmatch
import json
import logging
import re
import shutil
import tempfile
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .checkpoints import file_digest
from .classes import MODELNET10, MODELNET40, PROMPT_STYLES, class_names as _words
from .errors import DatasetError
from .io import convert_up_axis, h5_dataset, load_point_cloud

__all__ = [
    "PointCloudDataset",
    "InMemoryDataset",
    "NormalResampledDataset",
    "OffFolderDataset",
    "SubsetDataset",
    "iter_batches",
    "DATASET_NAMES",
    "DATASET_URLS",
    "H5_UP_PATTERNS",
    "h5_up_axis",
    "SPLITS",
    "open_dataset",
    "download_dataset",
]

logger = logging.getLogger(__name__)

#: Official archives (Princeton); the same URLs torch_geometric, Keras' PointNet example and
#: pointnet.pytorch use. No checksum is published for them (see :func:`download_dataset`).
DATASET_URLS: dict[str, str] = {
    "modelnet10": "http://3dvision.princeton.edu/projects/2014/3DShapeNets/ModelNet10.zip",
    "modelnet40": "http://modelnet.cs.princeton.edu/ModelNet40.zip",
}
_FOLDERS = {"modelnet10": "ModelNet10", "modelnet40": "ModelNet40"}
_PRESETS = {"modelnet10": MODELNET10, "modelnet40": MODELNET40}
#: The datasets :func:`open_dataset` and :func:`download_dataset` know.
DATASET_NAMES: tuple[str, ...] = tuple(_PRESETS)
#: (file-name glob, up axis) rules for h5 files without an ``up`` attribute; first match wins.
H5_UP_PATTERNS: tuple[tuple[str, str], ...] = (("*pcd*", "z"), ("modelnet40nr*", "y"), ("ply_data_*", "y"))
SPLITS = ("train", "test")
_UP_AXES = ("y", "z")
_DOWNLOAD_HINT = "clip2point data download {name} -o DIR"


def _to_y_up(points: np.ndarray, up: str) -> np.ndarray:
    """(…, 3) float32 points with up axis ``up`` → y-up float32 (no copy when already y-up)."""
    points = np.asarray(points, dtype=np.float32)
    if up == "y":
        return points
    flat = np.asarray(convert_up_axis(points.reshape(-1, 3), up), dtype=np.float32)
    return flat.reshape(points.shape)


class PointCloudDataset(Dataset, abc.ABC):
    """Base class: a labelled list of point clouds, returned y-up.

    Attributes:
        class_names: prompt words in label order, e.g. ``["bathtub", ..., "night_stand", ...]``
            (ModelNet10 as the release prompts it; see :func:`open_dataset`'s ``prompt_style``).
        labels: (S,) int64 labels, indices into ``class_names``.
        names: (S,) shape names, e.g. ``"chair_0890"``.
        up: up axis of the raw files (``"y"`` or ``"z"``; ``"mixed"`` for h5 files that differ).
        split: ``"train"`` or ``"test"``.
        num_points: requested points per item (an item may have fewer, see module docstring).
        root: folder the data were read from.
        layout: ``"h5"``, ``"normal_resampled"``, ``"off"`` (or the parent's, for a subset).
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


class _LazyDataset(PointCloudDataset):
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
        points = _to_y_up(self._read(i), self.up)
        if cache is not None:
            with self._lock:
                cache[i] = points
                cache.move_to_end(i)
                while self.cache_size is not None and len(cache) > self.cache_size:
                    cache.popitem(last=False)
        return points


class NormalResampledDataset(_LazyDataset):
    """PointNet++'s ``modelnet40_normal_resampled``: first ``num_points`` rows of each ``.txt``."""

    def _read(self, i: int) -> np.ndarray:
        try:
            rows = np.loadtxt(self.paths[i], delimiter=",", usecols=(0, 1, 2), max_rows=self.num_points, ndmin=2)
        except ValueError as err:
            raise DatasetError(f"cannot read {self.paths[i]} as comma-separated x,y,z rows ({err})") from err
        return rows.astype(np.float32)


class OffFolderDataset(_LazyDataset):
    """Official OFF meshes: surface samples thinned to ``num_points`` by ``sampling``, seeded by item index."""

    sampling = "fps"  # "random" keeps i.i.d. area-weighted samples (see clip2point.io.subsample)

    def _read(self, i: int) -> np.ndarray:
        # up="y" reads the file's axes unchanged; _points then applies this dataset's up axis.
        cloud = load_point_cloud(self.paths[i], num_points=self.num_points, up="y", seed=i, sampling=self.sampling)
        return np.asarray(cloud.points, dtype=np.float32)


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


# ----------------------------------------------------------------------------------------------
# layout detection


def _canonical_name(name: str) -> str:
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    if key not in _PRESETS:
        raise DatasetError(f"unknown dataset {name!r}; choose modelnet10 or modelnet40")
    return key


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def h5_up_axis(path: Path, attrs) -> str:
    """Up axis of an h5 file: attribute ``up``, else :data:`H5_UP_PATTERNS`, else ``"y"`` (warned)."""
    if "up" in attrs:
        up = attrs["up"]
        up = (up.decode() if isinstance(up, bytes) else str(up)).strip().lower()
        if up not in _UP_AXES:
            raise DatasetError(f"{path}: attribute up={up!r} is not 'y' or 'z'; fix it or pass up=")
        return up
    for pattern, up in H5_UP_PATTERNS:
        if fnmatch.fnmatch(path.name.lower(), pattern):
            return up
    logger.warning("%s: unknown up axis, assuming y-up (PointNet convention); pass up='z' if wrong", path)
    return "y"


_H5_SPLIT = re.compile(r"(?:^|_)(train|test)\d*$")


def _h5_files(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for f in sorted(folder.glob("*.h5"), key=_natural_key):
        m = _H5_SPLIT.search(f.stem.lower())
        if m:
            found.setdefault(m.group(1), []).append(f)
    return found


def _h5_class_names(folder: Path, first: Path, name: str) -> list[str] | None:
    import h5py

    try:
        with h5py.File(first, "r") as h:
            if "class_names" in h.attrs:
                raw = h.attrs["class_names"]
                names = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
                if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
                    raise DatasetError(
                        f"{first}: attribute class_names is not a JSON list of names; fix or re-download it"
                    )
                return names
    except OSError as err:
        raise DatasetError(f"cannot read {first} ({err}); re-download it or remove it") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{first}: attribute class_names is not valid JSON ({err}); fix or re-download it") from err
    for fname in ("shape_names.txt", f"{name}_shape_names.txt", "modelnet40_shape_names.txt"):
        if (folder / fname).is_file():
            return _read_lines(folder / fname)
    return None


def _h5_names(path: Path, h, count: int) -> list[str]:
    if h.get("name", getlink=True) is not None:  # never resolves a link just to test for the name
        names = h5_dataset(h, "name", path, DatasetError, kinds="SUO")
        if names.ndim != 1 or len(names) != count:
            raise DatasetError(f"{path}: dataset 'name' has shape {names.shape}, expected ({count},); re-download it")
        return [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in names[:]]
    m = re.match(r"(.*?)(\d+)$", path.stem)  # PointNet: ply_data_test0.h5 -> ply_data_test_0_id2file.json
    side = path.with_name(f"{m.group(1)}_{m.group(2)}_id2file.json") if m else None
    if side is not None and side.is_file():
        return [Path(p).stem for p in json.loads(side.read_text())]
    return [f"{path.stem}_{k:05d}" for k in range(count)]


def _open_h5(folder: Path, files: list[Path], identifiers: list[str], split: str, num_points: int, up: str | None):
    import h5py

    points, labels, names, ups = [], [], [], []
    for f in files:
        try:
            with h5py.File(f, "r") as h:
                data_ds = h5_dataset(h, "data", f, DatasetError)
                label_ds = h5_dataset(h, "label", f, DatasetError)
                if data_ds.ndim != 3 or data_ds.shape[2] < 3:
                    raise DatasetError(
                        f"{f}: dataset 'data' has shape {data_ds.shape}, expected (S, N, 3); re-download it"
                    )
                if label_ds.size != data_ds.shape[0]:
                    raise DatasetError(f"{f}: {label_ds.size} labels for {data_ds.shape[0]} shapes; re-download it")
                data = np.asarray(data_ds[:, :num_points, :3], dtype=np.float32)
                if not np.isfinite(data).all():
                    raise DatasetError(f"{f}: dataset 'data' contains NaN/inf coordinates; re-download it")
                file_up = up or h5_up_axis(f, h.attrs)
                labels.append(np.asarray(label_ds[()], dtype=np.int64).reshape(-1))
                names += _h5_names(f, h, len(data))
        except MemoryError as err:
            raise DatasetError(
                f"{f} is too large to read into memory ({err}); use fewer points or a smaller split"
            ) from err
        except (OSError, KeyError) as err:
            raise DatasetError(
                f"cannot read {f} ({err}); it needs datasets 'data' and 'label'; re-download it"
            ) from err
        points.append(_to_y_up(data, file_up))
        ups.append(file_up)
    points_all, labels_all = np.concatenate(points), np.concatenate(labels)
    if not len(points_all) == len(labels_all) == len(names):
        raise DatasetError(
            f"{folder}: {len(points_all)} shapes but {len(labels_all)} labels and {len(names)} names; re-download it"
        )
    if labels_all.size and (labels_all.min() < 0 or labels_all.max() >= len(identifiers)):
        raise DatasetError(
            f"{folder}: labels outside 0..{len(identifiers) - 1}; the class-name list does not fit the files"
        )
    if points[0].shape[1] < num_points:
        logger.info("%s: %d points per shape (< %d requested); using all", folder, points[0].shape[1], num_points)
    return InMemoryDataset(
        points_all,
        class_names=_words(identifiers),
        labels=labels_all,
        names=names,
        up=ups[0] if len(set(ups)) == 1 else "mixed",
        split=split,
        num_points=num_points,
        root=folder,
        layout="h5",
    )


def _try_h5(folder: Path, name: str, split: str, num_points: int, up: str | None, notes: list[str]):
    files = _h5_files(folder)
    if not files:
        return None
    first = next(iter(files.values()))[0]
    identifiers = _h5_class_names(folder, first, name)
    if identifiers is None:
        notes.append(f"{folder}: h5 files but no class names (attribute class_names or shape_names.txt)")
        return None
    if len(identifiers) != len(_PRESETS[name]):
        notes.append(f"{folder}: h5 files with {len(identifiers)} classes, not {name}'s {len(_PRESETS[name])}")
        return None
    if split not in files:
        raise DatasetError(f"{folder} has no {split!r} split (found h5 files for: {', '.join(sorted(files))})")
    return _open_h5(folder, files[split], identifiers, split, num_points, up)


def _try_normal_resampled(folder: Path, name: str, split: str, num_points: int, up: str | None, notes: list[str]):
    lists = {s: folder / f"{name}_{s}.txt" for s in SPLITS}
    if not any(p.is_file() for p in lists.values()):
        return None
    if not lists[split].is_file():
        raise DatasetError(f"{folder} has no {split!r} split list {lists[split].name}")
    ids = _read_lines(lists[split])
    shape_names = folder / f"{name}_shape_names.txt"
    if shape_names.is_file():
        identifiers = _read_lines(shape_names)
    else:  # the preset's order is the official (alphabetical) one
        identifiers = [w.replace(" ", "_") for w in _PRESETS[name]]
    index = {c: k for k, c in enumerate(identifiers)}
    classes = [i.rsplit("_", 1)[0] for i in ids]  # class of "night_stand_0001" is "night_stand"
    unknown = sorted(set(classes) - set(index))
    if unknown:
        raise DatasetError(f"{lists[split]} lists shapes of unknown classes {unknown}; check {shape_names.name}")
    return NormalResampledDataset(
        [folder / c / f"{i}.txt" for c, i in zip(classes, ids)],
        cache=False,
        class_names=_words(identifiers),
        labels=np.array([index[c] for c in classes], dtype=np.int64),
        names=ids,
        up=up or "y",
        split=split,
        num_points=num_points,
        root=folder,
        layout="normal_resampled",
    )


def _try_off(folder: Path, name: str, split: str, num_points: int, up: str | None, notes: list[str]):
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and any((d / s).is_dir() for s in SPLITS))
    if not class_dirs or not any(next((d / s).glob("*.off"), None) for d in class_dirs for s in SPLITS):
        return None
    other = {v.lower(): k for k, v in _FOLDERS.items()}.get(folder.name.lower())
    if other is not None and other != name:
        notes.append(f"{folder}: an OFF folder of {other}, not {name}")
        return None
    preset = [w.replace(" ", "_") for w in _PRESETS[name]]
    extra = sorted({d.name for d in class_dirs} - set(preset))
    if extra:
        notes.append(f"{folder}: OFF class folders not in {name}: {', '.join(extra[:5])}")
        return None
    paths, labels = [], []
    for d in class_dirs:
        files = sorted((d / split).glob("*.off"), key=_natural_key)
        paths += files
        labels += [preset.index(d.name)] * len(files)
    if not paths:
        raise DatasetError(f"{folder} has no {split!r} split (no <class>/{split}/*.off files)")
    return OffFolderDataset(
        paths,
        class_names=_words(preset),
        labels=np.array(labels, dtype=np.int64),
        names=[p.stem for p in paths],
        up=up or "z",
        split=split,
        num_points=num_points,
        root=folder,
        layout="off",
    )


_DETECTORS = (_try_h5, _try_normal_resampled, _try_off)


def open_dataset(
    name: str, data_dir: str | Path, split: str = "test", num_points: int = 1024, up: str | None = None,
    cache_size: int | None = None, prompt_style: str = "release",
) -> PointCloudDataset:
    """Open a ModelNet split found in ``data_dir`` (see the module docstring for layouts and rules).

    Args:
        name: ``"modelnet10"`` or ``"modelnet40"`` (case, ``-`` and ``_`` ignored).
        data_dir: the dataset folder, or a folder holding it (searched one level deep).
        split: ``"train"`` or ``"test"``.
        num_points: points per item (first-N rule for files holding more; all if fewer).
        up: up axis of the raw files, ``"y"`` or ``"z"``; None = decide per layout/file.
        cache_size: items kept in memory by the layouts read one file per shape (OFF,
            normal_resampled): None = every item read; n ≥ 1 = the n most recently used.
            The h5 layouts hold the whole split in memory and ignore it.
        prompt_style: how ``class_names`` are written (they are the classes' prompt words):
            "release" (as CLIP2Point's released zero-shot code prompts the dataset: ModelNet10's
            ``night_stand`` with its underscore, ModelNet40's ``night stand`` as words) or
            "spaced" (words for every dataset). See :data:`clip2point.classes.PROMPT_STYLES`.

    Returns:
        A :class:`PointCloudDataset` whose items are (N, 3) float32 y-up points and int labels.

    Raises:
        DatasetError: unknown name, split, up axis or prompt style, ``num_points`` or ``cache_size`` < 1, a
            missing ``data_dir``, no recognised layout, a missing split, or an unreadable file.
    """
    key = _canonical_name(name)
    if prompt_style not in PROMPT_STYLES:
        raise DatasetError(f"unknown prompt style {prompt_style!r}; choose one of {', '.join(PROMPT_STYLES)}")
    hint = _DOWNLOAD_HINT.format(name=key)
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose 'train' or 'test'")
    if up is not None and up not in _UP_AXES:
        raise DatasetError(f"unknown up axis {up!r}; choose 'y' or 'z' (or leave it out to auto-detect)")
    if int(num_points) < 1:
        raise DatasetError(f"num_points must be at least 1, got {num_points}")
    if cache_size is not None and int(cache_size) < 1:
        raise DatasetError(f"cache_size must be None (keep every shape read) or at least 1, got {cache_size}")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DatasetError(
            f"data folder {root} does not exist; download the data with `{hint}` and pass --data-dir DIR"
        )
    subdirs = sorted(
        (d for d in root.iterdir() if d.is_dir() and not d.name.startswith((".", "__"))),
        key=lambda d: (key not in d.name.lower().replace("_", "").replace("-", ""), d.name.lower()),
    )
    notes: list[str] = []
    for folder in [root, *subdirs]:
        for detect in _DETECTORS:
            ds = detect(folder, key, split, int(num_points), up, notes)
            if ds is not None:
                if isinstance(ds, _LazyDataset):
                    ds.cache_size = None if cache_size is None else int(cache_size)
                ds.class_names = _words(ds.class_names, key, prompt_style)
                logger.info("opened %r", ds)
                return ds
    looked = (
        f"h5 files '*_{split}.h5' or 'ply_data_{split}0.h5' with class names; {key}_{split}.txt + "
        f"<class>/<id>.txt (modelnet40_normal_resampled); <class>/{split}/*.off ({_FOLDERS[key]})"
    )
    found = f" Found: {'; '.join(notes)}." if notes else ""
    raise DatasetError(
        f"no {key} dataset found in {root} or its sub-folders (looked for {looked}).{found} "
        f"Download it with `{hint}` and pass --data-dir DIR."
    )


# ----------------------------------------------------------------------------------------------
# download


def _safe_extract(archive: Path, dest: Path) -> None:
    """Unzip ``archive`` into ``dest``, skipping macOS metadata and refusing paths outside ``dest``."""
    dest = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            parts = Path(member.filename).parts
            if not parts or parts[0] == "__MACOSX" or parts[-1] == ".DS_Store":
                continue
            target = (dest / member.filename).resolve()
            if dest != target and dest not in target.parents:
                raise DatasetError(f"{archive} holds an unsafe path {member.filename!r}; not extracting it")
            zf.extract(member, dest)


def download_dataset(name: str, dest_dir: str | Path, progress: bool = True) -> Path:
    """Download and unzip the official ModelNet10/ModelNet40 archive into ``dest_dir``.

    Nothing is fetched when ``dest_dir/ModelNet10`` (or ``ModelNet40``) already exists. The
    archive (≈ 0.5 GB / 2 GB) is fetched with :func:`pooch.retrieve`; Princeton publishes no
    checksum for it, so ``known_hash=None`` and the computed sha256 is logged. It is unzipped
    into a temporary folder first (so an interrupted run leaves no half dataset), then moved in
    place, and the archive is deleted.

    Returns:
        The dataset folder, e.g. ``dest_dir / "ModelNet10"``; pass it (or ``dest_dir``) to
        :func:`open_dataset`.

    Raises:
        DatasetError: unknown name, the download failed (e.g. no internet), or a corrupt archive.
    """
    key = _canonical_name(name)
    folder_name, url = _FOLDERS[key], DATASET_URLS[key]
    dest = Path(dest_dir).expanduser()
    target = dest / folder_name
    if target.is_dir() and any(target.iterdir()):
        logger.info("%s already exists; not downloading", target)
        return target
    dest.mkdir(parents=True, exist_ok=True)
    import pooch  # lazy: only needed for downloads

    try:
        fetched = pooch.retrieve(url, known_hash=None, fname=f"{folder_name}.zip", path=dest, progressbar=progress)
        archive = Path(fetched)
    except Exception as err:  # requests/urllib errors, OSError, ...: all mean "could not download"
        raise DatasetError(
            f"could not download {folder_name} from {url} ({type(err).__name__}: {err}). On a machine without "
            f"internet, download the archive elsewhere, unzip it into {dest}, and pass --data-dir {dest}."
        ) from err
    logger.info("downloaded %s (sha256 %s)", archive, file_digest(archive))
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        try:
            _safe_extract(archive, tmp)
        except zipfile.BadZipFile as err:
            archive.unlink(missing_ok=True)
            raise DatasetError(
                f"{archive} is not a valid zip archive ({err}); it was deleted, run the download again"
            ) from err
        extracted = tmp / folder_name
        if not extracted.is_dir():  # tolerate an archive whose single top folder is named differently
            tops = [p for p in tmp.iterdir() if p.is_dir()]
            extracted = tops[0] if len(tops) == 1 else tmp
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(extracted), str(target))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    archive.unlink(missing_ok=True)
    logger.info("unzipped %s into %s", folder_name, target)
    return target
