"""Attacker files that try to make clip2point read other files on the server (issue 9, item 2).

Each payload points at a "secret" the test writes next to (or far from) the upload: an HDF5
dataset with external raw storage, a virtual dataset, an external link and a soft link; a glTF/GLB
whose buffer URI is relative (``../secret.bin``), absolute or ``file://``; an OBJ with
``mtllib ../secret.mtl``. The secret holds distinctive float values that would come back as the
cloud's points. Each payload goes through the library (``load_point_cloud``, ``load_mesh``,
``open_dataset``), the CLI (``zeroshot`` and ``render`` as subprocesses: exit 2, one clear line)
and the app (``/classify`` and ``/load_file`` through gradio_client); every one must be refused
and no output may contain the secret's values. Controls show the payloads are real: plain
h5py/trimesh, run in a child process, do return the secret.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from clip2point.errors import DatasetError, PointCloudFileError
from clip2point.sandbox import call_limited, sandbox_available

REPO = Path(__file__).resolve().parents[1]
#: 12 distinctive points: if any of these numbers shows up in an output, the secret leaked.
SECRET = (np.arange(36, dtype=np.float64).reshape(12, 3) * 1.125 + np.array([4817.375, -7306.625, 2953.875])).astype(
    np.float32
)
SECRET_TEXTS = ("4817.375", "7306.625", "2953.875", "4817.4", "7306.6", "2953.9")
BOX_FACES = np.array([[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4], [2, 3, 7], [2, 7, 6],
                      [1, 2, 6], [1, 6, 5], [0, 4, 7], [0, 7, 3]], dtype=np.uint32)
H5_PAYLOADS = ("h5_external_storage", "h5_virtual", "h5_external_link", "h5_soft_link")
MESH_PAYLOADS = ("gltf_relative_uri", "gltf_absolute_uri", "gltf_file_uri", "glb_absolute_uri")
PAYLOADS = H5_PAYLOADS + MESH_PAYLOADS


def assert_no_secret(text: str) -> None:
    leaked = [t for t in SECRET_TEXTS if t in text]
    assert not leaked, f"secret values {leaked} appear in the output: {text[:500]}"


@pytest.fixture(scope="module")
def secrets(tmp_path_factory) -> Path:
    """A server folder with the secrets; uploads go to its sub-folder ``upload/``."""
    root = tmp_path_factory.mktemp("server")
    SECRET.astype("<f4").tofile(root / "secret.bin")  # raw float32 x y z rows
    (root / "secret_faces.bin").write_bytes(SECRET.astype("<f4").tobytes() + BOX_FACES.tobytes())
    import h5py

    with h5py.File(root / "secret.h5", "w") as f:
        f["points"] = SECRET
    (root / "secret.mtl").write_text("newmtl leak\nKd 0.25 0.5 0.75\nmap_Kd secret.png\n")
    (root / "upload").mkdir()
    return root


def _gltf(uri: str, glb: bool = False) -> bytes:
    pos_bytes = 12 * 12
    doc = {
        "asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "buffers": [{"uri": uri, "byteLength": pos_bytes + BOX_FACES.nbytes}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": pos_bytes},
                        {"buffer": 0, "byteOffset": pos_bytes, "byteLength": BOX_FACES.nbytes}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 12, "type": "VEC3",
                       "min": SECRET.min(axis=0).tolist(), "max": SECRET.max(axis=0).tolist()},
                      {"bufferView": 1, "componentType": 5125, "count": BOX_FACES.size, "type": "SCALAR"}],
    }
    text = json.dumps(doc).encode()
    if not glb:
        return text
    text += b" " * (-len(text) % 4)
    chunk = len(text).to_bytes(4, "little") + b"JSON" + text
    return b"glTF" + (2).to_bytes(4, "little") + (12 + len(chunk)).to_bytes(4, "little") + chunk


def make_payload(kind: str, root: Path) -> Path:
    """Write one attacker file into ``root/upload`` and return its path."""
    import h5py

    up = root / "upload"
    secret_bin, secret_h5 = str(root / "secret.bin"), str(root / "secret.h5")
    if kind.startswith("h5_"):
        path = up / f"{kind}.h5"
        with h5py.File(path, "w") as f:
            if kind == "h5_external_storage":
                f.create_dataset("points", shape=SECRET.shape, dtype="<f4", external=[(secret_bin, 0, SECRET.nbytes)])
            elif kind == "h5_virtual":
                layout = h5py.VirtualLayout(shape=SECRET.shape, dtype="<f4")
                layout[:] = h5py.VirtualSource(secret_h5, "points", shape=SECRET.shape)
                f.create_virtual_dataset("points", layout)
            elif kind == "h5_external_link":
                f["points"] = h5py.ExternalLink(secret_h5, "/points")
            elif kind == "h5_soft_link":
                f.create_dataset("hidden", shape=SECRET.shape, dtype="<f4", external=[(secret_bin, 0, SECRET.nbytes)])
                f["points"] = h5py.SoftLink("/hidden")
        return path
    if kind == "obj_mtllib":
        path = up / "mtllib.obj"
        verts = "\n".join(f"v {x} {y} {z}" for x, y, z in np.random.default_rng(0).random((8, 3)))
        faces = "\n".join("f " + " ".join(str(i + 1) for i in f) for f in BOX_FACES)
        path.write_text(f"mtllib ../secret.mtl\nusemtl leak\n{verts}\n{faces}\n")
        return path
    uri = {
        "gltf_relative_uri": "../secret_faces.bin",
        "gltf_absolute_uri": str(root / "secret_faces.bin"),
        "gltf_file_uri": "file://" + str(root / "secret_faces.bin"),
        "glb_absolute_uri": str(root / "secret_faces.bin"),
    }[kind]
    glb = kind.startswith("glb")
    path = up / (kind + (".glb" if glb else ".gltf"))
    path.write_bytes(_gltf(uri, glb))
    return path


# ---------------------------------------------------------------------------------------------
# controls: the payloads are real (run in a child process)


def unsafe_h5_read(path: str) -> list:
    import h5py

    with h5py.File(path, "r") as f:
        return np.asarray(f["points"][()]).tolist()


def unsafe_trimesh_read(path: str) -> list:
    """trimesh with a resolver on the file's folder (recent trimesh refuses ``../`` unless told to allow it)."""
    import trimesh

    try:
        resolver = trimesh.resolvers.FilePathResolver(path, allow_anywhere=True)
    except TypeError:  # older trimesh: no such option, and no such check
        resolver = trimesh.resolvers.FilePathResolver(path)
    return np.asarray(trimesh.load(path, force="mesh", process=False, resolver=resolver).vertices).tolist()


@pytest.mark.skipif(not sandbox_available(), reason="needs the multiprocessing forkserver (POSIX)")
@pytest.mark.parametrize("kind", H5_PAYLOADS + ("gltf_relative_uri",))
def test_control_the_unsafe_readers_do_return_the_secret(secrets, kind):
    path = make_payload(kind, secrets)
    reader = unsafe_h5_read if kind.startswith("h5_") else unsafe_trimesh_read
    np.testing.assert_allclose(np.array(call_limited(reader, str(path), timeout_s=30)), SECRET)


def test_control_opening_the_mtl_is_detected(secrets):
    pytest.importorskip("trimesh")
    mtl = secrets / "secret.mtl"
    _age_atime(mtl)
    before = os.stat(mtl).st_atime
    path = str(make_payload("obj_mtllib", secrets))
    code = ("import trimesh; r = trimesh.resolvers.FilePathResolver(p, allow_anywhere=True); "
            "m = trimesh.load(p, resolver=r); assert m.visual.material is not None")
    subprocess.run([sys.executable, "-c", f"p = {path!r}; {code}"], capture_output=True, timeout=120, check=True)
    if os.stat(mtl).st_atime == before:
        pytest.skip("this file system does not update access times, so reads of the .mtl cannot be detected")
    assert os.stat(mtl).st_atime > before  # an unsafe reader's open of the .mtl is visible to the real tests


def _age_atime(path: Path) -> None:
    """Set the access time two days before the modification time: the next read updates it (relatime)."""
    st = os.stat(path)
    os.utime(path, (st.st_mtime - 2 * 86400, st.st_mtime))


# ---------------------------------------------------------------------------------------------
# the library


@pytest.mark.parametrize("kind", PAYLOADS)
def test_library_refuses_every_payload(secrets, kind):
    from clip2point.io import load_mesh, load_point_cloud

    path = make_payload(kind, secrets)
    with pytest.raises(PointCloudFileError) as err:
        load_point_cloud(path)
    message = str(err.value)
    assert path.name in message and "\n" not in message
    assert any(w in message for w in ("external", "virtual", "soft link", "link")), message
    assert_no_secret(message)
    if kind in MESH_PAYLOADS:
        assert "export a self-contained .glb" in message
        with pytest.raises(PointCloudFileError, match="references external file"):
            load_mesh(path)


def test_obj_mtllib_is_never_opened(secrets):
    from clip2point.io import load_mesh, load_point_cloud

    mtl = secrets / "secret.mtl"
    path = make_payload("obj_mtllib", secrets)
    _age_atime(mtl)
    before = os.stat(mtl).st_atime
    cloud = load_point_cloud(path, num_points=64)
    mesh = load_mesh(path)
    assert len(cloud) == 64 and mesh.vertex_colors is None
    assert os.stat(mtl).st_atime == before, "the OBJ's mtllib was opened"


@pytest.mark.parametrize("kind", H5_PAYLOADS)
@pytest.mark.parametrize("member", ["data", "label", "name"])
def test_open_dataset_refuses_unsafe_h5_members(secrets, tmp_path, kind, member):
    import h5py

    from clip2point.classes import MODELNET10
    from clip2point.datasets import open_dataset

    payload = make_payload(kind, secrets)  # its "points" object is the unsafe one
    path = tmp_path / "modelnet10_evil_test.h5"
    with h5py.File(path, "w") as f:
        f.attrs["class_names"] = json.dumps([c.replace(" ", "_") for c in MODELNET10])
        f.attrs["up"] = "y"
        f["data"] = np.zeros((1, 12, 3), np.float32) + np.arange(12, dtype=np.float32)[None, :, None]
        f["label"] = np.zeros((1, 1), np.int64)
        f["name"] = np.array([b"evil_0001"])
        del f[member]
        with h5py.File(payload, "r") as src:
            link = src.get("points", getlink=True)
        if isinstance(link, h5py.ExternalLink):
            f[member] = h5py.ExternalLink(link.filename, link.path)
        elif kind == "h5_soft_link":
            f.copy(f["data"] if member != "data" else f["label"], "real_" + member)
            f[member] = h5py.SoftLink("/real_" + member)
        elif kind == "h5_virtual":
            layout = h5py.VirtualLayout(shape=(1, 12, 3), dtype="<f4")
            layout[0] = h5py.VirtualSource(str(secrets / "secret.h5"), "points", shape=SECRET.shape)
            f.create_virtual_dataset(member, layout)
        else:
            f.create_dataset(member, shape=(1, 12, 3), dtype="<f4",
                             external=[(str(secrets / "secret.bin"), 0, SECRET.nbytes)])
    with pytest.raises(DatasetError) as err:
        open_dataset("modelnet10", tmp_path)
    message = str(err.value)
    assert f"{member!r}" in message and any(w in message for w in ("external", "virtual", "soft link")), message
    assert_no_secret(message)


# ---------------------------------------------------------------------------------------------
# the command line


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIP2POINT_WEIGHTS")}
    return subprocess.run([sys.executable, "-m", "clip2point", *args], capture_output=True, text=True, timeout=180,
                          cwd=REPO, env=env)


@pytest.mark.parametrize(
    "kind,command",
    [(k, "zeroshot") for k in ("h5_external_storage", "h5_virtual", "gltf_relative_uri", "glb_absolute_uri")]
    + [(k, "render") for k in ("h5_external_link", "h5_soft_link", "gltf_absolute_uri", "gltf_file_uri")],
)
def test_cli_refuses_with_exit_2_and_one_line(secrets, tmp_path, kind, command):
    path = make_payload(kind, secrets)
    if command == "zeroshot":
        proc = _cli("zeroshot", str(path), "--model", "tiny-ViT-test", "--weights", "random", "--classes", "a,b")
    else:
        proc = _cli("render", str(path), "-o", str(tmp_path / "views"))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and path.name in lines[0] and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert_no_secret(proc.stdout + proc.stderr)
    assert not (tmp_path / "views").exists() or not any((tmp_path / "views").iterdir())


def test_cli_obj_mtllib_is_never_opened(secrets, tmp_path):
    mtl = secrets / "secret.mtl"
    path = make_payload("obj_mtllib", secrets)
    _age_atime(mtl)
    before = os.stat(mtl).st_atime
    proc = _cli("render", str(path), "-o", str(tmp_path / "views"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert os.stat(mtl).st_atime == before, "the CLI opened the OBJ's mtllib"


# ---------------------------------------------------------------------------------------------
# the app (in-process server, gradio_client)


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("gradio")
    import socket

    from gradio_client import Client

    from ui.app import build_app
    from ui.session import ModelRegistry

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = build_app("tiny-ViT-test", "random", "cpu", data_dir=None, registry=ModelRegistry())
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(demo.local_url, verbose=False)
    finally:
        demo.close()


def _with_timeout(fn, seconds: float = 120.0):
    """Run fn() in a thread; fail (instead of hanging the suite) if it does not return in time."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - reported to the test
            box["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the app did not answer within {seconds} s"
    return box


@pytest.mark.parametrize("kind", PAYLOADS)
def test_app_refuses_every_payload(client, secrets, kind):
    from gradio_client import handle_file

    path = make_payload(kind, secrets)
    classified = _with_timeout(lambda: client.predict(handle_file(str(path)), "chair, table", api_name="/classify"))
    assert "error" in classified and "value" not in classified, classified
    assert_no_secret(str(classified["error"]))
    assert any(w in str(classified["error"]) for w in ("external", "virtual", "link")), classified["error"]

    loaded = _with_timeout(
        lambda: client.predict(handle_file(str(path)), 0, "y", 1024, "6", 0.02, "height", api_name="/load_file")
    )
    text = str(loaded.get("value", loaded.get("error")))
    assert_no_secret(text)
    assert "error" in text.lower() and any(w in text for w in ("external", "virtual", "link")), text[:1000]


def test_app_obj_mtllib_is_never_opened(client, secrets):
    from gradio_client import handle_file

    mtl = secrets / "secret.mtl"
    path = make_payload("obj_mtllib", secrets)
    _age_atime(mtl)
    before = os.stat(mtl).st_atime
    result = _with_timeout(lambda: client.predict(handle_file(str(path)), "chair, table", api_name="/classify"))
    assert "value" in result, result.get("error")
    assert os.stat(mtl).st_atime == before, "the app opened the OBJ's mtllib"
