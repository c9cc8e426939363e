"""Tests of clip2point.datasets on the shared real ModelNet data and small folders built from it."""
from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from clip2point import datasets
from clip2point.datasets import DatasetError, download_dataset, open_dataset

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MN10 = SHARED / "modelnet10"
MN40 = SHARED / "modelnet40_partial"
MN40_TEST = MN40 / "modelnet40nr_airplane_bathtub_2048_test.h5"
needs_shared = pytest.mark.skipif(
    not (MN10 / "modelnet10_pcd1024_test.h5").is_file() or not MN40_TEST.is_file(),
    reason=f"shared ModelNet data not found at {SHARED} (see its README.md)",
)


def z_to_y(p: np.ndarray) -> np.ndarray:
    """The documented z-up → y-up map (x, y, z) → (-y, z, -x), written out independently."""
    return np.stack([-p[..., 1], p[..., 2], -p[..., 0]], axis=-1)


def extents(points: np.ndarray) -> np.ndarray:
    return points.max(axis=1) - points.min(axis=1)


@pytest.fixture(scope="module")
def mn10_test():
    return open_dataset("modelnet10", MN10, "test")


@pytest.fixture(scope="module")
def mn40_raw():
    with h5py.File(MN40_TEST, "r") as h:
        return h["data"][:], h["normal"][:], h["label"][:].reshape(-1), [n.decode() for n in h["name"][:]]


# ---------------------------------------------------------------------------- shared h5 layout


@needs_shared
def test_modelnet10_shared_h5_is_converted_to_y_up(mn10_test):
    ds = mn10_test
    assert len(ds) == 908 and ds.layout == "h5" and ds.up == "z" and ds.split == "test"
    # the released zero-shot code prompts ModelNet10 by its folder names (night_stand)
    assert ds.class_names == ["bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa", "table",
                              "toilet"]
    assert ds.labels.dtype == np.int64 and ds.labels.shape == (908,)
    assert set(np.unique(ds.labels)) == set(range(10))
    assert ds.points_array.shape == (908, 1024, 3) and ds.points_array.dtype == np.float32
    with h5py.File(MN10 / "modelnet10_pcd1024_test.h5", "r") as h:
        raw = h["data"][:]
        assert ds.shape_name(0) == h["name"][0].decode() == "bathtub_0107"
    np.testing.assert_array_equal(ds.points_array, z_to_y(raw))  # raw units kept, axes permuted
    from clip2point.io import convert_up_axis

    np.testing.assert_allclose(ds.points_array[5], convert_up_axis(raw[5], "z"))
    points, label = ds[5]
    assert isinstance(points, torch.Tensor) and points.dtype == torch.float32 and points.shape == (1024, 3)
    assert label == int(ds.labels[5]) and isinstance(label, int)
    points[:] = 0  # items are copies: the dataset is not modified
    assert ds.points_array[5].any()
    # Physically y-up: beds and bathtubs are flattest along y, chairs tallest along y.
    ext = extents(ds.points_array)
    flat = np.isin(ds.labels, [0, 1])
    assert (ext[flat].argmin(axis=1) == 1).mean() > 0.9
    assert (ext[ds.labels == 2].argmax(axis=1) == 1).mean() > 0.8


@needs_shared
def test_up_override_keeps_raw_axes():
    ds = open_dataset("ModelNet10", MN10, "test", num_points=256, up="y")
    with h5py.File(MN10 / "modelnet10_pcd1024_test.h5", "r") as h:
        np.testing.assert_array_equal(ds.points_array, h["data"][:, :256])
    assert ds.up == "y" and ds[0][0].shape == (256, 3)


@needs_shared
def test_modelnet40_partial_is_y_up_and_first_n(mn40_raw):
    data, _, labels, names = mn40_raw
    ds = open_dataset("modelnet40", MN40, "test")
    assert len(ds) == 150 and ds.up == "y" and len(ds.class_names) == 40
    assert ds.class_names[:2] == ["airplane", "bathtub"] and "flower pot" in ds.class_names
    assert all("_" not in c for c in ds.class_names)
    np.testing.assert_array_equal(ds.labels, labels)
    assert set(ds.labels) == {0, 1} and ds.shape_name(149) == names[149]
    np.testing.assert_array_equal(ds.points_array, data[:, :1024])  # first-N rule, unchanged axes
    ext = extents(ds.points_array)
    assert (ext[ds.labels == 0].argmin(axis=1) == 1).all()  # airplanes are flattest along y
    assert open_dataset("modelnet40", MN40, "test", num_points=4096).points_array.shape == (150, 2048, 3)


@needs_shared
def test_parent_folder_and_train_split():
    ds10 = open_dataset("modelnet10", SHARED, "train")
    assert ds10.root == MN10 and len(ds10) == 3991
    ds40 = open_dataset("modelnet40", SHARED, "train", num_points=16)
    assert ds40.root == MN40 and len(ds40) == 732 and ds40[0][0].shape == (16, 3)


@needs_shared
def test_subset_is_a_view(mn10_test):
    ds = mn10_test
    sub = ds.subset([5, 2, 700])
    assert len(sub) == 3 and sub.class_names == ds.class_names and sub.up == ds.up
    np.testing.assert_array_equal(sub.labels, ds.labels[[5, 2, 700]])
    assert [sub.shape_name(i) for i in range(3)] == [ds.shape_name(i) for i in (5, 2, 700)]
    assert torch.equal(sub[2][0], ds[700][0]) and sub[2][1] == ds[700][1] and torch.equal(sub[-1][0], ds[700][0])
    np.testing.assert_array_equal(sub.points_array, ds.points_array[[5, 2, 700]])
    subsub = sub.subset([2])
    assert subsub.parent is ds and subsub.shape_name(0) == ds.shape_name(700)
    assert len(ds.subset([])) == 0
    with pytest.raises(DatasetError, match="subset indices"):
        ds.subset([0, 908])
    with pytest.raises(IndexError):
        sub[3]


# ---------------------------------------------------------------------------- other layouts


@needs_shared
def test_pointnet_ply_hdf5_layout(tmp_path, mn40_raw):
    data, _, labels, names = mn40_raw
    folder = tmp_path / "modelnet40_ply_hdf5_2048"
    folder.mkdir()
    (folder / "shape_names.txt").write_text((MN40 / "modelnet40_shape_names.txt").read_text())
    parts = {
        "ply_data_train0.h5": slice(0, 60),
        "ply_data_train1.h5": slice(60, 100),
        "ply_data_test0.h5": slice(100, 150),
    }
    for fname, sl in parts.items():
        with h5py.File(folder / fname, "w") as h:  # PointNet's keys and dtypes, no names inside
            h["data"] = data[sl]
            h["label"] = labels[sl].astype(np.uint8)[:, None]
    (folder / "ply_data_test_0_id2file.json").write_text(json.dumps([f"x/{n}.ply" for n in names[100:150]]))

    train = open_dataset("modelnet40", tmp_path, "train", num_points=512)
    assert train.root == folder and train.up == "y" and len(train) == 100
    np.testing.assert_array_equal(train.points_array, data[:100, :512])  # files concatenated in order
    np.testing.assert_array_equal(train.labels, labels[:100])
    assert train.shape_name(0) == "ply_data_train0_00000"  # no names available
    test = open_dataset("modelnet40", folder, "test")
    assert len(test) == 50 and test.shape_name(3) == names[103]
    with pytest.raises(DatasetError, match="not found|no modelnet10"):
        open_dataset("modelnet10", folder, "test")  # 40 class names do not fit modelnet10


@needs_shared
def test_normal_resampled_layout(tmp_path, mn40_raw):
    data, normals, labels, names = mn40_raw
    folder = tmp_path / "modelnet40_normal_resampled"
    picks = {"train": [0, 1, 120], "test": [2, 130]}
    for split, idx in picks.items():
        for i in idx:
            cls = names[i].rsplit("_", 1)[0]
            (folder / cls).mkdir(parents=True, exist_ok=True)
            np.savetxt(folder / cls / f"{names[i]}.txt", np.hstack([data[i], normals[i]]), fmt="%.6f", delimiter=",")
        (folder / f"modelnet40_{split}.txt").write_text("\n".join(names[i] for i in idx) + "\n")
    (folder / "modelnet40_shape_names.txt").write_text((MN40 / "modelnet40_shape_names.txt").read_text())

    ds = open_dataset("modelnet40", tmp_path, "test", num_points=300)
    assert ds.layout == "normal_resampled" and ds.up == "y" and len(ds) == 2 and ds.points_array is None
    np.testing.assert_array_equal(ds.labels, labels[[2, 130]])
    assert ds.class_names[ds.labels[1]] == "bathtub" and ds.shape_name(1) == names[130]
    points, label = ds[1]
    assert points.shape == (300, 3) and points.dtype == torch.float32 and label == 1
    np.testing.assert_allclose(points.numpy(), data[130, :300], atol=1e-6)
    # modelnet10 split lists in the same folder, without modelnet10_shape_names.txt: preset order
    (folder / "modelnet10_test.txt").write_text(names[130] + "\n")
    ds10 = open_dataset("modelnet10", folder, "test", up="z")
    assert ds10.labels.tolist() == [0] and ds10.class_names[0] == "bathtub"
    np.testing.assert_allclose(ds10[0][0].numpy(), z_to_y(data[130, :1024]), atol=1e-6)
    with pytest.raises(DatasetError, match="no 'train' split"):
        open_dataset("modelnet10", folder, "train")
    (folder / "bathtub" / f"{names[130]}.txt").unlink()
    with pytest.raises(DatasetError, match="missing"):
        ds[1]


BOX_FACES = [(0, 1, 2), (0, 2, 3), (4, 6, 5), (4, 7, 6), (0, 4, 5), (0, 5, 1),
             (1, 5, 6), (1, 6, 2), (2, 6, 7), (2, 7, 3), (3, 7, 4), (3, 4, 0)]


def write_box_off(path: Path, size: tuple[float, float, float], glued_header: bool = False) -> None:
    """A closed box [0, sx] x [0, sy] x [0, sz] as an OFF mesh.

    "OFF" is on its own line, or with ``glued_header`` followed directly by the counts
    ("OFF8 12 0"), a quirk of many ModelNet files.
    """
    sx, sy, sz = size
    verts = [(0, 0, 0), (sx, 0, 0), (sx, sy, 0), (0, sy, 0), (0, 0, sz), (sx, 0, sz), (sx, sy, sz), (0, sy, sz)]
    counts = f"{len(verts)} {len(BOX_FACES)} 0"
    lines = ([f"OFF{counts}"] if glued_header else ["OFF", counts]) + [f"{x} {y} {z}" for x, y, z in verts]
    lines += [f"3 {a} {b} {c}" for a, b, c in BOX_FACES]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def off_root(tmp_path) -> Path:
    root = tmp_path / "data"
    # z-up boxes: a tall "chair" (1 x 2 x 10) and flat "bed"s (8 x 4 x 1)
    write_box_off(root / "ModelNet10" / "chair" / "test" / "chair_0890.off", (1, 2, 10))
    write_box_off(root / "ModelNet10" / "bed" / "test" / "bed_0516.off", (8, 4, 1))
    write_box_off(root / "ModelNet10" / "bed" / "test" / "bed_0517.off", (8, 4, 1), glued_header=True)
    write_box_off(root / "ModelNet10" / "bed" / "train" / "bed_0001.off", (8, 4, 1))
    return root


def test_off_folder_layout(off_root):
    ds = open_dataset("modelnet10", off_root, "test", num_points=500)  # the parent of ModelNet10/
    assert ds.layout == "off" and ds.up == "z" and ds.root == off_root / "ModelNet10" and ds.points_array is None
    assert len(ds) == 3 and len(ds.class_names) == 10 and ds.class_names[6] == "night_stand"
    assert open_dataset("modelnet10", off_root, "test", prompt_style="spaced").class_names[6] == "night stand"
    assert ds.labels.tolist() == [1, 1, 2]
    assert [ds.shape_name(i) for i in range(3)] == ["bed_0516", "bed_0517", "chair_0890"]
    chair, label = ds[2]
    assert label == 2 and chair.shape == (500, 3) and chair.dtype == torch.float32
    p = chair.numpy().astype(np.float64)
    # (x, y, z) -> (-y, z, -x): the 1 x 2 x 10 box becomes [-2, 0] x [0, 10] x [-1, 0], tall along y
    np.testing.assert_allclose(p.min(0), [-2, 0, -1], atol=0.05)
    np.testing.assert_allclose(p.max(0), [0, 10, 0], atol=0.05)
    on_face = np.isclose(p, [-2, 0, -1], atol=1e-4) | np.isclose(p, [0, 10, 0], atol=1e-4)
    assert on_face.any(axis=1).all()  # surface samples, not vertices or interior points
    assert len(np.unique(p.round(6), axis=0)) > 400
    # coverage follows the area: the two ends (1 x 2) are 4 of the box's 64 area units
    top_bottom = np.isclose(p[:, 1], 0, atol=1e-4) | np.isclose(p[:, 1], 10, atol=1e-4)
    assert top_bottom.mean() < 0.12
    again = open_dataset("modelnet10", off_root / "ModelNet10", "test", num_points=500)
    assert torch.equal(again[2][0], chair) and torch.equal(ds[2][0], chair)  # seeded, cached
    assert not torch.equal(ds[0][0], ds[1][0])  # two identical meshes, seeded by item index
    bed = ds[1][0].numpy()  # the "OFF8 12 0" header file: an 8 x 4 x 1 box, flat along y
    np.testing.assert_allclose([bed.min(0), bed.max(0)], [[-4, 0, -8], [0, 1, 0]], atol=0.05)
    assert len(open_dataset("modelnet10", off_root, "train")) == 1


def test_off_folder_cache_size_keeps_the_most_recently_used_shapes(off_root):
    ds = open_dataset("modelnet10", off_root, "test", num_points=100, cache_size=2)
    first = ds[0][0]
    ds[1], ds[2]
    assert list(ds._cache) == [1, 2]  # item 0 dropped
    ds[1]  # a hit becomes the newest
    ds[0]
    assert list(ds._cache) == [1, 0] and torch.equal(ds[0][0], first)  # re-read, seeded: the same points
    unbounded = open_dataset("modelnet10", off_root, "test", num_points=100)
    for i in range(3):
        unbounded[i]
    assert list(unbounded._cache) == [0, 1, 2]


@needs_shared
def test_iter_batches_in_order_and_cut_to_the_smallest_lazy_item(off_root, mn10_test):
    from clip2point.datasets import iter_batches
    from clip2point.evaluate import iter_batches as from_evaluate

    assert from_evaluate is iter_batches  # its former home re-exports it
    sub = mn10_test.subset(np.arange(5))
    batches = list(iter_batches(sub, 2))
    assert [len(lab) for _, lab in batches] == [2, 2, 1]
    assert torch.equal(torch.cat([p for p, _ in batches]), torch.from_numpy(sub.points_array))
    assert torch.cat([lab for _, lab in batches]).tolist() == sub.labels.tolist()
    lazy = open_dataset("modelnet10", off_root, "test", num_points=50)
    (pts, lab), = iter_batches(lazy, 8)
    assert pts.shape == (3, 50, 3) and lab.dtype == torch.int64 and lab.tolist() == [1, 1, 2]


def test_off_folder_name_must_fit(off_root):
    with pytest.raises(DatasetError, match="OFF folder of modelnet10"):
        open_dataset("modelnet40", off_root, "test")
    write_box_off(off_root / "ModelNet10" / "airplane" / "test" / "airplane_0627.off", (1, 1, 1))
    with pytest.raises(DatasetError, match="not in modelnet10: airplane"):
        open_dataset("modelnet10", off_root, "test")


# ---------------------------------------------------------------------------- errors


def test_argument_errors(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset .shapenet.; choose one of modelnet10, modelnet40, scanobjectnn-obj-only"):
        open_dataset("shapenet", tmp_path)
    with pytest.raises(DatasetError, match="unknown split 'val'"):
        open_dataset("modelnet10", tmp_path, "val")
    with pytest.raises(DatasetError, match="unknown up axis 'x'"):
        open_dataset("modelnet10", tmp_path, up="x")
    with pytest.raises(DatasetError, match="num_points must be at least 1"):
        open_dataset("modelnet10", tmp_path, num_points=0)
    with pytest.raises(DatasetError, match="cache_size must be None"):
        open_dataset("modelnet10", tmp_path, cache_size=0)
    with pytest.raises(DatasetError, match=r"does not exist.*clip2point data download modelnet10 -o DIR"):
        open_dataset("modelnet10", tmp_path / "nowhere")


def test_no_layout_lists_what_was_looked_for(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    (tmp_path / "sub").mkdir()
    with pytest.raises(DatasetError) as err:
        open_dataset("modelnet40", tmp_path, "test")
    msg = str(err.value)
    assert "no modelnet40 dataset found" in msg and "ply_data_test0.h5" in msg and "modelnet40_test.txt" in msg
    assert "<class>/test/*.off" in msg and "clip2point data download modelnet40 -o DIR" in msg


def test_h5_split_missing_and_wrong_class_count(tmp_path):
    with h5py.File(tmp_path / "scan_train.h5", "w") as h:
        h["data"] = np.zeros((2, 8, 3), np.float32)
        h["label"] = np.zeros((2, 1), np.int64)
        h.attrs["class_names"] = json.dumps([f"c{k}" for k in range(15)])
        h.attrs["up"] = "y"
    with pytest.raises(DatasetError, match="h5 files with 15 classes, not modelnet10's 10"):
        open_dataset("modelnet10", tmp_path, "train")
    with h5py.File(tmp_path / "scan_train.h5", "a") as h:
        h.attrs["class_names"] = json.dumps(datasets.MODELNET10)
    assert len(open_dataset("modelnet10", tmp_path, "train")) == 2
    with pytest.raises(DatasetError, match="has no 'test' split \\(found h5 files for: train\\)"):
        open_dataset("modelnet10", tmp_path, "test")
    (tmp_path / "broken_test.h5").write_bytes(b"not hdf5")
    with pytest.raises(DatasetError, match="cannot read .*broken_test.h5"):
        open_dataset("modelnet10", tmp_path, "test")


@pytest.mark.parametrize(
    "case,match",
    [
        ("bad_json", "class_names is not valid JSON"),
        ("unwritten", "only 0 of its .* chunks are written"),
        ("strings", "holds text, not numbers"),
        ("label_count", "3 labels for 2 shapes"),
        ("nan", "NaN/inf"),
    ],
)
def test_h5_dataset_files_that_lie_are_refused(tmp_path, case, match):
    with h5py.File(tmp_path / "scan_test.h5", "w") as h:
        h.attrs["class_names"] = "[not json" if case == "bad_json" else json.dumps(datasets.MODELNET10)
        h.attrs["up"] = "y"
        if case == "unwritten":
            h.create_dataset("data", shape=(10**8, 1024, 3), dtype="f4", chunks=(1, 1024, 3))
        elif case == "strings":
            h["data"] = np.array([[[b"a", b"b", b"c"]]])
        else:
            data = np.random.default_rng(0).random((2, 8, 3)).astype(np.float32)
            data[1, 3, 0] = np.nan if case == "nan" else data[1, 3, 0]
            h["data"] = data
        h["label"] = np.zeros((3 if case == "label_count" else 2, 1), np.int64)
    start = time.perf_counter()
    with pytest.raises(DatasetError, match=match):
        open_dataset("modelnet10", tmp_path, "test")
    assert time.perf_counter() - start < 5


def test_h5_up_axis_rules():
    rule = datasets.h5_up_axis
    assert rule(Path("modelnet10_pcd1024_test.h5"), {}) == "z"
    assert rule(Path("modelnet40nr_airplane_bathtub_2048_test.h5"), {}) == "y"
    assert rule(Path("ply_data_test0.h5"), {}) == "y"
    assert rule(Path("modelnet10_pcd1024_test.h5"), {"up": b"y"}) == "y"  # attribute wins
    assert rule(Path("other.h5"), {}) == "y"
    with pytest.raises(DatasetError, match="not 'y' or 'z'"):
        rule(Path("a.h5"), {"up": "w"})


# ---------------------------------------------------------------------------- download


def test_download_unreachable_url_gives_advice(tmp_path, monkeypatch):
    monkeypatch.setitem(datasets.DATASET_URLS, "modelnet10", "http://127.0.0.1:9/x.zip")
    with pytest.raises(DatasetError) as err:
        download_dataset("modelnet10", tmp_path / "dl", progress=False)
    msg = str(err.value)
    assert msg.startswith("could not download ModelNet10 from http://127.0.0.1:9/x.zip (")
    assert f"unzip it into {tmp_path / 'dl'}, and pass --data-dir {tmp_path / 'dl'}" in msg


def test_download_network_error_is_dataset_error(tmp_path, monkeypatch):
    import pooch
    import requests

    def offline(*args, **kwargs):
        raise requests.exceptions.ConnectionError("Name or service not known")

    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(DatasetError, match=r"could not download ModelNet40 from http://modelnet\.cs\.princeton\.edu/"
                                           r"ModelNet40\.zip \(ConnectionError: Name or service not known\)"):
        download_dataset("modelnet40", tmp_path)


def test_download_unzips_and_returns_the_dataset_folder(tmp_path, off_root, monkeypatch):
    import pooch

    source = tmp_path / "ModelNet10.zip.src"
    with zipfile.ZipFile(source, "w") as zf:
        for f in sorted((off_root / "ModelNet10").rglob("*.off")):
            zf.write(f, f.relative_to(off_root).as_posix())
        zf.writestr("__MACOSX/ModelNet10/._junk", b"\0")
    calls = []

    def fake_retrieve(url, known_hash=None, fname=None, path=None, progressbar=False, **kwargs):
        calls.append((url, known_hash, fname, progressbar))
        target = Path(path) / fname
        target.write_bytes(source.read_bytes())
        return str(target)

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    dest = tmp_path / "downloads"
    out = download_dataset("modelnet10", dest, progress=True)
    assert out == dest / "ModelNet10"
    assert calls == [(datasets.DATASET_URLS["modelnet10"], None, "ModelNet10.zip", True)]
    assert (out / "chair" / "test" / "chair_0890.off").read_text() == (
        off_root / "ModelNet10" / "chair" / "test" / "chair_0890.off").read_text()
    assert sorted(p.name for p in dest.iterdir()) == ["ModelNet10"]  # no zip, temp folder or __MACOSX left
    assert len(open_dataset("modelnet10", dest, "test", num_points=64)) == 3
    assert download_dataset("modelnet10", dest) == out and len(calls) == 1  # already there: no fetch


def test_download_bad_archives(tmp_path, monkeypatch):
    import pooch

    payload = {"bytes": b"<html>not a zip</html>"}

    def fake_retrieve(url, known_hash=None, fname=None, path=None, progressbar=False, **kwargs):
        (Path(path) / fname).write_bytes(payload["bytes"])
        return str(Path(path) / fname)

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    with pytest.raises(DatasetError, match="not a valid zip archive"):
        download_dataset("modelnet10", tmp_path)
    assert not (tmp_path / "ModelNet10.zip").exists() and not (tmp_path / "ModelNet10").exists()
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escaped.txt", "x")
    payload["bytes"] = evil.read_bytes()
    with pytest.raises(DatasetError, match="unsafe path"):
        download_dataset("modelnet10", tmp_path / "d")
    assert not (tmp_path / "escaped.txt").exists()


# ---------------------------------------------------------------------------- ModelNet40 in every layout, find_datasets


def test_modelnet40_off_folder_all_40_classes_with_the_release_prompts(tmp_path):
    """ModelNet40's OFF layout (ModelNet40/<class>/{train,test}/<class>_0001.off): labels index all 40 classes in the
    official order; prompts are the release's spaced words (night stand, flower pot)."""
    root = tmp_path / "ModelNet40"
    picks = {"airplane": 0, "flower_pot": 15, "night_stand": 23, "xbox": 39}
    for cls in picks:
        write_box_off(root / cls / "test" / f"{cls}_0001.off", (1, 2, 3))
    write_box_off(root / "night_stand" / "train" / "night_stand_0001.off", (1, 2, 3))
    ds = open_dataset("modelnet40", tmp_path, "test", num_points=64)
    assert ds.layout == "off" and ds.root == root and ds.up == "z" and len(ds.class_names) == 40
    assert ds.labels.tolist() == sorted(picks.values())
    assert [ds.class_names[i] for i in ds.labels] == ["airplane", "flower pot", "night stand", "xbox"]
    assert ds.class_names == list(datasets.MODELNET40) and all("_" not in c for c in ds.class_names)
    assert len(open_dataset("modelnet40", root, "train", num_points=8)) == 1
    with pytest.raises(DatasetError, match="OFF folder of modelnet40"):
        open_dataset("modelnet10", root, "test")


@needs_shared
def test_modelnet40_h5_layouts_prompt_words(tmp_path, mn40_raw):
    """Our h5 layout with a class_names attribute (all 40, underscores) gives the release's spaced words too."""
    data, _, labels, names = mn40_raw
    ids = (MN40 / "modelnet40_shape_names.txt").read_text().split()
    with h5py.File(tmp_path / "modelnet40_mine_test.h5", "w") as h:
        h["data"], h["label"] = data[:10], labels[:10, None]
        h.attrs["class_names"] = json.dumps(ids)
        h.attrs["up"] = "y"
    ds = open_dataset("modelnet40", tmp_path, "test", num_points=32)
    assert ds.class_names == list(datasets.MODELNET40) and ds.labels.tolist() == labels[:10].tolist()
    assert open_dataset("modelnet40", tmp_path, "test", prompt_style="spaced").class_names == ds.class_names


@needs_shared
def test_find_datasets_on_the_shared_data_and_its_layouts(tmp_path, off_root):
    assert datasets.find_datasets(SHARED) == {"modelnet10": MN10, "modelnet40": MN40}
    found = datasets.find_datasets(off_root)
    assert found == {"modelnet10": off_root / "ModelNet10"}
    assert len(open_dataset("modelnet10", found["modelnet10"], "test", num_points=8)) == 3
    assert datasets.find_datasets(tmp_path / "empty" if (tmp_path / "empty").mkdir() is None else tmp_path) == {}
    with pytest.raises(datasets.DatasetNotFoundError, match="not a folder"):
        datasets.find_datasets(tmp_path / "nowhere")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "lvis.json").write_text("[not json")
    assert datasets.find_datasets(tmp_path / "broken") == {}  # found but damaged: left out (a warning is logged)


def test_typed_errors_for_missing_folders_and_layouts(tmp_path):
    with pytest.raises(datasets.DatasetNotFoundError, match="does not exist"):
        open_dataset("modelnet40", tmp_path / "nowhere")
    with pytest.raises(datasets.DatasetNotFoundError, match="no modelnet40 dataset found"):
        open_dataset("modelnet40", tmp_path)
    assert issubclass(datasets.DatasetNotFoundError, DatasetError) and issubclass(datasets.DatasetFileError, DatasetError)
