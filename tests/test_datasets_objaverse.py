"""Objaverse-LVIS: the safe layout, OpenShape's split file, the opt-in converter, and pickles as an attacker uses them."""
from __future__ import annotations

import ast
import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from clip2point.cli import main
from clip2point.datasets import (
    DatasetError, DatasetFileError, DatasetNotFoundError, find_datasets, iter_batches, open_dataset,
)

ROOT = Path(__file__).resolve().parents[1]
CATEGORIES = ["ice_cream", "Christmas_tree", "bow_(weapon)", "mug"]


def cloud(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(-1, 1, size=(n, 3)).astype(np.float32)
    xyz[:, 1] *= 0.2 + seed % 3  # shapes differ in height (y, OpenShape's up)
    return xyz, rng.uniform(0, 1, size=(n, 3)).astype(np.float32)


def write_ply(path: Path, xyz: np.ndarray) -> None:
    header = f"ply\nformat ascii 1.0\nelement vertex {len(xyz)}\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    path.write_text(header + "\n".join(" ".join(f"{v:.6f}" for v in p) for p in xyz) + "\n")


@pytest.fixture
def safe_root(tmp_path) -> tuple[Path, dict]:
    """data/objaverse-lvis/{lvis.json, objects/<uid>.npz|.npy|.ply}: the layout the reader (and converter) use."""
    root = tmp_path / "data" / "objaverse-lvis"
    (root / "objects").mkdir(parents=True)
    entries, raw = [], {}
    for k in range(8):
        uid = f"{k:02d}ab34cd"
        xyz, rgb = cloud(k)
        ext = (".npz", ".npz", ".npz", ".npz", ".npz", ".npy", ".ply", ".npz")[k]
        path = root / "objects" / f"{uid}{ext}"
        if ext == ".npz":
            np.savez(path, xyz=xyz, rgb=rgb)
        elif ext == ".npy":
            np.save(path, xyz)
        else:
            write_ply(path, xyz)
        entries.append({"uid": uid, "category": CATEGORIES[k % 4], "path": f"objects/{path.name}"})
        raw[uid] = xyz
    (root / "lvis.json").write_text(json.dumps(entries))
    return root, raw


def test_safe_layout_classes_labels_and_points(safe_root, tmp_path):
    root, raw = safe_root
    ds = open_dataset("objaverse-lvis", tmp_path / "data", "test", num_points=64)  # a parent folder works
    assert ds.root == root and ds.layout == "objaverse-lvis" and ds.up == "y" and len(ds) == 8
    # sorted unique categories (OpenShape's order), underscores written as spaces
    assert ds.class_names == ["Christmas tree", "bow (weapon)", "ice cream", "mug"]
    assert ds.labels.tolist() == [2, 0, 1, 3, 2, 0, 1, 3]
    assert ds.names == list(raw)
    for i, uid in enumerate(raw):
        points, label = ds[i]
        assert points.dtype == torch.float32 and points.shape == (64, 3)
        gap = np.abs(points.numpy()[:, None, :] - raw[uid][None]).max(axis=2).min(axis=1)
        assert gap.max() < 1e-5  # each point is a stored point: a subset, axes as stored (y-up)
    assert torch.equal(ds[3][0], open_dataset("objaverse-lvis", root, num_points=64)[3][0])  # seeded: repeatable
    full = open_dataset("objaverse-lvis", root, num_points=10_000)
    np.testing.assert_allclose(np.sort(full[0][0].numpy(), axis=0), np.sort(raw[ds.names[0]], axis=0), atol=1e-6)
    assert open_dataset("objaverse-lvis", root, up="z")[1][0][:, 1].abs().max() > 0.9  # z-up override rotates
    (pts, labels), = iter_batches(ds.subset(range(5)), 8)
    assert pts.shape == (5, 64, 3) and labels.tolist() == [2, 0, 1, 3, 2]


def test_openshape_split_file_with_absolute_data_paths(tmp_path):
    """OpenShape's meta_data/split/lvis.json: data_path on the authors' machine, matched by its tail."""
    root = tmp_path / "openshape"
    entries = []
    for k in range(3):
        uid = f"{k:032x}"
        xyz, rgb = cloud(k)
        obj = root / "Objaverse" / f"000-{k:03d}" / f"{uid}.npz"
        obj.parent.mkdir(parents=True, exist_ok=True)
        np.savez(obj, xyz=xyz, rgb=rgb)
        entries.append({"uid": uid, "category": CATEGORIES[k], "group": "x",
                        "data_path": f"/mnt/data/objaverse-processed/merged_for_training_final/Objaverse/000-{k:03d}/{uid}.npz"})
    (root / "meta_data" / "split").mkdir(parents=True)
    (root / "meta_data" / "split" / "lvis.json").write_text(json.dumps(entries))
    ds = open_dataset("objaverse-lvis", root, num_points=32)
    assert ds.root == root and ds.paths[2] == root / "Objaverse" / "000-002" / f"{2:032x}.npz"
    assert ds[2][0].shape == (32, 3)


def test_train_split_missing_split_and_damaged_split_files(safe_root, tmp_path):
    root, _ = safe_root
    with pytest.raises(DatasetError, match="objaverse-lvis has only a 'test' split"):
        open_dataset("objaverse-lvis", root, "train")
    with pytest.raises(DatasetNotFoundError, match="no objaverse-lvis split file .*convert-openshape"):
        open_dataset("objaverse-lvis", tmp_path / "data" / "objaverse-lvis" / "objects")
    bad = {
        "[not json": "not valid JSON",
        "{}": "non-empty JSON list",
        "[]": "non-empty JSON list",
        '[{"uid": "a", "category": "mug"}]': "entry 0 is not",
        '[{"uid": 3, "category": "mug", "path": "a.npz"}]': "entry 0 is not",
        '[{"uid": "../x", "category": "mug", "path": "a.npz"}]': "unsafe uid",
        '[{"uid": "a", "category": "mug", "path": "a.npz"}, {"uid": "a", "category": "cup", "path": "b.npz"}]':
            "listed twice",
        '[{"uid": "a", "category": "mug", "path": "../../secret.npz"}]': "leaves the dataset folder",
        '[{"uid": "a", "category": "mug", "path": "/elsewhere/x.npz"}]': "not inside the dataset folder",
    }
    for text, match in bad.items():
        (root / "lvis.json").write_text(text)
        with pytest.raises(DatasetFileError, match=match):
            open_dataset("objaverse-lvis", root)


@pytest.mark.parametrize("case,match", [
    ("missing", "is missing"),
    ("no_xyz", "none of the arrays"),
    ("two_columns", "expected a numeric"),
    ("nan", "NaN"),
    ("glb", "object files must be"),
])
def test_damaged_object_files_raise_typed_errors(safe_root, case, match):
    root, _ = safe_root
    path = root / "objects" / "00ab34cd.npz"
    if case == "missing":
        path.unlink()
    elif case == "no_xyz":
        np.savez(path, colour=np.zeros((5, 3)), other=np.zeros(4))
    elif case == "two_columns":
        np.savez(path, xyz=np.zeros((5, 2), np.float32))
    elif case == "nan":
        np.savez(path, xyz=np.full((5, 3), np.nan, np.float32))
    else:
        entries = json.loads((root / "lvis.json").read_text())
        entries[0]["path"] = "objects/00ab34cd.glb"
        (root / "objects" / "00ab34cd.glb").write_bytes(b"glTF")
        (root / "lvis.json").write_text(json.dumps(entries))
    ds = open_dataset("objaverse-lvis", root)
    with pytest.raises(DatasetError, match=match):
        ds[0]
    assert ds[1][0].shape[1] == 3  # the others still read


# ---------------------------------------------------------------------------- pickles, as an attacker would


class Payload:
    """Unpickling this creates ``marker`` (``open(marker, "w")``): proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant_pickles(folder: Path, marker: Path) -> dict[str, Path]:
    """Pickle payloads under .npy/.npz names: an NPY object array, a bare pickle stream, an npz member, and an
    OpenShape-style pickled dict."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"npy_object": folder / "a.npy", "raw_pickle": folder / "b.npy", "npz_member": folder / "c.npz",
             "openshape_dict": folder / "d.npy"}
    np.save(files["npy_object"], np.array([Payload(marker)], dtype=object), allow_pickle=True)
    files["raw_pickle"].write_bytes(pickle.dumps(Payload(marker), protocol=4))
    with zipfile.ZipFile(files["npz_member"], "w") as zf:
        with zf.open("xyz.npy", "w") as fh:
            np.lib.format.write_array(fh, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    np.save(files["openshape_dict"], np.array({"xyz": Payload(marker), "rgb": None}, dtype=object), allow_pickle=True)
    return files


def payload_split(root: Path, files: dict[str, Path], safe_first: bool = False) -> None:
    """A split listing the payload files (after one genuine object when ``safe_first``)."""
    paths = list(files.values())
    if safe_first:
        np.savez(root / "objects" / "safe.npz", xyz=cloud(0)[0])
        paths.insert(0, root / "objects" / "safe.npz")
    entries = [{"uid": f"u{k}", "category": "mug", "path": str(p.relative_to(root))} for k, p in enumerate(paths)]
    (root / "lvis.json").write_text(json.dumps(entries))


REFUSED = "pickled|not a NumPy|expected a numeric"


def test_the_reader_never_unpickles(tmp_path):
    marker = tmp_path / "PWNED"
    root = tmp_path / "objaverse-lvis"
    files = plant_pickles(root / "objects", marker)
    payload_split(root, files, safe_first=True)
    ds = open_dataset("objaverse-lvis", root)
    assert ds[0][0].shape == (300, 3)
    for i in range(1, len(ds)):
        with pytest.raises(DatasetFileError, match=REFUSED) as err:
            ds[i]
        assert "clip2point data convert-openshape" in str(err.value) or "numeric" in str(err.value)
    with pytest.raises(DatasetFileError):
        list(iter_batches(ds, 8))
    payload_split(root, files)  # a split of pickles only (an unconverted OpenShape tree): refused when opened
    with pytest.raises(DatasetFileError, match="holds only pickled objects.*convert-openshape"):
        open_dataset("objaverse-lvis", root)
    assert not marker.exists()


def test_the_apps_dataset_browser_never_unpickles(tmp_path):
    from clip2point.errors import Clip2PointError
    from ui.registry import ModelRegistry
    from ui.shapes import ShapeSource, available_datasets, load_shape

    marker = tmp_path / "PWNED"
    data = tmp_path / "data"
    root = data / "objaverse-lvis"
    files = plant_pickles(root / "objects", marker)
    payload_split(root, files)
    registry = ModelRegistry()
    assert "objaverse-lvis" not in available_datasets(data, registry)  # refused, not offered
    with pytest.raises(Clip2PointError, match="pickled"):
        load_shape(ShapeSource.from_dataset(data, "objaverse-lvis", "test", 0), registry=registry)
    payload_split(root, files, safe_first=True)
    registry = ModelRegistry()
    assert "objaverse-lvis" in available_datasets(data, registry)
    assert load_shape(ShapeSource.from_dataset(data, "objaverse-lvis", "test", 0), registry=registry).points.shape[1] == 3
    for i in range(1, 5):
        with pytest.raises(Clip2PointError, match=REFUSED):
            load_shape(ShapeSource.from_dataset(data, "objaverse-lvis", "test", i), registry=registry)
    assert not marker.exists()


def test_the_converter_refuses_without_the_flag_and_reads_nothing(tmp_path, capsys):
    from clip2point.cli.openshape import convert_openshape

    marker = tmp_path / "PWNED"
    src = tmp_path / "openshape"
    files = plant_pickles(src / "Objaverse" / "000-000", marker)
    payload_split(src, files)
    dest = tmp_path / "out"
    assert main(["-q", "data", "convert-openshape", str(src), "-o", str(dest), "--split-file", str(src / "lvis.json")]) == 2
    err = capsys.readouterr().err
    assert "pickled Python objects" in err and "can run arbitrary code" in err and "--i-trust-these-files" in err
    with pytest.raises(Exception, match="--i-trust-these-files"):
        convert_openshape(src, dest, src / "lvis.json", trusted=False)
    assert not marker.exists() and not dest.exists()


def test_the_converter_with_the_flag_writes_the_safe_layout(tmp_path, capsys):
    src = tmp_path / "openshape"
    entries, raw = [], {}
    for k in range(5):
        uid = f"{k:032x}"
        xyz, rgb = cloud(k, 200)
        raw[uid] = xyz
        obj = src / "Objaverse" / "000-007" / f"{uid}.npy"
        obj.parent.mkdir(parents=True, exist_ok=True)
        value = {"xyz": xyz, "rgb": rgb, "text": ["a thing"], "group": "g"}
        if k == 3:
            value = {"xyz": xyz[:, :2]}  # damaged: skipped and reported
        np.save(obj, np.array(value, dtype=object), allow_pickle=True)
        entries.append({"uid": uid, "category": CATEGORIES[k % 4], "group": "g",
                        "data_path": f"/mnt/data/objaverse-processed/merged_for_training_final/Objaverse/000-007/{uid}.npy"})
    entries.append({"uid": "f" * 32, "category": "mug", "data_path": "/mnt/data/Objaverse/000-007/missing.npy"})
    split = src / "meta_data" / "split" / "lvis.json"
    split.parent.mkdir(parents=True)
    split.write_text(json.dumps(entries))
    dest = tmp_path / "safe"
    args = ["-q", "data", "convert-openshape", str(src), "-o", str(dest), "--split-file", str(split),
            "--i-trust-these-files"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "converted 4, kept 0 already converted, skipped 2" in out and f"--data-dir {dest}" in out
    assert sorted(json.loads((dest / "skipped.json").read_text())) == [f"{3:032x}", "f" * 32]
    rows = json.loads((dest / "lvis.json").read_text())
    assert [r["path"] for r in rows] == [f"objects/{u}.npz" for u in raw if u != f"{3:032x}"]
    with np.load(dest / rows[0]["path"], allow_pickle=False) as z:
        assert sorted(z.files) == ["rgb", "xyz"] and z["xyz"].dtype == np.float32
        np.testing.assert_array_equal(z["xyz"], raw[rows[0]["uid"]])
    ds = open_dataset("objaverse-lvis", dest, num_points=500)
    assert len(ds) == 4 and ds.class_names == ["Christmas tree", "bow (weapon)", "ice cream"]  # mug was skipped
    np.testing.assert_allclose(np.sort(ds[1][0].numpy(), axis=0), np.sort(raw[ds.names[1]], axis=0), atol=1e-6)
    assert main(args) == 0 and "converted 0, kept 4" in capsys.readouterr().out  # re-runs resume
    assert find_datasets(tmp_path)["objaverse-lvis"] == dest


def _imports_of(module: str, path: Path) -> set[str]:
    """Every module name an import statement in ``path`` (module ``module``) may load."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            out |= {base} | {f"{base}.{a.name}" for a in node.names}
    return out


def _module_file(name: str) -> Path | None:
    rel = ROOT / Path(*name.split("."))
    return next((p for p in (rel.with_suffix(".py"), rel / "__init__.py") if p.is_file()), None)


def test_the_unpickling_module_is_unreachable_from_the_app_and_the_datasets():
    """Static: no import path (function-level imports included) leads from ui/ or clip2point.datasets to it."""
    start = {f"ui.{p.relative_to(ROOT / 'ui').with_suffix('').as_posix().replace('/', '.')}".removesuffix(".__init__")
             for p in (ROOT / "ui").rglob("*.py")}
    start |= {f"clip2point.datasets.{p.stem}" for p in (ROOT / "clip2point" / "datasets").glob("*.py")}
    seen, todo = set(), list(start)
    while todo:
        mod = todo.pop()
        path = _module_file(mod)
        if mod in seen or path is None:
            continue
        seen.add(mod)
        parts = mod.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a/__init__, a/b/__init__
        todo += [m for m in _imports_of(mod, path) if m.split(".")[0] in ("clip2point", "ui")]
    assert "clip2point.cli.openshape" not in seen
    assert "ui.app" in seen and "clip2point.datasets.objaverse" in seen  # the walk did reach the app and the reader
    for path in (ROOT / "clip2point" / "datasets").glob("*.py"):  # and no unpickling call in the readers
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            assert not (isinstance(node, ast.keyword) and node.arg == "allow_pickle"
                        and not (isinstance(node.value, ast.Constant) and node.value.value is False)), path
            assert not (isinstance(node, (ast.Import, ast.ImportFrom)) and "pickle" in ast.unparse(node)), path


@pytest.mark.slow
def test_importing_the_app_does_not_load_the_converter():
    code = ("import sys, ui.app, clip2point.datasets, clip2point.cli; "
            "print('clip2point.cli.openshape' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"
