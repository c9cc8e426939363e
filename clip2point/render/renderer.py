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
from ..io import normalize_unit_sphere
from .cameras import Cameras, ViewSet, get_view_set, world_to_view
from .rasterize import DEFAULT_RADIUS, Fragments, RasterSettings, rasterize_chunks, rasterize_points
from .shading import clip_normalize, shade_zbuffer_inf_

__all__ = ["DepthRenderer", "render_depth", "as_points_tensor"]


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
        return self._cameras(batch, device, dist_jitter, generator).centers_and_rotations(batch)

    def _cameras(self, batch: int, device, dist_jitter: float, generator: torch.Generator | None) -> Cameras:
        """The view set's (V,) cameras; with ``dist_jitter`` (B, V) distances ``dist·(1 + U(−j, j))``."""
        if isinstance(dist_jitter, bool) or not isinstance(dist_jitter, (int, float)) or not 0 <= dist_jitter < 1:
            raise Clip2PointError(f"dist_jitter must be a number in [0, 1), got {dist_jitter!r}")
        cams = Cameras.from_views(self.views, device)
        if dist_jitter:
            u = torch.rand((batch, len(self.views)), generator=generator, device="cpu").to(device)
            cams = cams.scaled(1.0 + (2.0 * u - 1.0) * dist_jitter)
        return cams

    def view_points(self, points, dist_jitter: float = 0.0, generator: torch.Generator | None = None,
                    cameras: Cameras | None = None) -> torch.Tensor:
        """(B, V, N, 3) view coordinates (x, y in NDC, z = depth) of every point in every view.

        Args:
            points: (B, N, 3) or (N, 3) points (see :func:`render_depth`).
            dist_jitter, generator: camera-distance jitter of the view set's cameras.
            cameras: per-sample cameras instead of the view set: :class:`Cameras` of shape (B, V)
                (e.g. each sample's chosen view at K distances, see
                :func:`clip2point.pretrain.data.render_pair_views`) or (V,); ``dist_jitter`` must be 0.

        Raises:
            Clip2PointError: bad points; ``dist_jitter`` out of range or given with ``cameras``;
                cameras whose batch is not B.
        """
        pts = as_points_tensor(points)
        if self.normalize:
            pts = normalize_unit_sphere(pts)
        B = pts.shape[0]
        if cameras is None:
            cameras = self._cameras(B, pts.device, dist_jitter, generator)
        elif dist_jitter:
            raise Clip2PointError("dist_jitter applies to the view set's cameras; scale the given cameras instead")
        centers, rot, dist = cameras.to(pts.device).centers_and_rotations(B)
        if dist.dim() != 2 or dist.shape[0] != B:
            raise Clip2PointError(f"cameras must have shape (V,) or (B, V) with B = {B} shapes, got {tuple(dist.shape)}")
        scaled = pts[:, None] / dist[..., None, None]  # the released code scales points by 1/dist
        return world_to_view(scaled, centers, rot)

    def rasterize(self, points, dist_jitter: float = 0.0, generator: torch.Generator | None = None, *,
                  cameras: Cameras | None = None, with_index: bool = False) -> Fragments:
        """:class:`Fragments` (B, V, H, W) of every view (see :func:`rasterize_points`)."""
        return rasterize_points(self.view_points(points, dist_jitter, generator, cameras), self.raster, with_index=with_index)

    def zbuf(self, points, dist_jitter: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Raw z-buffers (B, V, H, W), background -1 (pytorch3d's ``zbuf``; see :func:`depth_to_image`)."""
        return self.rasterize(points, dist_jitter, generator).zbuf

    def __call__(self, points, dist_jitter: float = 0.0, generator: torch.Generator | None = None, *,
                 cameras: Cameras | None = None) -> torch.Tensor:
        """Depth images (B, V, H, W) float32 in [0, 1], background 1.0 (``cameras``: see :meth:`view_points`)."""
        vp = self.view_points(points, dist_jitter, generator, cameras)
        S = int(self.raster.image_size)
        out = torch.empty((*vp.shape[:2], S, S), dtype=vp.dtype, device=vp.device)
        for part in rasterize_chunks(vp, self.raster, out):  # shade each chunk while it is in cache
            shade_zbuffer_inf_(part.zbuf, part.zmin)
        return out

    def clip_input(self, points: torch.Tensor, **kw) -> torch.Tensor:
        """(B, V, 3, H, W) CLIP-normalised images (depth images repeated to RGB)."""
        return clip_normalize(self(points, **kw))


def render_depth(
    points,
    views: str | int | ViewSet = "10",
    image_size: int = 224,
    radius: float = DEFAULT_RADIUS,
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
