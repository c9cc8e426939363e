"""LAS / LAZ point clouds (LAS 1.0-1.4): the header, VLRs and EVLRs are checked without laspy, then
laspy reads x y z (and 16-bit RGB) in chunks. ``.laz`` needs a LAZ backend (``laspy[lazrs]``).
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .checks import fail, too_many, truncated
from .columns import unit_colors
from .types import LoadedPoints

__all__ = ["read_las"]


_LAZ_BACKEND = 'reading compressed .laz needs a LAZ backend; run `pip install "laspy[lazrs]"`'
_LAS_MIN_RECORD = {0: 20, 1: 28, 2: 26, 3: 34, 4: 57, 5: 63, 6: 30, 7: 36, 8: 38, 9: 59, 10: 67}


class _LasHeader(NamedTuple):
    version: tuple[int, int]
    points: int
    record_length: int
    point_format: int
    compressed: bool


def _las_header(path: Path, limit: int) -> _LasHeader:
    """Parse and check the LAS public header, VLRs and EVLRs against the file size (no laspy)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(375)
        if len(head) < 227 or head[:4] != b"LASF":
            raise fail(path, "is not a LAS file (no LASF signature or a header shorter than 227 bytes); re-export it")
        major, minor = head[24], head[25]
        header_size, point_offset, vlr_count = struct.unpack_from("<HII", head, 94)
        format_byte, record_length, legacy_count = struct.unpack_from("<BHI", head, 104)
        if major != 1 or minor > 4:
            raise fail(path, f"has LAS version {major}.{minor}; clip2point reads LAS 1.0-1.4")
        minimum = 375 if minor >= 4 else 235 if minor == 3 else 227
        if header_size < minimum or header_size > size:
            raise fail(path, f"declares a {header_size}-byte header (LAS {major}.{minor} needs {minimum} bytes, "
                              f"the file has {size:,}); the file is corrupt or truncated")
        if not header_size <= point_offset <= size:
            raise fail(path, f"its header puts the point data at byte {point_offset:,}, outside the "
                              f"{size:,}-byte file; the file is corrupt or truncated")
        if vlr_count * 54 > point_offset - header_size:
            raise fail(path, f"its header declares {vlr_count:,} variable-length records, which cannot fit in the "
                              f"{point_offset - header_size:,} bytes before the points; the file is corrupt")
        at = header_size
        for _ in range(vlr_count):  # walk the VLRs: each must end before the point data
            fh.seek(at + 20)
            raw = fh.read(2)
            if len(raw) < 2:
                raise truncated(path, f"{vlr_count} variable-length records", at + 22, size)
            at += 54 + struct.unpack("<H", raw)[0]
            if at > point_offset:
                raise fail(path, "a variable-length record runs into the point data; the file is corrupt")
        points, data_end = legacy_count, size
        if minor >= 4 and len(head) >= 375:
            evlr_start, evlr_count, points64 = struct.unpack_from("<QIQ", head, 235)
            points = points64 or legacy_count
            if evlr_count:
                if not point_offset <= evlr_start <= size or evlr_count * 60 > size - evlr_start:
                    raise fail(path, f"its header declares {evlr_count:,} extended records at byte {evlr_start:,}, "
                                      f"which do not fit in the {size:,}-byte file; the file is corrupt")
                data_end = evlr_start
    point_format = format_byte & 0x3F
    compressed = bool(format_byte & 0xC0)
    if point_format not in _LAS_MIN_RECORD:
        raise fail(path, f"uses LAS point format {point_format}, which does not exist; the file is corrupt")
    if record_length < _LAS_MIN_RECORD[point_format]:
        raise fail(path, f"declares {record_length}-byte point records, too short for point format {point_format} "
                          f"({_LAS_MIN_RECORD[point_format]} bytes); the file is corrupt")
    too_many(path, points, limit)
    if not compressed:
        need, have = points * record_length, data_end - point_offset
        if need > have:
            raise truncated(path, f"{points:,} points of {record_length} bytes", need, have)
    return _LasHeader((major, minor), points, record_length, point_format, compressed)


def read_las(path: Path, limit: int) -> LoadedPoints:
    """x y z (float64) and 16-bit RGB (as [0, 1]) of a LAS/LAZ file, header checked first (PointCloudFileError)."""
    header = _las_header(path, limit)
    if header.points == 0:
        raise fail(path, "its header declares 0 points; could not read any points")
    try:
        import laspy
    except ImportError as err:
        raise fail(path, "reading LAS/LAZ files needs laspy; run `pip install laspy`") from err
    try:
        reader = laspy.open(path)
    except laspy.errors.LaspyException as err:
        if "backend" in str(err).lower():
            raise fail(path, _LAZ_BACKEND) from err
        raise
    with reader:
        names = set(reader.header.point_format.dimension_names)
        has_rgb = {"red", "green", "blue"} <= names
        n = header.points
        xyz = np.empty((n, 3), dtype=np.float64)
        rgb = np.empty((n, 3), dtype=np.uint16) if has_rgb else None
        at = 0
        try:
            for chunk in reader.chunk_iterator(1_000_000):
                m = len(chunk)
                if at + m > n:
                    raise fail(path, f"holds more points than the {n:,} its header declares; the file is corrupt")
                xyz[at : at + m, 0], xyz[at : at + m, 1], xyz[at : at + m, 2] = chunk.x, chunk.y, chunk.z
                if rgb is not None:
                    rgb[at : at + m, 0], rgb[at : at + m, 1], rgb[at : at + m, 2] = chunk.red, chunk.green, chunk.blue
                at += m
        except laspy.errors.LaspyException as err:
            if "backend" in str(err).lower():
                raise fail(path, _LAZ_BACKEND) from err
            raise
    if at != n:
        raise fail(path, f"its header declares {n:,} points but {at:,} could be read; the file is truncated; "
                          "re-export it")
    return LoadedPoints(xyz, None if rgb is None else unit_colors(rgb), None, str(path))
