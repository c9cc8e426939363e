"""CLIP image views: what an RGB camera sees from the same cameras as each depth view.

CLIP2Point pre-trains its depth encoder against a frozen CLIP image encoder on pairs of
(depth map, RGB render) taken from the same viewpoint (Huang et al., ICCV 2023, §3.2):

* :func:`~clip2point.render.mesh.render_mesh_views` — ray-casts and Phong-shades a triangle mesh
  (the released setting: perspective camera at ``2·dist``, 60°, white background, random light);
* :func:`render_point_views` — splats a point cloud from the *depth* cameras with the one
  rasterizer (:func:`~clip2point.render.rasterize.rasterize_points`: orthographic, the depth
  renderer's view transform and disk test, nearest point wins) and colours each pixel by the
  winning point's colour, its normal (Lambert/Phong, :mod:`~clip2point.render.lighting`) or a depth cue;
* :func:`image_views` — one entry point: meshes (and mesh files, :func:`clip2point.io.is_mesh_file`)
  go to the mesh renderer, everything else to the point renderer.

Image convention (same as the depth renderer): NDC +X points to the image's **left**, +Y up;
pixel column ``j`` has centre ``x = 1 − (2j + 1)/W`` and row ``i`` has ``y = 1 − (2i + 1)/H``.
A world point with positive view-x lands in the left half; the picture is what a viewer at the
camera sees (not mirrored). The view axes come from :func:`~clip2point.render.cameras.look_at_rotation`
applied to the depth cameras, so image view ``v`` and depth view ``v`` share their axes.

Output images are ``float32`` torch tensors in [0, 1], channels last, background exactly 1.0
(white). :func:`rgb_clip_input` turns them into CLIP encoder input.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ImageViewError
from ..io import Mesh, PointCloud, is_mesh_file, load_mesh, load_point_cloud, normalize_mesh
from .cameras import Cameras, ViewSet
from .lighting import DEFAULT_LIGHT_DIR, DEFAULT_MESH_COLOR, Shading, phong, view_light_directions
from .mesh import PERSPECTIVE_DISTANCE_FACTOR, PERSPECTIVE_FOV_DEG, render_mesh_views
from .rasterize import DEFAULT_RADIUS, Fragments, RasterSettings, rasterize_points
from .renderer import DepthRenderer, as_points_tensor
from .shading import CLIP_MEAN, CLIP_STD

__all__ = [
    "ImageViewError",
    "DEFAULT_LIGHT_DIR",
    "DEFAULT_MESH_COLOR",
    "PERSPECTIVE_FOV_DEG",
    "PERSPECTIVE_DISTANCE_FACTOR",
    "Shading",
    "normalize_mesh",
    "view_light_directions",
    "render_mesh_views",
    "render_point_views",
    "rasterize_point_indices",
    "image_views",
    "rgb_clip_input",
]


def rasterize_point_indices(view_points: torch.Tensor, image_size: int = 224, radius: float = DEFAULT_RADIUS) -> tuple[torch.Tensor, torch.Tensor]:
    """``(zbuf, idx)`` of :func:`~clip2point.render.rasterize_points` with ``with_index=True``.

    Args:
        view_points: (B, V, N, 3) float32 view coordinates (x, y in NDC, z = depth).
        image_size: H = W in pixels. radius: disk radius in NDC units.

    Returns:
        (B, V, H, W) float32 depth (−1 where empty) and (B, V, H, W) int64 index of the winning
        point (the nearest covering point, ties broken by the smallest index; −1 where empty).
    """
    zbuf, idx, _ = rasterize_points(view_points, RasterSettings(image_size=int(image_size), radius=float(radius)),
                                    with_index=True)
    return zbuf, idx


def _per_point(values: Any, points: torch.Tensor, what: str) -> torch.Tensor | None:
    """(B, N, 3) float32 colours/normals matching ``points``, or None."""
    if values is None:
        return None
    t = torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values).to(torch.float32)
    if t.dim() == 2:
        t = t[None]
    if t.shape != points.shape:
        raise ImageViewError(f"{what} must have the same shape as the points {tuple(points.shape)}, got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ImageViewError(f"{what} contain NaN or inf; fix or drop them")
    return t


def _gather(fragments: Fragments, values: torch.Tensor) -> torch.Tensor:
    """Per-point (B, N, 3) values at each pixel's winning point: (B, V, S, S, 3) (background pixels: point 0's)."""
    B, V, S = fragments.idx.shape[:3]
    safe = fragments.idx.clamp(min=0).view(B, -1)  # (B, V*S*S)
    return torch.gather(values, 1, safe[..., None].expand(-1, -1, 3)).view(B, V, S, S, 3)


def _shade_normals(fragments: Fragments, normals: torch.Tensor, rot: np.ndarray, light: np.ndarray,
                   albedo: torch.Tensor, shading: Shading) -> torch.Tensor:
    """Phong-shade the winning points' (two-sided) normals; rot (V, 3, 3) view axes, light (V, 3) camera frame."""
    fg = fragments.idx >= 0
    B, V, S = fg.shape[:3]
    n = _gather(fragments, torch.nn.functional.normalize(normals, dim=-1))[fg]  # (K, 3) world
    view_of = torch.arange(V, device=fg.device)[None, :, None, None].expand(B, V, S, S)[fg].cpu().numpy()
    z_axis = rot[:, 2][view_of]  # (K, 3): from the camera into the scene
    n = n.double().cpu().numpy()
    n = np.where((np.einsum("kc,kc->k", n, z_axis) > 0)[:, None], -n, n)
    to_light = np.einsum("vc,vcw->vw", light, rot)[view_of]
    rgb = phong(np.broadcast_to(albedo.double().cpu().numpy(), n.shape), n, to_light, -z_axis, shading)
    shaded = torch.ones((B, V, S, S, 3), dtype=torch.float32, device=fg.device)
    shaded[fg] = torch.from_numpy(rgb.astype(np.float32)).to(fg.device)
    return shaded


def _depth_cue(fragments: Fragments, albedo: torch.Tensor) -> torch.Tensor:
    """``albedo · (1 − 0.6·d)``, d = depth scaled to [0, 1] over each view's foreground (near = light)."""
    fg = fragments.idx >= 0
    z = torch.where(fg, fragments.zbuf, math.nan)
    zmin = fragments.zmin[..., None, None]
    zmax = torch.where(fg, fragments.zbuf, -math.inf).amax(dim=(-2, -1), keepdim=True)
    d = ((z - zmin) / (zmax - zmin).clamp_min(1e-6)).clamp(0, 1)
    return albedo * (1.0 - 0.6 * d)[..., None]


def render_point_views(
    points: Any,
    colors: Any = None,
    normals: Any = None,
    views: str | int | ViewSet = "10",
    image_size: int = 224,
    radius: float = DEFAULT_RADIUS,
    light_dir: Sequence[float] | np.ndarray | None = None,
    seed: int | None = None,
    *,
    color: Sequence[float] = DEFAULT_MESH_COLOR,
    normalize: bool = True,
    shading: Shading = Shading(),
) -> torch.Tensor:
    """Splat-render a point cloud in colour from the depth renderer's cameras.

    The cameras, normalisation, orthographic projection (zoom ``1/dist``), disk radius and
    nearest-point rule are exactly the depth renderer's (CLIP2Point, Huang et al., ICCV 2023,
    §3.1–3.2), so the foreground of image view ``v`` equals that of depth view ``v`` pixel for
    pixel. Each covered pixel takes the colour of its nearest point:

    * ``colors`` given: that colour (as is, unlit);
    * else ``normals`` given: Lambert/Phong shading of a grey albedo with the same light as
      :func:`render_mesh_views` (normals are two-sided: flipped towards the camera);
    * else a depth cue: ``albedo · (1 − 0.6·d)``, d = the pixel's depth scaled to [0, 1] over the
      view's foreground (near = light, far = dark).

    Args:
        points: (N, 3) or (B, N, 3) float array/tensor, any units, y-up.
        colors: optional (N, 3) / (B, N, 3) RGB in [0, 1] (values above 1 are taken as 0..255).
        normals: optional (N, 3) / (B, N, 3) normals (any length; normalised here).
        views, image_size, radius: as in :func:`~clip2point.render.render_depth`.
        light_dir, seed: light direction (camera coordinates) or a random light per view, see
            :func:`view_light_directions`.
        color: albedo for normal/depth shading.
        normalize: normalise to the unit sphere first (as the depth renderer does).
        shading: Phong coefficients.

    Returns:
        (V, H, W, 3) float32 tensor in [0, 1] for (N, 3) input, (B, V, H, W, 3) for (B, N, 3);
        background exactly 1.0. On the device of ``points``.

    Raises:
        Clip2PointError: bad points (shape, empty, NaN, all identical), unknown view set.
        ImageViewError: colours/normals of the wrong shape or non-finite, bad light.
    """
    batched = (points.dim() if isinstance(points, torch.Tensor) else np.ndim(points)) == 3
    pts = as_points_tensor(points)
    cols = _per_point(colors, pts, "colors")
    nrms = _per_point(normals, pts, "normals")
    if cols is not None and float(cols.max()) > 1.0:
        cols = cols / 255.0
    renderer = DepthRenderer(views, RasterSettings(image_size=int(image_size), radius=float(radius)), normalize=normalize)
    fragments = renderer.rasterize(pts, with_index=True)  # (B, V, S, S)
    albedo = torch.tensor(np.asarray(color, dtype=np.float32), device=pts.device)
    if cols is not None:
        shaded = _gather(fragments, cols.to(pts.device).clamp(0, 1))
    elif nrms is not None:
        _, rot, _ = Cameras.from_views(views).centers_and_rotations()
        light = view_light_directions(len(rot), light_dir, seed)
        shaded = _shade_normals(fragments, nrms.to(pts.device), rot.double().numpy(), light, albedo, shading)
    else:
        shaded = _depth_cue(fragments, albedo)
    background = torch.ones(shaded.shape, dtype=torch.float32, device=pts.device)
    out = torch.where((fragments.idx >= 0)[..., None], shaded, background)
    return out if batched else out[0]


def image_views(
    source: Any,
    views: str | int | ViewSet = "10",
    image_size: int = 224,
    *,
    up: str = "y",
    num_points: int | None = 16_384,
    light_dir: Sequence[float] | np.ndarray | None = None,
    seed: int | None = None,
    radius: float = DEFAULT_RADIUS,
    projection: str = "perspective",
    antialias: int = 1,
    sample_seed: int = 0,
) -> torch.Tensor:
    """CLIP image views of anything: a mesh is ray-cast and shaded, a point cloud is splatted.

    Dispatch: a file with faces (``.off .obj .stl .gltf .glb``, a ``.ply`` whose header declares
    faces), a :class:`clip2point.io.Mesh`, a ``trimesh.Trimesh`` or a ``(vertices, faces)``
    tuple → :func:`render_mesh_views`; any other file, a :class:`clip2point.io.PointCloud`
    (its colours/normals are used) or an (N, 3) array → :func:`render_point_views`.

    Args:
        source: a path or one of the objects above.
        views, image_size: as in :func:`~clip2point.render.render_depth`.
        up: the file's up axis ("y" or "z"), for paths only.
        num_points: for point-cloud files, subsample to at most this many points (None = all).
        light_dir, seed: the light (see :func:`view_light_directions`).
        radius: splat radius for point clouds.
        projection: for meshes, "perspective" (default) or "orthographic".
        antialias: for meshes, k² rays per pixel (see :func:`render_mesh_views`).
        sample_seed: seed of the point-cloud subsampling.

    Returns:
        (V, H, W, 3) float32 tensor in [0, 1], background 1.0.

    Raises:
        PointCloudFileError / UnsupportedFormatError: unreadable or unsupported file.
        ImageViewError, Clip2PointError: bad geometry or settings.
    """
    mesh_kw: dict[str, Any] = dict(projection=projection, antialias=antialias)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if is_mesh_file(path):
            return render_mesh_views(load_mesh(path, up=up), views, image_size, light_dir, seed, **mesh_kw)
        source = load_point_cloud(path, num_points=num_points, up=up, seed=sample_seed)
    if isinstance(source, Mesh) or (hasattr(source, "vertices") and hasattr(source, "faces")):
        return render_mesh_views(source, views, image_size, light_dir, seed, **mesh_kw)
    if isinstance(source, tuple) and len(source) in (2, 3) and np.asarray(source[1]).ndim == 2 and np.asarray(source[1]).dtype.kind in "iu":
        return render_mesh_views(source, views, image_size, light_dir, seed, **mesh_kw)
    if isinstance(source, PointCloud):
        return render_point_views(source.points, source.colors, source.normals, views, image_size, radius, light_dir, seed)
    return render_point_views(source, None, None, views, image_size, radius, light_dir, seed)


def rgb_clip_input(images: torch.Tensor) -> torch.Tensor:
    """Channels-last RGB images in [0, 1] → CLIP encoder input.

    Args:
        images: (..., H, W, 3) float32 (output of :func:`render_mesh_views` and friends).

    Returns:
        (..., 3, H, W) float32 after CLIP's mean/std.

    Raises:
        ImageViewError: the last dimension is not 3.
    """
    if images.shape[-1] != 3:
        raise ImageViewError(f"expected channels-last RGB images (..., H, W, 3), got shape {tuple(images.shape)}")
    mean = torch.tensor(CLIP_MEAN, dtype=images.dtype, device=images.device)
    std = torch.tensor(CLIP_STD, dtype=images.dtype, device=images.device)
    return ((images - mean) / std).movedim(-1, -3)
