"""Rendering: cameras, one point rasterizer and shading as separate pieces (pytorch3d-style).

``cameras`` (view sets, :class:`Cameras`) → ``rasterize`` (:func:`rasterize_points` → :class:`Fragments`)
→ ``shading`` (depth images) or ``image`` (colour splats); ``mesh`` ray-casts meshes for the CLIP
image views, ``lighting`` holds their light and Phong model; ``renderer`` composes the depth path.
Unit-sphere normalisation comes from :mod:`clip2point.io` (re-exported here).
"""
from ..io import normalize_mesh, normalize_unit_sphere
from .cameras import PRETRAIN_VIEWS, VIEW_SETS, ZEROSHOT_VIEWS, Cameras, ViewSet, camera_centers, get_view_set, look_at_rotation, world_to_view
from .image import image_views, rasterize_point_indices, render_point_views, rgb_clip_input
from .lighting import DEFAULT_LIGHT_DIR, DEFAULT_MESH_COLOR, Shading, view_light_directions
from .mesh import render_mesh_views
from .rasterize import (
    BACKGROUND_DEPTH, DEFAULT_RADIUS, MAX_IMAGE_SIZE, Fragments, RasterSettings, rasterize_chunks, rasterize_points,
)
from .renderer import DepthRenderer, as_points_tensor, render_depth
from .shading import CLIP_MEAN, CLIP_STD, clip_normalize, depth_to_image

__all__ = [
    "VIEW_SETS", "ZEROSHOT_VIEWS", "PRETRAIN_VIEWS", "ViewSet", "get_view_set", "Cameras", "camera_centers",
    "look_at_rotation", "world_to_view",
    "BACKGROUND_DEPTH", "MAX_IMAGE_SIZE", "DEFAULT_RADIUS", "RasterSettings", "Fragments", "rasterize_points",
    "rasterize_chunks",
    "DepthRenderer", "render_depth", "normalize_unit_sphere", "as_points_tensor",
    "CLIP_MEAN", "CLIP_STD", "clip_normalize", "depth_to_image",
    "Shading", "DEFAULT_LIGHT_DIR", "DEFAULT_MESH_COLOR", "image_views", "normalize_mesh", "rasterize_point_indices",
    "render_mesh_views", "render_point_views", "rgb_clip_input", "view_light_directions",
]
