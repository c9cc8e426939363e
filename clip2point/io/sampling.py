"""Sampling: uniform samples on a mesh surface, farthest point sampling, and subsampling a cloud.

All sampling is seeded (``numpy.random.default_rng(seed)``): equal arguments give equal results.
"""
from __future__ import annotations

import numpy as np

from ..errors import Clip2PointError, PointCloudFileError
from .checks import check_count, check_sampling
from .formats import FPS_CANDIDATES_PER_POINT

__all__ = ["sample_surface", "farthest_point_sample", "subsample", "FACE_CHUNK"]

#: Faces whose areas are computed at once by :func:`sample_surface` (bounds its memory).
FACE_CHUNK = 1 << 20


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
    check_count(num_points, "num_points")
    verts = np.asarray(vertices)
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[-1:] != (3,) or len(faces) == 0:
        raise PointCloudFileError("the mesh has no faces to sample from")
    # Face areas chunk by chunk: memory is O(F) float64, never the (F, 3, 3) corner array.
    double_area = np.empty(len(faces), dtype=np.float64)
    for start in range(0, len(faces), FACE_CHUNK):
        _, _, cross = _face_geometry(verts, faces[start : start + FACE_CHUNK])
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
    check_count(k, "k")
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
    check_sampling(method)
    check_count(num_points, "num_points")
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


def _as_xyz(points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise Clip2PointError(f"expected an (N, 3) array of points, got shape {pts.shape}")
    return pts
