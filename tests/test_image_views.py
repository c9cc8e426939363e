"""Tests of clip2point.render.image: RGB "CLIP image views" from the depth renderer's cameras.

The key property is alignment: image view v must show the object where depth view v shows it
(same view axes, same normalisation, same image convention: NDC +X = image left, +Y = up).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from clip2point.errors import Clip2PointError
from clip2point.io import PointCloud, load_mesh, load_point_cloud, sample_surface
from clip2point.errors import ImageViewError
from clip2point.io import normalize_mesh
from clip2point.render import (
    DepthRenderer, RasterSettings, ViewSet, camera_centers, image_views, look_at_rotation, rasterize_point_indices,
    rasterize_points, render_depth, render_mesh_views, render_point_views, rgb_clip_input, view_light_directions,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
MN40_PARTIAL_TEST = ROOT.parent / "shared" / "data" / "modelnet40_partial" / "modelnet40nr_airplane_bathtub_2048_test.h5"
needs_mn40 = pytest.mark.skipif(not MN40_PARTIAL_TEST.exists(), reason=f"real ModelNet40 data not found at {MN40_PARTIAL_TEST}")

RED, BLUE, GREY = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.6, 0.6, 0.6)


def _colored(parts: list[tuple[trimesh.Trimesh, tuple[float, float, float]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate (mesh, colour) parts into (vertices, faces, vertex colours)."""
    verts, faces, cols, off = [], [], [], 0
    for m, c in parts:
        verts.append(np.asarray(m.vertices, dtype=np.float64))
        faces.append(np.asarray(m.faces) + off)
        cols.append(np.tile(np.asarray(c, dtype=np.float32), (len(m.vertices), 1)))
        off += len(m.vertices)
    return np.concatenate(verts), np.concatenate(faces), np.concatenate(cols)


def _asymmetric_mesh() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A grey box with a red bump on +Y (top) and a blue bump on +X."""
    body = trimesh.creation.box((1.0, 0.6, 0.5))
    top = trimesh.creation.box((0.2, 0.3, 0.2))
    top.apply_translation((0.0, 0.44, 0.0))
    side = trimesh.creation.box((0.3, 0.2, 0.2))
    side.apply_translation((0.64, 0.0, 0.0))
    return _colored([(body, GREY), (top, RED), (side, BLUE)])


def _sphere() -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=4)


def _fg(images: torch.Tensor) -> torch.Tensor:
    """Foreground mask of RGB images (anything not exactly white)."""
    return (images < 1.0).any(dim=-1)


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)


def _color_centroid(images: torch.Tensor, channel: int) -> tuple[float, float]:
    """(row, col) centroid of pixels dominated by one channel (red: 0, blue: 2)."""
    others = [c for c in range(3) if c != channel]
    mask = (images[..., channel] > 0.25) & (images[..., others[0]] < 0.1) & (images[..., others[1]] < 0.1)
    rows, cols = torch.nonzero(mask, as_tuple=True)
    assert len(rows) > 10, "coloured part not visible"
    return float(rows.float().mean()), float(cols.float().mean())


# --------------------------------------------------------------------------------------------
# basics


def test_shape_range_dtype_and_white_background():
    v, f, _ = _asymmetric_mesh()
    img = render_mesh_views((v, f), "10", 64)
    assert img.shape == (10, 64, 64, 3) and img.dtype == torch.float32
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
    fg = _fg(img)
    assert bool((img[~fg] == 1.0).all())
    assert bool((img[:, 0, 0] == 1.0).all()) and bool((img[:, -1, -1] == 1.0).all())  # corners: background
    cover = fg.float().mean(dim=(1, 2))
    assert bool((cover > 0.05).all()) and bool((cover < 0.9).all())
    assert float(img[fg].max()) < 0.999  # shaded grey, never white on the object
    six = render_mesh_views((v, f), "6", 32)
    assert six.shape == (6, 32, 32, 3)


@pytest.mark.parametrize("views", ["10", "6"])
def test_sphere_fills_the_60_degree_frustum_in_every_view(views):
    # A unit sphere at distance 2 subtends asin(1/2) = 30° = half the field of view: the disk
    # touches the image border, so its area is π/4 of the image.
    img = render_mesh_views(_sphere(), views, 96)
    fg = _fg(img).float()
    assert torch.allclose(fg.mean(dim=(1, 2)), torch.full((len(fg),), math.pi / 4), atol=0.012)


@pytest.mark.parametrize("projection", ["perspective", "orthographic"])
def test_sphere_is_a_centred_disk_of_the_expected_radius(projection):
    S, dist = 128, 2.0
    vs = ViewSet.custom([0, 90, 180, 225, 315, 0], [0, 0, 0, -45, 45, 90], dist)
    img = render_mesh_views(_sphere(), vs, S, projection=projection)
    if projection == "perspective":  # camera at 2·dist = 4: tan(asin(1/4)) / tan(30°) of the half-width
        ndc_radius = math.tan(math.asin(1.0 / (2.0 * dist))) / math.tan(math.radians(30.0))
    else:  # orthographic like the depth camera: the world is scaled by 1/dist
        ndc_radius = 1.0 / dist
    expected_px = ndc_radius * S / 2
    fg = _fg(img)
    for v in range(len(vs)):
        rows, cols = torch.nonzero(fg[v], as_tuple=True)
        radius = math.sqrt(len(rows) / math.pi)
        assert radius == pytest.approx(expected_px, rel=0.02), (v, radius, expected_px)
        assert float(rows.float().mean()) == pytest.approx((S - 1) / 2, abs=0.3)
        assert float(cols.float().mean()) == pytest.approx((S - 1) / 2, abs=0.3)


def test_normalisation_uses_surface_centroid_and_farthest_vertex():
    # A box tessellated very unevenly: the vertex mean is far off, the surface centroid is not.
    from trimesh.remesh import subdivide

    box = trimesh.creation.box((2.0, 1.0, 1.0))
    vertices, faces = box.vertices, box.faces
    for _ in range(4):  # refine only the +x half (T-junctions are fine: the surface is unchanged)
        plus_x = np.nonzero(vertices[faces].mean(axis=1)[:, 0] > 0.0)[0]
        vertices, faces = subdivide(vertices, faces, face_index=plus_x)
    assert vertices[np.unique(faces)].mean(axis=0)[0] > 0.3  # the vertex mean is biased to +x
    out, centre, scale = normalize_mesh(vertices + 5.0, faces)
    pts = sample_surface(vertices + 5.0, faces, 200_000, seed=0)
    assert np.allclose(centre, pts.mean(axis=0), atol=0.01) and np.allclose(centre, 5.0, atol=1e-9)
    assert scale == pytest.approx(math.sqrt(1.0 + 0.25 + 0.25), rel=1e-9)
    assert out.dtype == np.float32
    assert np.linalg.norm(out[np.unique(faces)], axis=1).max() == pytest.approx(1.0, abs=1e-6)


# --------------------------------------------------------------------------------------------
# alignment with the depth renderer


@pytest.mark.parametrize("views", ["10", "6"])
def test_orthographic_image_view_matches_depth_view_of_sampled_points(views):
    # In orthographic mode the RGB camera IS the depth camera (zoom 1/dist, same axes, same
    # pixel centres), so the foreground of the mesh's image view and of the depth view of points
    # sampled from that mesh must coincide up to sampling: the 0.02-NDC splats (1.3 px at 128²)
    # overhang the silhouette by about one pixel, so the mesh mask is dilated by one pixel
    # (3×3) before comparing; a sampled cloud also reaches only ~98 % of the farthest vertex.
    v, f, _ = _asymmetric_mesh()
    pts = sample_surface(v, f, 20_000, seed=0)
    depth_fg = render_depth(pts, views, image_size=128)[0] < 1.0
    img_fg = _fg(render_mesh_views((v, f), views, 128, projection="orthographic"))
    dilated = torch.nn.functional.max_pool2d(img_fg.float()[:, None], 3, stride=1, padding=1)[:, 0] > 0
    for k in range(len(depth_fg)):
        assert _iou(depth_fg[k], dilated[k]) > 0.93, k
        assert _iou(depth_fg[k], img_fg[k]) > 0.85, k  # even undilated
        assert float((img_fg[k] & ~depth_fg[k]).sum()) < 0.01 * float(img_fg[k].sum())  # mesh ⊂ splats


def test_perspective_front_view_matches_depth_view_up_to_the_perspective_scale():
    # The released RGB renders are perspective (camera at 2·dist, fov 60°): a point at view depth
    # ≈ 0 (the origin's plane) lands at NDC = view-x / (2·tan 30°) = 0.866·view-x, whereas the
    # orthographic depth camera puts it at view-x. For a thin plate facing the camera every point
    # lies near that plane, so the depth silhouette shrunk by 0.866 about the image centre must
    # match the perspective silhouette (IoU > 0.85; the plate's near face is ~2 % larger).
    plate = trimesh.creation.box((1.0, 0.6, 0.04))
    bump = trimesh.creation.box((0.25, 0.25, 0.04))
    bump.apply_translation((0.5, 0.35, 0.0))  # an L-ish outline, not symmetric
    mesh = trimesh.util.concatenate([plate, bump])
    S = 128
    vs = ViewSet.custom([0, 0], [0, 180])
    pts = sample_surface(mesh.vertices, mesh.faces, 20_000, seed=0)
    depth_fg = render_depth(pts, vs, image_size=S)[0] < 1.0
    persp_fg = _fg(render_mesh_views(mesh, vs, S))
    k = 1.0 / (2.0 * math.tan(math.radians(30.0)))
    ndc = 1.0 - (2.0 * torch.arange(S) + 1.0) / S
    src = torch.round(((1.0 - ndc / k) * S - 1.0) / 2.0).long()  # pixel whose NDC is ndc / k
    inside = (src >= 0) & (src < S)
    src = src.clamp(0, S - 1)
    for v in range(2):
        predicted = depth_fg[v][src][:, src] & inside[:, None] & inside[None, :]
        assert _iou(predicted, persp_fg[v]) > 0.85, v


@pytest.mark.parametrize("projection", ["perspective", "orthographic"])
def test_orientation_top_and_right_agree_with_the_depth_renderer(projection):
    # View 0 looks at the front (camera on +Z): +Y is up and +X on the image's RIGHT (view +x =
    # world −x points to the image's left). The red (+Y) and blue (+X) bumps must land where the
    # depth renderer projects the sampled points of those bumps.
    v, f, c = _asymmetric_mesh()
    S = 128
    img = render_mesh_views((v, f, c), "10", S, projection=projection)
    assert img.shape == (10, S, S, 3)
    red_r, red_c = _color_centroid(img[0], 0)
    blue_r, blue_c = _color_centroid(img[0], 2)
    assert red_r < S / 2 - 10 and abs(red_c - S / 2) < 12
    assert blue_c > S / 2 + 10 and abs(blue_r - S / 2) < 12
    # Where does the depth renderer put the bumps?  Project the sampled points of each bump.
    pts, face = _sample_with_faces(v, f, 30_000)
    vp = DepthRenderer("10").view_points(pts)[0]  # (V, N, 3): x, y in NDC
    part = c[f[face, 0]]
    views = [0, 1, 2, 3, 8, 9] if projection == "orthographic" else [0, 2, 8, 9]
    for view in views:
        for channel in (0, 2):
            sel = torch.from_numpy(part[:, channel] == 1.0)
            visible = _visible(vp[view], sel, S)
            if visible is None:
                continue  # that bump is hidden in this view
            got = _color_centroid(img[view], channel)
            if projection == "orthographic":
                assert got == pytest.approx(visible, abs=2.5), (view, channel)
            else:  # perspective shrinks about the centre: same side of the centre on each axis
                for g, e in zip(got, visible):
                    if abs(e - (S - 1) / 2) > 8:
                        assert (g - (S - 1) / 2) * (e - (S - 1) / 2) > 0, (view, channel, got, visible)


def _sample_with_faces(v: np.ndarray, f: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    mesh = trimesh.Trimesh(v, f, process=False)
    pts, face = trimesh.sample.sample_surface(mesh, n, seed=0)
    return pts.astype(np.float32), face


def _visible(view_points: torch.Tensor, sel: torch.Tensor, S: int) -> tuple[float, float] | None:
    """(row, col) centroid of the selected points that win the depth z-buffer, or None."""
    _, index = rasterize_point_indices(view_points[None, None], S, 0.02)
    win = index[0, 0]
    hit = (win >= 0) & sel[win.clamp(min=0)]
    rows, cols = torch.nonzero(hit, as_tuple=True)
    if len(rows) < 30:
        return None
    return float(rows.float().mean()), float(cols.float().mean())


def test_point_views_share_the_depth_foreground_pixel_for_pixel():
    v, f, _ = _asymmetric_mesh()
    pts = sample_surface(v, f, 3000, seed=1)
    depth = render_depth(pts, "10", image_size=96)[0]
    img = render_point_views(pts, views="10", image_size=96)
    assert img.shape == (10, 96, 96, 3)
    assert torch.equal(_fg(img), depth < 1.0)


def test_index_rasterizer_matches_the_depth_rasterizer():
    g = torch.Generator().manual_seed(0)
    vp = torch.rand((2, 3, 500, 3), generator=g) * 2 - 1
    vp[..., 2] += 0.5  # some negative depths stay: they must be skipped by both
    zbuf, index = rasterize_point_indices(vp, 48, 0.05)
    ref = rasterize_points(vp, RasterSettings(image_size=48, radius=0.05)).zbuf
    assert torch.equal(zbuf, ref)
    assert bool(((index >= 0) == (ref >= 0)).all())
    won = index >= 0
    b, v = torch.nonzero(won, as_tuple=True)[:2]
    assert torch.equal(vp[b, v, index[won], 2], zbuf[won])  # the winner has the pixel's depth


# --------------------------------------------------------------------------------------------
# colours, normals, light


def test_point_colours_come_through():
    v, f, c = _asymmetric_mesh()
    pts, face = _sample_with_faces(v, f, 20_000)
    colors = c[f[face, 0]]
    img = render_point_views(pts, colors=colors, views="10", image_size=128)
    fg = _fg(img)
    palette = torch.tensor([RED, BLUE, GREY])
    px = img[fg]
    assert bool((torch.cdist(px, palette).amin(dim=1) < 1e-6).all())  # only the given colours, unlit
    # the coloured bumps sit where the (orthographic) mesh image view puts them
    mesh_img = render_mesh_views((v, f, c), "10", 128, projection="orthographic")
    for channel in (0, 2):
        assert _color_centroid(img[0], channel) == pytest.approx(_color_centroid(mesh_img[0], channel), abs=2.0)
    as255 = render_point_views(pts, colors=colors * 255, views="6", image_size=64)
    assert torch.allclose(as255, render_point_views(pts, colors=colors, views="6", image_size=64), atol=1e-6)


def test_vertex_colours_are_interpolated_barycentrically():
    # One triangle, vertex colours red / green / blue: each corner region is dominated by its colour.
    v = np.array([[-0.8, -0.6, 0.0], [0.8, -0.6, 0.0], [0.0, 0.8, 0.0]])
    f = np.array([[0, 1, 2]])
    c = np.eye(3, dtype=np.float32)
    img = render_mesh_views((v, f, c), ViewSet.custom([0], [0]), 96, projection="orthographic", normalize=False)[0]
    S = 96

    def pixel(x, y):  # world point (x, y, 0) in view 0: NDC x = −x (image left = +view x = −world x)
        j = round(((1.0 + x) * S - 1) / 2)
        i = round(((1.0 - y) * S - 1) / 2)
        return img[i, j]

    for corner, channel in ((v[0] * 0.85 + v.mean(0) * 0.15, 0), (v[1] * 0.85 + v.mean(0) * 0.15, 1), (v[2] * 0.85 + v.mean(0) * 0.15, 2)):
        rgb = pixel(corner[0], corner[1])
        assert int(torch.argmax(rgb)) == channel, (corner, rgb)
    no_colors = render_mesh_views((v, f, c), ViewSet.custom([0], [0]), 32, use_vertex_colors=False)[0]
    fg = _fg(no_colors)
    assert torch.allclose(no_colors[fg][:, 0], no_colors[fg][:, 2])  # neutral grey


def test_two_sided_lambert_shading_follows_the_light():
    plate = trimesh.creation.box((1.0, 1.0, 0.02))
    vs = ViewSet.custom([0, 0], [0, 180])
    front_lit = render_mesh_views(plate, vs, 32, light_dir=(0.0, 0.0, -1.0))
    grazing = render_mesh_views(plate, vs, 32, light_dir=(1.0, 0.0, 0.0))
    c = 16
    assert float(front_lit[0, c, c, 0]) > float(grazing[0, c, c, 0]) + 0.3
    assert torch.allclose(front_lit[0, c, c], front_lit[1, c, c], atol=1e-5)  # both faces lit alike
    flipped = (plate.vertices, plate.faces[:, ::-1])  # inward normals: two-sided shading ignores it
    assert torch.allclose(render_mesh_views(flipped, vs, 32, light_dir=(0.0, 0.0, -1.0)), front_lit, atol=1e-5)


def test_light_directions_default_seeded_and_custom():
    default = view_light_directions(10)
    assert default.shape == (10, 3) and np.allclose(default, default[0])
    assert default[0, 0] > 0 and default[0, 1] > 0 and default[0, 2] < 0  # upper-left, in front
    a, b = view_light_directions(10, seed=3), view_light_directions(10, seed=3)
    assert np.array_equal(a, b) and not np.allclose(a, a[0])
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0) and (a[:, 2] <= -0.25).all()
    mesh = _sphere()
    r1 = render_mesh_views(mesh, "6", 48, seed=3)
    assert torch.equal(r1, render_mesh_views(mesh, "6", 48, seed=3))
    assert not torch.equal(r1, render_mesh_views(mesh, "6", 48, seed=4))
    assert torch.equal(_fg(r1), _fg(render_mesh_views(mesh, "6", 48)))  # light never changes the mask
    per_view = view_light_directions(2, [[0, 0, -2.0], [1.0, 0, 0]])
    assert np.allclose(per_view, [[0, 0, -1], [1, 0, 0]])


@needs_mn40
def test_real_modelnet_shape_renders_with_normal_shading():
    import h5py

    with h5py.File(MN40_PARTIAL_TEST, "r") as fh:
        points, normals = fh["data"][0], fh["normal"][0]
    img = render_point_views(points, normals=normals, views="10", image_size=224)
    depth = render_depth(points, "10")[0]
    fg = _fg(img)
    assert torch.equal(fg, depth < 1.0)
    assert bool((fg.float().mean(dim=(1, 2)) > 0.01).all())
    grey = img[fg][:, 0]
    assert float(grey.std()) > 0.04  # shading varies with the normals
    assert float(grey.min()) >= 0.72 * 0.35 - 1e-4  # never darker than ambient
    flat = render_point_views(points, views="10", image_size=224)  # depth cue instead
    assert torch.equal(_fg(flat), fg) and not torch.allclose(flat, img)
    # brightness follows n·l for the winning point of each pixel (view 0, default light, two-sided)
    _, index = rasterize_point_indices(DepthRenderer("10").view_points(points), 224, 0.02)
    rot = look_at_rotation(camera_centers(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([1.0])))[0].double().numpy()
    light = view_light_directions(1)[0] @ rot
    win = index[0, 0][fg[0]].numpy()
    n = normals[win] / np.linalg.norm(normals[win], axis=1, keepdims=True)
    n = np.where((n @ rot[2] > 0)[:, None], -n, n)
    ndotl = np.clip(n @ light, 0, None)
    assert np.corrcoef(ndotl, img[0][fg[0]][:, 0].numpy())[0, 1] > 0.9


# --------------------------------------------------------------------------------------------
# entry point, batching, CLIP input, errors, speed


def test_image_views_dispatches_meshes_and_point_clouds(tmp_path):
    mesh_img = image_views(EXAMPLES / "meshes" / "chair.ply", "6", 64)
    pts_img = image_views(EXAMPLES / "points" / "chair.ply", "6", 64)
    assert mesh_img.shape == pts_img.shape == (6, 64, 64, 3)
    fg = _fg(mesh_img)
    brownish = mesh_img[fg]
    assert float((brownish[:, 0] - brownish[:, 2]).mean()) > 0.05  # the chair's wood colour came through
    cloud_pts = load_point_cloud(EXAMPLES / "points" / "chair.ply", num_points=None).points
    assert torch.equal(_fg(pts_img), render_depth(cloud_pts, "6", image_size=64)[0] < 1)
    mesh = load_mesh(EXAMPLES / "meshes" / "chair.ply")
    assert torch.equal(image_views(mesh, "6", 64), mesh_img)
    assert torch.equal(image_views((mesh.vertices, mesh.faces, mesh.vertex_colors), "6", 64), mesh_img)
    assert torch.equal(image_views(trimesh.Trimesh(mesh.vertices, mesh.faces, process=False), "6", 64), render_mesh_views(
        (mesh.vertices, mesh.faces), "6", 64))
    pts = np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32)
    assert image_views(pts, "6", 32).shape == (6, 32, 32, 3)
    cloud = PointCloud(pts, np.full_like(pts, 0.5), None, "mem")
    assert torch.allclose(image_views(cloud, "6", 32)[_fg(image_views(cloud, "6", 32))], torch.tensor(0.5))
    obj = tmp_path / "tri.obj"
    obj.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    assert _fg(image_views(obj, "6", 32)).any()


def test_batching_over_meshes_and_point_clouds():
    v, f, c = _asymmetric_mesh()
    sphere = _sphere()
    batch = render_mesh_views([(v, f, c), sphere], "6", 32)
    assert batch.shape == (2, 6, 32, 32, 3)
    assert torch.equal(batch[1], render_mesh_views(sphere, "6", 32))
    pts = np.stack([sample_surface(v, f, 800, seed=s) for s in (0, 1)])
    many = render_point_views(pts, views="6", image_size=32)
    assert many.shape == (2, 6, 32, 32, 3)
    assert torch.equal(many[1], render_point_views(pts[1], views="6", image_size=32))


def test_antialiasing_and_clip_input():
    img = render_mesh_views(_sphere(), "6", 32, antialias=3)
    assert img.shape == (6, 32, 32, 3) and float(img.min()) >= 0 and float(img.max()) <= 1
    edge = img[..., 0][(img[..., 0] > 0.9) & (img[..., 0] < 0.999)]
    assert len(edge) > 0  # partially covered pixels blend with the background
    x = rgb_clip_input(img)
    assert x.shape == (6, 3, 32, 32)
    assert float(x[0, 0, 0, 0]) == pytest.approx((1.0 - 0.48145466) / 0.26862954, rel=1e-6)


@pytest.mark.parametrize(
    "mesh, match",
    [
        ((np.zeros((3, 3)), np.array([[0, 1, 2]])), "zero area"),
        ((np.eye(3), np.array([[0, 1, 5]])), "indices"),
        ((np.eye(3), np.array([[0.0, 1.0, 2.0]])), "integer"),
        ((np.array([[0, 0, np.nan], [1, 0, 0], [0, 1, 0]]), np.array([[0, 1, 2]])), "NaN"),
        ((np.eye(3), np.array([[0, 1, 2]]), np.ones((2, 3))), "colours"),
        ("not a mesh", "expected a mesh"),
        ([], "empty list"),
    ],
)
def test_bad_meshes_raise_clear_errors(mesh, match):
    with pytest.raises(ImageViewError, match=match):
        render_mesh_views(mesh, "6", 16)


def test_bad_settings_raise_clear_errors():
    tri = (np.eye(3), np.array([[0, 1, 2]]))
    assert issubclass(ImageViewError, Clip2PointError)
    with pytest.raises(ImageViewError, match="projection"):
        render_mesh_views(tri, "6", 16, projection="fisheye")
    with pytest.raises(ImageViewError, match="light_dir"):
        render_mesh_views(tri, "6", 16, light_dir=(0, 0))
    with pytest.raises(ImageViewError, match="zero length"):
        render_mesh_views(tri, "6", 16, light_dir=(0, 0, 0))
    with pytest.raises(ImageViewError, match="image_size"):
        render_mesh_views(tri, "6", 0)
    with pytest.raises(Clip2PointError, match="view set"):
        render_mesh_views(tri, "7", 16)
    pts = np.random.default_rng(0).normal(size=(50, 3))
    with pytest.raises(ImageViewError, match="colors"):
        render_point_views(pts, colors=np.ones((49, 3)))
    with pytest.raises(ImageViewError, match="normals"):
        render_point_views(pts, normals=np.full((50, 3), np.nan))
    with pytest.raises(Clip2PointError, match="NaN"):
        render_point_views(np.full((5, 3), np.nan))
    with pytest.raises(ImageViewError, match="channels-last"):
        rgb_clip_input(torch.zeros(2, 3, 8, 8))


def test_ten_views_of_a_10k_triangle_mesh_render_quickly():
    mesh = trimesh.creation.torus(1.0, 0.3, major_sections=100, minor_sections=50)
    assert len(mesh.faces) == 10_000
    render_mesh_views(mesh, "10", 224)  # warm-up (open3d import, thread pool)
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        img = render_mesh_views(mesh, "10", 224)
        best = min(best, time.perf_counter() - start)
    assert img.shape == (10, 224, 224, 3)
    assert best < 1.0, f"10 views at 224² took {best:.2f} s"
