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
Heavy readers (open3d ~2 s, trimesh, h5py, laspy) are imported only when a file needs them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .errors import Clip2PointError, PointCloudFileError, UnsupportedFormatError

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
]

logger = logging.getLogger(__name__)

_OPEN3D_EXTENSIONS = (".pcd", ".xyz", ".xyzn", ".xyzrgb", ".pts")
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
    """

    points: np.ndarray
    colors: np.ndarray | None
    normals: np.ndarray | None
    source: str
    is_mesh: bool = False
    num_input_points: int | None = None

    def __post_init__(self) -> None:
        if self.num_input_points is None:
            self.num_input_points = len(self.points)

    def __len__(self) -> int:
        return len(self.points)

    def normalized(self) -> PointCloud:
        """A copy centred at the centroid and scaled so the farthest point has norm 1.

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
        )


@dataclass
class Mesh:
    """A triangle mesh in the y-up render world.

    Attributes:
        vertices: (V, 3) float32, in the file's units, y-up.
        faces: (F, 3) int64 vertex indices (polygons are triangulated).
        vertex_colors: (V, 3) float32 in [0, 1], or None.
        source: the file path.
    """

    vertices: np.ndarray
    faces: np.ndarray
    vertex_colors: np.ndarray | None
    source: str


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
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(faces, dtype=np.int64)]  # (F, 3, 3)
    if tri.ndim != 3 or len(tri) == 0:
        raise PointCloudFileError("the mesh has no faces to sample from")
    edge1, edge2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    cross = np.cross(edge1, edge2)
    double_area = np.linalg.norm(cross, axis=1)
    cdf = np.cumsum(double_area)
    if not np.isfinite(cdf[-1]) or cdf[-1] <= 0:
        raise PointCloudFileError(f"all {len(tri)} faces of the mesh have zero area, so it has no surface to sample")
    rng = np.random.default_rng(seed)
    # side="right" never lands on a zero-area face (its cdf equals its predecessor's)
    face = np.minimum(np.searchsorted(cdf, rng.random(num_points) * cdf[-1], side="right"), len(tri) - 1)
    u, v = rng.random((2, num_points, 1))
    outside = (u + v) > 1.0  # reflect samples of the parallelogram back into the triangle
    u, v = np.where(outside, 1.0 - u, u), np.where(outside, 1.0 - v, v)
    points = (tri[face, 0] + u * edge1[face] + v * edge2[face]).astype(np.float32)
    if not return_normals:
        return points
    return points, (cross[face] / double_area[face, None]).astype(np.float32)


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

    Returns:
        A :class:`PointCloud` (float32 points in the file's units).

    Raises:
        UnsupportedFormatError: unknown extension.
        PointCloudFileError: missing/empty/corrupt/truncated file, no points, NaN/inf coordinates,
            fewer than 2 distinct points, a pickled ``.npy``, a bad shape index.
        Clip2PointError: invalid ``up``, ``sampling`` or ``num_points``.
    """
    _check_up(up)
    _check_sampling(sampling)
    if num_points is not None:
        _check_count(num_points, "num_points")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise Clip2PointError(f"shape index must be an integer, got {index!r}")
    path = Path(path)
    ext = _check_file(path, _ALL_EXTENSIONS)

    if ext in SUPPORTED_MESH_EXTENSIONS:
        data = _read_mesh_data(path, ext)
        if data.faces is not None and len(data.faces):
            mesh = _to_mesh(path, data, up)
            with _named(path):
                samples, normals = sample_surface(
                    mesh.vertices, mesh.faces, max(num_points or 0, DEFAULT_MESH_POINTS), seed, return_normals=True
                )
            loaded = _Loaded(samples, None, normals, str(path))  # already y-up: the mesh was converted
            return _finish(path, loaded, num_points, "y", seed, sampling, len(mesh.vertices))
        if ext != ".ply":
            raise PointCloudFileError(
                f"{path.name}: the mesh has no faces; export it with faces, or as a .ply point cloud"
            )
        loaded = _Loaded(data.vertices, data.colors, data.normals, str(path))
    else:
        loaded = _read_points(path, ext, index)
    _validate_points(path, loaded.points)
    return _finish(path, loaded, num_points, up, seed, sampling, None)


def _finish(
    path: Path, loaded: _Loaded, num_points: int | None, up: str, seed: int, sampling: str, mesh_vertices: int | None
) -> PointCloud:
    """Subsample validated points, convert them to y-up float32 and wrap them in a PointCloud."""
    points = loaded.points
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
    cloud = PointCloud(take(points, True), take(loaded.colors, False), normals, loaded.source, is_mesh, num_input)
    logger.debug("loaded %s: %d of %d points (mesh=%s, up=%s)", cloud.source, len(cloud), num_input, is_mesh, up)
    return cloud


def load_mesh(path: str | Path, up: str = "y") -> Mesh:
    """Read a triangle mesh (:data:`SUPPORTED_MESH_EXTENSIONS`) and convert it to y-up.

    Raises:
        UnsupportedFormatError: unknown extension.
        PointCloudFileError: missing/empty/corrupt file, a file without faces, NaN/inf vertices,
            face indices out of range.
        Clip2PointError: invalid ``up``.
    """
    _check_up(up)
    path = Path(path)
    ext = _check_file(path, SUPPORTED_MESH_EXTENSIONS)
    data = _read_mesh_data(path, ext)
    if data.faces is None or len(data.faces) == 0:
        raise PointCloudFileError(
            f"{path.name}: has no faces, so it is a point cloud rather than a mesh; load it with load_point_cloud"
        )
    return _to_mesh(path, data, up)


# --------------------------------------------------------------------------------------------
# readers


@contextlib.contextmanager
def _named(path: Path) -> Iterator[None]:
    """Prefix our own errors raised inside with the file name."""
    try:
        yield
    except PointCloudFileError as err:
        raise PointCloudFileError(f"{path.name}: {err}") from err


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn a third-party reader's exception into a PointCloudFileError naming the file."""
    try:
        yield
    except (Clip2PointError, MemoryError):
        raise
    except Exception as err:  # readers raise anything from ValueError to struct.error
        if "pickle" in str(err).lower():
            raise PointCloudFileError(
                f"{path.name}: contains pickled Python objects, which clip2point refuses to load for safety; "
                "save a plain numeric array instead (np.save(path, points.astype(np.float32)))"
            ) from err
        raise PointCloudFileError(
            f"{path.name}: could not be read ({type(err).__name__}: {err}); "
            "the file may be truncated or corrupt; re-export it"
        ) from err


def _check_file(path: Path, allowed: tuple[str, ...]) -> str:
    """Return the lower-case extension after checking it is allowed and the file is non-empty."""
    ext = path.suffix.lower()
    if ext not in allowed:
        raise UnsupportedFormatError(
            f"{path.name}: unsupported file type {ext or '(no extension)'!r}; supported: {', '.join(allowed)}"
        )
    if not path.exists():
        raise PointCloudFileError(f"{path.name}: file not found at {path}; check the path")
    if not path.is_file():
        raise PointCloudFileError(f"{path.name}: {path} is not a regular file; pass a point-cloud or mesh file")
    if path.stat().st_size == 0:
        raise PointCloudFileError(f"{path.name}: the file is empty (0 bytes); re-export or re-download it")
    return ext


def _read_points(path: Path, ext: str, index: int) -> _Loaded:
    with _reading(path):
        if ext in _OPEN3D_EXTENSIONS:
            return _read_open3d(path)
        if ext in _TEXT_EXTENSIONS:
            return _split_columns(path, _read_text(path))
        if ext in _HDF5_EXTENSIONS:
            import h5py

            with h5py.File(path, "r") as store:
                return _read_store(path, store, index)
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as store:
                return _read_store(path, store, index)
        if ext == ".npy":
            return _read_store(path, {"points": np.load(path, allow_pickle=False)}, index)
        return _read_las(path)


def _read_open3d(path: Path) -> _Loaded:
    import open3d as o3d

    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        pcd = o3d.io.read_point_cloud(str(path))
    return _Loaded(
        np.array(pcd.points),  # copies: np.asarray would alias open3d's buffers
        np.array(pcd.colors) if pcd.has_colors() else None,
        np.array(pcd.normals) if pcd.has_normals() else None,
        str(path),
    )


def _read_text(path: Path) -> np.ndarray:
    """Numbers of a delimited text file; skips header lines, '#' comments and blank lines."""
    skip, delimiter = 0, None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for skip, line in enumerate(fh):
            fields = line.split("#", 1)[0].strip()
            if not fields:
                continue
            delimiter = next((d for d in (";", ",") if d in fields), None)
            try:
                [float(f) for f in fields.split(delimiter)]
                break
            except ValueError:
                if skip >= 100:
                    break  # not a numeric table; let loadtxt report the offending line
        else:
            return np.zeros((0, 3))
    return np.loadtxt(path, delimiter=delimiter, skiprows=skip, comments="#", ndmin=2, dtype=np.float64)


def _read_store(path: Path, store: Mapping[str, Any], index: int) -> _Loaded:
    """Pick the point array (and optional normals/colours) from an npz/h5 file or a bare npy."""
    keys = list(store.keys())
    key = next((k for k in _POINT_KEYS if k in store), keys[0] if len(keys) == 1 else None)
    if key is None:
        raise PointCloudFileError(
            f"{path.name}: none of the arrays {keys} is named {' / '.join(_POINT_KEYS)}; "
            "store the (N, 3) points under one of those names"
        )
    data = store[key]
    multi = data.ndim == 3  # (S, N, C): several shapes, ``index`` picks one
    count = data.shape[0] if multi else 1
    if not -count <= index < count:
        raise PointCloudFileError(
            f"{path.name}: shape index {index} is out of range; the file holds {count} shape(s), "
            f"so use an index in 0..{count - 1}"
        )
    index %= count

    def read(array: Any) -> np.ndarray:  # reads only the picked shape of an h5 dataset
        return np.asarray(array[index] if multi else array[()])

    cloud = _split_columns(path, read(data), f"{path}#{index}" if multi else str(path))

    def extra(names: tuple[str, ...]) -> np.ndarray | None:
        name = next((k for k in names if k in store and k != key), None)
        arr = None if name is None else read(store[name])
        return arr if arr is not None and arr.shape == (len(cloud.points), 3) else None

    normals, colors = extra(_NORMAL_KEYS), extra(_COLOR_KEYS)
    return cloud._replace(
        normals=cloud.normals if normals is None else normals,
        colors=cloud.colors if colors is None else _unit_colors(colors),
    )


def _read_las(path: Path) -> _Loaded:
    try:
        import laspy
    except ImportError as err:
        raise PointCloudFileError(f"{path.name}: reading LAS/LAZ files needs laspy; run `pip install laspy`") from err
    try:
        las = laspy.read(path)
    except laspy.errors.LaspyException as err:
        if "backend" in str(err).lower():
            raise PointCloudFileError(
                f"{path.name}: reading compressed .laz needs a LAZ backend; run `pip install \"laspy[lazrs]\"`"
            ) from err
        raise
    names = set(las.point_format.dimension_names)
    colors = np.stack([las.red, las.green, las.blue], axis=1) if {"red", "green", "blue"} <= names else None
    return _Loaded(np.asarray(las.xyz), None if colors is None else _unit_colors(colors), None, str(path))


def _read_mesh_data(path: Path, ext: str) -> _MeshData:
    """Vertices, faces (None if absent) and optional colours/normals of a mesh file, via trimesh."""
    with _reading(path):
        if ext == ".ply":  # one read decides mesh vs point cloud and keeps point normals
            from trimesh.exchange.ply import load_ply

            with open(path, "rb") as fh:
                kw = load_ply(fh)
            faces = kw.get("faces")
            return _MeshData(
                np.asarray(kw.get("vertices", np.zeros((0, 3)))),
                None if faces is None else np.asarray(faces),
                None if kw.get("vertex_colors") is None else _unit_colors(kw["vertex_colors"]),
                kw.get("vertex_normals"),
            )
        import trimesh

        mesh = trimesh.load_mesh(path, process=False)
        visual = getattr(mesh, "visual", None)
        colors = visual.vertex_colors if getattr(visual, "kind", None) == "vertex" else None
        return _MeshData(
            np.asarray(mesh.vertices),
            np.asarray(getattr(mesh, "faces", np.zeros((0, 3)))),
            None if colors is None else _unit_colors(colors),
            None,
        )


def _to_mesh(path: Path, data: _MeshData, up: str) -> Mesh:
    vertices, faces = data.vertices, np.asarray(data.faces, dtype=np.int64)
    _validate_points(path, vertices)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.min() < 0 or faces.max() >= len(vertices):
        raise PointCloudFileError(
            f"{path.name}: face indices are malformed or out of range for {len(vertices)} vertices; "
            "the file may be corrupt; re-export it"
        )
    vertices = convert_up_axis(np.asarray(vertices, dtype=np.float32), up)
    return Mesh(vertices, faces, data.colors, str(path))


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


def _split_columns(path: Path, columns: np.ndarray, source: str | None = None) -> _Loaded:
    """Interpret an (N, C >= 3) numeric array: xyz, then normals or colours (module docstring)."""
    if columns.dtype.kind not in "fiu" or columns.ndim != 2 or columns.shape[1] < 3:
        raise PointCloudFileError(
            f"{path.name}: expected a numeric (N, 3) or (N, 6) array, got {columns.dtype} with shape {columns.shape}; "
            "save the points as an N×3 float array"
        )
    loaded = _Loaded(columns[:, :3], None, None, source or str(path))
    if columns.shape[1] != 3 and columns.shape[1] != 6:
        logger.info("%s: using columns 1-3 as x y z and ignoring the other %d", path.name, columns.shape[1] - 3)
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


def _validate_points(path: Path, points: np.ndarray) -> None:
    points = np.asarray(points)
    if points.dtype.kind not in "fiu":  # e.g. a truncated ASCII .ply leaves ragged or missing values
        raise PointCloudFileError(
            f"{path.name}: the coordinates are not all numbers; the file may be truncated or corrupt; re-export it"
        )
    if len(points) == 0:
        raise PointCloudFileError(
            f"could not read any points from {path.name}: the file may be truncated or corrupt; re-export it"
        )
    bad = int(np.count_nonzero(~np.isfinite(points)))
    if bad:
        raise PointCloudFileError(
            f"{path.name}: contains {bad} NaN/inf coordinates; clean the file (remove or fill those rows) and try again"
        )
    if not np.any(points != points[:1]):
        raise PointCloudFileError(
            f"{path.name}: has fewer than 2 distinct points ({len(points)} point(s), all at {points[0].tolist()}); "
            "a point cloud needs at least 2 distinct points"
        )
