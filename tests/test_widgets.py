"""Headless tests of the Jupyter widgets (ui/widgets/) and the background runner (ui/runs.py),
with the tiny random CLIP: set widget values as a user would and check the outputs change."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("ipywidgets")

from clip2point.errors import Clip2PointError  # noqa: E402
from clip2point.fewshot import FewShotConfig  # noqa: E402
from clip2point.viewcache import ViewFeatureCache  # noqa: E402
from helpers import DATA  # noqa: E402
from ui.runs import FewShotRunner, RunState  # noqa: E402
from ui.registry import REGISTRY, ModelRegistry, ModelSpec  # noqa: E402
from ui.session import Session  # noqa: E402
from ui.widgets import (FewShotPanel, GateViewer, ShapeExplorer, ZeroShotPanel,  # noqa: E402
                        gate_weights_figure, training_curves_figure)

SPEC = ModelSpec("tiny-ViT-test", "random", "cpu")
MN10 = None if DATA is None else DATA / "modelnet10"
needs_mn10 = pytest.mark.skipif(MN10 is None or not MN10.is_dir(), reason="ModelNet10 data not found (../shared/data)")


def tiny_config(out: Path, **kw) -> FewShotConfig:
    base = dict(dataset="modelnet10", data_dir=str(MN10), out_dir=str(out), shots=1, epochs=3, val_per_class=1,
                limit_test=10, num_points=256, plots=False)
    return FewShotConfig(**{**base, **kw})


@pytest.fixture(scope="module", autouse=True)
def own_view_cache(tmp_path_factory):
    """The widgets' shared registry gets an empty persistent view-feature cache of its own (not ~/.cache)."""
    old = REGISTRY.view_cache
    REGISTRY.view_cache = ViewFeatureCache(tmp_path_factory.mktemp("views"))
    yield REGISTRY.view_cache
    REGISTRY.view_cache = old


@pytest.fixture(scope="module")
def explorer():
    return ShapeExplorer(SPEC, example="chair")


@pytest.fixture(scope="module")
def run_dir(tiny_backbone, tmp_path_factory):
    if MN10 is None or not MN10.is_dir():
        pytest.skip("ModelNet10 data not found")
    runner = FewShotRunner(tiny_config(tmp_path_factory.mktemp("fs") / "run"), tiny_backbone)
    runner.start()
    state = runner.wait(120)
    assert state.status == "completed", state.error
    return state


# ----------------------------------------------------------------------------------------------
# ShapeExplorer, ZeroShotPanel


def test_explorer_renders_views_and_follows_the_controls(explorer):
    assert explorer.error is None and explorer.num_view_cards == 6
    assert explorer.figure is not None and len(explorer.plot.outputs) == 1
    assert "application/vnd.plotly.v1+json" in explorer.plot.outputs[0]["data"]
    explorer.views.value = "10"
    assert explorer.num_view_cards == 10 and len(explorer.session.views) == 10
    assert explorer.cards.value.count("CLIP image view") == 10  # depth | image view side by side
    explorer.views.value = "6"
    old = explorer.session.shape
    explorer.source.value = "guitar"
    assert explorer.session.shape is not old and "guitar" in explorer.info.value


def test_explorer_reports_errors_and_loads_paths(explorer, tmp_path):
    explorer.load(path=str(tmp_path / "missing.ply"))
    assert explorer.error and "c2p-msg error" in explorer.message.value
    pts = np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32)
    np.save(tmp_path / "blob.npy", pts)
    explorer.load(path=str(tmp_path / "blob.npy"))
    assert explorer.error is None and explorer.session.shape.name == "blob.npy"
    explorer.load(example="chair")
    assert explorer.error is None


def test_zero_shot_panel_rescores_from_cached_features(explorer):
    panel = ZeroShotPanel(explorer, classes="chair, table, lamp")
    s = explorer.session
    assert panel.error is None and set(panel.probabilities) == {"chair", "table", "lamp"}
    assert sum(panel.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    encodes, renders = s.counters["encode"], s.counters["render"]
    before = dict(panel.probabilities)
    panel.template.value = "a depth map of a {}"
    assert panel.probabilities != before
    panel.classes.value = "chair, table, lamp, sofa"
    assert panel.preset.value == panel.CUSTOM
    assert panel.heatmap_figure.data[0].z.shape == (7, 4)  # mean row + 6 views, 4 classes
    assert len(panel.prob_figure.data[0].y) == 4
    assert (s.counters["encode"], s.counters["render"]) == (encodes, renders)  # no re-render, no re-encode
    panel.preset.value = "modelnet10"
    assert len(panel.result.classes) == 10
    assert "votes" in explorer.cards.value  # the view cards show each view's vote
    explorer.views.value = "10"  # the panel re-scores when the explorer's views change
    assert panel.heatmap_figure.data[0].z.shape == (11, 10)
    panel.template.value = "no placeholder"
    assert panel.error and "{}" in panel.error
    panel.template.value = "image of a {}"
    assert panel.error is None
    explorer.views.value = "6"


def test_zero_shot_panel_on_a_plain_session():
    session = Session(SPEC, ModelRegistry())
    with pytest.raises(ValueError):
        ZeroShotPanel()
    panel = ZeroShotPanel(session=session, classes="chair, lamp")
    assert not panel.score() and "no shape" in panel.error


def test_a_shape_seen_before_is_read_from_the_view_cache(own_view_cache):
    first = ZeroShotPanel(ShapeExplorer(SPEC, example="lamp"), classes="lamp, chair")
    assert first.session.counters["encode"] == 1 and first.session.view_cache is own_view_cache
    second = ZeroShotPanel(ShapeExplorer(SPEC, example="lamp"), classes="lamp, chair")  # a new session
    assert second.session.counters["encode"] == 0 and second.session.counters["cached"] == 1
    assert second.probabilities == first.probabilities
    third = ZeroShotPanel(ShapeExplorer(SPEC, example="lamp", cache=False), classes="lamp, chair")
    assert third.session.counters["encode"] == 1 and third.session.view_cache is None
    assert FewShotPanel(SPEC).cache is own_view_cache and FewShotPanel(SPEC, cache=False).cache is None


def test_widgets_take_a_precision():
    explorer = ShapeExplorer(SPEC, example="chair", precision="bf16")
    assert explorer.session.spec.precision == "bf16" and explorer.session.spec.model_name == SPEC.model_name
    assert "<b>Precision</b> bf16" in explorer.banner.value
    panel = ZeroShotPanel(explorer, classes="chair, lamp")
    assert panel.error is None and explorer.session.model().backbone.dtype == torch.bfloat16
    assert FewShotPanel(SPEC, precision="auto").spec.precision == "auto" and FewShotPanel(SPEC).spec == SPEC
    with pytest.raises(Clip2PointError, match="precision"):
        ShapeExplorer(SPEC, precision="int8")


# ----------------------------------------------------------------------------------------------
# runner, FewShotPanel, GateViewer


@needs_mn10
def test_runner_completes_with_history(run_dir):
    assert run_dir.error is None and run_dir.result is not None
    assert [h["epoch"] for h in run_dir.history] == [1, 2, 3]
    assert {"train_loss", "train_acc", "val_acc", "best_val_acc"} <= set(run_dir.history[0])
    assert run_dir.fraction == 1.0 and (run_dir.run_dir / "metrics.json").is_file()


@needs_mn10
def test_runner_stop_cancels(tiny_backbone, tmp_path):
    updates: list[RunState] = []

    def on_update(state: RunState) -> None:
        updates.append(state)
        if state.stage == "epoch" and state.done >= 1:
            runner.stop()

    runner = FewShotRunner(tiny_config(tmp_path / "run", epochs=50), tiny_backbone, on_update)
    runner.start()
    with pytest.raises(RuntimeError):
        runner.start()
    state = runner.wait(120)
    assert state.status == "cancelled" and 1 <= len(state.history) < 50
    assert updates[0].status == "running" and updates[-1].status == "cancelled"


def test_runner_bad_config_fails_with_the_message(tiny_backbone, tmp_path):
    runner = FewShotRunner(FewShotConfig(out_dir=str(tmp_path / "x"), data_dir=str(tmp_path), shots=3), tiny_backbone)
    runner.start()
    state = runner.wait(60)
    assert state.status == "failed" and "shots must be one of" in state.error
    assert state.describe().startswith("failed:")


@needs_mn10
def test_few_shot_panel_start_and_stop(tmp_path):
    panel = FewShotPanel(SPEC, data_dir=str(MN10), out_dir=str(tmp_path), shots=1, epochs=3, limit_test=10,
                         num_points=256, val_per_class=1)
    assert "clip+clip" in panel.paths_note.value and "nothing to choose between" in panel.paths_note.value
    assert "clip2point fewshot --dataset modelnet40" in panel.cost_html.value  # how to run the full protocol
    assert panel.start() is not None
    assert "images to encode" in panel.cost_html.value and panel.cost.images == (10 + 10 + 10) * 10
    state = panel.wait(120)
    assert state.status == "completed" and panel.progress.value == 1.0
    assert panel.status.value.startswith("completed · 3 epochs") and "completed · completed" not in panel.status.value
    assert len(panel.curves_figure.data) == 3 and list(panel.curves_figure.data[0].x) == [1, 2, 3]
    assert panel.gate_viewer is not None and panel.gate_viewer.num_view_cards == 10
    assert not panel.start_button.disabled and panel.stop_button.disabled


@needs_mn10
@pytest.mark.parametrize("when", ["encode", "epoch"])
def test_few_shot_panel_stop_takes_effect_within_one_batch(tmp_path, when):
    """Stop (the button's click handler) during encoding or training: the run ends within one encoder
    batch or training step, metrics.json says cancelled, the status ends "cancelled" (never stuck at
    "stopping…") and the display was refreshed a bounded number of times (no flood)."""
    panel = FewShotPanel(SPEC, data_dir=str(MN10), out_dir=str(tmp_path), shots=1, epochs=200, limit_test=10,
                         num_points=256, val_per_class=4, cache=False)
    shown: list[str] = []
    panel.status.observe(lambda c: shown.append(c["new"]), "value")
    panel.start()
    deadline = time.monotonic() + 120
    while panel.runner.state.stage != when or (when == "epoch" and panel.runner.state.done < 2):
        assert time.monotonic() < deadline and panel.runner.running, panel.runner.state
        time.sleep(0.02)
    t0 = time.monotonic()
    panel.stop_button.click()
    assert "stopping…" in panel.status.value  # shown at once
    state = panel.wait(60)
    latency = time.monotonic() - t0
    print(f"FewShotPanel stop latency during {when}: {latency:.2f} s (run's own: {state.stop_latency:.2f} s)")
    assert state.status == "cancelled" and panel.status.value.startswith("cancelled after")
    assert "stopping" not in panel.status.value
    metrics = json.loads((state.run_dir / "metrics.json").read_text())
    assert metrics["status"] == "cancelled" and metrics["epochs_completed"] < 200
    # one encoder batch (6 shapes × 10 views of the tiny model) or one training step, plus writing
    # metrics.json, on 2 shared cores: a few seconds at most
    assert latency < 6.0, latency
    assert len(shown) < 60  # throttled: not one refresh per progress report
    assert not panel.start_button.disabled and panel.stop_button.disabled


@needs_mn10
def test_gate_viewer_from_a_run_dir(run_dir, tmp_path):
    viewer = GateViewer(run_dir.run_dir)
    assert viewer.num_view_cards == 10 and viewer.gate.shape == (10,) and viewer.where == "test"
    assert np.all((viewer.gate > 0) & (viewer.gate < 1))
    # the run's own per-class test means (metrics.json class_gate_weights): no backbone needed
    assert len(viewer.class_gate) == 10 and viewer.class_figure.data[0].type == "heatmap"
    accuracy_only = GateViewer(run_dir.result, per_class=0)
    assert not accuracy_only.class_gate
    assert accuracy_only.class_figure.data[0].type == "bar"  # per-class test accuracy from metrics.json
    # a run written before class_gate_weights: without a backbone, accuracy only; with one, computed by the adapter
    old = tmp_path / "old-run"
    shutil.copytree(run_dir.run_dir, old)
    metrics = json.loads((old / "metrics.json").read_text())
    del metrics["class_gate_weights"]
    (old / "metrics.json").write_text(json.dumps(metrics))
    assert not GateViewer(old).class_gate and GateViewer(old).class_figure.data[0].type == "bar"
    with_classes = GateViewer(old, spec=SPEC, per_class=1)
    assert len(with_classes.class_gate) == 10 and with_classes.class_figure.data[0].type == "heatmap"
    with pytest.raises(Exception, match="metrics.json"):
        GateViewer(run_dir.run_dir / "nope")


def test_figures_helpers():
    hist = [{"epoch": 1, "train_loss": 2.0, "train_acc": 0.1, "val_acc": 0.2},
            {"epoch": 2, "train_loss": 1.5, "train_acc": 0.3, "val_acc": 0.25}]
    assert len(training_curves_figure(hist).data) == 3 and len(training_curves_figure([]).data) == 0
    assert list(training_curves_figure(hist).layout.xaxis.tickformat) == list("d")  # whole epochs
    assert training_curves_figure(hist).layout.xaxis.dtick == 1
    fig = gate_weights_figure([0.4, 0.6], ["a", "b"], [0.5, 0.5])
    bars = fig.data[0]
    assert bars.base == 0.5 and list(bars.customdata) == [0.4, 0.6] and list(bars.text) == ["0.400", "0.600"]
    lo, hi = fig.layout.yaxis.range
    assert abs((lo + hi) / 2 - 0.5) < 1e-9  # centred at an even split
    assert "path A (CLIP (no depth encoder))" in fig.layout.yaxis.title.text
    assert "CLIP2Point depth encoder" in gate_weights_figure([0.5], ["a"], paths="depth+clip").layout.yaxis.title.text


def test_class_gate_heatmap_keeps_tiny_differences_pale():
    """Differences of 3e-5 around 0.5 must not become strong colour: a fixed 0..1 scale centred at
    0.5, the values written in the cells."""
    from ui.gate_figures import class_gate_figure

    fig = class_gate_figure({"chair": np.array([0.50001, 0.50004]), "table": np.array([0.49999, 0.50002])})
    hm = fig.data[0]
    assert (hm.zmin, hm.zmax, hm.zmid) == (0.0, 1.0, 0.5) and hm.texttemplate
    assert "fixed scale" in fig.layout.title.text
