"""Depth rendering (REFERENCE §2): a brute-force reference, known pictures, batching, errors."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from clip2point.errors import Clip2PointError
from clip2point.render import (
    VIEW_SETS, Cameras, DepthRenderer, RasterSettings, ViewSet, camera_centers, depth_to_image, look_at_rotation,
    rasterize_points, render_depth, world_to_view,
)
from clip2point.render.shading import FOREGROUND_SCALE
from helpers import modelnet10_test, needs_data


def reference_zbuf(view_points: np.ndarray, size: int, radius: float) -> np.ndarray:
    """Slow reference rasterizer, straight from the definition: loop over every pixel, test every point.

    view_points: (V, N, 3) float32. Pixel (i, j) has NDC centre x = -1 + (2(W-1-j)+1)/W, y likewise
    (pytorch3d's kernel on the flipped index, float32); it keeps the smallest depth z >= 0 among points
    with dx² + dy² < r², else -1.
    """
    vp = view_points.astype(np.float32)
    one, two, S, r2 = np.float32(1), np.float32(2), np.float32(size), np.float32(radius) * np.float32(radius)
    out = np.full((vp.shape[0], size, size), -1.0, dtype=np.float32)
    for v in range(vp.shape[0]):
        x, y, z = vp[v, :, 0], vp[v, :, 1], vp[v, :, 2]
        for i in range(size):
            yc = -one + (two * np.float32(size - 1 - i) + one) / S
            for j in range(size):
                xc = -one + (two * np.float32(size - 1 - j) + one) / S
                d2 = (xc - x) ** 2 + (yc - y) ** 2
                ok = (d2 < r2) & (z >= 0)
                if ok.any():
                    out[v, i, j] = z[ok].min()
    return out


def reference_view_axes(elev_deg: float, azim_deg: float) -> np.ndarray:
    """float64 look-at axes for a non-degenerate camera (rows x, y, z), up = +Y."""
    e, a = math.radians(elev_deg), math.radians(azim_deg)
    c = np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])
    z = -c / np.linalg.norm(c)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z])


def render_one(points, views="6", size=224, radius=0.02) -> torch.Tensor:
    return render_depth(torch.tensor(points, dtype=torch.float32), views=views, image_size=size, radius=radius)[0]


# ---------------------------------------------------------------- rasterizer vs reference

@pytest.mark.parametrize("size,radius", [(24, 0.12), (32, 0.07), (17, 0.2)])
def test_rasterizer_matches_brute_force_reference_pixel_for_pixel(size, radius):
    rng = np.random.default_rng(size)
    pts = rng.uniform(-1, 1, (1, 60, 3)).astype(np.float32)
    pts[0, :5] *= 1.3  # some points off the image edges
    renderer = DepthRenderer("10", RasterSettings(size, radius))
    vp = renderer.view_points(torch.from_numpy(pts))
    vp[..., :10, 2] -= 2.5  # some points behind the camera (negative depth): never drawn
    ours = rasterize_points(vp, RasterSettings(size, radius)).zbuf[0].numpy()
    ref = reference_zbuf(vp[0].numpy(), size, radius)
    assert (ref >= 0).any() and (ref < 0).any()
    np.testing.assert_array_equal(ours, ref)


@needs_data
def test_rasterizer_matches_reference_on_a_real_shape():
    pts, _ = modelnet10_test(1)
    settings = RasterSettings(40, 0.05)
    vp = DepthRenderer("6", settings).view_points(torch.from_numpy(pts[:, ::4]))
    np.testing.assert_array_equal(rasterize_points(vp, settings).zbuf[0].numpy(), reference_zbuf(vp[0].numpy(), 40, 0.05))


def test_chunked_equals_unchunked():
    pts = torch.rand(5, 300, 3) * 2 - 1
    big = DepthRenderer("10", RasterSettings(64, 0.03))(pts)
    small = DepthRenderer("10", RasterSettings(64, 0.03, max_elements=1))(pts)  # one map per chunk
    assert torch.equal(big, small)


def test_fragments_index_and_zmin_do_not_depend_on_chunking():
    g = torch.Generator().manual_seed(1)
    vp = torch.rand((3, 4, 400, 3), generator=g) * 2 - 1
    vp[..., 2] += 0.6  # some negative depths: skipped
    whole = rasterize_points(vp, RasterSettings(40, 0.06), with_index=True)
    tiny = rasterize_points(vp, RasterSettings(40, 0.06, max_elements=1), with_index=True)
    for a, b in zip(whole, tiny):
        assert torch.equal(a, b)
    assert rasterize_points(vp, RasterSettings(40, 0.06)).idx is None
    assert torch.equal(whole.zbuf, rasterize_points(vp, RasterSettings(40, 0.06)).zbuf)
    fg = whole.zbuf >= 0
    assert torch.equal(fg, whole.idx >= 0)
    expect = torch.where(fg, whole.zbuf, math.inf).amin(dim=(-2, -1))  # zmin: the nearest foreground depth
    assert torch.equal(whole.zmin, expect)
    b, v = torch.nonzero(fg, as_tuple=True)[:2]
    assert torch.equal(vp[b, v, whole.idx[fg], 2], whole.zbuf[fg])  # the winner has the pixel's depth


def test_per_sample_cameras_equal_a_custom_view_set():
    pts = torch.rand(3, 250, 3) * 2 - 1
    vs = VIEW_SETS["10"]
    view = torch.tensor([4, 0, 9])
    scale = torch.tensor([[1.05, 0.93], [1.0, 1.1], [0.9, 0.97]])
    cams = Cameras.from_views(vs)[view][:, None].scaled(scale)  # (3, 2)
    out = DepthRenderer(vs, RasterSettings(56, 0.04))(pts, cameras=cams)
    assert out.shape == (3, 2, 56, 56)
    for b in range(3):
        k = int(view[b])
        single = ViewSet.custom([vs.elev[k]] * 2, [vs.azim[k]] * 2, [vs.dist[k] * float(s) for s in scale[b]])
        assert torch.equal(out[b], DepthRenderer(single, RasterSettings(56, 0.04))(pts[b : b + 1])[0])
    with pytest.raises(Clip2PointError, match="cameras must have shape"):
        DepthRenderer(vs)(pts[:2], cameras=cams)
    with pytest.raises(Clip2PointError, match="dist_jitter"):
        DepthRenderer(vs)(pts, cameras=cams, dist_jitter=0.1)


def test_batched_equals_one_by_one():
    pts = torch.rand(4, 200, 3) * 2 - 1
    batch = render_depth(pts, image_size=48)
    singles = torch.cat([render_depth(p, image_size=48) for p in pts])
    assert torch.equal(batch, singles)


# ---------------------------------------------------------------- cameras

@pytest.mark.parametrize("name", ["6", "10"])
def test_view_axes_match_look_at_definition(name):
    vs = VIEW_SETS[name]
    rot = look_at_rotation(camera_centers(torch.tensor(vs.elev), torch.tensor(vs.azim), torch.tensor(vs.dist)))
    for r, e, a in zip(rot.numpy(), vs.elev, vs.azim):
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-5)  # orthonormal
        assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-5)  # right-handed
        if abs(math.cos(math.radians(e))) > 1e-3:  # non-degenerate: the textbook formula
            np.testing.assert_allclose(r, reference_view_axes(e, a), atol=1e-6)


def test_top_and_bottom_views_follow_pytorch3d_float32_rule():
    """Straight above/below, x = normalize(y × z) with y from the float32 residual of cos(90°)."""
    rot = look_at_rotation(camera_centers(torch.tensor([90.0, -90.0, 270.0]), torch.tensor([0.0, 180.0, 0.0]), torch.ones(3)))
    np.testing.assert_allclose(rot[0].numpy(), [[1, 0, 0], [0, 0, 1], [0, -1, 0]], atol=1e-6)  # top: +Z is image-up
    np.testing.assert_allclose(rot[1].numpy(), [[-1, 0, 0], [0, 0, 1], [0, 1, 0]], atol=1e-6)  # 6-view bottom
    np.testing.assert_allclose(rot[2].numpy(), [[-1, 0, 0], [0, 0, 1], [0, 1, 0]], atol=1e-6)  # 10-view bottom


def test_world_to_view_depth_is_distance_along_view_axis():
    c = camera_centers(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([1.0]))
    vp = world_to_view(torch.tensor([[[0.0, 0.0, 0.5], [0.3, -0.2, -1.0]]]), c, look_at_rotation(c))
    np.testing.assert_allclose(vp[0, 0].numpy(), [[-0.0, 0.0, 0.5], [-0.3, -0.2, 2.0]], atol=1e-6)


def test_view_set_presets_and_custom():
    assert len(VIEW_SETS["10"]) == 10 and len(VIEW_SETS["6"]) == 6
    assert VIEW_SETS["10"].elev[4:8] == (225.0, 225.0, 315.0, 315.0)  # released: oblique cameras below
    vs = ViewSet.custom([0, 30], [0, 45], 1.2)
    assert vs.dist == (1.2, 1.2) and vs.labels()[1] == "elev 30°, azim 45°"
    with pytest.raises(Clip2PointError):
        ViewSet.custom([0, 30], [0], 1.0)
    with pytest.raises(Clip2PointError, match="unknown view set"):
        render_depth(torch.rand(10, 3), views="7")


# ---------------------------------------------------------------- known pictures

def _fg_rows_cols(img: torch.Tensor):
    rows, cols = torch.nonzero(img < 1, as_tuple=True)
    return rows.float(), cols.float()


def test_point_above_origin_appears_at_top_of_view_0():
    pts = [[0, 1, 0], [0, -0.5, 0], [0, -0.5, 0]]  # centroid at the origin, one point above
    img = render_one(pts, views="6")[0]
    rows, _ = _fg_rows_cols(img)
    assert rows.min() <= 2 and 160 <= rows.max() <= 172  # +Y at the top, y=-0.5 at row ≈ 168


def test_plus_x_appears_on_the_right_of_the_front_view_and_nearest_in_the_side_view():
    pts = [[1, 0, 0], [-0.5, 0, 0], [-0.5, 0, 0]]
    front, side = render_one(pts, views="6")[:2]  # view 1: azim 90°, camera on +X
    _, cols = _fg_rows_cols(front)
    assert cols.max() >= 221 and 52 <= cols.min() <= 57  # x=+1 at the right edge, x=-0.5 at col ≈ 56
    assert torch.isclose(side[side < 1].min(), torch.tensor(0.0))  # the +X point is nearest: darkest


def test_top_view_puts_plus_z_at_the_top():
    pts = [[0, 0, 1], [0, 0, -0.5], [0, 0, -0.5]]
    top = render_one(pts, views="6")[4]
    rows, _ = _fg_rows_cols(top)
    assert rows.min() <= 2 and rows.max() >= 160


def test_near_surfaces_are_dark_and_background_is_white():
    pts = [[0.3, 0, 0.9], [-0.3, 0, -0.9], [0, 0.1, 0]]
    img = render_one(pts, views="6")[0]  # camera at +Z: z=0.9 is nearest; x=+0.3 lands at col ≈ 145
    near = img[100:125, 140:150][img[100:125, 140:150] < 1]
    far = img[100:125, 74:84][img[100:125, 74:84] < 1]
    assert near.numel() and far.numel() and near.max() < far.min()
    assert float(img.min()) == 0.0 and float(img[img < 1].max()) <= FOREGROUND_SCALE + 1e-6
    assert float((img == 1.0).float().mean()) > 0.95


def test_depth_to_image_formula():
    zbuf = torch.full((1, 4, 4), -1.0)
    zbuf[0, 0, 0], zbuf[0, 1, 1], zbuf[0, 2, 2] = 0.5, 1.5, 2.0
    img = depth_to_image(zbuf)[0]
    # zmin = min(0.5, 1) = 0.5, zmax = 2.0: (z - 0.5) / 2 * 200/255
    assert img[0, 0] == 0 and img[1, 1] == pytest.approx(0.5 * FOREGROUND_SCALE) and img[2, 2] == pytest.approx(0.75 * FOREGROUND_SCALE)
    assert img[3, 3] == 1.0
    assert torch.equal(depth_to_image(torch.full((2, 3, 3), -1.0)), torch.ones(2, 3, 3))  # empty map: white


# ---------------------------------------------------------------- invariances, options, errors

@needs_data
def test_render_is_invariant_to_point_order_translation_and_scale():
    pts, _ = modelnet10_test(2)
    base = render_depth(pts)
    perm = render_depth(pts[:, np.random.default_rng(0).permutation(pts.shape[1])])
    moved = render_depth(pts * 4.0 + np.float32([3.0, -2.0, 7.0]))
    for other in (perm, moved):  # float rounding may flip a rare pixel at a disk border
        assert ((other - base).abs() > 1e-4).float().mean() < 1e-4
        assert (other - base).abs().mean() < 1e-6


@needs_data
def test_real_shape_renders_in_all_views_with_sensible_coverage():
    pts, _ = modelnet10_test(3)
    img = render_depth(pts)
    assert img.shape == (3, 10, 224, 224) and img.dtype == torch.float32
    cover = (img < 1).float().mean(dim=(-2, -1))
    assert (cover > 0.02).all() and (cover < 0.6).all()
    assert float(img.min()) >= 0 and float(img.max()) == 1.0


def test_radius_and_image_size_parameters():
    pts = torch.rand(300, 3) * 2 - 1
    small = (render_depth(pts, radius=0.01) < 1).float().mean()
    large = (render_depth(pts, radius=0.04) < 1).float().mean()
    assert large > 2 * small
    assert render_depth(pts, image_size=96).shape == (1, 10, 96, 96)


def test_distance_jitter_zooms_and_is_reproducible():
    pts = torch.rand(2, 500, 3) * 2 - 1
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a = render_depth(pts, dist_jitter=0.1, generator=g1)
    b = render_depth(pts, dist_jitter=0.1, generator=g2)
    assert torch.equal(a, b) and not torch.equal(a, render_depth(pts))
    far = DepthRenderer(ViewSet.custom([0], [0], 1.5))(pts)  # dist acts as zoom: smaller silhouette
    near = DepthRenderer(ViewSet.custom([0], [0], 1.0))(pts)
    assert (far < 1).float().sum() < (near < 1).float().sum()


@pytest.mark.parametrize(
    "points,match",
    [
        (np.zeros((0, 3), np.float32), "empty"),
        (np.array([[0, 0, np.nan], [1, 0, 0]], np.float32), "NaN"),
        (np.ones((5, 3), np.float32), "distinct"),
        (np.ones((5, 2), np.float32), "shape"),
    ],
)
def test_bad_points_raise_clear_errors(points, match):
    with pytest.raises(Clip2PointError, match=match):
        render_depth(points)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"image_size": 0}, "image size"),
        ({"image_size": -3}, "image size"),
        ({"image_size": 2.5}, "whole number"),
        ({"image_size": 100_000}, "from 1 to 4096"),
        ({"image_size": "224"}, "image size"),
        ({"radius": 0}, "radius"),
        ({"radius": 5}, "between 0 and 2"),
        ({"radius": float("nan")}, "radius"),
        ({"max_elements": 0}, "max_elements"),
    ],
)
def test_settings_validation(kwargs, match):
    with pytest.raises(Clip2PointError, match=match) as err:  # a ValueError too, as before
        RasterSettings(**kwargs)
    assert isinstance(err.value, ValueError)
    assert RasterSettings(image_size=np.int64(32), radius=np.float32(0.05)).image_size == 32


def test_view_and_jitter_validation():
    from clip2point.render import ViewSet

    with pytest.raises(Clip2PointError, match="finite"):
        ViewSet.custom([0.0, float("inf")], [0.0, 90.0])
    with pytest.raises(Clip2PointError, match="numbers"):
        ViewSet.custom(["a"], [0.0])
    with pytest.raises(Clip2PointError, match="dist_jitter"):
        render_depth(np.random.default_rng(0).random((10, 3)), dist_jitter=1.5)


@pytest.mark.parametrize("option,value", [("--radius", "5"), ("--image-size", "0")])
def test_cli_render_bad_settings_give_one_line(tmp_path, option, value):
    import subprocess
    import sys

    cloud = tmp_path / "c.npy"
    np.save(cloud, np.random.default_rng(0).random((50, 3)).astype(np.float32))
    proc = subprocess.run(
        [sys.executable, "-m", "clip2point", "render", str(cloud), "-o", str(tmp_path / "out"), option, value],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert re.search("radius" if option == "--radius" else "image.size", lines[0]), lines[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu():
    pts = torch.rand(3, 1024, 3) * 2 - 1
    cpu = render_depth(pts)
    gpu = render_depth(pts.cuda())
    assert gpu.device.type == "cuda"
    assert (gpu.cpu() != cpu).float().mean() < 1e-3
