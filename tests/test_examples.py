"""Tests of the procedurally generated example objects in examples/."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clip2point.io import load_mesh, load_point_cloud
from clip2point.render import render_depth

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SCRIPT = EXAMPLES / "make_examples.py"
REQUIRED = ("chair", "table", "mug", "airplane", "bottle", "lamp", "bed", "guitar")
NAMES = sorted(p.stem for p in (EXAMPLES / "meshes").glob("*.ply"))


def test_all_required_objects_exist_as_mesh_and_points():
    assert set(REQUIRED) <= set(NAMES), f"missing: {set(REQUIRED) - set(NAMES)}"
    assert len(NAMES) >= 8
    assert sorted(p.stem for p in (EXAMPLES / "points").glob("*.ply")) == NAMES
    total = sum(p.stat().st_size for p in EXAMPLES.rglob("*") if p.is_file())
    assert total < 2_000_000, f"examples/ holds {total} bytes"
    assert (EXAMPLES / "README.md").is_file()


@pytest.mark.parametrize("name", NAMES)
def test_example_files_load_with_sane_sizes(name):
    mesh_path, pts_path = EXAMPLES / "meshes" / f"{name}.ply", EXAMPLES / "points" / f"{name}.ply"
    assert mesh_path.stat().st_size <= 200_000 and pts_path.stat().st_size <= 100_000
    mesh = load_mesh(mesh_path)
    assert 20 <= len(mesh.faces) <= 10_000
    assert mesh.vertex_colors is not None and mesh.vertex_colors.shape == mesh.vertices.shape
    cloud = load_point_cloud(pts_path, num_points=None)
    assert cloud.points.shape == (2048, 3) and cloud.points.dtype == np.float32
    assert cloud.normals is not None and np.allclose(np.linalg.norm(cloud.normals, axis=1), 1.0, atol=1e-4)
    assert not cloud.is_mesh
    # points lie on the mesh: inside its bounding box, covering most of it
    lo, hi = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
    assert (cloud.points >= lo - 1e-5).all() and (cloud.points <= hi + 1e-5).all()
    assert np.all(np.ptp(cloud.points, axis=0) > 0.8 * (hi - lo))
    # metres, standing on the floor (y-up)
    assert mesh.vertices[:, 1].min() == pytest.approx(0.0, abs=1e-6)
    assert 0.05 < float((hi - lo).max()) < 5.0
    # the points file equals sampling the mesh file the way load_point_cloud does
    assert np.array_equal(load_point_cloud(mesh_path, num_points=2048, seed=0).points, cloud.points)


def _extent(name: str) -> np.ndarray:
    return np.ptp(load_mesh(EXAMPLES / "meshes" / f"{name}.ply").vertices, axis=0)


def _points(name: str) -> np.ndarray:
    return load_point_cloud(EXAMPLES / "points" / f"{name}.ply", num_points=None).points


@pytest.mark.parametrize("name", ["bottle", "lamp", "guitar", "bookshelf", "chair"])
def test_tall_objects_are_tallest_along_y(name):
    x, y, z = _extent(name)
    assert y > max(x, z)


@pytest.mark.parametrize("name", ["table", "bed", "sofa", "bathtub", "airplane", "laptop", "monitor"])
def test_wide_objects_are_wider_than_tall(name):
    x, y, z = _extent(name)
    assert max(x, z) > y


def test_objects_are_right_side_up():
    # Features that only hold when +y is up and the front faces +z.
    table = _points("table")
    h = table[:, 1].max()
    top = table[table[:, 1] > h - 0.05]
    assert np.ptp(top[:, 0]) > 1.3  # the table top is at the top
    assert (table[:, 1] < 0.3 * h).mean() < 0.1  # only legs near the floor
    lamp = _points("lamp")
    radius = np.linalg.norm(lamp[:, [0, 2]], axis=1)
    assert radius[lamp[:, 1] > 1.3].mean() > 3 * radius[(lamp[:, 1] > 0.3) & (lamp[:, 1] < 1.2)].mean()  # shade on top
    bottle = _points("bottle")
    r = np.linalg.norm(bottle[:, [0, 2]], axis=1)
    assert r[bottle[:, 1] > 0.26].max() < 0.5 * r[bottle[:, 1] < 0.15].max()  # neck on top
    chair = _points("chair")
    assert chair[chair[:, 1] > 0.6, 2].mean() < -0.15  # backrest at the back (front = +z)
    plane = _points("airplane")
    assert plane[plane[:, 1] > 0.8, 2].mean() < -1.3  # the fin is up, at the tail (nose = +z)
    guitar = _points("guitar")
    assert np.ptp(guitar[guitar[:, 1] > 0.7, 0]) < 0.2 < np.ptp(guitar[guitar[:, 1] < 0.4, 0])  # neck up


@pytest.mark.parametrize("name", NAMES)
def test_examples_render_in_every_view(name):
    depth = render_depth(_points(name), "6", image_size=112)[0]
    cover = (depth < 1.0).float().mean(dim=(1, 2))
    assert bool((cover > 0.01).all()), cover


def test_regenerating_reproduces_the_files_byte_for_byte(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    for sub in ("meshes", "points"):
        made = sorted(p.name for p in (tmp_path / sub).glob("*.ply"))
        assert made == [f"{n}.ply" for n in NAMES]
        for name in made:
            assert (tmp_path / sub / name).read_bytes() == (EXAMPLES / sub / name).read_bytes(), f"{sub}/{name} differs"


def test_generator_rejects_unknown_names(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "spaceship"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode != 0 and "spaceship" in result.stderr and "chair" in result.stderr
