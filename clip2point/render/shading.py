"""Depth shading: turn z-buffers into CLIP-ready images.

CLIP2Point's released renderer (Huang et al., ICCV 2023, §3.1) maps each depth map to an image
where near surfaces are dark and the background is white; CLIP's own mean/std is then applied.

Foreground is ``depth > 0``, as the released ``Renderer.norm`` masks it (``img > 0``): a pixel
whose nearest point lies at depth exactly 0 (drawn by the rasterizer, which only skips negative
depths) is background, and the minimum depth is taken over the remaining pixels.
"""
from __future__ import annotations

import math

import torch

__all__ = ["CLIP_MEAN", "CLIP_STD", "depth_to_image", "shade_zbuffer_inf_", "clip_normalize"]

#: CLIP's image normalisation (OpenAI CLIP, ``clip/clip.py``).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: Largest foreground grey level (the released code scales depth to 200/255).
FOREGROUND_SCALE = 200.0 / 255.0


def depth_to_image(zbuf: torch.Tensor) -> torch.Tensor:
    """Normalise z-buffers per map into grey images in [0, 1].

    Per map: foreground = pixels with depth > 0 (the released mask; depth exactly 0 is
    background); ``zmax`` = max depth of the map; ``zmin`` = min over the map after setting the
    background to 1 (i.e. ``min(foreground min, 1)``); foreground pixels become
    ``(z - zmin) / zmax * 200/255``; background pixels become 1.0 (white).

    Args:
        zbuf: (..., H, W) float32 depths, background < 0 (see ``rasterize_points``); 0 is background too.

    Returns:
        (..., H, W) float32 in [0, 1], background exactly 1.0. An empty map is all 1.0.
    """
    fg = zbuf > 0
    zmax = zbuf.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-6)
    zmin = torch.where(fg, zbuf, torch.ones_like(zbuf)).amin(dim=(-2, -1), keepdim=True)
    img = (zbuf - zmin) * (FOREGROUND_SCALE / zmax)
    return torch.where(fg, img, torch.ones_like(img))


def shade_zbuffer_inf_(zbuf: torch.Tensor, zmin: torch.Tensor) -> torch.Tensor:
    """In-place :func:`depth_to_image` for z-buffers whose background is +inf (fewer passes).

    Args:
        zbuf: (..., H, W) depths, background +inf; overwritten with the image.
        zmin: (...) minimum depth drawn per map (``Fragments.zmin``: +inf for an empty map; 0 when a
            point at depth 0 won a pixel, which is then background and the next depth is the minimum).

    Same maths as :func:`depth_to_image`; the +inf background ends as exactly 1.0.
    """
    at_zero = zmin == 0  # maps with pixels at depth exactly 0: background (the released mask is depth > 0)
    if bool(at_zero.any()):
        zbuf.masked_fill_(zbuf == 0, math.inf)
        zmin = torch.where(at_zero, zbuf.amin(dim=(-2, -1)), zmin)
    zmin = zmin.clamp(max=1.0)[..., None, None]
    zmax = torch.nan_to_num(zbuf, posinf=-1.0).amax(dim=(-2, -1), keepdim=True).clamp_(min=1e-6)
    scale = FOREGROUND_SCALE / zmax
    return zbuf.sub_(zmin).mul_(scale).clamp_(max=1.0)


def clip_normalize(images: torch.Tensor) -> torch.Tensor:
    """Repeat grey images to 3 channels and apply CLIP's mean/std.

    Args:
        images: (..., H, W) float32 in [0, 1] (output of :func:`depth_to_image`).

    Returns:
        (..., 3, H, W) float32, ready for a CLIP image encoder.
    """
    mean = torch.tensor(CLIP_MEAN, dtype=images.dtype, device=images.device)[:, None, None]
    std = torch.tensor(CLIP_STD, dtype=images.dtype, device=images.device)[:, None, None]
    return (images.unsqueeze(-3) - mean) / std
