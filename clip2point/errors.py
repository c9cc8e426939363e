"""One exception family for everything a user can get wrong.

Every error raised on purpose by clip2point derives from :class:`Clip2PointError`, itself a
``ValueError``, and its message names the offending file or value *and* what to do about it.
The CLI prints ``str(err)`` on one line (no traceback unless ``--debug``); the app shows it in
the page and keeps running.
"""
from __future__ import annotations

__all__ = [
    "Clip2PointError",
    "PointCloudFileError",
    "UnsupportedFormatError",
    "WeightsNotFoundError",
    "CheckpointError",
    "UnknownClassSetError",
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetFileError",
    "ImageViewError",
    "ResourceLimitError",
    "SandboxError",
]


class Clip2PointError(ValueError):
    """Base class of all errors clip2point raises for bad input or missing resources."""


class PointCloudFileError(Clip2PointError):
    """A point-cloud or mesh file could not be turned into points.

    Raised for empty files, files with no points, NaN/inf coordinates, fewer than 2 distinct
    points, truncated or corrupt files, and pickled ``.npy`` files (never unpickled).
    """


class UnsupportedFormatError(PointCloudFileError):
    """The file extension is not one clip2point reads (the message lists those it does)."""


class WeightsNotFoundError(Clip2PointError):
    """No CLIP weights were found; the message lists where clip2point looked and how to get them."""


class CheckpointError(Clip2PointError):
    """A checkpoint file is corrupt, truncated, unsafe to load, or has the wrong keys/shapes."""


class UnknownClassSetError(Clip2PointError):
    """An unknown class-set preset or an empty/duplicated class list."""


class DatasetError(Clip2PointError):
    """A dataset folder is missing, has an unknown layout, or cannot be downloaded."""


class DatasetNotFoundError(DatasetError):
    """The folder does not exist or does not hold the named dataset (the message lists what was looked for)."""


class DatasetFileError(DatasetError):
    """A dataset file is damaged or not in the released layout: a missing key, a wrong shape, labels out of
    range, NaN/inf coordinates, a malformed split file, or pickled data (never unpickled)."""


class ImageViewError(Clip2PointError):
    """Bad input for an image-view (RGB) render: mesh, points, colours, light or settings."""


class ResourceLimitError(Clip2PointError):
    """A task hit a time or memory limit, or its worker process crashed (see :mod:`clip2point.sandbox`).

    Also raised for inputs larger than a documented cap (e.g. ``load_point_cloud(max_points=...)``).
    """


class SandboxError(Clip2PointError):
    """A task run in a limited child process (:func:`clip2point.sandbox.call_limited`) failed with an
    exception outside the clip2point family; the message gives its type and text."""
