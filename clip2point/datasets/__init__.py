"""Datasets for evaluation and few-shot learning: find a split in a folder, get y-up point clouds.

:func:`open_dataset` finds a split of a named dataset (:data:`DATASET_NAMES`) in a folder and
returns a :class:`PointCloudDataset` whose items are ``(points, label)``: ``points`` a (N, 3)
float32 tensor, **always y-up** (the renderer's world up, as in CLIP2Point's released code), in the
raw units of the files (the renderer centres and scales each cloud itself), and ``label`` an int
index into ``dataset.class_names`` (the prompt words of the classes).

Datasets (:data:`DATASET_NAMES`): ``modelnet10``, ``modelnet40`` (:mod:`.modelnet`: our h5, PointNet's
``modelnet40_ply_hdf5_2048``, ``modelnet40_normal_resampled``, OFF folders), ``scanobjectnn-obj-only``,
``scanobjectnn-obj-bg``, ``scanobjectnn-pb-t50-rs`` (:mod:`.scanobjectnn`: the released h5 files) and
``objaverse-lvis`` (:mod:`.objaverse`: a split file and safe per-object files). :func:`find_datasets` lists
those found under a data root.

One module per job: :mod:`.base` (the dataset classes, :func:`iter_batches`), one module per dataset family,
:mod:`.registry` (:func:`open_dataset`, :func:`find_datasets`), :mod:`.download` (:func:`download_dataset`).
Every public name is re-exported here. Nothing here unpickles: OpenShape's pickled files are converted only by
the CLI's opt-in ``clip2point data convert-openshape``.
"""
from __future__ import annotations

from ..classes import MODELNET10, MODELNET40, SCANOBJECTNN
from ..errors import DatasetError, DatasetFileError, DatasetNotFoundError
from .base import SPLITS, InMemoryDataset, LazyDataset, PointCloudDataset, SubsetDataset, iter_batches
from .download import DATASET_URLS, DOWNLOADABLE, download_dataset, manual_download_message
from .modelnet import H5_UP_PATTERNS, NormalResampledDataset, OffFolderDataset, h5_up_axis
from .objaverse import ObjaverseLVISDataset, category_words
from .registry import DATASET_NAMES, canonical_name, find_datasets, open_dataset
from .scanobjectnn import SCANOBJECTNN_VARIANTS, ScanObjectNNDataset, release_fps

__all__ = [
    "PointCloudDataset",
    "InMemoryDataset",
    "LazyDataset",
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
    "DatasetError",
    "DatasetFileError",
    "DatasetNotFoundError",
    "MODELNET10",
    "MODELNET40",
    "SCANOBJECTNN",
    "DOWNLOADABLE",
    "manual_download_message",
    "ObjaverseLVISDataset",
    "category_words",
    "canonical_name",
    "find_datasets",
    "SCANOBJECTNN_VARIANTS",
    "ScanObjectNNDataset",
    "release_fps",
]
