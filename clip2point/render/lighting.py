"""Light and Phong shading of the CLIP image views (meshes and coloured point splats).

CLIP2Point's released pre-training renders use a white directional light from a random
direction per view (Huang et al., ICCV 2023, §3.2); :func:`view_light_directions` draws it (or
takes a fixed one) in camera coordinates, and :func:`phong` shades surface samples with it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ImageViewError

__all__ = ["DEFAULT_LIGHT_DIR", "DEFAULT_MESH_COLOR", "Shading", "view_light_directions", "phong"]

#: Direction *towards* the light in camera coordinates (x = image-left, y = image-up, z = away
#: from the viewer): from the camera's upper-left, in front of the object.
DEFAULT_LIGHT_DIR: tuple[float, float, float] = (0.45, 0.6, -1.0)
#: Albedo of meshes/points without colours: a neutral light grey.
DEFAULT_MESH_COLOR: tuple[float, float, float] = (0.72, 0.72, 0.72)


@dataclass(frozen=True)
class Shading:
    """Phong coefficients shared by the mesh and point renderers.

    ``colour = albedo · (ambient + diffuse · max(n·l, 0)) + specular · max(r·v, 0)^shininess``
    with ``n`` the two-sided normal (flipped towards the camera), ``l`` the direction to the light,
    ``v`` the direction to the camera and ``r`` the mirror of ``l`` about ``n``; white light,
    white specular. pytorch3d's default lights are ambient 0.5 / diffuse 0.3 / specular 0.2;
    we use more diffuse so the shape reads clearly at 224².
    """

    ambient: float = 0.35
    diffuse: float = 0.65
    specular: float = 0.12
    shininess: float = 32.0


def view_light_directions(num_views: int, light_dir: Sequence[float] | np.ndarray | None = None, seed: int | None = None) -> np.ndarray:
    """Per-view directions towards the light, in camera coordinates.

    Args:
        num_views: V.
        light_dir: (3,) or (V, 3) direction *towards* the light in camera coordinates
            (x = image-left, y = image-up, z = away from the viewer; a light in front of the
            object has z < 0). Default: :data:`DEFAULT_LIGHT_DIR` (upper-left, in front), or a
            random one per view when ``seed`` is given.
        seed: draw one random direction per view from the hemisphere facing the camera
            (z ≤ −0.3 after normalisation, so the visible side is lit), like the authors'
            random directional light. Ignored when ``light_dir`` is given.

    Returns:
        (V, 3) float64 unit vectors.

    Raises:
        ImageViewError: wrong shape, non-finite or zero-length ``light_dir``.
    """
    if light_dir is not None:
        d = np.asarray(light_dir, dtype=np.float64)
        if d.shape == (3,):
            d = np.broadcast_to(d, (num_views, 3))
        if d.shape != (num_views, 3) or not np.isfinite(d).all():
            raise ImageViewError(
                f"light_dir must be 3 finite numbers (or one row per view, shape ({num_views}, 3)), got shape {d.shape}"
            )
        norm = np.linalg.norm(d, axis=1, keepdims=True)
        if (norm == 0).any():
            raise ImageViewError("light_dir has zero length; give a direction such as (0.45, 0.6, -1.0)")
        return d / norm
    if seed is None:
        d = np.asarray(DEFAULT_LIGHT_DIR, dtype=np.float64)
        return np.broadcast_to(d / np.linalg.norm(d), (num_views, 3)).copy()
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(num_views, 3))
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    d[:, 2] = np.minimum(-np.abs(d[:, 2]), -0.3)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def phong(albedo: np.ndarray, n: np.ndarray, to_light: np.ndarray, to_eye: np.ndarray, shading: Shading) -> np.ndarray:
    """Shade K samples with :class:`Shading`'s Phong model (white light, two-sided normals flipped by the caller).

    Args:
        albedo: (K, 3) in [0, 1]. n, to_light, to_eye: (K, 3) unit normals, directions to the
            light and to the camera (same frame).

    Returns:
        (K, 3) colours clipped to [0, 1] (float64 or float32, following the inputs).
    """
    ndotl = np.einsum("kc,kc->k", n, to_light)
    lit = np.maximum(ndotl, 0.0)
    out = albedo * (shading.ambient + shading.diffuse * lit)[:, None]
    if shading.specular > 0:
        refl = 2.0 * ndotl[:, None] * n - to_light
        rdotv = np.maximum(np.einsum("kc,kc->k", refl, to_eye), 0.0)
        out += (shading.specular * np.where(ndotl > 0, rdotv**shading.shininess, 0.0))[:, None]
    return np.clip(out, 0.0, 1.0)
