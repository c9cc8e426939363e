"""ModelNet10/ModelNet40 layouts: how :func:`clip2point.datasets.open_dataset` finds and reads them.

:func:`clip2point.datasets.open_dataset` finds a ModelNet10/ModelNet40 split in a folder and returns a
:class:`~clip2point.datasets.base.PointCloudDataset` whose items are ``(points, label)``: ``points`` a (N, 3) float32
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

import fnmatch
import json
import logging
import re
from pathlib import Path

import numpy as np

from ..classes import MODELNET10, MODELNET40, class_names as _words
from ..errors import DatasetError
from ..io import h5_dataset, load_point_cloud
from .base import SPLITS, UP_AXES, InMemoryDataset, LazyDataset, natural_key as _natural_key, read_lines as _read_lines
from .base import to_y_up as _to_y_up

__all__ = [
    "NormalResampledDataset", "OffFolderDataset", "H5_UP_PATTERNS", "h5_up_axis", "MODELNET_FOLDERS",
    "MODELNET_PRESETS", "MODELNET_DETECTORS", "modelnet_looked_for",
]

logger = logging.getLogger(__name__)

#: Folder name of each official archive.
MODELNET_FOLDERS = {"modelnet10": "ModelNet10", "modelnet40": "ModelNet40"}
#: Class identifiers (prompt words) of each dataset, in label order.
MODELNET_PRESETS = {"modelnet10": MODELNET10, "modelnet40": MODELNET40}
_FOLDERS = MODELNET_FOLDERS
_PRESETS = MODELNET_PRESETS
#: (file-name glob, up axis) rules for h5 files without an ``up`` attribute; first match wins.
H5_UP_PATTERNS: tuple[tuple[str, str], ...] = (("*pcd*", "z"), ("modelnet40nr*", "y"), ("ply_data_*", "y"))
_UP_AXES = UP_AXES


class NormalResampledDataset(LazyDataset):
    """PointNet++'s ``modelnet40_normal_resampled``: first ``num_points`` rows of each ``.txt``."""

    def _read(self, i: int) -> np.ndarray:
        try:
            rows = np.loadtxt(self.paths[i], delimiter=",", usecols=(0, 1, 2), max_rows=self.num_points, ndmin=2)
        except ValueError as err:
            raise DatasetError(f"cannot read {self.paths[i]} as comma-separated x,y,z rows ({err})") from err
        return rows.astype(np.float32)


class OffFolderDataset(LazyDataset):
    """Official OFF meshes: surface samples thinned to ``num_points`` by ``sampling``, seeded by item index."""

    sampling = "fps"  # "random" keeps i.i.d. area-weighted samples (see clip2point.io.subsample)

    def _read(self, i: int) -> np.ndarray:
        # up="y" reads the file's axes unchanged; _points then applies this dataset's up axis.
        cloud = load_point_cloud(self.paths[i], num_points=self.num_points, up="y", seed=i, sampling=self.sampling)
        return np.asarray(cloud.points, dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# layout detection


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


MODELNET_DETECTORS = (_try_h5, _try_normal_resampled, _try_off)


def modelnet_looked_for(key: str, split: str) -> str:
    """What :data:`MODELNET_DETECTORS` look for, for a "not found" message."""
    return (
        f"h5 files '*_{split}.h5' or 'ply_data_{split}0.h5' with class names; {key}_{split}.txt + "
        f"<class>/<id>.txt (modelnet40_normal_resampled); <class>/{split}/*.off ({_FOLDERS[key]})"
    )
