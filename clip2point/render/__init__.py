"""Rendering: cameras, a point rasterizer and shading as separate pieces (pytorch3d-style)."""
from .image import (
    Shading, image_views, normalize_mesh, rasterize_point_indices, render_mesh_views, render_point_views,
    rgb_clip_input, view_light_directions,
)
from .cameras import VIEW_SETS, ViewSet, camera_centers, get_view_set, look_at_rotation, world_to_view
from .rasterize import BACKGROUND_DEPTH, MAX_IMAGE_SIZE, RasterSettings, rasterize_points
from .renderer import DepthRenderer, as_points_tensor, normalize_unit_sphere, render_depth
from .shading import CLIP_MEAN, CLIP_STD, clip_normalize, depth_to_image

__all__ = [
    "VIEW_SETS", "ViewSet", "get_view_set", "camera_centers", "look_at_rotation", "world_to_view",
    "BACKGROUND_DEPTH", "MAX_IMAGE_SIZE", "RasterSettings", "rasterize_points",
    "DepthRenderer", "render_depth", "normalize_unit_sphere", "as_points_tensor",
    "CLIP_MEAN", "CLIP_STD", "clip_normalize", "depth_to_image",
    "Shading", "image_views", "normalize_mesh", "rasterize_point_indices", "render_mesh_views",
    "render_point_views", "rgb_clip_input", "view_light_directions",
]
