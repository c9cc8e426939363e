"""CLIP2Point's image-depth contrastive losses, with negatives gathered across processes.

Huang et al., "CLIP2Point", ICCV 2023, §3.2 (image-depth pre-training) and the released
``models/clip2point.py``: two depth renders of the same view (independent distance jitter) are
encoded by the trainable depth encoder E_d; the frozen CLIP image encoder E_i encodes the RGB
render of that view. With NT-Xent (SimCLR, temperature 0.07, the released code uses
``lightly``'s ``NTXentLoss``):

* intra-modality ``L_d = NTXent(E_d(depth_a), E_d(depth_b))``;
* cross-modality ``L_c = NTXent(mean(E_d(depth_a), E_d(depth_b)), E_i(rgb))`` (mean of the raw,
  un-normalised features, as released);
* total (released code) ``L = L_c + L_d / w² + log(w + 1)``, w a learnable scalar (init 1).

The released DataParallel code contrasted only within each GPU's share of the batch. Here the
features of every process are all-gathered with a gradient-preserving all-gather
(``torch.distributed.nn.functional.all_gather``), so each process computes the loss of the
*global* batch, and the negatives are the whole global batch whatever the number of processes.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import Clip2PointError

__all__ = ["nt_xent", "gather_features", "combined_loss", "PretrainLosses", "DEFAULT_TEMPERATURE"]

#: NT-Xent temperature of the released pre-training code.
DEFAULT_TEMPERATURE = 0.07


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
    """Symmetric NT-Xent (SimCLR) loss of paired embeddings.

    For the 2n embeddings ``z = [a; b]`` (L2-normalised here), anchor ``z_k``'s positive is its
    partner (``a_i`` ↔ ``b_i``) and its negatives are the other 2n − 2 embeddings of *both*
    sides; the loss is the mean over all 2n anchors of
    ``−log(exp(z_k·z_p / T) / Σ_{j≠k} exp(z_k·z_j / T))``. This is lightly's ``NTXentLoss``
    without a memory bank, which CLIP2Point's released code uses.

    Args:
        a, b: (n, D) float embeddings (any scale; normalised here), n ≥ 2. Rows correspond.
        temperature: T > 0 (0.07 in CLIP2Point).

    Returns:
        0-dim float32 tensor (differentiable).

    Raises:
        Clip2PointError: shapes differ or are not 2-D, fewer than 2 pairs (no negatives), or
            ``temperature`` is not a positive finite number.
    """
    if a.dim() != 2 or a.shape != b.shape:
        raise Clip2PointError(f"nt_xent needs two (n, D) tensors of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 2:
        raise Clip2PointError(f"nt_xent needs at least 2 pairs (the other pairs are the negatives), got {a.shape[0]}; "
                              "raise --batch-size")
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        t = float("nan")
    if not 0 < t < float("inf"):
        raise Clip2PointError(f"--temperature must be a positive number (CLIP2Point: 0.07), got {temperature}")
    n = a.shape[0]
    z = F.normalize(torch.cat([a, b]).float(), dim=-1)
    logits = (z @ z.T) / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)


def _world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_features(x: torch.Tensor, with_grad: bool = True) -> torch.Tensor:
    """Concatenate ``x`` (n, D) from every process in rank order → (world·n, D).

    With one process (no process group) ``x`` is returned as is. ``with_grad=True`` uses the
    differentiable all-gather (its backward sums the gradients of all processes into each
    process's own slice), so each process can back-propagate the global loss; combined with
    DDP's gradient averaging the parameter gradient equals that of one process seeing the whole
    global batch. Every process must pass the same n.
    """
    world = _world_size()
    if world == 1:
        return x
    import torch.distributed as dist

    if not with_grad:
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # "deprecated, use _functional_collectives": still the autograd-aware one
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(all_gather(x))


@dataclass
class PretrainLosses:
    """Losses of one step (0-dim tensors; ``total`` is the one to back-propagate).

    Attributes:
        total: ``cross + depth / w² + log(w + 1)``.
        cross: L_c, depth-to-image NT-Xent.
        depth: L_d, depth-to-depth NT-Xent.
        w: the balance weight's current value (detached).
    """

    total: torch.Tensor
    cross: torch.Tensor
    depth: torch.Tensor
    w: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        """Python floats (one device sync); call before the optimizer step, ``w`` shares the parameter's storage."""
        return {"loss": float(self.total.detach()), "loss_cross": float(self.cross), "loss_depth": float(self.depth),
                "w": float(self.w)}


def combined_loss(
    depth_a: torch.Tensor,
    depth_b: torch.Tensor,
    image: torch.Tensor,
    w: torch.Tensor,
    temperature: float = DEFAULT_TEMPERATURE,
) -> PretrainLosses:
    """CLIP2Point's pre-training loss of already-gathered features.

    Args:
        depth_a, depth_b: (n, D) depth-encoder features of the two jittered renders.
        image: (n, D) frozen CLIP image features of the same view (no gradient needed).
        w: 0-dim learnable balance weight (init 1).
        temperature: NT-Xent temperature.

    Returns:
        :class:`PretrainLosses`; ``total = L_c + L_d / w² + log(w + 1)`` (released code).
    """
    l_depth = nt_xent(depth_a, depth_b, temperature)
    l_cross = nt_xent((depth_a + depth_b) * 0.5, image, temperature)
    total = l_cross + l_depth / (w * w) + torch.log(w + 1)
    return PretrainLosses(total, l_cross.detach(), l_depth.detach(), w.detach())

