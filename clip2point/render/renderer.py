"""The CLIP2Point depth renderer: cameras → rasterizer → shading, composed.

Follows the released renderer's settings (Huang et al., ICCV 2023, §3.1 "depth rendering"):
unit-sphere normalisation, orthographic look-at cameras (y-up) with the point cloud scaled by
1/dist, 224² images, disk radius 0.02 NDC, nearest point per pixel, white background.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import Clip2PointError
from .cameras import ViewSet, camera_centers, get_view_set, look_at_rotation, world_to_view
from .rasterize import RasterSettings, rasterize_points, zbuffer_chunks
from .shading import clip_normalize, shade_zbuffer_inf_

__all__ = ["DepthRenderer", "normalize_unit_sphere", "render_depth", "as_points_tensor"]


def as_points_tensor(points, device: torch.device | str | None = None) -> torch.Tensor:
    """Validate and convert points to a (B, N, 3) float32 tensor.

    Args:
        points: (N, 3) or (B, N, 3) array-like (numpy, torch, list), finite numbers.

    Raises:
        Clip2PointError: wrong shape, no points, or NaN/inf values.
    """
    t = torch.as_tensor(np.asarray(points) if not isinstance(points, torch.Tensor) else points)
    t = t.to(device=device, dtype=torch.float32) if device is not None else t.to(torch.float32)
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3 or t.shape[-1] != 3:
        raise Clip2PointError(f"points must have shape (N, 3) or (B, N, 3), got {tuple(t.shape)}")
    if t.shape[1] == 0:
        raise Clip2PointError("the point cloud is empty (0 points); nothing to render")
    if not bool(torch.isfinite(t).all()):
        raise Clip2PointError("points contain NaN or inf; remove those points before rendering")
    return t


def normalize_unit_sphere(points: torch.Tensor) -> torch.Tensor:
    """Centre at the centroid and scale so the farthest point has norm 1.

    Args:
        points: (B, N, 3) float32, any units.

    Returns:
        (B, N, 3) float32 inside the unit sphere.

    Raises:
        Clip2PointError: a shape whose points are all identical (no extent to normalise).
    """
    p64 = points.double()  # float64 keeps large offsets/units (e.g. geo coordinates) from losing precision
    centred = p64 - p64.mean(dim=1, keepdim=True)
    scale = centred.norm(dim=-1).amax(dim=1)  # (B,)
    if bool((scale <= 0).any()):
        raise Clip2PointError("a point cloud has fewer than 2 distinct points; it cannot be rendered")
    return (centred / scale[:, None, None]).to(points.dtype)


@dataclass
class DepthRenderer:
    """Render (B, N, 3) point clouds into (B, V, H, W) depth images, batched over shapes and views.

    Attributes:
        views: a :class:`ViewSet` or preset name ("10" pre-training/few-shot, "6" zero-shot).
        raster: image size and splat radius.
        normalize: centre and scale each cloud to the unit sphere first (REFERENCE step 1).
    """

    views: ViewSet | str = "10"
    raster: RasterSettings = field(default_factory=RasterSettings)
    normalize: bool = True

    def __post_init__(self) -> None:
        self.views = get_view_set(self.views)

    def cameras(self, batch: int, device, dist_jitter: float = 0.0, generator: torch.Generator | None = None):
        """Camera centres (B, V, 3) and view axes (B, V, 3, 3), distances (B, V).

        Raises:
            Clip2PointError: ``dist_jitter`` outside [0, 1).
        """
        if isinstance(dist_jitter, bool) or not isinstance(dist_jitter, (int, float)) or not 0 <= dist_jitter < 1:
            raise Clip2PointError(f"dist_jitter must be a number in [0, 1), got {dist_jitter!r}")
        vs = self.views
        elev = torch.tensor(vs.elev, device=device)
        azim = torch.tensor(vs.azim, device=device)
        dist = torch.tensor(vs.dist, device=device).expand(batch, -1)
        if dist_jitter:
            u = torch.rand(dist.shape, generator=generator, device="cpu").to(device)
            dist = dist * (1.0 + (2.0 * u - 1.0) * dist_jitter)
        centers = camera_centers(elev.expand_as(dist), azim.expand_as(dist), dist)
        return centers, look_at_rotation(centers), dist

    def view_points(self, points, dist_jitter: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, V, N, 3) view coordinates (x, y in NDC, z = depth) of every point in every view."""
        pts = as_points_tensor(points)
        if self.normalize:
            pts = normalize_unit_sphere(pts)
        centers, rot, dist = self.cameras(pts.shape[0], pts.device, dist_jitter, generator)
        scaled = pts[:, None] / dist[..., None, None]  # the released code scales points by 1/dist
        return world_to_view(scaled, centers, rot)

    def zbuf(self, points, dist_jitter: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Raw z-buffers (B, V, H, W), background -1 (pytorch3d's ``zbuf``; see :func:`depth_to_image`)."""
        return rasterize_points(self.view_points(points, dist_jitter, generator), self.raster)

    def __call__(self, points, dist_jitter: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Depth images (B, V, H, W) float32 in [0, 1], background 1.0."""
        vp = self.view_points(points, dist_jitter, generator)
        S = int(self.raster.image_size)
        out = torch.empty((*vp.shape[:2], S, S), dtype=vp.dtype, device=vp.device)
        for zbuf, zmin in zbuffer_chunks(vp, self.raster, out):
            shade_zbuffer_inf_(zbuf, zmin)
        return out

    def clip_input(self, points: torch.Tensor, **kw) -> torch.Tensor:
        """(B, V, 3, H, W) CLIP-normalised images (depth images repeated to RGB)."""
        return clip_normalize(self(points, **kw))


def render_depth(
    points,
    views: str | int | ViewSet = "10",
    image_size: int = 224,
    radius: float = 0.02,
    dist_jitter: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Render point clouds to multi-view depth images the CLIP2Point way.

    Args:
        points: (B, N, 3) or (N, 3) float32 tensor or array, any units and any up-axis already
            converted to y-up (see ``load_point_cloud(up=...)``); normalised to the unit sphere here.
        views: "10" (pre-training / few-shot set), "6" (released zero-shot set) or a ViewSet.
        image_size: H = W in pixels (224 for CLIP ViT-B/32).
        radius: splat radius in NDC units (0.02 ≈ 2.2 px at 224²).
        dist_jitter: pre-training augmentation: camera distance × (1 + U(-j, j)) per shape and view.
        generator: torch RNG for the jitter (CPU generator), for reproducibility.
        device: where to render (default: the device of ``points``, CPU for arrays).

    Returns:
        (B, V, H, W) float32 in [0, 1]; near surfaces dark, background exactly 1.0. Apply
        :func:`clip2point.render.clip_normalize` before a CLIP encoder.

    Raises:
        Clip2PointError: wrong shape, empty, NaN/inf, or all-identical points; unknown view set;
            ``image_size``, ``radius`` or ``dist_jitter`` out of range.

    Source: CLIP2Point (Huang et al., ICCV 2023) §3.1 and the released renderer's settings.
    """
    pts = as_points_tensor(points, device)
    renderer = DepthRenderer(views, RasterSettings(image_size=image_size, radius=radius))
    return renderer(pts, dist_jitter=dist_jitter, generator=generator)
