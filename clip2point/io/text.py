"""Text point-cloud formats: delimited tables (``.txt .csv``), open3d's ``.xyz .xyzn .xyzrgb`` and ``.pts``.

Headers, ``#`` comments and blank lines are skipped; the row count is checked against the limit
before anything is parsed.
"""
from __future__ import annotations

from pathlib import Path
from typing import IO

import numpy as np

from .checks import count_newlines, fail, too_many
from .columns import split_columns, unit_colors
from .formats import MAX_COLUMNS_READ
from .types import LoadedPoints

__all__ = ["read_text", "read_table", "read_xyz", "read_pts"]


def _first_data_line(fh: IO[bytes]) -> tuple[int, str | None, int] | None:
    """(lines to skip, delimiter, columns) of the first numeric row, or None if there is none."""
    skip = 0
    for skip, raw in enumerate(fh):
        fields = raw.decode("utf-8", errors="replace").split("#", 1)[0].strip()
        if not fields:
            continue
        delimiter = next((d for d in (";", ",") if d in fields), None)
        try:
            values = [float(f) for f in fields.split(delimiter)]
            return skip, delimiter, len(values)
        except ValueError:
            if skip >= 100:
                return skip, delimiter, 0  # not a numeric table; let loadtxt report the offending line
    return None


def read_text(path: Path, limit: int, skip_first: int = 0, max_columns: int = MAX_COLUMNS_READ
               ) -> tuple[np.ndarray, int]:
    """Numbers of a delimited text file (headers, '#' comments and blank lines skipped).

    Returns the (N, min(C, max_columns)) float64 table and C, the number of columns of its first row.
    Refuses files with more than ``limit`` rows before parsing them.
    """
    with open(path, "rb") as fh:
        for _ in range(skip_first):
            fh.readline()
        found = _first_data_line(fh)
        if found is None:
            fh.seek(0)
            if b"\0" in fh.read(4096):
                raise fail(path, f"is binary data, not a {path.suffix.lower()} text table; check that the file's "
                                  "format matches its extension")
            return np.zeros((0, 3)), 3
        skip, delimiter, columns = found
        fh.seek(0)
        newlines = count_newlines(fh, limit + skip + skip_first + 1)
    if newlines > limit + skip + skip_first + 1:
        raise fail(path, f"has more than {limit:,} rows, more than the limit of {limit:,} points (max_points); "
                          "subsample or split the file, or raise the limit")
    usecols = range(min(columns, max_columns)) if columns >= 3 else None
    table = np.loadtxt(path, delimiter=delimiter, skiprows=skip + skip_first, comments="#", ndmin=2,
                       dtype=np.float64, usecols=usecols)
    return table, max(columns, table.shape[1] if table.ndim == 2 else 0)


def read_table(path: Path, limit: int) -> LoadedPoints:
    """A ``.txt`` / ``.csv`` table of x y z [+ normals or colours] (see :mod:`clip2point.io.columns`)."""
    columns, total = read_text(path, limit)
    return split_columns(path, columns, total_columns=total)


def read_xyz(path: Path, ext: str, limit: int) -> LoadedPoints:
    """open3d's plain-text formats: ``x y z`` (.xyz), ``+ nx ny nz`` (.xyzn), ``+ r g b`` in 0..1 (.xyzrgb)."""
    table, total = read_text(path, limit)
    need = 3 if ext == ".xyz" else 6
    if len(table) and table.shape[1] < need:
        raise fail(path, f"a {ext} file needs {need} numbers per line, found {table.shape[1]}; re-export it")
    loaded = LoadedPoints(table[:, :3], None, None, str(path))
    if ext == ".xyzn":
        return loaded._replace(normals=table[:, 3:6])
    if ext == ".xyzrgb":
        return loaded._replace(colors=unit_colors(table[:, 3:6]))
    return loaded


def read_pts(path: Path, limit: int) -> LoadedPoints:
    """A ``.pts`` file: an optional first line with the point count, then ``x y z [i] [r g b]`` rows.

    The count must equal the number of rows (a truncated file is an error, never padded).
    """
    with open(path, "rb") as fh:
        first = fh.readline(256).decode("utf-8", errors="replace").split()
    declared: int | None = None
    if len(first) == 1:
        try:
            declared = int(first[0])
        except ValueError:
            declared = None
    if declared is not None:
        if declared < 0:
            raise fail(path, f"the first line declares {declared} points; re-export it")
        too_many(path, declared, limit)
    table, total = read_text(path, limit, skip_first=1 if declared is not None else 0, max_columns=7)
    if declared is not None and len(table) != declared:
        raise fail(path, f"the first line declares {declared:,} points but {len(table):,} rows follow; "
                          "the file is truncated or its count is wrong; re-export it")
    loaded = LoadedPoints(table[:, :3], None, None, str(path))
    if total in (6, 7) and table.shape[1] == total:  # x y z r g b, or x y z i r g b (colours 0..255)
        return loaded._replace(colors=unit_colors(table[:, total - 3 : total]))
    return loaded
