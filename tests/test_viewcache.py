"""The persistent view-feature cache: hits encode nothing, keys separate what changes features,
the folder stays bounded, concurrent writers never leave a partial entry, damaged entries are re-encoded."""
from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from clip2point.backbone import load_backbone
from clip2point.checkpoints import load_state_dict_file
from clip2point.render import DepthRenderer, RasterSettings
from clip2point.viewcache import (
    CACHE_DIR_ENV, ViewFeatureCache, cache_info, clear_cache, default_cache_dir, encode_point_views, shape_digest,
)
from clip2point.zeroshot import ZeroShotClassifier
from helpers import modelnet10_test, needs_data

CLASSES = ["bathtub", "bed", "chair", "desk", "dresser", "monitor", "night stand", "sofa", "table", "toilet"]


@pytest.fixture
def counted(tiny_backbone):
    """Images that go through the tiny backbone's CLIP visual tower (a list of batch sizes)."""
    calls: list[int] = []
    hook = tiny_backbone.model.visual.register_forward_hook(lambda m, inp, out: calls.append(inp[0].shape[0]))
    yield calls
    hook.remove()


@pytest.fixture(scope="module")
def shapes():
    pts, labels = modelnet10_test(6)
    return torch.from_numpy(pts[:, :256].copy()), labels


def renderer(views: str = "6", radius: float = 0.02, size: int = 224) -> DepthRenderer:
    return DepthRenderer(views, RasterSettings(size, radius))


@needs_data
def test_second_pass_encodes_nothing_and_gives_the_same_scores(tiny_backbone, counted, shapes, tmp_path):
    pts, _ = shapes
    cache = ViewFeatureCache(tmp_path)
    clf = ZeroShotClassifier(tiny_backbone, CLASSES, cache=cache)
    plain = ZeroShotClassifier(tiny_backbone, CLASSES).predict(pts, keep_depth=False)
    counted.clear()
    first = clf.predict(pts, keep_depth=False)
    assert sum(counted) == 6 * 6 and cache.stats.misses == 6 and cache.stats.written == 6
    torch.testing.assert_close(first.logits, plain.logits)  # the cache changes no number
    counted.clear()
    second = clf.predict(pts, keep_depth=True)  # depth still rendered for display, nothing encoded
    assert sum(counted) == 0 and cache.stats.hits == 6
    assert torch.equal(second.logits, first.logits) and second.depth.shape == (6, 6, 224, 224)
    # a batch with one new shape encodes that shape only
    counted.clear()
    clf.predict(torch.cat([pts[:2], pts[2:3] * 0.5]), keep_depth=False)
    assert sum(counted) == 6
    assert cache.info().entries == 7 and cache_info(tmp_path).bytes > 0


@needs_data
def test_raw_features_are_stored_and_normalised_on_request(tiny_backbone, shapes, tmp_path):
    pts, _ = shapes
    cache = ViewFeatureCache(tmp_path)
    (raw,), n = encode_point_views(tiny_backbone, renderer(), pts[:2], cache=cache, normalize=False)
    (unit,), m = encode_point_views(tiny_backbone, renderer(), pts[:2], cache=cache)
    assert (n, m) == (12, 0)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(2, 6))
    torch.testing.assert_close(unit, torch.nn.functional.normalize(raw, dim=-1))
    stored = cache.get(cache.settings_key(tiny_backbone, "clip", renderer()), shape_digest(pts[0]), 6)
    assert torch.equal(stored, raw[0])


def _tiny_weights(path: Path, model, scale: float = 0.0) -> Path:
    from safetensors.torch import save_file

    sd = {k: (v + scale * torch.ones_like(v) if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(path))
    return path


@needs_data
def test_keys_separate_everything_that_changes_features(tiny_backbone, shapes, tmp_path):
    pts, _ = shapes
    cache = ViewFeatureCache(tmp_path / "cache")
    key = cache.settings_key
    base = key(tiny_backbone, "clip", renderer())
    assert base == key(tiny_backbone, None, renderer()) and len(base) == 64
    assert base != key(tiny_backbone.with_precision("bf16"), "clip", renderer())   # precision
    assert base != key(tiny_backbone, "clip", renderer(views="10"))                # view set
    assert base != key(tiny_backbone, "clip", renderer(radius=0.03))               # render settings
    assert base != key(tiny_backbone, "clip", renderer(size=48))
    assert base != key(tiny_backbone, "clip", renderer(), {"autocast": "bfloat16"})
    # weights: the file's content decides, not its name
    a = load_backbone("tiny-ViT-test", weights=str(_tiny_weights(tmp_path / "a.safetensors", tiny_backbone.model)))
    a2 = load_backbone("tiny-ViT-test", weights=str(_tiny_weights(tmp_path / "a2.safetensors", tiny_backbone.model)))
    b = load_backbone("tiny-ViT-test", weights=str(_tiny_weights(tmp_path / "b.safetensors", tiny_backbone.model, 1e-3)))
    assert key(a, "clip", renderer()) == key(a2, "clip", renderer()) != key(b, "clip", renderer())
    assert key(a, "clip", renderer()) != base  # a file vs random weights
    assert (tmp_path / "cache" / "weights-digests.json").is_file()  # digests remembered across processes
    # tower: the depth encoder has its own key, and its file's digest is part of it
    d1 = tiny_backbone.with_depth_encoder(_tiny_weights(tmp_path / "d1.safetensors", tiny_backbone.model.visual, 1e-2))
    d2 = tiny_backbone.with_depth_encoder(_tiny_weights(tmp_path / "d2.safetensors", tiny_backbone.model.visual, 2e-2))
    assert len({base, key(d1, "depth", renderer()), key(d2, "depth", renderer())}) == 3
    assert key(d1, "clip", renderer()) == base
    assert key(tiny_backbone, tiny_backbone.model.visual, renderer()) is None  # an in-memory module: not cached
    # shape content
    moved = pts[0].clone()
    moved[0, 0] += 1e-6
    assert shape_digest(pts[0]) == shape_digest(pts[0].numpy()) != shape_digest(moved)
    assert shape_digest(pts[0]) != shape_digest(pts[0, :255])


def test_lru_eviction_keeps_the_folder_under_its_bound(tmp_path):
    one = ViewFeatureCache(tmp_path)
    one.put("s", "probe", torch.ones(6, 64))
    size = one.info().bytes
    one.clear()
    cache = ViewFeatureCache(tmp_path, max_bytes=int(3.5 * size))
    for i in range(3):
        cache.put("s", f"shape{i}", torch.full((6, 64), float(i)))
        os.utime(cache.path("s", f"shape{i}"), (1000 + i, 1000 + i))  # distinct last-use times
    assert cache.get("s", "shape0") is not None  # used now: the most recent
    cache.put("s", "shape3", torch.full((6, 64), 3.0))  # over the bound: the least recently used go
    info = cache.info()
    assert info.bytes <= 3.5 * size and cache.stats.evicted >= 1
    assert cache.get("s", "shape1") is None and cache.get("s", "shape0") is not None
    assert cache.get("s", "shape3") is not None
    for i in range(4, 20):
        cache.put("s", f"shape{i}", torch.full((6, 64), float(i)))
        assert cache.info().bytes <= cache.max_bytes


def _writer(root: str, value: float, rounds: int) -> None:
    cache = ViewFeatureCache(root)
    feats = torch.from_numpy(np.full((10, 64), value, dtype=np.float32))  # numpy: no torch thread pool in a forked child
    for _ in range(rounds):
        for i in range(8):
            cache.put("settings", f"shape{i}", feats)


def test_concurrent_writers_leave_whole_entries(tmp_path):
    # fork (where there is one) starts in milliseconds; a spawned child would spend seconds importing torch
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), v, 10)) for v in (1.0, 2.0)]
    for p in procs:
        p.start()
    reader = ViewFeatureCache(tmp_path)
    seen = 0
    while any(p.is_alive() for p in procs):
        for i in range(8):
            got = reader.get("settings", f"shape{i}", 10)
            if got is not None:  # never a partial or mixed entry
                seen += 1
                assert got.shape == (10, 64) and float(got[0, 0]) in (1.0, 2.0) and bool((got == got[0, 0]).all())
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert reader.stats.dropped == 0
    for i in range(8):
        assert float(reader.get("settings", f"shape{i}", 10)[0, 0]) in (1.0, 2.0)
    assert cache_info(tmp_path).entries == 8
    assert not [p for p in tmp_path.rglob(".*.tmp")]  # no temporary file left


@needs_data
def test_a_damaged_entry_is_dropped_and_encoded_again(tiny_backbone, counted, shapes, tmp_path):
    pts, _ = shapes
    cache = ViewFeatureCache(tmp_path)
    clf = ZeroShotClassifier(tiny_backbone, CLASSES, cache=cache)
    first = clf.predict(pts[:3], keep_depth=False)
    settings = cache.settings_key(tiny_backbone, "clip", clf.renderer)
    truncated, flipped = cache.path(settings, shape_digest(pts[0])), cache.path(settings, shape_digest(pts[1]))
    truncated.write_bytes(truncated.read_bytes()[:-10])
    data = bytearray(flipped.read_bytes())
    data[-5] ^= 0x40  # one float changed: the checksum catches it
    flipped.write_bytes(bytes(data))
    counted.clear()
    again = clf.predict(pts[:3], keep_depth=False)
    assert sum(counted) == 2 * 6 and cache.stats.dropped == 2
    torch.testing.assert_close(again.logits, first.logits)
    counted.clear()
    clf.predict(pts[:3], keep_depth=False)
    assert sum(counted) == 0


def test_info_and_clear(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    monkeypatch.delenv(CACHE_DIR_ENV)
    assert default_cache_dir() == Path.home() / ".cache" / "clip2point" / "views"
    assert cache_info(tmp_path / "missing").entries == 0 and not (tmp_path / "missing").exists()
    cache = ViewFeatureCache(tmp_path / "c")
    for i in range(5):
        cache.put("s", str(i), torch.zeros(6, 8))
    info = cache_info(tmp_path / "c")
    assert (info.entries, info.root) == (5, tmp_path / "c") and info.bytes > 0 and "5 entries" in info.describe()
    assert clear_cache(tmp_path / "c") == 5 and cache.info().entries == 0
    assert cache.get("s", "0") is None


@needs_data
def test_a_fewshot_run_with_another_gate_or_seed_encodes_only_shapes_not_seen(tiny_backbone, tmp_path):
    from clip2point.fewshot import FewShotConfig, make_splits, run_fewshot
    from helpers import DATA

    def config(name: str, **kw) -> FewShotConfig:
        return FewShotConfig(dataset="modelnet10", data_dir=str(DATA / "modelnet10"), out_dir=str(tmp_path / name),
                             shots=1, epochs=1, val_per_class=0, limit_test=10, num_points=256, plots=False, **kw)

    def encoded(result) -> int:
        return result.metrics["encoder_passes"]["this_session"]

    first = run_fewshot(config("a"), tiny_backbone, cache=ViewFeatureCache(tmp_path / "cache"))
    assert encoded(first) == (10 + 10) * 10  # shots and test shapes × 10 views
    other_gate = run_fewshot(config("b", gate="none"), tiny_backbone, cache=ViewFeatureCache(tmp_path / "cache"))
    assert encoded(other_gate) == 0
    feats = [load_state_dict_file(tmp_path / run / "features.safetensors")[0] for run in ("a", "b")]
    assert all(torch.equal(feats[0][k], feats[1][k]) for k in feats[0])  # the same features, read back
    # another seed draws other shots: only those not seen before are encoded, no test shape
    seen = [set(s.shots.tolist()) for s in (make_splits(config("a"))[2], make_splits(config("c", seed=1))[2])]
    other_seed = run_fewshot(config("c", seed=1), tiny_backbone, cache=ViewFeatureCache(tmp_path / "cache"))
    assert encoded(other_seed) == len(seen[1] - seen[0]) * 10 and other_seed.metrics["encoder_passes"].get("test", 0) == 0
