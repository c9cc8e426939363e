"""The app under abuse: every endpoint's arguments are checked on the server, uploads are read
within a time and memory limit, few-shot runs are capped and stop with their session, run
folders age out, and nothing expensive is repeated per request (file hashes, network probes,
dataset shapes).

The server runs in-process with the tiny random ``tiny-ViT-test`` model and is driven through
``gradio_client`` as a script (or an attacker) would: values the page's controls never send.
Few-shot tests use the real ModelNet10 data in ``../shared/data`` (skipped when absent).
"""
from __future__ import annotations

import logging
import os
import re
import socket
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from clip2point.errors import Clip2PointError, ResourceLimitError
from clip2point.fewshot import FewShotConfig
from clip2point.checkpoints import save_state_dict_atomic
from fuzz_files import zip_bomb_npz
from helpers import DATA, needs_data
from ui import loading as loading_module
from ui import registry as registry_module
from ui import runs as runs_module
from ui import session as session_module
from ui import shapes as shapes_module
from ui.runs import FewShotRunner, RunLimitError, RunPool, clean_old_runs
from ui.limits import AppLimits, RequestLimitError
from ui.registry import ModelRegistry, ModelSpec
from ui.session import Session
from ui.shapes import ShapeSource, example_path

TINY = ModelSpec("tiny-ViT-test", "random", "cpu")
#: The module's server: a 256 MiB read limit (the zip bomb below needs more than 360 MiB), 30 s to read.
LIMITS = AppLimits(load_timeout_s=30.0, load_memory_mb=256)
GOOD_CLASSES = "chair, table, lamp"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_ply(path: Path, points: np.ndarray) -> Path:
    pts = np.ascontiguousarray(points, dtype="<f4")
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(pts)}\n"
              "property float x\nproperty float y\nproperty float z\nend_header\n")
    path.write_bytes(header.encode() + pts.tobytes())
    return path


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry()


@pytest.fixture(scope="module")
def app(registry, tmp_path_factory):
    from clip2point.sandbox import call_limited
    from ui.app import build_app
    from ui.loading import read_file_shape

    # start the sandbox's forkserver now, so no test's time limit pays for it
    call_limited(read_file_shape, str(example_path("guitar", "points")), 0, 64, "y", timeout_s=120)
    runs = tmp_path_factory.mktemp("runs")
    demo = build_app("tiny-ViT-test", "random", "cpu", data_dir=DATA if DATA.is_dir() else None, registry=registry,
                     runs_dir=runs, limits=LIMITS)
    demo.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True)
    yield demo
    demo.run_pool.stop_all(wait_s=30)
    demo.close()


@pytest.fixture()
def client(app):
    from gradio_client import Client

    return Client(app.local_url, verbose=False)  # one client = one session (a browser tab)


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html).replace("&#x27;", "'").replace("&quot;", '"').replace("&amp;", "&").strip()


def refusal(client, *args, api_name: str) -> str:
    """The one-line message with which the server refuses a request (an API error or the status box)."""
    try:
        out = client.predict(*args, api_name=api_name)
    except Exception as err:  # noqa: BLE001 - gradio_client's AppError carries the server's message
        msg = str(err)
    else:
        status = out[0] if isinstance(out, (tuple, list)) else out
        assert isinstance(status, str) and "c2p-msg error" in status, f"{api_name} accepted {args!r}: {str(out)[:300]}"
        msg = _text(status).lstrip("⚠ ")
    assert msg and "\n" not in msg.strip(), msg
    assert "Traceback" not in msg and "internal error" not in msg, msg
    return msg


def still_serving(client) -> None:
    """A normal request right after a refusal is answered normally."""
    from gradio_client import handle_file

    probs = client.predict(handle_file(str(example_path("mug", "points"))), "mug, chair", api_name="/classify")
    assert set(probs) == {"mug", "chair"} and abs(sum(probs.values()) - 1) < 1e-5


# ---------------------------------------------------------------------------------------------
# arguments beyond the limits, endpoint by endpoint


def test_limits_are_one_frozen_dataclass_used_by_the_controls(app):
    import dataclasses

    assert dataclasses.is_dataclass(AppLimits) and AppLimits.__dataclass_params__.frozen
    d = AppLimits()
    assert (d.max_points, d.max_classes, d.max_class_chars, d.max_template_chars) == (8192, 1000, 100, 200)
    assert (d.max_runs, d.max_runs_per_session) == (2, 1)
    config = app.get_config_file()
    by_label = {c["props"].get("label"): c["props"] for c in config["components"] if "props" in c}
    assert by_label["Points (farthest point sampling)"]["maximum"] == LIMITS.max_points
    assert by_label["Classes shown in the chart (top-k)"]["maximum"] == LIMITS.max_top_k
    assert by_label["number of points"]["maximum"] == LIMITS.max_points
    assert by_label["Prompt template ({} = the class name; one per line)"]["max_length"] == LIMITS.max_templates_chars
    assert LIMITS.max_templates_chars == LIMITS.max_templates * (LIMITS.max_template_chars + 1)
    with pytest.raises(Clip2PointError, match="max_runs"):
        AppLimits(max_runs=0)


def test_classify_endpoint_refuses_every_out_of_range_argument(client, tmp_path, capfd):
    from gradio_client import handle_file

    ply = handle_file(str(write_ply(tmp_path / "blob.ply", np.random.default_rng(0).normal(size=(500, 3)))))
    many = ", ".join(f"class{i}" for i in range(10_000))
    cases = [
        ((ply, GOOD_CLASSES, "image of a {}", "y", "6", 2_000_000), "8192"),   # +5.7 GB before
        ((ply, GOOD_CLASSES, "image of a {}", "y", "6", 3), "16"),
        ((ply, GOOD_CLASSES, "image of a {}", "y", "6", "nan"), "number of points"),  # (JSON has no NaN)
        ((ply, GOOD_CLASSES, "image of a {}", "y", "6", 10**30), "8192"),
        ((ply, GOOD_CLASSES, "image of a {}", "y", "6", "lots"), "number of points"),
        ((ply, many, "image of a {}", "y", "6", 1024), "1,000"),                # 113 s before
        ((ply, "chair, " + "x" * 5000, "image of a {}", "y", "6", 1024), "100 per name"),
        ((ply, GOOD_CLASSES, "a photo of a {} " + "very " * 2000, "y", "6", 1024), "at most 200"),
        ((ply, GOOD_CLASSES, "image of a {}", "y", "12", 1024), "view set"),
        ((ply, GOOD_CLASSES, "image of a {}", "x", "6", 1024), "up axis"),
    ]
    t0 = time.monotonic()
    for args, expected in cases:
        msg = refusal(client, *args, api_name="/classify")
        assert expected in msg, (args[1:], msg)
    assert time.monotonic() - t0 < 30, "refusals must be cheap: nothing is read, rendered or encoded"
    still_serving(client)
    err = capfd.readouterr().err
    assert "Traceback" not in err, err[-2000:]


def test_page_endpoints_refuse_out_of_range_arguments(client, tmp_path, capfd):
    from gradio_client import handle_file

    ply = handle_file(str(write_ply(tmp_path / "blob.ply", np.random.default_rng(1).normal(size=(400, 3)))))
    render_ok = ("y", 1024, "6", 0.02, "height")
    cases = [
        # step 1: shape → views (a file, an example, the render settings)
        ((ply, 10**9, *render_ok), "/load_file", "Shape index"),
        ((ply, -1, *render_ok), "/load_file", "Shape index"),
        ((ply, 0, "y", 100_000, "6", 0.02, "height"), "/load_file", "8192"),
        ((ply, 0, "y", 1024, "6", 5.0, "height"), "/load_file", "0.06"),
        ((ply, 0, "y", 1024, "7", 0.02, "height"), "/load_file", "6, 10"),
        (("../../../../etc/passwd", *render_ok), "/load_example", "Example object"),
        (("chair", "y", 2_000_000, "6", 0.02, "height"), "/load_example", "8192"),
        (("y", 2_000_000, "6", 0.02, "height"), "/set_num_points", "8192"),
        (("y", 1024, "6", 0.9, "height"), "/set_radius", "0.06"),
        (("y", 1024, "6", "0.02; rm -rf /", "height"), "/set_radius", "radius"),
        (("y", 1024, "100", 0.02, "height"), "/set_view_set", "6, 10"),
        (("q", 1024, "6", 0.02, "height"), "/set_up_axis", "y, z"),
        (("rainbow",), "/set_point_colours", "height"),
        (("../secret",), "/pick_class_preset", "modelnet40"),
        (("evil", GOOD_CLASSES, "image of a {}", 5), "/set_encoder", "clip, depth"),
        (("y", 10**6, "6", 0.02, "height"), "/startup", "8192"),
        (("chair", "y", 1024, "6", 0.0, "height"), "/load_picked_example", "0.005"),
    ]
    for args, api_name, expected in cases:
        msg = refusal(client, *args, api_name=api_name)
        assert expected in msg, (api_name, args, msg)
    # step 2: scores; a shape must be loaded for the scoring handlers to reach their checks
    client.predict("chair", *render_ok, api_name="/load_example")
    many = ", ".join(f"class{i}" for i in range(10_000))
    for api_name in ("/score", "/set_classes", "/set_template", "/set_top_k", "/score_preset"):
        assert "1,000" in refusal(client, many, "image of a {}", 5, api_name=api_name)
        assert "at most 200" in refusal(client, GOOD_CLASSES, "{}" + "!" * 300, 5, api_name=api_name)
        assert "100 per name" in refusal(client, "a, " + "b" * 101, "image of a {}", 5, api_name=api_name)
        assert "top-k" in refusal(client, GOOD_CLASSES, "image of a {}", 1000, api_name=api_name)
    out = client.predict(GOOD_CLASSES, "image of a {}", 3, api_name="/score")
    assert out[0] == "" and "c2p-prediction" in out[1]  # the session still scores
    still_serving(client)
    assert "Traceback" not in capfd.readouterr().err


@needs_data
def test_dataset_and_fewshot_endpoints_refuse_out_of_range_arguments(client, app):
    first = ("modelnet10", "test", "all")
    render = (1024, "6", 0.02, "height")
    cases = [
        ((*first, 10**6, *render), "/load_dataset_shape", "Shape"),
        ((*first, -3, *render), "/load_dataset_index", "Shape"),
        (("modelnet10", "../../etc", "all", 0, *render), "/load_dataset_shape", "Split"),
        (("modelnet10", "test", "no-such-class", 0, *render), "/load_dataset_shape", "Class"),
        (("modelnet10", "test", "all", 0, 9000, "6", 0.02, "height"), "/load_dataset_shape", "8192"),
        (("modelnet99", "test"), "/pick_dataset", "Dataset"),
        (("modelnet10", "validation"), "/pick_split", "Split"),
        (("modelnet10", "test", "'; DROP TABLE"), "/pick_dataset_class", "Class"),
        (("modelnet10", "test", "all", 0, 1024, "6", 0.02, "rainbow"), "/load_random_shape", "colour"),
        (("modelnet10", "test", "all", 0, 1024, "60", 0.02, "height"), "/load_dataset_index", "View set"),
        (("modelnet10", 3, 5, "view", "10", 10, 1), "/fewshot_start", "Shots"),
        (("modelnet10", 1, 10**6, "view", "10", 10, 1), "/fewshot_start", "Epochs"),
        (("modelnet10", 1, 3, "view", "10", 10**9, 1), "/fewshot_start", "Test shapes"),
        (("modelnet10", 1, 3, "view", "10", 10, 1000), "/fewshot_start", "Validation"),
        (("modelnet10", 1, 3, "sideways", "10", 10, 1), "/fewshot_start", "Gate"),
        (("../x", 1, 3, "view", "10", 10, 1), "/fewshot_start", "Dataset"),
    ]
    for args, api_name, expected in cases:
        msg = refusal(client, *args, api_name=api_name)
        assert expected in msg, (api_name, args, msg)
    assert not app.run_pool.active(), "a refused start must not start anything"
    still_serving(client)


def test_session_and_library_paths_check_the_same_limits(registry):
    """The handlers' second line of defence: a Session with limits refuses on its own."""
    s = Session(TINY, registry, AppLimits(max_points=2048, max_classes=3))
    with pytest.raises(RequestLimitError, match="16 to 2,048"):
        s.load(ShapeSource.example("chair"), 4096)
    s.load(ShapeSource.example("chair"), 512)
    with pytest.raises(RequestLimitError, match="view set"):
        s.render("5")
    with pytest.raises(RequestLimitError, match="radius"):
        s.render("6", 0.5)
    s.render("6")
    with pytest.raises(RequestLimitError, match="at most 3"):
        s.classify("a, b, c, d")
    assert s.classify("a, b, c").probs.shape == (1, 3)
    with pytest.raises(RequestLimitError, match="whole number"):
        AppLimits().check_num_points(1024.5)
    for bad in (float("nan"), float("inf"), None, True, "1e9"):
        with pytest.raises(RequestLimitError):
            AppLimits().check_num_points(bad)
    with pytest.raises(RequestLimitError, match="finite"):
        AppLimits().check_radius(float("nan"))


def test_controls_refuse_nan_in_one_line():
    """A raw HTTP client can send NaN (Python's JSON reader takes it); gradio's own range check lets it through."""
    import gradio as gr

    from ui.tabs.common import Number, Slider

    for comp in (Number(5, precision=0, minimum=16, maximum=8192, label="number of points"),
                 Slider(0.005, 0.06, value=0.02, label="Splat radius")):
        with pytest.raises(gr.Error) as exc:
            comp.preprocess(float("nan"))
        assert exc.value.print_exception is False and "\n" not in exc.value.message
        assert exc.value.message.startswith(comp.label) and "use " in exc.value.message
    with pytest.raises(Clip2PointError, match="unknown example"):
        ShapeSource.example("../../../etc/hostname")


# ---------------------------------------------------------------------------------------------
# uploads: time and memory limits


def test_zip_bomb_upload_hits_the_memory_limit_and_the_server_carries_on(client, tmp_path):
    from gradio_client import handle_file

    bomb = zip_bomb_npz(tmp_path / "bomb.npz", 15_000_000)  # 360 MB once decompressed, under max_points
    assert bomb.stat().st_size < 360e6 / 100
    rss0 = _rss_mb()
    msg = refusal(client, handle_file(str(bomb)), 0, "y", 1024, "6", 0.02, "height", api_name="/load_file")
    assert "bomb.npz" in msg and ("memory" in msg or "too large" in msg), msg
    msg = refusal(client, handle_file(str(bomb)), GOOD_CLASSES, api_name="/classify")
    assert "bomb.npz" in msg
    assert _rss_mb() - rss0 < 200, "the server process itself must not have read the array"
    still_serving(client)


def test_slow_upload_hits_the_time_limit(registry, tmp_path):
    bomb = zip_bomb_npz(tmp_path / "slow.npz", 3_000_000)  # ~2 s+ to read and thin; given 0.3 s
    s = Session(TINY, registry, AppLimits(load_timeout_s=0.3))
    t0 = time.monotonic()
    with pytest.raises(ResourceLimitError, match=r"slow\.npz: reading it took longer than the 0\.3 s limit"):
        s.load(ShapeSource.file(bomb))
    assert time.monotonic() - t0 < 5
    s.load(ShapeSource.file(example_path("guitar", "points")))  # the next upload is read as usual
    assert s.shape.points.shape == (1024, 3)


# ---------------------------------------------------------------------------------------------
# few-shot runs: caps, stop with the session, errors logged, old folders cleaned


def _start_args(epochs: int = 200) -> tuple:
    return ("modelnet10", 1, epochs, "none", "10", 10, 1)


def _wait_idle(pool: RunPool, timeout: float = 60.0) -> float:
    t0 = time.monotonic()
    while pool.active():
        assert time.monotonic() - t0 < timeout, "runs did not stop"
        time.sleep(0.1)
    return time.monotonic() - t0


@needs_data
def test_run_caps_per_session_and_per_server(app):
    from gradio_client import Client

    pool = app.run_pool
    a, b, c = (Client(app.local_url, verbose=False) for _ in range(3))
    try:
        assert "c2p-msg error" not in a.predict(*_start_args(), api_name="/fewshot_start")[0]
        msg = refusal(a, *_start_args(), api_name="/fewshot_start")
        assert "already training in this tab" in msg
        assert "c2p-msg error" not in b.predict(*_start_args(), api_name="/fewshot_start")[0]
        msg = refusal(c, *_start_args(), api_name="/fewshot_start")
        assert "already training 2 few-shot runs" in msg and "--max-runs" in msg
        assert len(pool.active()) == 2
    finally:
        pool.stop_all()
    assert _wait_idle(pool) < 30
    assert "c2p-msg error" not in c.predict(*_start_args(3), api_name="/fewshot_start")[0]  # room again
    _wait_idle(pool, 90)


def test_run_pool_refuses_beyond_its_caps_without_starting_anything(monkeypatch, tmp_path):
    started = []

    def fake_run(config, backbone, progress=None, should_stop=None, cache=None):
        started.append(config.out_dir)
        while not should_stop.is_set():
            time.sleep(0.01)
        return types.SimpleNamespace(status="cancelled", run_dir=config.out_dir, history=[])

    monkeypatch.setattr(runs_module, "run_fewshot", fake_run)
    pool = RunPool(max_running=2, max_per_owner=1)
    cfg = [FewShotConfig(out_dir=str(tmp_path / f"r{i}")) for i in range(4)]
    r0 = pool.start("tab-a", cfg[0], None)
    with pytest.raises(RunLimitError, match="at most 1 per session"):
        pool.start("tab-a", cfg[1], None)
    pool.start("tab-b", cfg[2], None)
    with pytest.raises(RunLimitError, match="already training 2"):
        pool.start("tab-c", cfg[3], None)
    time.sleep(0.2)
    assert len(started) == 2 and r0.owner == "tab-a"
    assert pool.running_dirs() == {(tmp_path / "r0").resolve(), (tmp_path / "r2").resolve()}
    assert pool.stop_owner("tab-a") == 1
    assert r0.wait(5).status == "cancelled"
    pool.start("tab-c", cfg[3], None)  # tab-a's slot is free again
    pool.stop_all(wait_s=5)
    assert not pool.active()


@needs_data
def test_a_sessions_run_stops_when_its_state_is_deleted_or_its_tab_closes(app):
    from gradio_client import Client

    pool = app.run_pool
    # 1) gradio deletes the tab's state (idle past its time-to-live, or an hour after the tab closed)
    tab = Client(app.local_url, verbose=False)
    assert "c2p-msg error" not in tab.predict(*_start_args(), api_name="/fewshot_start")[0]
    assert len(pool.active()) == 1
    t0 = time.monotonic()
    app.state_holder.delete_state(tab.session_hash)  # what gradio's expiry loop calls (our delete_callback)
    _wait_idle(pool, 30)
    print(f"run stopped {time.monotonic() - t0:.2f} s after its state was deleted")
    # 2) the tab closes: gradio runs the app's unload handler for that session at once
    tab2 = Client(app.local_url, verbose=False)
    assert "c2p-msg error" not in tab2.predict(*_start_args(), api_name="/fewshot_start")[0]
    (unload,) = [fn for fn in app.fns.values() if any(t[1] == "unload" for t in fn.targets)]
    unload.fn(types.SimpleNamespace(session_hash="someone-else"))
    assert len(pool.active()) == 1, "another session's unload must not stop this run"
    unload.fn(types.SimpleNamespace(session_hash=tab2.session_hash))
    _wait_idle(pool, 30)


@needs_data
def test_stop_takes_effect_within_one_batch(registry, tmp_path):
    backbone = registry.model(TINY).backbone
    cfg = FewShotConfig(dataset="modelnet10", data_dir=str(DATA), out_dir=str(tmp_path / "run"), shots=1, epochs=500,
                        gate="view", limit_test=10, val_per_class=0, batch_size=2, plots=False)
    runner = FewShotRunner(cfg, backbone)
    runner.start()
    deadline = time.monotonic() + 60
    while runner.state.stage != "epoch" and time.monotonic() < deadline:  # training, between batches
        time.sleep(0.02)
    t0 = time.monotonic()
    runner.stop()
    state = runner.wait(30)
    elapsed = time.monotonic() - t0
    assert state.status == "cancelled" and len(state.history) < 500, state
    assert elapsed < 5, f"stop took {elapsed:.2f} s"


def test_failed_runs_log_a_traceback_and_user_errors_one_line(monkeypatch, tmp_path, caplog):
    def broken(config, backbone, progress=None, should_stop=None, cache=None):
        raise RuntimeError("boom in the trainer")

    monkeypatch.setattr(runs_module, "run_fewshot", broken)
    caplog.set_level(logging.INFO, logger="ui.runs")
    runner = FewShotRunner(FewShotConfig(out_dir=str(tmp_path / "x")), None)
    runner.start()
    assert runner.wait(10).status == "failed"
    (err,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert err.exc_info is not None and "boom in the trainer" in str(err.exc_info[1])
    caplog.clear()

    def user_error(config, backbone, progress=None, should_stop=None, cache=None):
        raise Clip2PointError("shots must be one of 1, 2, 4, 8, 16")

    monkeypatch.setattr(runs_module, "run_fewshot", user_error)
    runner = FewShotRunner(FewShotConfig(out_dir=str(tmp_path / "y")), None)
    runner.start()
    state = runner.wait(10)
    assert state.status == "failed" and "shots must be" in state.error
    (rec,) = [r for r in caplog.records if "failed" in r.getMessage()]
    assert rec.levelno == logging.WARNING and rec.exc_info is None


def test_old_run_folders_are_cleaned_but_never_a_running_one(tmp_path, registry):
    from ui.app import build_app

    old = time.time() - 40 * 86400
    folders = {name: tmp_path / name for name in ("20200101-000000", "20200102-000000-2", "20200103-000000",
                                                   "my-notes", "20991231-235959")}
    for name, folder in folders.items():
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        if name != "20991231-235959":  # the last one is recent
            for p in (folder / "config.json", folder):
                os.utime(p, (old, old))
    running = folders["20200103-000000"]
    removed = clean_old_runs(tmp_path, 30, keep=[running])
    assert sorted(p.name for p in removed) == ["20200101-000000", "20200102-000000-2"]
    assert running.is_dir() and folders["my-notes"].is_dir() and folders["20991231-235959"].is_dir()
    assert clean_old_runs(tmp_path, None) == []
    # the app cleans at start-up
    build_app("tiny-ViT-test", "random", "cpu", data_dir=tmp_path / "none", registry=registry, runs_dir=tmp_path,
              limits=AppLimits(runs_max_age_days=30))
    assert not running.exists() and folders["my-notes"].is_dir() and folders["20991231-235959"].is_dir()


# ---------------------------------------------------------------------------------------------
# nothing expensive per request: file hashes, network probes, dataset shapes


def test_depth_encoder_file_is_hashed_once(registry, tmp_path, monkeypatch):
    calls: list[str] = []
    real = registry_module.file_digest
    monkeypatch.setattr(registry_module, "file_digest", lambda p: calls.append(str(p)) or real(p))
    visual = registry.model(TINY).backbone.model.visual
    g = torch.Generator().manual_seed(0)
    path = save_state_dict_atomic({k: v + 0.01 * torch.randn(v.shape, generator=g)
                                   for k, v in visual.state_dict().items()}, tmp_path / "enc.safetensors")
    s = Session(TINY, registry)
    s.load(ShapeSource.example("lamp"))
    s.load_depth_encoder(path)
    for classes in ("lamp, chair", "lamp, table", "bed, sofa, lamp"):
        s.classify(classes)
    s.render("10")
    s.classify("lamp, chair")
    other = Session(TINY, registry)  # another user, the same file: the server's cache
    other.load(ShapeSource.example("mug"))
    other.load_depth_encoder(path)
    other.classify("mug, cup")
    assert len(calls) == 1, calls
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # the file changed: hashed again
    Session(TINY, registry).load_depth_encoder(path)
    assert len(calls) == 2


def test_banner_never_probes_the_network(monkeypatch):
    import clip2point.backbone as backbone

    probes: list[int] = []
    monkeypatch.setattr(backbone, "_hub_reachable", lambda timeout=3.0: probes.append(1) or False)
    reg = ModelRegistry()
    s = Session(ModelSpec("ViT-B-32", None, "cpu"), reg)
    t0 = time.monotonic()
    statuses = [s.weights_status() for _ in range(20)]
    assert time.monotonic() - t0 < 5 and probes == []
    assert reg.loads["probe"] == 1
    st = statuses[-1]
    assert st.level == "pending" and not st.loaded and "download" in st.weights
    assert Session(TINY, reg).weights_status().is_random  # "random" asked for: no probe needed


def _write_off_dataset(root: Path, n: int) -> Path:
    """A ModelNet10 OFF layout with ``n`` small test meshes (tetrahedra) of class chair."""
    folder = root / "ModelNet10" / "chair" / "test"
    folder.mkdir(parents=True)
    for i in range(n):
        s = 1.0 + 0.1 * i
        (folder / f"chair_{i:04d}.off").write_text(
            f"OFF\n4 4 0\n0 0 0\n{s} 0 0\n0 {s} 0\n0 0 {s}\n3 0 1 2\n3 0 1 3\n3 0 2 3\n3 1 2 3\n")
    (root / "ModelNet10" / "chair" / "train").mkdir()
    return root / "ModelNet10"


def test_dataset_browser_reads_what_the_page_shows_and_forgets_old_shapes(tmp_path, monkeypatch):
    monkeypatch.setattr(registry_module, "DATASET_SHAPE_CACHE", 3)
    data = _write_off_dataset(tmp_path, 6)
    reg = ModelRegistry()
    ds = reg.dataset(data, "modelnet10", "test")
    assert ds.num_points == loading_module.IMAGE_VIEW_POINTS  # not 10⁶ samples per OFF shape
    for i in range(6):
        shape = shapes_module.load_shape(ShapeSource.from_dataset(data, "modelnet10", "test", i), 512, None, reg)
        assert len(shape.dense_points) <= loading_module.IMAGE_VIEW_POINTS and shape.points.shape == (512, 3)
    assert len(ds._cache) == 3  # bounded, most recent kept
    assert list(ds._cache) == [3, 4, 5]


def test_api_errors_user_ones_logged_in_one_line_unexpected_ones_with_a_traceback(client, monkeypatch, caplog):
    from gradio_client import handle_file

    caplog.set_level(logging.INFO, logger="ui")
    good = handle_file(str(example_path("mug", "points")))
    msg = refusal(client, good, "mug, " + "m" * 500, api_name="/classify")
    (rec,) = [r for r in caplog.records if "/classify refused" in r.getMessage()]
    assert rec.exc_info is None and "\n" not in rec.getMessage() and msg in rec.getMessage()
    caplog.clear()

    def broken(*_args, **_kwargs):
        raise RuntimeError("renderer exploded\nsecond line")

    monkeypatch.setattr(session_module, "render_views", broken)
    with pytest.raises(Exception) as exc:
        client.predict(good, "mug, cup", api_name="/classify")
    shown = str(exc.value)
    assert "internal error (RuntimeError: renderer exploded second line); see the server log" in shown
    (rec,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert rec.exc_info is not None and "renderer exploded" in str(rec.exc_info[1])
    monkeypatch.undo()
    still_serving(client)
