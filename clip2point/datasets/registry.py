"""Which datasets exist and how to open one by name: :func:`open_dataset`, :func:`find_datasets`, :data:`DATASET_NAMES`."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ..classes import PROMPT_STYLES, class_names as _words
from ..errors import DatasetError, DatasetNotFoundError
from .base import SPLITS, UP_AXES, LazyDataset, PointCloudDataset
from .modelnet import MODELNET_DETECTORS, MODELNET_PRESETS, modelnet_looked_for
from .objaverse import OBJAVERSE_CACHE_ITEMS, open_objaverse_lvis
from .scanobjectnn import SCANOBJECTNN_VARIANTS, open_scanobjectnn

__all__ = ["DATASET_NAMES", "canonical_name", "open_dataset", "find_datasets", "download_hint"]

logger = logging.getLogger(__name__)

#: The datasets :func:`open_dataset` knows: ModelNet10/40 (:mod:`.modelnet`), ScanObjectNN's three variants
#: (:mod:`.scanobjectnn`) and Objaverse-LVIS (:mod:`.objaverse`).
DATASET_NAMES: tuple[str, ...] = (*MODELNET_PRESETS, *SCANOBJECTNN_VARIANTS, "objaverse-lvis")
_UP_AXES = UP_AXES
_KEYS = {n.replace("-", ""): n for n in DATASET_NAMES}


def canonical_name(name: str) -> str:
    """The dataset name in :data:`DATASET_NAMES` that ``name`` spells (case, ``-`` and ``_`` ignored).

    Raises:
        DatasetError: an unknown name (``"scanobjectnn"`` alone: the message names the three variants).
    """
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    if key in _KEYS:
        return _KEYS[key]
    if key == "scanobjectnn":
        raise DatasetError("say which ScanObjectNN variant: scanobjectnn-obj-only (OBJ_ONLY), scanobjectnn-obj-bg "
                           "(OBJ_BG, the one CLIP2Point's release evaluates) or scanobjectnn-pb-t50-rs (PB_T50_RS)")
    raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")


def download_hint(name: str) -> str:
    """The command that downloads ``name`` (or explains where to get it)."""
    return f"clip2point data download {'scanobjectnn' if name.startswith('scanobjectnn') else name} -o DIR"


def _check_arguments(split: str, up: str | None, num_points: int, cache_size: int | None, prompt_style: str) -> None:
    if prompt_style not in PROMPT_STYLES:
        raise DatasetError(f"unknown prompt style {prompt_style!r}; choose one of {', '.join(PROMPT_STYLES)}")
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose 'train' or 'test'")
    if up is not None and up not in _UP_AXES:
        raise DatasetError(f"unknown up axis {up!r}; choose 'y' or 'z' (or leave it out to auto-detect)")
    if int(num_points) < 1:
        raise DatasetError(f"num_points must be at least 1, got {num_points}")
    if cache_size is not None and int(cache_size) < 1:
        raise DatasetError(f"cache_size must be None (keep every shape read) or at least 1, got {cache_size}")


def _open_modelnet(key: str, root: Path, split: str, num_points: int, up: str | None) -> PointCloudDataset:
    subdirs = sorted(
        (d for d in root.iterdir() if d.is_dir() and not d.name.startswith((".", "__"))),
        key=lambda d: (key not in d.name.lower().replace("_", "").replace("-", ""), d.name.lower()),
    )
    notes: list[str] = []
    for folder in [root, *subdirs]:
        for detect in MODELNET_DETECTORS:
            ds = detect(folder, key, split, num_points, up, notes)
            if ds is not None:
                return ds
    looked = modelnet_looked_for(key, split)
    found = f" Found: {'; '.join(notes)}." if notes else ""
    raise DatasetNotFoundError(
        f"no {key} dataset found in {root} or its sub-folders (looked for {looked}).{found} "
        f"Download it with `{download_hint(key)}` and pass --data-dir DIR."
    )


def open_dataset(
    name: str, data_dir: str | os.PathLike, split: str = "test", num_points: int = 1024, up: str | None = None,
    cache_size: int | None = None, prompt_style: str = "release",
) -> PointCloudDataset:
    """Open a split of a named dataset found in ``data_dir``.

    Layouts and rules: :mod:`clip2point.datasets.modelnet` (ModelNet10/40: our h5, PointNet's
    ``modelnet40_ply_hdf5_2048``, ``modelnet40_normal_resampled``, OFF folders),
    :mod:`clip2point.datasets.scanobjectnn` (the released h5 files, FPS to ``num_points`` as the release
    does), :mod:`clip2point.datasets.objaverse` (a split file and safe per-object files).

    Args:
        name: one of :data:`DATASET_NAMES` (case, ``-`` and ``_`` ignored).
        data_dir: the dataset folder, or a folder holding it (searched one level deep).
        split: ``"train"`` or ``"test"`` (objaverse-lvis: ``"test"`` only).
        num_points: points per item (ModelNet files holding more: the first N; ScanObjectNN: the release's
            FPS; OFF meshes and Objaverse objects: seeded FPS; all points if a file holds fewer).
        up: up axis of the raw files, ``"y"`` or ``"z"``; None = the layout's (ModelNet: per layout/file;
            ScanObjectNN and Objaverse-LVIS: ``"y"``, used as stored).
        cache_size: items kept in memory by the layouts read one file per shape (OFF, normal_resampled,
            objaverse-lvis): None = every item read (objaverse-lvis: :data:`~.objaverse.OBJAVERSE_CACHE_ITEMS`);
            n ≥ 1 = the n most recently used. The h5 layouts hold the whole split in memory and ignore it.
        prompt_style: how ``class_names`` are written (they are the classes' prompt words):
            "release" (as CLIP2Point's released zero-shot code prompts the dataset: ModelNet10's
            ``night_stand`` with its underscore, every other dataset as words) or "spaced" (words for every
            dataset). See :data:`clip2point.classes.PROMPT_STYLES`.

    Returns:
        A :class:`PointCloudDataset` whose items are (N, 3) float32 y-up points and int labels.

    Raises:
        DatasetNotFoundError: ``data_dir`` is missing or does not hold that dataset (the message lists what was
            looked for and how to get it).
        DatasetFileError: a file of the dataset is damaged (missing keys, wrong shapes, labels out of range,
            NaN, a malformed split file, pickled data).
        DatasetError: unknown name, split, up axis or prompt style, ``num_points`` or ``cache_size`` < 1, a
            split the dataset does not have, or an unreadable file.
    """
    key = canonical_name(name)
    _check_arguments(split, up, num_points, cache_size, prompt_style)
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"data folder {root} does not exist; download the data with `{download_hint(key)}` and pass --data-dir DIR"
        )
    if key in SCANOBJECTNN_VARIANTS:
        ds = open_scanobjectnn(key, root, split, int(num_points), up)
    elif key == "objaverse-lvis":
        ds = open_objaverse_lvis(root, split, int(num_points), up)
        if cache_size is None:
            cache_size = OBJAVERSE_CACHE_ITEMS
    else:
        ds = _open_modelnet(key, root, split, int(num_points), up)
    if isinstance(ds, LazyDataset):
        ds.cache_size = None if cache_size is None else int(cache_size)
    ds.class_names = _words(ds.class_names, key, prompt_style)
    logger.info("opened %r", ds)
    return ds


def find_datasets(root: str | os.PathLike) -> dict[str, Path]:
    """Every dataset of :data:`DATASET_NAMES` whose test split opens under ``root``: name → the folder to
    pass to :func:`open_dataset` as ``data_dir``.

    What it looks for (in ``root`` and its immediate sub-folders, as :func:`open_dataset` does): ModelNet10/40
    in any layout (e.g. ``ModelNet10/``, ``modelnet10/``, ``ModelNet40/``, ``modelnet40_normal_resampled/``,
    ``modelnet40_ply_hdf5_2048/``, our ``modelnet40_partial/``); ScanObjectNN's ``main_split``/``main_split_nobg``
    in ``root``, ``h5_files/`` or a sub-folder such as ``ScanObjectNN/`` (and its ``h5_files/``); Objaverse-LVIS's
    split file (``lvis.json``, ``meta_data/split/lvis.json``) in ``root`` or a sub-folder such as
    ``objaverse-lvis/``. Each dataset is opened with one point per shape (cheap: the h5 layouts read one
    point of each shape, the per-file layouts read nothing yet); a dataset found but damaged is logged as a
    warning and left out, one not found is left out silently.

    Raises:
        DatasetNotFoundError: ``root`` is not a folder.
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DatasetNotFoundError(f"data root {base} is not a folder; pass the folder that holds your datasets")
    found: dict[str, Path] = {}
    for name in DATASET_NAMES:
        try:
            ds = open_dataset(name, base, "test", num_points=1)
        except DatasetNotFoundError as err:
            logger.debug("%s not under %s: %s", name, base, err)
            continue
        except DatasetError as err:
            logger.warning("%s found under %s but it does not open: %s", name, base, err)
            continue
        found[name] = ds.root
    return found
