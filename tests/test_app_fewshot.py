"""The app's Few-shot tab through gradio_client: start a tiny run, poll it to the end, read the
per-view gate weights and the adapter's classification of the current shape; stop a second run.

The server runs in-process with the tiny random ``tiny-ViT-test`` model and the real ModelNet10
data from ``../shared/data`` (skipped when absent).
"""
from __future__ import annotations

import base64
import json
import socket
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from ui.registry import ModelRegistry

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not (DATA / "modelnet10").is_dir(),
                                reason=f"ModelNet10 data not found at {DATA} (see ../shared/data/README.md)")
# dataset, shots, epochs, gate, views, test shapes, validation shapes per class
TINY_RUN = ("modelnet10", 1, 3, "view", "10", 10, 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from ui.app import build_app

    runs = tmp_path_factory.mktemp("runs")
    demo = build_app("tiny-ViT-test", "random", "cpu", data_dir=DATA, registry=ModelRegistry(), runs_dir=runs)
    demo.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True)
    demo.runs_dir = runs
    yield demo
    demo.close()


@pytest.fixture()
def client(app):
    from gradio_client import Client

    return Client(app.local_url, verbose=False)  # one client = one browser tab (its own run state)


def _plot_data(plot: dict) -> list[dict]:
    assert isinstance(plot, dict) and plot.get("type") == "plotly", plot
    return json.loads(plot["plot"])["data"]


def _values(v) -> list:
    """A plotly data array: a list, or plotly's typed-array form {"dtype", "bdata"} (numpy input)."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).tolist()
    return list(v)


def _poll_until_finished(client, timeout: float = 90.0) -> tuple:
    """Call the timer's endpoint until the run has ended (the timer is switched off then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = client.predict(api_name="/fewshot_poll")
        status, timer = out[0], out[6]
        if isinstance(timer, dict) and timer.get("active") is False and "running" not in status:
            return out
        time.sleep(0.5)
    raise AssertionError(f"the run did not end in {timeout} s: {out[0]}")


def test_every_fewshot_event_has_an_api_name(app):
    with urllib.request.urlopen(app.local_url + "config") as r:
        config = json.load(r)
    names = [d.get("api_name") for d in config["dependencies"]]
    assert all(names) and len(set(names)) == len(names), names
    assert {"fewshot_start", "fewshot_stop", "fewshot_poll", "fewshot_classify"} <= set(names)


def test_fewshot_run_to_the_end_then_gate_weights_and_adapter_classification(app, client):
    t0 = time.monotonic()
    # (the Start/Stop buttons' interactive updates are outputs of the page, not of the API)
    status, curves, head, gate, adapter, zero, timer = client.predict(*TINY_RUN, api_name="/fewshot_start")
    assert "c2p-msg error" not in status, status
    assert timer.get("active") is True  # the page polls from now on
    status, curves, head, gate, adapter, zero, timer = _poll_until_finished(client)
    assert "completed · 3 epochs" in status and "val acc" in status, status
    assert "epoch 3/3" not in status and "completed · completed" not in status  # one progress text
    assert [t["name"] for t in _plot_data(curves)][:2] == ["train loss", "train acc"]
    assert len(_values(_plot_data(curves)[0]["x"])) == 3  # one point per epoch
    layout = json.loads(curves["plot"])["layout"]
    assert layout["xaxis"]["dtick"] == 1 and layout["xaxis"]["tickformat"] == "d"  # whole epochs
    # per-view gate: the test-set mean and the current shape, one bar per view (10 views), from 0.5, labelled
    bars = _plot_data(gate)
    assert [b["name"] for b in bars] == ["test set (mean)", "this shape"]
    for b in bars:
        alphas = _values(b["customdata"])
        assert len(b["x"]) == 10 and len(alphas) == 10 and all(0.0 < a < 1.0 for a in alphas), alphas
        assert b["base"] == 0.5 and b["text"] == [f"{a:.3f}" for a in alphas]
        assert all("elev" in x and "azim" in x for x in b["x"])
    gate_layout = json.loads(gate["plot"])["layout"]
    assert len(gate_layout["images"]) == 10  # the shape's depth-view thumbnails
    assert abs(sum(gate_layout["yaxis"]["range"]) / 2 - 0.5) < 1e-9  # centred at 0.5
    assert "path A" in head and "path B (CLIP)" in head and "test set (mean)" in head
    # the current shape (the default example here: no page load happened) by the adapter and zero-shot
    for fig in (adapter, zero):
        (probs,) = _plot_data(fig)
        p = _values(probs["x"])
        assert len(p) == 5 and len(probs["y"]) == 5 and all(0.0 <= v <= 1.0 for v in p) and sum(p) <= 1.0 + 1e-6
    run_dirs = [p for p in app.runs_dir.iterdir() if p.is_dir()]
    assert len(run_dirs) == 1 and (run_dirs[0] / "adapter.safetensors").is_file()
    # the explicit classify endpoint gives the same kind of answer
    status, head2, gate2, adapter2, zero2 = client.predict(api_name="/fewshot_classify")
    assert "adapter →" in status and _plot_data(adapter2)[0]["y"] == _plot_data(adapter)[0]["y"]
    print(f"few-shot run through the app: {time.monotonic() - t0:.1f} s")


def test_a_saved_run_is_listed_and_reopened_from_a_new_session(app, client):
    """Runs survive a reload: a new client (a new page) lists the run on disk and classifies with it."""
    if not any(app.runs_dir.iterdir()):
        client.predict(*TINY_RUN, api_name="/fewshot_start")
        _poll_until_finished(client)
    from gradio_client import Client

    fresh = Client(app.local_url, verbose=False)
    pick, table = fresh.predict(api_name="/fewshot_runs")
    assert "modelnet10" in table and "1-shot" not in table and "%" in table and "<td>3/3</td>" in table
    run = next(p for p in app.runs_dir.iterdir() if (p / "metrics.json").is_file())
    status, curves, head, gate, adapter, zero = fresh.predict(str(run), api_name="/fewshot_open_run")
    assert f"opened run {run.name}" in status and "adapter →" in status, status
    assert len(_values(_plot_data(curves)[0]["x"])) == 3 and [b["name"] for b in _plot_data(gate)][0] == "test set (mean)"
    status, *_ = fresh.predict(api_name="/fewshot_classify")
    assert "adapter →" in status
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="not allowed here"):  # only the listed run folders open
        fresh.predict("/etc", api_name="/fewshot_open_run")


def test_fewshot_stop_right_after_start_ends_cancelled(client):
    out = client.predict("modelnet10", 1, 50, "none", "10", 10, 1, api_name="/fewshot_start")
    assert "c2p-msg error" not in out[0], out[0]
    client.predict(api_name="/fewshot_stop")
    status, *_rest, timer = _poll_until_finished(client, timeout=60)
    assert "cancelled after" in status and "completed" not in status, status


def test_no_data_disables_start_and_says_where_to_get_it(tmp_path):
    from ui.app import build_app

    demo = build_app("tiny-ViT-test", "random", "cpu", data_dir=tmp_path, registry=ModelRegistry(), runs_dir=tmp_path)
    config = demo.get_config_file()
    start = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "fs-start")
    assert start["props"]["interactive"] is False
    note = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "fs-nodata")
    assert "clip2point data download modelnet10 -o DIR" in note["props"]["value"] and "--data-dir" in note["props"]["value"]
