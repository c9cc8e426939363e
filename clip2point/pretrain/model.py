"""The trainable half of CLIP2Point pre-training and one optimizer step.

:class:`PretrainModel` (the depth encoder, a trainable copy of CLIP's visual tower, and the loss
balance w), LAMB (:func:`make_optimizer`), cosine annealing with warm restarts stepped per iteration
(:func:`make_scheduler`), and :func:`train_step`: render the chosen views twice, encode, gather
across processes, NT-Xent, step.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import Clip2PointError
from ..render import RasterSettings, clip_normalize
from .data import PairBatch, render_pair_views
from .losses import DEFAULT_TEMPERATURE, PretrainLosses, combined_loss, gather_features

__all__ = ["PretrainModel", "make_optimizer", "make_scheduler", "train_step"]


class PretrainModel(nn.Module):
    """The trainable half of CLIP2Point pre-training: the depth encoder and the loss balance w.

    Args:
        visual: a CLIP visual tower (copied; the copy is trainable, the original is untouched).
        temperature: NT-Xent temperature.
        amp_dtype: autocast dtype for the encoder forward (``torch.bfloat16``) or None.
        grad_checkpointing: open_clip's ``set_grad_checkpointing`` on the copy.

    State-dict keys: ``depth_encoder.<CLIP visual key>`` and ``w``.
    """

    def __init__(self, visual: nn.Module, temperature: float = DEFAULT_TEMPERATURE,
                 amp_dtype: torch.dtype | None = None, grad_checkpointing: bool = False) -> None:
        super().__init__()
        self.depth_encoder = copy.deepcopy(visual).requires_grad_(True).train()
        if grad_checkpointing:
            if not hasattr(self.depth_encoder, "set_grad_checkpointing"):
                raise Clip2PointError(f"{type(visual).__name__} does not support gradient checkpointing")
            self.depth_encoder.set_grad_checkpointing(True)
        self.w = nn.Parameter(torch.ones([]))
        self.temperature = temperature
        self.amp_dtype = amp_dtype

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) CLIP-normalised depth images → (n, D) float32 raw features."""
        with torch.autocast(images.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            return self.depth_encoder(images).float()

    def forward(self, depth_a: torch.Tensor, depth_b: torch.Tensor, image_features: torch.Tensor) -> PretrainLosses:
        """Losses of the global batch (features gathered from every process).

        Args:
            depth_a, depth_b: (b, 3, H, W) the two jittered renders of each sample's view.
            image_features: (b, D) frozen CLIP features of that view's RGB render.
        """
        b = depth_a.shape[0]
        feats = self.encode(torch.cat([depth_a, depth_b]))  # one pass, like the released code
        za, zb = gather_features(feats[:b]), gather_features(feats[b:])
        img = gather_features(image_features.float(), with_grad=False)
        return combined_loss(za, zb, img, self.w, self.temperature)


def make_optimizer(model: nn.Module, lr: float = 6e-3, weight_decay: float = 1e-4) -> torch.optim.Optimizer:
    """LAMB (``timm.optim.Lamb``) over all trainable parameters, configured like torch_optimizer.Lamb's defaults."""
    from timm.optim import Lamb

    params = [p for p in model.parameters() if p.requires_grad]
    return Lamb(params, lr=lr, weight_decay=weight_decay, bias_correction=False, max_grad_norm=None)


def make_scheduler(optimizer: torch.optim.Optimizer, steps_per_epoch: int, restart_epochs: int = 2,
                   eta_min: float = 1e-5) -> torch.optim.lr_scheduler.CosineAnnealingWarmRestarts:
    """Cosine annealing with warm restarts every ``restart_epochs`` epochs, stepped per iteration (released)."""
    return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=max(1, restart_epochs * steps_per_epoch), T_mult=1, eta_min=eta_min)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    batch: PairBatch,
    views: str = "10",
    raster: RasterSettings = RasterSettings(),
) -> dict[str, float]:
    """One optimizer step: render the chosen views twice, encode, gather, NT-Xent, LAMB, schedule.

    Args:
        model: a :class:`PretrainModel`, or DDP around one.
        batch: this process's share of the global batch (any device; moved to the model's).
        views: the view set the cache's views were rendered from.

    Returns:
        ``loss``, ``loss_cross``, ``loss_depth``, ``w`` (before the update) and ``lr`` (used).
    """
    device = next(model.parameters()).device
    batch = batch.to(device)
    with torch.no_grad():
        depth = render_pair_views(batch.points, batch.view, batch.dist_scale, views, raster)  # (b, 2, H, W)
        images = clip_normalize(depth)  # (b, 2, 3, H, W)
    lr = float(optimizer.param_groups[0]["lr"])
    losses = model(images[:, 0], images[:, 1], batch.image_features)
    values = losses.as_floats()
    optimizer.zero_grad(set_to_none=True)
    losses.total.backward()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return {**values, "lr": lr}
