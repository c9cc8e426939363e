"""``clip2point data convert-openshape``: OpenShape's pickled Objaverse files → the safe Objaverse-LVIS layout.

**The only module in clip2point that unpickles data**, and only for files the user vouches for with
``--i-trust-these-files``: a pickle can run any code when it is loaded. Only ``clip2point/cli/data.py`` imports
it, inside the command; neither :mod:`clip2point.datasets` nor the app (``ui``) can reach it (a test checks).

OpenShape (github.com/Colin97/OpenShape_code, README § Data, ``src/data.py``) stores each object as an
``.npy`` holding a pickled dict (``np.load(path, allow_pickle=True).item()``) with ``xyz`` (10000, 3) and
``rgb`` (10000, 3) among text/image features; its ``meta_data/split/lvis.json`` lists
``{"uid", "category", "group", "data_path"}``. The converter writes, for each entry whose file is found
under ``SRC_DIR`` (by its path's trailing components) and holds a valid ``xyz``:
``DEST_DIR/objects/<uid>.npz`` (``xyz`` float32 (N, 3), ``rgb`` float32 (N, 3) when valid), written
atomically, then ``DEST_DIR/lvis.json`` (``[{"uid", "category", "path": "objects/<uid>.npz"}]``, the split
:mod:`clip2point.datasets.objaverse` reads). Objects already converted are kept (re-runs resume); bad or
missing files are skipped and reported (``DEST_DIR/skipped.json``).
"""
from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..checkpoints import write_bytes_atomic, write_json_atomic
from ..datasets.objaverse import member_path, read_split
from ..errors import Clip2PointError

__all__ = ["TRUST_FLAG", "REFUSAL", "ConversionReport", "convert_openshape", "MAX_OBJECT_POINTS"]

logger = logging.getLogger(__name__)

TRUST_FLAG = "--i-trust-these-files"
#: Why the command refuses to run without :data:`TRUST_FLAG`.
REFUSAL = (
    "OpenShape's object files are pickled Python objects, and loading a pickle can run arbitrary code on this "
    "machine. Convert only files you downloaded yourself from OpenShape's dataset and trust; then repeat the "
    f"command with {TRUST_FLAG}. Nothing was read."
)
#: Most points per object accepted (OpenShape stores 10,000).
MAX_OBJECT_POINTS = 1_000_000


@dataclass
class ConversionReport:
    """What a conversion did: ``converted`` and ``kept`` (already there) uids, ``skipped`` uid → reason."""

    converted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def _xyz_rgb(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Unpickle one trusted OpenShape object and return its checked (N, 3) float32 ``xyz`` (and ``rgb``)."""
    obj = np.load(path, allow_pickle=True)  # trusted by the user's explicit flag (see REFUSAL)
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj.item()
    if not isinstance(obj, dict) or "xyz" not in obj:
        raise ValueError(f"not an OpenShape object (a dict with 'xyz'); got {type(obj).__name__}")
    xyz = np.asarray(obj["xyz"])
    if xyz.dtype.kind not in "fiu" or xyz.ndim != 2 or xyz.shape[1] != 3 or not 1 <= len(xyz) <= MAX_OBJECT_POINTS:
        raise ValueError(f"'xyz' is {xyz.dtype} {xyz.shape}, expected (N, 3) numbers, 1 ≤ N ≤ {MAX_OBJECT_POINTS:,}")
    xyz = xyz.astype(np.float32)
    if not np.isfinite(xyz).all():
        raise ValueError("'xyz' contains NaN/inf")
    rgb = obj.get("rgb")
    if rgb is not None:
        rgb = np.asarray(rgb)
        ok = rgb.dtype.kind in "fiu" and rgb.shape == xyz.shape and np.isfinite(rgb.astype(np.float64)).all()
        rgb = rgb.astype(np.float32) if ok else None
    return xyz, rgb


def _npz_bytes(xyz: np.ndarray, rgb: np.ndarray | None) -> bytes:
    buf = io.BytesIO()
    arrays = {"xyz": xyz} if rgb is None else {"xyz": xyz, "rgb": rgb}
    np.savez(buf, **arrays)
    return buf.getvalue()


def convert_openshape(
    src_dir: str | os.PathLike, dest_dir: str | os.PathLike, split_file: str | os.PathLike, *, trusted: bool,
    limit: int | None = None, progress: Callable[[int], object] | None = None,
) -> ConversionReport:
    """Convert OpenShape's Objaverse-LVIS objects listed in ``split_file`` (see the module docstring).

    Args:
        src_dir: the folder OpenShape's data were unpacked into (object paths are matched under it).
        dest_dir: the output folder (pass it as ``--data-dir`` with ``--dataset objaverse-lvis``).
        split_file: OpenShape's ``lvis.json`` (plain JSON; read without unpickling).
        trusted: the user passed :data:`TRUST_FLAG`; without it nothing is read.
        limit: convert at most this many entries (in split order), e.g. for a quick try.
        progress: called with 1 after each entry (e.g. ``tqdm.update``).

    Returns:
        A :class:`ConversionReport`.

    Raises:
        Clip2PointError: ``trusted`` is False (:data:`REFUSAL`), a missing folder or split file, a malformed
            split file, or no object converted at all.
    """
    if not trusted:
        raise Clip2PointError(REFUSAL)
    src, dest, split_path = Path(src_dir).expanduser(), Path(dest_dir).expanduser(), Path(split_file).expanduser()
    if not src.is_dir():
        raise Clip2PointError(f"source folder {src} does not exist; pass the folder OpenShape's data were unpacked in")
    if not split_path.is_file():
        raise Clip2PointError(f"split file {split_path} does not exist; pass OpenShape's meta_data/split/lvis.json")
    entries = read_split(split_path)[: limit if limit is not None else None]
    report, rows = ConversionReport(), []
    for uid, category, rel in entries:
        out_rel = f"objects/{uid}.npz"
        target = dest / out_rel
        try:
            if target.is_file():
                report.kept.append(uid)
            else:
                path = member_path(src, rel)
                if path is None:
                    raise FileNotFoundError(f"{rel} not found under {src}")
                write_bytes_atomic(target, _npz_bytes(*_xyz_rgb(path)), durable=False)
                report.converted.append(uid)
            rows.append({"uid": uid, "category": category, "path": out_rel})
        except Exception as err:  # any damaged/foreign object is skipped and reported, never fatal
            report.skipped[uid] = f"{type(err).__name__}: {err}"[:300]
            logger.warning("skipped %s: %s", uid, report.skipped[uid])
        if progress is not None:
            progress(1)
    if not rows:
        raise Clip2PointError(f"no object of {split_path} could be converted from {src} (first problem: "
                              f"{next(iter(report.skipped.values()), 'none')}); check SRC_DIR")
    write_json_atomic(dest / "lvis.json", rows, indent=None)
    if report.skipped:
        write_json_atomic(dest / "skipped.json", report.skipped)
    return report
