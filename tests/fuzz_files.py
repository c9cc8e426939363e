"""Writers of valid, broken and lying point-cloud/mesh files for the fuzz and security tests.

Every writer is independent of the code under test (plain struct/numpy/json), so a file can lie
in exactly one way: a count in a header, a cut, a value. ``make_cases(ext)`` lists the cases
for one extension as (name, category, writer) triples; ``load_outcome`` is the module-level
function the fuzz test runs in a limited child process.
"""
from __future__ import annotations

import base64
import io
import json
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

Writer = Callable[[Path], None]

MESH_EXTENSIONS = (".off", ".obj", ".stl", ".gltf", ".glb")
BOX_VERTICES = np.array(
    [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], dtype=np.float64
) * [2.0, 1.0, 0.5]
BOX_FACES = np.array(
    [[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4], [2, 3, 7], [2, 7, 6], [1, 2, 6], [1, 6, 5],
     [0, 4, 7], [0, 7, 3]], dtype=np.int64,
)


def load_outcome(path: str) -> tuple[str, int]:
    """Run in a sandboxed child: ("points", N) for a valid cloud (any Clip2PointError propagates)."""
    from clip2point.io import load_point_cloud

    cloud = load_point_cloud(path, num_points=256)
    assert cloud.points.dtype == np.float32 and cloud.points.ndim == 2 and cloud.points.shape[1] == 3
    assert np.isfinite(cloud.points).all() and len(cloud.points) >= 2
    return "points", int(cloud.num_input_points)


# ---------------------------------------------------------------------------------------------
# byte writers (points: (N, 3) float64)


def text_bytes(points: np.ndarray, delimiter: str = " ", header: str = "", first_line: str | None = None,
               fmt: str = "%.9g") -> bytes:
    buf = io.StringIO()
    if first_line is not None:
        buf.write(first_line + "\n")
    if header:
        buf.write(header + "\n")
    for row in np.asarray(points):
        buf.write(delimiter.join(fmt % v for v in row) + "\n")
    return buf.getvalue().encode()


def ply_bytes(points: np.ndarray, ascii: bool = False, double: bool = False, declare: int | None = None,
              faces: np.ndarray | None = None) -> bytes:
    kind = "double" if double else "float"
    count = len(points) if declare is None else declare
    header = ["ply", f"format {'ascii' if ascii else 'binary_little_endian'} 1.0", f"element vertex {count}"]
    header += [f"property {kind} {a}" for a in "xyz"]
    if faces is not None:
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    head = ("\n".join(header) + "\nend_header\n").encode()
    if ascii:
        body = text_bytes(points)
        if faces is not None:
            body += b"".join(f"3 {a} {b} {c}\n".encode() for a, b, c in faces)
        return head + body
    body = np.asarray(points, dtype="<f8" if double else "<f4").tobytes()
    if faces is not None:
        rec = np.empty(len(faces), dtype=[("n", "u1"), ("i", "<i4", (3,))])
        rec["n"], rec["i"] = 3, faces
        body += rec.tobytes()
    return head + body


def _lzf_literals(data: bytes) -> bytes:
    """A valid LZF stream made only of literal runs (what liblzf emits for incompressible data)."""
    out = bytearray()
    for start in range(0, len(data), 32):
        chunk = data[start : start + 32]
        out.append(len(chunk) - 1)
        out += chunk
    return bytes(out)


def pcd_bytes(points: np.ndarray, mode: str = "binary", declare: int | None = None, size: int = 4,
              width: int | None = None) -> bytes:
    n = len(points) if declare is None else declare
    head = (f"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE {size} {size} {size}\nTYPE F F F\nCOUNT 1 1 1\n"
            f"WIDTH {n if width is None else width}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {mode}\n")
    arr = np.asarray(points, dtype="<f8" if size == 8 else "<f4")
    if mode == "ascii":
        return head.encode() + text_bytes(points)
    if mode == "binary":
        return head.encode() + arr.tobytes()
    raw = np.ascontiguousarray(arr.T).tobytes()  # field by field
    comp = _lzf_literals(raw)
    return head.encode() + struct.pack("<II", len(comp), len(raw)) + comp


def npy_header_bytes(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def zip_bomb_npz(path: Path, n: int) -> Path:
    """A small ``.npz`` whose one member is an (n, 3) float64 array (24·n bytes once decompressed).

    Written in streaming fashion (the test never holds the array): 1,000 distinct rows repeated,
    which deflate to almost nothing.
    """
    from numpy.lib import format as npf

    block = np.random.default_rng(0).normal(size=(1000, 3)).tobytes()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("points.npy", "w", force_zip64=True) as f:
            npf.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (n, 3)})
            for _ in range(n // 1000):
                f.write(block)
    return path


def npz_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name + ".npy", data)
    return buf.getvalue()


def las_bytes(points: np.ndarray, declare: int | None = None, scale: float = 0.001, offset=(0.0, 0.0, 0.0),
              vlr_count: int = 0, point_offset: int | None = None, version_minor: int = 2) -> bytes:
    """LAS 1.2 (or 1.4) point format 0, written by hand."""
    n = len(points) if declare is None else declare
    header_size = 375 if version_minor >= 4 else 227
    step = scale if np.isfinite(scale) else 0.001  # a NaN scale is written to the header only
    ints = np.round((np.asarray(points) - offset) / step).astype("<i4") if len(points) else np.zeros((0, 3), "<i4")
    head = bytearray(header_size)
    head[0:4] = b"LASF"
    head[24], head[25] = 1, version_minor
    head[26:58] = b"clip2point fuzz".ljust(32, b"\0")
    struct.pack_into("<HII", head, 94, header_size, point_offset if point_offset is not None else header_size,
                     vlr_count)
    struct.pack_into("<BHI", head, 104, 0, 20, min(n, 2**32 - 1))
    struct.pack_into("<3d3d", head, 131, scale, scale, scale, *offset)
    if len(points):
        lo, hi = np.min(points, axis=0), np.max(points, axis=0)
        struct.pack_into("<6d", head, 179, hi[0], lo[0], hi[1], lo[1], hi[2], lo[2])
    if version_minor >= 4:
        struct.pack_into("<QIQ", head, 235, 0, 0, n)
    rec = np.zeros(len(ints), dtype=[("xyz", "<i4", (3,)), ("rest", "u1", (8,))])
    rec["xyz"] = ints
    return bytes(head) + rec.tobytes()


def off_bytes(vertices: np.ndarray, faces: np.ndarray, declare: tuple[int, int] | None = None) -> bytes:
    nv, nf = declare or (len(vertices), len(faces))
    lines = ["OFF", f"{nv} {nf} 0"] + [" ".join("%.9g" % c for c in v) for v in vertices]
    lines += ["3 " + " ".join(map(str, f)) for f in faces]
    return ("\n".join(lines) + "\n").encode()


def obj_bytes(vertices: np.ndarray, faces: np.ndarray, extra: str = "") -> bytes:
    lines = [extra] if extra else []
    lines += ["v " + " ".join("%.9g" % c for c in v) for v in vertices]
    lines += ["f " + " ".join(str(i + 1) for i in f) for f in faces]
    return ("\n".join(lines) + "\n").encode()


def stl_bytes(vertices: np.ndarray, faces: np.ndarray, declare: int | None = None) -> bytes:
    rec = np.zeros(len(faces), dtype=[("n", "<f4", (3,)), ("v", "<f4", (3, 3)), ("a", "<u2")])
    if len(faces):
        rec["v"] = np.asarray(vertices)[faces]
    return b"binary stl".ljust(80, b" ") + struct.pack("<I", len(faces) if declare is None else declare) + rec.tobytes()


def gltf_doc(vertices: np.ndarray, faces: np.ndarray, uri: str | None, count: int | None = None,
             glb: bool = False) -> tuple[dict, bytes]:
    pos = np.asarray(vertices, dtype="<f4").tobytes()
    idx = np.asarray(faces, dtype="<u4").tobytes()
    blob = pos + idx
    buffer = {"byteLength": len(blob)}
    if uri is not None:
        buffer["uri"] = uri
    elif not glb:
        buffer["uri"] = "data:application/octet-stream;base64," + base64.b64encode(blob).decode()
    v = np.asarray(vertices, dtype=np.float64)
    doc = {
        "asset": {"version": "2.0"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "buffers": [buffer],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(pos)},
                        {"buffer": 0, "byteOffset": len(pos), "byteLength": len(idx)}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": len(vertices) if count is None else count, "type": "VEC3",
             "min": (v.min(axis=0) if len(v) else np.zeros(3)).tolist(),
             "max": (v.max(axis=0) if len(v) else np.zeros(3)).tolist()},
            {"bufferView": 1, "componentType": 5125, "count": int(np.size(faces)), "type": "SCALAR"},
        ],
    }
    return doc, blob


def gltf_bytes(vertices: np.ndarray, faces: np.ndarray, uri: str | None = None, count: int | None = None) -> bytes:
    doc, _ = gltf_doc(vertices, faces, uri, count)
    return json.dumps(doc).encode()


def glb_bytes(vertices: np.ndarray, faces: np.ndarray, uri: str | None = None, count: int | None = None,
              declare_length: int | None = None) -> bytes:
    doc, blob = gltf_doc(vertices, faces, uri, count, glb=True)
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    blob += b"\0" * (-len(blob) % 4)
    chunks = struct.pack("<II", len(text), 0x4E4F534A) + text
    if uri is None:
        chunks += struct.pack("<II", len(blob), 0x004E4942) + blob
    total = 12 + len(chunks)
    return struct.pack("<4sII", b"glTF", 2, declare_length or total) + chunks


def h5_writer(kind: str, points: np.ndarray) -> Writer:
    def write(path: Path) -> None:
        import h5py

        with h5py.File(path, "w") as f:
            if kind == "valid":
                f["points"] = points.astype(np.float32)
            elif kind == "float64":
                f["points"] = points.astype(np.float64)
            elif kind == "huge_declared":
                f.create_dataset("points", shape=(10**9, 3), dtype="f4", chunks=(4096, 3))
            elif kind == "huge_contiguous":
                f.create_dataset("points", shape=(10**9, 3), dtype="f4")
            elif kind == "partly_written":
                ds = f.create_dataset("points", shape=(1000, 3), dtype="f4", chunks=(100, 3))
                ds[:500] = np.random.default_rng(0).random((500, 3))
            elif kind == "strings":
                f["points"] = np.array([[b"1", b"2", b"3"]] * 4)
            elif kind == "multi":
                f["data"] = np.stack([points, points[::-1]]).astype(np.float32)
            elif kind == "empty_multi":
                f["data"] = np.zeros((0, 16, 3), np.float32)

    return write


def raw(data: bytes) -> Writer:
    return lambda path: path.write_bytes(data)


# ---------------------------------------------------------------------------------------------
# cases per extension


def _valid_bytes(ext: str, pts: np.ndarray) -> bytes | None:
    """A valid file's bytes for every extension but .h5/.hdf5 (written by h5py)."""
    v, f = BOX_VERTICES, BOX_FACES
    return {
        ".ply": lambda: ply_bytes(pts),
        ".pcd": lambda: pcd_bytes(pts),
        ".xyz": lambda: text_bytes(pts),
        ".xyzn": lambda: text_bytes(np.hstack([pts, pts / np.linalg.norm(pts, axis=1, keepdims=True)])),
        ".xyzrgb": lambda: text_bytes(np.hstack([pts, np.full_like(pts, 0.5)])),
        ".pts": lambda: text_bytes(pts, first_line=str(len(pts))),
        ".txt": lambda: text_bytes(pts, "\t", header="x\ty\tz"),
        ".csv": lambda: text_bytes(pts, ",", header="x,y,z"),
        ".npy": lambda: npy_bytes(pts.astype(np.float32)),
        ".npz": lambda: npz_bytes({"points": npy_bytes(pts.astype(np.float32))}),
        ".las": lambda: las_bytes(pts),
        ".laz": lambda: las_bytes(pts),  # a LAS body behind .laz: laspy reads it or asks for a backend
        ".off": lambda: off_bytes(v, f),
        ".obj": lambda: obj_bytes(v, f),
        ".stl": lambda: stl_bytes(v, f),
        ".gltf": lambda: gltf_bytes(v, f),
        ".glb": lambda: glb_bytes(v, f),
    }.get(ext, lambda: None)()


def _points_file(ext: str, pts: np.ndarray) -> Writer:
    """The same cloud in format ``ext`` (mesh formats: the points as vertices of the box's faces)."""
    if ext in (".h5", ".hdf5"):
        return h5_writer("float64", pts)
    if ext in MESH_EXTENSIONS:
        faces = BOX_FACES[: max(1, len(pts) // 3)] % max(len(pts), 1) if len(pts) else BOX_FACES[:0]
        writers = {".off": off_bytes, ".obj": obj_bytes, ".stl": stl_bytes, ".gltf": gltf_bytes, ".glb": glb_bytes}
        return raw(writers[ext](pts, faces))
    if ext == ".npy":
        return raw(npy_bytes(pts))
    if ext == ".npz":
        return raw(npz_bytes({"points": npy_bytes(pts)}))
    if ext == ".ply":
        return raw(ply_bytes(pts, double=True))
    if ext == ".pcd":
        return raw(pcd_bytes(pts, size=8))
    if ext in (".las", ".laz"):
        return raw(las_bytes(pts, scale=1e35) if np.abs(pts).max(initial=0) > 1e30 else las_bytes(pts))
    if ext in (".xyzn", ".xyzrgb"):
        return raw(text_bytes(np.hstack([pts, np.full_like(pts, 0.5)])))
    return raw(_valid_bytes(ext, pts))


def _huge_declared(ext: str, pts: np.ndarray) -> Writer | None:
    """A small file whose header declares about 1e9 points (or faces)."""
    g = 10**9
    v, f = BOX_VERTICES, BOX_FACES
    return {
        ".ply": lambda: raw(ply_bytes(pts, declare=g)),
        ".pcd": lambda: raw(pcd_bytes(pts, declare=g)),
        ".pts": lambda: raw(text_bytes(pts, first_line=str(g))),
        ".npy": lambda: raw(npy_header_bytes((10**12, 3)) + b"\0" * 4096),
        ".npz": lambda: raw(npz_bytes({"points": npy_header_bytes((10**12, 3)) + b"\0" * 4096})),
        ".h5": lambda: h5_writer("huge_declared", pts),
        ".hdf5": lambda: h5_writer("huge_contiguous", pts),
        ".las": lambda: raw(las_bytes(pts, declare=g)),
        ".laz": lambda: raw(las_bytes(pts, declare=g)),
        ".off": lambda: raw(off_bytes(v, f, declare=(g, g))),
        ".stl": lambda: raw(stl_bytes(v, f, declare=g)),
        ".gltf": lambda: raw(gltf_bytes(v, f, count=g)),
        ".glb": lambda: raw(glb_bytes(v, f, count=g)),
        ".obj": lambda: raw(obj_bytes(v, np.array([[0, 1, g]]))),
        ".txt": lambda: raw(b"1 2 3 " * 20000 + b"\n"),  # one row of 60,000 columns
        ".csv": lambda: raw(b"1,2,3," * 20000 + b"1\n"),
        ".xyz": lambda: raw(b"1 2 3 " * 20000 + b"\n"),
        ".xyzn": lambda: raw(b"1 2 3 " * 20000 + b"\n"),
        ".xyzrgb": lambda: raw(b"1 2 3 " * 20000 + b"\n"),
    }[ext]()


def _lying(ext: str, pts: np.ndarray) -> list[tuple[str, Writer]]:
    """Files whose counts disagree with their data (more declared, fewer declared)."""
    n = len(pts)
    v, f = BOX_VERTICES, BOX_FACES
    half = pts[: n // 2]
    table = {
        ".ply": [("more", raw(ply_bytes(half, declare=n))), ("fewer", raw(ply_bytes(pts, declare=n // 2))),
                 ("ascii_more", raw(ply_bytes(half, ascii=True, declare=n))),
                 ("ascii_fewer", raw(ply_bytes(pts, ascii=True, declare=n // 2)))],
        ".pcd": [("more", raw(pcd_bytes(half, declare=n))), ("fewer", raw(pcd_bytes(pts, declare=n // 2))),
                 ("ascii_more", raw(pcd_bytes(half, "ascii", declare=n))),
                 ("ascii_fewer", raw(pcd_bytes(pts, "ascii", declare=n // 2))),
                 ("compressed_more", raw(pcd_bytes(half, "binary_compressed", declare=n))),
                 ("width", raw(pcd_bytes(pts, width=n * 2)))],
        ".pts": [("more", raw(text_bytes(half, first_line=str(n)))),
                 ("fewer", raw(text_bytes(pts, first_line=str(n // 2))))],
        ".npy": [("more", raw(npy_header_bytes((n, 3)) + half.astype("<f4").tobytes())),
                 ("fewer", raw(npy_header_bytes((n // 2, 3)) + pts.astype("<f4").tobytes()))],
        ".npz": [("more", raw(npz_bytes({"points": npy_header_bytes((n, 3)) + half.astype("<f4").tobytes()})))],
        ".h5": [("partly_written", h5_writer("partly_written", pts))],
        ".hdf5": [("empty_multi", h5_writer("empty_multi", pts))],
        ".las": [("more", raw(las_bytes(half, declare=n))), ("vlrs", raw(las_bytes(pts, vlr_count=2**31))),
                 ("offset", raw(las_bytes(pts, point_offset=10**9))),
                 ("v14_count", raw(las_bytes(half, declare=n, version_minor=4)))],
        ".laz": [("more", raw(las_bytes(half, declare=n)))],
        ".off": [("more", raw(off_bytes(v, f, declare=(100, 12)))), ("bad_index", raw(off_bytes(v, f + 50)))],
        ".obj": [("bad_index", raw(obj_bytes(v, f + 50))), ("two_coords", raw(obj_bytes(v[:, :2], f)))],
        ".stl": [("more", raw(stl_bytes(v, f, declare=100)))],
        ".gltf": [("count", raw(gltf_bytes(v, f, count=1000)))],
        ".glb": [("count", raw(glb_bytes(v, f, count=1000))), ("length", raw(glb_bytes(v, f, declare_length=10**6)))],
        ".txt": [("ragged", raw(text_bytes(pts)[:-1] + b" 7\n1 2\n"))],
        ".csv": [("ragged", raw(b"x,y,z\n1,2,3\n4,5\n"))],
        ".xyz": [("ragged", raw(b"1 2 3\n4 5\n6 7 8\n"))],
        ".xyzn": [("short", raw(text_bytes(pts)))],
        ".xyzrgb": [("short", raw(text_bytes(pts)))],
    }
    return table[ext]


#: Each case: (name, category, writer). Categories with a required outcome are in EXPECT.
EXPECT = {"valid": "load", "empty": "error", "nan": "error", "one_point": "error", "equal": "error",
          "huge_declared": "error", "lying": "error", "huge_coords": "error", "transposed": "error"}


def make_cases(ext: str, seed: int = 0) -> list[tuple[str, str, Writer]]:
    rng = np.random.default_rng(seed)
    pts = rng.standard_normal((64, 3))
    cases: list[tuple[str, str, Writer]] = []
    valid = _valid_bytes(ext, pts)
    if ext in (".h5", ".hdf5"):
        cases.append(("valid", "valid", h5_writer("valid", pts)))
        cases.append(("valid_multi", "valid", h5_writer("multi", pts)))
        cases.append(("strings", "lying", h5_writer("strings", pts)))
    elif ext == ".laz":
        cases.append(("las_behind_laz", "other", raw(valid)))  # loads, or asks for a LAZ backend
    else:
        cases.append(("valid", "valid", raw(valid)))
    cases.append(("empty", "empty", raw(b"")))
    for k, size in enumerate((1, 7, 300, 4096)):
        cases.append((f"random_{size}", "random", raw(rng.bytes(size))))
    if valid is not None:
        for frac in (0.05, 0.3, 0.5, 0.9, 0.999):
            cut = max(1, int(len(valid) * frac))
            cases.append((f"truncated_{frac}", "truncated", raw(valid[:cut])))
        for other in (".ply", ".npy", ".glb", ".csv", ".las"):
            if other != ext:
                cases.append((f"wrong_format_{other[1:]}", "wrong_format", raw(_valid_bytes(other, pts))))
    nan = pts.copy()
    nan[[3, 10]] = np.nan
    nan[20, 1] = np.inf
    mesh = ext in MESH_EXTENSIONS
    base = BOX_VERTICES.copy() if mesh else pts
    if mesh:
        nan = base.copy()
        nan[2] = np.nan
    if ext in (".las", ".laz"):  # integer coordinates: NaN comes from a NaN scale factor
        cases.append(("nan", "nan", raw(las_bytes(pts, scale=float("nan")))))
    else:
        cases.append(("nan", "nan", _points_file(ext, nan) if not mesh else _mesh_file(ext, nan)))
    cases.append(("one_point", "one_point", _points_file(ext, pts[:1])))
    cases.append(("equal", "equal", _points_file(ext, np.tile(pts[:1], (50, 1))) if not mesh
                  else _mesh_file(ext, np.tile(base[:1], (8, 1)))))
    cases.append(("huge_declared", "huge_declared", _huge_declared(ext, pts)))
    for name, writer in _lying(ext, pts):
        cases.append((f"lying_{name}", "lying", writer))
    if ext not in (".stl", ".gltf", ".glb"):  # float32-only formats cannot hold 1e39 (they hold inf: "nan")
        huge = (BOX_VERTICES if mesh else pts) * 1e39
        cases.append(("huge_coords", "huge_coords", _mesh_file(ext, huge) if mesh else _points_file(ext, huge)))
    if ext in (".npy", ".npz", ".txt", ".csv", ".h5"):
        tr = np.ascontiguousarray(pts.T)
        writer = {".npy": lambda: raw(npy_bytes(tr)), ".npz": lambda: raw(npz_bytes({"points": npy_bytes(tr)})),
                  ".txt": lambda: raw(text_bytes(tr)), ".csv": lambda: raw(text_bytes(tr, ",")),
                  ".h5": lambda: h5_writer("valid", tr)}[ext]()
        cases.append(("transposed", "transposed", writer))
    return cases


def _mesh_file(ext: str, vertices: np.ndarray) -> Writer:
    writers = {".off": off_bytes, ".obj": obj_bytes, ".stl": stl_bytes, ".gltf": gltf_bytes, ".glb": glb_bytes}
    return raw(writers[ext](vertices, BOX_FACES))
