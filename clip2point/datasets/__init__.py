"""Datasets for evaluation and few-shot learning: find a split in a folder, get y-up point clouds.

:func:`open_dataset` finds a split of a named dataset (:data:`DATASET_NAMES`) in a folder and
returns a :class:`PointCloudDataset` whose items are ``(points, label)``: ``points`` a (N, 3)
float32 tensor, **always y-up** (the renderer's world up, as in CLIP2Point's released code), in the
raw units of the files (the renderer centres and scales each cloud itself), and ``label`` an int
index into ``dataset.class_names`` (the prompt words of the classes).

One module per job: :mod:`.base` (the dataset classes, :func:`iter_batches`), :mod:`.modelnet`
(the ModelNet10/40 layouts and their rules), :mod:`.registry` (:func:`open_dataset`),
:mod:`.download` (:func:`download_dataset`). Every public name is re-exported here.
"""
from __future__ import annotations

from ..classes import MODELNET10, MODELNET40
from ..errors import DatasetError
from .base import SPLITS, InMemoryDataset, LazyDataset, PointCloudDataset, SubsetDataset, iter_batches
from .download import DATASET_URLS, download_dataset
from .modelnet import H5_UP_PATTERNS, NormalResampledDataset, OffFolderDataset, h5_up_axis
from .registry import DATASET_NAMES, open_dataset

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
    "MODELNET10",
    "MODELNET40",
]
