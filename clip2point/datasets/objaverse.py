"""Objaverse-LVIS (the zero-shot benchmark of OpenShape, ULIP-2, Uni3D), read from a safe per-object layout.

OpenShape (Liu et al., NeurIPS 2023; github.com/Colin97/OpenShape_code, ``src/data.py`` ``ObjaverseLVIS``)
evaluates on the LVIS-annotated subset of Objaverse listed in its ``meta_data/split/lvis.json``: a JSON list
of ``{"uid", "category", "group", "data_path"}`` entries, 1,156 categories. Its per-object files are
``.npy`` **pickled dicts** (``np.load(path, allow_pickle=True).item()`` with ``xyz`` (10000, 3) in [-1, 1] and
``rgb`` (10000, 3) in [0, 1], plus text/image features); clip2point never unpickles them here. The opt-in
``clip2point data convert-openshape`` command (CLI only) turns trusted local copies into this layout.

Layout read here (``data_dir`` = the folder holding the split file, or a folder holding that folder):

* a split file, the first found of :data:`SPLIT_FILE_NAMES` (``lvis.json``, ``split/lvis.json``,
  ``meta_data/split/lvis.json``): a JSON list of ``{"uid": str, "category": str, "path": str}`` (OpenShape's
  own entries with ``data_path`` are accepted too);
* one file per object, its ``path`` relative to the dataset folder (the one the split file's name above is
  relative to: ``DIR`` for ``DIR/lvis.json`` and for ``DIR/meta_data/split/lvis.json``): ``.npz``
  with arrays ``xyz`` (N, 3) and optional ``rgb`` (N, 3), loaded with ``allow_pickle=False``; a plain
  ``.npy`` (N, 3+) array; or a ``.ply`` point cloud. Absolute paths (OpenShape's point into its authors'
  machine, ``/mnt/data/objaverse-processed/...``) are matched by their trailing components under the
  dataset folder; no path outside the dataset folder is ever read.

Classes: the sorted unique ``category`` values of the split, as OpenShape orders them
(``sorted(np.unique(...))``); prompt words write ``_`` as a space (``"ice_cream"`` → ``"ice cream"``).
Split: ``"test"`` only (Objaverse-LVIS is a zero-shot test set; OpenShape trains without it).
Axes: OpenShape stores the points **y-up** (glTF's convention; its config ``objaverse_lvis.y_up: True``
swaps y and z for its z-up models), so they are used as stored. Points: each item is thinned to
``num_points`` by farthest point sampling seeded by the item index (:func:`clip2point.io.load_point_cloud`);
OpenShape itself keeps all 10,000.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import DatasetError, DatasetFileError, DatasetNotFoundError, PointCloudFileError
from ..io import load_point_cloud
from .base import LazyDataset

__all__ = [
    "ObjaverseLVISDataset", "SPLIT_FILE_NAMES", "OBJECT_EXTENSIONS", "OPENSHAPE_URL", "MAX_SPLIT_BYTES",
    "OBJAVERSE_CACHE_ITEMS", "find_split_files", "read_split", "member_path", "open_objaverse_lvis", "category_words",
]

logger = logging.getLogger(__name__)

#: Where the split file may lie, relative to ``data_dir`` (first found wins).
SPLIT_FILE_NAMES = ("lvis.json", "split/lvis.json", "meta_data/split/lvis.json")
#: Per-object file types read (never OpenShape's pickled ``.npy`` dicts: those are refused).
OBJECT_EXTENSIONS = (".npz", ".npy", ".ply")
#: OpenShape's processed data (the split in ``meta_data.zip``, the objects in ``Objaverse/000-*.tar.gz``).
OPENSHAPE_URL = "https://huggingface.co/datasets/OpenShape/openshape-training-data"
#: Largest split file read (the real ``lvis.json`` is a few MB).
MAX_SPLIT_BYTES = 256 << 20
#: Items kept in memory when ``open_dataset(cache_size=None)`` (46k objects would not fit).
OBJAVERSE_CACHE_ITEMS = 2048
_UID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_CONVERT_HINT = ("convert OpenShape's files with `clip2point data convert-openshape SRC_DIR -o DEST_DIR "
                 "--split-file lvis.json --i-trust-these-files` and pass --data-dir DEST_DIR")


def category_words(category: str) -> str:
    """An LVIS category as prompt words: ``"ice_cream"`` → ``"ice cream"``."""
    return " ".join(str(category).replace("_", " ").split())


class ObjaverseLVISDataset(LazyDataset):
    """Objaverse-LVIS objects, one file each, read safely on first access (see the module docstring)."""

    def _read(self, i: int) -> np.ndarray:
        path = self.paths[i]
        if path.suffix.lower() not in OBJECT_EXTENSIONS:
            raise DatasetFileError(f"{path}: object files must be {', '.join(OBJECT_EXTENSIONS)}; {_CONVERT_HINT}")
        try:
            cloud = load_point_cloud(path, num_points=self.num_points, up="y", seed=i, sampling="fps")
        except PointCloudFileError as err:
            hint = f"; {_CONVERT_HINT}" if "pickled" in str(err) else ""
            raise DatasetFileError(f"object {self.names[i]} ({path}): {err}{hint}") from err
        return np.asarray(cloud.points, dtype=np.float32)


def find_split_files(root: Path) -> list[tuple[Path, Path]]:
    """(dataset folder, split file) pairs in ``root`` and its sub-folders (Objaverse-like names first).

    The dataset folder is the one the :data:`SPLIT_FILE_NAMES` entry is relative to; object paths are
    relative to it.
    """
    subdirs = sorted(
        (d for d in root.iterdir() if d.is_dir() and not d.name.startswith((".", "__"))),
        key=lambda d: ("objaverse" not in d.name.lower() and "openshape" not in d.name.lower(), d.name.lower()),
    )
    return [(folder, folder / rel) for folder in [root, *subdirs] for rel in SPLIT_FILE_NAMES
            if (folder / rel).is_file()]


def read_split(path: Path) -> list[tuple[str, str, str]]:
    """(uid, category, path) of each entry of a split file, checked.

    Raises:
        DatasetFileError: not JSON, too large, not a list of objects with string ``uid``, ``category`` and
            ``path`` (or ``data_path``), an unsafe uid, a uid listed twice, or no entries.
    """
    size = path.stat().st_size
    if size > MAX_SPLIT_BYTES:
        raise DatasetFileError(f"{path} is {size:,} bytes, more than a split file can be ({MAX_SPLIT_BYTES:,})")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetFileError(f"{path} is not valid JSON ({err}); it must be a list of "
                               '{"uid", "category", "path"} objects') from err
    if not isinstance(entries, list) or not entries:
        raise DatasetFileError(f'{path} must be a non-empty JSON list of {{"uid", "category", "path"}} objects')
    out, seen = [], set()
    for k, e in enumerate(entries):
        rel = e.get("path", e.get("data_path")) if isinstance(e, dict) else None
        fields = (e.get("uid"), e.get("category"), rel) if isinstance(e, dict) else (None,)
        if not all(isinstance(f, str) and f.strip() for f in fields):
            raise DatasetFileError(f'{path}: entry {k} is not {{"uid": str, "category": str, "path": str}}: '
                                   f"{str(e)[:120]}")
        uid, category, rel = (f.strip() for f in fields)
        if not _UID.match(uid):
            raise DatasetFileError(f"{path}: entry {k} has an unsafe uid {uid[:80]!r} (letters, digits, _ . - only)")
        if uid in seen:
            raise DatasetFileError(f"{path}: uid {uid} is listed twice; each object once")
        seen.add(uid)
        out.append((uid, category, rel))
    return out


def member_path(root: Path, rel: str) -> Path | None:
    """Where an entry's ``rel`` path lies inside ``root``, or None.

    A relative path is taken under ``root``; an absolute one (or one that does not exist) is matched by its
    trailing components, longest first (OpenShape's ``/mnt/data/.../Objaverse/000-091/<uid>.npy``). Paths
    with ``..`` components are never followed: nothing outside ``root`` is read.
    """
    parts = _parts(rel)
    if not parts or ".." in parts:
        return None
    if not PurePosixPath(rel).is_absolute() and (root / Path(*parts)).is_file():
        return root / Path(*parts)
    for start in range(1, len(parts)):
        candidate = root / Path(*parts[start:])
        if candidate.is_file():
            return candidate
    return None


def _parts(rel: str) -> list[str]:
    return [p for p in PurePosixPath(rel.replace("\\", "/")).parts if p not in ("/", "")]


def _resolve_all(root: Path, entries: list[tuple[str, str, str]]) -> list[Path]:
    """Each entry's file under ``root``: relative paths as they are, absolute ones by their trailing
    components (as many as :func:`member_path` needed for the first absolute entry)."""
    keep = None
    paths = []
    for _uid, _cat, rel in entries:
        parts = _parts(rel)
        if not parts or ".." in parts:
            raise DatasetFileError(f"{root}: object path {rel!r} leaves the dataset folder; refused")
        if PurePosixPath(rel).is_absolute():
            if keep is None:
                found = member_path(root, rel)
                if found is None:
                    raise DatasetFileError(
                        f"{root}: the object {rel!r} (an absolute path) is not inside the dataset folder; object "
                        f"paths are relative to it ({_CONVERT_HINT})"
                    )
                keep = len(found.relative_to(root).parts)
            parts = parts[-keep:]
        paths.append(root / Path(*parts))
    return paths


def _pickled_first(ds: ObjaverseLVISDataset) -> str | None:
    """The error of the dataset's first object when it is pickled (OpenShape's unconverted files), else None."""
    try:
        load_point_cloud(ds.paths[0], num_points=None, up="y")
    except PointCloudFileError as err:
        return str(err) if "pickled" in str(err) else None
    return None


def open_objaverse_lvis(data_dir: Path, split: str, num_points: int, up: str | None) -> ObjaverseLVISDataset:
    """Open Objaverse-LVIS in ``data_dir`` (see the module docstring for the layout).

    Split files are tried in :func:`find_split_files` order; one whose first object is a pickle (OpenShape's
    own tree, not converted) is passed over, so a data root holding both OpenShape's download and its
    converted copy opens the copy.

    Returns:
        An :class:`ObjaverseLVISDataset`: ``class_names`` = :func:`category_words` of the sorted categories,
        ``names`` = uids, items (≤ ``num_points``, 3) float32 y-up points in the files' units.

    Raises:
        DatasetError: ``split`` is not "test".
        DatasetNotFoundError: no split file under ``data_dir``.
        DatasetFileError: a malformed split file (:func:`read_split`), object paths outside the folder, or only
            OpenShape's pickled objects (the message says how to convert them).
    """
    if split != "test":
        raise DatasetError(f"objaverse-lvis has only a 'test' split (a zero-shot benchmark: OpenShape evaluates "
                           f"on all of it and trains without it), not {split!r}")
    found = find_split_files(data_dir)
    if not found:
        raise DatasetNotFoundError(
            f"no objaverse-lvis split file in {data_dir} or its sub-folders (looked for {', '.join(SPLIT_FILE_NAMES)}"
            f"). Get OpenShape's data from {OPENSHAPE_URL} (meta_data.zip, Objaverse/000-*.tar.gz), then {_CONVERT_HINT}."
        )
    refused = []
    for root, split_file in found:
        entries = read_split(split_file)
        categories = sorted({c for _u, c, _p in entries})
        index = {c: k for k, c in enumerate(categories)}
        ds = ObjaverseLVISDataset(
            _resolve_all(root, entries),
            cache_size=OBJAVERSE_CACHE_ITEMS,
            class_names=[category_words(c) for c in categories],
            labels=np.array([index[c] for _u, c, _p in entries], dtype=np.int64),
            names=[u for u, _c, _p in entries],
            up=up or "y",
            split=split,
            num_points=num_points,
            root=root,
            layout="objaverse-lvis",
        )
        pickled = _pickled_first(ds) if ds.paths[0].is_file() else None
        if pickled is None:
            logger.info("%s: %d objects, %d categories", split_file, len(entries), len(categories))
            return ds
        refused.append(f"{split_file}: {pickled}")
    raise DatasetFileError(f"objaverse-lvis in {data_dir} holds only pickled objects, which clip2point never loads "
                           f"({'; '.join(refused)[:400]}); {_CONVERT_HINT}")
