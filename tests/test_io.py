"""Tests of clip2point.io: readers, up-axis mapping, mesh sampling, FPS and every error path."""
from __future__ import annotations

import logging
import os
import pickle
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest

from clip2point.errors import Clip2PointError, PointCloudFileError, UnsupportedFormatError
from clip2point.io import (
    DEFAULT_MESH_POINTS,
    SUPPORTED_MESH_EXTENSIONS,
    SUPPORTED_POINT_EXTENSIONS,
    PointCloud,
    convert_up_axis,
    farthest_point_sample,
    load_mesh,
    load_point_cloud,
    sample_surface,
    subsample,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MN10_TEST = SHARED / "modelnet10" / "modelnet10_pcd1024_test.h5"
MN40_TEST = SHARED / "modelnet40_partial" / "modelnet40nr_airplane_bathtub_2048_test.h5"
needs_mn10 = pytest.mark.skipif(not MN10_TEST.is_file(), reason=f"shared ModelNet10 data not found at {MN10_TEST}")
needs_mn40 = pytest.mark.skipif(not MN40_TEST.is_file(), reason=f"shared ModelNet40 data not found at {MN40_TEST}")


def z_to_y(p: np.ndarray) -> np.ndarray:
    """The documented z-up -> y-up map (x, y, z) -> (-y, z, -x), written out independently."""
    return np.stack([-p[..., 1], p[..., 2], -p[..., 0]], axis=-1)


def write_ply(path: Path, points: np.ndarray, normals=None, colors_u8=None, faces=None) -> Path:
    """A binary little-endian PLY writer independent of the code under test."""
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")] if normals is not None else []
    fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")] if colors_u8 is not None else []
    vertex = np.empty(len(points), dtype=fields)
    vertex["x"], vertex["y"], vertex["z"] = points.T
    if normals is not None:
        vertex["nx"], vertex["ny"], vertex["nz"] = normals.T
    if colors_u8 is not None:
        vertex["red"], vertex["green"], vertex["blue"] = colors_u8.T
    types = {"<f4": "float", "u1": "uchar"}
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(points)}"]
    header += [f"property {types[t]} {name}" for name, t in fields]
    body = vertex.tobytes()
    if faces is not None:
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
        face = np.empty(len(faces), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
        face["n"], face["idx"] = 3, faces
        body += face.tobytes()
    path.write_bytes(("\n".join(header) + "\nend_header\n").encode() + body)
    return path


def write_points(path: Path, points: np.ndarray) -> Path:
    """Write (N, 3) float32 points in the format given by ``path``'s extension."""
    ext = path.suffix
    if ext == ".ply":
        return write_ply(path, points)
    if ext in (".pcd", ".xyz"):
        import open3d as o3d

        o3d.io.write_point_cloud(str(path), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(float))))
    elif ext == ".txt":  # tab-separated, with a header and a comment
        np.savetxt(path, points, fmt="%.9g", delimiter="\t", header="x\ty\tz\n# exported by a test", comments="")
    elif ext == ".csv":
        np.savetxt(path, points, fmt="%.9g", delimiter=",", header="x,y,z", comments="")
    elif ext == ".npy":
        np.save(path, points)
    elif ext == ".npz":
        np.savez(path, points=points, label=np.array([3]))
    elif ext == ".h5":
        with h5py.File(path, "w") as f:
            f["data"] = np.stack([points[::-1], points])  # the shape under test is index 1
    return path


@pytest.fixture(scope="module")
def mn10_shape() -> np.ndarray:
    """One real ModelNet10 shape: (1024, 3) float32, raw OFF units, z-up."""
    if not MN10_TEST.is_file():
        pytest.skip(f"shared ModelNet10 data not found at {MN10_TEST}")
    with h5py.File(MN10_TEST, "r") as f:
        return f["data"][7]


@pytest.fixture(scope="module")
def mn40() -> tuple[np.ndarray, np.ndarray]:
    """A real ModelNet40 shape (2048, 3) with its unit normals (2048, 3), y-up."""
    if not MN40_TEST.is_file():
        pytest.skip(f"shared ModelNet40 data not found at {MN40_TEST}")
    with h5py.File(MN40_TEST, "r") as f:
        return f["data"][3], f["normal"][3]


# ---------------------------------------------------------------------------------------------
# readers on real data


@needs_mn10
@pytest.mark.parametrize("ext", [".ply", ".pcd", ".xyz", ".txt", ".csv", ".npy", ".npz", ".h5"])
def test_every_reader_returns_the_same_points(tmp_path, mn10_shape, ext):
    path = write_points(tmp_path / f"shape{ext}", mn10_shape)
    index = 1 if ext == ".h5" else 0
    cloud = load_point_cloud(path, num_points=None, index=index)
    assert isinstance(cloud, PointCloud) and not cloud.is_mesh
    assert cloud.points.dtype == np.float32 and cloud.points.shape == (1024, 3)
    np.testing.assert_allclose(cloud.points, mn10_shape, rtol=1e-6, atol=1e-5)
    assert len(cloud) == cloud.num_input_points == 1024
    assert cloud.source == (f"{path}#1" if ext == ".h5" else str(path))

    z_up = load_point_cloud(path, num_points=None, up="z", index=index)
    np.testing.assert_allclose(z_up.points, z_to_y(mn10_shape), rtol=1e-6, atol=1e-5)


@needs_mn10
def test_shared_h5_index_picks_the_shape(mn10_shape):
    cloud = load_point_cloud(MN10_TEST, num_points=None, index=7, up="z")
    np.testing.assert_array_equal(cloud.points, z_to_y(mn10_shape))
    assert cloud.source.endswith("#7")
    with pytest.raises(PointCloudFileError, match=r"908 shape") as err:
        load_point_cloud(MN10_TEST, index=908)
    assert MN10_TEST.name in str(err.value)


@needs_mn40
def test_h5_normals_are_kept_subsampled_and_rotated(mn40):
    points, normals = mn40
    cloud = load_point_cloud(MN40_TEST, num_points=512, index=3)
    idx = subsample(points, 512, "fps", seed=0)
    np.testing.assert_array_equal(cloud.points, points[idx])
    np.testing.assert_allclose(cloud.normals, normals[idx], atol=1e-4)  # the file's are unit to 1e-4
    np.testing.assert_allclose(np.linalg.norm(cloud.normals, axis=1), 1.0, atol=1e-6)
    z_up = load_point_cloud(MN40_TEST, num_points=512, index=3, up="z")
    np.testing.assert_allclose(z_up.normals, z_to_y(cloud.normals), atol=1e-6)


@needs_mn40
def test_six_column_text_with_unit_vectors_gives_normals(tmp_path, mn40):
    points, normals = mn40
    path = tmp_path / "airplane.txt"  # the modelnet40_normal_resampled layout: x,y,z,nx,ny,nz
    np.savetxt(path, np.hstack([points, normals]), fmt="%.6f", delimiter=",")
    cloud = load_point_cloud(path, num_points=None)
    assert cloud.colors is None
    np.testing.assert_allclose(cloud.normals, normals, atol=1e-4)  # renormalised to unit length
    np.testing.assert_allclose(cloud.points, points, atol=1e-5)


@pytest.mark.parametrize("scale", [255, 1])
def test_six_columns_in_colour_range_give_colours(tmp_path, scale):
    rng = np.random.default_rng(0)
    xyz = rng.standard_normal((100, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (100, 3)) / 255.0
    path = tmp_path / "coloured.npy"
    np.save(path, np.hstack([xyz, rgb * scale]).astype(np.float32))
    cloud = load_point_cloud(path, num_points=None)
    assert cloud.normals is None
    np.testing.assert_allclose(cloud.colors, rgb, atol=1e-5)
    assert cloud.colors.dtype == np.float32


def test_six_columns_of_anything_else_are_ignored_with_a_warning(tmp_path, caplog):
    rng = np.random.default_rng(0)
    path = tmp_path / "odd.csv"
    np.savetxt(path, rng.standard_normal((50, 6)) * 500, delimiter=",")
    with caplog.at_level(logging.WARNING, logger="clip2point.io"):
        cloud = load_point_cloud(path, num_points=None)
    assert cloud.colors is None and cloud.normals is None and cloud.points.shape == (50, 3)
    assert "odd.csv" in caplog.text and "ignoring" in caplog.text


def test_ply_colours_and_normals(tmp_path):
    rng = np.random.default_rng(1)
    pts = rng.standard_normal((300, 3)).astype(np.float32)
    nrm = pts / np.linalg.norm(pts, axis=1, keepdims=True)
    rgb = rng.integers(0, 256, (300, 3)).astype(np.uint8)
    cloud = load_point_cloud(write_ply(tmp_path / "c.ply", pts, nrm, rgb), num_points=None, up="z")
    np.testing.assert_allclose(cloud.colors, rgb / 255.0, atol=1e-6)  # colours never rotate
    np.testing.assert_allclose(cloud.normals, z_to_y(nrm), atol=1e-6)
    np.testing.assert_allclose(cloud.points, z_to_y(pts))


def test_npz_key_choice(tmp_path):
    pts = np.random.default_rng(2).standard_normal((20, 3)).astype(np.float32)
    np.savez(tmp_path / "xyz.npz", xyz=pts, other=np.zeros(4))
    np.savez(tmp_path / "only.npz", pts)  # stored as "arr_0"
    np.savez(tmp_path / "ambiguous.npz", a=pts, b=pts)
    np.testing.assert_array_equal(load_point_cloud(tmp_path / "xyz.npz", None).points, pts)
    np.testing.assert_array_equal(load_point_cloud(tmp_path / "only.npz", None).points, pts)
    with pytest.raises(PointCloudFileError, match=r"ambiguous\.npz.*\['a', 'b'\]"):
        load_point_cloud(tmp_path / "ambiguous.npz")
    with pytest.raises(PointCloudFileError, match=r"xyz\.npz.*holds 1 shape"):
        load_point_cloud(tmp_path / "xyz.npz", index=1)
    unit = pts / np.linalg.norm(pts, axis=1, keepdims=True)
    np.savez(tmp_path / "extras.npz", points=pts, normals=unit, colors=np.full((20, 3), 255, np.uint8))
    cloud = load_point_cloud(tmp_path / "extras.npz", None, up="z")
    np.testing.assert_allclose(cloud.normals, z_to_y(unit), atol=1e-6)
    np.testing.assert_array_equal(cloud.colors, np.ones((20, 3), np.float32))


def test_las_points_and_16_bit_colours(tmp_path):
    laspy = pytest.importorskip("laspy")
    header = laspy.LasHeader(point_format=2, version="1.2")
    header.scales = [0.001] * 3
    las = laspy.LasData(header)
    las.x, las.y, las.z = np.arange(10.0), np.arange(10.0) * 2, np.ones(10)
    las.red = las.green = las.blue = np.arange(10) * 6000
    las.write(tmp_path / "scan.las")
    cloud = load_point_cloud(tmp_path / "scan.las", num_points=None)
    np.testing.assert_allclose(cloud.points, np.stack([np.arange(10.0), np.arange(10.0) * 2, np.ones(10)], 1))
    np.testing.assert_allclose(cloud.colors[:, 0], np.arange(10) * 6000 / 65535, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# meshes


BOX_EXTENTS = np.array([2.0, 1.0, 0.5])


@pytest.fixture(scope="module")
def box():
    trimesh = pytest.importorskip("trimesh")
    return trimesh.creation.box(extents=BOX_EXTENTS)


def write_box(path: Path, box) -> Path:
    if path.suffix == ".off":  # ModelNet's malformed header: "OFF" merged with the counts
        lines = [f"OFF{len(box.vertices)} {len(box.faces)} 0"]
        lines += [" ".join(f"{c:g}" for c in v) for v in box.vertices]
        lines += ["3 " + " ".join(map(str, f)) for f in box.faces]
        path.write_text("\n".join(lines) + "\n")
    elif path.suffix == ".ply":
        write_ply(path, np.asarray(box.vertices, dtype=np.float32), faces=np.asarray(box.faces))
    else:
        box.export(path)
    return path


def on_box_surface(points: np.ndarray, tol: float = 1e-5) -> np.ndarray:
    half = BOX_EXTENTS / 2
    inside = np.all(np.abs(points) <= half + tol, axis=1)
    on_a_face = np.any(np.abs(np.abs(points) - half) <= tol, axis=1)
    return inside & on_a_face


@pytest.mark.parametrize("ext", [".off", ".obj", ".stl", ".ply", ".glb"])
def test_mesh_files_are_sampled_on_their_surface(tmp_path, box, ext):
    path = write_box(tmp_path / f"box{ext}", box)
    cloud = load_point_cloud(path, num_points=512)
    assert cloud.is_mesh and cloud.points.shape == (512, 3) and cloud.points.dtype == np.float32
    assert on_box_surface(cloud.points).all()
    # face normals point along an axis, outwards
    assert np.allclose(np.abs(cloud.normals).max(axis=1), 1.0, atol=1e-6)
    assert (np.sum(cloud.normals * cloud.points, axis=1) > 0).all()
    # every face of the box gets samples (FPS spreads them)
    assert len({tuple(n) for n in np.round(cloud.normals).astype(int)}) == 6

    mesh = load_mesh(path)
    assert mesh.faces.dtype == np.int64 and mesh.faces.shape == (12, 3) and mesh.vertices.dtype == np.float32
    assert cloud.num_input_points == len(mesh.vertices)
    np.testing.assert_allclose(np.ptp(mesh.vertices, axis=0), BOX_EXTENTS, atol=1e-6)


def test_mesh_up_axis_rotates_samples_and_normals(tmp_path, box):
    path = write_box(tmp_path / "box.off", box)
    y_up = load_point_cloud(path, num_points=256, up="y")
    z_up = load_point_cloud(path, num_points=256, up="z")
    np.testing.assert_allclose(z_up.points, z_to_y(y_up.points), atol=1e-5)
    np.testing.assert_allclose(z_up.normals, z_to_y(y_up.normals), atol=1e-6)
    np.testing.assert_allclose(load_mesh(path, up="z").vertices, z_to_y(load_mesh(path).vertices))


def test_mesh_without_num_points_gets_the_default_density(tmp_path, box):
    cloud = load_point_cloud(write_box(tmp_path / "box.obj", box), num_points=None)
    assert len(cloud) == DEFAULT_MESH_POINTS and cloud.is_mesh


def test_mesh_vertex_colours(tmp_path, box):
    coloured = box.copy()
    coloured.visual.vertex_colors = np.tile([255, 0, 0, 255], (len(box.vertices), 1))
    mesh = load_mesh(write_box(tmp_path / "red.glb", coloured))
    np.testing.assert_allclose(mesh.vertex_colors, np.tile([1.0, 0.0, 0.0], (len(box.vertices), 1)))


def test_ply_without_faces_is_a_point_cloud_not_a_mesh(tmp_path):
    path = write_ply(tmp_path / "points.ply", np.random.default_rng(0).random((50, 3)).astype(np.float32))
    assert not load_point_cloud(path).is_mesh
    with pytest.raises(PointCloudFileError, match=r"points\.ply.*no faces"):
        load_mesh(path)


def test_sample_surface_is_area_weighted_and_on_the_triangles():
    # a big triangle (area 4.5) and a small one (area 0.5) far apart: 90 % / 10 % of the samples
    vertices = np.array([[0, 0, 0], [3, 0, 0], [0, 3, 0], [10, 0, 0], [11, 0, 0], [10, 1, 0]], dtype=np.float32)
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    points, normals = sample_surface(vertices, faces, 20_000, seed=3, return_normals=True)
    assert points.shape == (20_000, 3) and points.dtype == np.float32
    big = points[:, 0] < 5
    assert abs(big.mean() - 0.9) < 0.01
    # inside their triangle: x, y >= 0 and x + y <= leg length
    local = points.copy()
    local[~big, 0] -= 10
    legs = np.where(big, 3.0, 1.0)
    assert (local[:, :2] >= -1e-6).all() and (local[:, 0] + local[:, 1] <= legs + 1e-5).all()
    np.testing.assert_array_equal(points[:, 2], 0)
    np.testing.assert_allclose(normals, np.tile([0, 0, 1], (20_000, 1)))
    np.testing.assert_array_equal(sample_surface(vertices, faces, 100, seed=3), sample_surface(vertices, faces, 100, 3))


def test_sample_surface_of_a_flat_mesh_is_an_error():
    vertices = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2]], dtype=np.float32)  # collinear: zero area
    with pytest.raises(PointCloudFileError, match="zero area"):
        sample_surface(vertices, np.array([[0, 1, 2]]), 10)


# ---------------------------------------------------------------------------------------------
# errors: each is in the PointCloudFileError family and names the file


def _truncated_ply(p: Path) -> None:
    write_ply(p, np.random.default_rng(0).random((1000, 3)).astype(np.float32))
    p.write_bytes(p.read_bytes()[:-5000])


def _truncated_npy(p: Path) -> None:
    np.save(p, np.random.default_rng(0).random((1000, 3)).astype(np.float32))
    p.write_bytes(p.read_bytes()[:-100])


def _truncated_off(p: Path) -> None:
    p.write_text("OFF\n8 12 0\n0 0 0\n1 0 0\n")


def _pickled_npy(p: Path) -> None:
    np.save(p, np.array([{"points": [1, 2, 3]}], dtype=object), allow_pickle=True)


def _plain_pickle(p: Path) -> None:
    p.write_bytes(pickle.dumps(np.zeros((10, 3))))


def _nan_rows(p: Path) -> None:
    pts = np.random.default_rng(0).random((100, 3)).astype(np.float32)
    pts[[3, 50]] = np.nan
    pts[70, 1] = np.inf
    np.save(p, pts)


ERROR_CASES = {
    "missing.ply": (None, "not found"),
    "empty.ply": (lambda p: p.write_bytes(b""), "empty"),
    "empty.npy": (lambda p: p.write_bytes(b""), "empty"),
    "header_only.txt": (lambda p: p.write_text("x y z\n"), "could not read any points"),
    "no_vertices.ply": (lambda p: write_ply(p, np.zeros((0, 3), np.float32)), "could not read any points"),
    "truncated.ply": (_truncated_ply, "truncated or corrupt"),
    "truncated.npy": (_truncated_npy, "truncated or corrupt"),
    "truncated.off": (_truncated_off, "truncated or corrupt"),
    "garbage.h5": (lambda p: p.write_bytes(b"not an hdf5 file" * 10), "truncated or corrupt"),
    "ragged.csv": (lambda p: p.write_text("1,2,3\n4,5,6\n7,8\n"), "truncated or corrupt"),
    "pickled.npy": (_pickled_npy, "refuses to load for safety"),
    "plain_pickle.npy": (_plain_pickle, "refuses to load for safety"),
    "nan.npy": (_nan_rows, "contains 7 NaN/inf coordinates"),
    "one_point.xyz": (lambda p: p.write_text("1 2 3\n"), "fewer than 2 distinct points"),
    "same_points.csv": (lambda p: p.write_text("1,2,3\n" * 50), "fewer than 2 distinct points"),
    "flat_xy.npy": (lambda p: np.save(p, np.zeros((10, 2))), r"\(N, 3\)"),
    "strings.npy": (lambda p: np.save(p, np.array([["a", "b", "c"]])), r"\(N, 3\)"),
    "no_faces.obj": (lambda p: p.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n"), "no faces"),
    # a text file renamed .obj is not "a mesh without faces" (issue 13 item 12)
    "notes.obj": (lambda p: p.write_text("meeting notes\nv 1 2 3 is a version\nf is for faces\n"),
                  r"is not a valid OBJ mesh: line 1 \('meeting notes'\) is not an OBJ statement"),
    "words.obj": (lambda p: p.write_text("# exported\nv one two three\nf 1 1 1\n"),
                  r"is not a valid OBJ mesh: line 2 \('v one two three'\) is not a vertex"),
}


@pytest.mark.parametrize("name", list(ERROR_CASES))
def test_bad_files_raise_point_cloud_file_error_naming_the_file(tmp_path, name):
    make, message = ERROR_CASES[name]
    path = tmp_path / name
    if make is not None:
        make(path)
    with pytest.raises(PointCloudFileError, match=message) as err:
        load_point_cloud(path)
    assert name in str(err.value)


def test_unsupported_extension_lists_the_supported_ones(tmp_path):
    path = tmp_path / "scan.e57"
    path.write_bytes(b"abc")
    with pytest.raises(UnsupportedFormatError, match=r"scan\.e57.*\.ply.*\.npy.*\.off") as err:
        load_point_cloud(path)
    assert isinstance(err.value, PointCloudFileError)
    with pytest.raises(UnsupportedFormatError, match=r"\.pcd"):  # a point-cloud format is not a mesh
        load_mesh(tmp_path / "points.pcd")


@pytest.mark.parametrize(
    "kwargs", [{"up": "x"}, {"sampling": "poisson"}, {"num_points": 0}, {"num_points": 2.5}, {"index": "1"}]
)
def test_bad_arguments_raise_clip2point_error(tmp_path, kwargs):
    path = tmp_path / "p.npy"
    np.save(path, np.random.default_rng(0).random((10, 3)))
    with pytest.raises(Clip2PointError):
        load_point_cloud(path, **kwargs)


def test_supported_extension_tuples():
    assert ".ply" in SUPPORTED_POINT_EXTENSIONS and ".ply" in SUPPORTED_MESH_EXTENSIONS
    assert {".npy", ".h5", ".txt", ".csv", ".pcd", ".las"} <= set(SUPPORTED_POINT_EXTENSIONS)
    assert {".off", ".obj", ".stl", ".glb", ".gltf"} <= set(SUPPORTED_MESH_EXTENSIONS)


# ---------------------------------------------------------------------------------------------
# sampling


def reference_fps(points: np.ndarray, k: int, start: int) -> list[int]:
    """Textbook farthest point sampling with Python loops."""
    chosen = [start]
    dist = np.linalg.norm(points - points[start], axis=1)
    for _ in range(k - 1):
        chosen.append(int(np.argmax(dist)))
        dist = np.minimum(dist, np.linalg.norm(points - points[chosen[-1]], axis=1))
    return chosen


def min_pairwise_distance(points: np.ndarray) -> float:
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    return float(d[np.triu_indices(len(points), 1)].min())


@needs_mn10
def test_fps_matches_the_textbook_algorithm_and_is_deterministic(mn10_shape):
    idx = farthest_point_sample(mn10_shape, 128, seed=5)
    assert idx.dtype == np.int64 and idx.shape == (128,) and len(set(idx.tolist())) == 128
    assert idx.tolist() == reference_fps(mn10_shape.astype(np.float64), 128, int(idx[0]))
    np.testing.assert_array_equal(idx, farthest_point_sample(mn10_shape, 128, seed=5))
    assert not np.array_equal(idx, farthest_point_sample(mn10_shape, 128, seed=6))


@needs_mn10
def test_fps_spreads_points_better_than_random(mn10_shape):
    fps = mn10_shape[subsample(mn10_shape, 256, "fps", seed=0)]
    rnd = mn10_shape[subsample(mn10_shape, 256, "random", seed=0)]
    assert min_pairwise_distance(fps) > 2 * min_pairwise_distance(rnd)


@needs_mn10
def test_loading_is_deterministic_per_seed(tmp_path, mn10_shape):
    path = write_points(tmp_path / "s.npy", mn10_shape)
    for method in ("fps", "random"):
        a = load_point_cloud(path, num_points=100, sampling=method, seed=1)
        b = load_point_cloud(path, num_points=100, sampling=method, seed=1)
        c = load_point_cloud(path, num_points=100, sampling=method, seed=2)
        np.testing.assert_array_equal(a.points, b.points)
        assert not np.array_equal(a.points, c.points)
        assert len(a) == 100 and a.num_input_points == 1024


@needs_mn10
def test_asking_for_more_points_than_the_cloud_keeps_all(tmp_path, mn10_shape, caplog):
    path = write_points(tmp_path / "s.npy", mn10_shape)
    with caplog.at_level(logging.INFO, logger="clip2point.io"):
        cloud = load_point_cloud(path, num_points=4096)
    np.testing.assert_array_equal(cloud.points, mn10_shape)
    assert "only 1024 points" in caplog.text
    np.testing.assert_array_equal(subsample(mn10_shape, 5000), np.arange(1024))


def test_fps_rejects_impossible_requests():
    pts = np.random.default_rng(0).random((10, 3))
    with pytest.raises(Clip2PointError, match="only 10 points"):
        farthest_point_sample(pts, 11)
    with pytest.raises(Clip2PointError):
        farthest_point_sample(pts[:, :2], 3)
    # duplicates never make FPS repeat an index
    assert len(set(farthest_point_sample(np.repeat(pts[:2], 5, axis=0), 10).tolist())) == 10


def test_fps_of_100k_points_is_fast(tmp_path):
    path = tmp_path / "p100k.npy"
    np.save(path, np.random.default_rng(0).standard_normal((100_000, 3)).astype(np.float32))
    start = time.perf_counter()
    cloud = load_point_cloud(path, num_points=1024)
    assert time.perf_counter() - start < 1.0
    assert len(cloud) == 1024


@pytest.mark.parametrize("ext", [".npy", ".ply"])
def test_ten_million_points_load_and_subsample_in_bounded_memory(tmp_path, ext):
    points = np.random.default_rng(0).standard_normal((10_000_000, 3)).astype(np.float32)
    path = write_points(tmp_path / f"big{ext}", points)
    file_bytes = points.nbytes
    del points
    tracemalloc.start()
    try:
        cloud = load_point_cloud(path, num_points=1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(cloud) == 1024 and cloud.num_input_points == 10_000_000
    assert peak < 4 * file_bytes, f"peak {peak / 1e6:.0f} MB for a {file_bytes / 1e6:.0f} MB cloud"


# ---------------------------------------------------------------------------------------------
# PointCloud and the up axis


def test_normalized_centres_and_scales_to_the_unit_sphere():
    pts = np.random.default_rng(0).random((500, 3)).astype(np.float32) * 100 + 40
    cloud = PointCloud(pts.copy(), None, None, "mem")
    unit = cloud.normalized()
    np.testing.assert_allclose(unit.points.mean(axis=0), 0, atol=1e-5)
    assert np.linalg.norm(unit.points, axis=1).max() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(cloud.points, pts)  # the original is untouched
    assert unit.points.dtype == np.float32 and len(unit) == 500 and unit.num_input_points == 500


def test_convert_up_axis_is_a_proper_rotation():
    pts = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)
    assert convert_up_axis(pts, "y") is pts
    out = convert_up_axis(pts, "z")
    np.testing.assert_array_equal(out, z_to_y(pts))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(convert_up_axis(np.array([0.0, 0.0, 1.0]), "z"), [0.0, 1.0, 0.0])  # z-up -> y-up
    rotation = convert_up_axis(np.eye(3), "z").T  # columns are the images of the basis vectors
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    with pytest.raises(Clip2PointError, match="up axis"):
        convert_up_axis(pts, "x")


def test_truncated_ascii_ply_is_a_file_error(tmp_path):
    path = tmp_path / "cut.ply"
    path.write_text("ply\nformat ascii 1.0\nelement vertex 5\nproperty float x\nproperty float y\n"
                    "property float z\nend_header\n0 0 0\n1 1 1\n2 2\n")
    with pytest.raises(PointCloudFileError, match="cut.ply"):
        load_point_cloud(path)


# ---------------------------------------------------------------------------------------------
# untrusted files: sizes before allocation, honest counts, true messages, precision (issue 9)


def test_max_points_is_a_documented_cap_checked_before_reading(tmp_path):
    from clip2point.io import MAX_POINTS

    assert MAX_POINTS == 20_000_000
    path = tmp_path / "p.npy"
    np.save(path, np.random.default_rng(0).random((1000, 3)).astype(np.float32))
    assert len(load_point_cloud(path, num_points=None, max_points=1000)) == 1000
    with pytest.raises(PointCloudFileError, match=r"p\.npy: holds 1,000 points, more than the limit of 999"):
        load_point_cloud(path, max_points=999)
    with pytest.raises(Clip2PointError, match="max_points"):
        load_point_cloud(path, max_points=0)


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("huge.npy", lambda: _npy_header((10**12, 3)) + b"\0" * 64,
         r"declares .* \(1000000000000, 3\).* only 64 bytes"),
        ("huge.pcd", lambda: b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 100000000\n"
                             b"HEIGHT 1\nPOINTS 100000000\nDATA binary\n" + b"\0" * 120, r"holds 100,000,000 points"),
        ("huge.pts", lambda: b"1000000000\n1 2 3\n4 5 6\n", r"holds 1,000,000,000 points"),
        ("huge.ply", lambda: b"ply\nformat binary_little_endian 1.0\nelement vertex 15000000\nproperty float x\n"
                             b"property float y\nproperty float z\nend_header\n" + b"\0" * 36,
         r"180,000,000 bytes"),
    ],
)
def test_declared_sizes_are_checked_against_the_file_before_allocating(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content())
    tracemalloc.start()
    try:
        with pytest.raises(PointCloudFileError, match=match):
            load_point_cloud(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20e6, f"{peak / 1e6:.0f} MB allocated for a {path.stat().st_size}-byte file"


def _npy_header(shape) -> bytes:
    import io as _io

    buf = _io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_npz_member_header_larger_than_the_member_is_refused(tmp_path):
    import zipfile

    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("points.npy", _npy_header((10**10, 3)) + b"\0" * 1000)
    with pytest.raises(PointCloudFileError, match=r"bomb\.npz: its header declares the array 'points\.npy'"):
        load_point_cloud(path)


def test_las_with_a_garbage_vlr_count_fails_fast(tmp_path):
    head = bytearray(375)
    head[0:4], head[24], head[25] = b"LASF", 1, 4
    import struct

    struct.pack_into("<HII", head, 94, 375, 375, 0xFFFFFFF0)  # header size, offset to points, VLR count
    struct.pack_into("<BHI", head, 104, 0, 20, 1)
    path = tmp_path / "garbage.las"
    path.write_bytes(bytes(head) + b"\0" * 29)  # 404 bytes
    assert path.stat().st_size == 404
    start = time.perf_counter()
    with pytest.raises(PointCloudFileError, match=r"garbage\.las: .*variable-length records"):
        load_point_cloud(path)
    assert time.perf_counter() - start < 1.0


def test_truncated_ascii_pcd_and_pts_are_not_padded_with_zeros(tmp_path):
    pts = np.random.default_rng(0).random((20, 3))
    rows = "".join(f"{x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in pts)
    pcd = ("VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 40\nHEIGHT 1\n"
           "VIEWPOINT 0 0 0 1 0 0 0\nPOINTS 40\nDATA ascii\n" + rows)
    (tmp_path / "cut.pcd").write_text(pcd)
    (tmp_path / "cut.pts").write_text("40\n" + rows)
    for name in ("cut.pcd", "cut.pts"):
        with pytest.raises(PointCloudFileError, match=rf"{name}: .*declares 40 points but 20"):
            load_point_cloud(tmp_path / name)
    (tmp_path / "ok.pts").write_text("20\n" + rows)
    np.testing.assert_allclose(load_point_cloud(tmp_path / "ok.pts", None).points, pts, atol=1e-6)


def test_binary_compressed_pcd_with_colours(tmp_path):
    o3d = pytest.importorskip("open3d")
    rng = np.random.default_rng(3)
    pts, rgb = rng.random((500, 3)), rng.integers(0, 256, (500, 3)) / 255.0
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    pcd.colors = o3d.utility.Vector3dVector(rgb)
    o3d.io.write_point_cloud(str(tmp_path / "c.pcd"), pcd, compressed=True)
    cloud = load_point_cloud(tmp_path / "c.pcd", num_points=None)
    np.testing.assert_allclose(cloud.points, pts, atol=1e-6)
    np.testing.assert_allclose(cloud.colors, rgb, atol=1e-6)


@pytest.mark.parametrize("ext", [".npy", ".txt", ".h5"])
def test_a_3_by_n_array_is_refused_with_a_transpose_hint(tmp_path, ext):
    pts = np.random.default_rng(0).random((3, 100)).astype(np.float32)
    path = tmp_path / f"columns{ext}"
    if ext == ".npy":
        np.save(path, pts)
    elif ext == ".txt":
        np.savetxt(path, pts)
    else:
        with h5py.File(path, "w") as f:
            f["points"] = pts
    with pytest.raises(PointCloudFileError, match=rf"columns\{ext}: .*transpose it"):
        load_point_cloud(path)
    np.save(tmp_path / "three.npy", np.eye(3, dtype=np.float32))  # a real (3, 3) cloud still loads
    assert len(load_point_cloud(tmp_path / "three.npy", None)) == 3


def test_coordinates_beyond_float32_are_refused_with_the_file_name(tmp_path):
    np.save(tmp_path / "far.npy", np.array([[0, 0, 0], [1e39, 0, 0]], dtype=np.float64))
    (tmp_path / "far.csv").write_text("0,0,0\n1,2,-1e39\n")
    for name in ("far.npy", "far.csv"):
        with pytest.raises(PointCloudFileError, match=rf"{name}: .*1e\+39.*float32"):
            load_point_cloud(tmp_path / name)


def test_geo_referenced_las_keeps_its_precision_with_a_float64_offset(tmp_path):
    laspy = pytest.importorskip("laspy")
    rng = np.random.default_rng(0)
    xyz = np.stack([500_000 + rng.random(2000) * 50, 4_000_000 + rng.random(2000) * 50, 120 + rng.random(2000) * 5], 1)
    header = laspy.LasHeader(point_format=0, version="1.2")
    header.scales, header.offsets = [0.001] * 3, [500_000.0, 4_000_000.0, 0.0]
    las = laspy.LasData(header)
    las.x, las.y, las.z = xyz.T
    las.write(tmp_path / "utm.las")
    exact = np.stack([np.asarray(laspy.read(tmp_path / "utm.las").xyz)], 0)[0]  # the file's float64 coordinates
    cloud = load_point_cloud(tmp_path / "utm.las", num_points=None)
    assert cloud.offset.dtype == np.float64 and np.abs(cloud.offset).max() > 1e5
    error = np.abs(cloud.points.astype(np.float64) + cloud.offset - exact).max()
    naive = np.abs(exact.astype(np.float32).astype(np.float64) - exact).max()
    assert error < 1e-5 < 0.01 < naive  # float32 at 4e6 m keeps 0.25 m; the offset keeps 1e-5 m
    z_up = load_point_cloud(tmp_path / "utm.las", num_points=None, up="z")
    np.testing.assert_allclose(z_up.points + z_up.offset, z_to_y(exact), atol=1e-5)
    assert cloud.normalized().offset.tolist() == [0.0, 0.0, 0.0]


def test_clouds_near_the_origin_keep_offset_zero(tmp_path):
    pts = np.random.default_rng(0).random((100, 3)).astype(np.float32) * 10 + 40  # max 50 < 100 × extent
    np.save(tmp_path / "near.npy", pts)
    cloud = load_point_cloud(tmp_path / "near.npy", num_points=None)
    assert cloud.offset.tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_array_equal(cloud.points, pts)


def test_permission_and_symlink_loop_messages_are_true(tmp_path):
    loop = tmp_path / "loop.ply"
    os.symlink(loop, loop)
    with pytest.raises(PointCloudFileError, match=r"loop\.ply: .*symbolic link loop") as err:
        load_point_cloud(loop)
    assert "not found" not in str(err.value)
    dangling = tmp_path / "dangling.ply"
    os.symlink(tmp_path / "nowhere.ply", dangling)
    with pytest.raises(PointCloudFileError, match="symbolic link to a file that does not exist"):
        load_point_cloud(dangling)
    locked = tmp_path / "locked.npy"
    np.save(locked, np.random.default_rng(0).random((10, 3)))
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):  # root reads anything: simulate the OS refusing
            import builtins

            real_open = builtins.open

            def deny(file, *args, **kwargs):
                if str(file) == str(locked):
                    raise PermissionError(13, "Permission denied", str(file))
                return real_open(file, *args, **kwargs)

            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(builtins, "open", deny)
                with pytest.raises(PointCloudFileError, match=r"locked\.npy: permission denied") as err:
                    load_point_cloud(locked)
        else:
            with pytest.raises(PointCloudFileError, match=r"locked\.npy: permission denied") as err:
                load_point_cloud(locked)
        assert "truncated" not in str(err.value) and "not found" not in str(err.value)
    finally:
        locked.chmod(0o644)


def test_pickled_only_for_real_pickles_and_no_negative_ranges(tmp_path):
    (tmp_path / "text.npy").write_text("1 2 3\n4 5 6\n")
    with pytest.raises(PointCloudFileError) as err:
        load_point_cloud(tmp_path / "text.npy")
    assert "pickle" not in str(err.value) and "NUMPY" in str(err.value)
    np.save(tmp_path / "none.npy", np.zeros((0, 10, 3), np.float32))
    with pytest.raises(PointCloudFileError, match="holds no shapes") as err:
        load_point_cloud(tmp_path / "none.npy")
    assert "0..-1" not in str(err.value)


def test_memory_error_becomes_a_file_error(tmp_path, monkeypatch):
    path = tmp_path / "big.csv"
    path.write_text("1,2,3\n4,5,6\n")

    def boom(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(np, "loadtxt", boom)
    with pytest.raises(PointCloudFileError, match=r"big\.csv: too large to read"):
        load_point_cloud(path)


def test_obj_with_two_coordinate_vertices_is_one_clear_error(tmp_path):
    path = tmp_path / "flat.obj"
    path.write_text("v 0 0\nv 1 0\nv 0 1\nf 1 2 3\n")
    with pytest.raises(PointCloudFileError, match=r"flat\.obj: its vertices have 2 coordinates, not 3"):
        load_point_cloud(path)


def test_gltf_with_an_external_buffer_is_refused(tmp_path):
    import json

    doc = {"asset": {"version": "2.0"}, "buffers": [{"uri": "../../etc/passwd", "byteLength": 12}]}
    (tmp_path / "ext.gltf").write_text(json.dumps(doc))
    with pytest.raises(PointCloudFileError, match=r"ext\.gltf: references external file '\.\./\.\./etc/passwd'.*"
                                                  r"export a self-contained \.glb"):
        load_mesh(tmp_path / "ext.gltf")


def test_sample_surface_is_chunked_and_unchanged(monkeypatch):
    import clip2point.io.sampling as sampling

    rng = np.random.default_rng(0)
    vertices = rng.random((500, 3))
    faces = rng.integers(0, 500, (3000, 3))
    whole = sample_surface(vertices, faces, 1000, seed=2, return_normals=True)
    monkeypatch.setattr(sampling, "FACE_CHUNK", 7)
    chunked = sample_surface(vertices, faces, 1000, seed=2, return_normals=True)
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_array_equal(whole[1], chunked[1])


def test_is_mesh_file_decides_by_extension_and_ply_header(tmp_path):
    from clip2point.io import is_mesh_file

    trimesh = pytest.importorskip("trimesh")
    mesh = trimesh.creation.box()
    mesh.export(tmp_path / "box.ply")
    mesh.export(tmp_path / "box.off")
    trimesh.PointCloud(mesh.vertices).export(tmp_path / "cloud.ply")
    np.savetxt(tmp_path / "cloud.csv", mesh.vertices, delimiter=",")
    assert is_mesh_file(tmp_path / "box.ply") and is_mesh_file(tmp_path / "box.off")
    assert not is_mesh_file(tmp_path / "cloud.ply") and not is_mesh_file(tmp_path / "cloud.csv")
    assert not is_mesh_file(tmp_path / "missing.ply") and is_mesh_file(str(tmp_path / "missing.OBJ"))
    assert load_point_cloud(tmp_path / "box.ply").is_mesh and not load_point_cloud(tmp_path / "cloud.ply").is_mesh


def test_io_imports_no_torch():
    # clip2point.io is preloaded in the sandbox's forkserver, which must stay torch-free (small, fast children)
    import subprocess
    import sys

    code = "import sys, clip2point.io; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_shape_entry_names_which_shape_of_a_multi_shape_file(tmp_path):
    import json

    import h5py

    from clip2point.io import ShapeEntry, shape_entry

    path = tmp_path / "mn.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.zeros((3, 20, 3), np.float32)
        f["label"] = np.array([[1], [0], [1]], np.int64)
        f["name"] = np.array([b"night_stand_0001", b"bed_0002", b"night_stand_0003"], dtype="S20")
        f.attrs["class_names"] = json.dumps(["bed", "night_stand"])
    assert shape_entry(path, 2) == ShapeEntry(2, 3, 1, "night stand", "night_stand_0003")
    assert shape_entry(path, -3).index == 0
    with pytest.raises(PointCloudFileError, match=r"shape index 3 is out of range; the file holds 3 shape\(s\)"):
        shape_entry(path, 3)
    np.save(tmp_path / "four.npy", np.zeros((4, 10, 3), np.float32))
    assert shape_entry(tmp_path / "four.npy", 1) == ShapeEntry(1, 4)
    np.save(tmp_path / "one.npy", np.zeros((10, 3), np.float32))
    assert shape_entry(tmp_path / "one.npy") == ShapeEntry(0, 1)
