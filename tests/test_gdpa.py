"""The Gated Dual-Path Adapter module (CLIP2Point §3.3): shapes, gate, released-DPA equivalence, I/O."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from clip2point.errors import Clip2PointError
from clip2point.gdpa import GatedDualPathAdapter, GDPAConfig
from clip2point.checkpoints import load_state_dict_file, save_state_dict_atomic

V, D, C, B = 10, 32, 5, 12


def make(gate: str = "view", seed: int = 0) -> GatedDualPathAdapter:
    torch.manual_seed(seed)
    text = F.normalize(torch.randn(C, D), dim=-1)
    return GatedDualPathAdapter(GDPAConfig(views=V, dim=D, num_classes=C, gate=gate), text, logit_scale=50.0)


def features(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(B, V, D, generator=g), dim=-1), F.normalize(torch.randn(B, V, D, generator=g), dim=-1)


class ReleasedAggregator(nn.Module):
    """The released SimplifiedAdapter's computation, written out independently as a reference:
    per-view weights → BatchNorm over channels of all (B·V) views → Dropout → flatten → Linear → BN → ReLU →
    Dropout → Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.fusion_ratio = nn.Parameter(torch.full((V,), 0.5))
        self.bn_point = nn.BatchNorm1d(D)
        self.fc1, self.bn, self.fc2 = nn.Linear(V * D, D), nn.BatchNorm1d(D), nn.Linear(D, D)

    def load_from(self, ours) -> ReleasedAggregator:
        self.fusion_ratio.data.copy_(ours.view_weights)
        self.bn_point.load_state_dict(ours.view_norm.state_dict())
        self.fc1.load_state_dict(ours.mlp[2].state_dict())
        self.bn.load_state_dict(ours.mlp[3].state_dict())
        self.fc2.load_state_dict(ours.mlp[6].state_dict())
        return self

    def forward(self, feat):  # eval mode: dropout is the identity
        x = feat * self.fusion_ratio.reshape(1, -1, 1)
        x = self.bn_point(x.reshape(-1, D)).reshape(-1, V, D)
        return self.fc2(F.relu(self.bn(self.fc1(x.flatten(1)))))


def _perturb_batchnorm(model: nn.Module) -> None:
    """Non-trivial running statistics, so eval-mode BatchNorm is not the identity."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)


def test_shapes_and_gate_at_initialisation():
    model = make().eval()
    fa, fb = features()
    out = model(fa, fb)
    assert out.logits.shape == (B, C) and out.features.shape == (B, D) and out.gate.shape == (B, V)
    assert out.importance.shape == (V,) and out.shape_gate.shape == (B,)
    torch.testing.assert_close(out.gate, torch.full((B, V), 0.5))  # zero-initialised last layer, β = 0
    torch.testing.assert_close(out.importance, torch.full((V,), 1 / V))  # γ = 0
    torch.testing.assert_close(out.features.norm(dim=-1), torch.ones(B))
    torch.testing.assert_close(model.gate_weights(fa, fb), out.gate)
    # head: learnable scale (init as given) × cosine with the frozen, normalised text features
    torch.testing.assert_close(out.logits, 50.0 * out.features @ model.text_features.T)


def test_gate_none_is_the_released_dpa_average():
    model = make("none").eval()
    _perturb_batchnorm(model)
    assert not any("gate" in n for n, _ in model.named_parameters())
    fa, fb = features()
    out = model(fa, fb)
    g_a, g_b = model.aggregator_a(fa), model.aggregator_b(fb)
    assert torch.equal(out.features, F.normalize(0.5 * g_a + 0.5 * g_b, dim=-1))
    # the aggregators are the released SimplifiedAdapter's computation
    ref_a, ref_b = ReleasedAggregator().load_from(model.aggregator_a).eval(), ReleasedAggregator().load_from(model.aggregator_b).eval()
    with torch.no_grad():
        released = F.normalize((ref_a(fa) + ref_b(fb)) * 0.5, dim=-1)  # models/dpa.py's fusion
    torch.testing.assert_close(out.features, released, atol=1e-6, rtol=1e-5)
    assert torch.equal(out.gate, torch.full((B, V), 0.5)) and torch.equal(out.shape_gate, torch.full((B,), 0.5))


def test_gated_model_starts_from_the_released_dpa():
    gated, plain = make("view"), make("none")
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if not k.startswith("gate.")})
    fa, fb = features()
    out = gated.eval()(fa, fb)
    torch.testing.assert_close(out.shape_gate, torch.full((B,), 0.5), atol=1e-7, rtol=0)  # Σ_v (1/V)·0.5
    torch.testing.assert_close(out.features, plain.eval()(fa, fb).features, atol=1e-6, rtol=0)


def test_gate_is_per_view_input_dependent_and_learns():
    model = make()
    fa, fb = features()
    labels = torch.arange(B) % C
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(5):
        loss = F.cross_entropy(model(fa, fb).logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    gate = model.eval().gate_weights(fa, fb).detach()
    assert gate.shape == (B, V) and bool(((gate > 0) & (gate < 1)).all())
    assert float((gate - 0.5).abs().max()) > 1e-3  # moved away from the initial 0.5
    assert float(gate.std(dim=0).max()) > 0  # differs between shapes (input dependent)
    torch.testing.assert_close(model.importance().sum(), torch.tensor(1.0))
    with torch.no_grad():
        out = model(fa, fb)
    torch.testing.assert_close(out.shape_gate, (out.gate * out.importance).sum(dim=1))
    # only adapter parameters exist; the text features are a frozen buffer
    assert "text_features" in dict(model.named_buffers()) and "text_features" not in dict(model.named_parameters())


def test_checkpoint_round_trip_gives_the_same_logits(tmp_path):
    model = make()
    _perturb_batchnorm(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = save_state_dict_atomic(model.state_dict(), tmp_path / "adapter.safetensors", {"gdpa": model.config.to_json()})
    sd, meta = load_state_dict_file(path)
    loaded = GatedDualPathAdapter(GDPAConfig.from_json(meta["gdpa"]), sd["text_features"])
    loaded.load_state_dict(sd)
    fa, fb = features(3)
    a, b = model.eval()(fa, fb), loaded.eval()(fa, fb)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.gate, b.gate)


def test_config_json_and_errors():
    cfg = GDPAConfig(views=6, dim=64, num_classes=3, gate="none")
    assert GDPAConfig.from_json(cfg.to_json()) == cfg
    assert json.loads(cfg.to_json())["dropout"] == 0.075
    with pytest.raises(Clip2PointError, match="gate must be one of"):
        GDPAConfig(gate="soft")
    with pytest.raises(Clip2PointError, match="text features have shape"):
        GatedDualPathAdapter(GDPAConfig(views=V, dim=D, num_classes=C), torch.randn(C + 1, D))
    fa, fb = features()
    with pytest.raises(Clip2PointError, match=r"expects two \(B, 10, 32\)"):
        make()(fa[:, :6], fb[:, :6])
