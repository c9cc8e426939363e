"""Headless tests of the zero-shot Jupyter widgets (ui/widgets/zeroshot.py) with the tiny random CLIP:
prompt-ensemble presets, clear template errors that clear the old result together, per-view logit export."""
from __future__ import annotations

import csv
import io
import json

import pytest

pytest.importorskip("ipywidgets")

from clip2point.prompts import TEMPLATE_PRESETS  # noqa: E402
from clip2point.viewcache import ViewFeatureCache  # noqa: E402
from ui.registry import REGISTRY, ModelSpec  # noqa: E402
from ui.widgets import ShapeExplorer, ZeroShotPanel  # noqa: E402

SPEC = ModelSpec("tiny-ViT-test", "random", "cpu")


@pytest.fixture(scope="module", autouse=True)
def own_view_cache(tmp_path_factory):
    """The widgets' shared registry gets an empty persistent view-feature cache of its own (not ~/.cache)."""
    old = REGISTRY.view_cache
    REGISTRY.view_cache = ViewFeatureCache(tmp_path_factory.mktemp("views"))
    yield
    REGISTRY.view_cache = old


@pytest.fixture()
def panel():
    explorer = ShapeExplorer(SPEC, example="mug")
    return ZeroShotPanel(explorer, classes="cup, bowl, lamp")


def test_template_presets_are_prompt_ensembles_and_edits_show_custom(panel):
    assert panel.template_preset.value == "clip2point" and panel.session.templates == ("image of a {}",)
    encodes = panel.session.counters["encode"]
    panel.template_preset.value = "clip"  # CLIP's 7-template ensemble, averaged per class
    assert panel.error is None and panel.session.templates == TEMPLATE_PRESETS["clip"]
    assert panel.template.value.splitlines() == list(TEMPLATE_PRESETS["clip"])
    assert "7 templates (preset clip)" in panel.prediction.value
    panel.template.value = "a depth map of a {}\na 3D model of a {}"  # typed by hand: an ensemble of two
    assert panel.template_preset.value == panel.CUSTOM and panel.session.templates == ("a depth map of a {}",
                                                                                        "a 3D model of a {}")
    assert panel.session.counters["encode"] == encodes, "new prompts re-score from the cached view features"
    panel.template.value = "point cloud depth map of a {}."  # exactly a preset again
    assert panel.template_preset.value == "pointclip"


@pytest.mark.parametrize("bad, says", [("a {} and a {}", "2 replacement fields"), ("{}{1}", "2 replacement fields"),
                                       ("{{}}", "only literal braces"), ("a photo", "no {} placeholder")])
def test_a_bad_template_is_one_clear_message_and_clears_the_old_result(panel, bad, says):
    assert panel.result is not None and "c2p-vote" in panel.explorer.cards.value
    panel.template.value = bad
    assert panel.error is not None and says in panel.error and "internal" not in panel.error
    assert "c2p-msg error" in panel.message.value
    assert panel.result is None and panel.session.result is None  # bars, heat-map and votes go together
    assert panel.prob_figure is None and panel.heatmap_figure is None
    assert panel.bars.outputs == () and panel.heatmap.outputs == ()
    assert "c2p-pred-class" not in panel.prediction.value and "c2p-vote" not in panel.explorer.cards.value
    panel.template.value = "image of a {}"
    assert panel.error is None and panel.result is not None and "c2p-vote" in panel.explorer.cards.value


def test_empty_classes_clear_the_result_too(panel):
    panel.classes.value = " , "
    assert panel.error and panel.result is None and panel.bars.outputs == ()
    assert "c2p-vote" not in panel.explorer.cards.value


def test_per_view_logits_export_as_csv_and_json(panel, tmp_path):
    panel.explorer.views.value = "10"  # the explorer re-renders; the panel re-scores
    res = panel.result
    assert res is not None and res.view_logits.shape == (1, 10, 3)
    rows = list(csv.reader(io.StringIO(panel.logits_csv(tmp_path / "logits.csv"))))
    assert rows[0] == ["view", "camera", "vote", "p_vote", "cup", "bowl", "lamp"]
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(1, 11)] + ["mean", "probability"]
    assert float(rows[1][4]) == pytest.approx(float(res.view_logits[0, 0, 0]), abs=1e-5)
    assert (tmp_path / "logits.csv").read_text() == panel.logits_csv()
    doc = json.loads(panel.logits_json(tmp_path / "logits.json"))
    assert doc["classes"] == ["cup", "bowl", "lamp"] and len(doc["view_logits"]) == 10
    assert doc["templates"] == ["image of a {}"] and doc["prediction"] == res.predictions()[0]
    assert json.loads((tmp_path / "logits.json").read_text()) == doc
    assert "c2p-exports" in panel.prediction.value and ".csv\"" in panel.prediction.value
    assert panel.prediction.value.count("data:text/csv") == 1 and "data:application/json" in panel.prediction.value
