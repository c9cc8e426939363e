"""Parity with CLIP2Point's released code (issue 11, items 5-8, 10, 11): prompts, adapter input, the
authors' few-shot checkpoints, zero-shot probabilities, pixel centres and the foreground mask.

Each reference below is written out here from the release's documented behaviour (REFERENCE.md and
the items of issue 11), independently of the code under test.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from clip2point.classes import CLASS_SETS, MODELNET10, MODELNET10_SPACED, MODELNET40, class_names, get_class_set
from clip2point.errors import UnknownClassSetError
from clip2point.fewshot import FewShotConfig
from clip2point.gdpa import GatedDualPathAdapter, GDPAConfig
from helpers import modelnet10_test, needs_data

# ---------------------------------------------------------------------------- item 7: prompts

#: The released zero-shot script's prompt lists (zeroshot.py: ModelNet10 with the folder name).
RELEASE_MN10 = ["bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa", "table", "toilet"]
RELEASE_MN40_MULTIWORD = ["flower pot", "glass box", "night stand", "range hood", "tv stand"]


def test_modelnet10_preset_is_the_release_prompt_list():
    assert list(MODELNET10) == RELEASE_MN10 and get_class_set("modelnet10") == RELEASE_MN10
    assert get_class_set("ModelNet-10") == RELEASE_MN10
    assert get_class_set("modelnet10-spaced") == [c.replace("_", " ") for c in RELEASE_MN10] == list(MODELNET10_SPACED)
    assert get_class_set("ModelNet10_Spaced")[6] == "night stand"
    assert all(w in MODELNET40 for w in RELEASE_MN40_MULTIWORD) and not any("_" in c for c in MODELNET40)
    assert set(CLASS_SETS) >= {"modelnet10", "modelnet10-spaced", "modelnet40", "scanobjectnn"}
    with pytest.raises(UnknownClassSetError, match="unknown class set"):
        get_class_set("modelnet10-words")


def test_dataset_identifiers_become_the_release_prompts():
    ids = RELEASE_MN10
    assert class_names(ids, "modelnet10") == RELEASE_MN10
    assert class_names([c.replace("_", " ") for c in ids], "ModelNet10") == RELEASE_MN10  # files that store words
    assert class_names(ids, "modelnet10", "spaced")[6] == "night stand"
    mn40_ids = [c.replace(" ", "_") for c in MODELNET40]
    assert class_names(mn40_ids, "modelnet40") == list(MODELNET40) == class_names(mn40_ids, "modelnet40", "spaced")
    assert class_names(["night_stand"]) == ["night stand"]  # no dataset named: words (as before)
    with pytest.raises(UnknownClassSetError, match="prompt style"):
        class_names(ids, "modelnet10", "underscored")


def test_fewshot_prompt_style_option(tmp_path):
    from clip2point.cli import build_parser

    assert FewShotConfig().prompt_style == "release"
    base = ["fewshot", "--dataset", "modelnet10", "--data-dir", str(tmp_path), "-o", str(tmp_path / "run")]
    assert build_parser("fewshot").parse_args(base).prompt_style == "release"
    assert build_parser("fewshot").parse_args([*base, "--prompt-style", "spaced"]).prompt_style == "spaced"


# ---------------------------------------------------------------------------- item 8: adapter input

V, D, C, B = 4, 16, 3, 6


class ReleasedDPAHead(nn.Module):
    """The released DPA after the two visual towers, written out as a reference (eval mode):
    per path ``global_f(feat * fusion_ratio)`` on the RAW tower outputs, average, L2-normalise,
    bare cosine with the normalised prompt features."""

    def __init__(self, ours: GatedDualPathAdapter) -> None:
        super().__init__()
        self.ours = ours

    def path(self, agg, feat: torch.Tensor) -> torch.Tensor:
        x = feat * agg.view_weights.reshape(1, -1, 1)
        x = F.batch_norm(x.reshape(-1, D), agg.view_norm.running_mean, agg.view_norm.running_var,
                         agg.view_norm.weight, agg.view_norm.bias, False, 0.0, agg.view_norm.eps).reshape(-1, V, D)
        fc1, bn, fc2 = agg.mlp[2], agg.mlp[3], agg.mlp[6]
        h = F.batch_norm(fc1(x.flatten(1)), bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        return fc2(F.relu(h))

    def forward(self, raw_a: torch.Tensor, raw_b: torch.Tensor) -> torch.Tensor:
        z = (self.path(self.ours.aggregator_a, raw_a) + self.path(self.ours.aggregator_b, raw_b)) * 0.5
        z = z / z.norm(dim=-1, keepdim=True)
        return z @ self.ours.text_features.T


def _adapter(input_kind: str, seed: int = 0) -> GatedDualPathAdapter:
    torch.manual_seed(seed)
    model = GatedDualPathAdapter(GDPAConfig(views=V, dim=D, num_classes=C, gate="none", input=input_kind),
                                 F.normalize(torch.randn(C, D), dim=-1), logit_scale=1.0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 4.0)
    return model.eval()


def _raw_features(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)  # raw tower outputs: norms far from 1, differing per view
    return 5 * torch.randn(B, V, D, generator=g), torch.rand(B, V, 1, generator=g) * 8 * torch.randn(B, V, D, generator=g)


def test_raw_adapter_input_is_the_released_dpa():
    fa, fb = _raw_features()
    model = _adapter("raw")
    with torch.no_grad():
        torch.testing.assert_close(model(fa, fb).logits, ReleasedDPAHead(model)(fa, fb), rtol=1e-5, atol=1e-6)


def test_normalized_adapter_input_normalises_each_view():
    fa, fb = _raw_features()
    raw, norm = _adapter("raw"), _adapter("normalized")
    with torch.no_grad():
        ref = raw(F.normalize(fa, dim=-1), F.normalize(fb, dim=-1)).logits
        torch.testing.assert_close(norm(fa, fb).logits, ref)
        torch.testing.assert_close(norm(F.normalize(fa, dim=-1), F.normalize(fb, dim=-1)).logits, ref)  # idempotent
        assert not torch.allclose(raw(fa, fb).logits, ref, atol=1e-3)  # the norms matter to the released head
    with pytest.raises(Exception, match="adapter input must be one of"):
        GDPAConfig(input="unit")


def test_adapter_input_defaults_release_and_old_runs_stay_normalized(tmp_path):
    from clip2point.cli import build_parser

    assert FewShotConfig().adapter_input == "raw" and GDPAConfig().input == "raw"
    # a run folder written before the field existed: its configs lack it and read as what the run did
    old = {k: v for k, v in FewShotConfig().to_dict().items() if k not in ("adapter_input", "prompt_style")}
    assert FewShotConfig.from_dict(old).adapter_input == "normalized"
    assert FewShotConfig.from_dict(old).prompt_style == "spaced"
    assert GDPAConfig.from_dict({"views": V, "dim": D, "num_classes": C}).input == "normalized"
    assert GDPAConfig.from_json(GDPAConfig(input="raw").to_json()).input == "raw"
    base = ["fewshot", "--dataset", "modelnet10", "--data-dir", str(tmp_path), "-o", str(tmp_path / "run")]
    assert build_parser("fewshot").parse_args(base).adapter_input == "raw"
    assert build_parser("fewshot").parse_args([*base, "--adapter-input", "normalized"]).adapter_input == "normalized"
    with pytest.raises(Exception, match="adapter_input must be one of"):
        FewShotConfig(out_dir="x", adapter_input="unit").validate()



def test_resuming_a_run_written_before_the_fields_keeps_what_it_did(tmp_path):
    from clip2point.checkpoints import write_json_atomic
    from clip2point.fewshot.rundir import legacy_resume_config, prepare_run_dir

    run = tmp_path / "old-run"
    old = {k: v for k, v in FewShotConfig(out_dir=str(run)).to_dict().items() if k not in ("adapter_input", "prompt_style")}
    write_json_atomic(run / "config.json", {"fewshot": old, "gdpa": {"views": 10, "dim": 512, "num_classes": 10},
                                            "classes": list(MODELNET10_SPACED)})
    resumed = legacy_resume_config(FewShotConfig(out_dir=str(run), resume=True))
    assert (resumed.adapter_input, resumed.prompt_style) == ("normalized", "spaced")
    assert prepare_run_dir(resumed) == (run, True)  # not refused as a change of settings
    fresh = FewShotConfig(out_dir=str(run))
    assert legacy_resume_config(fresh) is fresh  # not resuming: the config as given

# ---------------------------------------------------------------------------- item 10: the authors' DPA checkpoints

TEN_ELEV = (0, 90, 180, 270, 225, 225, 315, 315, 0, 0)
TEN_AZIM = (0, 0, 0, 0, -45, 45, -45, 45, -90, 90)


class ReleasedSimplifiedAdapter(nn.Module):
    """The released SimplifiedAdapter's parameter layout, written out from the module description
    (``fusion_ratio``; ``global_f`` = [BatchNormPoint, Dropout, Flatten, Linear, BatchNorm1d, ReLU, Dropout,
    Linear]) and its eval-mode computation."""

    class BatchNormPoint(nn.Module):
        def __init__(self, d: int) -> None:
            super().__init__()
            self.bn = nn.BatchNorm1d(d)

        def forward(self, x):
            return self.bn(x.reshape(-1, x.shape[-1])).reshape(x.shape)

    def __init__(self, views: int, dim: int) -> None:
        super().__init__()
        self.views, self.dim = views, dim
        self.fusion_ratio = nn.Parameter(torch.full((views,), 0.5))
        self.global_f = nn.Sequential(self.BatchNormPoint(dim), nn.Dropout(0.075), nn.Flatten(), nn.Linear(views * dim, dim),
                                      nn.BatchNorm1d(dim), nn.ReLU(), nn.Dropout(0.075), nn.Linear(dim, dim))

    def forward(self, feat):
        return self.global_f(feat.reshape(-1, self.views, self.dim) * self.fusion_ratio.reshape(1, -1, 1))


def _released_checkpoint(tmp_path, backbone, *, depth="trained", prefix="", extra=None, seed=0):
    """A DPA state dict in the released layout, saved with torch.save like the released fewshot.py.

    Returns (path, adapter1, adapter2, pre_model visual state dict)."""
    torch.manual_seed(seed)
    dim, views = backbone.embed_dim, 10
    adapters = [ReleasedSimplifiedAdapter(views, dim), ReleasedSimplifiedAdapter(views, dim)]
    for a in adapters:
        with torch.no_grad():
            a.fusion_ratio.uniform_(0.2, 0.9)
            for m in a.modules():
                if isinstance(m, nn.BatchNorm1d):
                    m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 3.0), m.weight.uniform_(0.5, 1.5)
                    m.num_batches_tracked.fill_(1234)
        a.eval()
    clip_sd = {k: v.detach().clone() for k, v in backbone.model.visual.state_dict().items()}
    pre_sd = {k: (v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v.clone()) for k, v in clip_sd.items()}
    sd = {f"ori_model.{k}": v for k, v in clip_sd.items()}
    if depth == "trained":
        sd.update({f"pre_model.{k}": v for k, v in pre_sd.items()})
    elif depth == "clip":
        sd.update({f"pre_model.{k}": v.clone() for k, v in clip_sd.items()})
    for name, a in zip(("adapter1", "adapter2"), adapters):
        sd.update({f"{name}.{k}": v for k, v in a.state_dict().items()})
    sd["selector.view_selector.views_azim"] = torch.tensor(TEN_AZIM, dtype=torch.float)
    sd["selector.view_selector.views_elev"] = torch.tensor(TEN_ELEV, dtype=torch.float)
    sd["selector.view_selector.views_dist"] = torch.ones(10)
    sd.update(extra or {})
    path = tmp_path / "best.pth"
    torch.save({prefix + k: v for k, v in sd.items()}, path)
    return path, adapters[0], adapters[1], pre_sd


def _released_logits(adapter1, adapter2, raw_pre, raw_ori, text):
    """The released DPA's eval-mode logits from the raw tower outputs: average, normalise, bare cosine."""
    with torch.no_grad():
        z = (adapter1(raw_pre) + adapter2(raw_ori)) * 0.5
        return (z / z.norm(dim=-1, keepdim=True)) @ text.T


def test_import_released_dpa_checkpoint_reproduces_the_release(tiny_backbone, tmp_path):
    from clip2point.fewshot import RunFolder, import_released_adapter, load_adapter

    path, a1, a2, pre_sd = _released_checkpoint(tmp_path, tiny_backbone)
    classes = ["chair", "table", "lamp"]
    run = import_released_adapter(path, tmp_path / "run", tiny_backbone, classes=classes)
    assert isinstance(run, RunFolder) and RunFolder(tmp_path / "run").classes == classes
    cfg, gcfg = run.config, run.gdpa_config
    assert (cfg.gate, cfg.adapter_input, cfg.views, gcfg.input, gcfg.views, gcfg.num_classes) == ("none", "raw", "10", "raw", 10, 3)
    assert run.paths == "depth+clip" and run.depth_encoder_file is not None and run.metrics is None
    imported = run.config_dict["imported"]
    assert imported["layout"] == "clip2point-release-dpa" and imported["clip_visual"] == "matches" and len(imported["sha256"]) == 64

    clf = load_adapter(run, tiny_backbone)  # the run's own depth encoder is paired with a backbone that has none
    assert tiny_backbone.depth_encoder is None and clf.paths == "depth+clip"
    depth_tower = clf.encoder.backbone.visual("depth")
    assert all(torch.equal(depth_tower.state_dict()[k].float(), v.float()) for k, v in pre_sd.items())
    assert clf.adapter.logit_scale.item() == pytest.approx(1.0)  # the release's bare cosine

    g = torch.Generator().manual_seed(5)
    raw_pre, raw_ori = 3 * torch.randn(4, 10, tiny_backbone.embed_dim, generator=g), torch.randn(4, 10, tiny_backbone.embed_dim, generator=g)
    text = tiny_backbone.text_features(classes, "image of a {}")
    res = clf.predict_features(raw_pre, raw_ori)
    torch.testing.assert_close(res.logits, _released_logits(a1, a2, raw_pre, raw_ori, text), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(res.probs, res.logits.softmax(dim=-1))


def test_import_accepts_dataparallel_prefix_and_a_dpa_without_depth_encoder(tiny_backbone, tmp_path):
    from clip2point.fewshot import import_released_adapter, load_adapter

    path, a1, a2, _ = _released_checkpoint(tmp_path, tiny_backbone, depth="clip", prefix="module.")
    run = import_released_adapter(path, tmp_path / "run", tiny_backbone, dataset="modelnet10")
    assert run.paths == "clip+clip" and run.depth_encoder_file is None
    assert run.classes == RELEASE_MN10 and run.config.dataset == "modelnet10"
    clf = load_adapter(run, tiny_backbone)
    raw = torch.randn(2, 10, tiny_backbone.embed_dim)
    text = tiny_backbone.text_features(RELEASE_MN10)
    torch.testing.assert_close(clf.predict_features(raw, raw).logits, _released_logits(a1, a2, raw, raw, text),
                               rtol=1e-5, atol=1e-6)


def test_import_refuses_what_it_cannot_reproduce(tiny_backbone, tmp_path):
    from clip2point.errors import CheckpointError, Clip2PointError
    from clip2point.fewshot import import_released_adapter

    learned = {"selector.feature_extractor.fe_model.conv1.weight": torch.zeros(3)}
    path, *_ = _released_checkpoint(tmp_path, tiny_backbone, extra=learned)
    with pytest.raises(CheckpointError, match="learned view selector"):
        import_released_adapter(path, tmp_path / "a", tiny_backbone)
    path, *_ = _released_checkpoint(tmp_path, tiny_backbone, extra={"selector.view_selector.views_elev": torch.zeros(10)})
    with pytest.raises(CheckpointError, match="not one of the view sets"):
        import_released_adapter(path, tmp_path / "b", tiny_backbone)
    torch.save({"module.point_model.conv1.weight": torch.zeros(2)}, tmp_path / "best_eval.pth")
    with pytest.raises(CheckpointError, match="not a released CLIP2Point few-shot"):
        import_released_adapter(tmp_path / "best_eval.pth", tmp_path / "c", tiny_backbone)
    torch.save({"adapter1.fusion_ratio": torch.zeros(10), "adapter2.fusion_ratio": torch.zeros(10), "x": object()},
               tmp_path / "pickled.pth")
    with pytest.raises(CheckpointError, match="refused"):
        import_released_adapter(tmp_path / "pickled.pth", tmp_path / "d", tiny_backbone)
    path, *_ = _released_checkpoint(tmp_path, tiny_backbone)
    import_released_adapter(path, tmp_path / "e", tiny_backbone)
    with pytest.raises(Clip2PointError, match="already holds a few-shot run"):
        import_released_adapter(path, tmp_path / "e", tiny_backbone)
    assert import_released_adapter(path, tmp_path / "e", tiny_backbone, overwrite=True).paths == "depth+clip"


def test_imported_run_classifies_points_like_the_release(tiny_backbone, tmp_path):
    from clip2point.fewshot import import_released_adapter, load_adapter
    from clip2point.render import clip_normalize

    path, a1, a2, _ = _released_checkpoint(tmp_path, tiny_backbone, seed=2)
    clf = load_adapter(import_released_adapter(path, tmp_path / "run", tiny_backbone), tiny_backbone)
    pts = torch.randn(2, 400, 3, generator=torch.Generator().manual_seed(0))
    res = clf.predict(pts)
    with torch.no_grad():  # the release: render, the two towers' raw outputs, the DPA head
        images = clip_normalize(clf.encoder.renderer(pts)).flatten(0, 1)
        raw_pre = clf.encoder.backbone.visual("depth")(images).reshape(2, 10, -1)
        raw_ori = tiny_backbone.model.visual(images).reshape(2, 10, -1)
    ref = _released_logits(a1, a2, raw_pre, raw_ori, tiny_backbone.text_features(list(MODELNET40)))
    torch.testing.assert_close(res.logits, ref, rtol=1e-4, atol=1e-5)
    assert res.classes == list(MODELNET40)


# ---------------------------------------------------------------------------- item 11: zero-shot probabilities


def test_zero_shot_ranks_like_the_release_and_gives_its_probabilities_one_step_away():
    from clip2point.zeroshot import score_views

    g = torch.Generator().manual_seed(3)
    views = F.normalize(torch.randn(5, 6, 32, generator=g), dim=-1)
    text = F.normalize(torch.randn(10, 32, generator=g), dim=-1)
    scale = 100.0
    res = score_views(views, text, scale, [f"c{i}" for i in range(10)])
    # the released zeroshot.py: logits = Σ_v cos(f_v, t_c), probs = softmax(logits)
    release_logits = (views @ text.T).sum(dim=1)
    release_probs = release_logits.softmax(dim=-1)
    assert torch.equal(res.logits.argsort(dim=-1), release_logits.argsort(dim=-1))  # the same ranking, top-k, accuracy
    torch.testing.assert_close(res.probs, torch.softmax(scale * (views @ text.T).mean(dim=1), dim=-1))  # softmax(s·mean)
    torch.testing.assert_close(torch.softmax(res.logits / scale, dim=-1), release_probs)  # the release's, one step away


# ---------------------------------------------------------------------------- item 5: pixel centres (pytorch3d's kernel)


def kernel_pixel_centre(j: int, size: int):
    """pytorch3d's ``PixToNonSquareNdc(S-1-j, S, S)`` (square image: range 2, offset 1), every step in float32:
    ``-offset + (range * i + offset) / S`` with i = S-1-j (the kernel flips the column index: +X points left)."""
    import numpy as np

    rng, off = np.float32(2.0), np.float32(1.0)
    return -off + (rng * np.float32(size - 1 - j) + off) / np.float32(size)


@pytest.mark.parametrize("size", [224, 1, 2, 17, 97, 336, 1000])
def test_pixel_centres_equal_the_kernel_formula_in_float32(size):
    import numpy as np

    from clip2point.render.rasterize import pixel_centres

    ours = pixel_centres(size)
    assert ours.dtype == torch.float32 and ours.shape == (size,)
    ref = np.array([kernel_pixel_centre(j, size) for j in range(size)], dtype=np.float32)
    assert np.array_equal(ours.numpy(), ref)  # bit for bit
    if size == 224:  # the mathematically equal 1 - (2j+1)/S rounds differently in 104 of the 224 columns
        old = np.float32(1) - (np.float32(2) * np.arange(size, dtype=np.float32) + np.float32(1)) / np.float32(size)
        assert int((old != ref).sum()) == 104


def kernel_zbuf(view_points, size: int, radius: float):
    """A reference of pytorch3d's naive point kernel (K = 1) for one map, in float32: pixel (i, j) keeps the
    smallest depth z ≥ 0 among points with dx² + dy² < r² (r² = r·r in float32), else -1.

    view_points: (N, 3) float32 numpy. dx² < r² and dy² < r² are necessary, so only those rows/columns are tested."""
    import numpy as np

    c = np.array([kernel_pixel_centre(j, size) for j in range(size)], dtype=np.float32)
    r2 = np.float32(radius) * np.float32(radius)
    x, y, z = view_points[:, 0], view_points[:, 1], view_points[:, 2]
    dx2, dy2 = (c[None, :] - x[:, None]) ** 2, (c[None, :] - y[:, None]) ** 2  # (N, S): column j, row i
    zbuf = np.full((size, size), np.inf, np.float32)
    for p in np.flatnonzero(z >= 0):
        cols, rows = np.flatnonzero(dx2[p] < r2), np.flatnonzero(dy2[p] < r2)
        if cols.size and rows.size:
            hit = (dy2[p, rows][:, None] + dx2[p, cols][None, :]) < r2
            block = zbuf[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
            np.minimum(block, np.where(hit, z[p], np.float32(np.inf)), out=block)
    zbuf[np.isinf(zbuf)] = -1
    return zbuf


@needs_data
def test_rasterizer_equals_the_kernel_on_ten_million_pixels_of_real_shapes():
    """20 ModelNet10 shapes × 10 views at 224² (10⁷ pixels): 0 pixels differ from the kernel's reference.
    (With the centres 1 - (2j+1)/S, 6 of these pixels differ.)"""
    from clip2point.render import DepthRenderer, RasterSettings, rasterize_points

    pts, _ = modelnet10_test(20)
    settings = RasterSettings(224, 0.02)
    vp = DepthRenderer("10", settings).view_points(torch.from_numpy(pts))
    ours = rasterize_points(vp, settings).zbuf.numpy()
    differ = sum(int((kernel_zbuf(vp[b, v].numpy(), 224, 0.02) != ours[b, v]).sum())
                 for b in range(vp.shape[0]) for v in range(vp.shape[1]))
    assert ours.size == 10_035_200 and (ours >= 0).mean() > 0.02 and differ == 0


@pytest.mark.parametrize("radius", [0.05, 0.2])
def test_radius_is_squared_in_float32_like_the_kernel(radius):
    """r² = fl32(r)·fl32(r) (the kernel's float32 product), which exceeds fl32(r·r) for these radii: a point
    whose squared distance lies in between is drawn, as by the kernel."""
    import numpy as np

    from clip2point.render import RasterSettings, rasterize_points
    from clip2point.render.rasterize import pixel_centres

    size = 21  # pixel (10, 10) is centred on NDC (0, 0) exactly
    assert pixel_centres(size)[10] == 0
    r2, r2_double = np.float32(radius) * np.float32(radius), np.float32(radius * radius)
    assert r2 > r2_double and RasterSettings(size, radius).radius2 == float(r2)
    dy = np.float32(1e-4)  # search the float32 x whose squared distance d2 (float32, as the kernel) is in [fl32(r·r), r²)
    x0 = np.float32(np.sqrt(np.float64(r2_double) - np.float64(dy * dy)))
    ups, downs = [x0], [x0]
    for _ in range(20):
        ups.append(np.nextafter(ups[-1], np.float32(1)))
        downs.append(np.nextafter(downs[-1], np.float32(0)))
    x = next(x for x in ups + downs if r2_double <= (x * x + dy * dy) < r2)
    vp = torch.tensor([[[[x, dy, 0.5]]]], dtype=torch.float32)
    zbuf = rasterize_points(vp, RasterSettings(size, radius)).zbuf[0, 0]
    assert zbuf[10, 10].item() == 0.5 and kernel_zbuf(vp[0, 0].numpy(), size, radius)[10, 10] == 0.5


# ---------------------------------------------------------------------------- item 6: foreground is depth > 0


def released_norm(zbuf: torch.Tensor) -> torch.Tensor:
    """The released Renderer.norm on (B, H, W) z-buffers, written out: mask = depth > 0; max over the map;
    background set to 1 before the min; (z - min) / max · 200/255; background 1."""
    img = zbuf.clone()
    mask = img > 0
    zmax = img.flatten(1).amax(dim=1)[:, None, None]
    img[~mask] = 1.0
    zmin = img.flatten(1).amin(dim=1)[:, None, None]
    img = (img - zmin) / zmax * 200.0 / 255.0
    img[~mask] = 1.0
    return img


def test_a_point_at_depth_exactly_zero_is_background():
    from clip2point.render import DepthRenderer, RasterSettings, depth_to_image

    # unit sphere already (centroid 0, largest norm 1): view 0 of the 6-view set looks from +Z at
    # distance 1, so (0, 0, 1) lies at depth exactly 0 and hides (0, 0, -1) behind it (depth 2)
    pts = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [0.5, 0.0, 0.0], [-0.5, 0.0, 0.0]])
    renderer = DepthRenderer("6", RasterSettings(64, 0.05))
    frags = renderer.rasterize(pts)
    zbuf = frags.zbuf[0, :1]
    assert float(zbuf[0, 31:33, 31:33].max()) == 0.0 and float(frags.zmin[0, 0]) == 0.0  # drawn, as pytorch3d
    img = renderer(pts)[0, :1]
    ref = released_norm(zbuf)
    assert torch.equal(img == 1.0, ref == 1.0) and torch.equal(depth_to_image(zbuf) == 1.0, ref == 1.0)
    torch.testing.assert_close(img, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(depth_to_image(zbuf), ref, rtol=0, atol=1e-6)
    assert float(img[0, 31:33, 31:33].min()) == 1.0  # the depth-0 pixels: background (white)
    assert float(img[0][img[0] < 1].min()) == 0.0  # the minimum moved to the next depth (1: the ±0.5 points)
