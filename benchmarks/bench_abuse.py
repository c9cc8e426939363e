"""Abuse benchmark: the app as an attacker or a careless script would use it.

Run:  .venv/bin/python benchmarks/bench_abuse.py [--model tiny-ViT-test|ViT-B-32] [--hang-after 120]

The app runs as ``python -m ui.app`` in its own process (random weights, CPU, its default limits
unless ``--load-timeout`` / ``--load-memory-mb`` say otherwise). Every request of issue 9 is sent
through ``gradio_client`` from a fresh session: out-of-range arguments on every kind of endpoint,
10,000 class names, long templates and names, files that declare 10⁹–10¹² points, HDF5 external
storage / external links / virtual datasets pointing at server files, a zip bomb, a pickled
``.npy`` whose unpickling would write a marker file, a TorchScript upload to
``/load_depth_encoder``, empty / 1-point / NaN / 1e39 / truncated / 2-coordinate files, and (with
ModelNet data) more few-shot runs than allowed. Then a normal request must still be answered.

Printed: per input the endpoint, the outcome, the wall time and the server's one-line message;
then inputs tried, clean errors, expected successes, crashes (server died, a 5xx / internal
error, or a multi-line message; must be 0), hangs (no answer within ``--hang-after`` s; must be
0), accepted abuse (an abusive input that was served; should be 0), tracebacks in the server log,
and peak memory: the server process's VmHWM (``/proc/<pid>/status``) before and after, and the
peak RSS of the server together with its children (the sandboxed readers), sampled every 50 ms.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
MN10_TEST = DATA / "modelnet10" / "modelnet10_pcd1024_test.h5"

from bench_app import AppServer  # noqa: E402 - the same app launcher (benchmarks/ is on sys.path)

sys.path.insert(0, str(ROOT / "tests"))
from fuzz_files import zip_bomb_npz  # noqa: E402 - the tests' malformed-file writers


# ----------------------------------------------------------------------------------------------
# memory of the server process (and its children)


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


class MemorySampler(threading.Thread):
    """Peak RSS of a process and of the process plus its descendants, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_tree_kb, self.peak_child_kb = pid, 0, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.05):
            kids = sum(_status_kb(p, "VmRSS") for p in _descendants(self.pid))
            self.peak_child_kb = max(self.peak_child_kb, kids)
            self.peak_tree_kb = max(self.peak_tree_kb, _status_kb(self.pid, "VmRSS") + kids)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(2)


# ----------------------------------------------------------------------------------------------
# abusive files


def _ply(path: Path, points: np.ndarray, declared: int | None = None) -> Path:
    pts = np.ascontiguousarray(points, dtype="<f4")
    n = len(pts) if declared is None else declared
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {n}\n"
              "property float x\nproperty float y\nproperty float z\nend_header\n")
    path.write_bytes(header.encode() + pts.tobytes())
    return path


def _las(path: Path) -> Path:
    """A 404-byte LAS 1.2 header: 10⁹ point records declared, a garbage VLR count (2³²-1)."""
    header = b"LASF" + struct.pack("<HH16sBB32s32sHHHIIBHI5I", 0, 0, b"\0" * 16, 1, 2, b"bench", b"bench", 1, 2024,
                                   227, 227, 0xFFFFFFFF, 0, 20, 1_000_000_000, 0, 0, 0, 0, 0)
    header += struct.pack("<12d", 0.01, 0.01, 0.01, 0, 0, 0, 1, 0, 1, 0, 1, 0)
    assert len(header) == 227, len(header)
    path.write_bytes(header + b"\x07" * (404 - len(header)))
    return path


def _npy_declared(path: Path, shape: tuple[int, ...]) -> Path:
    from numpy.lib import format as npf

    with open(path, "wb") as f:
        npf.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
        f.write(np.zeros(30, "<f4").tobytes())
    return path


class _Marker:
    """Unpickling calls ``open(marker, "w")``: the marker file appears if anything unpickles it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def make_files(folder: Path, marker: Path) -> dict[str, Path]:
    """Every abusive file, by name."""
    import h5py

    rng = np.random.default_rng(0)
    files: dict[str, Path] = {}
    files["good.ply"] = _ply(folder / "good.ply", rng.normal(size=(2000, 3)))
    files["declares 1e9 points.ply"] = _ply(folder / "declares_1e9.ply", rng.normal(size=(10, 3)), 1_000_000_000)
    p = folder / "declares_1e9.pcd"
    p.write_bytes(b"VERSION .7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 1000000000\nHEIGHT 1\n"
                  b"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS 1000000000\nDATA binary\n" + b"\0" * 120)
    files["declares 1e9 points.pcd"] = p
    p = folder / "declares_1e9.pts"
    p.write_text("1000000000\n0 0 0\n1 1 1\n0 1 0\n")
    files["declares 1e9 points.pts"] = p
    files["404-byte garbage-VLR.las"] = _las(folder / "garbage_vlr.las")
    files["npy declaring (1e12, 3)"] = _npy_declared(folder / "huge_header.npy", (10**12, 3))
    p = folder / "unwritten_1e9.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("data", shape=(10**9, 3), dtype="f4", chunks=(4096, 3))
    files["h5 unwritten (1e9, 3) chunked"] = p
    secret = Path("/etc/passwd")
    size = secret.stat().st_size // 3 * 3
    p = folder / "external_storage.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("data", shape=(size // 3, 3), dtype="u1", external=[(str(secret), 0, size)])
    files["h5 external storage → /etc/passwd"] = p
    target = folder / "server_side.h5"
    with h5py.File(target, "w") as f:
        f.create_dataset("data", data=rng.normal(size=(100, 3)).astype("f4"))
    p = folder / "external_link.h5"
    with h5py.File(p, "w") as f:
        f["data"] = h5py.ExternalLink(str(target), "/data")
    files["h5 external link → server file"] = p
    p = folder / "soft_link.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("hidden", data=rng.normal(size=(100, 3)).astype("f4"))
        f["data"] = h5py.SoftLink("/hidden")
    files["h5 soft link"] = p
    p = folder / "virtual.h5"
    layout = h5py.VirtualLayout(shape=(100, 3), dtype="f4")
    layout[:] = h5py.VirtualSource(str(target), "data", shape=(100, 3))
    with h5py.File(p, "w") as f:
        f.create_virtual_dataset("data", layout)
    files["h5 virtual dataset → server file"] = p
    files["zip-bomb npz (15M x 3 float64)"] = zip_bomb_npz(folder / "bomb.npz", 15_000_000)
    p = folder / "pickled.npy"
    np.save(p, np.array([_Marker(marker)], dtype=object), allow_pickle=True)
    files["pickled npy (would write a marker)"] = p
    p = folder / "empty.ply"
    p.write_bytes(b"")
    files["empty file"] = p
    files["1 point"] = _ply(folder / "one_point.ply", np.ones((1, 3)))
    p = folder / "nan.xyz"
    p.write_text("0 0 0\nnan 1 2\n1 1 1\n2 2 2\n")
    files["NaN coordinates"] = p
    p = folder / "big_values.xyz"
    p.write_text("0 0 0\n1e39 1 2\n1 1 1\n2 2 2\n")
    files["1e39 coordinates"] = p
    good = folder / "good.ply"
    p = folder / "truncated.ply"
    p.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    files["truncated PLY"] = p
    p = folder / "two_coords.obj"
    p.write_text("v 1 2\nv 3 4\nv 5 6\nf 1 2 3\n")
    files["OBJ with 2-coordinate vertices"] = p
    p = folder / "not_a_mesh.stl"
    p.write_bytes(os.urandom(4096))
    files["random bytes .stl"] = p
    return files


def make_checkpoints(folder: Path, marker: Path) -> dict[str, Path]:
    """Depth-encoder uploads that must be refused."""
    import torch

    ckpts: dict[str, Path] = {}

    class Tiny(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    p = folder / "torchscript.pt"
    torch.jit.save(torch.jit.script(Tiny()), str(p))
    ckpts["TorchScript archive"] = p
    p = folder / "pickle_payload.pth"
    import pickle

    p.write_bytes(pickle.dumps({"state_dict": _Marker(marker)}))
    ckpts["raw pickle (would write a marker)"] = p
    p = folder / "truncated.safetensors"
    p.write_bytes(struct.pack("<Q", 10**12) + b"{")
    ckpts["safetensors declaring a 1 TB header"] = p
    return ckpts


# ----------------------------------------------------------------------------------------------
# requests


@dataclass
class Case:
    name: str
    api_name: str
    args: tuple
    expect: str = "refused"  # "refused", "ok", or "either" (large but within the limits)
    setup: tuple | None = None  # (args, api_name) sent first in the same session


@dataclass
class Outcome:
    case: Case
    kind: str  # "clean error", "ok", "crash", "hang", "accepted abuse", "unexpected error"
    seconds: float
    message: str


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html).replace("&#x27;", "'").replace("&quot;", '"').replace("&amp;", "&").strip()


def run_case(url: str, case: Case, hang_after: float) -> Outcome:
    from gradio_client import Client

    client = Client(url, verbose=False)
    if case.setup is not None:
        client.predict(*case.setup[0], api_name=case.setup[1])
    pool = concurrent.futures.ThreadPoolExecutor(1)
    t0 = time.monotonic()
    future = pool.submit(client.predict, *case.args, api_name=case.api_name)
    try:
        out = future.result(timeout=hang_after)
        error = None
    except concurrent.futures.TimeoutError:
        pool.shutdown(wait=False, cancel_futures=True)
        return Outcome(case, "hang", time.monotonic() - t0, f"no answer within {hang_after:g} s")
    except Exception as err:  # noqa: BLE001 - the server's refusal (AppError) or a transport failure
        out, error = None, str(err)
    seconds = time.monotonic() - t0
    pool.shutdown(wait=False)
    if error is None:
        status = out[0] if isinstance(out, (tuple, list)) else None
        if isinstance(status, str) and "c2p-msg error" in status:
            error = _text(status).lstrip("⚠ ")
    if error is None:
        kind = {"ok": "ok", "either": "ok (in limits)"}.get(case.expect, "accepted abuse")
        return Outcome(case, kind, seconds, json.dumps(out)[:120] if not isinstance(out, tuple) else "served")
    one_line = "\n" not in error.strip() and "Traceback" not in error
    if "internal error" in error or not one_line or "Connection" in error or "500" in error[:40]:
        return Outcome(case, "crash", seconds, error.strip().splitlines()[0][:200] if error.strip() else "?")
    return Outcome(case, "unexpected error" if case.expect == "ok" else "clean error", seconds, error[:200])


def build_cases(files: dict[str, Path], ckpts: dict[str, Path], have_data: bool) -> list[Case]:
    from gradio_client import handle_file

    good = handle_file(str(files["good.ply"]))
    render = ("y", 1024, "6", 0.02, "height")
    classes = "chair, table, lamp"
    many = ", ".join(f"class {i}" for i in range(10_000))
    at_limit = ", ".join(f"class {i}" for i in range(1000))
    cases = [
        Case("normal /classify", "/classify", (good, classes), "ok"),
        Case("/classify 8,192 points (the limit)", "/classify", (good, classes, "image of a {}", "y", "6", 8192), "ok"),
        Case("/classify 1,000 classes (the limit)", "/classify", (good, at_limit), "ok"),
        Case("/classify num_points 2,000,000", "/classify", (good, classes, "image of a {}", "y", "6", 2_000_000)),
        Case("/classify num_points 10^30", "/classify", (good, classes, "image of a {}", "y", "6", 10**30)),
        Case("/classify num_points 'lots'", "/classify", (good, classes, "image of a {}", "y", "6", "lots")),
        Case("/classify 10,000 classes", "/classify", (good, many)),
        Case("/classify a 10,000-char class name", "/classify", (good, "chair, " + "x" * 10_000)),
        Case("/classify a 100,000-char template", "/classify", (good, classes, "{} " + "very " * 20_000)),
        Case("/classify a 10 MB class list", "/classify", (good, "a," * 5_000_000)),
        Case("/classify view set '100'", "/classify", (good, classes, "image of a {}", "y", "100")),
        Case("/classify up axis 'w'", "/classify", (good, classes, "image of a {}", "w")),
        Case("/load_file radius 5", "/load_file", (good, 0, "y", 1024, "6", 5.0, "height")),
        Case("/load_file shape index 10^9", "/load_file", (good, 10**9, *render)),
        Case("/load_file 2,000,000 points", "/load_file", (good, 0, "y", 2_000_000, "6", 0.02, "height")),
        Case("/load_example ../../etc/passwd", "/load_example", ("../../../../etc/passwd", *render)),
        Case("/set_num_points 2,000,000", "/set_num_points", ("y", 2_000_000, "6", 0.02, "height")),
        Case("/set_view_set '7'", "/set_view_set", ("y", 1024, "7", 0.02, "height")),
        Case("/score 10,000 classes", "/score", (many, "image of a {}", 5), setup=(("chair", *render), "/load_example")),
        Case("/score top-k 10^6", "/score", (classes, "image of a {}", 10**6), setup=(("chair", *render), "/load_example")),
        Case("/set_template 100,000 chars", "/set_template", (classes, "{}" + "!" * 100_000, 5),
             setup=(("chair", *render), "/load_example")),
        Case("/set_encoder 'evil'", "/set_encoder", ("evil", classes, "image of a {}", 5)),
    ]
    for name, path in files.items():
        if name == "good.ply":
            continue
        expect = "either" if name.startswith("zip-bomb") else "refused"  # 15 M points is legal: read in the sandbox
        cases.append(Case(f"/load_file {name}", "/load_file", (handle_file(str(path)), 0, *render), expect))
        cases.append(Case(f"/classify {name}", "/classify", (handle_file(str(path)), classes), expect))
    for name, path in ckpts.items():
        cases.append(Case(f"/load_depth_encoder {name}", "/load_depth_encoder",
                          (handle_file(str(path)), classes, "image of a {}", 5), setup=(("chair", *render), "/load_example")))
    if have_data:
        ds = ("modelnet10", "test", "all")
        cases += [
            Case("/load_dataset_shape index 10^6", "/load_dataset_shape", (*ds, 10**6, 1024, "6", 0.02, "height")),
            Case("/load_dataset_shape split '../../etc'", "/load_dataset_shape",
                 ("modelnet10", "../../etc", "all", 0, 1024, "6", 0.02, "height")),
            Case("/fewshot_start epochs 10^6", "/fewshot_start", ("modelnet10", 1, 10**6, "view", "10", 10, 1)),
            Case("/fewshot_start shots 1000", "/fewshot_start", ("modelnet10", 1000, 3, "view", "10", 10, 1)),
            Case("/fewshot_start test shapes 10^9", "/fewshot_start", ("modelnet10", 1, 3, "view", "10", 10**9, 1)),
        ]
    cases.append(Case("normal /classify afterwards", "/classify", (good, classes), "ok"))
    return cases


def fewshot_caps(url: str) -> list[str]:
    """Three sessions start long runs at once: two train, the third is refused; then all stop."""
    from gradio_client import Client

    clients = [Client(url, verbose=False) for _ in range(3)]
    args = ("modelnet10", 1, 200, "none", "10", 10, 1)
    lines = []
    for i, c in enumerate(clients):
        status = _text(c.predict(*args, api_name="/fewshot_start")[0])
        lines.append(f"session {i + 1}: {status[:150]}")
    second = _text(clients[0].predict(*args, api_name="/fewshot_start")[0])
    lines.append(f"session 1 again: {second[:150]}")
    t0 = time.monotonic()
    for c in clients:
        c.predict(api_name="/fewshot_stop")
    for c in clients:
        while True:
            out = c.predict(api_name="/fewshot_poll")
            if not (isinstance(out[5], dict) and out[5].get("active")) or time.monotonic() - t0 > 60:
                break
            time.sleep(0.3)
    lines.append(f"all runs stopped {time.monotonic() - t0:.1f} s after /fewshot_stop")
    return lines


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny-ViT-test", help="tiny-ViT-test (fast) or ViT-B-32 (the real compute)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--hang-after", type=float, default=120.0, help="seconds without an answer that count as a hang")
    p.add_argument("--load-timeout", type=float, default=60.0, help="the app's --load-timeout")
    p.add_argument("--load-memory-mb", type=int, default=4096, help="the app's --load-memory-mb")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench_abuse_"))
    marker = work / "MARKER_code_ran"
    files = make_files(work, marker)
    ckpts = make_checkpoints(work, marker)
    app_args = ["--model", args.model, "--weights", "random", "--device", args.device, "--runs-dir", str(work / "runs"),
                "--cache-dir", str(work / "view-cache"),  # its own view-feature cache, not ~/.cache
                "--load-timeout", str(args.load_timeout), "--load-memory-mb", str(args.load_memory_mb)]
    server = AppServer(app_args + (["--data-dir", str(DATA)] if DATA.is_dir() else []), "bench_abuse_server.log")
    try:
        t0 = time.monotonic()
        server.wait()
        from gradio_client import Client, handle_file

        Client(server.url, verbose=False).predict(handle_file(str(files["good.ply"])), "chair, table", api_name="/classify")
        print(f"server up and warm in {time.monotonic() - t0:.1f} s ({args.model}, random weights, {args.device}; "
              f"load limits {args.load_timeout:g} s / {args.load_memory_mb} MiB)")
        log_mark = server.log_path.stat().st_size
        hwm_before = _status_kb(server.proc.pid, "VmHWM")
        sampler = MemorySampler(server.proc.pid)
        sampler.start()
        outcomes = []
        for case in build_cases(files, ckpts, MN10_TEST.exists()):
            if not server.alive:
                outcomes.append(Outcome(case, "crash", 0.0, "server is dead"))
                continue
            o = run_case(server.url, case, args.hang_after)
            outcomes.append(o)
            rss = _status_kb(server.proc.pid, "VmRSS") / 1024
            print(f"{o.kind:15s} {o.seconds:7.2f} s  rss {rss:5.0f} MiB  {case.name[:52]:52s} {o.message[:100]}",
                  flush=True)
        hwm_requests = _status_kb(server.proc.pid, "VmHWM")
        caps = fewshot_caps(server.url) if MN10_TEST.exists() and server.alive else []
        sampler.stop()
        hwm_after = _status_kb(server.proc.pid, "VmHWM")
        alive = server.alive
    finally:
        server.stop()
    log = server.log_path.read_text(errors="replace")[log_mark:]
    tracebacks = log.count("Traceback (most recent call last)")
    count = {k: sum(o.kind == k for o in outcomes) for k in
             ("clean error", "ok", "ok (in limits)", "crash", "hang", "accepted abuse", "unexpected error")}
    abusive = [o for o in outcomes if o.case.expect != "ok"]
    print()
    for line in caps:
        print("few-shot caps:", line)
    print(f"inputs tried: {len(outcomes)} ({len(abusive)} abusive, {len(outcomes) - len(abusive)} normal controls)")
    print(f"clean errors: {count['clean error']}   served normally: {count['ok']} controls + "
          f"{count['ok (in limits)']} large inputs within the limits")
    print(f"crashes: {count['crash'] + (0 if alive else 1)}   hangs: {count['hang']}   accepted abuse: "
          f"{count['accepted abuse']}   unexpected errors on normal input: {count['unexpected error']}")
    print(f"server alive at the end: {alive}   tracebacks in the server log: {tracebacks}   "
          f"marker file written: {marker.exists()}")
    print(f"server VmHWM: {hwm_before / 1024:.0f} MiB after warm-up → {hwm_requests / 1024:.0f} MiB after the abusive "
          f"requests → {hwm_after / 1024:.0f} MiB after the few-shot runs; "
          f"peak RSS server + children {sampler.peak_tree_kb / 1024:.0f} MiB (children alone "
          f"{sampler.peak_child_kb / 1024:.0f} MiB)")
    refused = sorted(o.seconds for o in abusive)
    if refused:
        print(f"wall time per abusive request: median {refused[len(refused) // 2]:.2f} s, max {refused[-1]:.2f} s")
    shutil.rmtree(work, ignore_errors=True)
    bad = count["crash"] + count["hang"] + (0 if alive else 1) + int(marker.exists())
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
