"""ScanObjectNN (Uy et al., ICCV 2019): the three variants the literature reports, in the released h5 layout.

Variants (:data:`SCANOBJECTNN_VARIANTS`) and their files, as the authors' ``h5_files.zip`` lays them out
(the official README, github.com/hkust-vgd/scanobjectnn, § "h5 files"):

==========================  ===========  =====================================================
dataset name                paper name   files (``training_*`` = split "train", ``test_*`` = "test")
==========================  ===========  =====================================================
``scanobjectnn-obj-only``   OBJ_ONLY     ``main_split_nobg/{training,test}_objectdataset.h5``
``scanobjectnn-obj-bg``     OBJ_BG       ``main_split/{training,test}_objectdataset.h5``
``scanobjectnn-pb-t50-rs``  PB_T50_RS    ``main_split/{training,test}_objectdataset_augmentedrot_scale75.h5``
==========================  ===========  =====================================================

Each file holds ``data`` (S, 2048, 3) float32 points, ``label`` (S,) integer class indices and ``mask``
(S, 2048) (-1 marks background points; not used for classification). Labels index the 15 categories in
the order of the release's ``training_data/shape_names_ext.txt`` (:data:`clip2point.classes.SCANOBJECTNN`:
bag, bin, box, cabinet, chair, desk, display, door, shelf, table, bed, pillow, sink, sofa, toilet; the
authors confirm the order in their FAQ).

``data_dir`` is the folder holding ``main_split/`` and ``main_split_nobg/`` (the zip's ``h5_files/``), or a
folder holding ``h5_files/`` or ``ScanObjectNN/`` (searched one level deep), or the variant's own folder
(``main_split``/``main_split_nobg``, recognised by its name: OBJ_ONLY and OBJ_BG files share a file name).

Protocol (CLIP2Point's released ``zeroshot.py`` and ``datasets/scanobjectnn.py``): the points are used **as
stored** (the release renders ScanObjectNN with ``rot=False``: no up-axis rotation; ``up`` is therefore
``"y"``, the renderer's up, unless overridden), every shape is centred and scaled into the unit sphere, then
**farthest point sampling** (pointnet2_ops ``furthest_point_sample``) keeps 1,024 of the 2,048 points.
:func:`release_fps` reproduces that kernel's rules on the normalised cloud (start at index 0; points within
√1e-3 of the centroid are never picked; ties to the lowest index); the items keep the file's raw
coordinates at the chosen indices (the renderer normalises again, the same result). The release reads
only OBJ_BG (``main_split/*_objectdataset.h5``); the other two variants use the same protocol here.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from ..classes import SCANOBJECTNN
from ..errors import DatasetFileError, DatasetNotFoundError
from ..io import h5_dataset
from .base import PointCloudDataset, to_y_up

__all__ = [
    "SCANOBJECTNN_VARIANTS", "ScanObjectNNVariant", "ScanObjectNNDataset", "release_fps", "locate_scanobjectnn",
    "open_scanobjectnn", "SCANOBJECTNN_URL",
]

logger = logging.getLogger(__name__)

#: The project page, where the authors share the data on request (there is no public archive URL).
SCANOBJECTNN_URL = "https://hkust-vgd.github.io/scanobjectnn/"
_FILE_PREFIX = {"train": "training", "test": "test"}


class ScanObjectNNVariant:
    """One variant: its paper name, folder and file suffix (``<prefix>_objectdataset<suffix>.h5``)."""

    def __init__(self, paper_name: str, folder: str, suffix: str) -> None:
        self.paper_name, self.folder, self.suffix = paper_name, folder, suffix

    def file_name(self, split: str) -> str:
        """``training_objectdataset.h5`` etc. for ``split`` "train"/"test"."""
        return f"{_FILE_PREFIX[split]}_objectdataset{self.suffix}.h5"

    @property
    def unique_file_name(self) -> bool:
        """True when the file name alone tells the variant (OBJ_ONLY and OBJ_BG share theirs)."""
        return bool(self.suffix)


#: dataset name -> variant.
SCANOBJECTNN_VARIANTS: dict[str, ScanObjectNNVariant] = {
    "scanobjectnn-obj-only": ScanObjectNNVariant("OBJ_ONLY", "main_split_nobg", ""),
    "scanobjectnn-obj-bg": ScanObjectNNVariant("OBJ_BG", "main_split", ""),
    "scanobjectnn-pb-t50-rs": ScanObjectNNVariant("PB_T50_RS", "main_split", "_augmentedrot_scale75"),
}


def release_fps(points: np.ndarray, k: int) -> np.ndarray:
    """Indices of ``k`` points chosen as CLIP2Point's release chooses them (pointnet2_ops FPS).

    The release normalises each cloud (centroid subtracted, divided by the largest norm; its
    ``pc_normalize``) and calls ``pointnet2_utils.furthest_point_sample(points, 1024)``, whose CUDA
    kernel starts at index 0, keeps each point's squared distance to the chosen set (initialised to
    1e10, float32), skips points whose squared norm is ≤ 1e-3 (they are never chosen), and picks the
    largest distance, ties to the lowest index (the kernel's strict ``>``; ties across its threads can
    differ, a measure-zero case on real scans).

    Args:
        points: (N, 3) coordinates (any units; normalised here as the release does).
        k: how many, 1 ≤ k ≤ N.

    Returns:
        (k,) int64 indices in selection order; the first is 0.
    """
    pts = np.asarray(points, dtype=np.float32)[:, :3]
    pts = pts - pts.mean(axis=0, dtype=np.float32)
    scale = np.float32(np.sqrt((pts * pts).sum(axis=1)).max())
    if scale > 0:
        pts = pts / scale
    far = (pts * pts).sum(axis=1) > np.float32(1e-3)
    dist = np.full(len(pts), np.float32(1e10), dtype=np.float32)
    dist[~far] = np.float32(-1.0)  # skipped by the kernel: min(-1, d) keeps them out for good
    xs, ys, zs = (np.ascontiguousarray(pts[:, c]) for c in range(3))
    d, t = np.empty_like(dist), np.empty_like(dist)
    any_far = bool(far.any())
    out = np.zeros(k, dtype=np.int64)
    last = 0
    for j in range(1, k):
        np.subtract(xs, xs[last], out=d)
        np.multiply(d, d, out=d)
        for c in (ys, zs):  # ((dx² + dy²) + dz²) in float32, the kernel's order
            np.subtract(c, c[last], out=t)
            np.multiply(t, t, out=t)
            np.add(d, t, out=d)
        np.minimum(dist, d, out=dist)
        last = int(np.argmax(dist)) if any_far else 0
        out[j] = last
    return out


class ScanObjectNNDataset(PointCloudDataset):
    """The stored (S, N, 3) points of one split; items are :func:`release_fps` subsets of ``num_points``.

    Items are computed on first access and kept (≈ 12 KB each); with ``num_points`` ≥ N every stored point
    is returned, as stored.
    """

    def __init__(self, points: np.ndarray, **kwargs) -> None:
        super().__init__(**kwargs)
        self._array = np.ascontiguousarray(points, dtype=np.float32)
        self._fps: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def _points(self, i: int) -> np.ndarray:
        full = self._array[i]
        if self.num_points >= len(full):
            return full
        with self._lock:
            idx = self._fps.get(i)
        if idx is None:
            idx = release_fps(full, self.num_points)
            with self._lock:
                self._fps[i] = idx
        return full[idx]


def _variant_dir(candidate: Path, variant: ScanObjectNNVariant, split: str) -> Path | None:
    """The folder holding the variant's ``split`` file at or below ``candidate``, if any."""
    fname = variant.file_name(split)
    if (candidate / variant.folder / fname).is_file():
        return candidate / variant.folder
    if candidate.name.lower() == variant.folder and (candidate / fname).is_file():
        return candidate
    if variant.unique_file_name and (candidate / fname).is_file():
        return candidate
    return None


def _candidates(root: Path) -> list[Path]:
    """``root``, ``root/h5_files``, then each sub-folder (ScanObjectNN-like names first) and its ``h5_files``."""
    subdirs = sorted(
        (d for d in root.iterdir() if d.is_dir() and not d.name.startswith((".", "__"))),
        key=lambda d: ("scanobject" not in d.name.lower() and d.name.lower() != "h5_files", d.name.lower()),
    )
    out = [root]
    for d in [root / "h5_files", *subdirs]:
        out += [d, d / "h5_files"]
    return [d for i, d in enumerate(out) if d.is_dir() and d not in out[:i]]


def locate_scanobjectnn(name: str, root: Path, split: str) -> Path | None:
    """The file of variant ``name`` and ``split`` under ``root`` (see the module docstring), or None."""
    variant = SCANOBJECTNN_VARIANTS[name]
    for candidate in _candidates(root):
        folder = _variant_dir(candidate, variant, split)
        if folder is not None:
            return folder / variant.file_name(split)
    return None


def _not_found(name: str, root: Path, split: str) -> DatasetNotFoundError:
    variant = SCANOBJECTNN_VARIANTS[name]
    want = f"{variant.folder}/{variant.file_name(split)}"
    seen = sorted({str(p.relative_to(root)) for c in _candidates(root) for p in c.glob("*objectdataset*.h5")})[:6]
    found = f" Found ScanObjectNN files: {', '.join(seen)}." if seen else ""
    if seen and not variant.unique_file_name:
        found += (f" {variant.paper_name} and {'OBJ_BG' if variant.paper_name == 'OBJ_ONLY' else 'OBJ_ONLY'} "
                  f"files share their names, so they are told apart by their folder: keep the release's folder "
                  f"names main_split/ and main_split_nobg/.")
    return DatasetNotFoundError(
        f"no {name} ({variant.paper_name}) {split!r} split found in {root} (looked for {want} in it, in h5_files/ "
        f"and in its sub-folders).{found} ScanObjectNN is shared by its authors on request ({SCANOBJECTNN_URL}); "
        f"unzip h5_files.zip and pass --data-dir .../h5_files (`clip2point data download scanobjectnn` explains)."
    )


def _read_h5(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(data (S, N, 3) float32, labels (S,) int64) of a ScanObjectNN file, checked (see :func:`open_scanobjectnn`)."""
    import h5py

    try:
        with h5py.File(path, "r") as h:
            data_ds = h5_dataset(h, "data", path, DatasetFileError)
            label_ds = h5_dataset(h, "label", path, DatasetFileError)
            if data_ds.ndim != 3 or data_ds.shape[2] != 3 or data_ds.shape[1] < 1:
                raise DatasetFileError(f"{path}: dataset 'data' has shape {data_ds.shape}, expected (S, 2048, 3); "
                                       "re-download h5_files.zip")
            count = data_ds.shape[0]
            if label_ds.ndim > 2 or label_ds.size != count:
                raise DatasetFileError(f"{path}: dataset 'label' has shape {label_ds.shape}, expected ({count},) "
                                       f"(one label per shape); re-download h5_files.zip")
            if h.get("mask", getlink=True) is not None:
                mask = h5_dataset(h, "mask", path, DatasetFileError)
                if tuple(mask.shape) != tuple(data_ds.shape[:2]):
                    raise DatasetFileError(f"{path}: dataset 'mask' has shape {mask.shape}, expected "
                                           f"{tuple(data_ds.shape[:2])}; re-download h5_files.zip")
            data = np.asarray(data_ds[()], dtype=np.float32)
            labels = np.asarray(label_ds[()]).reshape(-1)
    except MemoryError as err:
        raise DatasetFileError(f"{path} is too large to read into memory ({err})") from err
    except OSError as err:
        raise DatasetFileError(f"cannot read {path} as HDF5 ({err}); re-download h5_files.zip") from err
    if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
        raise DatasetFileError(f"{path}: dataset 'label' holds non-integer values; re-download h5_files.zip")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetFileError(f"{path}: labels {labels.min()}..{labels.max()} lie outside 0..{num_classes - 1} "
                               f"(ScanObjectNN has {num_classes} classes); this is not a ScanObjectNN file")
    if not np.isfinite(data).all():
        raise DatasetFileError(f"{path}: dataset 'data' contains NaN/inf coordinates; re-download h5_files.zip")
    return data, labels


def open_scanobjectnn(name: str, data_dir: Path, split: str, num_points: int, up: str | None) -> ScanObjectNNDataset:
    """Open variant ``name`` (a key of :data:`SCANOBJECTNN_VARIANTS`) found in ``data_dir``.

    Returns:
        A :class:`ScanObjectNNDataset`: ``class_names`` = :data:`clip2point.classes.SCANOBJECTNN`, items
        (min(N, ``num_points``), 3) float32 chosen by :func:`release_fps`, axes as stored (``up`` "y") unless
        ``up="z"`` is given.

    Raises:
        DatasetNotFoundError: no file of that variant and split under ``data_dir``.
        DatasetFileError: a missing ``data``/``label`` dataset, wrong shapes (``data`` not (S, N, 3), ``label``
            not one per shape, ``mask`` not (S, N)), labels outside 0..14, NaN/inf, an unsafe or unreadable file.
    """
    path = locate_scanobjectnn(name, data_dir, split)
    if path is None:
        raise _not_found(name, data_dir, split)
    data, labels = _read_h5(path, len(SCANOBJECTNN))
    up = up or "y"
    return ScanObjectNNDataset(
        to_y_up(data, up),
        class_names=list(SCANOBJECTNN),
        labels=labels,
        names=[f"{path.stem}_{k:05d}" for k in range(len(labels))],
        up=up,
        split=split,
        num_points=num_points,
        root=path.parent.parent if path.parent.name.lower().startswith("main_split") else path.parent,
        layout="scanobjectnn",
    )
