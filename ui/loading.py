"""File → numpy arrays for the app, without torch: the part of loading a shape that reads files.

:func:`read_file_shape` is a module-level, picklable function that imports only numpy and
``clip2point.io`` (whose heavy readers — open3d, trimesh, h5py, laspy — load on demand). That is
what lets :mod:`ui.session` run it in a child process with a time and memory limit
(``clip2point.sandbox.call_limited``) for uploaded files: a file that makes a reader hang or
allocate without bound kills the child, not the server.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from clip2point.errors import Clip2PointError, PointCloudFileError
from clip2point.io import Mesh, ShapeEntry, load_mesh, load_point_cloud, shape_entry, subsample

log = logging.getLogger(__name__)

__all__ = ["IMAGE_VIEW_POINTS", "MULTI_SHAPE_EXTENSIONS", "FileShape", "read_file_shape", "file_errors"]

#: CLIP image views of point clouds splat this many points (like ``image_views`` for files).
IMAGE_VIEW_POINTS = 16_384
#: Multi-shape files whose ``index`` argument means something.
MULTI_SHAPE_EXTENSIONS = (".h5", ".hdf5", ".npz", ".npy")

#: (points (N, 3) float32, colors (N, 3) float32 | None, mesh | None,
#:  (dense points, dense colors, dense normals) (each (M, 3) float32 | None), points in the file,
#:  which shape of a multi-shape file it is (``clip2point.io.ShapeEntry``) | None)
FileShape = tuple[np.ndarray, "np.ndarray | None", "Mesh | None", tuple, int, "ShapeEntry | None"]


def _take(a: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
    return None if a is None else np.ascontiguousarray(a[idx], dtype=np.float32)


@contextlib.contextmanager
def file_errors(name: str) -> Iterator[None]:
    """Report any reader failure as a PointCloudFileError naming the file.

    ``clip2point.io`` turns reader errors into ``PointCloudFileError`` already; this also covers
    the few that slip through (e.g. a truncated ASCII PLY gives a TypeError from a NaN check on
    a non-numeric array), so the user always gets a message instead of an internal error.
    """
    try:
        yield
    except Clip2PointError:
        raise
    except MemoryError as err:
        raise PointCloudFileError(f"{name}: too large to read into memory ({err}); subsample it first") from err
    except Exception as err:  # noqa: BLE001 - third-party readers raise anything
        log.warning("reading %s failed: %s: %s", name, type(err).__name__, err)
        raise PointCloudFileError(
            f"{name}: could not be read ({type(err).__name__}: {str(err)[:200]}); the file may be corrupt or not "
            "what its extension says; re-export it"
        ) from err


def read_file_shape(path: str, index: int, num_points: int, up: str, display: str = "",
                    dense_points: int = IMAGE_VIEW_POINTS) -> FileShape:
    """Read a point-cloud or mesh file into the arrays the app renders (no torch).

    The file is read once with every point (meshes: ``DEFAULT_MESH_POINTS`` surface samples) and
    thinned here with ``clip2point.io.subsample`` (FPS, seed 0), the call ``load_point_cloud(path,
    num_points, up)`` makes itself; the only difference is that it thins before the up-axis
    mapping, which permutes and negates coordinates, so distances (and hence the sample) agree up
    to float rounding in exact ties. The full cloud also gives the denser subset (up to
    ``dense_points``) the CLIP image views are splatted from; it is not kept.

    Args:
        path: the file. index: shape index in a multi-shape ``.h5/.npz/.npy`` (ignored otherwise).
        num_points: points to classify (farthest point sampling). up: the file's up axis ("y"/"z").
        display: the file's name for messages (uploads live under random temporary names).
        dense_points: points kept for the CLIP image views of point clouds.

    Returns:
        (points (N, 3) float32 y-up, colors (N, 3) float32 in [0, 1] or None, mesh (y-up) or None,
        (dense points, dense colors, dense normals) — all None for meshes, points in the file,
        the :class:`~clip2point.io.ShapeEntry` (index of count, label, name) of a multi-shape file or None).

    Raises:
        PointCloudFileError, UnsupportedFormatError: unreadable, corrupt or unsupported file.
    """
    path = Path(path)
    name = display or path.name
    ext = path.suffix.lower()
    multi = ext in MULTI_SHAPE_EXTENSIONS
    with file_errors(name):
        entry = shape_entry(path, index) if multi else None
        full = load_point_cloud(path, num_points=None, up=up, index=index if multi else 0)
        if full.is_mesh and num_points > len(full.points):  # more points than the default surface sample
            full = load_point_cloud(path, num_points=num_points, up=up)
        keep = subsample(full.points, num_points, "fps", seed=0)
    points, colors = _take(full.points, keep), _take(full.colors, keep)
    if full.is_mesh:
        with file_errors(name):
            mesh = load_mesh(path, up=up)
        return points, colors, mesh, (None, None, None), full.num_input_points, entry
    dense = subsample(full.points, dense_points, "random", seed=0)
    dense_set = (_take(full.points, dense), _take(full.colors, dense), _take(full.normals, dense))
    return points, colors, None, dense_set, full.num_input_points, entry
