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
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import json
import logging
import math
import os
import stat
import struct
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from ..errors import Clip2PointError, PointCloudFileError, UnsupportedFormatError

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
]

logger = logging.getLogger(__name__)

_OPEN3D_EXTENSIONS = (".pcd", ".xyz", ".xyzn", ".xyzrgb", ".pts")  # once read by open3d; now parsed here
_TEXT_EXTENSIONS = (".txt", ".csv")
_ARRAY_EXTENSIONS = (".npy", ".npz")
_HDF5_EXTENSIONS = (".h5", ".hdf5")
_LAS_EXTENSIONS = (".las", ".laz")

#: Extensions read as point clouds (``.ply`` is a mesh instead when it has faces).
SUPPORTED_POINT_EXTENSIONS: tuple[str, ...] = (
    (".ply",) + _OPEN3D_EXTENSIONS + _TEXT_EXTENSIONS + _ARRAY_EXTENSIONS + _HDF5_EXTENSIONS + _LAS_EXTENSIONS
)
#: Extensions read as triangle meshes and sampled on their surface.
SUPPORTED_MESH_EXTENSIONS: tuple[str, ...] = (".off", ".obj", ".stl", ".gltf", ".glb", ".ply")
_ALL_EXTENSIONS = tuple(dict.fromkeys(SUPPORTED_POINT_EXTENSIONS + SUPPORTED_MESH_EXTENSIONS))

SAMPLING_METHODS: tuple[str, ...] = ("fps", "random")
UP_AXES: tuple[str, ...] = ("y", "z")
#: A mesh surface is sampled with ``max(num_points, DEFAULT_MESH_POINTS)`` uniform points first
#: (all of them when ``num_points`` is None), then subsampled like a point cloud.
DEFAULT_MESH_POINTS = 10_000
#: Before FPS, inputs with more than ``FPS_CANDIDATES_PER_POINT * k`` points are reduced to that
#: many random candidates, which keeps FPS on 10^7-point clouds fast and memory-light.
FPS_CANDIDATES_PER_POINT = 32

#: Default cap on the points read from one file (and on a mesh's vertices): larger inputs are
#: refused with a PointCloudFileError before they are read. 20 M points are 240 MB as float32.
MAX_POINTS = 20_000_000
#: A mesh may have at most ``MAX_FACES_PER_POINT * max_points`` faces (a closed triangle mesh has
#: about 2 faces per vertex).
MAX_FACES_PER_POINT = 2
#: A cloud is shifted by a float64 :attr:`PointCloud.offset` when its largest absolute coordinate
#: exceeds ``OFFSET_RATIO`` times its extent (float32 would keep fewer than ~17 of its 24 bits
#: for the shape itself).
OFFSET_RATIO = 100.0
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_MAX_COLUMNS_READ = 6  # x y z + normals or colours; further columns are never read
_CHUNK_BYTES = 1 << 24

_POINT_KEYS = ("points", "data", "xyz")
_NORMAL_KEYS = ("normal", "normals")
_COLOR_KEYS = ("color", "colors", "colour", "colours", "rgb")
_UNIT_NORMAL_TOL = 0.01


@dataclass
class PointCloud:
    """Points in the y-up render world.

    Attributes:
        points: (N, 3) float32, in the file's units (not normalised), y-up.
        colors: (N, 3) float32 in [0, 1], or None when the file has no colours.
        normals: (N, 3) float32 unit normals (rotated with the points), or None.
        source: the file path, with ``#index`` appended for a shape picked from a multi-shape file.
        is_mesh: True when the points were sampled from a mesh surface.
        num_input_points: number of points (or mesh vertices) in the file, before sampling
            (defaults to ``len(points)``).
        offset: (3,) float64, in the same y-up frame as ``points``: the file's coordinates
            (mapped y-up) are ``points + offset``. Zero unless the cloud lies far from the origin
            compared with its size (largest |coordinate| > :data:`OFFSET_RATIO` × extent, e.g.
            geo-referenced LAS in UTM metres); then it is the bounding-box centre rounded to a
            round number, subtracted in float64 before the float32 cast so no precision is lost.
    """

    points: np.ndarray
    colors: np.ndarray | None
    normals: np.ndarray | None
    source: str
    is_mesh: bool = False
    num_input_points: int | None = None
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=np.float64))

    def __post_init__(self) -> None:
        if self.num_input_points is None:
            self.num_input_points = len(self.points)
        self.offset = np.asarray(self.offset, dtype=np.float64).reshape(3)

    def __len__(self) -> int:
        return len(self.points)

    def normalized(self) -> PointCloud:
        """A copy centred at the centroid and scaled so the farthest point has norm 1 (offset 0).

        Raises:
            Clip2PointError: if all points coincide (nothing to scale).
        """
        centred = self.points - self.points.mean(axis=0, dtype=np.float64)
        scale = float(np.sqrt((centred**2).sum(axis=1).max()))
        if not np.isfinite(scale) or scale == 0.0:
            raise Clip2PointError(f"{self.source}: all points coincide, so the cloud cannot be normalised")
        return dataclasses.replace(
            self,
            points=(centred / scale).astype(np.float32),
            colors=None if self.colors is None else self.colors.copy(),
            normals=None if self.normals is None else self.normals.copy(),
            offset=np.zeros(3, dtype=np.float64),
        )


@dataclass
class Mesh:
    """A triangle mesh in the y-up render world.

    Attributes:
        vertices: (V, 3) float32, in the file's units, y-up.
        faces: (F, 3) int64 vertex indices (polygons are triangulated).
        vertex_colors: (V, 3) float32 in [0, 1], or None.
        source: the file path.
        offset: (3,) float64 y-up: file vertices (mapped y-up) = ``vertices + offset``; zero
            except for meshes far from the origin (see :attr:`PointCloud.offset`).
    """

    vertices: np.ndarray
    faces: np.ndarray
    vertex_colors: np.ndarray | None
    source: str
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=np.float64))


class _Loaded(NamedTuple):
    points: np.ndarray  # (N, 3), any float dtype
    colors: np.ndarray | None
    normals: np.ndarray | None
    source: str


class _MeshData(NamedTuple):
    vertices: np.ndarray
    faces: np.ndarray | None
    colors: np.ndarray | None
    normals: np.ndarray | None


# --------------------------------------------------------------------------------------------
# geometry helpers


def convert_up_axis(points: np.ndarray, up: str) -> np.ndarray:
    """Map points (or normals) of shape (..., 3) from a ``up``-up frame to the y-up render world.

    ``"y"`` returns the input unchanged; ``"z"`` maps ``(x, y, z) -> (-y, z, -x)``, CLIP2Point's
    released ModelNet mapping (a proper rotation). The dtype is preserved.

    Raises:
        Clip2PointError: if ``up`` is not "y" or "z".
    """
    _check_up(up)
    if up == "y":
        return points
    return np.stack((-points[..., 1], points[..., 2], -points[..., 0]), axis=-1)


def sample_surface(
    vertices: np.ndarray,
    faces: np.ndarray,
    num_points: int,
    seed: int = 0,
    return_normals: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Sample points uniformly on a triangle mesh surface (faces picked with probability ∝ area).

    Args:
        vertices: (V, 3) vertex positions.
        faces: (F, 3) integer vertex indices.
        num_points: number of samples (> 0).
        seed: seed of the numpy Generator, so equal inputs give equal samples.
        return_normals: also return each sample's face normal (right-hand rule on the face order).

    Returns:
        (num_points, 3) float32 points, and with ``return_normals`` a (num_points, 3) float32
        array of unit normals.

    Raises:
        PointCloudFileError: if the mesh has no faces or zero total area.
    """
    _check_count(num_points, "num_points")
    verts = np.asarray(vertices)
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[-1:] != (3,) or len(faces) == 0:
        raise PointCloudFileError("the mesh has no faces to sample from")
    # Face areas chunk by chunk: memory is O(F) float64, never the (F, 3, 3) corner array.
    double_area = np.empty(len(faces), dtype=np.float64)
    for start in range(0, len(faces), _FACE_CHUNK):
        _, _, cross = _face_geometry(verts, faces[start : start + _FACE_CHUNK])
        double_area[start : start + len(cross)] = np.linalg.norm(cross, axis=1)
    cdf = np.cumsum(double_area)
    if not np.isfinite(cdf[-1]) or cdf[-1] <= 0:
        raise PointCloudFileError(f"all {len(faces)} faces of the mesh have zero area, so it has no surface to sample")
    rng = np.random.default_rng(seed)
    # side="right" never lands on a zero-area face (its cdf equals its predecessor's)
    face = np.minimum(np.searchsorted(cdf, rng.random(num_points) * cdf[-1], side="right"), len(faces) - 1)
    del cdf
    u, v = rng.random((2, num_points, 1))
    outside = (u + v) > 1.0  # reflect samples of the parallelogram back into the triangle
    u, v = np.where(outside, 1.0 - u, u), np.where(outside, 1.0 - v, v)
    corner, (edge1, edge2), cross = _face_geometry(verts, faces[face])
    points = (corner + u * edge1 + v * edge2).astype(np.float32)
    if not return_normals:
        return points
    return points, (cross / double_area[face, None]).astype(np.float32)


_FACE_CHUNK = 1 << 20


def _face_geometry(
    vertices: np.ndarray, faces: np.ndarray
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], np.ndarray]:
    """First corners, the two edges from it and their cross product (all float64) of ``faces``."""
    idx = np.asarray(faces, dtype=np.int64)
    v0 = np.asarray(vertices[idx[:, 0]], dtype=np.float64)
    edge1 = np.asarray(vertices[idx[:, 1]], dtype=np.float64) - v0
    edge2 = np.asarray(vertices[idx[:, 2]], dtype=np.float64) - v0
    return v0, (edge1, edge2), np.cross(edge1, edge2)


def farthest_point_sample(points: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Greedy farthest point sampling.

    The first index is drawn by ``np.random.default_rng(seed)``; each next one is the point
    farthest from those already chosen. Memory is O(N): one (N,) min-distance array (in the
    input's float dtype) plus per-coordinate copies; no N×k distance matrix. Cost is O(N·k),
    so call :func:`subsample` for huge inputs (it pre-selects random candidates first).

    Args:
        points: (N, 3) coordinates.
        k: number of indices, 1 <= k <= N.
        seed: seed for the start index.

    Returns:
        (k,) int64 indices into ``points``, distinct, in selection order (every prefix is
        itself a farthest-point sample).

    Raises:
        Clip2PointError: if k is not in 1..N or ``points`` is not (N, 3).
    """
    pts = _as_xyz(points)
    n = len(pts)
    _check_count(k, "k")
    if k > n:
        raise Clip2PointError(f"cannot pick {k} farthest points from only {n} points")
    dtype = pts.dtype if pts.dtype.kind == "f" else np.dtype(np.float64)
    coords = [np.ascontiguousarray(pts[:, j], dtype=dtype) for j in range(3)]
    min_dist = np.full(n, np.inf, dtype=dtype)
    dist, diff = np.empty(n, dtype=dtype), np.empty(n, dtype=dtype)
    indices = np.empty(k, dtype=np.int64)
    current = int(np.random.default_rng(seed).integers(n))
    for i in range(k):
        indices[i] = current
        np.subtract(coords[0], coords[0][current], out=dist)
        np.square(dist, out=dist)
        for c in coords[1:]:
            np.subtract(c, c[current], out=diff)
            np.square(diff, out=diff)
            dist += diff
        np.minimum(min_dist, dist, out=min_dist)
        min_dist[current] = -1.0  # never chosen again, even among duplicate points
        current = int(np.argmax(min_dist))
    return indices


def subsample(points: np.ndarray, num_points: int, method: str = "fps", seed: int = 0) -> np.ndarray:
    """Indices of at most ``num_points`` points chosen by ``method``.

    ``"random"`` draws distinct indices uniformly (returned sorted). ``"fps"`` runs
    :func:`farthest_point_sample`; when N > ``FPS_CANDIDATES_PER_POINT * num_points`` it first
    draws that many random candidates, so huge clouds stay fast and light (the result is then an
    FPS of a uniform random subset; with 32 candidates per kept point the coverage is practically
    that of an exact FPS).

    Args:
        points: (N, 3) coordinates.
        num_points: the wanted count (> 0); if N <= num_points all indices are returned.
        method: "fps" or "random".
        seed: seeds every random choice, so the result is deterministic.

    Returns:
        (min(N, num_points),) int64 indices into ``points``.

    Raises:
        Clip2PointError: for an unknown method or a non-positive ``num_points``.
    """
    _check_sampling(method)
    _check_count(num_points, "num_points")
    n = len(points)
    if n <= num_points:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if method == "random":
        return np.sort(rng.choice(n, num_points, replace=False)).astype(np.int64)
    max_candidates = FPS_CANDIDATES_PER_POINT * num_points
    if n <= max_candidates:
        return farthest_point_sample(points, num_points, seed)
    candidates = np.sort(rng.choice(n, max_candidates, replace=False)).astype(np.int64)
    return candidates[farthest_point_sample(np.asarray(points)[candidates], num_points, seed)]


# --------------------------------------------------------------------------------------------
# public loaders


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
    _check_up(up)
    _check_sampling(sampling)
    if num_points is not None:
        _check_count(num_points, "num_points")
    _check_count(max_points, "max_points")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise Clip2PointError(f"shape index must be an integer, got {index!r}")
    path = Path(path)
    ext = _check_file(path, _ALL_EXTENSIONS)

    if ext in SUPPORTED_MESH_EXTENSIONS:
        data = _read_mesh_data(path, ext, int(max_points))
        if data.faces is not None and len(data.faces):
            mesh = _to_mesh(path, data, up, int(max_points))
            with _reading(path):
                samples, normals = sample_surface(
                    mesh.vertices, mesh.faces, max(num_points or 0, DEFAULT_MESH_POINTS), seed, return_normals=True
                )
            loaded = _Loaded(samples, None, normals, str(path))  # already y-up: the mesh was converted
            return _finish(path, loaded, num_points, "y", seed, sampling, len(mesh.vertices), mesh.offset)
        if ext != ".ply":
            raise PointCloudFileError(
                f"{path.name}: the mesh has no faces; export it with faces, or as a .ply point cloud"
            )
        loaded = _Loaded(data.vertices, data.colors, data.normals, str(path))
    else:
        loaded = _read_points(path, ext, index, int(max_points))
    _validate_points(path, loaded.points, int(max_points))
    return _finish(path, loaded, num_points, up, seed, sampling, None)


def _far_offset(points: np.ndarray) -> np.ndarray | None:
    """The float64 shift for a cloud far from the origin relative to its extent, else None."""
    lo = points.min(axis=0).astype(np.float64)
    hi = points.max(axis=0).astype(np.float64)
    extent = float((hi - lo).max())
    far = float(np.maximum(np.abs(lo), np.abs(hi)).max())
    if extent <= 0 or far <= OFFSET_RATIO * extent:
        return None
    step = 10.0 ** math.floor(math.log10(extent))  # a round number close to the centre
    return np.round((lo + hi) / 2.0 / step) * step + 0.0  # + 0.0: no negative zeros


def _shifted(points: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``points - offset`` computed in float64, stored float32, chunk by chunk (no N×3 float64 copy)."""
    out = np.empty(points.shape, dtype=np.float32)
    rows = max(1, _CHUNK_BYTES // 24)
    for start in range(0, len(points), rows):
        out[start : start + rows] = np.asarray(points[start : start + rows], dtype=np.float64) - offset
    return out


def _finish(
    path: Path,
    loaded: _Loaded,
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
        offset = _far_offset(points)
        if offset is not None:
            logger.info("%s lies far from the origin; points are stored minus the offset %s", path.name, offset)
            points = _shifted(points, offset)
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
    _check_up(up)
    _check_count(max_points, "max_points")
    path = Path(path)
    ext = _check_file(path, SUPPORTED_MESH_EXTENSIONS)
    data = _read_mesh_data(path, ext, int(max_points))
    if data.faces is None or len(data.faces) == 0:
        raise PointCloudFileError(
            f"{path.name}: has no faces, so it is a point cloud rather than a mesh; load it with load_point_cloud"
        )
    return _to_mesh(path, data, up, int(max_points))


# --------------------------------------------------------------------------------------------
# errors and file checks


@contextlib.contextmanager
def _named(path: Path) -> Iterator[None]:
    """Prefix our own errors raised inside with the file name."""
    try:
        yield
    except PointCloudFileError as err:
        raise PointCloudFileError(f"{path.name}: {err}") from err


def _os_error_message(path: Path, err: OSError) -> str | None:
    """A true one-line message for the OS errors a user can cause, or None for the others."""
    code = getattr(err, "errno", None)
    if isinstance(err, PermissionError) or code in (errno.EACCES, errno.EPERM):
        return f"{path.name}: permission denied reading {path}; make the file readable (chmod u+r) or copy it"
    if code == errno.ELOOP:
        return f"{path.name}: {path} is a symbolic link loop; point to the real file instead"
    if isinstance(err, IsADirectoryError):
        return f"{path.name}: {path} is a folder, not a file; pass a point-cloud or mesh file"
    if code == errno.ENAMETOOLONG:
        return f"{path.name}: the path is too long for the file system; move or rename the file"
    if code == errno.EIO:
        return f"{path.name}: the disk reported an I/O error reading {path}; copy the file to another disk and retry"
    return None


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn a reader's exception into one true PointCloudFileError line naming the file."""
    try:
        yield
    except PointCloudFileError as err:
        if path.name in str(err):
            raise
        raise type(err)(f"{path.name}: {err}") from err
    except Clip2PointError:
        raise
    except MemoryError as err:
        raise PointCloudFileError(
            f"{path.name}: too large to read into the memory available ({type(err).__name__}); "
            "use a smaller file, or subsample it first"
        ) from err
    except OSError as err:
        text = _os_error_message(path, err)
        if text is not None:
            raise PointCloudFileError(text) from err
        raise PointCloudFileError(
            f"{path.name}: could not be read ({type(err).__name__}: {_short(err)}); "
            "the file may be truncated or corrupt; re-export it"
        ) from err
    except Exception as err:  # readers raise anything from ValueError to struct.error
        raise PointCloudFileError(
            f"{path.name}: could not be read ({type(err).__name__}: {_short(err)}); "
            "the file may be truncated or corrupt; re-export it"
        ) from err


def _short(err: BaseException, limit: int = 200) -> str:
    """An exception's text on one line, cut to ``limit`` characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_file(path: Path, allowed: tuple[str, ...]) -> str:
    """Return the lower-case extension after checking it is allowed and the file is readable, non-empty."""
    ext = path.suffix.lower()
    if ext not in allowed:
        raise UnsupportedFormatError(
            f"{path.name}: unsupported file type {ext or '(no extension)'!r}; supported: {', '.join(allowed)}"
        )
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise PointCloudFileError(
                f"{path.name}: {path} is a symbolic link to a file that does not exist; fix the link"
            ) from None
        raise PointCloudFileError(f"{path.name}: file not found at {path}; check the path") from None
    except NotADirectoryError:
        raise PointCloudFileError(f"{path.name}: file not found at {path} (a parent is not a folder)") from None
    except OSError as err:
        raise PointCloudFileError(_os_error_message(path, err) or f"{path.name}: cannot access {path} ({err})") from err
    if not stat.S_ISREG(info.st_mode):
        raise PointCloudFileError(f"{path.name}: {path} is not a regular file; pass a point-cloud or mesh file")
    if info.st_size == 0:
        raise PointCloudFileError(f"{path.name}: the file is empty (0 bytes); re-export or re-download it")
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise PointCloudFileError(_os_error_message(path, err) or f"{path.name}: cannot open {path} ({err})") from err
    return ext


def _fail(path: Path, message: str) -> PointCloudFileError:
    return PointCloudFileError(f"{path.name}: {message}")


def _too_many(path: Path, count: int, limit: int, what: str = "points", option: str = "max_points") -> None:
    if count > limit:
        raise _fail(
            path,
            f"holds {count:,} {what}, more than the limit of {limit:,} ({option}); "
            "subsample or split the file, or raise the limit",
        )


def _truncated(path: Path, declared: str, need: int, have: int) -> PointCloudFileError:
    return _fail(
        path,
        f"its header declares {declared} ({need:,} bytes) but only {have:,} bytes of data follow; "
        "the file is truncated or corrupt (or its header is wrong); re-export it",
    )


def _read_exact(fh: IO[bytes], nbytes: int, path: Path, what: str) -> bytes:
    """Read exactly ``nbytes`` (in bounded chunks), or fail naming what was cut short."""
    parts, left = [], nbytes
    while left > 0:
        chunk = fh.read(min(left, _CHUNK_BYTES))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    if left:
        raise _truncated(path, what, nbytes, nbytes - left)
    return b"".join(parts)


def _count_newlines(fh: IO[bytes], limit: int) -> int:
    """Newlines from the current position to the end, stopping early once past ``limit``."""
    count = 0
    for chunk in iter(lambda: fh.read(_CHUNK_BYTES), b""):
        count += chunk.count(b"\n")
        if count > limit:
            break
    return count


# --------------------------------------------------------------------------------------------
# point-cloud readers


def _read_points(path: Path, ext: str, index: int, limit: int) -> _Loaded:
    with _reading(path):
        if ext == ".pcd":
            return _read_pcd(path, limit)
        if ext == ".pts":
            return _read_pts(path, limit)
        if ext in (".xyz", ".xyzn", ".xyzrgb"):
            return _read_xyz(path, ext, limit)
        if ext in _TEXT_EXTENSIONS:
            columns, total = _read_text(path, limit)
            return _split_columns(path, columns, total_columns=total)
        if ext in _HDF5_EXTENSIONS:
            import h5py

            with h5py.File(path, "r") as store:
                return _read_store(path, _h5_sources(path, store), index, limit)
        if ext == ".npz":
            with zipfile.ZipFile(path) as archive:
                return _read_store(path, _npz_sources(path, archive), index, limit)
        if ext == ".npy":
            with open(path, "rb") as fh:
                return _read_store(path, {"points": lambda: _npy_source(path, fh, os.fstat(fh.fileno()).st_size)},
                                   index, limit)
        return _read_las(path, limit)


# ---- text tables


def _first_data_line(fh: IO[bytes]) -> tuple[int, str | None, int] | None:
    """(lines to skip, delimiter, columns) of the first numeric row, or None if there is none."""
    skip = 0
    for skip, raw in enumerate(fh):
        fields = raw.decode("utf-8", errors="replace").split("#", 1)[0].strip()
        if not fields:
            continue
        delimiter = next((d for d in (";", ",") if d in fields), None)
        try:
            values = [float(f) for f in fields.split(delimiter)]
            return skip, delimiter, len(values)
        except ValueError:
            if skip >= 100:
                return skip, delimiter, 0  # not a numeric table; let loadtxt report the offending line
    return None


def _read_text(path: Path, limit: int, skip_first: int = 0, max_columns: int = _MAX_COLUMNS_READ
               ) -> tuple[np.ndarray, int]:
    """Numbers of a delimited text file (headers, '#' comments and blank lines skipped).

    Returns the (N, min(C, max_columns)) float64 table and C, the number of columns of its first row.
    Refuses files with more than ``limit`` rows before parsing them.
    """
    with open(path, "rb") as fh:
        for _ in range(skip_first):
            fh.readline()
        found = _first_data_line(fh)
        if found is None:
            fh.seek(0)
            if b"\0" in fh.read(4096):
                raise _fail(path, f"is binary data, not a {path.suffix.lower()} text table; check that the file's "
                                  "format matches its extension")
            return np.zeros((0, 3)), 3
        skip, delimiter, columns = found
        fh.seek(0)
        newlines = _count_newlines(fh, limit + skip + skip_first + 1)
    if newlines > limit + skip + skip_first + 1:
        raise _fail(path, f"has more than {limit:,} rows, more than the limit of {limit:,} points (max_points); "
                          "subsample or split the file, or raise the limit")
    usecols = range(min(columns, max_columns)) if columns >= 3 else None
    table = np.loadtxt(path, delimiter=delimiter, skiprows=skip + skip_first, comments="#", ndmin=2,
                       dtype=np.float64, usecols=usecols)
    return table, max(columns, table.shape[1] if table.ndim == 2 else 0)


def _read_xyz(path: Path, ext: str, limit: int) -> _Loaded:
    """open3d's plain-text formats: ``x y z`` (.xyz), ``+ nx ny nz`` (.xyzn), ``+ r g b`` in 0..1 (.xyzrgb)."""
    table, total = _read_text(path, limit)
    need = 3 if ext == ".xyz" else 6
    if len(table) and table.shape[1] < need:
        raise _fail(path, f"a {ext} file needs {need} numbers per line, found {table.shape[1]}; re-export it")
    loaded = _Loaded(table[:, :3], None, None, str(path))
    if ext == ".xyzn":
        return loaded._replace(normals=table[:, 3:6])
    if ext == ".xyzrgb":
        return loaded._replace(colors=_unit_colors(table[:, 3:6]))
    return loaded


def _read_pts(path: Path, limit: int) -> _Loaded:
    """A ``.pts`` file: an optional first line with the point count, then ``x y z [i] [r g b]`` rows.

    The count must equal the number of rows (a truncated file is an error, never padded).
    """
    with open(path, "rb") as fh:
        first = fh.readline(256).decode("utf-8", errors="replace").split()
    declared: int | None = None
    if len(first) == 1:
        try:
            declared = int(first[0])
        except ValueError:
            declared = None
    if declared is not None:
        if declared < 0:
            raise _fail(path, f"the first line declares {declared} points; re-export it")
        _too_many(path, declared, limit)
    table, total = _read_text(path, limit, skip_first=1 if declared is not None else 0, max_columns=7)
    if declared is not None and len(table) != declared:
        raise _fail(path, f"the first line declares {declared:,} points but {len(table):,} rows follow; "
                          "the file is truncated or its count is wrong; re-export it")
    loaded = _Loaded(table[:, :3], None, None, str(path))
    if total in (6, 7) and table.shape[1] == total:  # x y z r g b, or x y z i r g b (colours 0..255)
        return loaded._replace(colors=_unit_colors(table[:, total - 3 : total]))
    return loaded


# ---- PCD


_PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8",
              ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"}
_PCD_MAX_HEADER_LINES = 64


def _read_pcd(path: Path, limit: int) -> _Loaded:
    """A PCL ``.pcd`` file (v0.5-0.7): ascii, binary or binary_compressed, header checked first."""
    total_size = path.stat().st_size
    with open(path, "rb") as fh:
        header: dict[str, list[str]] = {}
        for _ in range(_PCD_MAX_HEADER_LINES):
            raw = fh.readline(4096)
            if not raw:
                raise _fail(path, "the PCD header ends before its DATA line; the file is truncated or not a PCD file")
            text = raw.decode("ascii", errors="replace").strip()
            if not text or text.startswith("#"):
                continue
            key, *values = text.split()
            header[key.upper()] = values
            if key.upper() == "DATA":
                break
        else:
            raise _fail(path, "no DATA line in the PCD header; this is not a PCD file")
        data_start = fh.tell()
        fields, dtype, points = _pcd_layout(path, header, limit)
        if points == 0:
            return _Loaded(np.zeros((0, 3)), None, None, str(path))
        mode = (header["DATA"] or ["?"])[0].lower()
        row = dtype.itemsize
        if mode == "ascii":
            newlines = _count_newlines(fh, points + 1)
            if newlines > points + 1:
                raise _fail(path, f"the header declares {points:,} points but more data lines follow; "
                                  "fix POINTS/WIDTH/HEIGHT or re-export it")
            fh.seek(data_start)
            flat = np.loadtxt(fh, dtype=np.float64, ndmin=2, comments="#")
            if len(flat) != points:
                raise _fail(path, f"the header declares {points:,} points but {len(flat):,} data lines follow; "
                                  "the file is truncated or its header is wrong; re-export it")
            if flat.shape[1] != len(dtype.names or ()) and points:
                width = sum(int(np.prod(dtype[n].shape or (1,))) for n in dtype.names)
                if flat.shape[1] != width:
                    raise _fail(path, f"data lines have {flat.shape[1]} values but the header's fields need {width}")
            columns = _pcd_columns_from_flat(dtype, flat)
        elif mode == "binary":
            need, have = points * row, total_size - data_start
            if need > have:
                raise _truncated(path, f"{points:,} points of {row} bytes", need, have)
            if have - need >= max(row, 1):
                raise _fail(path, f"the header declares {points:,} points ({need:,} bytes) but {have:,} bytes follow; "
                                  "fix POINTS/WIDTH/HEIGHT or re-export it")
            records = np.frombuffer(_read_exact(fh, need, path, f"{points:,} points"), dtype=dtype, count=points)
            columns = {name: records[name] for name in dtype.names}
        elif mode == "binary_compressed":
            sizes = fh.read(8)
            if len(sizes) < 8:
                raise _truncated(path, "a compressed block", 8, len(sizes))
            compressed, uncompressed = struct.unpack("<II", sizes)
            have = total_size - data_start - 8
            if compressed > have:
                raise _truncated(path, f"a compressed block of {compressed:,} bytes", compressed, have)
            if uncompressed != points * row:
                raise _fail(path, f"the header declares {points:,} points ({points * row:,} bytes) but the compressed "
                                  f"block holds {uncompressed:,} bytes; the file is corrupt; re-export it")
            raw = _lzf_decompress(fh.read(compressed), uncompressed) if uncompressed else b""
            columns, offset = {}, 0
            for name in dtype.names:  # binary_compressed stores each field for all points in turn
                sub = dtype[name]
                size = sub.itemsize * points
                per_point = max(1, sub.itemsize // sub.base.itemsize)
                columns[name] = np.frombuffer(raw, dtype=sub.base, count=points * per_point,
                                              offset=offset).reshape((points,) + sub.shape)
                offset += size
        else:
            raise _fail(path, f"unknown PCD DATA type {mode!r}; expected ascii, binary or binary_compressed")
    return _pcd_loaded(path, fields, columns)


def _pcd_layout(path: Path, header: dict[str, list[str]], limit: int) -> tuple[list[str], np.dtype, int]:
    """(field names, a structured dtype of one point, number of points) from a PCD header."""
    fields = header.get("FIELDS") or header.get("COLUMNS")
    if not fields:
        raise _fail(path, "the PCD header has no FIELDS line; this is not a PCD file")
    sizes = header.get("SIZE", [])
    types = header.get("TYPE", [])
    counts = header.get("COUNT", ["1"] * len(fields))
    if not (len(sizes) == len(types) == len(counts) == len(fields)):
        raise _fail(path, f"the PCD header's FIELDS/SIZE/TYPE/COUNT have different lengths "
                          f"({len(fields)}/{len(sizes)}/{len(types)}/{len(counts)}); the file is corrupt")
    try:
        width = int(header.get("WIDTH", ["-1"])[0])
        height = int(header.get("HEIGHT", ["1"])[0])
        points = int(header["POINTS"][0]) if "POINTS" in header else width * height
        dims = [(t.upper(), int(s), int(c)) for t, s, c in zip(types, sizes, counts)]
    except (ValueError, IndexError) as err:
        raise _fail(path, f"the PCD header has a malformed number ({err}); the file is corrupt") from err
    if width < 0 or height < 0 or points < 0:
        raise _fail(path, "the PCD header has no valid WIDTH/HEIGHT/POINTS; the file is corrupt")
    if points != width * height:
        raise _fail(path, f"the PCD header declares POINTS {points:,} but WIDTH × HEIGHT = {width:,} × {height:,}; "
                          "the header is inconsistent; re-export it")
    _too_many(path, points, limit)
    entries = []
    for name, (kind, size, count) in zip(fields, dims):
        if (kind, size) not in _PCD_TYPES or not 1 <= count <= 1024:
            raise _fail(path, f"the PCD field {name!r} has an unsupported TYPE/SIZE/COUNT {kind}/{size}/{count}")
        entries.append((name, "<" + _PCD_TYPES[(kind, size)], (count,) if count > 1 else ()))
    if len(set(fields)) != len(fields):  # e.g. several "_" padding fields
        entries = [(f"{n}__{i}", t, s) for i, (n, t, s) in enumerate(entries)]
        fields = [e[0] for e in entries]
    if not {"x", "y", "z"} <= {f.split("__")[0] for f in fields}:
        raise _fail(path, f"the PCD file has no x y z fields (it has {' '.join(fields)}); nothing to read")
    return fields, np.dtype(entries), points


def _pcd_columns_from_flat(dtype: np.dtype, flat: np.ndarray) -> dict[str, np.ndarray]:
    columns, at = {}, 0
    for name in dtype.names:
        sub = dtype[name]
        width = int(np.prod(sub.shape or (1,)))
        part = flat[:, at : at + width]
        if sub.base.kind in "iu":  # packed integers such as rgb
            part = part.astype(np.float64).astype(sub.base)
        columns[name] = part[:, 0] if not sub.shape else part
        at += width
    return columns


def _pcd_loaded(path: Path, fields: list[str], columns: dict[str, np.ndarray]) -> _Loaded:
    def col(name: str) -> np.ndarray | None:
        match = next((f for f in fields if f.split("__")[0] == name), None)
        return None if match is None else columns[match]

    xyz = np.stack([np.asarray(col(a), dtype=np.float64) for a in "xyz"], axis=1)
    normals = None
    if all(col(f"normal_{a}") is not None for a in "xyz"):
        normals = np.stack([np.asarray(col(f"normal_{a}"), dtype=np.float64) for a in "xyz"], axis=1)
    colors = None
    packed = col("rgb") if col("rgb") is not None else col("rgba")
    if packed is not None:
        bits = np.ascontiguousarray(packed)
        bits = bits.view(np.uint32) if bits.dtype.itemsize == 4 else bits.astype(np.uint32)
        colors = np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], axis=1).astype(np.float32) / 255.0
    return _Loaded(xyz, colors, normals, str(path))


def _lzf_decompress(data: bytes, size: int) -> bytes:
    """LZF (liblzf) decompression to exactly ``size`` bytes; raises ValueError on corrupt input."""
    out = bytearray(size)
    ip = op = 0
    end = len(data)
    try:
        while ip < end:
            ctrl = data[ip]
            ip += 1
            if ctrl < 32:  # a literal run of ctrl + 1 bytes
                length = ctrl + 1
                if op + length > size or ip + length > end:
                    raise ValueError("literal run past the end")
                out[op : op + length] = data[ip : ip + length]
                op += length
                ip += length
            else:  # a back reference
                length = ctrl >> 5
                ref = op - ((ctrl & 0x1F) << 8) - 1
                if length == 7:
                    length += data[ip]
                    ip += 1
                ref -= data[ip]
                ip += 1
                length += 2
                if ref < 0 or op + length > size:
                    raise ValueError("back reference out of range")
                if ref + length <= op:
                    out[op : op + length] = out[ref : ref + length]
                else:  # overlapping copy repeats the pattern
                    for k in range(length):
                        out[op + k] = out[ref + k]
                op += length
    except IndexError:
        raise ValueError("compressed data end mid-token") from None
    if op != size:
        raise ValueError(f"decompressed {op} bytes, expected {size}")
    return bytes(out)


# ---- arrays: .npy, .npz members, HDF5 datasets


class _Array(NamedTuple):
    """A lazily read n-d array: its shape and dtype, and a reader of one (N, k) block."""

    shape: tuple[int, ...]
    dtype: np.dtype
    read: Callable[[int | None, int], np.ndarray]  # (shape index or None, columns to keep) -> (N, k)


_Sources = dict  # name -> zero-argument callable returning an _Array (checked when called)


def _pickle_magic(head: bytes) -> bool:
    """True for a pickle stream (protocol 2+: b'\\x80' + protocol byte)."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _pickled(path: Path) -> PointCloudFileError:
    return _fail(
        path,
        "contains pickled Python objects, which clip2point refuses to load for safety; "
        "save a plain numeric array instead (np.save(path, points.astype(np.float32)))",
    )


def _npy_header(path: Path, fh: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the npy stream at ``fh``; refuses pickles and non-npy data."""
    from numpy.lib import format as npformat

    head = fh.read(6)
    if head != b"\x93NUMPY":
        if _pickle_magic(head):
            raise _pickled(path)
        raise _fail(path, "is not a NumPy .npy array (no NUMPY signature); save it with np.save")
    version = (fh.read(1) or b"\0")[0], (fh.read(1) or b"\0")[0]
    reader = getattr(npformat, "_read_array_header", None)
    if reader is not None:
        shape, fortran, dtype = reader(fh, version, max_header_size=10_000)
    elif version == (1, 0):
        shape, fortran, dtype = npformat.read_array_header_1_0(fh)
    else:
        shape, fortran, dtype = npformat.read_array_header_2_0(fh)
    if dtype.hasobject:
        raise _pickled(path)
    return tuple(int(d) for d in shape), bool(fortran), dtype


def _npy_source(path: Path, fh: IO[bytes], total_size: int, what: str = "the array") -> _Array:
    """Check an npy header against ``total_size`` (the file's or zip member's bytes) and return a reader."""
    fh.seek(0)
    shape, fortran, dtype = _npy_header(path, fh)
    data_start = fh.tell()
    count = math.prod(shape)
    need, have = count * dtype.itemsize, total_size - data_start
    if need > have:
        raise _truncated(path, f"{what} of shape {shape} and type {dtype}", need, have)
    if have > need:
        raise _fail(path, f"has {have - need:,} bytes after the array of shape {shape} its header declares; "
                          "the file is corrupt; re-save it with np.save")

    def read(index: int | None, keep: int) -> np.ndarray:
        return _read_block(fh, data_start, shape, dtype, fortran, index, keep, path)

    return _Array(shape, dtype, read)


def _read_block(fh: IO[bytes], start: int, shape: tuple[int, ...], dtype: np.dtype, fortran: bool,
                index: int | None, keep: int, path: Path) -> np.ndarray:
    """Read the (N, keep) block of shape ``index`` (or of the 2-d array) from raw array bytes at ``start``."""
    item = dtype.itemsize
    if len(shape) == 2:
        rows, cols = shape
        shapes, index = 1, 0
    else:
        shapes, rows, cols = shape
        assert index is not None
    out = np.empty((rows, keep), dtype=dtype)
    if not fortran:  # C order: shape `index` is one contiguous block of rows
        base = start + index * rows * cols * item
        fh.seek(base)
        if keep == cols:
            out_bytes = memoryview(out.reshape(-1).view(np.uint8))
            got = fh.readinto(out_bytes) if rows else 0
            if got != out.nbytes:
                raise _truncated(path, "the array", out.nbytes, got or 0)
            return out
        step = max(1, _CHUNK_BYTES // max(cols * item, 1))
        for r in range(0, rows, step):
            n = min(step, rows - r)
            block = np.frombuffer(_read_exact(fh, n * cols * item, path, "the array"), dtype=dtype).reshape(n, cols)
            out[r : r + n] = block[:, :keep]
        return out
    # Fortran order: element (s, n, c) sits at s + S*n + S*N*c; column c is one contiguous run
    for c in range(keep):
        fh.seek(start + shapes * rows * c * item)
        run = np.frombuffer(_read_exact(fh, shapes * rows * item, path, "the array"), dtype=dtype)
        out[:, c] = run.reshape(rows, shapes)[:, index] if shapes > 1 else run
    return out


def _npz_sources(path: Path, archive: zipfile.ZipFile) -> _Sources:
    sources: _Sources = {}
    for info in archive.infolist():
        if info.is_dir():
            continue
        name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename

        def source(info: zipfile.ZipInfo = info) -> _Array:
            member = archive.open(info)  # closed with the archive
            return _npy_source(path, member, info.file_size, f"the array {info.filename!r}")

        sources[name] = source
    return sources


def h5_dataset(store: Any, name: str, path: str | Path, error: type[Clip2PointError] = PointCloudFileError,
               kinds: str = "fiu") -> Any:
    """Return ``store[name]`` as an ``h5py.Dataset`` after checking it is safe to read.

    The one access path to HDF5 data in clip2point (:mod:`clip2point.io` and
    :mod:`clip2point.datasets`). It refuses, before any data is read:

    * a name reached through a soft or external link (only hard links are followed);
    * a group, or a dataset with external raw storage (data in another file) or a virtual
      dataset (data mapped from other files/datasets);
    * an element type whose kind is not in ``kinds`` (default numbers: ``f i u``; compound,
      variable-length, string, reference and object types are refused unless allowed);
    * a dataset whose stored data are smaller than its declared shape (unwritten chunks or a
      truncated contiguous block: reading it would allocate the declared size of fill values).

    Args:
        store: an open ``h5py.File`` or ``h5py.Group``.
        name: a member name of ``store`` (no path separators).
        path: the file, for messages.
        error: the exception class to raise (e.g. ``DatasetError``).
        kinds: accepted ``numpy.dtype.kind`` letters.

    Raises:
        ``error``: the dataset is missing, unsafe, non-numeric or unwritten.
    """
    import h5py

    label = f"{Path(path).name}: dataset {name!r}"
    if "/" in name.strip("/"):
        raise error(f"{label} is a nested path; only top-level datasets are read")
    link = store.get(name, getlink=True)
    if link is None:
        raise error(f"{label} does not exist; the file holds {sorted(store.keys())}")
    if isinstance(link, h5py.ExternalLink):
        raise error(f"{label} is an external link to {link.filename!r}; clip2point never follows links into "
                    "other files; copy the data into this file")
    if not isinstance(link, h5py.HardLink):
        raise error(f"{label} is a soft link (to {getattr(link, 'path', '?')!r}); clip2point reads only datasets "
                    "stored under their own name; copy the data instead of linking it")
    obj = store[name]
    if not isinstance(obj, h5py.Dataset):
        raise error(f"{label} is a group, not an array; store the points as an (N, 3) dataset")
    if obj.is_virtual:
        raise error(f"{label} is a virtual dataset (its data live in other files); clip2point refuses it for "
                    "safety; save the data into the file itself")
    if obj.external or obj.id.get_create_plist().get_external_count():
        raise error(f"{label} keeps its data in an external file ({(obj.external or [('?',)])[0][0]!r}); "
                    "clip2point refuses it for safety; save the data into the file itself")
    dtype = obj.dtype
    if dtype.kind not in kinds or dtype.names is not None or dtype.subdtype is not None:
        what = "text" if h5py.check_string_dtype(dtype) is not None else f"type {dtype}"
        raise error(f"{label} holds {what}, not numbers; store the points as a numeric (N, 3) array")
    if dtype.kind == "O" and h5py.check_string_dtype(dtype) is None:
        raise error(f"{label} holds Python objects or references; store plain numbers or strings")
    _h5_check_written(obj, label, error)
    return obj


def _h5_check_written(ds: Any, label: str, error: type[Clip2PointError]) -> None:
    """Refuse datasets whose stored bytes cannot hold their declared shape."""
    import h5py

    if ds.size == 0 or ds.dtype.kind == "O":  # vlen strings live in the global heap
        return
    declared = int(ds.size) * ds.dtype.itemsize
    plist = ds.id.get_create_plist()
    layout = plist.get_layout()
    if layout == h5py.h5d.COMPACT:
        return
    if layout == h5py.h5d.CHUNKED:
        chunks = ds.chunks
        expected = math.prod(-(-s // c) for s, c in zip(ds.shape, chunks))
        written = ds.id.get_num_chunks() if hasattr(ds.id, "get_num_chunks") else expected
        if written < expected:
            raise error(f"{label} declares shape {ds.shape} but only {written:,} of its {expected:,} chunks are "
                        "written (unwritten or truncated data); re-export the file")
        if plist.get_nfilters() == 0 and ds.id.get_storage_size() < declared:
            raise error(f"{label} declares {declared:,} bytes but stores only {ds.id.get_storage_size():,}; "
                        "the file is truncated; re-export it")
        return
    stored = ds.id.get_storage_size()
    if stored < declared:
        raise error(f"{label} declares shape {ds.shape} ({declared:,} bytes) but only {stored:,} bytes are "
                    "stored (unwritten or truncated data); re-export the file")


def _h5_sources(path: Path, store: Any) -> _Sources:
    def source(name: str) -> _Array:
        ds = h5_dataset(store, name, path)

        def read(index: int | None, keep: int) -> np.ndarray:
            return np.asarray(ds[index, :, :keep] if index is not None else ds[:, :keep])

        return _Array(tuple(int(d) for d in ds.shape), ds.dtype, read)

    return {name: (lambda name=name: source(name)) for name in store.keys()}


def _check_array(path: Path, key: str, shape: tuple[int, ...], dtype: np.dtype, limit: int) -> None:
    """Refuse arrays that are not numeric (N, C>=3) / (S, N, C>=3) point tables before reading them."""
    if dtype.kind not in "fiu" or dtype.names is not None or len(shape) not in (2, 3) or shape[-1] < 3:
        raise _fail(path, f"expected a numeric (N, 3) or (N, 6) array, got {dtype} with shape {shape}; "
                          "save the points as an N×3 float array")
    if shape[-2] == 3 and shape[-1] > 3:
        raise _fail(path, f"the array {key!r} has shape {shape}: 3 rows of {shape[-1]:,} values, which looks like "
                          "points stored as columns; transpose it (points.T) and save it as (N, 3)")
    _too_many(path, shape[-2], limit)


def _read_store(path: Path, store: _Sources, index: int, limit: int) -> _Loaded:
    """Pick the point array (and optional normals/colours) from an npz/h5 file or a bare npy."""
    keys = list(store.keys())
    key = next((k for k in _POINT_KEYS if k in store), keys[0] if len(keys) == 1 else None)
    if key is None:
        if not keys:
            raise _fail(path, "holds no arrays; store the (N, 3) points under the name 'points'")
        raise _fail(path, f"none of the arrays {keys} is named {' / '.join(_POINT_KEYS)}; "
                          "store the (N, 3) points under one of those names")
    data = store[key]()
    _check_array(path, key, data.shape, data.dtype, limit)
    multi = len(data.shape) == 3  # (S, N, C): several shapes, ``index`` picks one
    count = data.shape[0] if multi else 1
    if count == 0:
        raise _fail(path, f"the array {key!r} has shape {data.shape}: it holds no shapes; re-export the file")
    if not -count <= index < count:
        raise _fail(path, f"shape index {index} is out of range; the file holds {count} shape(s), "
                          f"so use an index in 0..{count - 1}")
    index %= count
    columns = data.shape[-1]
    block = data.read(index if multi else None, min(columns, _MAX_COLUMNS_READ))
    cloud = _split_columns(path, block, f"{path}#{index}" if multi else str(path), total_columns=columns)

    def extra(names: tuple[str, ...]) -> np.ndarray | None:
        name = next((k for k in names if k in store and k != key), None)
        if name is None:
            return None
        arr = store[name]()
        wanted = (data.shape[0], data.shape[1], 3) if multi else (data.shape[0], 3)
        if arr.shape != wanted or arr.dtype.kind not in "fiu" or arr.dtype.names is not None:
            return None
        return arr.read(index if multi else None, 3)

    normals, colors = extra(_NORMAL_KEYS), extra(_COLOR_KEYS)
    return cloud._replace(
        normals=cloud.normals if normals is None else normals,
        colors=cloud.colors if colors is None else _unit_colors(colors),
    )


# ---- LAS / LAZ


_LAZ_BACKEND = 'reading compressed .laz needs a LAZ backend; run `pip install "laspy[lazrs]"`'
_LAS_MIN_RECORD = {0: 20, 1: 28, 2: 26, 3: 34, 4: 57, 5: 63, 6: 30, 7: 36, 8: 38, 9: 59, 10: 67}


class _LasHeader(NamedTuple):
    version: tuple[int, int]
    points: int
    record_length: int
    point_format: int
    compressed: bool


def _las_header(path: Path, limit: int) -> _LasHeader:
    """Parse and check the LAS public header, VLRs and EVLRs against the file size (no laspy)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(375)
        if len(head) < 227 or head[:4] != b"LASF":
            raise _fail(path, "is not a LAS file (no LASF signature or a header shorter than 227 bytes); re-export it")
        major, minor = head[24], head[25]
        header_size, point_offset, vlr_count = struct.unpack_from("<HII", head, 94)
        format_byte, record_length, legacy_count = struct.unpack_from("<BHI", head, 104)
        if major != 1 or minor > 4:
            raise _fail(path, f"has LAS version {major}.{minor}; clip2point reads LAS 1.0-1.4")
        minimum = 375 if minor >= 4 else 235 if minor == 3 else 227
        if header_size < minimum or header_size > size:
            raise _fail(path, f"declares a {header_size}-byte header (LAS {major}.{minor} needs {minimum} bytes, "
                              f"the file has {size:,}); the file is corrupt or truncated")
        if not header_size <= point_offset <= size:
            raise _fail(path, f"its header puts the point data at byte {point_offset:,}, outside the "
                              f"{size:,}-byte file; the file is corrupt or truncated")
        if vlr_count * 54 > point_offset - header_size:
            raise _fail(path, f"its header declares {vlr_count:,} variable-length records, which cannot fit in the "
                              f"{point_offset - header_size:,} bytes before the points; the file is corrupt")
        at = header_size
        for _ in range(vlr_count):  # walk the VLRs: each must end before the point data
            fh.seek(at + 20)
            raw = fh.read(2)
            if len(raw) < 2:
                raise _truncated(path, f"{vlr_count} variable-length records", at + 22, size)
            at += 54 + struct.unpack("<H", raw)[0]
            if at > point_offset:
                raise _fail(path, "a variable-length record runs into the point data; the file is corrupt")
        points, data_end = legacy_count, size
        if minor >= 4 and len(head) >= 375:
            evlr_start, evlr_count, points64 = struct.unpack_from("<QIQ", head, 235)
            points = points64 or legacy_count
            if evlr_count:
                if not point_offset <= evlr_start <= size or evlr_count * 60 > size - evlr_start:
                    raise _fail(path, f"its header declares {evlr_count:,} extended records at byte {evlr_start:,}, "
                                      f"which do not fit in the {size:,}-byte file; the file is corrupt")
                data_end = evlr_start
    point_format = format_byte & 0x3F
    compressed = bool(format_byte & 0xC0)
    if point_format not in _LAS_MIN_RECORD:
        raise _fail(path, f"uses LAS point format {point_format}, which does not exist; the file is corrupt")
    if record_length < _LAS_MIN_RECORD[point_format]:
        raise _fail(path, f"declares {record_length}-byte point records, too short for point format {point_format} "
                          f"({_LAS_MIN_RECORD[point_format]} bytes); the file is corrupt")
    _too_many(path, points, limit)
    if not compressed:
        need, have = points * record_length, data_end - point_offset
        if need > have:
            raise _truncated(path, f"{points:,} points of {record_length} bytes", need, have)
    return _LasHeader((major, minor), points, record_length, point_format, compressed)


def _read_las(path: Path, limit: int) -> _Loaded:
    header = _las_header(path, limit)
    if header.points == 0:
        raise _fail(path, "its header declares 0 points; could not read any points")
    try:
        import laspy
    except ImportError as err:
        raise _fail(path, "reading LAS/LAZ files needs laspy; run `pip install laspy`") from err
    try:
        reader = laspy.open(path)
    except laspy.errors.LaspyException as err:
        if "backend" in str(err).lower():
            raise _fail(path, _LAZ_BACKEND) from err
        raise
    with reader:
        names = set(reader.header.point_format.dimension_names)
        has_rgb = {"red", "green", "blue"} <= names
        n = header.points
        xyz = np.empty((n, 3), dtype=np.float64)
        rgb = np.empty((n, 3), dtype=np.uint16) if has_rgb else None
        at = 0
        try:
            for chunk in reader.chunk_iterator(1_000_000):
                m = len(chunk)
                if at + m > n:
                    raise _fail(path, f"holds more points than the {n:,} its header declares; the file is corrupt")
                xyz[at : at + m, 0], xyz[at : at + m, 1], xyz[at : at + m, 2] = chunk.x, chunk.y, chunk.z
                if rgb is not None:
                    rgb[at : at + m, 0], rgb[at : at + m, 1], rgb[at : at + m, 2] = chunk.red, chunk.green, chunk.blue
                at += m
        except laspy.errors.LaspyException as err:
            if "backend" in str(err).lower():
                raise _fail(path, _LAZ_BACKEND) from err
            raise
    if at != n:
        raise _fail(path, f"its header declares {n:,} points but {at:,} could be read; the file is truncated; "
                          "re-export it")
    return _Loaded(xyz, None if rgb is None else _unit_colors(rgb), None, str(path))


# --------------------------------------------------------------------------------------------
# mesh readers (trimesh on in-memory bytes: no resolver, so no other file is ever opened)


def _read_mesh_data(path: Path, ext: str, limit: int) -> _MeshData:
    """Vertices, faces (None if absent) and optional colours/normals of a mesh file, via trimesh."""
    face_limit = MAX_FACES_PER_POINT * limit
    with _reading(path):
        raw = path.read_bytes()
        if ext == ".ply":  # one read decides mesh vs point cloud and keeps point normals
            _check_ply_header(path, raw, limit, face_limit)
            from trimesh.exchange.ply import load_ply

            kw = load_ply(io.BytesIO(raw), resolver=None)
            del raw
            faces = kw.get("faces")
            data = _MeshData(
                np.asarray(kw.get("vertices", np.zeros((0, 3)))),
                None if faces is None else np.asarray(faces),
                None if kw.get("vertex_colors") is None else _unit_colors(kw["vertex_colors"]),
                kw.get("vertex_normals"),
            )
        else:
            _MESH_CHECKS[ext](path, raw, limit, face_limit)
            import trimesh

            kwargs: dict[str, Any] = {"skip_materials": True} if ext in (".obj", ".gltf", ".glb") else {}
            mesh = trimesh.load_mesh(io.BytesIO(raw), file_type=ext[1:], resolver=None, process=False, **kwargs)
            del raw
            visual = getattr(mesh, "visual", None)
            colors = visual.vertex_colors if getattr(visual, "kind", None) == "vertex" else None
            data = _MeshData(
                np.asarray(mesh.vertices),
                np.asarray(getattr(mesh, "faces", np.zeros((0, 3)))),
                None if colors is None else _unit_colors(colors),
                None,
            )
    _too_many(path, len(data.vertices), limit, "vertices")
    if data.faces is not None:
        _too_many(path, len(data.faces), face_limit, "faces", "MAX_FACES_PER_POINT × max_points")
    return data


def _check_ply_header(path: Path, raw: bytes, limit: int, face_limit: int) -> None:
    """Element counts of a PLY header against the limits and the bytes that follow."""
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise _fail(path, "is not a PLY file (no 'ply' signature or no end_header); re-export it")
    data_start = raw.find(b"\n", end) + 1 or len(raw)
    lines = raw[:end].decode("ascii", errors="replace").splitlines()
    fmt, elements, lists = "", [], False
    sizes = {"char": 1, "int8": 1, "uchar": 1, "uint8": 1, "short": 2, "int16": 2, "ushort": 2, "uint16": 2,
             "int": 4, "int32": 4, "uint": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8}
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "format" and len(parts) >= 2:
            fmt = parts[1]
        elif parts[0] == "element" and len(parts) >= 3:
            try:
                count = int(parts[2])
            except ValueError:
                raise _fail(path, f"the PLY header has a malformed element count {parts[2]!r}") from None
            if count < 0:
                raise _fail(path, f"the PLY header declares {count} {parts[1]} elements")
            elements.append([parts[1], count, 0])
        elif parts[0] == "property" and elements:
            if len(parts) >= 5 and parts[1] == "list":
                elements[-1][2] += sizes.get(parts[2], 1)  # at least the list length per element
                lists = True
            elif len(parts) >= 3:
                elements[-1][2] += sizes.get(parts[1], 1)
    counts = {name: count for name, count, _ in elements}
    _too_many(path, counts.get("vertex", 0), limit, "vertices")
    _too_many(path, counts.get("face", 0), face_limit, "faces", "MAX_FACES_PER_POINT × max_points")
    have = len(raw) - data_start
    described = " and ".join(f"{count:,} {name} elements" for name, count, _ in elements) or "no elements"
    if fmt.startswith("binary"):
        need = sum(count * row for _, count, row in elements)
        if need > have:
            raise _truncated(path, described, need, have)
        if not lists and have > need + 2:  # fixed-size rows: the size is exact (a trailing newline aside)
            raise _fail(path, f"its header declares {described} ({need:,} bytes) but {have:,} bytes follow; "
                              "the header's counts are wrong; re-export it")
    elif fmt == "ascii":
        items = sum(count for _, count, _ in elements)
        body = raw[data_start:].rstrip()
        rows = body.count(b"\n") + 1 if body else 0
        if rows != items:
            raise _fail(path, f"its header declares {described} ({items:,} lines) but {rows:,} lines follow; "
                              "the file is truncated or its counts are wrong; re-export it")
    else:
        raise _fail(path, f"has an unknown PLY format {fmt!r}; expected ascii or binary_little/big_endian")


def _text_count_lines(raw: bytes) -> list[bytes]:
    return [line.split(b"#", 1)[0].strip() for line in raw.splitlines()]


def _check_off(path: Path, raw: bytes, limit: int, face_limit: int) -> None:
    """OFF header counts (``OFF`` may be glued to them, as in ModelNet) against limits and lines."""
    rows = [line for line in _text_count_lines(raw) if line]
    if not rows or not rows[0].upper().startswith((b"OFF", b"COFF", b"NOFF", b"CNOFF")):
        raise _fail(path, "is not an OFF file (no OFF keyword on the first line); re-export it")
    first = rows[0].upper()
    rest = first[first.index(b"OFF") + 3 :].split()
    counts_row, data = (rest, rows[1:]) if rest else ((rows[1].split() if len(rows) > 1 else []), rows[2:])
    try:
        vertices, faces = int(counts_row[0]), int(counts_row[1])
    except (IndexError, ValueError):
        raise _fail(path, "the OFF header has no valid 'vertices faces edges' counts; re-export it") from None
    if vertices < 0 or faces < 0:
        raise _fail(path, f"the OFF header declares {vertices} vertices and {faces} faces; re-export it")
    _too_many(path, vertices, limit, "vertices")
    _too_many(path, faces, face_limit, "faces", "MAX_FACES_PER_POINT × max_points")
    if len(data) < vertices + faces:
        raise _fail(path, f"the OFF header declares {vertices:,} vertices and {faces:,} faces but only {len(data):,} "
                          "lines follow; the file is truncated or corrupt; re-export it")


def _check_obj(path: Path, raw: bytes, limit: int, face_limit: int) -> None:
    text = b"\n" + raw
    vertices = text.count(b"\nv ") + text.count(b"\nv\t")
    faces = text.count(b"\nf ") + text.count(b"\nf\t")
    if vertices == 0:
        raise _fail(path, "has no vertex lines ('v x y z'), so it is not an OBJ mesh; check the file's format")
    _too_many(path, vertices, limit, "vertices")
    _too_many(path, faces, face_limit, "faces", "MAX_FACES_PER_POINT × max_points")


def _check_stl(path: Path, raw: bytes, limit: int, face_limit: int) -> None:
    if len(raw) >= 84:
        (triangles,) = struct.unpack_from("<I", raw, 80)
        if 84 + 50 * triangles == len(raw):  # binary (its 80-byte header may start with "solid")
            _too_many(path, triangles, face_limit, "faces", "MAX_FACES_PER_POINT × max_points")
            return
    if raw.lstrip()[:5].lower() == b"solid":
        _too_many(path, raw.count(b"facet normal"), face_limit, "faces", "MAX_FACES_PER_POINT × max_points")
        return
    if len(raw) < 84:
        raise _fail(path, f"is not an STL file ({len(raw)} bytes, no 'solid' keyword); re-export it")
    raise _fail(path, f"is not a valid STL file: as binary STL its {triangles:,} triangles need "
                      f"{84 + 50 * triangles:,} bytes but the file has {len(raw):,}, and it is not ASCII STL "
                      "(no 'solid' keyword); the file is truncated or not an STL file; re-export it")


def _gltf_json(path: Path, raw: bytes) -> dict:
    """The JSON part of a .gltf or .glb file (GLB chunk lengths checked against the file)."""
    if raw[:4] == b"glTF":
        if len(raw) < 20:
            raise _truncated(path, "a GLB header", 20, len(raw))
        _, _, length = struct.unpack_from("<4sII", raw, 0)
        chunk_length, chunk_type = struct.unpack_from("<II", raw, 12)
        if length > len(raw) or 20 + chunk_length > len(raw):
            raise _truncated(path, "a GLB container", max(length, 20 + chunk_length), len(raw))
        if chunk_type != 0x4E4F534A:
            raise _fail(path, "the GLB's first chunk is not JSON; the file is corrupt; re-export it")
        text = raw[20 : 20 + chunk_length]
    else:
        text = raw
    try:
        doc = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _fail(path, f"is not valid glTF JSON ({_short(err, 120)}); re-export it") from err
    if not isinstance(doc, dict):
        raise _fail(path, "is not a glTF document (its JSON is not an object); re-export it")
    return doc


def _check_gltf(path: Path, raw: bytes, limit: int, face_limit: int) -> None:
    """Refuse glTF/GLB files that reference other files, and accessor counts beyond the limits."""
    binary = raw[:4] == b"glTF"
    if binary and path.suffix.lower() == ".gltf":
        raise _fail(path, "is a binary glTF file; rename it to .glb")
    if not binary and path.suffix.lower() == ".glb":
        if raw.lstrip()[:1] == b"{":
            raise _fail(path, "is a text (JSON) glTF file, not a binary .glb; rename it to .gltf")
        raise _fail(path, "is not a binary glTF file (no glTF signature); check the file's format")
    doc = _gltf_json(path, raw)
    for kind in ("buffers", "images"):
        for item in doc.get(kind) or []:
            uri = item.get("uri") if isinstance(item, dict) else None
            if uri is not None and not (isinstance(uri, str) and uri.startswith("data:")):
                raise _fail(path, f"references external file {str(uri)[:200]!r}; clip2point reads only self-contained "
                                  "files for safety; export a self-contained .glb")
    accessors = doc.get("accessors") or []
    vertices = faces = 0
    for mesh in doc.get("meshes") or []:
        for prim in (mesh or {}).get("primitives") or []:
            try:
                position = prim["attributes"]["POSITION"]
                vertices += int(accessors[position]["count"])
                if "indices" in prim:
                    faces += int(accessors[prim["indices"]]["count"]) // 3
            except (KeyError, IndexError, TypeError, ValueError):
                continue
    _too_many(path, vertices, limit, "vertices")
    _too_many(path, faces, face_limit, "faces", "MAX_FACES_PER_POINT × max_points")


_MESH_CHECKS: dict[str, Callable[[Path, bytes, int, int], None]] = {
    ".off": _check_off, ".obj": _check_obj, ".stl": _check_stl, ".gltf": _check_gltf, ".glb": _check_gltf,
}


def _to_mesh(path: Path, data: _MeshData, up: str, limit: int = MAX_POINTS) -> Mesh:
    vertices = np.asarray(data.vertices)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        got = vertices.shape[1] if vertices.ndim == 2 else "malformed"
        raise _fail(path, f"its vertices have {got} coordinates, not 3 (x y z); the file is malformed; re-export it")
    faces = np.asarray(data.faces)
    if faces.dtype.kind not in "iu" or faces.ndim != 2 or faces.shape[1] != 3 or faces.min() < 0 \
            or faces.max() >= len(vertices):
        raise _fail(path, f"face indices are malformed or out of range for {len(vertices)} vertices; "
                          "the file may be corrupt; re-export it")
    faces = faces.astype(np.int64, copy=False)
    _validate_points(path, vertices, limit)
    offset = _far_offset(vertices)
    shifted = np.asarray(vertices, dtype=np.float32) if offset is None else _shifted(vertices, offset)
    mesh_offset = np.zeros(3) if offset is None else np.asarray(convert_up_axis(offset, up), dtype=np.float64)
    return Mesh(convert_up_axis(shifted, up), faces, data.colors, str(path), mesh_offset)


# --------------------------------------------------------------------------------------------
# validation and column interpretation


def _check_up(up: object) -> None:
    if up not in UP_AXES:
        raise Clip2PointError(f"up axis must be one of {UP_AXES}, got {up!r}; use 'z' for ModelNet/OFF and most scans")


def _check_sampling(method: object) -> None:
    if method not in SAMPLING_METHODS:
        raise Clip2PointError(f"sampling method must be one of {SAMPLING_METHODS}, got {method!r}")


def _check_count(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise Clip2PointError(f"{what} must be a positive integer, got {value!r}")


def _as_xyz(points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise Clip2PointError(f"expected an (N, 3) array of points, got shape {pts.shape}")
    return pts


def _split_columns(path: Path, columns: np.ndarray, source: str | None = None, total_columns: int | None = None
                   ) -> _Loaded:
    """Interpret an (N, C >= 3) numeric array: xyz, then normals or colours (module docstring).

    ``columns`` may hold only the first few columns of the file (``total_columns`` of them exist).
    """
    total = columns.shape[1] if total_columns is None and columns.ndim == 2 else total_columns
    if columns.dtype.kind not in "fiu" or columns.ndim != 2 or columns.shape[1] < 3:
        raise PointCloudFileError(
            f"{path.name}: expected a numeric (N, 3) or (N, 6) array, got {columns.dtype} with shape {columns.shape}; "
            "save the points as an N×3 float array"
        )
    if len(columns) == 3 and total is not None and total > 3:
        raise PointCloudFileError(
            f"{path.name}: has 3 rows of {total} values, which looks like points stored as columns (a (3, N) "
            "array); transpose it (points.T) and save it as N rows of x y z"
        )
    loaded = _Loaded(columns[:, :3], None, None, source or str(path))
    if total != 3 and total != 6:
        logger.info("%s: using columns 1-3 as x y z and ignoring the other %d", path.name, (total or 3) - 3)
    if columns.shape[1] < 6 or len(columns) == 0:
        return loaded
    extra = columns[:, 3:6].astype(np.float32)
    if np.all(np.abs(np.linalg.norm(extra, axis=1) - 1.0) < _UNIT_NORMAL_TOL):
        return loaded._replace(normals=extra)
    if extra.min() >= 0 and extra.max() <= 255:
        return loaded._replace(colors=_unit_colors(extra))
    logger.warning("%s: columns 4-6 are neither unit normals nor colours (0..255 or 0..1); ignoring them", path.name)
    return loaded


def _unit_colors(colors: np.ndarray) -> np.ndarray:
    """RGB(A) colours of any numeric type -> (N, 3) float32 in [0, 1].

    Floats within 0..1 are kept; integer or larger values are divided by 255, or by 65535 when
    they exceed 255 (16-bit colours, e.g. LAS).
    """
    rgb = np.asarray(colors)[:, :3]
    top = float(rgb.max()) if rgb.size else 0.0
    scale = 1.0 if rgb.dtype.kind == "f" and top <= 1.0 else 255.0 if top <= 255 else 65535.0
    return np.clip(rgb.astype(np.float32) / np.float32(scale), 0.0, 1.0)


def _validate_points(path: Path, points: np.ndarray, limit: int = MAX_POINTS) -> None:
    points = np.asarray(points)
    if points.dtype.kind not in "fiu":  # e.g. a truncated ASCII .ply leaves ragged or missing values
        raise PointCloudFileError(
            f"{path.name}: the coordinates are not all numbers; the file may be truncated or corrupt; re-export it"
        )
    if len(points) == 0:
        raise PointCloudFileError(
            f"could not read any points from {path.name}: the file may be truncated or corrupt; re-export it"
        )
    if points.ndim != 2 or points.shape[1] != 3:
        raise PointCloudFileError(
            f"{path.name}: expected (N, 3) coordinates, got shape {points.shape}; the file is malformed; re-export it"
        )
    _too_many(path, len(points), limit)
    bad = int(np.count_nonzero(~np.isfinite(points)))
    if bad:
        raise PointCloudFileError(
            f"{path.name}: contains {bad} NaN/inf coordinates; clean the file (remove or fill those rows) and try again"
        )
    if points.dtype.kind == "f" and points.dtype.itemsize > 4:
        top = float(max(np.abs(points.min()), np.abs(points.max())))
        if top > _FLOAT32_MAX:
            raise PointCloudFileError(
                f"{path.name}: has coordinates as large as {top:.3g}, beyond the float32 range (±3.4e38) clip2point "
                "computes in; rescale the coordinates (e.g. to metres) and save the file again"
            )
    if not np.any(points != points[:1]):
        raise PointCloudFileError(
            f"{path.name}: has fewer than 2 distinct points ({len(points)} point(s), all at {points[0].tolist()}); "
            "a point cloud needs at least 2 distinct points"
        )
