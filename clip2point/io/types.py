"""The data types of :mod:`clip2point.io`: point clouds and meshes in the y-up render world, and
the raw records the format readers hand to the loaders.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .geometry import normalize_unit_sphere

__all__ = ["PointCloud", "Mesh", "LoadedPoints", "MeshData"]


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
        return dataclasses.replace(
            self,
            points=normalize_unit_sphere(self.points, what=self.source),
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


class LoadedPoints(NamedTuple):
    """What a point-cloud reader returns, before validation, sampling and the up-axis map."""

    points: np.ndarray  # (N, 3), any float dtype
    colors: np.ndarray | None
    normals: np.ndarray | None
    source: str


class MeshData(NamedTuple):
    """What a mesh reader returns: vertices (V, 3), faces (F, 3) or None, colours and normals or None."""

    vertices: np.ndarray
    faces: np.ndarray | None
    colors: np.ndarray | None
    normals: np.ndarray | None
