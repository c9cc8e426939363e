"""Shared state: a backbone many threads use at once, and library calls that leave the process alone.

The app serves several browser sessions from one backbone while few-shot runs train in background
threads. These tests check the root causes: an immutable backbone (depth encoders are paired, never
swapped in), a self-locking text cache, pure scoring, and no process-global side effects (torch RNG,
deterministic-algorithm flag, root logger, umask, matplotlib backend).
"""
from __future__ import annotations

import logging
import os
import threading

import numpy as np
import pytest
import torch

from clip2point.backbone import load_backbone
from clip2point.errors import Clip2PointError
from clip2point.rng import private_rng, seeded_generator
from clip2point.checkpoints import save_state_dict_atomic
from clip2point.zeroshot import ZeroShotClassifier, score_views
from helpers import DATA, modelnet10_test, needs_data


def write_ply(path, points: np.ndarray):
    """A binary little-endian PLY with float x y z."""
    pts = np.ascontiguousarray(points, dtype="<f4")
    path.write_bytes((f"ply\nformat binary_little_endian 1.0\nelement vertex {len(pts)}\nproperty float x\n"
                      "property float y\nproperty float z\nend_header\n").encode() + pts.tobytes())
    return path


def global_state() -> tuple:
    """Everything a library call must leave as it found it."""
    import matplotlib

    umask = os.umask(0o022)
    os.umask(umask)
    return (torch.get_rng_state(), torch.are_deterministic_algorithms_enabled(), logging.getLogger().level,
            [h for h in logging.getLogger().handlers], umask, matplotlib.get_backend(), torch.get_num_threads())


def assert_same_state(before: tuple, after: tuple) -> None:
    assert torch.equal(before[0], after[0]), "torch's global RNG was used or reseeded"
    assert before[1:] == after[1:]


def test_private_rng_routes_draws_away_from_the_global_generator():
    torch.manual_seed(5)
    before = torch.get_rng_state()
    with private_rng(torch.Generator().manual_seed(1)):
        a = torch.randn(4)
        lin = torch.nn.Linear(3, 2)
        b = torch.empty(3).uniform_()
        c = torch.rand_like(b)
    assert torch.equal(torch.get_rng_state(), before)
    g = torch.Generator().manual_seed(1)
    assert torch.equal(a, torch.randn(4, generator=g))
    with private_rng(torch.Generator().manual_seed(1)):
        again = (torch.randn(4), torch.nn.Linear(3, 2), torch.empty(3).uniform_(), torch.rand(3))
    assert torch.equal(again[0], a) and torch.equal(again[1].weight, lin.weight) and torch.equal(again[2], b)
    assert torch.equal(again[3], c)
    assert not torch.equal(seeded_generator(0, "x").initial_seed() * torch.ones(1),
                           seeded_generator(0, "y").initial_seed() * torch.ones(1))


def test_private_rng_is_per_thread():
    """Another thread drawing from the global RNG meanwhile neither disturbs nor is disturbed."""
    torch.manual_seed(0)
    expected = torch.randn(1000)
    torch.manual_seed(0)
    go, results = threading.Event(), {}

    def other() -> None:
        go.wait()
        results["global"] = torch.randn(1000)

    t = threading.Thread(target=other)
    t.start()
    with private_rng(torch.Generator().manual_seed(3)):
        go.set()
        t.join()
        results["private"] = torch.randn(1000)
    assert torch.equal(results["global"], expected)
    assert torch.equal(results["private"], torch.randn(1000, generator=torch.Generator().manual_seed(3)))


def test_random_weights_are_reproducible_and_leave_the_process_alone():
    torch.manual_seed(11)
    before = global_state()
    a = load_backbone("tiny-ViT-test", "random")
    assert_same_state(before, global_state())
    torch.manual_seed(12)  # another global state: the same weights
    b = load_backbone("tiny-ViT-test", "random")
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_depth_encoders_are_paired_never_swapped(tiny_backbone, tmp_path):
    visual = tiny_backbone.model.visual
    g = torch.Generator().manual_seed(0)
    path = save_state_dict_atomic({k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in visual.state_dict().items()},
                                  tmp_path / "depth.safetensors")
    paired = tiny_backbone.with_depth_encoder(path)
    assert tiny_backbone.depth_encoder is None and paired.depth_encoder is not None
    assert paired.model is tiny_backbone.model and paired.depth_weights.location == str(path)
    with pytest.raises(AttributeError):
        paired.depth_encoder = None  # read-only: nobody can swap it under other users
    images = torch.rand(2, 3, 224, 224)
    clip, depth = paired.encode_images(images, "clip"), paired.encode_images(images, "depth")
    assert not torch.allclose(clip, depth)
    torch.testing.assert_close(tiny_backbone.encode_images(images, paired.depth_encoder), depth)  # a module works too
    with pytest.raises(Clip2PointError, match="no depth encoder"):
        tiny_backbone.encode_images(images, "depth")
    feats = paired.text_features(["chair", "lamp"])
    assert tiny_backbone.text_features(["chair", "lamp"]) is feats  # one text cache for every pairing


def test_text_cache_and_encoders_are_safe_from_many_threads(tiny_backbone):
    prompts = [[f"class{i}", f"thing{j}"] for i in range(6) for j in range(4)]
    serial = {tuple(p): tiny_backbone.text_features(p, "a {} here").clone() for p in prompts}
    images = torch.rand(3, 3, 224, 224)
    ref = tiny_backbone.encode_images(images)
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for p in prompts[k::4] * 3:
                assert torch.equal(tiny_backbone.text_features(p, "a {} here"), serial[tuple(p)])
            assert torch.equal(tiny_backbone.encode_images(images), ref)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_score_views_is_the_classifier_s_scoring(tiny_backbone):
    pts = np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32)
    clf = ZeroShotClassifier(tiny_backbone, ["chair", "table", "lamp"], views="6")
    res = clf.predict(pts)
    feats = clf.view_features(clf.render(pts))
    pure = score_views(feats, clf.text_features, tiny_backbone.logit_scale, clf.classes, clf.views.labels())
    assert torch.equal(pure.view_logits, res.view_logits) and torch.equal(pure.probs, res.probs)
    single = score_views(feats[0], clf.text_features, tiny_backbone.logit_scale, clf.classes)
    assert torch.equal(single.logits, res.logits)
    assert pure.view_labels == res.view_labels and pure.predictions() == res.predictions()
    with pytest.raises(Clip2PointError):
        score_views(feats, clf.text_features[:2], tiny_backbone.logit_scale, clf.classes)


def test_static_plots_leave_matplotlib_s_backend_alone(tmp_path):
    import matplotlib

    from clip2point.plots import save_confusion_matrix, save_view_grid

    before = matplotlib.get_backend()
    save_view_grid(np.random.default_rng(0).random((6, 32, 32)), [f"v{i}" for i in range(6)], tmp_path / "g.png")
    save_confusion_matrix(np.eye(3), ["a", "b", "c"], tmp_path / "c.png")
    assert matplotlib.get_backend() == before and (tmp_path / "g.png").stat().st_size > 1000


# ---------------------------------------------------------------------------------------------
# the app: background runs beside other users' requests


@needs_data
def test_app_zero_shot_is_bit_for_bit_the_same_while_two_fewshot_runs_train(tmp_path):
    """Two sessions train few-shot adapters on the shared backbone while others classify: every
    /classify answer equals the quiet server's exactly, and the process's global state is untouched."""
    import socket
    import time

    from gradio_client import Client, handle_file

    from ui.app import build_app
    from ui.registry import ModelRegistry

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = build_app("tiny-ViT-test", "random", "cpu", data_dir=DATA, registry=ModelRegistry(), runs_dir=tmp_path / "runs")
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    pool = demo.run_pool
    try:
        pts, _labels = modelnet10_test(4)
        shapes = [write_ply(tmp_path / f"mn10_{i}.ply", p) for i, p in enumerate(pts)]
        classes = "bathtub, bed, chair, desk, dresser, monitor, night stand, sofa, table, toilet"
        quiet_client = Client(demo.local_url, verbose=False)
        quiet = [quiet_client.predict(handle_file(str(p)), classes, api_name="/classify") for p in shapes]
        before = global_state()

        trainers = [Client(demo.local_url, verbose=False) for _ in range(2)]
        for client, gate in zip(trainers, ("view", "none")):
            status = client.predict("modelnet10", 1, 200, gate, "10", 20, 1, api_name="/fewshot_start")[0]
            assert "c2p-msg error" not in status, status
        assert len(pool.active()) == 2
        busy: list[dict] = []
        errors: list[BaseException] = []
        training = threading.Event()  # both runs have finished an epoch (encoding is over, they train)

        def classify_all(k: int) -> None:
            """Rounds over the shapes until a whole round has run while both runs were training."""
            client = Client(demo.local_url, verbose=False)
            deadline = time.monotonic() + 300
            try:
                while time.monotonic() < deadline:
                    during_training = training.is_set()
                    for i, p in enumerate(shapes):
                        busy.append({"i": i, "probs": client.predict(handle_file(str(p)), classes, api_name="/classify")})
                    runs = pool.active()
                    if len(runs) == 2 and all(r.state.history for r in runs):
                        training.set()
                    if during_training:
                        return
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)

        threads = [threading.Thread(target=classify_all, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(330)
        epochs = [len(r.state.history) for r in pool.active()]  # epochs trained while the requests ran
        assert not errors, errors
        assert training.is_set(), f"the requests must overlap with training epochs, not only encoding: {epochs}"
        assert len(busy) >= 3 * 2 * len(shapes)
        for answer in busy:
            assert answer["probs"] == quiet[answer["i"]], "a zero-shot answer changed while runs were training"
        pool.stop_all(wait_s=60)
        t0 = time.monotonic()
        while pool.active() and time.monotonic() - t0 < 60:
            time.sleep(0.1)
        assert not pool.active()
        assert_same_state(before, global_state())
        # the runs did train (in the same window)
        histories = sorted((tmp_path / "runs").glob("*/history.jsonl"))
        assert len(histories) == 2 and all(h.read_text().strip() for h in histories), epochs
    finally:
        pool.stop_all(wait_s=30)
        demo.close()
