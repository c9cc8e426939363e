"""Geometry shared by the readers, the renderers and pre-training: the up axis, unit-sphere
normalisation (of point sets and of meshes), and the float64 offset of far-away clouds.

Unit-sphere normalisation is CLIP2Point's first rendering step (Huang et al., ICCV 2023, §3.1):
centre a shape and scale it so its farthest point lies at distance 1. It is written once, here,
for numpy arrays and torch tensors alike (:func:`normalize_unit_sphere`), and once for meshes,
whose centre is the area-weighted surface centroid (:func:`normalize_mesh`).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import Clip2PointError, ImageViewError
from .formats import CHUNK_BYTES, OFFSET_RATIO, UP_AXES

__all__ = ["check_up", "convert_up_axis", "normalize_unit_sphere", "normalize_mesh", "far_offset", "shifted"]


def check_up(up: object) -> None:
    """Refuse an up axis other than :data:`~clip2point.io.UP_AXES` ("y", "z").

    Raises:
        Clip2PointError: naming the accepted values.
    """
    if up not in UP_AXES:
        raise Clip2PointError(f"up axis must be one of {UP_AXES}, got {up!r}; use 'z' for ModelNet/OFF and most scans")


def convert_up_axis(points: np.ndarray, up: str) -> np.ndarray:
    """Map points (or normals) of shape (..., 3) from a ``up``-up frame to the y-up render world.

    ``"y"`` returns the input unchanged; ``"z"`` maps ``(x, y, z) -> (-y, z, -x)``, CLIP2Point's
    released ModelNet mapping (a proper rotation). The dtype is preserved.

    Raises:
        Clip2PointError: if ``up`` is not "y" or "z".
    """
    check_up(up)
    if up == "y":
        return points
    return np.stack((-points[..., 1], points[..., 2], -points[..., 0]), axis=-1)


def _farthest(centred: np.ndarray) -> np.ndarray:
    """Largest distance from the origin over the last-but-one axis of (..., N, 3) float64 points."""
    return np.sqrt((centred**2).sum(axis=-1)).max(axis=-1)


def normalize_unit_sphere(points: Any, *, error: type[Clip2PointError] = Clip2PointError,
                          what: str = "a point cloud") -> Any:
    """Centre each point set at its centroid and scale it so the farthest point has norm 1.

    Computed in float64 (large offsets or units, e.g. geo coordinates, keep their precision).

    Args:
        points: (N, 3) or (..., N, 3) points in any units: a numpy array (any real dtype), or a
            torch tensor (on any device; torch is not imported here, the tensor's own methods are used).
        error: the :class:`Clip2PointError` subclass raised for a degenerate shape.
        what: the shape, for the message ("a point cloud", a file name, ...).

    Returns:
        The same shape: numpy input gives float32; a tensor gives a tensor of its own dtype and
        device. Every set is centred at 0 with its farthest point at distance 1.

    Raises:
        ``error``: a set whose points all coincide (no extent to scale).
    """
    if isinstance(points, np.ndarray) or not hasattr(points, "double"):
        p = np.asarray(points, dtype=np.float64)
        centred = p - p.mean(axis=-2, keepdims=True)
        scale = _farthest(centred)
    else:  # a torch tensor
        p = points.double()
        centred = p - p.mean(dim=-2, keepdim=True)
        scale = centred.norm(dim=-1).amax(dim=-1)
    if bool((~(scale > 0)).any()):
        raise error(f"{what} has fewer than 2 distinct points (they all coincide), so it cannot be normalised "
                    "to the unit sphere or rendered")
    out = centred / scale[..., None, None]
    return out.astype(np.float32) if isinstance(out, np.ndarray) else out.to(points.dtype)


def normalize_mesh(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre a mesh at its area-weighted surface centroid and scale it into the unit sphere.

    The centre is the expected centroid of points sampled uniformly on the surface (what
    :func:`normalize_unit_sphere` centres a sampled cloud on); the scale is the largest distance
    of a face vertex from it (the farthest surface point of a triangle mesh is a vertex). So the
    depth view of surface samples lines up with the mesh's image view. Vertex means are not used:
    they follow the tessellation, not the shape.

    Args:
        vertices: (Nv, 3) vertex positions, any units.
        faces: (F, 3) int vertex indices.

    Returns:
        (normalised (Nv, 3) float32 vertices, centre (3,) float64, scale float): the farthest
        face vertex lies at distance 1 from the origin; ``normalised = (v − centre) / scale``.

    Raises:
        ImageViewError: the mesh has zero surface area.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    tri = v[f]  # (F, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    total = float(area.sum())
    if not np.isfinite(total) or total <= 0:
        raise ImageViewError(f"all {len(f)} faces of the mesh have zero area, so it has no surface to render")
    centre = (area[:, None] * tri.mean(axis=1)).sum(axis=0) / total
    scale = float(_farthest(v[np.unique(f)] - centre))
    return ((v - centre) / scale).astype(np.float32), centre, scale


def far_offset(points: np.ndarray) -> np.ndarray | None:
    """The float64 shift for a cloud far from the origin relative to its extent, else None.

    Args:
        points: (N, 3) coordinates of any float or integer dtype.

    Returns:
        (3,) float64, the bounding-box centre rounded to a round number, when the largest
        absolute coordinate exceeds :data:`~clip2point.io.OFFSET_RATIO` × the extent; else None.
    """
    lo = points.min(axis=0).astype(np.float64)
    hi = points.max(axis=0).astype(np.float64)
    extent = float((hi - lo).max())
    far = float(np.maximum(np.abs(lo), np.abs(hi)).max())
    if extent <= 0 or far <= OFFSET_RATIO * extent:
        return None
    step = 10.0 ** math.floor(math.log10(extent))  # a round number close to the centre
    return np.round((lo + hi) / 2.0 / step) * step + 0.0  # + 0.0: no negative zeros


def shifted(points: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``points - offset`` computed in float64, stored float32, chunk by chunk (no N×3 float64 copy).

    Args:
        points: (N, 3) coordinates; offset: (3,) float64 (from :func:`far_offset`).

    Returns:
        (N, 3) float32.
    """
    out = np.empty(points.shape, dtype=np.float32)
    rows = max(1, CHUNK_BYTES // 24)
    for start in range(0, len(points), rows):
        out[start : start + rows] = np.asarray(points[start : start + rows], dtype=np.float64) - offset
    return out
