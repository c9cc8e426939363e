"""Few-shot GDPA runs on real ModelNet10 shapes with the tiny random CLIP: learning, splits, checkpoints,
resume, cancellation, encoder passes, inference and the CLI."""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from clip2point.cli import main
from clip2point.datasets import open_dataset
from clip2point.errors import CheckpointError, Clip2PointError, DatasetError
from clip2point.fewshot import (
    RUN_FILES, FewShotConfig, GateWeights, RunFolder, load_adapter, make_splits, released_recipe_passes, run_fewshot,
    select_few_shot, stratified_head,
)
from clip2point.checkpoints import load_state_dict_file
from helpers import DATA, needs_data

MN10 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "modelnet10"
TINY = ["--model", "tiny-ViT-test", "--weights", "random"]


def config(out: Path, **kw) -> FewShotConfig:
    """A small, fast run: 2 shots, 1 validation shape per class, 10 test shapes, 6 epochs, 256 points, no plots."""
    base = dict(dataset="modelnet10", data_dir=str(MN10), out_dir=str(out), shots=2, epochs=6,
                val_per_class=1, limit_test=10, num_points=256, plots=False)
    return FewShotConfig(**{**base, **kw})


def stop_after(epochs: int) -> tuple[threading.Event, Callable[[object], None]]:
    """An Event set by the progress callback once ``epochs`` epochs are done."""
    ev = threading.Event()

    def progress(p) -> None:
        if p.stage == "epoch" and p.done >= epochs:
            ev.set()

    return ev, progress


@pytest.fixture(scope="module")
def trained(tiny_backbone, tmp_path_factory):
    """One 8-shot, 10-epoch GDPA run on 100 class-balanced test shapes (shared by several tests)."""
    reports = []
    cfg = config(tmp_path_factory.mktemp("run") / "mn10-8shot", shots=8, epochs=10, val_per_class=4, limit_test=100,
                 num_points=512, plots=True)
    return run_fewshot(cfg, tiny_backbone, progress=reports.append), reports


# ----------------------------------------------------------------------------------------------
# splits (no model needed)


def test_shot_selection_is_exact_disjoint_seeded_and_nested():
    labels = np.repeat(np.arange(5), [30, 12, 25, 11, 40])
    shots, val = select_few_shot(labels, 5, shots=4, val_per_class=3, seed=7)
    assert np.bincount(labels[shots], minlength=5).tolist() == [4] * 5
    assert np.bincount(labels[val], minlength=5).tolist() == [3] * 5
    assert not set(shots) & set(val)
    again = select_few_shot(labels, 5, shots=4, val_per_class=3, seed=7)
    assert np.array_equal(again[0], shots) and np.array_equal(again[1], val)
    assert not np.array_equal(select_few_shot(labels, 5, 4, 3, seed=8)[0], shots)
    assert np.array_equal(select_few_shot(labels, 5, 8, 3, seed=7)[1], val)  # validation does not depend on K
    assert set(shots) <= set(select_few_shot(labels, 5, 8, 3, seed=7)[0])  # K=4 shots ⊂ K=8 shots
    with pytest.raises(Clip2PointError, match="shots must be one of 1, 2, 4, 8, 16"):
        select_few_shot(labels, 5, shots=3, val_per_class=0, seed=0)
    with pytest.raises(DatasetError, match="fewer than shots"):
        select_few_shot(labels, 5, shots=16, val_per_class=0, seed=0)  # classes 1 and 3 have 12 and 11 shapes


def test_stratified_test_limit_covers_every_class():
    labels = np.repeat(np.arange(4), [10, 3, 6, 1])
    idx = stratified_head(labels, 9)
    assert len(idx) == 9 and list(idx) == sorted(idx)
    assert np.bincount(labels[idx], minlength=4).tolist() == [3, 3, 2, 1]
    assert len(stratified_head(labels, 0)) == len(labels) and len(stratified_head(labels, 999)) == len(labels)


@needs_data
def test_real_splits_are_disjoint_from_each_other_and_from_test(tmp_path):
    train, test, splits = make_splits(config(tmp_path, shots=16, val_per_class=4, limit_test=100))
    assert np.bincount(train.labels[splits.shots], minlength=10).tolist() == [16] * 10
    assert np.bincount(train.labels[splits.val], minlength=10).tolist() == [4] * 10
    assert not set(splits.shots) & set(splits.val)
    assert train.split == "train" and test.split == "test"  # shots and validation never come from the test split
    assert not {train.names[i] for i in np.r_[splits.shots, splits.val]} & {test.names[i] for i in splits.test}
    assert len(splits.test) == 100 and set(test.labels[splits.test]) == set(range(10))


def test_config_validation_says_what_to_do(tmp_path):
    with pytest.raises(Clip2PointError, match="shots must be one of"):
        config(tmp_path, shots=5).validate()
    with pytest.raises(Clip2PointError, match="mode must be"):
        config(tmp_path, mode="fast").validate()
    with pytest.raises(Clip2PointError, match="out_dir"):
        config(Path(""), out_dir="").validate()


# ----------------------------------------------------------------------------------------------
# a trained run


@needs_data
def test_fewshot_run_learns_above_chance_with_random_encoders(trained):
    result, reports = trained
    assert result.status == "completed" and result.best_epoch >= 1
    assert result.test_accuracy > 0.2, result.metrics["test"]  # 10 classes: chance is 0.1
    epochs = [p.stats for p in reports if p.stage == "epoch"]
    assert [s.epoch for s in epochs] == list(range(1, 11))
    assert epochs[-1].train_loss < epochs[0].train_loss
    assert {p.split for p in reports if p.stage == "encode"} == {"train", "val", "test"}


@needs_data
def test_run_directory_and_metrics(trained):
    result, _ = trained
    run = result.run_dir
    for name in RUN_FILES.values():
        assert (run / name).is_file(), name
    m = json.loads((run / "metrics.json").read_text())
    assert m["status"] == "completed" and m["paths"] == "clip+clip" and m["random_weights"] is True
    assert "random" in m["backbone"] and m["data"]["test_shapes"] == 100 and m["data"]["val_shapes"] == 40
    assert len(m["test"]["confusion_matrix"]) == 10 and sum(map(sum, m["test"]["confusion_matrix"])) == 100
    assert set(m["test"]["per_class_accuracy"]) == set(open_dataset("modelnet10", MN10, "test").class_names)
    assert m["val_accuracy"] == max(h["val_acc"] for h in m["history"])
    assert m["view_labels"][0] == "elev 0°, azim 0°" and len(m["view_labels"]) == 10
    assert m["encoder_passes"]["total"] == (80 + 40 + 100) * 10  # clip+clip: each view encoded once
    assert m["released_recipe_passes"] == released_recipe_passes(10, 80, 100, 10) == 10 * 180 * 10 * 2
    assert set(m["timings_s"]) >= {"encode_s", "train_s", "test_s", "total_s"}
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["fewshot"]["shots"] == 8 and cfg["gdpa"]["gate"] == "view" and cfg["backbone"]["random_weights"]


@needs_data
def test_gate_weights_per_view_move_from_one_half(trained):
    m = trained[0].metrics
    gate = np.asarray(m["gate_weights"])  # test-set mean of the best epoch's gate
    assert gate.shape == (10,) and bool(((gate > 0) & (gate < 1)).all())
    # exactly 0.5 at initialisation (float32 resolution near 0.5: 6e-8); with clip+clip paths (identical
    # inputs) the gate's learning signal is weak, so it moves slowly but measurably
    assert float(np.abs(gate - 0.5).max()) > 1e-6
    drift = [float(np.abs(np.asarray(h["val_gate"]) - 0.5).max()) for h in m["history"]]
    assert max(drift) > 1e-6  # (how far it moves depends on the run; the depth+clip test checks learning)
    assert sum(m["view_importance"]) == pytest.approx(1.0, abs=1e-5)


@needs_data
def test_loaded_adapter_reproduces_the_run(trained, tiny_backbone):
    result, _ = trained
    clf = load_adapter(result.run_dir, tiny_backbone)
    sd, _ = load_state_dict_file(result.run_dir / "features.safetensors")
    fa = sd["test.a"][:, 0]
    res = clf.predict_features(fa, fa)
    preds = res.logits.argmax(dim=1).numpy()
    assert np.array_equal(np.asarray(result.metrics["test"]["confusion_matrix"]),
                          np.bincount(sd["test.labels"].numpy() * 10 + preds, minlength=100).reshape(10, 10))
    assert res.gate.shape == (100, 10) and res.probs.shape == (100, 10)
    np.testing.assert_allclose(res.gate.mean(dim=0).numpy(), result.metrics["gate_weights"], atol=1e-6)
    # new point clouds: render 10 views, encode, adapter — the same as the cached path
    num_points = json.loads((result.run_dir / "config.json").read_text())["fewshot"]["num_points"]
    test = open_dataset("modelnet10", MN10, "test", num_points=num_points)  # the points the run encoded
    idx = sd["test.indices"][:3].numpy()
    direct = clf.predict(test.points_array[idx])
    torch.testing.assert_close(direct.logits, res.logits[:3], atol=1e-4, rtol=1e-4)
    d = direct.as_dict(1)
    assert len(d["gate_weights"]) == 10 and d["paths"] == "clip+clip" and sum(d["probs"]) == pytest.approx(1, abs=1e-4)


@needs_data
def test_run_folder_reads_the_run_and_its_gate(trained, tiny_backbone, tmp_path):
    import shutil

    result, _ = trained
    run = RunFolder(result.run_dir)
    assert run.config.shots == 8 and run.config == FewShotConfig.from_dict(run.config_dict["fewshot"])
    assert run.classes == result.test.classes and run.paths == "clip+clip" and run.backbone_info["random_weights"]
    assert run.gdpa_config.views == 10 and run.view_labels == result.metrics["view_labels"]
    assert run.metrics["status"] == "completed" and [h["epoch"] for h in run.history] == list(range(1, 11))
    gate = run.gate_weights()
    assert gate.split == "test" and gate.classes == run.classes and gate.view_labels == run.view_labels
    np.testing.assert_allclose(gate.per_view, result.metrics["gate_weights"])
    np.testing.assert_allclose(gate.importance, result.metrics["view_importance"])
    # per class: the trained adapter's gate on the cached test features, averaged per true class
    sd, _ = load_state_dict_file(result.run_dir / "features.safetensors")
    gates = load_adapter(run, tiny_backbone).predict_features(sd["test.a"][:, 0], sd["test.a"][:, 0]).gate  # a RunFolder
    labels = sd["test.labels"]
    expected = torch.stack([gates[labels == c].mean(dim=0) for c in range(10)]).numpy()
    assert gate.per_class.shape == (10, 10)
    np.testing.assert_allclose(gate.per_class, expected, atol=1e-6)
    # no test result (a cancelled run): the best epoch's validation gate, no per-class gate
    val = GateWeights.from_metrics({**result.metrics, "gate_weights": None})
    best = next(h for h in result.metrics["history"] if h["epoch"] == result.best_epoch)
    assert val.split == "validation" and val.per_class is None and val.per_view.tolist() == best["val_gate"]
    assert GateWeights.from_metrics({**result.metrics, "gate_weights": None, "val_gate_weights": []}) is None
    with pytest.raises(CheckpointError, match="not a few-shot run folder"):
        RunFolder(tmp_path)
    copy = shutil.copytree(result.run_dir, tmp_path / "run")
    (copy / "metrics.json").write_text('{"status": ')
    with pytest.raises(CheckpointError, match="metrics.json: not valid JSON"):
        RunFolder(copy).metrics
    (copy / "metrics.json").write_text(json.dumps({**result.metrics, "gate_weights": ["x"] * 10}))
    with pytest.raises(CheckpointError, match="'gate_weights' is not a 1-d list of numbers"):
        RunFolder(copy).gate_weights()
    (copy / "metrics.json").unlink()
    assert RunFolder(copy).metrics is None and RunFolder(copy).gate_weights() is None


@needs_data
def test_existing_run_needs_resume_or_overwrite(trained, tiny_backbone):
    cfg = FewShotConfig(**{**json.loads((trained[0].run_dir / "config.json").read_text())["fewshot"],
                           "resume": False})
    with pytest.raises(Clip2PointError, match="already holds a few-shot run"):
        run_fewshot(cfg, tiny_backbone)
    cfg.resume, cfg.shots = True, 16
    with pytest.raises(CheckpointError, match="shots"):
        run_fewshot(cfg, tiny_backbone)


# ----------------------------------------------------------------------------------------------
# resume, cancel, passes


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_state_dict_file(path)[0]


@needs_data
def test_resume_equals_uninterrupted(tiny_backbone, tmp_path):
    full = run_fewshot(config(tmp_path / "full"), tiny_backbone)
    stop, progress = stop_after(3)
    part = run_fewshot(config(tmp_path / "part"), tiny_backbone, progress=progress, should_stop=stop)
    assert part.status == "cancelled" and part.metrics["epochs_completed"] == 3
    resumed = run_fewshot(config(tmp_path / "part", resume=True), tiny_backbone)
    assert resumed.status == "completed" and resumed.metrics["epochs_completed"] == 6
    for name in ("last.safetensors", "adapter.safetensors"):
        a, b = _tensors(tmp_path / "full" / name), _tensors(tmp_path / "part" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(resumed.metrics["history"]) == strip(full.metrics["history"])
    assert resumed.test_accuracy == full.test_accuracy
    # the resumed session re-encoded only the test shapes (train/val came from features.safetensors)
    assert resumed.metrics["encoder_passes"]["this_session"] == 10 * 10


@needs_data
def test_history_is_appended_and_resume_drops_lines_written_after_the_checkpoint(tiny_backbone, tmp_path):
    stop, progress = stop_after(2)
    run_fewshot(config(tmp_path, epochs=4), tiny_backbone, progress=progress, should_stop=stop)
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]
    from safetensors import safe_open

    with safe_open(str(tmp_path / "last.safetensors"), "pt") as f:  # a checkpoint no longer carries the history
        assert "history" not in json.loads(f.metadata()["state"])
    # a crash after epoch 3's history line but before its checkpoint, and a half-written line
    with open(tmp_path / "history.jsonl", "a") as f:
        f.write(json.dumps({**json.loads(lines[-1]), "epoch": 3}) + "\n" + '{"epoch": 4, "train_lo')
    resumed = run_fewshot(config(tmp_path, epochs=4, resume=True), tiny_backbone)
    assert [h["epoch"] for h in resumed.metrics["history"]] == [1, 2, 3, 4]
    assert [json.loads(x)["epoch"] for x in (tmp_path / "history.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    assert resumed.metrics["history"][:2] == [json.loads(x) for x in lines]


@needs_data
def test_damaged_checkpoint_metadata_is_a_clear_error_and_a_damaged_cache_is_re_encoded(tiny_backbone, tmp_path):
    from clip2point.checkpoints import save_state_dict_atomic

    stop, progress = stop_after(1)
    run_fewshot(config(tmp_path, epochs=3), tiny_backbone, progress=progress, should_stop=stop)
    sd, meta = load_state_dict_file(tmp_path / "features.safetensors")
    save_state_dict_atomic(sd, tmp_path / "features.safetensors", {**meta, "fingerprint": "{not json"})
    last, meta = load_state_dict_file(tmp_path / "last.safetensors")
    save_state_dict_atomic(last, tmp_path / "last.safetensors", {**meta, "state": '{"epoch": "one"}'})
    with pytest.raises(CheckpointError, match="last.safetensors: the checkpoint does not fit this run or is damaged"):
        run_fewshot(config(tmp_path, epochs=3, resume=True), tiny_backbone)
    save_state_dict_atomic(last, tmp_path / "last.safetensors", meta)  # the checkpoint repaired: resumes, re-encodes
    resumed = run_fewshot(config(tmp_path, epochs=3, resume=True), tiny_backbone)
    assert resumed.status == "completed" and resumed.metrics["encoder_passes"]["this_session"] == (20 + 10 + 10) * 10  # all splits again


@needs_data
def test_a_run_changes_no_process_global_torch_state(tiny_backbone, tmp_path):
    import logging

    torch.manual_seed(1234)
    before = (torch.get_rng_state(), torch.are_deterministic_algorithms_enabled(), logging.getLogger().level)
    a = run_fewshot(config(tmp_path / "a", epochs=2), tiny_backbone)
    assert torch.equal(torch.get_rng_state(), before[0]), "the global RNG was used or reseeded"
    assert (torch.are_deterministic_algorithms_enabled(), logging.getLogger().level) == before[1:]
    torch.manual_seed(99)  # another global RNG state: the run does not depend on it
    b = run_fewshot(config(tmp_path / "b", epochs=2), tiny_backbone)
    wa, wb = _tensors(tmp_path / "a" / "adapter.safetensors"), _tensors(tmp_path / "b" / "adapter.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa) and a.test_accuracy == b.test_accuracy


@needs_data
def test_a_tampered_run_folder_is_refused_before_anything_is_allocated(trained, tiny_backbone, tmp_path):
    import shutil

    run = shutil.copytree(trained[0].run_dir, tmp_path / "run")
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text('{"fewshot": {"shots": 8')
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        load_adapter(run, tiny_backbone)
    for key, value in (("gate_hidden", 10**9), ("views", 10**6), ("dim", 64 * 10**6)):
        (run / "config.json").write_text(json.dumps({**cfg, "gdpa": {**cfg["gdpa"], key: value}}))
        with pytest.raises(CheckpointError):  # a (1e9 × 128) gate layer would need 0.5 TB
            load_adapter(run, tiny_backbone)
    (run / "config.json").write_text(json.dumps({**cfg, "classes": "chair"}))
    with pytest.raises(CheckpointError, match="'classes'"):
        load_adapter(run, tiny_backbone)
    (run / "config.json").write_text(json.dumps(cfg))
    outside = tmp_path / "elsewhere.safetensors"
    (run / "adapter.safetensors").rename(outside)
    (run / "adapter.safetensors").symlink_to(outside)
    with pytest.raises(CheckpointError, match="outside its run folder"):
        load_adapter(run, tiny_backbone)


@needs_data
def test_cancel_keeps_best_checkpoint_and_writes_metrics(tiny_backbone, tmp_path):
    done = []
    result = run_fewshot(config(tmp_path, epochs=20, plots=True), tiny_backbone,
                         progress=lambda p: done.append(p.done) if p.stage == "epoch" else None,
                         should_stop=lambda: len(done) >= 2)
    assert result.status == "cancelled" and result.test is None and done == [1, 2]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["status"] == "cancelled" and m["epochs_completed"] == 2 and m["test_accuracy"] is None
    assert (tmp_path / "adapter.safetensors").is_file() and (tmp_path / "last.safetensors").is_file()
    assert (tmp_path / "curves.png").is_file() and m["val_gate_weights"] is not None
    assert RunFolder(tmp_path).gate_weights().split == "validation"  # not tested: the validation gate
    assert load_adapter(tmp_path, tiny_backbone).classes[2] == "chair"


@needs_data
def test_cached_mode_needs_ten_times_fewer_encoder_passes_than_online(tiny_backbone, tmp_path):
    counted = []
    hook = tiny_backbone.model.visual.register_forward_hook(lambda m, inp, out: counted.append(inp[0].shape[0]))
    try:
        runs = {}
        for mode in ("cached", "online"):
            counted.clear()
            runs[mode] = run_fewshot(config(tmp_path / mode, shots=1, epochs=12, val_per_class=0, limit_test=2, mode=mode),
                                     tiny_backbone)
            assert runs[mode].metrics["encoder_passes"]["total"] == sum(counted)  # the reported count is real
    finally:
        hook.remove()
    cached, online = (runs[m].metrics["encoder_passes"]["total"] for m in ("cached", "online"))
    assert cached == (10 + 0 + 2) * 10  # 10 shots, no validation split, 2 test shapes
    assert online == runs["cached"].metrics["online_mode_passes"] == 12 * 10 * 10 + 2 * 10
    assert online >= 10 * cached
    assert runs["online"].status == "completed" and runs["online"].test_accuracy is not None


@needs_data
def test_depth_and_clip_paths_with_resamples(tmp_path):
    from safetensors.torch import save_file

    from clip2point.backbone import load_backbone

    bb = load_backbone("tiny-ViT-test", weights="random")
    visual = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in bb.model.visual.state_dict().items()}
    save_file({k: v.contiguous() for k, v in visual.items()}, tmp_path / "depth.safetensors")
    bb = bb.with_depth_encoder(tmp_path / "depth.safetensors")
    result = run_fewshot(config(tmp_path / "run", shots=1, epochs=2, resamples=2), bb)
    m = result.metrics
    assert m["paths"] == "depth+clip" and m["status"] == "completed"
    assert m["encoder_passes"] == {"train": 10 * 2 * 10 * 2, "val": 10 * 10 * 2, "test": 10 * 10 * 2,
                                   "total": 800, "this_session": 800}
    feats = load_state_dict_file(tmp_path / "run" / "features.safetensors")[0]
    assert feats["train.a"].shape == (10, 2, 10, 64) and feats["train.b"].shape == (10, 2, 10, 64)
    assert not torch.equal(feats["train.a"][:, 0], feats["train.a"][:, 1])  # re-samples differ
    assert not torch.equal(feats["train.a"], feats["train.b"])  # depth encoder ≠ CLIP
    with pytest.raises(Clip2PointError, match="--depth-encoder"):
        load_adapter(tmp_path / "run", load_backbone("tiny-ViT-test", weights="random"))


# ----------------------------------------------------------------------------------------------
# command line


@needs_data
def test_cli_fewshot_then_zeroshot_with_the_adapter(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["-q", "fewshot", "--dataset", "modelnet10", "--data-dir", str(DATA / "modelnet10"), "--shots", "1",
                 "--epochs", "2", "--val-per-class", "1", "--limit-test", "10", "--num-points", "256", "-o", str(run), *TINY])
    out = capsys.readouterr().out
    assert code == 0 and "1-shot" in out and "test" in out and str(run) in out
    for name in ("config.json", "adapter.safetensors", "last.safetensors", "features.safetensors", "metrics.json",
                 "curves.png", "gate_weights.png", "confusion.png"):
        assert (run / name).is_file(), name
    test = open_dataset("modelnet10", MN10, "test")
    shape = tmp_path / "shape.npy"
    np.save(shape, test.points_array[0])
    assert main(["-q", "zeroshot", str(shape), "--adapter", str(run)]) == 0  # backbone taken from the run
    text = capsys.readouterr().out
    assert "gate per view" in text and "%" in text
    assert main(["-q", "zeroshot", str(shape), "--adapter", str(run), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert len(obj["gate_weights"]) == 10 and len(obj["probs"]) == 10 and obj["top"][0]["class"] in obj["classes"]
    assert main(["zeroshot", str(shape)]) == 2 and "--adapter RUN_DIR" in capsys.readouterr().err
    assert main(["fewshot", "--dataset", "modelnet10", "--data-dir", str(MN10), "-o", str(run), *TINY]) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize("template", ["a {} and a {}", "{}{1}", "{{}}", "no placeholder"])
def test_config_refuses_a_bad_template_before_anything_loads(template):
    from clip2point.prompts import PromptTemplateError

    with pytest.raises(PromptTemplateError, match="image of a"):
        FewShotConfig(out_dir="x", template=template).validate()


@needs_data
@pytest.mark.parametrize("split", ["train", "test"])
def test_stop_while_encoding_ends_within_one_encoder_batch_as_cancelled(tiny_backbone, tmp_path, split):
    """Encoding is cut into chunks of one encoder batch (2 shapes of 10 views on the CPU): a stop
    asked during the first chunk ends the run after it. Stopped while the test shapes are encoded
    (after the last epoch) the run is "cancelled", not "completed" without a test."""
    from clip2point.fewshot.features import ViewEncoder

    assert ViewEncoder(tiny_backbone, "10", batch_size=64).shapes_per_batch == 2  # CPU: ~24 images per chunk
    ev = threading.Event()
    reports = []

    def progress(p) -> None:
        reports.append(p)
        if p.stage == "encode" and p.split == split and p.done >= 2:  # after the first chunk
            ev.set()

    result = run_fewshot(config(tmp_path / "run", epochs=2), tiny_backbone, progress=progress, should_stop=ev)
    assert result.status == "cancelled" and result.test is None
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "cancelled"
    encoded = [p.done for p in reports if p.stage == "encode" and p.split == split]
    assert encoded == [0, 2], encoded  # chunks of 2 shapes; none started after the stop
