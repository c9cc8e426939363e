"""Gated Dual-Path Adapter (GDPA): fuse the CLIP2Point depth encoder and CLIP for few-shot learning.

CLIP2Point (Huang et al., ICCV 2023, §3.3) adapts two frozen image encoders to a downstream
point-cloud task with "a dual-path structure with global-view aggregators and gated fusion".
The paper does not give the gate's formula and the authors' released code is the earlier,
ungated *DPA* (``models/dpa.py``: two aggregators, fixed 0.5/0.5 average). This module
implements the aggregators exactly as released and adds the gate chosen for this project.

Inputs (both frozen, computed once per shape, see :mod:`clip2point.fewshot`):

* ``f_A`` (B, V, D) float32: per-view features of path A, the CLIP2Point depth encoder. Without a
  depth encoder both paths take CLIP's features (``paths = "clip+clip"``).
* ``f_B`` (B, V, D) float32: the same views through the original CLIP visual tower (path B).

Both are the **raw visual-tower outputs** (after CLIP's projection, not normalised), as the
released DPA takes them (``adapter1(pre_model(imgs))``). ``GDPAConfig.input = "normalized"``
L2-normalises them first (``f / ‖f‖`` per view, inside :meth:`GatedDualPathAdapter.forward`): this
project's runs did that before the option existed, and such runs keep doing it (their config
lacks the field). Normalising discards the per-view feature norm, which the released aggregators
see through their BatchNorm and first Linear layer.

**Global-view aggregator** (released ``SimplifiedAdapter``, one per path, P ∈ {A, B})::

    g_P = W2 · Drop(ReLU(BN_D(W1 · flatten(Drop(BN_views(w_P ⊙ f_P))) + b1))) + b2      (B, D)

with learnable per-view weights ``w_P`` (V scalars, init 0.5), ``BN_views`` a BatchNorm1d over the
D channels shared by all views (applied to the (B·V, D) rows), dropout 0.075, ``W1``: V·D → D,
``BN_D`` a BatchNorm1d(D), ``W2``: D → D.

**Gate** (this project's GDPA; per view and input dependent)::

    α_{b,v} = σ( MLP([f_A,v ; f_B,v]) + β_v )          MLP: 2D → 64 → ReLU → 1, shared over views
    π       = softmax(γ)                                γ ∈ R^V, per-view importances
    ā_b     = Σ_v π_v α_{b,v}                           the shape-level share of path A
    z_b     = normalize( ā_b · g_A + (1 − ā_b) · g_B )

``α_{b,v}`` ∈ (0, 1) is *the share of view v taken from path A (the depth encoder)*; the MLP's
last layer, ``β`` and ``γ`` start at zero, so α = 0.5 and π = 1/V at initialisation.

**Head**: ``logits = s · z · Tᵀ`` with ``T`` (C, D) the frozen, L2-normalised text features of the
class prompts and ``s = exp(log_s)`` a learnable logit scale initialised to CLIP's (100 for
OpenAI's weights); trained with cross-entropy. The released few-shot script uses the bare
cosine (s = 1); a CLIP-like temperature makes the softmax sharp enough for cross-entropy to
train in few epochs. Only the aggregators, the gate and ``log_s`` train.

Why this gate:

* ``gate="none"`` is exactly the released DPA (``z = normalize(0.5 g_A + 0.5 g_B)``, no gate
  parameters): the ablation is the published baseline, not a re-implementation of it;
* with the gate on, the model *starts* from the released DPA (α = 0.5 everywhere at init), so
  the gate can only move away from the baseline where the data ask for it;
* one value per view in (0, 1), directly plottable ("how much of view v comes from the depth
  encoder"), and input dependent, so it can learn that some views (e.g. the four oblique
  cameras that look from below) are better served by one path than the other, shape by shape.

The fusion acts on the aggregated features (as the released DPA does); the per-view gate values
reach it through the importance-weighted mean ``ā_b``, which keeps the aggregators' cross-view
mixing intact.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn
from torch.nn import functional as F

from .errors import Clip2PointError

__all__ = [
    "GDPAConfig", "GDPAOutput", "GlobalViewAggregator", "ViewGate", "GatedDualPathAdapter", "SeededDropout", "GATES", "INPUTS",
]

#: Gate modes: "view" (per-view, input-dependent gate, this project's GDPA) or "none" (released DPA).
GATES = ("view", "none")
#: Adapter inputs: "raw" visual-tower outputs (the released DPA) or "normalized" (L2-normalised per view).
INPUTS = ("raw", "normalized")


@dataclass
class GDPAConfig:
    """Shape of a :class:`GatedDualPathAdapter`.

    Attributes:
        views: V, number of rendered views per shape (10 in CLIP2Point's few-shot setting).
        dim: D, feature width of both encoders (512 for ViT-B/32).
        num_classes: C, number of class prompts.
        gate: "view" (gated fusion) or "none" (fixed 0.5/0.5 average = the released DPA).
        dropout: dropout of the aggregators (0.075 in the released code).
        gate_hidden: hidden width of the gate MLP.
        view_weight_init: initial per-view weight of the aggregators (0.5 in the released code).
        input: "raw" (the features as given: the released DPA takes the raw visual-tower outputs)
            or "normalized" (L2-normalise each view's features first). A saved config without
            this key (written before it existed) reads as "normalized" (:meth:`from_dict`).
    """

    views: int = 10
    dim: int = 512
    num_classes: int = 10
    gate: str = "view"
    dropout: float = 0.075
    gate_hidden: int = 64
    view_weight_init: float = 0.5
    input: str = "raw"

    def __post_init__(self) -> None:
        if self.gate not in GATES:
            raise Clip2PointError(f"gate must be one of {', '.join(GATES)}, got {self.gate!r}")
        if self.input not in INPUTS:
            raise Clip2PointError(f"adapter input must be one of {', '.join(INPUTS)}, got {self.input!r}")
        for name in ("views", "dim", "num_classes", "gate_hidden"):
            if int(getattr(self, name)) < 1:
                raise Clip2PointError(f"GDPA {name} must be a positive integer, got {getattr(self, name)!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise Clip2PointError(f"dropout must lie in [0, 1), got {self.dropout!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> GDPAConfig:
        """Build from a dict (unknown keys are ignored, so newer files still load; without ``input``,
        a config saved before that key existed, the input is "normalized", what those adapters took)."""
        names = {f.name for f in fields(cls)}
        return cls(**{"input": "normalized", **{k: v for k, v in data.items() if k in names}})

    @classmethod
    def from_json(cls, text: str) -> GDPAConfig:
        return cls.from_dict(json.loads(text))


@dataclass
class GDPAOutput:
    """What :meth:`GatedDualPathAdapter.forward` returns for B shapes.

    Attributes:
        logits: (B, C) float32, ``logit_scale · cos(z, text)``.
        features: (B, D) fused, L2-normalised features ``z``.
        gate: (B, V) per-view share of path A (the depth encoder), in (0, 1); 0.5 for gate="none".
        importance: (V,) per-view importances π (sum 1); uniform for gate="none".
        shape_gate: (B,) ā = Σ_v π_v gate_v, the share of path A in ``z``.
    """

    logits: torch.Tensor
    features: torch.Tensor
    gate: torch.Tensor
    importance: torch.Tensor
    shape_gate: torch.Tensor


class SeededDropout(nn.Dropout):
    """``nn.Dropout`` whose masks come from :attr:`generator` when one is set.

    Same semantics as ``nn.Dropout`` (zero each element with probability p, scale the rest by
    1/(1−p), identity in eval mode). With ``generator`` None it *is* ``nn.Dropout`` (torch's
    global RNG); a trainer that wants reproducible runs without reseeding the process-wide RNG
    sets a private ``torch.Generator`` (on the input's device) through
    :meth:`GatedDualPathAdapter.set_dropout_generator`.
    """

    generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or self.generator is None:
            return super().forward(x)
        keep = torch.rand(x.shape, generator=self.generator, device=x.device) >= self.p
        return x * keep.to(x.dtype) * (1.0 / (1.0 - self.p))


class GlobalViewAggregator(nn.Module):
    """One path's global-view aggregator, as in CLIP2Point's released ``SimplifiedAdapter``.

    (B, V, D) view features → per-view weights (V, init 0.5) → BatchNorm1d(D) over all B·V views →
    Dropout → flatten (B, V·D) → Linear(V·D → D) → BatchNorm1d(D) → ReLU → Dropout → Linear(D → D).
    """

    def __init__(self, views: int, dim: int, dropout: float = 0.075, weight_init: float = 0.5) -> None:
        super().__init__()
        self.views, self.dim = int(views), int(dim)
        self.view_weights = nn.Parameter(torch.full((self.views,), float(weight_init)))
        self.view_norm = nn.BatchNorm1d(self.dim)
        self.mlp = nn.Sequential(
            SeededDropout(dropout),
            nn.Flatten(),
            nn.Linear(self.views * self.dim, self.dim),
            nn.BatchNorm1d(self.dim),
            nn.ReLU(),
            SeededDropout(dropout),
            nn.Linear(self.dim, self.dim),
        )

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, V, D) → (B, D) global feature (not normalised)."""
        b = feats.shape[0]
        x = feats * self.view_weights.view(1, -1, 1)
        x = self.view_norm(x.reshape(b * self.views, self.dim)).reshape(b, self.views, self.dim)
        return self.mlp(x)


class ViewGate(nn.Module):
    """Per-view, input-dependent gate α_{b,v} = σ(MLP([f_A,v ; f_B,v]) + β_v) and importances softmax(γ).

    The MLP (2D → hidden → ReLU → 1) is shared by the views; its last layer, β and γ start at
    zero, so α = 0.5 and π = 1/V at initialisation.
    """

    def __init__(self, views: int, dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)
        self.view_bias = nn.Parameter(torch.zeros(views))        # β
        self.view_importance = nn.Parameter(torch.zeros(views))  # γ

    def forward(self, f_a: torch.Tensor, f_b: torch.Tensor) -> torch.Tensor:
        """(B, V, D), (B, V, D) → α (B, V) in (0, 1): the share of each view taken from path A."""
        score = self.mlp(torch.cat([f_a, f_b], dim=-1)).squeeze(-1)
        return torch.sigmoid(score + self.view_bias)

    def importance(self) -> torch.Tensor:
        """(V,) π = softmax(γ)."""
        return torch.softmax(self.view_importance, dim=0)


class GatedDualPathAdapter(nn.Module):
    """GDPA (module docstring): two global-view aggregators, a per-view gate, a cosine text head.

    Args:
        config: sizes and gate mode (``config.num_classes`` must equal ``text_features.shape[0]``).
        text_features: (C, D) class-prompt features (normalised here; kept as a frozen buffer).
        logit_scale: initial logit scale (CLIP's ``exp(logit_scale)``, 100 for OpenAI's weights).

    Raises:
        Clip2PointError: text features that do not match ``config`` or a non-positive logit scale.
    """

    def __init__(self, config: GDPAConfig, text_features: torch.Tensor, logit_scale: float = 100.0) -> None:
        super().__init__()
        if tuple(text_features.shape) != (config.num_classes, config.dim):
            raise Clip2PointError(
                f"text features have shape {tuple(text_features.shape)}, expected ({config.num_classes}, {config.dim})"
            )
        if not logit_scale > 0:
            raise Clip2PointError(f"logit scale must be positive, got {logit_scale}")
        self.config = config
        self.aggregator_a = GlobalViewAggregator(config.views, config.dim, config.dropout, config.view_weight_init)
        self.aggregator_b = GlobalViewAggregator(config.views, config.dim, config.dropout, config.view_weight_init)
        self.gate = ViewGate(config.views, config.dim, config.gate_hidden) if config.gate == "view" else None
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(float(logit_scale))))
        self.register_buffer("text_features", F.normalize(text_features.detach().float(), dim=-1).clone())

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.log_logit_scale.exp()

    def set_dropout_generator(self, generator: torch.Generator | None) -> None:
        """Draw the aggregators' dropout masks from ``generator`` (on the features' device), or
        from torch's global RNG with None. A trainer sets a fresh seeded generator per epoch."""
        for m in self.modules():
            if isinstance(m, SeededDropout):
                m.generator = generator

    def _check(self, f_a: torch.Tensor, f_b: torch.Tensor) -> None:
        want = (self.config.views, self.config.dim)
        if f_a.dim() != 3 or tuple(f_a.shape[1:]) != want or f_a.shape != f_b.shape:
            raise Clip2PointError(
                f"GDPA expects two (B, {want[0]}, {want[1]}) view-feature tensors, got {tuple(f_a.shape)} and {tuple(f_b.shape)}"
            )

    def prepare(self, f_a: torch.Tensor, f_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The features as the adapter's layers take them: unchanged for ``input="raw"``, L2-normalised
        per view for ``input="normalized"`` (idempotent). Raises Clip2PointError for wrong shapes."""
        self._check(f_a, f_b)
        if self.config.input == "normalized":
            return F.normalize(f_a, dim=-1), F.normalize(f_b, dim=-1)
        return f_a, f_b

    def gate_weights(self, f_a: torch.Tensor, f_b: torch.Tensor) -> torch.Tensor:
        """(B, V) per-view share of path A (the depth encoder) in (0, 1); 0.5 everywhere for gate="none".

        ``f_a``, ``f_b``: (B, V, D) features as :meth:`forward` takes them."""
        return self._gate(*self.prepare(f_a, f_b))

    def _gate(self, f_a: torch.Tensor, f_b: torch.Tensor) -> torch.Tensor:
        if self.gate is None:
            return torch.full(f_a.shape[:2], 0.5, dtype=f_a.dtype, device=f_a.device)
        return self.gate(f_a, f_b)

    def importance(self) -> torch.Tensor:
        """(V,) per-view importances π (uniform for gate="none")."""
        if self.gate is None:
            return torch.full((self.config.views,), 1.0 / self.config.views, device=self.text_features.device)
        return self.gate.importance()

    def fuse(self, g_a: torch.Tensor, g_b: torch.Tensor, shape_gate: torch.Tensor | None) -> torch.Tensor:
        """z = normalize(ā g_A + (1 − ā) g_B); with ``shape_gate`` None, the released DPA's 0.5/0.5 average."""
        if shape_gate is None:
            return F.normalize(0.5 * g_a + 0.5 * g_b, dim=-1)
        a = shape_gate.unsqueeze(-1).to(g_a.dtype)
        return F.normalize(a * g_a + (1.0 - a) * g_b, dim=-1)

    def forward(self, f_a: torch.Tensor, f_b: torch.Tensor) -> GDPAOutput:
        """Classify B shapes from their per-view features of both paths.

        Args:
            f_a: (B, V, D) path A (depth encoder, or CLIP when none is loaded): the raw visual-tower
                outputs (normalised here when ``config.input == "normalized"``).
            f_b: (B, V, D) path B (CLIP), likewise.

        Raises:
            Clip2PointError: shapes that do not match the config.
        """
        f_a, f_b = self.prepare(f_a, f_b)
        g_a, g_b = self.aggregator_a(f_a), self.aggregator_b(f_b)
        gate, importance = self._gate(f_a, f_b), self.importance()
        if self.gate is None:
            shape_gate = torch.full(gate.shape[:1], 0.5, dtype=gate.dtype, device=gate.device)
            z = self.fuse(g_a, g_b, None)
        else:
            shape_gate = (gate * importance.to(gate.dtype)).sum(dim=1)
            z = self.fuse(g_a, g_b, shape_gate)
        logits = self.logit_scale * (z.float() @ self.text_features.T)
        return GDPAOutput(logits, z, gate, importance, shape_gate)
