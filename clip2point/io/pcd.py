"""PCL ``.pcd`` point clouds (v0.5-0.7): ascii, binary and binary_compressed (LZF), header checked first.

Fields ``x y z``, ``normal_x normal_y normal_z`` and packed ``rgb``/``rgba`` are read; the declared
point count must match the data exactly (a truncated file is an error, never padded).
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from .checks import count_newlines, fail, read_exact, too_many, truncated
from .types import LoadedPoints

__all__ = ["read_pcd", "lzf_decompress"]


_PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8",
              ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"}
_PCD_MAX_HEADER_LINES = 64


def read_pcd(path: Path, limit: int) -> LoadedPoints:
    """A PCL ``.pcd`` file (v0.5-0.7): ascii, binary or binary_compressed, header checked first."""
    total_size = path.stat().st_size
    with open(path, "rb") as fh:
        header: dict[str, list[str]] = {}
        for _ in range(_PCD_MAX_HEADER_LINES):
            raw = fh.readline(4096)
            if not raw:
                raise fail(path, "the PCD header ends before its DATA line; the file is truncated or not a PCD file")
            text = raw.decode("ascii", errors="replace").strip()
            if not text or text.startswith("#"):
                continue
            key, *values = text.split()
            header[key.upper()] = values
            if key.upper() == "DATA":
                break
        else:
            raise fail(path, "no DATA line in the PCD header; this is not a PCD file")
        data_start = fh.tell()
        fields, dtype, points = _pcd_layout(path, header, limit)
        if points == 0:
            return LoadedPoints(np.zeros((0, 3)), None, None, str(path))
        mode = (header["DATA"] or ["?"])[0].lower()
        row = dtype.itemsize
        if mode == "ascii":
            newlines = count_newlines(fh, points + 1)
            if newlines > points + 1:
                raise fail(path, f"the header declares {points:,} points but more data lines follow; "
                                  "fix POINTS/WIDTH/HEIGHT or re-export it")
            fh.seek(data_start)
            flat = np.loadtxt(fh, dtype=np.float64, ndmin=2, comments="#")
            if len(flat) != points:
                raise fail(path, f"the header declares {points:,} points but {len(flat):,} data lines follow; "
                                  "the file is truncated or its header is wrong; re-export it")
            if flat.shape[1] != len(dtype.names or ()) and points:
                width = sum(int(np.prod(dtype[n].shape or (1,))) for n in dtype.names)
                if flat.shape[1] != width:
                    raise fail(path, f"data lines have {flat.shape[1]} values but the header's fields need {width}")
            columns = _pcd_columns_from_flat(dtype, flat)
        elif mode == "binary":
            need, have = points * row, total_size - data_start
            if need > have:
                raise truncated(path, f"{points:,} points of {row} bytes", need, have)
            if have - need >= max(row, 1):
                raise fail(path, f"the header declares {points:,} points ({need:,} bytes) but {have:,} bytes follow; "
                                  "fix POINTS/WIDTH/HEIGHT or re-export it")
            records = np.frombuffer(read_exact(fh, need, path, f"{points:,} points"), dtype=dtype, count=points)
            columns = {name: records[name] for name in dtype.names}
        elif mode == "binary_compressed":
            sizes = fh.read(8)
            if len(sizes) < 8:
                raise truncated(path, "a compressed block", 8, len(sizes))
            compressed, uncompressed = struct.unpack("<II", sizes)
            have = total_size - data_start - 8
            if compressed > have:
                raise truncated(path, f"a compressed block of {compressed:,} bytes", compressed, have)
            if uncompressed != points * row:
                raise fail(path, f"the header declares {points:,} points ({points * row:,} bytes) but the compressed "
                                  f"block holds {uncompressed:,} bytes; the file is corrupt; re-export it")
            raw = lzf_decompress(fh.read(compressed), uncompressed) if uncompressed else b""
            columns, offset = {}, 0
            for name in dtype.names:  # binary_compressed stores each field for all points in turn
                sub = dtype[name]
                size = sub.itemsize * points
                per_point = max(1, sub.itemsize // sub.base.itemsize)
                columns[name] = np.frombuffer(raw, dtype=sub.base, count=points * per_point,
                                              offset=offset).reshape((points,) + sub.shape)
                offset += size
        else:
            raise fail(path, f"unknown PCD DATA type {mode!r}; expected ascii, binary or binary_compressed")
    return _pcd_loaded(path, fields, columns)


def _pcd_layout(path: Path, header: dict[str, list[str]], limit: int) -> tuple[list[str], np.dtype, int]:
    """(field names, a structured dtype of one point, number of points) from a PCD header."""
    fields = header.get("FIELDS") or header.get("COLUMNS")
    if not fields:
        raise fail(path, "the PCD header has no FIELDS line; this is not a PCD file")
    sizes = header.get("SIZE", [])
    types = header.get("TYPE", [])
    counts = header.get("COUNT", ["1"] * len(fields))
    if not (len(sizes) == len(types) == len(counts) == len(fields)):
        raise fail(path, f"the PCD header's FIELDS/SIZE/TYPE/COUNT have different lengths "
                          f"({len(fields)}/{len(sizes)}/{len(types)}/{len(counts)}); the file is corrupt")
    try:
        width = int(header.get("WIDTH", ["-1"])[0])
        height = int(header.get("HEIGHT", ["1"])[0])
        points = int(header["POINTS"][0]) if "POINTS" in header else width * height
        dims = [(t.upper(), int(s), int(c)) for t, s, c in zip(types, sizes, counts)]
    except (ValueError, IndexError) as err:
        raise fail(path, f"the PCD header has a malformed number ({err}); the file is corrupt") from err
    if width < 0 or height < 0 or points < 0:
        raise fail(path, "the PCD header has no valid WIDTH/HEIGHT/POINTS; the file is corrupt")
    if points != width * height:
        raise fail(path, f"the PCD header declares POINTS {points:,} but WIDTH × HEIGHT = {width:,} × {height:,}; "
                          "the header is inconsistent; re-export it")
    too_many(path, points, limit)
    entries = []
    for name, (kind, size, count) in zip(fields, dims):
        if (kind, size) not in _PCD_TYPES or not 1 <= count <= 1024:
            raise fail(path, f"the PCD field {name!r} has an unsupported TYPE/SIZE/COUNT {kind}/{size}/{count}")
        entries.append((name, "<" + _PCD_TYPES[(kind, size)], (count,) if count > 1 else ()))
    if len(set(fields)) != len(fields):  # e.g. several "_" padding fields
        entries = [(f"{n}__{i}", t, s) for i, (n, t, s) in enumerate(entries)]
        fields = [e[0] for e in entries]
    if not {"x", "y", "z"} <= {f.split("__")[0] for f in fields}:
        raise fail(path, f"the PCD file has no x y z fields (it has {' '.join(fields)}); nothing to read")
    return fields, np.dtype(entries), points


def _pcd_columns_from_flat(dtype: np.dtype, flat: np.ndarray) -> dict[str, np.ndarray]:
    columns, at = {}, 0
    for name in dtype.names:
        sub = dtype[name]
        width = int(np.prod(sub.shape or (1,)))
        part = flat[:, at : at + width]
        if sub.base.kind in "iu":  # packed integers such as rgb
            part = part.astype(np.float64).astype(sub.base)
        columns[name] = part[:, 0] if not sub.shape else part
        at += width
    return columns


def _pcd_loaded(path: Path, fields: list[str], columns: dict[str, np.ndarray]) -> LoadedPoints:
    def col(name: str) -> np.ndarray | None:
        match = next((f for f in fields if f.split("__")[0] == name), None)
        return None if match is None else columns[match]

    xyz = np.stack([np.asarray(col(a), dtype=np.float64) for a in "xyz"], axis=1)
    normals = None
    if all(col(f"normal_{a}") is not None for a in "xyz"):
        normals = np.stack([np.asarray(col(f"normal_{a}"), dtype=np.float64) for a in "xyz"], axis=1)
    colors = None
    packed = col("rgb") if col("rgb") is not None else col("rgba")
    if packed is not None:
        bits = np.ascontiguousarray(packed)
        bits = bits.view(np.uint32) if bits.dtype.itemsize == 4 else bits.astype(np.uint32)
        colors = np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], axis=1).astype(np.float32) / 255.0
    return LoadedPoints(xyz, colors, normals, str(path))


def lzf_decompress(data: bytes, size: int) -> bytes:
    """LZF (liblzf) decompression to exactly ``size`` bytes; raises ValueError on corrupt input."""
    out = bytearray(size)
    ip = op = 0
    end = len(data)
    try:
        while ip < end:
            ctrl = data[ip]
            ip += 1
            if ctrl < 32:  # a literal run of ctrl + 1 bytes
                length = ctrl + 1
                if op + length > size or ip + length > end:
                    raise ValueError("literal run past the end")
                out[op : op + length] = data[ip : ip + length]
                op += length
                ip += length
            else:  # a back reference
                length = ctrl >> 5
                ref = op - ((ctrl & 0x1F) << 8) - 1
                if length == 7:
                    length += data[ip]
                    ip += 1
                ref -= data[ip]
                ip += 1
                length += 2
                if ref < 0 or op + length > size:
                    raise ValueError("back reference out of range")
                if ref + length <= op:
                    out[op : op + length] = out[ref : ref + length]
                else:  # overlapping copy repeats the pattern
                    for k in range(length):
                        out[op + k] = out[ref + k]
                op += length
    except IndexError:
        raise ValueError("compressed data end mid-token") from None
    if op != size:
        raise ValueError(f"decompressed {op} bytes, expected {size}")
    return bytes(out)
