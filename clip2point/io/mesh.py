"""Mesh files: ``.off .obj .stl .gltf .glb .ply``, parsed by trimesh from memory after a header check.

Every format's declared vertex/face counts are checked against the limits (and, where the format
allows, against the file's size) before trimesh parses it. Parsing happens on in-memory bytes
with no resolver, so an OBJ's ``mtllib``/textures are never opened, and a glTF/GLB whose buffers
or images reference a non-``data:`` URI is refused.
"""
from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .checks import fail, reading, short_error, too_many, truncated, validate_points
from .columns import unit_colors
from .formats import MAX_FACES_PER_POINT, MAX_POINTS
from .geometry import convert_up_axis, far_offset, shifted
from .types import Mesh, MeshData

__all__ = ["read_mesh_data", "to_mesh"]


def read_mesh_data(path: Path, ext: str, limit: int) -> MeshData:
    """Vertices, faces (None if absent) and optional colours/normals of a mesh file, via trimesh."""
    face_limit = MAX_FACES_PER_POINT * limit
    with reading(path):
        raw = path.read_bytes()
        if ext == ".ply":  # one read decides mesh vs point cloud and keeps point normals
            _check_ply_header(path, raw, limit, face_limit)
            from trimesh.exchange.ply import load_ply

            kw = load_ply(io.BytesIO(raw), resolver=None)
            del raw
            faces = kw.get("faces")
            data = MeshData(
                np.asarray(kw.get("vertices", np.zeros((0, 3)))),
                None if faces is None else np.asarray(faces),
                None if kw.get("vertex_colors") is None else unit_colors(kw["vertex_colors"]),
                kw.get("vertex_normals"),
            )
        else:
            _MESH_CHECKS[ext](path, raw, limit, face_limit)
            import trimesh

            kwargs: dict[str, Any] = {"skip_materials": True} if ext in (".obj", ".gltf", ".glb") else {}
            mesh = trimesh.load_mesh(io.BytesIO(raw), file_type=ext[1:], resolver=None, process=False, **kwargs)
            del raw
            visual = getattr(mesh, "visual", None)
            colors = visual.vertex_colors if getattr(visual, "kind", None) == "vertex" else None
            data = MeshData(
                np.asarray(mesh.vertices),
                np.asarray(getattr(mesh, "faces", np.zeros((0, 3)))),
                None if colors is None else unit_colors(colors),
                None,
            )
    too_many(path, len(data.vertices), limit, "vertices")
    if data.faces is not None:
        too_many(path, len(data.faces), face_limit, "faces", "MAX_FACES_PER_POINT × max_points")
    return data


def _check_ply_header(path: Path, raw: bytes, limit: int, face_limit: int) -> None:
    """Element counts of a PLY header against the limits and the bytes that follow."""
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise fail(path, "is not a PLY file (no 'ply' signature or no end_header); re-export it")
    data_start = raw.find(b"\n", end) + 1 or len(raw)
    lines = raw[:end].decode("ascii", errors="replace").splitlines()
    fmt, elements, lists = "", [], False
    sizes = {"char": 1, "int8": 1, "uchar": 1, "uint8": 1, "short": 2, "int16": 2, "ushort": 2, "uint16": 2,
             "int": 4, "int32": 4, "uint": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8}
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "format" and len(parts) >= 2:
            fmt = parts[1]
        elif parts[0] == "element" and len(parts) >= 3:
            try:
                count = int(parts[2])
            except ValueError:
                raise fail(path, f"the PLY header has a malformed element count {parts[2]!r}") from None
            if count < 0:
                raise fail(path, f"the PLY header declares {count} {parts[1]} elements")
            elements.append([parts[1], count, 0])
        elif parts[0] == "property" and elements:
            if len(parts) >= 5 and parts[1] == "list":
                elements[-1][2] += sizes.get(parts[2], 1)  # at least the list length per element
                lists = True
            elif len(parts) >= 3:
                elements[-1][2] += sizes.get(parts[1], 1)
    counts = {name: count for name, count, _ in elements}
    too_many(path, counts.get("vertex", 0), limit, "vertices")
    too_many(path, counts.get("face", 0), face_limit, "faces", "MAX_FACES_PER_POINT × max_points")
    have = len(raw) - data_start
    described = " and ".join(f"{count:,} {name} elements" for name, count, _ in elements) or "no elements"
    if fmt.startswith("binary"):
        need = sum(count * row for _, count, row in elements)
        if need > have:
            raise truncated(path, described, need, have)
        if not lists and have > need + 2:  # fixed-size rows: the size is exact (a trailing newline aside)
            raise fail(path, f"its header declares {described} ({need:,} bytes) but {have:,} bytes follow; "
                              "the header's counts are wrong; re-export it")
    elif fmt == "ascii":
        items = sum(count for _, count, _ in elements)
        body = raw[data_start:].rstrip()
        rows = body.count(b"\n") + 1 if body else 0
        if rows != items:
            raise fail(path, f"its header declares {described} ({items:,} lines) but {rows:,} lines follow; "
                              "the file is truncated or its counts are wrong; re-export it")
    else:
        raise fail(path, f"has an unknown PLY format {fmt!r}; expected ascii or binary_little/big_endian")


def _text_count_lines(raw: bytes) -> list[bytes]:
    return [line.split(b"#", 1)[0].strip() for line in raw.splitlines()]


def _check_off(path: Path, raw: bytes, limit: int, face_limit: int) -> None:
    """OFF header counts (``OFF`` may be glued to them, as in ModelNet) against limits and lines."""
    rows = [line for line in _text_count_lines(raw) if line]
    if not rows or not rows[0].upper().startswith((b"OFF", b"COFF", b"NOFF", b"CNOFF")):
        raise fail(path, "is not an OFF file (no OFF keyword on the first line); re-export it")
    first = rows[0].upper()
    rest = first[first.index(b"OFF") + 3 :].split()
    counts_row, data = (rest, rows[1:]) if rest else ((rows[1].split() if len(rows) > 1 else []), rows[2:])
    try:
        vertices, faces = int(counts_row[0]), int(counts_row[1])
    except (IndexError, ValueError):
        raise fail(path, "the OFF header has no valid 'vertices faces edges' counts; re-export it") from None
    if vertices < 0 or faces < 0:
        raise fail(path, f"the OFF header declares {vertices} vertices and {faces} faces; re-export it")
    too_many(path, vertices, limit, "vertices")
    too_many(path, faces, face_limit, "faces", "MAX_FACES_PER_POINT × max_points")
    if len(data) < vertices + faces:
        raise fail(path, f"the OFF header declares {vertices:,} vertices and {faces:,} faces but only {len(data):,} "
                          "lines follow; the file is truncated or corrupt; re-export it")


#: OBJ statement keywords (Wavefront OBJ spec: geometry, grouping, display and free-form statements).
_OBJ_KEYWORDS = frozenset(
    b"v vt vn vp f fo l p g o s mg usemtl mtllib usemap maplib lod shadow_obj trace_obj bevel c_interp d_interp "
    b"cstype deg bmat step curv curv2 surf parm trim hole scrv sp end con ctech stech call csh".split()
)
#: Lines of an OBJ file whose statements are checked before trimesh parses it.
_OBJ_LINES_CHECKED = 2000


def _check_obj_statements(path: Path, raw: bytes) -> None:
    """Refuse a file that is not OBJ text (e.g. a text file renamed ``.obj``): the first
    :data:`_OBJ_LINES_CHECKED` lines must be OBJ statements, and vertex lines must start with numbers."""
    lines = raw.removeprefix(b"\xef\xbb\xbf").split(b"\n", _OBJ_LINES_CHECKED)[:_OBJ_LINES_CHECKED]
    for lineno, line in enumerate(lines, 1):
        words = line.split(b"#", 1)[0].split()
        if not words:
            continue
        shown = line.strip()[:40].decode("utf-8", errors="replace")
        if words[0] not in _OBJ_KEYWORDS:
            raise fail(path, f"is not a valid OBJ mesh: line {lineno} ({shown!r}) is not an OBJ statement "
                             "(v, vn, vt, f, o, g, …); check the file's format — is it a text file renamed .obj?")
        if words[0] == b"v":
            try:
                [float(w) for w in words[1:4]]
            except ValueError:
                raise fail(path, f"is not a valid OBJ mesh: line {lineno} ({shown!r}) is not a vertex "
                                 "('v x y z' with numbers); check the file's format") from None


def _check_obj(path: Path, raw: bytes, limit: int, face_limit: int) -> None:
    _check_obj_statements(path, raw)
    text = b"\n" + raw
    vertices = text.count(b"\nv ") + text.count(b"\nv\t")
    faces = text.count(b"\nf ") + text.count(b"\nf\t")
    if vertices == 0:
        raise fail(path, "has no vertex lines ('v x y z'), so it is not an OBJ mesh; check the file's format")
    too_many(path, vertices, limit, "vertices")
    too_many(path, faces, face_limit, "faces", "MAX_FACES_PER_POINT × max_points")


def _check_stl(path: Path, raw: bytes, limit: int, face_limit: int) -> None:
    if len(raw) >= 84:
        (triangles,) = struct.unpack_from("<I", raw, 80)
        if 84 + 50 * triangles == len(raw):  # binary (its 80-byte header may start with "solid")
            too_many(path, triangles, face_limit, "faces", "MAX_FACES_PER_POINT × max_points")
            return
    if raw.lstrip()[:5].lower() == b"solid":
        too_many(path, raw.count(b"facet normal"), face_limit, "faces", "MAX_FACES_PER_POINT × max_points")
        return
    if len(raw) < 84:
        raise fail(path, f"is not an STL file ({len(raw)} bytes, no 'solid' keyword); re-export it")
    raise fail(path, f"is not a valid STL file: as binary STL its {triangles:,} triangles need "
                      f"{84 + 50 * triangles:,} bytes but the file has {len(raw):,}, and it is not ASCII STL "
                      "(no 'solid' keyword); the file is truncated or not an STL file; re-export it")


def _gltf_json(path: Path, raw: bytes) -> dict:
    """The JSON part of a .gltf or .glb file (GLB chunk lengths checked against the file)."""
    if raw[:4] == b"glTF":
        if len(raw) < 20:
            raise truncated(path, "a GLB header", 20, len(raw))
        _, _, length = struct.unpack_from("<4sII", raw, 0)
        chunk_length, chunk_type = struct.unpack_from("<II", raw, 12)
        if length > len(raw) or 20 + chunk_length > len(raw):
            raise truncated(path, "a GLB container", max(length, 20 + chunk_length), len(raw))
        if chunk_type != 0x4E4F534A:
            raise fail(path, "the GLB's first chunk is not JSON; the file is corrupt; re-export it")
        text = raw[20 : 20 + chunk_length]
    else:
        text = raw
    try:
        doc = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise fail(path, f"is not valid glTF JSON ({short_error(err, 120)}); re-export it") from err
    if not isinstance(doc, dict):
        raise fail(path, "is not a glTF document (its JSON is not an object); re-export it")
    return doc


def _check_gltf(path: Path, raw: bytes, limit: int, face_limit: int) -> None:
    """Refuse glTF/GLB files that reference other files, and accessor counts beyond the limits."""
    binary = raw[:4] == b"glTF"
    if binary and path.suffix.lower() == ".gltf":
        raise fail(path, "is a binary glTF file; rename it to .glb")
    if not binary and path.suffix.lower() == ".glb":
        if raw.lstrip()[:1] == b"{":
            raise fail(path, "is a text (JSON) glTF file, not a binary .glb; rename it to .gltf")
        raise fail(path, "is not a binary glTF file (no glTF signature); check the file's format")
    doc = _gltf_json(path, raw)
    for kind in ("buffers", "images"):
        for item in doc.get(kind) or []:
            uri = item.get("uri") if isinstance(item, dict) else None
            if uri is not None and not (isinstance(uri, str) and uri.startswith("data:")):
                raise fail(path, f"references external file {str(uri)[:200]!r}; clip2point reads only self-contained "
                                  "files for safety; export a self-contained .glb")
    accessors = doc.get("accessors") or []
    vertices = faces = 0
    for mesh in doc.get("meshes") or []:
        for prim in (mesh or {}).get("primitives") or []:
            try:
                position = prim["attributes"]["POSITION"]
                vertices += int(accessors[position]["count"])
                if "indices" in prim:
                    faces += int(accessors[prim["indices"]]["count"]) // 3
            except (KeyError, IndexError, TypeError, ValueError):
                continue
    too_many(path, vertices, limit, "vertices")
    too_many(path, faces, face_limit, "faces", "MAX_FACES_PER_POINT × max_points")


_MESH_CHECKS: dict[str, Callable[[Path, bytes, int, int], None]] = {
    ".off": _check_off, ".obj": _check_obj, ".stl": _check_stl, ".gltf": _check_gltf, ".glb": _check_gltf,
}


def to_mesh(path: Path, data: MeshData, up: str, limit: int = MAX_POINTS) -> Mesh:
    """Check read mesh data (3-D vertices, faces in range, finite, within ``limit``) and make a y-up :class:`Mesh`.

    Vertices far from the origin are stored minus a float64 offset (see :func:`~clip2point.io.geometry.far_offset`).

    Raises:
        PointCloudFileError: malformed vertices or faces, NaN/inf, too many vertices.
    """
    vertices = np.asarray(data.vertices)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        got = vertices.shape[1] if vertices.ndim == 2 else "malformed"
        raise fail(path, f"its vertices have {got} coordinates, not 3 (x y z); the file is malformed; re-export it")
    faces = np.asarray(data.faces)
    if faces.dtype.kind not in "iu" or faces.ndim != 2 or faces.shape[1] != 3 or faces.min() < 0 \
            or faces.max() >= len(vertices):
        raise fail(path, f"face indices are malformed or out of range for {len(vertices)} vertices; "
                          "the file may be corrupt; re-export it")
    faces = faces.astype(np.int64, copy=False)
    validate_points(path, vertices, limit)
    offset = far_offset(vertices)
    moved = np.asarray(vertices, dtype=np.float32) if offset is None else shifted(vertices, offset)
    mesh_offset = np.zeros(3) if offset is None else np.asarray(convert_up_axis(offset, up), dtype=np.float64)
    return Mesh(convert_up_axis(moved, up), faces, data.colors, str(path), mesh_offset)
