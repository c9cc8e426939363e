"""ScanObjectNN readers on small h5 files written in the released layout (h5_files/main_split{,_nobg}/...)."""
from __future__ import annotations

import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from clip2point.classes import SCANOBJECTNN
from clip2point.cli import main
from clip2point.datasets import (
    DATASET_NAMES, DatasetError, DatasetFileError, DatasetNotFoundError, find_datasets, iter_batches, open_dataset,
    release_fps,
)

VARIANT_FILES = {  # the released zip's layout (official README, § h5 files)
    "scanobjectnn-obj-only": ("main_split_nobg", "{}_objectdataset.h5"),
    "scanobjectnn-obj-bg": ("main_split", "{}_objectdataset.h5"),
    "scanobjectnn-pb-t50-rs": ("main_split", "{}_objectdataset_augmentedrot_scale75.h5"),
}


def fake_scan(rng: np.random.Generator, count: int, points: int) -> np.ndarray:
    """(count, points, 3) float32 clouds off the origin, in arbitrary units (not unit-sphere)."""
    return (rng.normal(size=(count, points, 3)) * 3 + 10).astype(np.float32)


def write_split(path: Path, data: np.ndarray, labels: np.ndarray, mask: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h:
        h["data"] = data
        h["label"] = labels
        if mask:
            m = np.zeros(data.shape[:2], dtype=np.int64)
            m[:, ::4] = -1  # background points
            h["mask"] = m


@pytest.fixture
def h5_root(tmp_path) -> tuple[Path, dict]:
    """tmp/ScanObjectNN/h5_files/{main_split,main_split_nobg}/... with distinct data per variant and split."""
    rng = np.random.default_rng(0)
    root = tmp_path / "ScanObjectNN" / "h5_files"
    raw = {}
    for name, (folder, pattern) in VARIANT_FILES.items():
        for split, prefix in (("train", "training"), ("test", "test")):
            data = fake_scan(rng, 7 if split == "train" else 5, 64)
            labels = rng.integers(0, 15, size=len(data)).astype(np.uint8)
            labels[0] = 14
            write_split(root / folder / pattern.format(prefix), data, labels)
            raw[name, split] = (data, labels)
    return root, raw


def naive_kernel_fps(points: np.ndarray, k: int) -> list[int]:
    """pointnet2_ops furthest_point_sample, written out point by point from the kernel's rules
    (normalised as the release's pc_normalize; start 0; |p|² ≤ 1e-3 skipped; temp 1e10; strict '>')."""
    p = points.astype(np.float64)
    p = p - p.mean(axis=0)
    p = p / np.sqrt((p ** 2).sum(axis=1)).max()
    temp = [1e10] * len(p)
    chosen, old = [0], 0
    for _ in range(1, k):
        best, besti = -1.0, 0
        for j in range(len(p)):
            if (p[j] ** 2).sum() <= 1e-3:
                continue
            d = ((p[j] - p[old]) ** 2).sum()
            temp[j] = min(d, temp[j])
            if temp[j] > best:
                best, besti = temp[j], j
        chosen.append(besti)
        old = besti
    return chosen


def test_the_three_variants_are_dataset_names():
    assert {"scanobjectnn-obj-only", "scanobjectnn-obj-bg", "scanobjectnn-pb-t50-rs"} <= set(DATASET_NAMES)
    # the release's training_data/shape_names_ext.txt order (label k = k-th name)
    assert SCANOBJECTNN == ("bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table",
                            "bed", "pillow", "sink", "sofa", "toilet")


@pytest.mark.parametrize("name", list(VARIANT_FILES))
def test_each_variant_reads_its_own_files_as_stored(h5_root, name):
    root, raw = h5_root
    for split in ("train", "test"):
        data, labels = raw[name, split]
        ds = open_dataset(name, root, split, num_points=4096)  # more than stored: every point, as stored
        assert ds.layout == "scanobjectnn" and ds.up == "y" and ds.split == split and ds.root == root
        assert ds.class_names == list(SCANOBJECTNN) and len(ds) == len(data)
        np.testing.assert_array_equal(ds.labels, labels.astype(np.int64))
        points, label = ds[1]
        assert points.dtype == torch.float32 and points.shape == (64, 3) and label == int(labels[1])
        np.testing.assert_array_equal(points.numpy(), data[1])  # no up-axis rotation, raw units
    assert ds.shape_name(0).startswith("test_objectdataset") and ds.shape_name(4).endswith("_00004")


def test_release_protocol_fps_to_1024_points_of_the_stored_cloud(h5_root):
    root, raw = h5_root
    data, _ = raw["scanobjectnn-obj-bg", "test"]
    ds = open_dataset("scanobjectnn-obj-bg", root, "test", num_points=16)
    for i in range(len(ds)):
        idx = naive_kernel_fps(data[i], 16)
        np.testing.assert_array_equal(ds[i][0].numpy(), data[i][idx])
    assert open_dataset("scanobjectnn-obj-bg", root, "test").num_points == 1024  # the default, the release's
    (pts, labels), = iter_batches(ds, 8)
    assert pts.shape == (5, 16, 3) and labels.tolist() == ds.labels.tolist()


def test_release_fps_matches_the_kernel_rules():
    rng = np.random.default_rng(3)
    for n, k in ((50, 20), (200, 64), (64, 64)):
        pts = (rng.normal(size=(n, 3)) * 5 - 2).astype(np.float32)
        assert release_fps(pts, k).tolist() == naive_kernel_fps(pts, k)
    # points within sqrt(1e-3) of the centroid (after normalising) are never chosen, whatever k
    ring = np.concatenate([np.eye(3), -np.eye(3), np.zeros((4, 3)) + 0.001]).astype(np.float32)
    picked = release_fps(ring, 10)
    assert picked[0] == 0 and set(picked[1:].tolist()) <= set(range(6))
    assert len(set(picked[:6].tolist())) == 6


def test_data_dir_may_be_the_parent_h5_files_or_the_variant_folder(h5_root, tmp_path):
    root, raw = h5_root
    data, _ = raw["scanobjectnn-obj-only", "test"]
    for where in (tmp_path, root.parent, root, root / "main_split_nobg"):
        ds = open_dataset("scanobjectnn-obj-only", where, "test", num_points=4096)
        assert len(ds) == len(data)
        np.testing.assert_array_equal(ds[0][0].numpy(), data[0])
    # main_split holds OBJ_BG files of the same name: never taken for OBJ_ONLY
    with pytest.raises(DatasetNotFoundError, match="no scanobjectnn-obj-only"):
        open_dataset("scanobjectnn-obj-only", root / "main_split", "test")
    np.testing.assert_array_equal(open_dataset("scanobjectnn-obj-bg", root / "main_split", "test", num_points=64)[0][0],
                                  raw["scanobjectnn-obj-bg", "test"][0][0])


def test_a_renamed_folder_is_refused_with_advice(tmp_path):
    write_split(tmp_path / "my_scans" / "test_objectdataset.h5", np.ones((2, 8, 3), np.float32), np.zeros(2, np.int64))
    with pytest.raises(DatasetNotFoundError) as err:
        open_dataset("scanobjectnn-obj-bg", tmp_path, "test")
    msg = str(err.value)
    assert "main_split/test_objectdataset.h5" in msg and "my_scans/test_objectdataset.h5" in msg
    assert "keep the release's folder names main_split/ and main_split_nobg/" in msg
    assert "hkust-vgd.github.io/scanobjectnn" in msg and "clip2point data download scanobjectnn" in msg
    # PB_T50_RS files have a unique name: found in any folder
    write_split(tmp_path / "flat" / "test_objectdataset_augmentedrot_scale75.h5", np.ones((2, 8, 3), np.float32),
                np.zeros(2, np.int64))
    assert len(open_dataset("scanobjectnn-pb-t50-rs", tmp_path, "test")) == 2


def test_bare_name_and_missing_split(h5_root, tmp_path):
    root, _ = h5_root
    with pytest.raises(DatasetError, match="say which ScanObjectNN variant"):
        open_dataset("scanobjectnn", root)
    assert len(open_dataset("ScanObjectNN_OBJ_BG", root, num_points=8)) == 5  # case, - and _ ignored
    (root / "main_split" / "training_objectdataset.h5").unlink()
    with pytest.raises(DatasetNotFoundError, match="no scanobjectnn-obj-bg .OBJ_BG. 'train' split"):
        open_dataset("scanobjectnn-obj-bg", root, "train")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        open_dataset("scanobjectnn-obj-bg", tmp_path / "nowhere")


def _write_broken(path: Path, case: str) -> None:
    data = np.random.default_rng(1).random((3, 8, 3)).astype(np.float32)
    labels = np.array([0, 3, 14], dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h:
        if case == "no_label":
            h["data"] = data
        elif case == "no_data":
            h["label"] = labels
        elif case == "two_columns":
            h["data"], h["label"] = data[:, :, :2], labels
        elif case == "flat":
            h["data"], h["label"] = data.reshape(3, 24), labels
        elif case == "label_count":
            h["data"], h["label"] = data, labels[:2]
        elif case == "label_15":
            h["data"], h["label"] = data, np.array([0, 15, 1])
        elif case == "label_negative":
            h["data"], h["label"] = data, np.array([0, -1, 1])
        elif case == "label_fraction":
            h["data"], h["label"] = data, np.array([0.0, 1.5, 2.0])
        elif case == "nan":
            data[2, 5, 1] = np.nan
            h["data"], h["label"] = data, labels
        elif case == "mask_shape":
            h["data"], h["label"], h["mask"] = data, labels, np.zeros((3, 7))
        elif case == "external":
            h["label"] = labels
            h["data"] = h5py.ExternalLink("elsewhere.h5", "/data")
        elif case == "unwritten":
            h.create_dataset("data", shape=(10**7, 2048, 3), dtype="f4", chunks=(1, 2048, 3))
            h["label"] = np.zeros(10**7, np.uint8)


@pytest.mark.parametrize("case,match", [
    ("no_label", "dataset 'label' does not exist"),
    ("no_data", "dataset 'data' does not exist"),
    ("two_columns", r"'data' has shape \(3, 8, 2\), expected \(S, 2048, 3\)"),
    ("flat", r"'data' has shape \(3, 24\)"),
    ("label_count", r"'label' has shape \(2,\), expected \(3,\)"),
    ("label_15", r"labels 0..15 lie outside 0..14"),
    ("label_negative", r"labels -1..1 lie outside 0..14"),
    ("label_fraction", "non-integer"),
    ("nan", "NaN/inf"),
    ("mask_shape", r"'mask' has shape \(3, 7\), expected \(3, 8\)"),
    ("external", "external link"),
    ("unwritten", "chunks are written"),
])
def test_damaged_files_raise_typed_errors(tmp_path, case, match):
    _write_broken(tmp_path / "h5_files" / "main_split" / "test_objectdataset.h5", case)
    start = time.perf_counter()
    with pytest.raises(DatasetFileError, match=match):
        open_dataset("scanobjectnn-obj-bg", tmp_path, "test")
    assert time.perf_counter() - start < 5  # refused before allocating the declared 250 GB


def test_find_datasets_lists_each_variant_with_its_data_dir(h5_root, tmp_path):
    root, _ = h5_root
    found = find_datasets(tmp_path)
    assert {k: v for k, v in found.items() if k.startswith("scanobjectnn")} == {n: root for n in VARIANT_FILES}
    for name, data_dir in found.items():
        assert len(open_dataset(name, data_dir, "test", num_points=8)) == 5


def test_cli_download_explains_where_to_get_scanobjectnn(tmp_path, capsys):
    for name in ("scanobjectnn", "scanobjectnn-pb-t50-rs"):
        assert main(["-q", "data", "download", name, "-o", str(tmp_path / "d")]) == 2
        err = capsys.readouterr().err
        assert "no public download URL" in err and "https://hkust-vgd.github.io/scanobjectnn/" in err
        assert "main_split_nobg/{training_objectdataset.h5,test_objectdataset.h5}" in err
        assert "training_objectdataset_augmentedrot_scale75.h5" in err
        assert f"--data-dir {tmp_path / 'd' / 'h5_files'}" in err
    assert not (tmp_path / "d").exists()  # nothing created


def test_cli_find_lists_the_data_dir_of_each_dataset(h5_root, tmp_path, capsys):
    root, _ = h5_root
    assert main(["-q", "data", "find", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"{'scanobjectnn-obj-only':24s} --dataset scanobjectnn-obj-only --data-dir {root}" in lines
    assert len(lines) == 3
    assert main(["-q", "data", "find", str(tmp_path / "ScanObjectNN" / "h5_files" / "main_split_nobg")]) == 0
    assert main(["-q", "data", "find", str(root / "main_split" / "..")]) == 0
    (tmp_path / "empty").mkdir()
    assert main(["-q", "data", "find", str(tmp_path / "empty")]) == 1
    assert "no dataset found" in capsys.readouterr().out
