"""CLIP2Point image-depth pre-training: losses, pair cache, training loop, torchrun, resume, export.

Everything runs on the tiny random open_clip model (``tiny-ViT-test``) and the 14 procedural
example meshes (or meshes/points made in tmp), so the file takes well under a minute on 2 cores.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clip2point.errors import CheckpointError, Clip2PointError, DatasetError
from clip2point.pretrain import sources as psources
from clip2point.pretrain.data import (
    BackboneImageEncoder, MeshFolderSource, PairDataset, ShapeNetRenderSource, build_pair_cache, collate_pairs,
    read_index, render_pair_views,
)
from clip2point.pretrain.losses import combined_loss, nt_xent
from clip2point.pretrain.trainer import (
    PretrainConfig, PretrainModel, export_depth_encoder, make_optimizer, train, train_step, validation_subset,
)
from clip2point.render import DepthRenderer, ViewSet, get_view_set
from helpers import DATA, needs_data

ROOT = Path(__file__).resolve().parents[1]
MESHES = ROOT / "examples" / "meshes"
TINY = "tiny-ViT-test"


@pytest.fixture(scope="module")
def pair_cache(tmp_path_factory, tiny_backbone) -> Path:
    """The 14 example meshes rendered and encoded once by the tiny backbone (4 shards)."""
    cache = tmp_path_factory.mktemp("pairs")
    build_pair_cache(cache, MeshFolderSource(MESHES, num_points=1024), BackboneImageEncoder(tiny_backbone),
                     shard_size=4, progress=False)
    return cache


def _config(run_dir: Path, cache: Path, steps: int, **kw) -> PretrainConfig:
    base = dict(run_dir=str(run_dir), cache_dir=str(cache), model_name=TINY, weights="random", batch_size=4,
                max_steps=steps, num_points=512, save_every=2, progress=False, allow_download=False)
    return PretrainConfig(**{**base, **kw})


def _losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r}


# ------------------------------------------------------------------------------------------
# losses


def _reference_nt_xent(a: np.ndarray, b: np.ndarray, t: float) -> float:
    """SimCLR's NT-Xent written out: mean over 2n anchors of −log(e^{s_pos/t} / Σ_{j≠k} e^{s_kj/t})."""
    z = np.concatenate([a, b]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n = len(a)
    total = 0.0
    for k in range(2 * n):
        pos = (k + n) % (2 * n)
        denom = sum(math.exp(z[k] @ z[j] / t) for j in range(2 * n) if j != k)
        total += -math.log(math.exp(z[k] @ z[pos] / t) / denom)
    return total / (2 * n)


def test_nt_xent_matches_the_hand_written_formula():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 16, generator=g), torch.randn(6, 16, generator=g)
    for t in (0.07, 0.5):
        ref = _reference_nt_xent(a.numpy(), b.numpy(), t)
        assert float(nt_xent(a, b, t)) == pytest.approx(ref, rel=1e-5)
    assert float(nt_xent(a, b)) == pytest.approx(float(nt_xent(b, a)), rel=1e-6)  # symmetric
    assert float(nt_xent(3 * a, b)) == pytest.approx(float(nt_xent(a, b)), rel=1e-5)  # normalised inside
    same = torch.nn.functional.normalize(a, dim=1)
    assert float(nt_xent(same, same)) < float(nt_xent(a, b))  # perfect pairs score better
    with pytest.raises(Clip2PointError, match="same shape"):
        nt_xent(a, b[:3])
    for t in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(Clip2PointError, match="--temperature must be a positive number"):
            nt_xent(a, b, t)
    with pytest.raises(Clip2PointError, match="at least 2 pairs"):
        nt_xent(a[:1], b[:1])
    with pytest.raises(Clip2PointError, match="--temperature"):
        PretrainConfig(run_dir="x", temperature=0.0).validate()  # before any model loads


def test_total_loss_is_the_released_combination():
    g = torch.Generator().manual_seed(1)
    da, db, img = (torch.randn(5, 8, generator=g) for _ in range(3))
    w = torch.tensor(1.7, requires_grad=True)
    out = combined_loss(da, db, img, w, 0.07)
    l_d, l_c = float(nt_xent(da, db)), float(nt_xent((da + db) / 2, img))
    assert float(out.depth) == pytest.approx(l_d) and float(out.cross) == pytest.approx(l_c)
    assert float(out.total.detach()) == pytest.approx(l_c + l_d / 1.7**2 + math.log(2.7), rel=1e-6)
    out.total.backward()
    assert w.grad is not None and float(w.grad) == pytest.approx(-2 * l_d / 1.7**3 + 1 / 2.7, rel=1e-5)


# ------------------------------------------------------------------------------------------
# rendering and sampling


def test_pair_views_equal_the_depth_renderer_with_jitter():
    pts = torch.from_numpy(np.random.default_rng(0).normal(size=(3, 700, 3)).astype(np.float32))
    vs = get_view_set("10")
    for v in (0, 1, 4, 9):  # front, top (degenerate up vector), an oblique view from below, a side
        single = DepthRenderer(ViewSet.custom([vs.elev[v]], [vs.azim[v]], [vs.dist[v]]))
        ref = single(pts, dist_jitter=0.1, generator=torch.Generator().manual_seed(v))
        u = torch.rand((3, 1), generator=torch.Generator().manual_seed(v))
        mine = render_pair_views(pts, torch.full((3,), v), 1.0 + (2.0 * u - 1.0) * 0.1)
        assert torch.equal(mine, ref)
    both = render_pair_views(pts, torch.tensor([0, 1, 2]), torch.tensor([[0.9, 1.1]] * 3))
    assert both.shape == (3, 2, 224, 224) and not torch.equal(both[:, 0], both[:, 1])  # two zooms differ


def test_dataset_draws_depend_only_on_seed_epoch_and_index(pair_cache):
    ds = PairDataset.from_cache(pair_cache, num_points=256, seed=3)
    assert len(ds) == 14 and ds.num_views == 10 and ds.feature_dim == 64 and ds.names[0] == "airplane.ply"
    a, b = ds[5], ds[5]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["points"].shape == (256, 3) and 0 <= int(a["view"]) < 10
    assert ((a["dist_scale"] >= 0.9) & (a["dist_scale"] <= 1.1)).all()
    torch.testing.assert_close(a["image_features"], ds.image_features[5, int(a["view"])].float())
    draws = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        draws.add((int(ds[5]["view"]), float(ds[5]["dist_scale"][0])))
    assert len(draws) > 1  # a new epoch draws again


# ------------------------------------------------------------------------------------------
# the pair cache


def _counting_render(monkeypatch, fail_at: int | None = None) -> list[int]:
    calls: list[int] = []
    real = psources.render_mesh_views

    def render(*args, **kwargs):
        calls.append(1)
        if fail_at is not None and len(calls) == fail_at:
            raise RuntimeError("simulated crash while rendering")
        return real(*args, **kwargs)

    monkeypatch.setattr(psources, "render_mesh_views", render)
    return calls


class _OtherEncoder:
    """An image encoder with another identity (stands for another CLIP backbone)."""

    key = "other-model|random:"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(images.float().mean(dim=(1, 2)).repeat(1, 4), dim=-1)


def test_cache_build_resumes_and_never_renders_twice(tmp_path, monkeypatch, tiny_backbone):
    meshes = tmp_path / "meshes"
    for i, name in enumerate(["chair", "table", "mug", "lamp", "bed", "sofa"]):
        (meshes / ("seating" if i % 2 else "other")).mkdir(parents=True, exist_ok=True)
        shutil.copy(MESHES / f"{name}.ply", meshes / ("seating" if i % 2 else "other") / f"{name}.ply")
    source = MeshFolderSource(meshes, num_points=300)
    enc = BackboneImageEncoder(tiny_backbone)
    cache = tmp_path / "pairs"

    calls = _counting_render(monkeypatch, fail_at=5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_pair_cache(cache, source, enc, shard_size=2, keep_images=True, progress=False)
    index = read_index(cache)
    assert not index["complete"] and [e["count"] for e in index["shards"]] == [2, 2]

    calls = _counting_render(monkeypatch)
    build_pair_cache(cache, source, enc, shard_size=2, keep_images=True, progress=False)
    assert len(calls) == 2  # only the third shard was rendered
    build_pair_cache(cache, source, enc, shard_size=2, keep_images=True, progress=False)
    assert len(calls) == 2  # complete: nothing rendered

    ds = PairDataset.from_cache(cache, num_points=100)
    assert len(ds) == 6 and set(ds.classes) == {"other", "seating"}
    assert ds.points.dtype == torch.float16 and float(ds.points.float().norm(dim=-1).amax()) == pytest.approx(1.0, abs=1e-3)
    before = ds.image_features.clone()

    build_pair_cache(cache, source, _OtherEncoder(), shard_size=2, keep_images=True, progress=False)
    assert len(calls) == 2  # another backbone: re-encoded from the stored images, not re-rendered
    after = PairDataset.from_cache(cache)
    assert after.feature_key == _OtherEncoder.key and not torch.equal(after.image_features[..., :4], before[..., :4])

    cache2 = tmp_path / "pairs2"  # without stored images, a new backbone means rendering again
    build_pair_cache(cache2, source, enc, shard_size=4, progress=False)
    build_pair_cache(cache2, source, _OtherEncoder(), shard_size=4, progress=False)
    assert len(calls) == 2 + 6 + 6
    with pytest.raises(DatasetError, match="no images are stored"):
        build_pair_cache(cache2, None, enc)


def _png(path: Path, rgba: tuple[int, int, int, int], size=(80, 60)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", size, rgba).save(path)


def test_shapenet_layout_reader_on_a_fake_folder(tmp_path, tiny_backbone):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    models = ["03001627-aaa111", "03001627-bbb222", "02691156-ccc333", "04379243-ddd444"]
    for i, m in enumerate(models):
        (root / "shapenet_pc").mkdir(parents=True, exist_ok=True)
        np.save(root / "shapenet_pc" / f"{m}.npy", (rng.normal(size=(8192, 3)) * (i + 1)).astype(np.float32))
        synset, mid = m.split("-")
        for k in range(10 if i != 2 else 9):  # the airplane misses view 9: skipped
            _png(root / "rendering" / f"{synset}_{mid}" / f"{k}.png", (10 * k, 100, 200, 255 if k else 0))
    (root / "ShapeNet-55").mkdir()
    (root / "ShapeNet-55" / "train.txt").write_text("\n".join(f"{m}.npy" for m in models[:3]) + "\n")

    src = ShapeNetRenderSource(root, split="train", num_points=512)
    assert src.item_names() == ["03001627_aaa111", "03001627_bbb222"]  # listed and complete, sorted
    item = src.load(0)
    assert item.label == "chair" and item.points.shape == (512, 3) and item.images.shape == (10, 224, 224, 3)
    assert np.abs(np.linalg.norm(item.points, axis=1).max() - 1) < 1e-5
    assert (item.images[0] == 255).all()  # transparent view 0 composited on white
    assert tuple(item.images[3, 5, 5]) == (30, 100, 200)  # resized, colours kept

    cache = tmp_path / "pairs"
    build_pair_cache(cache, src, BackboneImageEncoder(tiny_backbone), shard_size=1, progress=False)
    ds = PairDataset.from_cache(cache, num_points=128)
    assert ds.names == src.item_names() and ds.image_features.shape == (2, 10, 64)
    assert len(ShapeNetRenderSource(root, split="all", num_points=64).item_names()) == 3  # no list for test: all .npy
    with pytest.raises(DatasetError, match="shapenet_pc"):
        ShapeNetRenderSource(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------
# training


def test_a_few_steps_on_a_fixed_batch_reduce_the_loss(pair_cache, tiny_backbone):
    ds = PairDataset.from_cache(pair_cache, num_points=512)
    batch = collate_pairs([ds[i] for i in range(8)])
    model = PretrainModel(tiny_backbone.model.visual)
    assert all(p.requires_grad for p in model.parameters()) and not any(
        p.requires_grad for p in tiny_backbone.model.visual.parameters())  # the copy trains, CLIP stays frozen
    opt = make_optimizer(model, lr=2e-3)
    losses = [train_step(model, opt, None, batch)["loss"] for _ in range(20)]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.1, losses


def test_two_torchrun_processes_give_the_single_process_losses(tmp_path, pair_cache):
    single = tmp_path / "single"
    train(_config(single, pair_cache, 2))
    torchrun = Path(sys.executable).parent / "torchrun"
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [*launcher, "--standalone", "--nproc_per_node", "2", "-m", "clip2point.pretrain", "--cache", str(pair_cache),
           "--model", TINY, "--weights", "random", "--offline", "--steps", "2", "--batch-size", "4",
           "--num-points", "512", "-q", "-o", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stdout
    one, two = _losses(single), _losses(tmp_path / "ddp")
    assert sorted(two) == [1, 2]
    for step in (1, 2):  # step 2 also checks the gradients (DDP + gathered negatives) of step 1
        assert two[step] == pytest.approx(one[step], rel=1e-4, abs=1e-5)
    assert json.loads((tmp_path / "ddp" / "config.json").read_text())["world_size"] == 2


class _Killed(Exception):
    pass


def test_kill_and_resume_continue_at_the_same_step_with_the_same_state(tmp_path, pair_cache):
    full = tmp_path / "full"
    train(_config(full, pair_cache, 4))

    def kill_at_3(step, _metrics):
        if step == 3:
            raise _Killed

    run = tmp_path / "killed"
    with pytest.raises(_Killed):
        train(_config(run, pair_cache, 4), on_step=kill_at_3)
    assert json.loads((run / "checkpoints" / "last.json").read_text())["step"] == 2
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "lo')  # a kill -9 mid-line: the resume drops it
    with pytest.raises(Clip2PointError, match="--resume"):
        train(_config(run, pair_cache, 4))  # never silently overwrites a run
    summary = train(_config(run, pair_cache, 4, resume=True))
    assert summary.steps == 4
    assert _losses(run) == _losses(full)  # steps 3 and 4 replayed exactly (and step 3's stale record dropped)
    from safetensors.torch import load_file

    a, b = (load_file(d / "checkpoints" / "step_00000004.safetensors") for d in (full, run))
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []  # model, optimizer, RNG
    meta = json.loads((run / "checkpoints" / "last.json").read_text())
    assert meta["step"] == 4 and meta["scheduler"]["last_epoch"] == 4


def test_exported_depth_encoder_loads_into_zero_shot(tmp_path, pair_cache):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from clip2point.backbone import load_backbone
    from clip2point.io import load_point_cloud
    from clip2point.zeroshot import ZeroShotClassifier

    run = tmp_path / "run"
    train(_config(run, pair_cache, 2))
    out = export_depth_encoder(run, tmp_path / "depth.safetensors")
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "clip2point-depth-encoder/1" and meta["model_name"] == TINY
    assert meta["step"] == "2" and meta["checkpoint"] == "last" and meta["source_run"] == str(run.resolve())
    bb = load_backbone(TINY, weights="random", depth_encoder=out)
    trained = load_file(run / "checkpoints" / "step_00000002.safetensors")
    for k, v in bb.depth_encoder.state_dict().items():
        assert torch.equal(v, trained[f"model.depth_encoder.{k}"])
    assert not torch.equal(bb.depth_encoder.conv1.weight, bb.model.visual.conv1.weight)  # it did train
    res = ZeroShotClassifier(bb, ["chair", "table", "lamp"], encoder="depth").predict(
        load_point_cloud(ROOT / "examples" / "points" / "chair.ply").points)
    assert res.probs.shape == (1, 3) and torch.isfinite(res.logits).all()
    with pytest.raises(CheckpointError, match="no best.safetensors"):
        export_depth_encoder(run, tmp_path / "x.safetensors", "best")
    with pytest.raises(CheckpointError, match="safetensors"):
        export_depth_encoder(run, tmp_path / "x.pt")


@needs_data
def test_validation_uses_the_train_split_and_keeps_the_best(tmp_path, pair_cache):
    val = validation_subset(DATA / "modelnet10", "modelnet10", per_class=2)
    assert val.split == "train" and len(val) == 20 and np.bincount(val.labels).tolist() == [2] * 10
    run = tmp_path / "run"
    summary = train(_config(run, pair_cache, 3, val_data=str(DATA / "modelnet10"), val_per_class=2))
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    vals = [r for r in records if r.get("event") == "val"]
    assert [r["step"] for r in vals] == [3] and vals[0]["val_shapes"] == 20  # 3 steps = one epoch of 14 pairs
    assert summary.best_step == 3 and (run / "best.safetensors").is_file()
    assert export_depth_encoder(run, tmp_path / "best.safetensors").is_file()


def test_frozen_clip_precision_keys_the_pair_cache_and_the_encoder_trains_in_fp32(tmp_path, pair_cache, tiny_backbone):
    """--precision bf16: the frozen CLIP (cache features, validation) is a bf16 copy; the trained encoder stays fp32."""
    from safetensors.torch import load_file

    from clip2point.pretrain.trainer import frozen_backbone, image_feature_key

    bf = frozen_backbone(tiny_backbone, "bf16", "cpu")
    assert bf.precision == "bf16" and tiny_backbone.precision == "fp32"  # a converted copy; the original is untouched
    assert frozen_backbone(tiny_backbone, "fp32", "cpu") is tiny_backbone
    assert image_feature_key(tiny_backbone) == read_index(pair_cache)["feature_key"]  # fp32 caches keep their key
    assert image_feature_key(bf) == read_index(pair_cache)["feature_key"] + "|bf16"
    with pytest.raises(Clip2PointError, match="features were computed with"):  # fp32 features never pass for bf16
        train(_config(tmp_path / "run", pair_cache, 1, precision="bf16"))
    with pytest.raises(Clip2PointError, match="--precision"):
        _config(tmp_path / "run", pair_cache, 1, precision="fp8").validate()
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    for name in ("chair", "table", "lamp", "sofa"):
        shutil.copy(MESHES / f"{name}.ply", meshes)
    run, cache = tmp_path / "bf16", tmp_path / "pairs16"
    train(_config(run, cache, 1, precision="bf16"), MeshFolderSource(meshes, num_points=512))
    assert read_index(cache)["feature_key"].endswith("|bf16")
    trained = load_file(run / "checkpoints" / "step_00000001.safetensors")
    assert trained["model.depth_encoder.conv1.weight"].dtype == torch.float32


@needs_data
def test_validation_in_bf16_uses_a_bf16_copy_of_the_encoder(tiny_backbone):
    from clip2point.pretrain.trainer import frozen_backbone, validate_encoder

    val = validation_subset(DATA / "modelnet10", "modelnet10", per_class=1)
    encoder = PretrainModel(tiny_backbone.model.visual).depth_encoder.train()
    cfg = PretrainConfig(run_dir="unused", val_batch_size=5)
    res = validate_encoder(frozen_backbone(tiny_backbone, "bf16", "cpu"), encoder, val, cfg)
    assert res["val_shapes"] == 10 and 0 <= res["val_accuracy"] <= 1
    assert encoder.training and encoder.conv1.weight.dtype == torch.float32  # the trained weights are untouched


# ------------------------------------------------------------------------------------------
# command line


def test_cli_parsers_and_a_run_through_the_module_entry(tmp_path, pair_cache, capsys):
    import argparse

    from clip2point.pretrain.cli import COMMANDS, add_parsers, main

    parser = argparse.ArgumentParser(prog="clip2point")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["pretrain", "--meshes", "m/", "-o", "run", "--steps", "5", "--grad-checkpointing"])
    assert args.command == "pretrain" and args.steps == 5 and args.batch_size == 256 and args.lr == 6e-3
    args = parser.parse_args(["weights", "export", "run", "-o", "f.safetensors"])
    assert set(COMMANDS) == {"pretrain", "weights"}
    with pytest.raises(CheckpointError, match="checkpoints/last.json"):
        COMMANDS[args.command](args)
    for sub in (["pretrain", "--help"], ["weights", "export", "--help"]):
        with pytest.raises(SystemExit):
            parser.parse_args(sub)
        assert "examples:" in capsys.readouterr().out

    assert main(["-o", str(tmp_path / "none"), "--model", TINY, "--weights", "random"]) == 2
    assert "--meshes DIR" in capsys.readouterr().err
    run = tmp_path / "cli"
    rc = main(["--cache", str(pair_cache), "--model", TINY, "--weights", "random", "--offline", "--steps", "2",
               "--batch-size", "4", "--num-points", "256", "--grad-checkpointing", "-q", "-o", str(run)])
    assert rc == 0 and "pre-trained 2 steps" in capsys.readouterr().out
    assert main(["--cache", str(pair_cache), "--model", TINY, "--weights", "random", "-q", "-o", str(run)]) == 2
    assert "--resume" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# damaged runs, full disks, unwritable outputs


def test_damaged_checkpoints_are_clear_errors(tmp_path, pair_cache, capsys):
    from clip2point.pretrain.cli import main
    from clip2point.pretrain.trainer import read_checkpoint

    run = tmp_path / "run"
    train(_config(run, pair_cache, 2))
    last = run / "checkpoints" / "last.json"
    meta = json.loads(last.read_text())
    for bad, match in ((dict(meta, step="2"), "malformed"), (dict(meta, optimizer=[]), "malformed"),
                       (dict(meta, format="x"), "not a clip2point pre-training checkpoint"), ([1], "not a clip2point")):
        last.write_text(json.dumps(bad))
        with pytest.raises(CheckpointError, match=match):
            read_checkpoint(last)
    last.write_text(json.dumps(dict(meta, optimizer={"state": {"0": 1}, "param_groups": "x"})))
    with pytest.raises(CheckpointError, match="malformed"):
        train(_config(run, pair_cache, 3, resume=True))
    last.write_text(json.dumps(meta)[:40])  # cut short
    args = ["--cache", str(pair_cache), "--model", TINY, "--weights", "random", "-q", "--resume", "-o", str(run)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "last.json" in err and "not valid JSON" in err
    index = json.loads((pair_cache / "index.json").read_text())
    broken = tmp_path / "pairs"
    shutil.copytree(pair_cache, broken)
    (broken / "index.json").write_text(json.dumps(dict(index, shards=[{"file": 3}])))
    with pytest.raises(DatasetError, match="shard entry 0 is malformed"):
        PairDataset.from_cache(broken)


def test_disk_full_while_checkpointing_is_one_clear_error_and_leaves_no_temp_file(tmp_path, pair_cache, monkeypatch, capsys):
    import safetensors.torch
    from safetensors import SafetensorError

    from clip2point.cli import main as clip2point_main

    run = tmp_path / "run"
    train(_config(run, pair_cache, 2))

    def full(*a, **k):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(CheckpointError, match="step_00000004.safetensors: cannot write it: disk full"):
        train(_config(run, pair_cache, 4, resume=True))
    assert not [p.name for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    assert json.loads((run / "checkpoints" / "last.json").read_text())["step"] == 2  # the previous checkpoint stays
    rc = clip2point_main(["-q", "pretrain", "--cache", str(pair_cache), "--model", TINY, "--weights", "random", "--steps", "4",
                          "--batch-size", "4", "--num-points", "512", "--save-every", "2", "--resume", "-o", str(run)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "disk full" in err and "Traceback" not in err
    out = tmp_path / "depth.safetensors"
    assert clip2point_main(["weights", "export", str(run), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "depth.safetensors: cannot write it: disk full" in err and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_unwritable_outputs_fail_before_the_work(tmp_path, pair_cache, capsys):
    from clip2point.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    rc = main(["-q", "pretrain", "--cache", str(pair_cache), "--model", TINY, "--weights", "random", "-o", str(blocker / "run")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and str(blocker) in err and "not a folder" in err
    run = tmp_path / "run"
    train(_config(run, pair_cache, 2))
    rc = main(["weights", "export", str(run), "-o", str(blocker / "depth.safetensors")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "is a file, not a folder" in err
