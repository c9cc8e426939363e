"""CLIP backbone: weights lookup, safe checkpoint loading, depth-encoder import, text cache."""
from __future__ import annotations

import pickle

import pytest
import torch

from clip2point.backbone import (
    BackboneConfig, extract_visual_state_dict, load_backbone, resolve_weights,
)
from clip2point.errors import CheckpointError, Clip2PointError, WeightsNotFoundError
from clip2point.weights import load_state_dict_file, save_state_dict_atomic


def _released_layout(visual_sd: dict, image_sd: dict) -> dict:
    """A state dict in the key layout of CLIP2Point's released best_eval.pth (REFERENCE §3)."""
    sd = {f"module.point_model.{k}": v.clone() for k, v in visual_sd.items()}
    sd.update({f"module.image_model.{k}": v.clone() for k, v in image_sd.items()})
    sd["module.weights"] = torch.ones(1)
    return sd


def _perturbed(sd: dict, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: v + 0.01 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v for k, v in sd.items()}


def test_text_features_are_normalised_and_cached(tiny_backbone):
    a = tiny_backbone.text_features(["chair", "table"], "image of a {}")
    assert a.shape == (2, tiny_backbone.embed_dim)
    torch.testing.assert_close(a.norm(dim=1), torch.ones(2))
    assert tiny_backbone.text_features(["chair", "table"], "image of a {}") is a  # cached
    b = tiny_backbone.text_features(["chair", "table"], "a depth map of a {}")
    assert not torch.allclose(a, b)
    with pytest.raises(Clip2PointError, match="placeholder"):
        tiny_backbone.text_features(["chair"], "image of a chair")


def test_truncated_text_encoding_equals_open_clip(tiny_backbone):
    tokens = tiny_backbone.tokenizer(["image of a chair", "a depth map of a night stand", "x"])
    full = torch.nn.functional.normalize(tiny_backbone.model.encode_text(tokens), dim=-1).detach()
    torch.testing.assert_close(tiny_backbone.encode_text_tokens(tokens), full, atol=1e-5, rtol=1e-5)


def test_no_weights_found_lists_where_it_looked():
    with pytest.raises(WeightsNotFoundError) as e:
        resolve_weights(BackboneConfig("ViT-B-32"))
    msg = str(e.value)
    assert "CLIP2POINT_WEIGHTS" in msg and "weights folders" in msg and "--weights random" in msg


def test_explicit_random_and_bad_choices():
    assert resolve_weights(BackboneConfig("ViT-B-32", "random")).is_random
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        resolve_weights(BackboneConfig("ViT-B-32", "missing/ViT-B-32.pt"))
    with pytest.raises(WeightsNotFoundError, match="neither a file nor a pretrained tag"):
        resolve_weights(BackboneConfig("ViT-B-32", "not-a-tag"))
    with pytest.raises(WeightsNotFoundError, match="not downloaded"):  # offline in tests
        resolve_weights(BackboneConfig("ViT-B-32", "openai"))
    with pytest.raises(Clip2PointError, match="unknown CLIP model"):
        resolve_weights(BackboneConfig("ViT-Q-99"))


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_loads_full_clip_checkpoint_files(tiny_backbone, tmp_path, fmt):
    sd = _perturbed(tiny_backbone.model.state_dict())
    path = tmp_path / f"tiny.{fmt}"
    if fmt == "pt":
        torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)  # DataParallel + wrapper
    else:
        save_state_dict_atomic(sd, path)
    bb = load_backbone("tiny-ViT-test", weights=str(path))
    assert bb.weights.kind == "file" and bb.weights.found_by == "explicit"
    for k, v in bb.model.state_dict().items():
        torch.testing.assert_close(v, sd[k])


def test_weights_from_env_and_weights_folder(tiny_backbone, tmp_path, monkeypatch):
    path = tmp_path / "tiny-ViT-test-mine.pt"
    torch.save(tiny_backbone.model.state_dict(), path)
    monkeypatch.setenv("CLIP2POINT_WEIGHTS", str(path))
    assert resolve_weights(BackboneConfig("tiny-ViT-test")).found_by == "$CLIP2POINT_WEIGHTS"
    monkeypatch.delenv("CLIP2POINT_WEIGHTS")
    monkeypatch.setattr("clip2point.backbone.find_weight_files", lambda prefix: [path] if prefix == "tiny-ViT-test" else [])
    src = resolve_weights(BackboneConfig("tiny-ViT-test"))
    assert (src.kind, src.location, src.found_by) == ("file", str(path), "weights folder")


def test_corrupt_truncated_and_unsafe_checkpoints_are_refused(tiny_backbone, tmp_path):
    good = tmp_path / "good.pt"
    torch.save(tiny_backbone.model.state_dict(), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_backbone("tiny-ViT-test", weights=str(truncated))
    unsafe = tmp_path / "unsafe.pt"
    with open(unsafe, "wb") as f:
        pickle.dump({"x": Clip2PointError("not a tensor")}, f)  # arbitrary Python object
    with pytest.raises(CheckpointError, match="refused"):
        load_state_dict_file(unsafe)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_state_dict_file(empty)
    wrong = tmp_path / "wrong.pt"
    torch.save({"visual.proj": torch.zeros(3, 3)}, wrong)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_backbone("tiny-ViT-test", weights=str(wrong))


def test_imports_released_clip2point_depth_encoder(tiny_backbone, tmp_path):
    visual = tiny_backbone.model.visual.state_dict()
    depth_sd = _perturbed(visual, seed=3)
    path = tmp_path / "best_eval.pth"
    torch.save(_released_layout(depth_sd, visual), path)
    extracted, layout = extract_visual_state_dict(torch.load(path, weights_only=True))
    assert layout == "clip2point-release" and set(extracted) == set(visual)

    bb = load_backbone("tiny-ViT-test", weights="random", depth_encoder=path)
    for k, v in bb.depth_encoder.state_dict().items():
        torch.testing.assert_close(v, depth_sd[k])
    assert not any(p.requires_grad for p in bb.depth_encoder.parameters())
    images = torch.randn(2, 3, 224, 224)
    clip_f, depth_f = bb.encode_images(images, "clip"), bb.encode_images(images, "depth")
    assert clip_f.shape == depth_f.shape == (2, bb.embed_dim) and not torch.allclose(clip_f, depth_f)
    with pytest.raises(CheckpointError, match="depth-encoder checkpoint"):  # wrong slot: CLIP weights
        load_backbone("tiny-ViT-test", weights=str(path))


def test_depth_encoder_of_another_architecture_is_a_clear_error(tiny_backbone, tmp_path):
    sd = {f"module.point_model.{k}": v for k, v in tiny_backbone.model.visual.state_dict().items()}
    sd["module.point_model.conv1.weight"] = torch.zeros(768, 3, 32, 32)  # ViT-B-32's shape
    path = tmp_path / "best_eval.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="wrong shape"):
        tiny_backbone.set_depth_encoder(path)
    assert tiny_backbone.depth_encoder is None
    junk = tmp_path / "junk.pth"
    torch.save({"foo.bar": torch.zeros(2)}, junk)
    with pytest.raises(CheckpointError, match="no CLIP visual tower"):
        tiny_backbone.set_depth_encoder(junk)


def test_encoder_choice_errors(tiny_backbone):
    with pytest.raises(Clip2PointError, match="no depth encoder"):
        tiny_backbone.visual("depth")
    with pytest.raises(Clip2PointError):
        tiny_backbone.visual("rgb")


def test_atomic_save_leaves_no_temp_files(tmp_path):
    path = save_state_dict_atomic({"a": torch.arange(3.0)}, tmp_path / "sub" / "x.safetensors", {"format": "test"})
    sd, meta = load_state_dict_file(path)
    assert torch.equal(sd["a"], torch.arange(3.0)) and meta == {"format": "test"}
    assert [p.name for p in path.parent.iterdir()] == ["x.safetensors"]


@pytest.mark.slow
def test_real_vit_b_32_architecture_with_released_depth_encoder_layout(tmp_path):
    """The real ViT-B/32 (random init): OpenAI's QuickGELU, 512-d features, best_eval.pth import."""
    from open_clip.transformer import QuickGELU

    torch.manual_seed(0)
    bb = load_backbone("ViT-B-32", weights="random")
    assert bb.embed_dim == 512 and bb.image_size == 224
    assert isinstance(bb.model.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)
    visual = bb.model.visual.state_dict()
    assert {"conv1.weight", "class_embedding", "positional_embedding", "ln_pre.weight", "ln_post.weight", "proj"} <= set(visual)
    tokens = bb.tokenizer(["image of a bathtub", "image of a night stand"])
    torch.testing.assert_close(bb.encode_text_tokens(tokens), torch.nn.functional.normalize(bb.model.encode_text(tokens), dim=-1).detach(),
                               atol=1e-5, rtol=1e-5)
    depth_sd = _perturbed(visual, seed=5)
    path = tmp_path / "best_eval.pth"
    torch.save(_released_layout(depth_sd, visual), path)
    bb.set_depth_encoder(path)
    images = torch.randn(2, 3, 224, 224)
    depth_features = bb.encode_images(images, "depth")
    bb.model.visual.load_state_dict(depth_sd)  # the same weights in the CLIP slot give the same features
    torch.testing.assert_close(depth_features, bb.encode_images(images, "clip"))
