"""Column tables (``.txt .csv .npy .npz .h5``, ``.pts``, ``.las`` colours): which columns are
x y z, normals or colours, and colours of any numeric type mapped to [0, 1].

An ``(N, C)`` table holds x y z in columns 0-2. With ``C >= 6`` columns 3-5 are **normals** when
every row has unit length (within 0.01), else **colours** when every value lies in 0..255
(values in 0..1 are taken as-is, larger ones divided by 255), else they are ignored with a warning.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import PointCloudFileError
from .types import LoadedPoints

__all__ = ["split_columns", "unit_colors"]

logger = logging.getLogger(__name__)

_UNIT_NORMAL_TOL = 0.01


def split_columns(path: Path, columns: np.ndarray, source: str | None = None, total_columns: int | None = None
                   ) -> LoadedPoints:
    """Interpret an (N, C >= 3) numeric array: xyz, then normals or colours (module docstring).

    ``columns`` may hold only the first few columns of the file (``total_columns`` of them exist).
    """
    total = columns.shape[1] if total_columns is None and columns.ndim == 2 else total_columns
    if columns.dtype.kind not in "fiu" or columns.ndim != 2 or columns.shape[1] < 3:
        raise PointCloudFileError(
            f"{path.name}: expected a numeric (N, 3) or (N, 6) array, got {columns.dtype} with shape {columns.shape}; "
            "save the points as an N×3 float array"
        )
    if len(columns) == 3 and total is not None and total > 3:
        raise PointCloudFileError(
            f"{path.name}: has 3 rows of {total} values, which looks like points stored as columns (a (3, N) "
            "array); transpose it (points.T) and save it as N rows of x y z"
        )
    loaded = LoadedPoints(columns[:, :3], None, None, source or str(path))
    if total != 3 and total != 6:
        logger.info("%s: using columns 1-3 as x y z and ignoring the other %d", path.name, (total or 3) - 3)
    if columns.shape[1] < 6 or len(columns) == 0:
        return loaded
    extra = columns[:, 3:6].astype(np.float32)
    if np.all(np.abs(np.linalg.norm(extra, axis=1) - 1.0) < _UNIT_NORMAL_TOL):
        return loaded._replace(normals=extra)
    if extra.min() >= 0 and extra.max() <= 255:
        return loaded._replace(colors=unit_colors(extra))
    logger.warning("%s: columns 4-6 are neither unit normals nor colours (0..255 or 0..1); ignoring them", path.name)
    return loaded


def unit_colors(colors: np.ndarray) -> np.ndarray:
    """RGB(A) colours of any numeric type -> (N, 3) float32 in [0, 1].

    Floats within 0..1 are kept; integer or larger values are divided by 255, or by 65535 when
    they exceed 255 (16-bit colours, e.g. LAS).
    """
    rgb = np.asarray(colors)[:, :3]
    top = float(rgb.max()) if rgb.size else 0.0
    scale = 1.0 if rgb.dtype.kind == "f" and top <= 1.0 else 255.0 if top <= 255 else 65535.0
    return np.clip(rgb.astype(np.float32) / np.float32(scale), 0.0, 1.0)
