"""Array files: ``.npy``, ``.npz`` members and HDF5 datasets, read without trusting their headers.

An array holds one shape ``(N, C)`` or several ``(S, N, C)`` (``index`` picks one); x y z are
columns 0-2 (see :mod:`clip2point.io.columns`); an ``.npz``/``.h5`` may add ``normal(s)`` and
``colo(u)r(s)``/``rgb`` arrays of the same shape. Declared sizes are checked against the stored bytes
before anything is allocated; pickles are never loaded; only the needed block is read.
:func:`h5_dataset` is the one access path to HDF5 data in clip2point.
"""
from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from ..errors import Clip2PointError, PointCloudFileError
from .checks import fail, read_exact, too_many, truncated
from .columns import split_columns, unit_colors
from .formats import CHUNK_BYTES, MAX_COLUMNS_READ
from .types import LoadedPoints

__all__ = ["h5_dataset", "read_npy", "read_npz", "read_hdf5", "ShapeEntry", "shape_entry"]

_POINT_KEYS = ("points", "data", "xyz")
_NORMAL_KEYS = ("normal", "normals")
_COLOR_KEYS = ("color", "colors", "colour", "colours", "rgb")


class _Array(NamedTuple):
    """A lazily read n-d array: its shape and dtype, and a reader of one (N, k) block."""

    shape: tuple[int, ...]
    dtype: np.dtype
    read: Callable[[int | None, int], np.ndarray]  # (shape index or None, columns to keep) -> (N, k)


_Sources = dict  # name -> zero-argument callable returning an _Array (checked when called)


def _pickle_magic(head: bytes) -> bool:
    """True for a pickle stream (protocol 2+: b'\\x80' + protocol byte)."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _pickled(path: Path) -> PointCloudFileError:
    return fail(
        path,
        "contains pickled Python objects, which clip2point refuses to load for safety; "
        "save a plain numeric array instead (np.save(path, points.astype(np.float32)))",
    )


def _npy_header(path: Path, fh: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the npy stream at ``fh``; refuses pickles and non-npy data."""
    from numpy.lib import format as npformat

    head = fh.read(6)
    if head != b"\x93NUMPY":
        if _pickle_magic(head):
            raise _pickled(path)
        raise fail(path, "is not a NumPy .npy array (no NUMPY signature); save it with np.save")
    version = (fh.read(1) or b"\0")[0], (fh.read(1) or b"\0")[0]
    reader = getattr(npformat, "_read_array_header", None)
    if reader is not None:
        shape, fortran, dtype = reader(fh, version, max_header_size=10_000)
    elif version == (1, 0):
        shape, fortran, dtype = npformat.read_array_header_1_0(fh)
    else:
        shape, fortran, dtype = npformat.read_array_header_2_0(fh)
    if dtype.hasobject:
        raise _pickled(path)
    return tuple(int(d) for d in shape), bool(fortran), dtype


def _npy_source(path: Path, fh: IO[bytes], total_size: int, what: str = "the array") -> _Array:
    """Check an npy header against ``total_size`` (the file's or zip member's bytes) and return a reader."""
    fh.seek(0)
    shape, fortran, dtype = _npy_header(path, fh)
    data_start = fh.tell()
    count = math.prod(shape)
    need, have = count * dtype.itemsize, total_size - data_start
    if need > have:
        raise truncated(path, f"{what} of shape {shape} and type {dtype}", need, have)
    if have > need:
        raise fail(path, f"has {have - need:,} bytes after the array of shape {shape} its header declares; "
                          "the file is corrupt; re-save it with np.save")

    def read(index: int | None, keep: int) -> np.ndarray:
        return _read_block(fh, data_start, shape, dtype, fortran, index, keep, path)

    return _Array(shape, dtype, read)


def _read_block(fh: IO[bytes], start: int, shape: tuple[int, ...], dtype: np.dtype, fortran: bool,
                index: int | None, keep: int, path: Path) -> np.ndarray:
    """Read the (N, keep) block of shape ``index`` (or of the 2-d array) from raw array bytes at ``start``."""
    item = dtype.itemsize
    if len(shape) == 2:
        rows, cols = shape
        shapes, index = 1, 0
    else:
        shapes, rows, cols = shape
        assert index is not None
    out = np.empty((rows, keep), dtype=dtype)
    if not fortran:  # C order: shape `index` is one contiguous block of rows
        base = start + index * rows * cols * item
        fh.seek(base)
        if keep == cols:
            out_bytes = memoryview(out.reshape(-1).view(np.uint8))
            got = fh.readinto(out_bytes) if rows else 0
            if got != out.nbytes:
                raise truncated(path, "the array", out.nbytes, got or 0)
            return out
        step = max(1, CHUNK_BYTES // max(cols * item, 1))
        for r in range(0, rows, step):
            n = min(step, rows - r)
            block = np.frombuffer(read_exact(fh, n * cols * item, path, "the array"), dtype=dtype).reshape(n, cols)
            out[r : r + n] = block[:, :keep]
        return out
    # Fortran order: element (s, n, c) sits at s + S*n + S*N*c; column c is one contiguous run
    for c in range(keep):
        fh.seek(start + shapes * rows * c * item)
        run = np.frombuffer(read_exact(fh, shapes * rows * item, path, "the array"), dtype=dtype)
        out[:, c] = run.reshape(rows, shapes)[:, index] if shapes > 1 else run
    return out


def _npz_sources(path: Path, archive: zipfile.ZipFile) -> _Sources:
    sources: _Sources = {}
    for info in archive.infolist():
        if info.is_dir():
            continue
        name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename

        def source(info: zipfile.ZipInfo = info) -> _Array:
            member = archive.open(info)  # closed with the archive
            return _npy_source(path, member, info.file_size, f"the array {info.filename!r}")

        sources[name] = source
    return sources


def h5_dataset(store: Any, name: str, path: str | Path, error: type[Clip2PointError] = PointCloudFileError,
               kinds: str = "fiu") -> Any:
    """Return ``store[name]`` as an ``h5py.Dataset`` after checking it is safe to read.

    The one access path to HDF5 data in clip2point (:mod:`clip2point.io` and
    :mod:`clip2point.datasets`). It refuses, before any data is read:

    * a name reached through a soft or external link (only hard links are followed);
    * a group, or a dataset with external raw storage (data in another file) or a virtual
      dataset (data mapped from other files/datasets);
    * an element type whose kind is not in ``kinds`` (default numbers: ``f i u``; compound,
      variable-length, string, reference and object types are refused unless allowed);
    * a dataset whose stored data are smaller than its declared shape (unwritten chunks or a
      truncated contiguous block: reading it would allocate the declared size of fill values).

    Args:
        store: an open ``h5py.File`` or ``h5py.Group``.
        name: a member name of ``store`` (no path separators).
        path: the file, for messages.
        error: the exception class to raise (e.g. ``DatasetError``).
        kinds: accepted ``numpy.dtype.kind`` letters.

    Raises:
        ``error``: the dataset is missing, unsafe, non-numeric or unwritten.
    """
    import h5py

    label = f"{Path(path).name}: dataset {name!r}"
    if "/" in name.strip("/"):
        raise error(f"{label} is a nested path; only top-level datasets are read")
    link = store.get(name, getlink=True)
    if link is None:
        raise error(f"{label} does not exist; the file holds {sorted(store.keys())}")
    if isinstance(link, h5py.ExternalLink):
        raise error(f"{label} is an external link to {link.filename!r}; clip2point never follows links into "
                    "other files; copy the data into this file")
    if not isinstance(link, h5py.HardLink):
        raise error(f"{label} is a soft link (to {getattr(link, 'path', '?')!r}); clip2point reads only datasets "
                    "stored under their own name; copy the data instead of linking it")
    obj = store[name]
    if not isinstance(obj, h5py.Dataset):
        raise error(f"{label} is a group, not an array; store the points as an (N, 3) dataset")
    if obj.is_virtual:
        raise error(f"{label} is a virtual dataset (its data live in other files); clip2point refuses it for "
                    "safety; save the data into the file itself")
    if obj.external or obj.id.get_create_plist().get_external_count():
        raise error(f"{label} keeps its data in an external file ({(obj.external or [('?',)])[0][0]!r}); "
                    "clip2point refuses it for safety; save the data into the file itself")
    dtype = obj.dtype
    if dtype.kind not in kinds or dtype.names is not None or dtype.subdtype is not None:
        what = "text" if h5py.check_string_dtype(dtype) is not None else f"type {dtype}"
        raise error(f"{label} holds {what}, not numbers; store the points as a numeric (N, 3) array")
    if dtype.kind == "O" and h5py.check_string_dtype(dtype) is None:
        raise error(f"{label} holds Python objects or references; store plain numbers or strings")
    _h5_check_written(obj, label, error)
    return obj


def _h5_check_written(ds: Any, label: str, error: type[Clip2PointError]) -> None:
    """Refuse datasets whose stored bytes cannot hold their declared shape."""
    import h5py

    if ds.size == 0 or ds.dtype.kind == "O":  # vlen strings live in the global heap
        return
    declared = int(ds.size) * ds.dtype.itemsize
    plist = ds.id.get_create_plist()
    layout = plist.get_layout()
    if layout == h5py.h5d.COMPACT:
        return
    if layout == h5py.h5d.CHUNKED:
        chunks = ds.chunks
        expected = math.prod(-(-s // c) for s, c in zip(ds.shape, chunks))
        written = ds.id.get_num_chunks() if hasattr(ds.id, "get_num_chunks") else expected
        if written < expected:
            raise error(f"{label} declares shape {ds.shape} but only {written:,} of its {expected:,} chunks are "
                        "written (unwritten or truncated data); re-export the file")
        if plist.get_nfilters() == 0 and ds.id.get_storage_size() < declared:
            raise error(f"{label} declares {declared:,} bytes but stores only {ds.id.get_storage_size():,}; "
                        "the file is truncated; re-export it")
        return
    stored = ds.id.get_storage_size()
    if stored < declared:
        raise error(f"{label} declares shape {ds.shape} ({declared:,} bytes) but only {stored:,} bytes are "
                    "stored (unwritten or truncated data); re-export the file")


def _h5_sources(path: Path, store: Any) -> _Sources:
    def source(name: str) -> _Array:
        ds = h5_dataset(store, name, path)

        def read(index: int | None, keep: int) -> np.ndarray:
            return np.asarray(ds[index, :, :keep] if index is not None else ds[:, :keep])

        return _Array(tuple(int(d) for d in ds.shape), ds.dtype, read)

    return {name: (lambda name=name: source(name)) for name in store.keys()}


def _check_array(path: Path, key: str, shape: tuple[int, ...], dtype: np.dtype, limit: int) -> None:
    """Refuse arrays that are not numeric (N, C>=3) / (S, N, C>=3) point tables before reading them."""
    if dtype.kind not in "fiu" or dtype.names is not None or len(shape) not in (2, 3) or shape[-1] < 3:
        raise fail(path, f"expected a numeric (N, 3) or (N, 6) array, got {dtype} with shape {shape}; "
                          "save the points as an N×3 float array")
    if shape[-2] == 3 and shape[-1] > 3:
        raise fail(path, f"the array {key!r} has shape {shape}: 3 rows of {shape[-1]:,} values, which looks like "
                          "points stored as columns; transpose it (points.T) and save it as (N, 3)")
    too_many(path, shape[-2], limit)


def _read_store(path: Path, store: _Sources, index: int, limit: int) -> LoadedPoints:
    """Pick the point array (and optional normals/colours) from an npz/h5 file or a bare npy."""
    keys = list(store.keys())
    key = next((k for k in _POINT_KEYS if k in store), keys[0] if len(keys) == 1 else None)
    if key is None:
        if not keys:
            raise fail(path, "holds no arrays; store the (N, 3) points under the name 'points'")
        raise fail(path, f"none of the arrays {keys} is named {' / '.join(_POINT_KEYS)}; "
                          "store the (N, 3) points under one of those names")
    data = store[key]()
    _check_array(path, key, data.shape, data.dtype, limit)
    multi = len(data.shape) == 3  # (S, N, C): several shapes, ``index`` picks one
    count = data.shape[0] if multi else 1
    if count == 0:
        raise fail(path, f"the array {key!r} has shape {data.shape}: it holds no shapes; re-export the file")
    if not -count <= index < count:
        raise fail(path, f"shape index {index} is out of range; the file holds {count} shape(s), "
                          f"so use an index in 0..{count - 1}")
    index %= count
    columns = data.shape[-1]
    block = data.read(index if multi else None, min(columns, MAX_COLUMNS_READ))
    cloud = split_columns(path, block, f"{path}#{index}" if multi else str(path), total_columns=columns)

    def extra(names: tuple[str, ...]) -> np.ndarray | None:
        name = next((k for k in names if k in store and k != key), None)
        if name is None:
            return None
        arr = store[name]()
        wanted = (data.shape[0], data.shape[1], 3) if multi else (data.shape[0], 3)
        if arr.shape != wanted or arr.dtype.kind not in "fiu" or arr.dtype.names is not None:
            return None
        return arr.read(index if multi else None, 3)

    normals, colors = extra(_NORMAL_KEYS), extra(_COLOR_KEYS)
    return cloud._replace(
        normals=cloud.normals if normals is None else normals,
        colors=cloud.colors if colors is None else unit_colors(colors),
    )


def read_npy(path: Path, index: int, limit: int) -> LoadedPoints:
    """Shape ``index`` of a ``.npy`` array (a bare (N, C) array ignores ``index``)."""
    with open(path, "rb") as fh:
        return _read_store(path, {"points": lambda: _npy_source(path, fh, os.fstat(fh.fileno()).st_size)}, index, limit)


def read_npz(path: Path, index: int, limit: int) -> LoadedPoints:
    """Shape ``index`` of the point array of a ``.npz`` archive (plus its normals/colours arrays)."""
    with zipfile.ZipFile(path) as archive:
        return _read_store(path, _npz_sources(path, archive), index, limit)


def read_hdf5(path: Path, index: int, limit: int) -> LoadedPoints:
    """Shape ``index`` of the point dataset of an HDF5 file (datasets checked by :func:`h5_dataset`)."""
    import h5py

    with h5py.File(path, "r") as store:
        return _read_store(path, _h5_sources(path, store), index, limit)


class ShapeEntry(NamedTuple):
    """Which shape of a multi-shape file was read: its ``index`` of ``count``, and, where an HDF5
    file stores them (the ModelNet h5 layout: ``label`` (S,) or (S, 1) ints, ``name`` (S,) strings,
    a JSON ``class_names`` attribute), its label index, class name and shape name (else None)."""

    index: int
    count: int
    label: int | None = None
    class_name: str | None = None
    name: str | None = None


def _h5_entry_extras(path: Path, store: Any, index: int, count: int) -> tuple[int | None, str | None, str | None]:
    """(label, class name, shape name) of shape ``index`` of an HDF5 file, each None when absent or malformed."""
    import json

    def small(key: str, kinds: str) -> Any:
        if key not in store:
            return None
        try:
            ds = h5_dataset(store, key, path, kinds=kinds)
        except Clip2PointError:
            return None
        if ds.shape[:1] != (count,) or len(ds.shape) > 2 or ds.dtype.kind not in kinds:
            return None
        return np.asarray(ds[index]).reshape(-1)[0]

    label = small("label", "iu")
    if label is None:
        label = small("labels", "iu")
    name = small("name", "SU")
    name = name.decode("utf-8", errors="replace") if isinstance(name, bytes) else name
    class_name = None
    try:
        names = json.loads(store.attrs.get("class_names", "null"))
    except (TypeError, ValueError):
        names = None
    if label is not None and isinstance(names, list) and 0 <= int(label) < len(names):
        class_name = str(names[int(label)]).replace("_", " ")
    return (None if label is None else int(label)), class_name, (None if name is None else str(name).strip())


def shape_entry(path: str | os.PathLike, index: int = 0) -> ShapeEntry:
    """Which shape ``index`` of a ``.npy/.npz/.h5`` file is: the count of shapes, and (HDF5) its label and name.

    Reads only array headers and two small values. A bare (N, C) array is one shape.

    Raises:
        PointCloudFileError: the file has no point array, or ``index`` is out of range (the count is named).
    """
    path = Path(path)
    ext = path.suffix.lower()

    def count_of(store: _Sources) -> int:
        key = next((k for k in _POINT_KEYS if k in store), next(iter(store), None) if len(store) == 1 else None)
        if key is None:
            raise fail(path, f"none of its arrays is named {' / '.join(_POINT_KEYS)}; store the (N, 3) points as 'points'")
        shape = store[key]().shape
        return shape[0] if len(shape) == 3 else 1

    def checked(count: int) -> int:
        if not -count <= index < count:
            raise fail(path, f"shape index {index} is out of range; the file holds {count} shape(s), "
                              f"so use an index in 0..{count - 1}")
        return index % count

    if ext in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as store:
            count = count_of(_h5_sources(path, store))
            i = checked(count)
            return ShapeEntry(i, count, *_h5_entry_extras(path, store, i, count))
    if ext == ".npz":
        with zipfile.ZipFile(path) as archive:
            count = count_of(_npz_sources(path, archive))
    else:
        with open(path, "rb") as fh:
            count = count_of({"points": lambda: _npy_source(path, fh, os.fstat(fh.fileno()).st_size)})
    return ShapeEntry(checked(count), count)
