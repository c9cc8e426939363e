"""Read point clouds and meshes from disk into y-up ``float32`` point sets.

CLIP2Point (Huang et al., ICCV 2023) renders a point cloud to depth maps in a **y-up** world.
Everything here returns points in that world: files written z-up (ModelNet OFF meshes, most
scans) are converted with ``up="z"``, which applies the released code's exact mapping
``(x, y, z) -> (-y, z, -x)`` (a proper rotation, so normals rotate the same way).

Supported inputs (see :data:`SUPPORTED_POINT_EXTENSIONS` / :data:`SUPPORTED_MESH_EXTENSIONS`):

* point clouds: ``.ply`` (without faces), ``.pcd .xyz .xyzn .xyzrgb .pts`` (open3d),
  ``.txt .csv`` (columns, see below), ``.npy .npz``, ``.h5 .hdf5``, ``.las .laz`` (laspy);
* meshes: ``.off .obj .stl .gltf .glb`` and ``.ply`` *with* faces (trimesh); their surface is
  sampled uniformly by area.

Column files (``.txt .csv .npy .npz .h5``) hold an ``(N, C)`` array: columns 0-2 are x y z.
With ``C >= 6`` columns 3-5 are read as **normals** when every row has unit length (within
0.01), else as **colours** when every value lies in 0..255 (values in 0..1 are taken as-is,
larger ones divided by 255), else they are ignored with a warning. Other extra columns (e.g.
an intensity in column 3 of a 4-column file) are ignored.

Every failure raises :class:`~clip2point.errors.PointCloudFileError` (or its subclass
:class:`~clip2point.errors.UnsupportedFormatError`) with a message that names the file and says
what to do; bad arguments raise :class:`~clip2point.errors.Clip2PointError`.
Heavy readers (trimesh, h5py, laspy) are imported only when a file needs them.

Untrusted files (uploads, downloads) are read defensively:

* **Sizes before allocation.** Every format with a header (``.npy .npz .h5 .pcd .pts .ply .las
  .off .stl .obj .glb``) has its declared counts checked against the file's real size before
  anything is allocated, and inputs with more than ``max_points`` points
  (:data:`MAX_POINTS`, 20 million by default) or mesh faces (``MAX_FACES_PER_POINT`` ×
  ``max_points``) are refused. Only the needed part is read (one shape of a multi-shape array,
  at most 6 columns).
* **No other files are read.** HDF5 datasets with external raw storage, virtual datasets, and
  objects reached through soft or external links are refused (:func:`h5_dataset`); meshes are
  parsed from memory with no resolver, so an OBJ's ``mtllib``/textures are never opened, and a
  glTF/GLB whose buffers or images reference a non-``data:`` URI is refused.
* **Honest data.** Counts in a header that disagree with the data (a truncated ASCII PCD/PTS, a
  short binary block, extra rows) are errors, never padded with zeros; a ``(3, N)`` array with
  N > 3 is refused as probably transposed; object arrays (pickles) are never loaded.
* **Precision.** Coordinates beyond the float32 range (|x| > 3.4e38) are refused; clouds far
  from the origin compared with their size (e.g. LAS files in UTM metres) are shifted by a
  float64 :attr:`PointCloud.offset` before the float32 cast, so they keep their precision.

Modules, by responsibility: :mod:`~clip2point.io.formats` (extensions, limits, :func:`is_mesh_file`),
:mod:`~clip2point.io.types` (:class:`PointCloud`, :class:`Mesh`), :mod:`~clip2point.io.geometry`
(up axis, unit-sphere normalisation, far-away offsets), :mod:`~clip2point.io.sampling` (surface
samples, FPS), :mod:`~clip2point.io.checks` (file checks and error messages), and one reader module
per format family: :mod:`~clip2point.io.text`, :mod:`~clip2point.io.pcd`, :mod:`~clip2point.io.arrays`,
:mod:`~clip2point.io.las`, :mod:`~clip2point.io.mesh`. A new format gets a reader module, an
extension in ``formats`` and a branch in ``_read_points`` (or ``mesh.read_mesh_data``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import Clip2PointError, PointCloudFileError
from .arrays import ShapeEntry, h5_dataset, read_hdf5, read_npy, read_npz, shape_entry
from .checks import check_count, check_file, check_sampling, reading, validate_points
from .formats import (
    ALL_EXTENSIONS, DEFAULT_MESH_POINTS, FPS_CANDIDATES_PER_POINT, HDF5_EXTENSIONS, MAX_FACES_PER_POINT, MAX_POINTS,
    OFFSET_RATIO, SAMPLING_METHODS, SUPPORTED_MESH_EXTENSIONS, SUPPORTED_POINT_EXTENSIONS, TEXT_EXTENSIONS, UP_AXES,
    is_mesh_file,
)
from .geometry import check_up, convert_up_axis, far_offset, normalize_mesh, normalize_unit_sphere, shifted
from .las import read_las
from .mesh import read_mesh_data, to_mesh
from .pcd import read_pcd
from .sampling import farthest_point_sample, sample_surface, subsample
from .text import read_pts, read_table, read_xyz
from .types import LoadedPoints, Mesh, PointCloud

__all__ = [
    "PointCloud",
    "Mesh",
    "load_point_cloud",
    "load_mesh",
    "convert_up_axis",
    "sample_surface",
    "farthest_point_sample",
    "subsample",
    "SUPPORTED_POINT_EXTENSIONS",
    "SUPPORTED_MESH_EXTENSIONS",
    "SAMPLING_METHODS",
    "UP_AXES",
    "DEFAULT_MESH_POINTS",
    "FPS_CANDIDATES_PER_POINT",
    "MAX_POINTS",
    "MAX_FACES_PER_POINT",
    "OFFSET_RATIO",
    "h5_dataset",
    "ShapeEntry",
    "shape_entry",
    "is_mesh_file",
    "normalize_unit_sphere",
    "normalize_mesh",
]

logger = logging.getLogger(__name__)


def load_point_cloud(
    path: str | Path,
    num_points: int | None = 1024,
    up: str = "y",
    seed: int = 0,
    sampling: str = "fps",
    index: int = 0,
    max_points: int = MAX_POINTS,
) -> PointCloud:
    """Read a point cloud (or sample a mesh surface) and return it y-up, subsampled.

    Args:
        path: a file with one of :data:`SUPPORTED_POINT_EXTENSIONS` or
            :data:`SUPPORTED_MESH_EXTENSIONS`.
        num_points: wanted number of points; None keeps every point. A cloud with more points
            is subsampled by ``sampling``; one with fewer is kept whole (logged at INFO).
            A mesh surface is first sampled with ``max(num_points, DEFAULT_MESH_POINTS)``
            uniform points (``DEFAULT_MESH_POINTS`` when None).
        up: the file's up axis, "y" (unchanged) or "z" (mapped ``(x, y, z) -> (-y, z, -x)``).
        seed: seeds all sampling; equal arguments give equal results.
        sampling: "fps" (farthest point sampling, default) or "random".
        index: which shape to read from a multi-shape ``.h5/.npz/.npy`` array of shape (S, N, C).
        max_points: the most points (mesh vertices) a file may hold, default :data:`MAX_POINTS`
            (20 M); meshes may have ``MAX_FACES_PER_POINT * max_points`` faces. Larger files are
            refused before they are read, so memory stays bounded (about 24-60 bytes per point).

    Returns:
        A :class:`PointCloud` (float32 points in the file's units, minus ``offset``).

    Raises:
        UnsupportedFormatError: unknown extension.
        PointCloudFileError: missing/unreadable/empty/corrupt/truncated file, header counts that
            disagree with the data, more than ``max_points`` points, no points, NaN/inf or
            beyond-float32 coordinates, fewer than 2 distinct points, a pickled ``.npy``, an
            unsafe HDF5 dataset or glTF reference, a bad shape index.
        Clip2PointError: invalid ``up``, ``sampling``, ``num_points`` or ``max_points``.
    """
    check_up(up)
    check_sampling(sampling)
    if num_points is not None:
        check_count(num_points, "num_points")
    check_count(max_points, "max_points")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise Clip2PointError(f"shape index must be an integer, got {index!r}")
    path = Path(path)
    ext = check_file(path, ALL_EXTENSIONS)

    if ext in SUPPORTED_MESH_EXTENSIONS:
        data = read_mesh_data(path, ext, int(max_points))
        if data.faces is not None and len(data.faces):
            mesh = to_mesh(path, data, up, int(max_points))
            with reading(path):
                samples, normals = sample_surface(
                    mesh.vertices, mesh.faces, max(num_points or 0, DEFAULT_MESH_POINTS), seed, return_normals=True
                )
            loaded = LoadedPoints(samples, None, normals, str(path))  # already y-up: the mesh was converted
            return _finish(path, loaded, num_points, "y", seed, sampling, len(mesh.vertices), mesh.offset)
        if ext != ".ply":
            raise PointCloudFileError(
                f"{path.name}: the mesh has no faces; export it with faces, or as a .ply point cloud"
            )
        loaded = LoadedPoints(data.vertices, data.colors, data.normals, str(path))
    else:
        loaded = _read_points(path, ext, index, int(max_points))
    validate_points(path, loaded.points, int(max_points))
    return _finish(path, loaded, num_points, up, seed, sampling, None)


def _finish(
    path: Path,
    loaded: LoadedPoints,
    num_points: int | None,
    up: str,
    seed: int,
    sampling: str,
    mesh_vertices: int | None,
    offset: np.ndarray | None = None,
) -> PointCloud:
    """Subsample validated points, convert them to y-up float32 and wrap them in a PointCloud."""
    points = loaded.points
    if offset is None:  # not a mesh (whose vertices were shifted already)
        offset = far_offset(points)
        if offset is not None:
            logger.info("%s lies far from the origin; points are stored minus the offset %s", path.name, offset)
            points = shifted(points, offset)
            offset = np.asarray(convert_up_axis(offset, up), dtype=np.float64)
    keep: slice | np.ndarray = slice(None)
    if num_points is not None and len(points) > num_points:
        keep = subsample(points, num_points, sampling, seed)
    elif num_points is not None and len(points) < num_points:
        logger.info("%s has only %d points (< %d requested); keeping all of them", path.name, len(points), num_points)

    def take(a: np.ndarray | None, rotate: bool) -> np.ndarray | None:
        if a is None:
            return None
        a = np.array(a[keep], dtype=np.float32)  # a copy: never a view into the reader's buffers
        return convert_up_axis(a, up) if rotate else a

    normals = take(loaded.normals, True)
    if normals is not None:  # files may store unnormalised normals; all-zero rows stay zero
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), np.finfo(np.float32).tiny)
    is_mesh = mesh_vertices is not None
    num_input = mesh_vertices if is_mesh else len(points)
    cloud = PointCloud(
        take(points, True), take(loaded.colors, False), normals, loaded.source, is_mesh, num_input,
        np.zeros(3) if offset is None else offset,
    )
    logger.debug("loaded %s: %d of %d points (mesh=%s, up=%s)", cloud.source, len(cloud), num_input, is_mesh, up)
    return cloud


def load_mesh(path: str | Path, up: str = "y", max_points: int = MAX_POINTS) -> Mesh:
    """Read a triangle mesh (:data:`SUPPORTED_MESH_EXTENSIONS`) and convert it to y-up.

    Args:
        path: the mesh file.
        up: the file's up axis ("y" or "z").
        max_points: the most vertices accepted (faces: ``MAX_FACES_PER_POINT`` times as many).

    Raises:
        UnsupportedFormatError: unknown extension.
        PointCloudFileError: missing/unreadable/empty/corrupt file, a file without faces, NaN/inf
            or beyond-float32 vertices, face indices out of range, too many vertices or faces,
            a glTF that references external files.
        Clip2PointError: invalid ``up`` or ``max_points``.
    """
    check_up(up)
    check_count(max_points, "max_points")
    path = Path(path)
    ext = check_file(path, SUPPORTED_MESH_EXTENSIONS)
    data = read_mesh_data(path, ext, int(max_points))
    if data.faces is None or len(data.faces) == 0:
        raise PointCloudFileError(
            f"{path.name}: has no faces, so it is a point cloud rather than a mesh; load it with load_point_cloud"
        )
    return to_mesh(path, data, up, int(max_points))


def _read_points(path: Path, ext: str, index: int, limit: int) -> LoadedPoints:
    """Dispatch a point-cloud file (not a mesh) to its format's reader."""
    with reading(path):
        if ext == ".pcd":
            return read_pcd(path, limit)
        if ext == ".pts":
            return read_pts(path, limit)
        if ext in (".xyz", ".xyzn", ".xyzrgb"):
            return read_xyz(path, ext, limit)
        if ext in TEXT_EXTENSIONS:
            return read_table(path, limit)
        if ext in HDF5_EXTENSIONS:
            return read_hdf5(path, index, limit)
        if ext == ".npz":
            return read_npz(path, index, limit)
        if ext == ".npy":
            return read_npy(path, index, limit)
        return read_las(path, limit)
