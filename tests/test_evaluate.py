"""Evaluation in one process: the shard split, per-view accuracy, resumable result files, refusal of other settings,
--json predictions, and the paper-style --table (real ModelNet10 shapes, tiny random-weight CLIP)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from clip2point.cli import main
from clip2point.datasets import open_dataset
from clip2point.evaluate import (
    PAPER_ZERO_SHOT, EvalResult, ResultsDir, ResultsDirError, eval_settings, evaluate_sharded, evaluate_zero_shot,
    format_table, shard_indices, table_row,
)
from clip2point.zeroshot import ZeroShotClassifier
from helpers import DATA, needs_data

TINY = ["--model", "tiny-ViT-test", "--weights", "random"]
MN10 = ["--dataset", "modelnet10", "--data-dir", str(DATA / "modelnet10")]


def _json_line(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def test_shard_indices_split_every_shape_once_and_evenly():
    for n, world in ((0, 3), (7, 1), (10, 3), (908, 8)):
        shards = [shard_indices(n, r, world) for r in range(world)]
        assert sorted(np.concatenate(shards).tolist()) == list(range(n))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert shard_indices(10, 1, 3).tolist() == [1, 4, 7]  # strided: rank, rank + W, ...


def test_eval_result_per_view_accuracy_and_records():
    res = EvalResult(["a", "b"], np.array([0, 1, 1]), np.array([0, 0, 1]), np.array([[0, 1], [1, 1], [0, 1]]),
                     ["front", "back"], np.array([0, 1, 2]))
    assert res.per_view_accuracy == [pytest.approx(2 / 3), pytest.approx(2 / 3)]
    assert res.prediction_records()[1] == {"index": 1, "label": "b", "predicted": "a"}
    d = res.as_dict()
    assert d["per_view_accuracy"][1] == {"view": "back", "accuracy": pytest.approx(2 / 3)}
    assert EvalResult(["a"], np.zeros(0, np.int64), np.zeros(0, np.int64)).as_dict()["num_shapes"] == 0


@pytest.fixture(scope="module")
def mn10_16():
    return open_dataset("modelnet10", DATA / "modelnet10", "test").subset(np.arange(0, 908, 57))  # 16 shapes, 10 classes


@needs_data
def test_world_of_one_equals_evaluate_zero_shot(tiny_backbone, mn10_16):
    clf = ZeroShotClassifier(tiny_backbone, mn10_16.class_names)
    ref = evaluate_zero_shot(clf, mn10_16, batch_size=5)
    res, report = evaluate_sharded(clf, mn10_16, batch_size=5)
    assert np.array_equal(res.predictions, ref.predictions) and np.array_equal(res.view_predictions, ref.view_predictions)
    assert res.indices.tolist() == list(range(16)) and (report.shard, report.evaluated) == (16, 16)
    assert len(res.per_view_accuracy) == 6 and res.view_labels == clf.views.labels()


class _Killed(Exception):
    pass


@needs_data
def test_interrupted_run_resumes_from_its_chunks(tmp_path, tiny_backbone, mn10_16):
    clf = ZeroShotClassifier(tiny_backbone, mn10_16.class_names)
    full, _ = evaluate_sharded(clf, mn10_16, batch_size=4)
    settings = eval_settings(clf, mn10_16, dataset_name="modelnet10", limit=0)
    seen = []

    def kill_after_two_batches(n):
        seen.append(n)
        if len(seen) == 2:
            raise _Killed

    with pytest.raises(_Killed):
        evaluate_sharded(clf, mn10_16, batch_size=4, results=ResultsDir(tmp_path, settings), progress=kill_after_two_batches)
    assert len(list((tmp_path / "shards").glob("*.json"))) == 2  # each batch's chunk was written as it finished
    (tmp_path / "shards" / ".r00000-of-00001-000002.json.1.ab.tmp").write_text('{"format": "clip2')  # a write cut short
    res, report = evaluate_sharded(clf, mn10_16, batch_size=4, results=ResultsDir(tmp_path, settings))
    assert (report.resumed, report.evaluated) == (8, 8)
    assert np.array_equal(res.predictions, full.predictions) and np.array_equal(res.view_predictions, full.view_predictions)
    again, report = evaluate_sharded(clf, mn10_16, batch_size=4, results=ResultsDir(tmp_path, settings))
    assert (report.resumed, report.evaluated) == (16, 0) and np.array_equal(again.predictions, full.predictions)


@needs_data
def test_results_of_other_settings_are_refused(tmp_path, tiny_backbone, mn10_16):
    clf = ZeroShotClassifier(tiny_backbone, mn10_16.class_names)
    settings = eval_settings(clf, mn10_16, dataset_name="modelnet10", limit=0)
    evaluate_sharded(clf, mn10_16, batch_size=8, results=ResultsDir(tmp_path / "a", settings))
    other = ZeroShotClassifier(tiny_backbone, mn10_16.class_names, template="a depth map of a {}.", views="10")
    with pytest.raises(ResultsDirError, match="other settings.*templates.*views"):
        ResultsDir(tmp_path / "a", eval_settings(other, mn10_16, dataset_name="modelnet10", limit=0))
    with pytest.raises(ResultsDirError, match="limit"):
        ResultsDir(tmp_path / "a", eval_settings(clf, mn10_16, dataset_name="modelnet10", limit=16))
    # a chunk of another run copied into this folder: refused, never mixed
    evaluate_sharded(other, mn10_16, batch_size=8, results=ResultsDir(tmp_path / "b", eval_settings(
        other, mn10_16, dataset_name="modelnet10", limit=0)))
    shutil.copy(next((tmp_path / "b" / "shards").glob("*.json")), tmp_path / "a" / "shards" / "r00003-of-00004-000000.json")
    with pytest.raises(ResultsDirError, match="r00003-of-00004-000000.json: written with other settings"):
        evaluate_sharded(clf, mn10_16, results=ResultsDir(tmp_path / "a", settings))
    # a chunk whose labels do not fit the dataset (edited, or another data folder)
    (tmp_path / "a" / "shards" / "r00003-of-00004-000000.json").unlink()
    chunk = next((tmp_path / "a" / "shards").glob("*.json"))
    obj = json.loads(chunk.read_text())
    obj["labels"][0] = (obj["labels"][0] + 1) % 10
    chunk.write_text(json.dumps(obj))
    with pytest.raises(ResultsDirError, match="damaged evaluation chunk"):
        evaluate_sharded(clf, mn10_16, results=ResultsDir(tmp_path / "a", settings))


@needs_data
def test_cli_json_predictions_results_dir_and_refusal(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["-q", "eval", *MN10, "--limit", "12", "--batch-size", "5", "--json", "--results-dir", str(run), "--plot", *TINY]
    assert main(args) == 0
    obj = _json_line(capsys)
    assert [p["index"] for p in obj["predictions"]] == list(range(12))
    assert {p["label"] for p in obj["predictions"]} == {"bathtub"}  # class names, the first 12 shapes
    assert obj["accuracy"] == sum(p["label"] == p["predicted"] for p in obj["predictions"]) / 12
    assert obj["per_class_accuracy"]["chair"] is None  # absent classes: null (strict JSON), not NaN
    assert len(obj["per_view_accuracy"]) == 6 and obj["random_weights"] is True and obj["templates"] == ["image of a {}"]
    saved = json.loads((run / "results.json").read_text())
    assert saved["predictions"] == obj["predictions"] and (run / "confusion.png").stat().st_size > 5000
    assert "## Per view" in (run / "results.md").read_text()
    assert main(args) == 0 and _json_line(capsys)["resumed_rank0"] == 12  # all 12 read back, none encoded
    assert main([*args[:-4], "--template", "a photo of a {}", *TINY]) == 2  # other templates: refused
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (after the random-weights warning)
    assert err.startswith("clip2point eval: error: --results-dir") and "other settings" in err and "templates" in err


def test_cli_usage_errors_are_one_line(tmp_path, capsys):
    for argv, words in ((["eval", *TINY], "--dataset NAME --data-dir DIR"),
                        (["eval", "--table", *MN10, *TINY], "drop --dataset, --data-dir"),
                        (["eval", *MN10, "--plot", *TINY], "bare --plot"),
                        (["eval", "--table", "--data-root", str(tmp_path / "none"), *TINY], "does not exist"),
                        (["eval", "--table", "--data-root", str(tmp_path), *TINY], "no dataset found")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], (argv, err)


def test_paper_numbers_and_table_labels():
    assert PAPER_ZERO_SHOT["modelnet10"].accuracy == 66.6 and PAPER_ZERO_SHOT["modelnet40"].accuracy == 49.38
    assert PAPER_ZERO_SHOT["objaverse-lvis"].accuracy is None
    rows = [table_row("modelnet10", "test", {"num_shapes": 10, "accuracy": 0.1, "mean_class_accuracy": 0.1,
                                             "classes": ["a", "b"], "confusion_matrix": [[1, 9], [0, 0]]}),
            table_row("scanobjectnn-obj-bg", "test", None, "no scanobjectnn data")]
    text = format_table(rows, "tiny, random", random_weights=True, limit=10)
    assert "| modelnet10 (test) | 10 | 1/2 | 10.00 | 10.00 | 66.60 |" in text and "RANDOM weights" in text
    assert "25.50 (OpenShape" in text and "--limit 10" in text


@needs_data
def test_cli_table_over_a_data_root(tmp_path, capsys):
    root = tmp_path / "data"
    root.mkdir()
    (root / "modelnet10").symlink_to(DATA / "modelnet10")
    assert main(["-q", "eval", "--table", "--data-root", str(root), "--limit", "6", "--json", *TINY]) == 0
    obj = _json_line(capsys)
    row = next(r for r in obj["table"] if r["dataset"] == "modelnet10")
    assert row["num_shapes"] == 6 and 0 <= row["accuracy"] <= 100 and row["paper"]["accuracy"] == 66.6
    assert obj["random_weights"] is True and obj["limit"] == 6
    assert main(["-q", "eval", "--table", "--data-root", str(root), "--limit", "6", *TINY]) == 0
    out = capsys.readouterr().out
    assert "ours, RANDOM weights" in out and "| modelnet10 (test) | 6 | 1/10 |" in out and "66.60" in out
