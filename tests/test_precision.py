"""Encoder precision (issue 11 item 1): bf16 weights agree with fp32, "auto" picks bf16 only where it is native."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from helpers import modelnet10_test, needs_data

from clip2point.backbone import precision as precision_mod
from clip2point.backbone import PRECISIONS, load_backbone, resolve_precision
from clip2point.errors import Clip2PointError
from clip2point.render import DepthRenderer, RasterSettings, clip_normalize, get_view_set


def _released_layout(visual_sd: dict) -> dict:
    return {f"module.point_model.{k}": v.clone() + 0.01 for k, v in visual_sd.items()}


def _cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1).flatten()


def _real_views(views: str = "6") -> torch.Tensor:
    """One real ModelNet10 test shape per class, rendered: (10, V, 3, 224, 224) CLIP input."""
    points, labels = modelnet10_test()
    first = [int(np.flatnonzero(labels == c)[0]) for c in range(10)]
    depth = DepthRenderer(get_view_set(views), RasterSettings(224, 0.02))(torch.from_numpy(points[first]))
    return clip_normalize(depth)


# --- choosing the precision -------------------------------------------------------------------


@pytest.fixture
def cpu_flags(monkeypatch):
    """Pretend the CPU has the given /proc/cpuinfo flags (None: no /proc/cpuinfo)."""

    def set_flags(flags: str | None, torch_probe: bool = False) -> None:
        monkeypatch.setattr(precision_mod, "_cpu_flags", lambda: None if flags is None else frozenset(flags.split()))
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: torch_probe, raising=False)

    return set_flags


def test_precision_names_and_the_fp32_default():
    assert PRECISIONS == ("fp32", "bf16", "auto")
    assert resolve_precision("fp32", "cpu")[0] is torch.float32
    assert resolve_precision("FP32")[0] is torch.float32
    with pytest.raises(Clip2PointError, match="fp32, bf16, auto"):
        resolve_precision("fp16", "cpu")


@pytest.mark.parametrize("flags, expected, said", [
    ("fpu sse2 avx2 avx512f avx512_bf16", torch.bfloat16, "avx512_bf16"),
    ("fpu avx512f amx_tile amx_bf16", torch.bfloat16, "amx_bf16"),
    ("fpu sse2 avx2 avx512f", torch.float32, "no native bf16"),
    ("fp asimd sve bf16", torch.float32, "ARM"),  # aarch64 "Features": not chosen automatically
])
def test_auto_reads_the_cpu_flags(cpu_flags, flags, expected, said):
    cpu_flags(flags)
    dtype, reason = resolve_precision("auto", "cpu")
    assert dtype is expected and said in reason
    assert reason.startswith("bf16 (auto)" if expected is torch.bfloat16 else "fp32 (auto)")


def test_auto_without_proc_cpuinfo_asks_torch_else_stays_fp32(cpu_flags):
    cpu_flags(None, torch_probe=False)
    dtype, reason = resolve_precision("auto", "cpu")
    assert dtype is torch.float32 and "cannot tell" in reason
    cpu_flags(None, torch_probe=True)
    assert resolve_precision("auto", "cpu")[0] is torch.bfloat16


def test_explicit_bf16_is_honoured_and_warns_where_not_native(cpu_flags):
    cpu_flags("fpu avx2")
    dtype, reason = resolve_precision("bf16", "cpu")
    assert dtype is torch.bfloat16 and "slower" in reason
    cpu_flags("avx512_bf16")
    assert resolve_precision("bf16", "cpu") == (torch.bfloat16, "bf16: requested")


def test_auto_on_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_precision("auto", "cuda") == (torch.float32, "fp32 (auto): CUDA is not available")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.version, "hip", None)
    for major, expected in ((8, torch.bfloat16), (9, torch.bfloat16), (7, torch.float32)):
        props = types.SimpleNamespace(major=major, minor=0, name="GPU")
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index, p=props: p)
        dtype, reason = resolve_precision("auto", "cuda:0")
        assert dtype is expected and f"compute capability {major}.0" in reason
    assert resolve_precision("auto", "mps")[0] is torch.float32  # conservative elsewhere


def test_real_proc_cpuinfo_is_read():
    precision_mod._cpu_flags.cache_clear()
    flags = precision_mod._cpu_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo on this system")
    assert flags and all(isinstance(f, str) for f in flags)
    dtype, reason = resolve_precision("auto", "cpu")
    assert (dtype is torch.bfloat16) == bool({"avx512_bf16", "amx_bf16"} & flags), reason


# --- bf16 weights ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_pair():
    """The tiny test model in fp32 and as a bf16 copy sharing its text cache."""
    fp32 = load_backbone("tiny-ViT-test", weights="random")
    return fp32, fp32.with_precision("bf16")


def test_default_stays_fp32(tiny_pair):
    fp32, _ = tiny_pair
    assert fp32.precision == "fp32" and fp32.dtype is torch.float32
    assert all(p.dtype is torch.float32 for p in fp32.model.parameters())
    assert "fp32" in fp32.precision_reason and "bf16" not in fp32.describe()


def test_bf16_converts_weights_not_autocast_and_keeps_the_temperature(tiny_pair):
    fp32, bf16 = tiny_pair
    assert bf16.precision == "bf16" and bf16.dtype is torch.bfloat16 and bf16.precision_reason == "bf16: requested"
    assert fp32.precision == "fp32"  # the original is untouched
    params = dict(bf16.model.named_parameters())
    assert params["logit_scale"].dtype is torch.float32 and bf16.logit_scale == fp32.logit_scale
    assert all(p.dtype is torch.bfloat16 for n, p in params.items() if n != "logit_scale")
    assert ", bf16" in bf16.describe()
    assert bf16.with_precision("bf16").model is bf16.model  # same precision: shared, not copied


def test_loaded_bf16_matches_with_precision(tiny_pair):
    _, converted = tiny_pair
    loaded = load_backbone("tiny-ViT-test", weights="random", precision="bf16")
    assert loaded.precision == "bf16"
    for (name, a), b in zip(loaded.model.state_dict().items(), converted.model.state_dict().values()):
        assert a.dtype == b.dtype and torch.equal(a, b), name


def test_features_come_back_float32_normalised_and_agree(tiny_pair):
    fp32, bf16 = tiny_pair
    images = torch.randn(2, 3, 3, 224, 224)
    a, b = fp32.encode_images(images), bf16.encode_images(images, batch_size=4)
    assert b.dtype is torch.float32 and b.shape == a.shape == (2, 3, fp32.embed_dim)
    torch.testing.assert_close(b.norm(dim=-1), torch.ones(2, 3))
    assert _cosines(a, b).min() >= 0.999
    t32, t16 = fp32.text_features(["chair", "night stand"]), bf16.text_features(["chair", "night stand"])
    assert t16.dtype is torch.float32 and _cosines(t32, t16).min() >= 0.999
    tokens = bf16.tokenizer(["image of a chair", "x"])  # truncated text path == open_clip's, in bf16
    full = torch.nn.functional.normalize(bf16.model.encode_text(tokens).float(), dim=-1)
    assert _cosines(bf16.encode_text_tokens(tokens), full).min() >= 0.999


def test_text_cache_keys_on_precision(tiny_pair):
    fp32, bf16 = tiny_pair
    classes = ["bathtub", "bed", "sofa"]
    a = fp32.text_features(classes, "a depth map of a {}")
    b = bf16.text_features(classes, "a depth map of a {}")
    assert a is not b and not torch.equal(a, b)  # one shared cache, two entries
    assert fp32.text_features(classes, "a depth map of a {}") is a
    assert bf16.text_features(classes, "a depth map of a {}") is b
    assert fp32._text_cache is bf16._text_cache
    assert {k[0] for k in fp32._text_cache._entries if k[1] == ("a depth map of a {}",)} == {"fp32", "bf16"}


def test_depth_encoder_follows_precision(tiny_pair, tmp_path):
    fp32, bf16 = tiny_pair
    path = tmp_path / "best_eval.pth"
    torch.save(_released_layout(fp32.model.visual.state_dict()), path)
    loaded = load_backbone("tiny-ViT-test", weights="random", precision="bf16", depth_encoder=path)
    paired32, paired16 = fp32.with_depth_encoder(path), bf16.with_depth_encoder(path)
    converted = paired32.with_precision("bf16")
    images = torch.randn(4, 3, 224, 224)
    reference = paired32.encode_images(images, "depth")
    for bb in (loaded, paired16, converted):
        assert bb.precision == "bf16"
        assert all(p.dtype is torch.bfloat16 for p in bb.depth_encoder.parameters())
        feats = bb.encode_images(images, "depth")
        assert feats.dtype is torch.float32 and _cosines(reference, feats).min() >= 0.999
    assert paired32.depth_encoder.conv1.weight.dtype is torch.float32  # converting made a copy
    # an in-memory module (e.g. the encoder being pre-trained) is used as given, in its own dtype
    live = paired32.depth_encoder
    feats = bf16.with_depth_encoder(live, name="live").encode_images(images, "depth")
    torch.testing.assert_close(feats, reference)


@needs_data
def test_bf16_agrees_with_fp32_on_real_modelnet10_views_tiny(tiny_pair):
    fp32, bf16 = tiny_pair
    views = _real_views("10")
    assert _cosines(fp32.encode_images(views), bf16.encode_images(views)).min() >= 0.999


@pytest.mark.slow
@needs_data
def test_bf16_agrees_with_fp32_on_real_modelnet10_views_vit_b_32():
    """ViT-B-32 (random weights): bf16 vs fp32 features of 10 real shapes × 6 views, cosine ≥ 0.999."""
    fp32 = load_backbone("ViT-B-32", weights="random")
    bf16 = fp32.with_precision("bf16")
    views = _real_views("6")
    cos = _cosines(fp32.encode_images(views), bf16.encode_images(views))
    assert cos.numel() == 60 and cos.min() >= 0.999, cos.min()
    t = _cosines(fp32.text_features(["chair", "night stand", "toilet"]), bf16.text_features(["chair", "night stand", "toilet"]))
    assert t.min() >= 0.999
