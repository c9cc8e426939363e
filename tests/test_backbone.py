"""CLIP backbone: weights lookup, safe checkpoint loading, depth-encoder import, text cache."""
from __future__ import annotations

import pickle

import pytest
import torch

from clip2point.backbone import (
    BackboneConfig, extract_visual_state_dict, load_backbone, resolve_weights,
)
from clip2point.errors import CheckpointError, Clip2PointError, WeightsNotFoundError
from clip2point.checkpoints import load_state_dict_file, save_state_dict_atomic


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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_checkpoint_weights_skip_the_random_init_and_equal_the_plain_load(tiny_backbone, tmp_path, monkeypatch, dtype):
    """Weights from a file go straight into a meta-built model: the same model as random init + load."""
    from clip2point.backbone import architecture

    sd = {k: v.to(dtype) for k, v in _perturbed(tiny_backbone.model.state_dict(), seed=4).items()}
    path = tmp_path / "tiny.pt"
    torch.save(sd, path)
    with monkeypatch.context() as m:
        m.setattr(architecture, "random_architecture", lambda *a: pytest.fail("random init was run"))
        fast = load_backbone("tiny-ViT-test", weights=str(path))
    monkeypatch.setattr(architecture, "_rebuild_causal_masks", lambda model: False)  # forces the plain way
    plain = load_backbone("tiny-ViT-test", weights=str(path))
    a, b = dict(fast.model.named_buffers()) | fast.model.state_dict(), dict(plain.model.named_buffers()) | plain.model.state_dict()
    assert a.keys() == b.keys() and "attn_mask" in a
    for k in a:
        assert a[k].dtype == b[k].dtype == torch.float32 and a[k].is_contiguous() and torch.equal(a[k], b[k]), k
    assert not any(t.is_meta for t in a.values())
    tokens = fast.tokenizer(["image of a chair", "x"])
    torch.testing.assert_close(fast.encode_text_tokens(tokens), plain.encode_text_tokens(tokens), rtol=0, atol=0)
    images = torch.randn(2, 3, 224, 224)
    torch.testing.assert_close(fast.encode_images(images), plain.encode_images(images), rtol=0, atol=0)


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
        tiny_backbone.with_depth_encoder(path)
    assert tiny_backbone.depth_encoder is None
    junk = tmp_path / "junk.pth"
    torch.save({"foo.bar": torch.zeros(2)}, junk)
    with pytest.raises(CheckpointError, match="no CLIP visual tower"):
        tiny_backbone.with_depth_encoder(junk)


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
    bb = bb.with_depth_encoder(path)
    images = torch.randn(2, 3, 224, 224)
    depth_features = bb.encode_images(images, "depth")
    bb.model.visual.load_state_dict(depth_sd)  # the same weights in the CLIP slot give the same features
    torch.testing.assert_close(depth_features, bb.encode_images(images, "clip"))


# ---------------------------------------------------------------------------------------------
# TorchScript archives (OpenAI's ViT-B-32.pt format) are read, never run


def _openai_like_archive(model: torch.nn.Module, path, image_size: int):
    """Trace a CLIP model the way OpenAI's .pt was made (fp16; the causal mask a plain attribute, not a buffer)."""
    import copy
    import warnings

    m = copy.deepcopy(model).eval().half()
    mask = m.attn_mask
    del m._buffers["attn_mask"]
    m.attn_mask = mask
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices
        traced = torch.jit.trace_module(m, {"forward": (torch.randn(1, 3, image_size, image_size).half(),
                                                        torch.zeros(1, 77, dtype=torch.long))})
        torch.jit.save(traced, path)
    return {k: v for k, v in m.state_dict().items() if k != "attn_mask"}


def test_torchscript_clip_archive_is_read_like_its_state_dict_without_running_it(tiny_backbone, tmp_path, monkeypatch):
    path = tmp_path / "tiny-ViT-test.pt"
    weights = _openai_like_archive(tiny_backbone.model, path, tiny_backbone.image_size)
    trusted = torch.jit.load(str(path)).state_dict()  # the test's own file: torch.jit.load is fine HERE
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("torch.jit.load called by clip2point"))
    sd, meta = load_state_dict_file(path)
    assert list(sd) == list(trusted) and meta == {}
    for k, v in trusted.items():
        assert sd[k].dtype == v.dtype == torch.float16 and sd[k].shape == v.shape and torch.equal(sd[k], v), k
    bb = load_backbone("tiny-ViT-test", weights=str(path))  # the OpenAI-format path end to end
    for k, v in bb.model.state_dict().items():
        if k in weights:
            torch.testing.assert_close(v, weights[k].float(), rtol=0, atol=0)


def test_scripted_archive_lists_parameters_and_buffers_like_state_dict(tmp_path):
    """Parameters and buffers (also non-persistent), in order; submodules, lists, shared modules;
    plain tensor attributes and TorchScript class objects are not weights (as in state_dict())."""
    import warnings

    @torch.jit.script
    class Box:
        def __init__(self, t: torch.Tensor):
            self.t = t

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("b", torch.arange(5.0))
            self.lin = torch.nn.Linear(3, 4)
            self.register_buffer("np", torch.ones(2), persistent=False)
            self.plain = torch.zeros(3)
            self.box = Box(torch.ones(7))
            self.ml = torch.nn.ModuleList([torch.nn.Linear(2, 2), torch.nn.LayerNorm(2)])
            self.shared = self.lin
            self.p = torch.nn.Parameter(torch.randn(2, 3, dtype=torch.float64).T)  # non-contiguous

        def forward(self, x):
            return self.lin(x) + self.b.sum() + self.plain.sum() + self.box.t.sum() + self.np.sum() + self.p.sum()

    path = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(M()), path)
    trusted = torch.jit.load(str(path)).state_dict()
    sd, _ = load_state_dict_file(path)
    assert list(sd) == list(trusted) and "plain" not in sd and not any(k.startswith("box") for k in sd)
    for k, v in trusted.items():
        assert torch.equal(sd[k], v) and sd[k].stride() == v.stride(), k


def _fake_torchscript(path, state: dict, records: dict[str, bytes], extra: dict[str, bytes] | None = None) -> None:
    """A TorchScript-layout zip whose data.pkl pickles a ``__torch__.Fake`` object with ``state``.

    Tensors in ``state`` are ``("tensor", key, numel, size, stride)`` tuples: storage ``key`` of
    ``numel`` float32 elements (its bytes: ``records[key]``) viewed with ``size``/``stride``.
    """
    import collections
    import io
    import sys
    import types
    import zipfile

    class Storage:
        def __init__(self, key, numel):
            self.key, self.numel = key, numel

    class View:
        def __init__(self, storage, size, stride):
            self.args = (storage, 0, size, stride, False, collections.OrderedDict())

        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, self.args)

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel) if isinstance(obj, Storage) else None

    mod = types.ModuleType("__torch__")
    Fake = type("Fake", (), {"__module__": "__torch__"})
    mod.Fake = Fake
    obj = Fake()
    obj.__dict__.update({k: View(Storage(v[1], v[2]), v[3], v[4]) if isinstance(v, tuple) else v for k, v in state.items()})
    sys.modules["__torch__"] = mod
    try:
        buf = io.BytesIO()
        Pickler(buf, protocol=2).dump(obj)
    finally:
        del sys.modules["__torch__"]
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("fake/data.pkl", buf.getvalue())
        z.writestr("fake/constants.pkl", pickle.dumps(()))
        for k, b in records.items():
            z.writestr(f"fake/data/{k}", b)
        for k, b in (extra or {}).items():
            z.writestr(f"fake/{k}", b)


def test_crafted_torchscript_archives_are_refused(tmp_path):
    ok = tmp_path / "ok.pt"
    _fake_torchscript(ok, {"training": True, "w": ("tensor", "0", 4, (2, 2), (2, 1))}, {"0": torch.arange(4.0).numpy().tobytes()})
    sd, _ = load_state_dict_file(ok)
    assert torch.equal(sd["w"], torch.arange(4.0).reshape(2, 2))  # the crafting itself is sound

    cases = {
        "short_record": ({"w": ("tensor", "0", 1000, (1000,), (1,))}, {"0": b"\0" * 16}, "declares 1,000"),
        "zero_stride": ({"w": ("tensor", "0", 1, (10**12,), (0,))}, {"0": b"\0" * 4}, "declares 1,000,000,000,000 elements"),
        "out_of_bounds": ({"w": ("tensor", "0", 4, (4, 4), (4, 1))}, {"0": b"\0" * 16}, "truncated or corrupt"),
        "missing_record": ({"w": ("tensor", "7", 4, (4,), (1,))}, {}, "no record fake/data/7"),
    }
    for name, (state, records, match) in cases.items():
        path = tmp_path / f"{name}.pt"
        _fake_torchscript(path, {"training": True, **state}, records)
        with pytest.raises(CheckpointError, match=match):
            load_state_dict_file(path)
    # a global outside the allow-list (here: os.system) is refused before anything is called
    evil = tmp_path / "global.pt"
    _fake_torchscript(evil, {"training": True, "w": ("tensor", "0", 4, (4,), (1,))}, {"0": b"\0" * 16})
    import zipfile

    with zipfile.ZipFile(evil) as z:
        data = z.read("fake/data.pkl").replace(b"collections\nOrderedDict\n", b"posix\nsystem\n")
        members = {n: z.read(n) for n in z.namelist() if n != "fake/data.pkl"}
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("fake/data.pkl", data)
        for n, b in members.items():
            z.writestr(n, b)
    with pytest.raises(CheckpointError, match="refused.*posix.system"):
        load_state_dict_file(evil)
    # a pickle opcode declaring 1 TB of data in a tiny file is caught before anything is allocated
    import struct

    lying = tmp_path / "lying.pt"
    with zipfile.ZipFile(lying, "w") as z:
        z.writestr("fake/data.pkl", b"\x80\x05\x96" + struct.pack("<Q", 2**40) + b"abc")
        z.writestr("fake/constants.pkl", b"")
    with pytest.raises(CheckpointError, match="data.pkl is malformed"):
        load_state_dict_file(lying)
    # code that defines __setstate__ is refused even when the pickled state looks like plain attributes
    hook = tmp_path / "hook.pt"
    _fake_torchscript(hook, {"training": True}, {}, {"code/__torch__.py": b"class Fake(Module):\n  def __setstate__(self, s):\n    pass\n"})
    with pytest.raises(CheckpointError, match="defines __setstate__"):
        load_state_dict_file(hook)


def test_zip_bombs_and_broadcast_views_are_refused_before_allocating(tmp_path):
    import zipfile

    bomb = tmp_path / "bomb.pt"
    torch.save({"w": torch.zeros(4)}, bomb)
    with zipfile.ZipFile(bomb) as z:
        members = {n: z.read(n) for n in z.namelist()}
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for n, b in members.items():
            z.writestr(n, b)
        z.writestr("bomb/extra", b"\0" * (64 << 20))  # 64 MB of zeros compress to ~64 KB
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(CheckpointError, match="zip bomb"):
        load_state_dict_file(bomb)
    view = tmp_path / "view.pt"
    torch.save({"w": torch.zeros(1).expand(10**9)}, view)  # torch.save keeps the 1-element storage
    assert view.stat().st_size < 10_000
    with pytest.raises(CheckpointError, match="1,000,000,000 elements"):
        load_state_dict_file(view)
    small = tmp_path / "small_view.pt"
    torch.save({"w": torch.zeros(1).expand(16)}, small)  # tiny broadcast views are fine
    assert load_state_dict_file(small)[0]["w"].shape == (16,)


def test_unreadable_checkpoints_say_why(tmp_path):
    loop = tmp_path / "loop.pt"
    loop.symlink_to(loop)
    with pytest.raises(CheckpointError, match="symlink loop") as e:
        load_state_dict_file(loop)
    assert "not found" not in str(e.value)
    with pytest.raises(CheckpointError, match="is a folder"):
        load_state_dict_file(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        load_state_dict_file(tmp_path / "missing.pt")
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="not a folder"):
        load_state_dict_file(tmp_path / "file" / "x.pt")


# ---------------------------------------------------------------------------------------------
# atomic writes


def test_atomic_save_keeps_the_umask_and_never_changes_it(tmp_path):
    import os

    old = os.umask(0o027)
    try:
        path = save_state_dict_atomic({"a": torch.zeros(2)}, tmp_path / "x.safetensors")
        assert os.umask(0o027) == 0o027  # unchanged by the write
        assert (path.stat().st_mode & 0o777) == 0o640
    finally:
        os.umask(old)


def test_write_failures_are_one_clear_error_and_leave_no_temp_file(tmp_path, monkeypatch):
    import safetensors.torch
    from safetensors import SafetensorError

    from clip2point.checkpoints import write_json_atomic

    def full(*a, **k):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(CheckpointError, match=r"x\.safetensors: cannot write it: disk full"):
        save_state_dict_atomic({"a": torch.zeros(2)}, tmp_path / "x.safetensors")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is a file, not a folder"):
        save_state_dict_atomic({"a": torch.zeros(2)}, tmp_path / "file" / "x.safetensors")
    with pytest.raises(Clip2PointError, match="is a file, not a folder"):
        write_json_atomic(tmp_path / "file" / "x.json", {})


def test_file_size_limit_in_a_child_process_gives_a_clear_error(tmp_path):
    """A real write failure (EFBIG under RLIMIT_FSIZE, SIGXFSZ ignored), the way a full disk fails."""
    import subprocess
    import sys

    code = f"""
import resource, signal, torch
from clip2point.checkpoints import save_state_dict_atomic, write_json_atomic
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
for write in (lambda: save_state_dict_atomic({{"a": torch.zeros(100_000)}}, {str(tmp_path / "x.safetensors")!r}),
              lambda: write_json_atomic({str(tmp_path / "x.json")!r}, list(range(100_000)))):
    try:
        write()
    except ValueError as e:
        print(type(e).__name__, e)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 0 and len(lines) == 2, out.stderr[-2000:]
    assert lines[0].startswith("CheckpointError") and "x.safetensors: cannot write it: file too large" in lines[0]
    assert lines[1].startswith("Clip2PointError") and "x.json: cannot write it: file too large" in lines[1]
    assert list(tmp_path.iterdir()) == []


def test_kill_9_mid_write_leaves_a_temp_that_the_next_write_removes(tmp_path):
    import os
    import subprocess
    import sys

    target = tmp_path / "last.safetensors"
    code = f"""
import os, signal, torch, safetensors.torch
from clip2point.checkpoints import save_state_dict_atomic, write_json_atomic
real = safetensors.torch.save_file
def killed(tensors, path, metadata=None):
    real(tensors, path, metadata)  # safetensors' own temp + rename, inside our temp folder
    open(os.path.join(os.path.dirname(path), ".tmpXYZ"), "wb").write(b"half")  # as if killed in the middle
    os.kill(os.getpid(), signal.SIGKILL)
safetensors.torch.save_file = killed
save_state_dict_atomic({{"a": torch.zeros(4)}}, {str(target)!r})
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == -9, out.stderr[-2000:]
    orphans = [p.name for p in tmp_path.iterdir()]
    assert len(orphans) == 1 and orphans[0].startswith(".last.safetensors.") and orphans[0].endswith(".tmp"), orphans
    # a JSON temp file of a dead writer, and a very old one of a live process id (ours), are removed too
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (tmp_path / f".meta.json.{dead}.0123abcd.tmp").write_text("{")
    old = tmp_path / f".meta.json.{os.getpid()}.4567abcd.tmp"
    old.write_text("{")
    os.utime(old, (0, 0))
    fresh = tmp_path / f".meta.json.{os.getpid()}.89abcdef.tmp"  # another thread of ours may be writing it
    fresh.write_text("{")
    from clip2point.checkpoints import write_json_atomic

    save_state_dict_atomic({"a": torch.ones(4)}, target)
    write_json_atomic(tmp_path / "meta.json", {"ok": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["last.safetensors", "meta.json", fresh.name])
    assert torch.equal(load_state_dict_file(target)[0]["a"], torch.ones(4))


def test_model_image_size_reads_the_config_without_building_a_model():
    from clip2point.backbone import DEFAULT_MODEL, model_image_size

    assert DEFAULT_MODEL == "ViT-B-32"
    assert model_image_size(DEFAULT_MODEL) == 224
    assert model_image_size("tiny-ViT-test") == 224
    assert model_image_size("no-such-model") == 224


# ---------------------------------------------------------------------------------------------
# The depth encoder's own architecture (issue 11 item 9): an OpenAI-CLIP ViT, always QuickGELU


def test_depth_encoder_uses_quick_gelu_even_next_to_a_gelu_clip_model(tmp_path):
    from open_clip.transformer import QuickGELU

    from clip2point.backbone import depth_encoder_architecture, visual_activation

    gelu_bb = load_backbone("tiny-ViT-test", weights="random")  # its config says QuickGELU: swapped to GELU below
    gelu_visual = depth_encoder_architecture(gelu_bb.model.visual, quick_gelu=False)
    assert visual_activation(gelu_visual) == "gelu" and visual_activation(gelu_bb.model.visual) == "quick_gelu"
    gelu_bb.model.visual = gelu_visual  # a CLIP model with GELU, as open_clip's non-OpenAI weights have
    depth_sd = _perturbed(gelu_visual.state_dict(), seed=7)
    path = tmp_path / "best_eval.pth"
    torch.save(_released_layout(depth_sd, gelu_visual.state_dict()), path)
    paired = gelu_bb.with_depth_encoder(path)
    assert visual_activation(paired.depth_encoder) == "quick_gelu"
    assert visual_activation(paired.model.visual) == "gelu"  # the CLIP model keeps its own
    assert isinstance(paired.depth_encoder.transformer.resblocks[1].mlp.gelu, QuickGELU)
    images = torch.randn(2, 3, 224, 224)
    reference = depth_encoder_architecture(gelu_visual, quick_gelu=True)
    reference.load_state_dict(depth_sd)
    torch.testing.assert_close(paired.encode_images(images, "depth"), paired.encode_images(images, reference))
    gelu_twin = depth_encoder_architecture(gelu_visual, quick_gelu=False)
    gelu_twin.load_state_dict(depth_sd)
    assert not torch.allclose(paired.encode_images(images, "depth"), paired.encode_images(images, gelu_twin), atol=1e-4)


def test_depth_encoder_activation_recorded_in_the_file_is_honoured(tiny_backbone, tmp_path):
    from clip2point.backbone import load_depth_encoder, visual_activation

    sd = tiny_backbone.model.visual.state_dict()
    gelu_file = save_state_dict_atomic(sd, tmp_path / "gelu.safetensors", {"format": "clip2point-depth-encoder/1", "activation": "gelu"})
    assert visual_activation(load_depth_encoder(gelu_file, tiny_backbone.model.visual)) == "gelu"
    assert visual_activation(load_depth_encoder(gelu_file, tiny_backbone.model.visual, quick_gelu=True)) == "quick_gelu"
    old_export = {"format": "clip2point-depth-encoder/1", "model_name": "ViT-B-32",
                  "init_weights": "tag laion2b_s34b_b79k (open_clip cache)"}  # trained from a GELU tower
    old_file = save_state_dict_atomic(sd, tmp_path / "old.safetensors", old_export)
    assert visual_activation(load_depth_encoder(old_file, tiny_backbone.model.visual)) == "gelu"
    plain = save_state_dict_atomic(sd, tmp_path / "plain.safetensors", {"format": "clip2point-depth-encoder/1"})
    assert visual_activation(load_depth_encoder(plain, tiny_backbone.model.visual)) == "quick_gelu"


@pytest.mark.parametrize("meta, expected", [
    ({}, None),
    ({"activation": "quick_gelu"}, True),
    ({"activation": "gelu"}, False),
    ({"format": "clip2point-depth-encoder/1", "model_name": "ViT-B-32", "init_weights": "tag openai (download)"}, True),
    ({"format": "clip2point-depth-encoder/1", "model_name": "ViT-B-32", "init_weights": "tag laion400m_e32 (explicit)"}, True),
    ({"format": "clip2point-depth-encoder/1", "model_name": "ViT-B-32", "init_weights": "tag datacomp_xl_s13b_b90k (x)"}, False),
    ({"format": "clip2point-depth-encoder/1", "model_name": "ViT-B-32", "init_weights": "file /w/ViT-B-32.pt (explicit)"}, None),
    ({"format": "something-else", "model_name": "ViT-B-32", "init_weights": "tag laion2b_e16 (x)"}, None),
])
def test_trained_activation_from_metadata(meta, expected):
    from clip2point.backbone.depth import _trained_activation

    assert _trained_activation(meta) is expected


def test_depth_encoder_architecture_copies_without_touching_the_template(tiny_backbone):
    from clip2point.backbone import depth_encoder_architecture, visual_activation

    template = tiny_backbone.model.visual
    before = {k: v.clone() for k, v in template.state_dict().items()}
    copy_ = depth_encoder_architecture(template, quick_gelu=False)
    assert copy_ is not template and visual_activation(template) == "quick_gelu" and visual_activation(copy_) == "gelu"
    for k, v in template.state_dict().items():
        assert torch.equal(v, before[k]) and torch.equal(copy_.state_dict()[k], v)
        assert copy_.state_dict()[k].data_ptr() != v.data_ptr()


# ---------------------------------------------------------------------------------------------
# Start-up (issue 11 item 3): open_clip is imported without torch._dynamo and timm


_DEFERRED_IMPORT_CHILD = r'''
import json, sys
import torch
import clip2point.backbone as b

b.open_clip_module()
assert "torchvision" in sys.modules and "open_clip" in sys.modules
assert "torch._dynamo" not in sys.modules and "timm" not in sys.modules, "deferred"
bb = b.load_backbone("tiny-ViT-test", weights="random")
bb.encode_images(torch.zeros(1, 3, 224, 224)), bb.text_features(["chair"])
assert "torch._dynamo" not in sys.modules, "CLIP2Point's path never needs dynamo"

forwarded = sys.modules["torchvision.ops.roi_align"].is_compile_supported("cpu")  # torchvision's only use
from torch._dynamo.utils import is_compile_supported
assert forwarded == is_compile_supported("cpu")
import torch._dynamo
assert torch._dynamo.reset and torch.compile(lambda x: x + 1, backend="eager")(torch.ones(1)).item() == 2.0

config = {"embed_dim": 64,
          "vision_cfg": {"timm_model_name": "vit_tiny_patch16_224", "timm_model_pretrained": False, "timm_pool": "",
                         "timm_proj": "linear", "image_size": 224},
          "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
with open(sys.argv[1] + "/tiny-timm-test.json", "w") as f:
    json.dump(config, f)
b.open_clip_module().add_model_config(sys.argv[1])
model = b.build_architecture("tiny-timm-test")  # a timm trunk: timm is brought back on demand
assert type(model.visual).__name__ == "TimmModel" and "timm" in sys.modules
print("ok")
'''


def test_open_clip_is_imported_without_dynamo_and_timm_and_both_still_work(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _DEFERRED_IMPORT_CHILD, str(tmp_path)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_raw_image_features_are_the_unnormalised_tower_outputs(tiny_backbone):
    images = torch.randn(2, 3, 3, 224, 224)
    raw = tiny_backbone.encode_images(images, normalize=False, batch_size=4)
    assert raw.dtype is torch.float32 and raw.shape == (2, 3, tiny_backbone.embed_dim)
    torch.testing.assert_close(torch.nn.functional.normalize(raw, dim=-1), tiny_backbone.encode_images(images))
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(2, 3))
    bf16 = tiny_backbone.with_precision("bf16").encode_images(images, normalize=False)
    assert bf16.dtype is torch.float32 and torch.nn.functional.cosine_similarity(raw, bf16, dim=-1).min() >= 0.999
