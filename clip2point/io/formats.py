"""What files clip2point reads: the supported extensions, the size limits, and which files are meshes.

The one place that decides a file's kind by its name (and, for ``.ply``, its header):
:func:`is_mesh_file`. Readers of each format live in the sibling modules (``text``, ``pcd``,
``arrays``, ``las``, ``mesh``); :func:`clip2point.io.load_point_cloud` dispatches to them.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

__all__ = [
    "SUPPORTED_POINT_EXTENSIONS", "SUPPORTED_MESH_EXTENSIONS", "ALL_EXTENSIONS", "OPEN3D_EXTENSIONS",
    "TEXT_EXTENSIONS", "ARRAY_EXTENSIONS", "HDF5_EXTENSIONS", "LAS_EXTENSIONS", "SAMPLING_METHODS", "UP_AXES",
    "DEFAULT_MESH_POINTS", "FPS_CANDIDATES_PER_POINT", "MAX_POINTS", "MAX_FACES_PER_POINT", "OFFSET_RATIO",
    "FLOAT32_MAX", "MAX_COLUMNS_READ", "CHUNK_BYTES", "ply_has_faces", "is_mesh_file",
]

#: Point-cloud formats once read by open3d, now parsed by clip2point itself.
OPEN3D_EXTENSIONS = (".pcd", ".xyz", ".xyzn", ".xyzrgb", ".pts")
TEXT_EXTENSIONS = (".txt", ".csv")
ARRAY_EXTENSIONS = (".npy", ".npz")
HDF5_EXTENSIONS = (".h5", ".hdf5")
LAS_EXTENSIONS = (".las", ".laz")

#: Extensions read as point clouds (``.ply`` is a mesh instead when it has faces).
SUPPORTED_POINT_EXTENSIONS: tuple[str, ...] = (
    (".ply",) + OPEN3D_EXTENSIONS + TEXT_EXTENSIONS + ARRAY_EXTENSIONS + HDF5_EXTENSIONS + LAS_EXTENSIONS
)
#: Extensions read as triangle meshes and sampled on their surface.
SUPPORTED_MESH_EXTENSIONS: tuple[str, ...] = (".off", ".obj", ".stl", ".gltf", ".glb", ".ply")
ALL_EXTENSIONS = tuple(dict.fromkeys(SUPPORTED_POINT_EXTENSIONS + SUPPORTED_MESH_EXTENSIONS))

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
#: Largest finite float32: coordinates beyond it are refused.
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Columns read from a table: x y z + normals or colours; further columns are never read.
MAX_COLUMNS_READ = 6
#: Bytes read (or converted) at a time by the readers: bounds their extra memory.
CHUNK_BYTES = 1 << 24


def ply_has_faces(path: str | Path) -> bool:
    """Read a PLY header (at most 64 KiB): does it declare a non-empty face element?

    Raises:
        OSError: the file cannot be opened.
    """
    with open(path, "rb") as fh:
        header = b""
        while b"end_header" not in header and len(header) < 65536:
            line = fh.readline()
            if not line:
                break
            header += line
    match = re.search(rb"element\s+face\s+(\d+)", header)
    return bool(match and int(match.group(1)) > 0)


def is_mesh_file(path: str | Path) -> bool:
    """True for a file read as a triangle mesh: a :data:`SUPPORTED_MESH_EXTENSIONS` file, where a
    ``.ply`` counts only when it exists and its header declares faces (else it is a point cloud).

    Raises:
        OSError: a ``.ply`` file that exists but cannot be opened.
    """
    path = Path(path)
    ext = path.suffix.lower()
    return ext in SUPPORTED_MESH_EXTENSIONS and (ext != ".ply" or (path.is_file() and ply_has_faces(path)))
