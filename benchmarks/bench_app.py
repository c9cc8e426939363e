"""App benchmark: time to first result for a 100k-point upload, and 10 concurrent /classify clients.

Run:  .venv/bin/python benchmarks/bench_app.py [--runs 5] [--clients 10] [--requests 5] [--no-browser]

The app runs as ``python -m ui.app`` in its own process (ViT-B-32, whatever weights are found —
random here: same compute as real weights — CPU). Measurements start once the model is loaded
and a warm-up request has been served.

(a) Time to first result. A fresh 100,000-point cloud (``clip2point.io.sample_surface`` of an
    example mesh, with normals, a new seed per run) is uploaded with 10 views and the ModelNet40
    classes; a fresh client session per run (no cached features):
    * server + transport (``gradio_client``): from the start of the upload to the first streamed
      result (3-D view, depth + image views) and to the scores;
    * on screen (Playwright + Chromium on the same machine): from ``set_input_files`` until the
      views are in the DOM, and until every view shows its vote.
(b) Load. ``--clients`` threads, each with its own ``gradio_client.Client``, send ``--requests``
    ``/classify`` requests each (a real ModelNet10 test shape if ``../shared/data`` exists, else an
    example; ModelNet40 classes; 6 views) → p50/p95 latency, throughput, failures, and the CPU
    time per request of the server and of the clients (they share the machine's cores: on 2 cores
    the 10 ``gradio_client`` threads cost ~110 ms of CPU per request).

The app runs with ``--no-cache`` unless ``--cache`` is given (then with an empty temporary cache
folder): (b) sends one shape again and again, which the view-feature cache would serve without
encoding after the first request.

Compare app settings (b only), back to back in one run, so a busy machine's drift hits every
setting alike (``--rounds 2`` repeats them in reverse order; ratios are to the first setting)::

    .venv/bin/python benchmarks/bench_app.py --compare fp32:1,fp32:64,bf16:1,bf16:64 --rounds 2

Each ``PRECISION:N`` is one app server started with ``--precision PRECISION --batch-images N``
(N = 1: one request per encoder pass; larger: concurrent requests' views in one pass).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def write_cloud(path: Path, n: int, seed: int, example: str = "chair") -> Path:
    """A binary PLY of n surface samples (with normals) of an example mesh."""
    import numpy as np

    from clip2point.io import load_mesh, sample_surface
    from ui.shapes import example_path

    mesh = load_mesh(example_path(example))
    pts, nrm = sample_surface(mesh.vertices, mesh.faces, n, seed=seed, return_normals=True)
    data = np.concatenate([pts, nrm], axis=1).astype("<f4")
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {n}\n"
              + "".join(f"property float {c}\n" for c in ("x", "y", "z", "nx", "ny", "nz")) + "end_header\n")
    path.write_bytes(header.encode() + data.tobytes())
    return path


def write_classify_shape(folder: Path) -> Path:
    """A real ModelNet10 test shape (z-up → y-up) as PLY, or an example cloud without the data."""
    import numpy as np

    mn10 = DATA / "modelnet10" / "modelnet10_pcd1024_test.h5"
    if not mn10.exists():
        return write_cloud(folder / "example_2048.ply", 2048, 0)
    import h5py

    from clip2point.io import convert_up_axis

    with h5py.File(mn10, "r") as f:
        pts = convert_up_axis(np.asarray(f["data"][0], dtype=np.float32), "z")
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {len(pts)}\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    path = folder / "mn10_test_0.ply"
    path.write_bytes(header.encode() + np.ascontiguousarray(pts, dtype="<f4").tobytes())
    return path


class AppServer:
    """``python -m ui.app`` in a subprocess on a free port, logging to a temporary file (also used by
    ``bench_abuse.py``)."""

    def __init__(self, app_args: list[str], log_name: str = "bench_app_server.log") -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = Path(tempfile.gettempdir()) / log_name
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "ui.app", "--port", str(self.port), *app_args], cwd=ROOT,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.alive:
                raise RuntimeError(f"the app exited; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "config", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError("the app did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _upload_args(path: Path, views: str):
    from gradio_client import handle_file

    return (handle_file(str(path)), 0, "y", 1024, views, 0.02, "height")


def bench_first_result_client(server: AppServer, folder: Path, runs: int, views: str, classes: str) -> dict:
    """(a) via gradio_client, as the page does it: /load_file (views), then its chained /load_file_scores."""
    from gradio_client import Client

    first, final, server_steps = [], [], []
    warm = write_cloud(folder / "warmup.ply", 100_000, 999)
    warm_client = Client(server.url, verbose=False)
    warm_client.predict(*_upload_args(warm, views), api_name="/load_file")
    warm_client.predict(classes, "image of a {}", 5, api_name="/load_file_scores")
    for run in range(runs):
        path = write_cloud(folder / f"cloud100k_{run}.ply", 100_000, run)
        client = Client(server.url, verbose=False)  # a new browser session: nothing cached
        t0 = time.perf_counter()
        views_out = client.predict(*_upload_args(path, views), api_name="/load_file")
        t_first = time.perf_counter() - t0
        scores_out = client.predict(classes, "image of a {}", 5, api_name="/load_file_scores")
        t_final = time.perf_counter() - t0
        assert views_out[3].count("<img") == 2 * int(views) and "c2p-prediction" in scores_out[1], "views, then scores"
        first.append(t_first)
        final.append(t_final)
        server_steps.append(scores_out[6])
    return {"first": first, "final": final, "info": server_steps[-1]}


def bench_first_result_browser(server: AppServer, folder: Path, runs: int, views: str, chromium: str) -> dict | None:
    """(a) on screen: seconds from set_input_files until views / votes are in the DOM."""
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        print("  (playwright not installed: browser timing skipped)")
        return None
    if not Path(chromium).exists():
        print(f"  (no Chromium at {chromium}: browser timing skipped)")
        return None
    expect.set_options(timeout=120_000)
    shown, scored = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(server.url)
        expect(page.locator("#c2p-view-cards .c2p-vote").first).to_be_visible()
        if views != "6":
            page.get_by_label(f"{views} · pre-training").check()
            expect(page.locator("#c2p-view-cards .c2p-vote")).to_have_count(int(views))
        page.get_by_role("tab", name="Upload").click()
        for run in range(runs + 1):  # run 0 warms the browser's code paths up
            path = write_cloud(folder / f"browser100k_{run}.ply", 100_000, 100 + run)
            if run:
                page.locator("#upload button[aria-label='Clear']").first.click()
            time.sleep(1.0)  # an idle page, as when a user picks the next file
            t0 = time.perf_counter()
            page.set_input_files("#upload input[type=file]", str(path))
            page.wait_for_function(
                "name => { const i = document.querySelector('#c2p-shape-info');"
                " return i && i.textContent.includes(name) && document.querySelectorAll('#c2p-view-cards img').length > 0 }",
                arg=path.name, polling="raf")
            t_shown = time.perf_counter() - t0
            page.wait_for_function(
                "v => document.querySelectorAll('#c2p-view-cards .c2p-vote').length == v", arg=int(views), polling="raf")
            t_scored = time.perf_counter() - t0
            if run:
                shown.append(t_shown)
                scored.append(t_scored)
        browser.close()
    return {"shown": shown, "scored": scored}


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a process, its live children (e.g. the sandbox's forkserver) and
    their finished children (the sandboxed readers), from Linux /proc; 0.0 elsewhere."""
    tick, total = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100, 0.0
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children += task.read_text().split()
        except OSError:
            continue
    for p in [pid, *map(int, children)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(v) for v in fields[11:15]) / tick  # utime stime cutime cstime
        except (OSError, IndexError, ValueError):
            continue
    return total


def bench_concurrent(server: AppServer, path: Path, clients: int, requests: int, classes: str) -> dict:
    """(b) ``clients`` threads × ``requests`` /classify calls each; also the CPU seconds the server
    and these clients (this process) spent per request — they share the machine's cores."""
    from gradio_client import Client, handle_file

    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def worker() -> None:
        client = Client(server.url, verbose=False)
        barrier.wait()
        for _ in range(requests):
            t0 = time.perf_counter()
            try:
                probs = client.predict(handle_file(str(path)), classes, api_name="/classify")
                ok = abs(sum(probs.values()) - 1.0) < 1e-4 and len(probs) == len(classes.split(","))
                err = None if ok else f"bad result {probs!r:.80}"
            except Exception as e:  # noqa: BLE001 - counted as a failure
                err = f"{type(e).__name__}: {e}"
            with lock:
                (failures.append(err) if err else latencies.append(time.perf_counter() - t0))

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0, server0, client0 = time.perf_counter(), process_cpu_seconds(server.proc.pid), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    n = max(1, len(latencies))
    return {"latencies": latencies, "failures": failures, "wall": wall, "total": clients * requests,
            "server_cpu": (process_cpu_seconds(server.proc.pid) - server0) / n, "client_cpu": (time.process_time() - client0) / n}


def bench_a(server: AppServer, folder: Path, args: argparse.Namespace, classes: str) -> None:
    """Run and print (a)."""
    a = bench_first_result_client(server, folder, args.runs, args.views, classes)
    print(f"\n(a) 100k-point upload, {args.views} views, 40 classes, fresh session each run ({args.runs} runs)")
    print(f"    gradio_client  first result (3-D + depth/image views): median {statistics.median(a['first']):.2f} s "
          f"(min {min(a['first']):.2f}, max {max(a['first']):.2f})")
    print(f"    gradio_client  scores:                                 median {statistics.median(a['final']):.2f} s "
          f"(min {min(a['final']):.2f}, max {max(a['final']):.2f})")
    steps = re.sub(r"<[^>]+>", " ", a["info"]).split("·")
    print("    server steps of the last run:", " · ".join(s.strip() for s in steps if " ms" in s))
    if not args.no_browser:
        b = bench_first_result_browser(server, folder, args.runs, args.views, args.chromium)
        if b:
            print(f"    on screen (Chromium, same machine) views shown: median {statistics.median(b['shown']):.2f} s "
                  f"(min {min(b['shown']):.2f}, max {max(b['shown']):.2f})")
            print(f"    on screen (Chromium, same machine) votes shown: median {statistics.median(b['scored']):.2f} s "
                  f"(min {min(b['scored']):.2f}, max {max(b['scored']):.2f})")


def bench_b(server: AppServer, shape: Path, args: argparse.Namespace, classes: str) -> None:
    """Run and print (b)."""
    c = bench_concurrent(server, shape, args.clients, args.requests, classes)
    lat = c["latencies"]
    print(f"\n(b) {args.clients} concurrent clients × {args.requests} /classify requests ({shape.name}, 40 classes, 6 views)")
    if lat:
        print(f"    latency p50 {_percentile(lat, 0.5):.2f} s · p95 {_percentile(lat, 0.95):.2f} s · "
              f"max {max(lat):.2f} s · throughput {len(lat) / c['wall']:.2f} req/s")
        print(f"    CPU per request: server {c['server_cpu'] * 1000:.0f} ms · the {args.clients} gradio_client threads "
              f"{c['client_cpu'] * 1000:.0f} ms (same machine, same cores)")
    print(f"    failures {len(c['failures'])} / {c['total']}" + (f" (first: {c['failures'][0]})" if c["failures"] else ""))


def start_server(app_args: list[str], shape: Path, classes: str,
                 log_name: str = "bench_app_server.log") -> tuple[AppServer, float]:
    """An app server with the model loaded and one /classify served: (server, seconds to get there)."""
    from gradio_client import Client, handle_file

    server = AppServer(app_args, log_name)
    t0 = time.perf_counter()
    try:
        server.wait()
        Client(server.url, verbose=False).predict(handle_file(str(shape)), classes, api_name="/classify")
    except BaseException:
        server.stop()
        raise
    return server, time.perf_counter() - t0


def parse_settings(text: str) -> list[tuple[str, int]]:
    """"fp32:1,bf16:64" → [("fp32", 1), ("bf16", 64)] (precision, batch images)."""
    out = []
    for item in text.split(","):
        precision, _, n = item.strip().partition(":")
        if precision not in ("fp32", "bf16", "auto") or not n.isdigit() or int(n) < 1:
            raise SystemExit(f"--compare: {item!r} is not PRECISION:N (fp32|bf16|auto, N >= 1)")
        out.append((precision, int(n)))
    return out


def bench_compare(app_args: list[str], shape: Path, args: argparse.Namespace, classes: str) -> None:
    """(b) once per app setting, ``--rounds`` times (alternating order); a table with ratios to the first."""
    settings = parse_settings(args.compare)
    runs: dict[tuple[str, int], list[dict]] = {s: [] for s in settings}
    for r in range(args.rounds):
        for precision, n in (settings if r % 2 == 0 else settings[::-1]):
            server, up = start_server(app_args + ["--precision", precision, "--batch-images", str(n)], shape, classes,
                                      f"bench_app_server_{precision}_{n}_{r + 1}.log")
            try:
                c = bench_concurrent(server, shape, args.clients, args.requests, classes)
            finally:
                server.stop()
            lat = c["latencies"]
            c.update(p50=_percentile(lat, 0.5), p95=_percentile(lat, 0.95), rps=len(lat) / c["wall"],
                     load=os.getloadavg()[0])
            runs[precision, n].append(c)
            first = f" (first: {c['failures'][0][:200]})" if c["failures"] else ""
            print(f"  round {r + 1} {precision} batch {n}: up in {up:.0f} s · p50 {c['p50']:.2f} s · p95 "
                  f"{c['p95']:.2f} s · {c['rps']:.2f} req/s · failures {len(c['failures'])}/{c['total']}{first} · "
                  f"CPU/request server {c['server_cpu'] * 1000:.0f} ms, clients {c['client_cpu'] * 1000:.0f} ms · "
                  f"load {c['load']:.1f}", flush=True)
    print(f"\n(b) {args.clients} concurrent clients × {args.requests} /classify ({shape.name}, 40 classes, 6 views); "
          f"median over {args.rounds} round(s); ratios to {settings[0][0]} batch {settings[0][1]}")
    base = {k: statistics.median(c[k] for c in runs[settings[0]]) for k in ("p50", "p95", "rps")}
    print(f"    {'setting':<16}{'p50 s':>8}{'p95 s':>8}{'req/s':>8}{'fail':>6}   p50 ×   p95 ×  req/s ×")
    for s in settings:
        med = {k: statistics.median(c[k] for c in runs[s]) for k in ("p50", "p95", "rps")}
        fails = sum(len(c["failures"]) for c in runs[s])
        print(f"    {s[0] + ' batch ' + str(s[1]):<16}{med['p50']:>8.2f}{med['p95']:>8.2f}{med['rps']:>8.2f}{fails:>6}"
              f"   {med['p50'] / base['p50']:5.2f}   {med['p95'] / base['p95']:5.2f}   {med['rps'] / base['rps']:6.2f}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument("--weights", default=None, help="default: found automatically (random if none)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--views", default="10", choices=["6", "10"], help="views for (a) (default %(default)s)")
    p.add_argument("--runs", type=int, default=5, help="uploads timed in (a) (default %(default)s)")
    p.add_argument("--clients", type=int, default=10, help="concurrent clients in (b) (default %(default)s)")
    p.add_argument("--requests", type=int, default=5, help="requests per client in (b) (default %(default)s)")
    p.add_argument("--no-browser", action="store_true", help="skip the on-screen (Playwright) timing")
    p.add_argument("--only", choices=["a", "b"], help="run only part (a) or (b)")
    p.add_argument("--batch-images", type=int, default=None, help="passed to the app (default: the app's)")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], default=None,
                   help="passed to the app (default: the app's)")
    p.add_argument("--compare", metavar="PRECISION:N,...", default=None,
                   help="(b) only, once per app setting, back to back: e.g. fp32:1,fp32:64,bf16:1,bf16:64 "
                        "(--precision, --batch-images of each server)")
    p.add_argument("--rounds", type=int, default=1, help="with --compare: repeat the settings, alternating order")
    p.add_argument("--cache", action="store_true",
                   help="give the app a (new, temporary) view-feature cache; default --no-cache: every request "
                        "encodes (the load test sends one shape, which the cache would serve after the first request)")
    p.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = p.parse_args(argv)

    from clip2point.classes import MODELNET40

    classes = ", ".join(MODELNET40)
    print(f"clip2point app benchmark · {args.model} · device {args.device} · {os.cpu_count()} CPU cores · "
          f"load average before: {os.getloadavg()[0]:.2f} (other processes compete for the cores when it is > 0.5)")
    app_args = ["--model", args.model, "--device", args.device]
    cache_dir = Path(tempfile.mkdtemp(prefix="bench_app_cache_")) if args.cache else None
    app_args += ["--cache-dir", str(cache_dir)] if cache_dir else ["--no-cache"]
    if args.weights:
        app_args += ["--weights", args.weights]
    folder = Path(tempfile.mkdtemp(prefix="bench_app_"))
    try:
        shape = write_classify_shape(folder)
        if args.compare:
            bench_compare(app_args, shape, args, classes)
        else:
            if args.batch_images:
                app_args += ["--batch-images", str(args.batch_images)]
            if args.precision:
                app_args += ["--precision", args.precision]
            server, up = start_server(app_args, shape, classes)
            print(f"server up and model loaded in {up:.1f} s (python -m ui.app, then one /classify)")
            try:
                if args.only != "b":
                    bench_a(server, folder, args, classes)
                if args.only != "a":
                    bench_b(server, shape, args, classes)
            finally:
                server.stop()
        print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if cache_dir is not None:
            shutil.rmtree(cache_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
