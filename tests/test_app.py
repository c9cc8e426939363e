"""The app (ui/): session logic, figures, and the running server driven through gradio_client.

The server runs in-process on a free port with the tiny random ``tiny-ViT-test`` model, so these
tests exercise the real code paths (upload → render → encode → score, the queue, errors) in
seconds. Real ModelNet10 shapes come from ``../shared/data`` (tests needing them skip otherwise).
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from clip2point.errors import CheckpointError, Clip2PointError, PointCloudFileError, UnknownClassSetError
from clip2point.io import convert_up_axis, load_point_cloud
from clip2point.render import render_depth
from clip2point.viewcache import ViewFeatureCache
from clip2point.checkpoints import save_state_dict_atomic
from clip2point.zeroshot import ZeroShotClassifier
from ui import figures
from ui.batcher import EncodeBatcher
from ui.defaults import DEFAULT_PRECISION
from ui.registry import ModelRegistry, ModelSpec
from ui.session import Session, classify_file
from ui.shapes import ShapeSource, dataset_indices, example_path, load_shape

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MN10_TEST = DATA / "modelnet10" / "modelnet10_pcd1024_test.h5"
needs_data = pytest.mark.skipif(not MN10_TEST.exists(), reason=f"real ModelNet10 data not found at {DATA} (see ../shared/data/README.md)")
TINY = ModelSpec("tiny-ViT-test", "random", "cpu")
REPO = Path(__file__).resolve().parents[1]


def write_ply(path: Path, points: np.ndarray) -> Path:
    """A binary little-endian PLY with float x y z (no faces)."""
    pts = np.ascontiguousarray(points, dtype="<f4")
    header = (
        f"ply\nformat binary_little_endian 1.0\nelement vertex {len(pts)}\n"
        "property float x\nproperty float y\nproperty float z\nend_header\n"
    )
    path.write_bytes(header.encode() + pts.tobytes())
    return path


def mn10_shape(index: int = 0) -> tuple[np.ndarray, str]:
    """One raw (z-up, raw units) ModelNet10 test shape and its class name."""
    import h5py

    with h5py.File(MN10_TEST, "r") as f:
        names = json.loads(f.attrs["class_names"])
        return np.asarray(f["data"][index], dtype=np.float32), names[int(f["label"][index, 0])]


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry()


@pytest.fixture()
def session(registry) -> Session:
    return Session(TINY, registry)


@pytest.fixture()
def count_encodes(registry):
    """Count forward passes of the shared tiny backbone's CLIP visual tower."""
    visual = registry.model(TINY).backbone.model.visual
    calls: list[int] = []
    handle = visual.register_forward_hook(lambda *_: calls.append(1))
    yield calls
    handle.remove()


# ---------------------------------------------------------------------------------------------
# session logic (no UI)


def test_rescoring_reuses_view_features(session, count_encodes):
    session.load(ShapeSource.example("chair"))
    views = session.render("6")
    assert views.depth.shape == (6, 224, 224) and views.images.shape == (6, 224, 224, 3)
    first = session.classify("chair, table, lamp")
    assert len(count_encodes) == 1
    second = session.classify("sofa, bed, chair, toilet", "a depth map of a {}")
    third = session.classify("chair, table, lamp")  # back to the first prompts: same numbers
    assert len(count_encodes) == 1, "new classes/template must not re-encode the views"
    assert second.classes == ["sofa", "bed", "chair", "toilet"] and second.view_logits.shape == (1, 6, 4)
    torch.testing.assert_close(third.probs, first.probs)
    session.render("10")
    session.classify("chair, table")
    assert len(count_encodes) == 2
    session.render("6")  # re-rendered, but its features are still cached
    session.classify("chair, table")
    assert len(count_encodes) == 2 and session.counters["render"] == 3 and session.counters["encode"] == 2


def test_scores_equal_the_core_classifier(registry, tmp_path):
    pts = np.random.default_rng(0).normal(size=(700, 3)).astype(np.float32) * [1.0, 0.3, 0.6]
    path = write_ply(tmp_path / "blob.ply", pts)
    probs = classify_file(path, "chair,table,lamp", views="10", spec=TINY, registry=registry)
    assert list(probs) == sorted(probs, key=probs.get, reverse=True)
    clf = ZeroShotClassifier(registry.model(TINY).backbone, ["chair", "table", "lamp"], views="10")
    ref = clf.predict(pts).probs[0]
    got = torch.tensor([probs[c] for c in ["chair", "table", "lamp"]])
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)


def test_shapes_are_the_points_the_core_loads(registry, tmp_path):
    mesh = load_shape(ShapeSource.example("chair"), 1024, "y", registry)
    np.testing.assert_array_equal(mesh.points, load_point_cloud(example_path("chair"), 1024).points)
    assert mesh.kind == "mesh" and mesh.mesh is not None and mesh.num_input_points > 0
    cloud_path = example_path("guitar", "points")
    for up in ("y", "z"):
        cloud = load_shape(ShapeSource.file(cloud_path), 512, up, registry)
        np.testing.assert_array_equal(cloud.points, load_point_cloud(cloud_path, 512, up=up).points)
    assert cloud.kind == "points" and cloud.dense_normals is not None and len(cloud.dense_points) == 2048
    views = Session(TINY, registry)
    views.shape = cloud
    torch.testing.assert_close(views.render("6").depth, render_depth(cloud.points, "6")[0])


@needs_data
def test_dataset_shapes_carry_their_label_and_up_axis(registry):
    raw, label = mn10_shape(0)
    src = ShapeSource.from_dataset(DATA, "modelnet10", "test", 0)
    shape = load_shape(src, 1024, None, registry)
    assert shape.true_label == label.replace("_", " ") and shape.up == "z"
    np.testing.assert_allclose(shape.points, convert_up_axis(raw, "z"))
    as_y = load_shape(src, 1024, "y", registry)  # the user overrides the data's up axis
    np.testing.assert_allclose(as_y.points, raw)
    assert as_y.up == "y"
    ds = registry.dataset(DATA, "modelnet10", "test")
    chairs = dataset_indices(ds, "chair")
    assert len(chairs) == 100 and all(ds.class_names[ds.labels[i]] == "chair" for i in chairs[:5])


def test_user_errors_are_clear(session, tmp_path):
    with pytest.raises(Clip2PointError, match="no shape loaded"):
        session.render()
    session.load(ShapeSource.example("mug"))
    with pytest.raises(UnknownClassSetError, match="no class names"):
        session.classify(" , ")
    with pytest.raises(Clip2PointError, match="placeholder"):
        session.classify("cup, bowl", "a photo")
    with pytest.raises(Clip2PointError, match="depth encoder"):
        session.set_encoder("depth")
    bad = tmp_path / "truncated.ply"
    bad.write_text("ply\nformat ascii 1.0\nelement vertex 9\nproperty float x\nproperty float y\nproperty float z\nend_header\n1 2 3\n4 5\n")
    with pytest.raises(PointCloudFileError, match="truncated.ply"):
        session.load(ShapeSource.file(bad))
    with pytest.raises(PointCloudFileError, match="unsupported"):
        session.load(ShapeSource.file(tmp_path / "x.docx"))
    assert session.shape.name.startswith("mug")  # a failed load keeps the previous shape


def test_depth_encoder_switch(session, registry, tmp_path, count_encodes):
    visual = registry.model(TINY).backbone.model.visual
    g = torch.Generator().manual_seed(0)
    sd = {k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in visual.state_dict().items()}
    path = save_state_dict_atomic(sd, tmp_path / "depth_encoder.safetensors")
    session.load(ShapeSource.example("lamp"))
    clip = session.classify("lamp, chair, table")
    handle = session.load_depth_encoder(path)
    assert session.encoder == "depth" and handle.name == "depth_encoder.safetensors"
    depth = session.classify("lamp, chair, table")
    assert not torch.allclose(clip.view_logits, depth.view_logits)
    assert "CLIP2Point depth encoder (depth_encoder.safetensors)" in session.weights_status().encoder
    session.set_encoder("clip")
    torch.testing.assert_close(session.classify("lamp, chair, table").probs, clip.probs)
    # one CLIP pass and one depth-encoder pass (a copy of the tower, hook included); switching back hit the cache
    assert len(count_encodes) == 2
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        session.load_depth_encoder(tmp_path / "junk.pth")


def test_registry_loads_once_and_falls_back_to_random(tmp_path):
    reg = ModelRegistry()
    spec = ModelSpec("tiny-ViT-test", None, "cpu")  # no weights exist for it anywhere: random, with the reason
    got: list = []
    threads = [threading.Thread(target=lambda: got.append(reg.model(spec))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert reg.loads["model"] == 1 and all(m is got[0] for m in got)
    assert got[0].backbone.weights.is_random and "no CLIP weights found" in got[0].fallback_reason
    status = Session(spec, reg).weights_status()
    assert status.is_random and status.loaded and "To fix" in status.detail


def test_precision_is_part_of_the_spec_and_the_banner_says_why(registry):
    bf16 = ModelSpec("tiny-ViT-test", "random", "cpu", precision="BF16")
    assert bf16.precision == "bf16" and bf16.key == (*TINY.key[:3], "bf16") and TINY.key[3] == "fp32"
    with pytest.raises(Clip2PointError, match="precision must be one of fp32, bf16, auto"):
        ModelSpec("tiny-ViT-test", precision="fp16")
    auto = ModelSpec("tiny-ViT-test", "random", "cpu", precision="auto")
    assert auto.key[3] in ("fp32", "bf16") and auto.key[3] == auto.resolved_precision()[0]
    s32, s16, sauto = (Session(spec, registry) for spec in (TINY, bf16, auto))
    banner = figures.weights_banner_html(sauto.weights_status())  # before loading: resolved, with its reason
    assert f"<b>Precision</b> {auto.key[3]} (auto)" in banner and "— " in banner
    for s in (s32, s16):
        s.load(ShapeSource.example("chair"))
        s.render("6", images=False)
        s.classify("chair, table, lamp")
    assert s16.model().backbone.dtype == torch.bfloat16 and s32.model().backbone.dtype == torch.float32
    assert s16.model() is not s32.model() and s16.features().dtype == torch.float32
    assert float(torch.nn.functional.cosine_similarity(s16.features(), s32.features(), dim=-1).min()) > 0.99
    assert "<b>Precision</b> bf16 " in figures.weights_banner_html(s16.weights_status())
    assert "<b>Precision</b> fp32 " in figures.weights_banner_html(s32.weights_status())
    assert sauto.model() is (s16 if auto.key[3] == "bf16" else s32).model(), "auto shares the backbone of its dtype"


def test_a_shape_encoded_before_costs_no_encoding_in_a_new_session(tmp_path):
    reg = ModelRegistry(ViewFeatureCache(tmp_path / "views"))
    encoded: list[int] = []  # images through the CLIP tower
    reg.model(TINY).backbone.model.visual.register_forward_hook(lambda _m, args, _out: encoded.append(len(args[0])))

    def open_chair(session: Session):
        session.load(ShapeSource.example("chair"))
        session.render("6", images=False)
        return session.classify("chair, table, lamp")

    first = open_chair(Session(TINY, reg))
    assert sum(encoded) == 6 and reg.view_cache.info().entries == 1
    again = Session(TINY, reg)
    second = open_chair(again)
    assert sum(encoded) == 6, "the second load of the same shape in a new Session must encode 0 images"
    assert again.counters["encode"] == 0 and again.counters["cached"] == 1 and "cached features" in again.seconds
    assert torch.equal(second.view_logits, first.view_logits) and torch.equal(second.probs, first.probs)
    open_chair(Session(TINY, reg, cache=False))  # no cache: encodes
    assert sum(encoded) == 12 and reg.view_cache.stats.hits == 1
    other = Session(TINY, reg)
    other.load(ShapeSource.example("chair"), num_points=512)  # other points: another entry
    other.render("6", images=False)
    other.classify("chair, table")
    assert sum(encoded) == 18 and reg.view_cache.info().entries == 2
    bf16 = Session(ModelSpec(*TINY.key[:3], precision="bf16"), reg)  # the precision is part of the key
    open_chair(bf16)
    assert bf16.counters["encode"] == 1 and reg.view_cache.info().entries == 3
    assert open_chair(Session(TINY, ModelRegistry())).probs.shape == (1, 3)  # a registry without a cache still works


def test_depth_encoder_features_are_cached_by_file_content(tmp_path):
    reg = ModelRegistry(ViewFeatureCache(tmp_path / "views"))
    visual = reg.model(TINY).backbone.model.visual
    g = torch.Generator().manual_seed(1)
    sd = {k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in visual.state_dict().items()}
    path = save_state_dict_atomic(sd, tmp_path / "enc.safetensors")
    results = []
    for _ in range(2):
        s = Session(TINY, reg)
        s.load(ShapeSource.example("lamp"))
        s.load_depth_encoder(path)
        s.render("6", images=False)
        results.append((s.classify("lamp, chair").view_logits, dict(s.counters)))
    assert results[0][1]["encode"] == 1 and results[1][1].get("encode", 0) == 0 and results[1][1]["cached"] == 1
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    clip = Session(TINY, reg)  # the CLIP tower's features of the same shape are another entry
    clip.load(ShapeSource.example("lamp"))
    clip.render("6", images=False)
    clip.classify("lamp, chair")
    assert clip.counters["encode"] == 1 and not torch.equal(clip.result.view_logits, results[0][0])


def test_app_cache_options(tmp_path):
    from ui.app import configure_registry, parse_args

    reg = ModelRegistry()
    configure_registry(parse_args(["--weights", "random", "--cache-dir", str(tmp_path / "c")]), reg)
    assert reg.view_cache is not None and reg.view_cache.root == tmp_path / "c"
    assert reg.batcher.max_images >= 1
    configure_registry(parse_args(["--weights", "random", "--no-cache", "--batch-images", "5"]), reg)
    assert reg.view_cache is None and reg.batcher.max_images == 5
    with pytest.raises(SystemExit):
        parse_args(["--no-cache", "--cache-dir", str(tmp_path)])


def test_encode_batcher_batches_concurrent_requests_and_keeps_errors_apart():
    batcher = EncodeBatcher(max_images=10)
    gate = threading.Event()
    calls: list[int] = []

    def encode(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        gate.wait(5)  # the first pass blocks until everyone has queued up behind it
        if (x < 0).any():
            raise ValueError("bad batch")
        return x * 2

    results: dict[int, torch.Tensor] = {}

    def call(i: int, key: str = "a") -> None:
        try:
            results[i] = batcher.encode((key,), torch.full((3, 2), float(i)), encode)
        except ValueError as err:
            results[i] = err

    first = threading.Thread(target=call, args=(0,))
    first.start()
    while not calls:
        time.sleep(0.01)
    others = [threading.Thread(target=call, args=(i,)) for i in range(1, 6)]
    others.append(threading.Thread(target=call, args=(-1, "b")))  # another encoder: its own batch
    for t in others:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in [first, *others]:
        t.join(10)
    for i in range(6):
        torch.testing.assert_close(results[i], torch.full((3, 2), 2.0 * i))
    assert isinstance(results[-1], ValueError)  # failed alone
    assert calls[0] == 3 and sorted(calls[1:]) == [3, 6, 9]  # 1 + (5 × 3 images in ≤ 10-image batches) + "b"
    assert batcher.batches == 3


def test_figures():
    classes = [f"c{i}" for i in range(50)]
    vl = np.random.default_rng(0).normal(size=(6, 50))
    heat = figures.view_logit_heatmap(classes, vl, [f"v{i}" for i in range(6)], max_classes=10)
    shown = list(heat.data[0].x)
    assert {classes[j] for j in vl.argmax(axis=1)} <= set(shown) and 10 <= len(shown) <= 16  # top 10 + every vote
    assert heat.data[0].z.shape == (7, len(shown)) and shown[0] == classes[int(vl.mean(axis=0).argmax())]
    bars = figures.probability_figure(["a", "b", "c"], [0.2, 0.5, 0.3], k=2)
    assert list(bars.data[0].y) == ["c", "b"]  # most probable on top
    html = figures.view_cards_html(np.ones((2, 8, 8)), np.ones((2, 8, 8, 3)), ["elev 0°, azim 0°", "elev 90°, azim 0°"],
                                   ["a", "b"], [0.5, 0.7], "a")
    assert html.count("<img") == 4 and "elev 90°" in html and "c2p-chip win" in html
    assert "RANDOM WEIGHTS" in figures.banner_html("random", "m", "random initialisation", "CLIP", "cpu", "how <to>")
    assert "&lt;to&gt;" in figures.banner_html("random", "m", "w", "e", "cpu", "how <to>")


# ---------------------------------------------------------------------------------------------
# the running app, through gradio_client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(registry):
    from ui.app import build_app

    demo = build_app("tiny-ViT-test", "random", "cpu", data_dir=DATA if DATA.is_dir() else None, registry=registry)
    demo.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True)
    yield demo
    demo.close()


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    return Client(app.local_url, verbose=False)


@needs_data
def test_classify_endpoint_with_a_real_modelnet_shape(client, tmp_path):
    from gradio_client import handle_file

    raw, label = mn10_shape(5)
    path = write_ply(tmp_path / "mn10_test_5.ply", raw)  # z-up, raw units, as in the file
    classes = ["bathtub", "bed", "chair", "desk", "toilet"]
    probs = client.predict(handle_file(str(path)), ", ".join(classes), "image of a {}", "z", api_name="/classify")
    assert set(probs) == set(classes) and abs(sum(probs.values()) - 1.0) < 1e-5
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    y_up = write_ply(tmp_path / "mn10_test_5_yup.ply", convert_up_axis(raw, "z"))
    same = client.predict(handle_file(str(y_up)), ", ".join(classes), api_name="/classify")  # defaults: y-up, 6 views
    assert same == pytest.approx(probs, abs=1e-5)


def test_bad_file_gives_an_error_and_the_app_keeps_working(client, tmp_path):
    from gradio_client import handle_file

    bad = tmp_path / "broken.ply"
    bad.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 500\nproperty float x\nproperty float y\n"
                    b"property float z\nend_header\n" + b"\x00" * 17)
    with pytest.raises(Exception, match="broken.ply"):
        client.predict(handle_file(str(bad)), "chair, table", api_name="/classify")
    # the page's upload path shows the message in the status box instead of failing
    out = client.predict(handle_file(str(bad)), 0, "y", 1024, "6", 0.02, "height", api_name="/load_file")
    assert "broken.ply" in out[0] and "c2p-msg error" in out[0]
    skipped = client.predict("chair, table", "image of a {}", 2, api_name="/load_file_scores")
    assert all(isinstance(o, dict) and o.get("__type__") == "update" for o in skipped)  # nothing scored or changed
    good = client.predict(handle_file(str(example_path("sofa", "points"))), "sofa, chair", api_name="/classify")
    assert set(good) == {"sofa", "chair"} and abs(sum(good.values()) - 1) < 1e-5


def test_page_pipeline_views_first_then_scores_then_rescore_without_re_encoding(client, count_encodes):
    # step 1 (what the page shows first): the shape and its views, no encoding yet
    status, info, plot3d, cards, prediction, bars, heatmap, banner, up = client.predict(
        "guitar", "y", 1024, "10", 0.02, "height", api_name="/load_example")
    assert status == "" and "guitar" in info and up == "y" and plot3d["type"] == "plotly"
    assert cards.count("<img") == 20 and "elev 315° · azim 45°" in cards and "votes" not in cards
    assert "Encoding 10 views" in prediction and len(count_encodes) == 0
    # step 2 (chained): encode + score
    status, prediction, bars, heatmap, cards, banner, info = client.predict(
        "guitar, chair, lamp", "image of a {}", 3, api_name="/load_example_scores")
    assert status == "" and "votes" in cards and 'id="c2p-prediction"' in prediction
    assert any(c in prediction for c in ("guitar", "chair", "lamp")) and "encode" in info
    assert bars["type"] == "plotly" and heatmap["type"] == "plotly" and "RANDOM WEIGHTS" in banner
    assert len(count_encodes) == 1
    status, prediction, bars, heatmap, cards, banner, info = client.predict(
        "sofa, bed", "a depth map of a {}", 2, api_name="/score")
    assert status == "" and ("sofa" in prediction or "bed" in prediction) and "sofa" in json.loads(bars["plot"])["data"][0]["y"]
    assert len(count_encodes) == 1, "re-scoring must reuse the cached view features"


def test_depth_encoder_upload_through_the_page(client, registry, tmp_path):
    from gradio_client import handle_file

    visual = registry.model(TINY).backbone.model.visual
    path = save_state_dict_atomic(visual.state_dict(), tmp_path / "best_eval.safetensors")
    client.predict("bottle", api_name="/load_example")
    *_, banner, _info, encoder = client.predict(handle_file(str(path)), "bottle, cup", "image of a {}", 2,
                                                api_name="/load_depth_encoder")
    assert encoder == "depth" and "CLIP2Point depth encoder (best_eval.safetensors)" in banner
    *_, banner, _info, encoder = client.predict("clip", "bottle, cup", "image of a {}", 2, api_name="/set_encoder")
    assert encoder == "clip" and "CLIP visual tower" in banner


def test_banner_says_random_and_every_event_has_an_api_name(app):
    with urllib.request.urlopen(app.local_url + "config") as r:
        config = json.load(r)
    banner = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "banner")
    assert "RANDOM WEIGHTS" in banner["props"]["value"] and "scores meaningless" in banner["props"]["value"]
    deps = config["dependencies"]
    names = [d.get("api_name") for d in deps]
    assert all(names) and len(set(names)) == len(names), names
    assert {"classify", "load_file", "load_file_scores", "load_example", "score", "set_encoder",
            "load_depth_encoder"} <= set(names)
    assert config["max_file_size"] == 200 * 1024**2


def test_command_line_help(capsys):
    from ui.app import parse_args

    with pytest.raises(SystemExit) as exc:
        parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--host", "--port", "--share", "--model", "--weights", "--depth-encoder", "--device", "--data-dir",
                 "--precision"):
        assert flag in out
    assert parse_args(["--weights", "random"]).precision == DEFAULT_PRECISION
    assert parse_args(["--weights", "random", "--precision", "auto"]).precision == "auto"
    with pytest.raises(SystemExit):
        parse_args(["--precision", "fp16"])
    with pytest.raises(SystemExit):
        parse_args(["--weights", "/nonexistent/ViT-B-32.pt"])
    assert "does not exist" in capsys.readouterr().err


def test_python_m_ui_app_starts(tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui.app", "--model", "tiny-ViT-test", "--weights", "random", "--port", str(port),
         "--device", "cpu"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2) as r:
                    assert "RANDOM WEIGHTS" in r.read().decode()
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.5)
        else:
            pytest.fail("python -m ui.app did not start within 90 s")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# ---------------------------------------------------------------------------------------------
# issue 13: the zero-shot side as a user finds it (handlers through the running server)


def _write_multi_h5(path: Path, n: int = 3) -> Path:
    """A small multi-shape HDF5 in the ModelNet h5 layout: data (S, N, 3), label (S, 1), name (S,), class_names."""
    import h5py

    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as f:
        f["data"] = rng.normal(size=(n, 300, 3)).astype(np.float32) * [1.0, 0.5, 0.8]
        f["label"] = np.arange(n, dtype=np.int64).reshape(n, 1) % 2
        f["name"] = np.array([f"shape_{i:04d}".encode() for i in range(n)], dtype="S16")
        f.attrs["class_names"] = json.dumps(["chair", "night_stand"])
    return path


def _plot_json(plot: dict) -> dict:
    return json.loads(plot["plot"])


def test_bad_templates_are_one_clear_line_and_clear_the_old_result_together(client):
    client.predict("mug", "y", 1024, "6", 0.02, "height", api_name="/load_example")
    client.predict("cup, bowl", "image of a {}", 2, api_name="/load_example_scores")
    for bad, says in (("a {} and a {}", "2 replacement fields"), ("{}{1}", "2 replacement fields"),
                      ("{{}}", "only literal braces"), (" , ", "no class names")):
        classes, template = (bad, "image of a {}") if bad == " , " else ("cup, bowl", bad)
        status, prediction, bars, heatmap, cards, _banner, _info = client.predict(classes, template, 2, api_name="/score")
        assert says in status and "internal error" not in status, status
        assert "c2p-pred-class" not in prediction and "No scores" in prediction
        for fig in (bars, heatmap):  # bars and heat-map go with the card (issue 13 item 4)
            assert "no scores" in _plot_json(fig)["layout"]["annotations"][0]["text"]
        assert "c2p-vote" not in cards and cards.count("<img") == 12  # the views stay, their votes go
    status, prediction, *_ = client.predict("cup, bowl, lamp", "clip", 2, api_name="/score")  # a preset name
    assert status == "" and "7 templates (preset clip)" in prediction and "3 classes" in prediction
    status, prediction, *_ = client.predict("cup", "a depth map of a {}\n# comment\na 3D model of a {}", 1,
                                            api_name="/score")
    assert status == "" and "2 templates" in prediction and "1 class ·" in prediction
    assert "data:text/csv" in prediction and "data:application/json" in prediction  # the per-view logits export


def test_typed_classes_or_templates_mark_the_result_stale_and_show_custom(client):
    client.predict("mug", "y", 1024, "6", 0.02, "height", api_name="/load_example")
    client.predict("cup, bowl", "image of a {}", 2, api_name="/load_example_scores")
    preset, template_preset, prediction = client.predict("cup, bowl, vase", "image of a {}", api_name="/edit_classes")
    assert preset == "custom" and template_preset == "clip2point"
    assert "out of date" in prediction and 'class="c2p-pred stale"' in prediction
    from clip2point.classes import CLASS_SETS
    from clip2point.prompts import TEMPLATE_PRESETS

    preset, template_preset, _ = client.predict(", ".join(CLASS_SETS["modelnet10"]), "\n".join(TEMPLATE_PRESETS["clip"]),
                                                api_name="/edit_template")
    assert preset == "modelnet10" and template_preset == "clip"
    assert client.predict("clip", api_name="/pick_template_preset") == "\n".join(TEMPLATE_PRESETS["clip"])


def test_shape_index_reloads_a_multi_shape_file_and_says_which_shape(client, tmp_path):
    from gradio_client import handle_file

    h5 = handle_file(str(_write_multi_h5(tmp_path / "three.h5")))
    render = ("y", 1024, "6", 0.02, "height")
    status, info, *_rest, up = client.predict(h5, 1, *render, api_name="/load_file")
    assert status == "" and "three.h5 · shape 1 of 3 · shape_0001 · label night stand" in info
    assert up == "z" and "Up axis set to z" in info  # ModelNet's .h5 are z-up: set, with a note
    status, info, *_ = client.predict(h5, 2, "z", 1024, "6", 0.02, "height", api_name="/set_shape_index")
    assert status == "" and "shape 2 of 3 · shape_0002 · label chair" in info
    status, *_ = client.predict(h5, 5, "z", 1024, "6", 0.02, "height", api_name="/set_shape_index")
    assert "shape index 5 is out of range; the file holds 3 shape(s)" in status
    ply = handle_file(str(write_ply(tmp_path / "one.ply", np.random.default_rng(0).normal(size=(300, 3)))))
    status, *_ = client.predict(ply, 2, *render, api_name="/set_shape_index")
    assert "holds one shape" in status and "set it to 0" in status
    status, info, *_ = client.predict(ply, 2, *render, api_name="/load_file")  # a new upload: the index is for h5
    assert status == "" and "one.ply" in info


def test_up_axis_from_the_file_type_and_90_degree_turns(client, tmp_path):
    from gradio_client import handle_file

    off = tmp_path / "box.off"
    off.write_text("OFF\n8 12 0\n" + "".join(f"{x} {y} {z}\n" for x in (0, 2) for y in (0, 1) for z in (0, 0.5))
                   + "3 0 1 3\n3 0 3 2\n3 4 6 7\n3 4 7 5\n3 0 4 5\n3 0 5 1\n3 2 3 7\n3 2 7 6\n3 0 2 6\n3 0 6 4\n"
                     "3 1 5 7\n3 1 7 3\n")
    status, info, *_rest, up = client.predict(handle_file(str(off)), 0, "y", 1024, "6", 0.02, "height",
                                              api_name="/load_file")
    assert status == "" and up == "z" and "Up axis set to z: .off files (ModelNet) are stored z-up" in info
    status, info, *_ = client.predict("z", 1024, "6", 0.02, "height", api_name="/turn_x")
    assert status == "" and "turned 90° about x" in info
    status, info, *_ = client.predict("z", 1024, "6", 0.02, "height", api_name="/turn_z")
    assert "turned 90° about x, z" in info
    status, info, *_ = client.predict("z", 1024, "6", 0.02, "height", api_name="/turn_reset")
    assert status == "" and "turned" not in info
    flat = write_ply(tmp_path / "flat.ply", np.random.default_rng(0).normal(size=(400, 3)) * [1.0, 0.1, 1.0])
    status, info, *_rest, up = client.predict(handle_file(str(flat)), 0, "z", 1024, "6", 0.02, "height",
                                              api_name="/load_file")
    assert up == "y" and "flat along y" in info and "set Up to z" in info


def test_file_colours_are_scaled_and_a_file_without_colours_says_so(client, tmp_path):
    from gradio_client import handle_file

    rng = np.random.default_rng(0)
    pts = rng.normal(size=(500, 3))
    rgb = np.column_stack([np.full(500, 255), rng.integers(0, 256, 500), np.zeros(500)])  # 0–255, as open3d writes
    xyzrgb = tmp_path / "red.xyzrgb"
    np.savetxt(xyzrgb, np.hstack([pts, rgb]), fmt="%.5f")
    client.predict(handle_file(str(xyzrgb)), 0, "y", 1024, "6", 0.02, "height", api_name="/load_file")
    plot, status = client.predict("file colours", api_name="/set_point_colours")
    colours = _plot_json(plot)["data"][0]["marker"]["color"]
    assert status == "" and len(colours) == 500 and all(c.startswith("rgb(255,") and c.endswith(",0)") for c in colours)
    assert len(set(colours)) > 50  # the file's colours, not one flat colour
    xyz = tmp_path / "plain.xyz"
    np.savetxt(xyz, pts, fmt="%.5f")
    client.predict(handle_file(str(xyz)), 0, "y", 1024, "6", 0.02, "height", api_name="/load_file")
    plot, status = client.predict("file colours", api_name="/set_point_colours")
    assert "plain.xyz stores no colours" in status
    assert "no colours" in _plot_json(plot)["layout"]["annotations"][0]["text"]


def test_a_text_file_renamed_obj_is_not_a_valid_obj_and_api_user_errors_log_one_line(client, tmp_path, capfd):
    from gradio_client import handle_file

    notes = tmp_path / "notes.obj"
    notes.write_text("shopping list\nv is for vegetables\n")
    status, *_ = client.predict(handle_file(str(notes)), 0, "y", 1024, "6", 0.02, "height", api_name="/load_file")
    assert "notes.obj: is not a valid OBJ mesh" in status and "no faces" not in status
    docx = tmp_path / "report.docx"
    docx.write_text("not a shape")
    with pytest.raises(Exception, match="Invalid file type"):
        client.predict(handle_file(str(docx)), "chair, table", api_name="/classify")
    with pytest.raises(Exception, match="2 replacement fields"):
        client.predict(handle_file(str(example_path("mug", "points"))), "cup, bowl", "a {} and a {}",
                       api_name="/classify")
    err = capfd.readouterr().err
    assert "Traceback" not in err, err[-2000:]


def test_api_note_shows_the_real_server_address():
    from ui.limits import AppLimits
    from ui.tabs.api import api_note

    note = api_note(AppLimits(), "http://10.0.0.7:9123/clip")
    assert 'Client("http://10.0.0.7:9123/clip/")' in note and "7860" not in note
    assert 'Client("http://HOST:PORT/")' in api_note(AppLimits(), "javascript:alert(1)")


def test_figure_wording_and_heatmap_truncation_note():
    classes = [f"c{i}" for i in range(200)]
    vl = np.random.default_rng(1).normal(size=(6, 200))
    heat = figures.view_logit_heatmap(classes, vl, [f"v{i}" for i in range(6)])
    assert heat.layout.title.text.startswith("top 40 of 200 classes by mean logit")
    assert figures.view_logit_heatmap(classes[:5], vl[:, :5], ["v"] * 6).layout.title.text is None
    assert "1 class ·" in figures.prediction_html("a", 1.0, 6, 1) and "2 classes ·" in figures.prediction_html("a", 0.5, 6, 2)
    cards = figures.view_cards_html(np.ones((1, 8, 8)), None, ["elev 0°, azim 0°"], ["a"], [0.04], "a")
    assert "p = 4% in this view" in cards and 'class="c2p-zoom"' in cards
    fig = figures.point_cloud_figure(np.random.default_rng(0).normal(size=(50, 3)), None, "colors",
                                     *[(0.0,) * 10, tuple(range(0, 360, 36)), [f"v{i}" for i in range(10)]])
    assert [a.text for a in fig.layout.scene.annotations] == [f"<b>{i}</b>" for i in range(1, 11)]  # every camera named
    assert fig.layout.meta["note"] == "this file stores no colours: coloured by height"
