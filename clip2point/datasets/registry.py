"""Which datasets exist and how to open one by name: :func:`open_dataset`, :data:`DATASET_NAMES`."""
from __future__ import annotations

import logging
from pathlib import Path

from ..classes import PROMPT_STYLES, class_names as _words
from ..errors import DatasetError
from .base import SPLITS, UP_AXES, LazyDataset, PointCloudDataset
from .modelnet import MODELNET_DETECTORS, MODELNET_PRESETS, modelnet_looked_for

__all__ = ["DATASET_NAMES", "canonical_name", "open_dataset"]

logger = logging.getLogger(__name__)

#: The datasets :func:`open_dataset` and :func:`clip2point.datasets.download_dataset` know.
DATASET_NAMES: tuple[str, ...] = tuple(MODELNET_PRESETS)
_UP_AXES = UP_AXES
_DOWNLOAD_HINT = "clip2point data download {name} -o DIR"


def canonical_name(name: str) -> str:
    """The dataset name in :data:`DATASET_NAMES` that ``name`` spells (case, ``-`` and ``_`` ignored).

    Raises:
        DatasetError: an unknown name.
    """
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    if key not in MODELNET_PRESETS:
        raise DatasetError(f"unknown dataset {name!r}; choose modelnet10 or modelnet40")
    return key


def open_dataset(
    name: str, data_dir: str | Path, split: str = "test", num_points: int = 1024, up: str | None = None,
    cache_size: int | None = None, prompt_style: str = "release",
) -> PointCloudDataset:
    """Open a ModelNet split found in ``data_dir`` (see :mod:`clip2point.datasets.modelnet` for layouts and rules).

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
    key = canonical_name(name)
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
        for detect in MODELNET_DETECTORS:
            ds = detect(folder, key, split, int(num_points), up, notes)
            if ds is not None:
                if isinstance(ds, LazyDataset):
                    ds.cache_size = None if cache_size is None else int(cache_size)
                ds.class_names = _words(ds.class_names, key, prompt_style)
                logger.info("opened %r", ds)
                return ds
    looked = modelnet_looked_for(key, split)
    found = f" Found: {'; '.join(notes)}." if notes else ""
    raise DatasetError(
        f"no {key} dataset found in {root} or its sub-folders (looked for {looked}).{found} "
        f"Download it with `{hint}` and pass --data-dir DIR."
    )
