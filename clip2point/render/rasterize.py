"""Point rasterizer: an orthographic nearest-point z-buffer of small disks.

Matches pytorch3d's ``PointsRasterizer`` with ``points_per_pixel=1`` as CLIP2Point's released
renderer configures it (Huang et al., ICCV 2023, §3.1) pixel for pixel, in its float32
arithmetic: a point covers a pixel when ``dx² + dy² < r²`` (``dx``, ``dy`` its NDC offsets from the
pixel centre, ``r² = r·r`` in float32); points with negative depth are skipped (depth 0 is drawn);
each pixel keeps the smallest depth. NDC +X points to the image's left, +Y up: pixel column ``j``
has centre ``x = -1 + (2(W-1-j) + 1)/W`` and row ``i`` has centre ``y = -1 + (2(H-1-i) + 1)/H``,
each step rounded to float32 as the kernel's ``PixToNonSquareNdc`` on the flipped index does
(:func:`pixel_centres`). (Mathematically ``1 - (2j+1)/S``, but that float32 expression differs by
1 ulp in 104 of 224 columns, which moves a few boundary pixels per 10⁷.) The kernel's ``dx*dx +
dy*dy`` is taken without a fused multiply-add, as pytorch3d's CPU kernel does (its CUDA build may
contract it).

Pure torch, batched over shapes and views, no Python loop over points or pixels (only over
chunks of maps, to bound memory). Each point tests the (2R+1)² pixels around its nearest pixel
(R = ceil(r_px + 0.5) - 1, i.e. 5×5 for the default radius at 224²); distances are computed per
axis (2·(2R+1) values per point) and combined with one broadcast add, and all candidates go to a
single ``scatter_reduce(amin)`` — misses carry +inf, so no boolean compaction is needed.

This is the one rasterizer of the package: it returns :class:`Fragments` (depth, optionally the
winning point's index, and each map's nearest depth) that the depth shader
(:mod:`~clip2point.render.shading`) and the colour compositor (:mod:`~clip2point.render.image`)
consume.
"""
from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ..errors import Clip2PointError

__all__ = [
    "RasterSettings", "Fragments", "rasterize_points", "rasterize_chunks", "pixel_centres", "BACKGROUND_DEPTH",
    "MAX_IMAGE_SIZE", "DEFAULT_RADIUS",
]

#: Depth value of pixels no point covers (pytorch3d's ``zbuf`` convention).
BACKGROUND_DEPTH = -1.0
#: Largest accepted image side in pixels (a 4096² depth map is 64 MB per view).
MAX_IMAGE_SIZE = 4096
#: CLIP2Point's splat radius in NDC units (image width 2): ≈ 2.2 px at 224² (released renderer).
DEFAULT_RADIUS = 0.02


@dataclass(frozen=True)
class RasterSettings:
    """Rasterizer settings.

    Attributes:
        image_size: H = W in pixels (CLIP2Point: 224).
        radius: disk radius in NDC units (image width = 2); CLIP2Point: 0.02 (≈ 2.2 px at 224²).
        max_elements: soft cap on the number of (point, candidate pixel) pairs plus output pixels
            processed at once (≈ 20 bytes each). The default keeps a chunk's working set near the
            CPU's cache size (3 shapes × 10 views at 224²), which is ~2× faster than big chunks
            because every pass is memory-bound; it also bounds peak memory.

    Raises:
        Clip2PointError: ``image_size`` not an integer in 1..:data:`MAX_IMAGE_SIZE`, ``radius``
            not a finite number in (0, 2), or ``max_elements`` not a positive integer.
    """

    image_size: int = 224
    radius: float = DEFAULT_RADIUS
    max_elements: int = 3_000_000

    def __post_init__(self) -> None:
        size = self.image_size
        if isinstance(size, bool) or not isinstance(size, numbers.Real) or size != int(size) \
                or not 1 <= size <= MAX_IMAGE_SIZE:
            raise Clip2PointError(
                f"image size must be a whole number of pixels from 1 to {MAX_IMAGE_SIZE}, got {size!r}; "
                "CLIP2Point uses 224"
            )
        radius = self.radius
        if isinstance(radius, bool) or not isinstance(radius, numbers.Real) or not 0 < radius < 2:
            raise Clip2PointError(
                f"splat radius must be a number between 0 and 2 NDC units (the image is 2 wide), got {radius!r}; "
                "CLIP2Point uses 0.02"
            )
        elements = self.max_elements
        if isinstance(elements, bool) or not isinstance(elements, numbers.Integral) or elements < 1:
            raise Clip2PointError(f"max_elements must be a positive integer, got {elements!r}")

    @property
    def radius2(self) -> float:
        """r² as pytorch3d's kernel takes it: the float32 radius squared in float32 (a float32 value)."""
        r = np.float32(self.radius)
        return float(r * r)

    @property
    def reach(self) -> int:
        """R: a point can cover pixels at most R rows/columns from its nearest pixel."""
        return max(0, math.ceil(self.radius * self.image_size / 2.0 + 0.5) - 1)

    def maps_per_chunk(self, points: int) -> int:
        """Maps (shape × view pairs) rasterized at once: ``max_elements // (N·(2R+1)² + H·W)``, at least 1."""
        k = 2 * self.reach + 1
        return max(1, self.max_elements // max(points * k * k + self.image_size**2, 1))


class Fragments(NamedTuple):
    """What the rasterizer knows about every pixel (pytorch3d's ``PointFragments`` with one point per pixel).

    Attributes:
        zbuf: (..., H, W) float32 depth of the nearest covering point; :data:`BACKGROUND_DEPTH` (−1)
            where no point covers the pixel (+inf in the chunks of :func:`rasterize_chunks`).
        idx: (..., H, W) int64 index, among its shape's N points, of that nearest point (ties: the
            smallest index); −1 where none. None unless asked for (depth shading needs only ``zbuf``).
        zmin: (...) float32 smallest depth drawn in each map (≥ 0; +inf for an empty map). A point
            at depth exactly 0 is drawn (it wins its pixels, zbuf 0); the depth shader then treats
            such pixels as background, as the released code does (see :mod:`~clip2point.render.shading`).
    """

    zbuf: torch.Tensor
    idx: torch.Tensor | None
    zmin: torch.Tensor


def rasterize_points(view_points: torch.Tensor, settings: RasterSettings = RasterSettings(), *,
                     with_index: bool = False) -> Fragments:
    """Z-buffer the points of every (shape, view) pair.

    Args:
        view_points: (B, V, N, 3) float32 view coordinates: x, y in NDC ([-1, 1] is the image),
            z = depth (≥ 0 in front of the camera).
        settings: image size, splat radius and chunk size.
        with_index: also find which point wins each pixel (for colour compositing).

    Returns:
        :class:`Fragments` with ``zbuf`` (B, V, H, W) float32 (:data:`BACKGROUND_DEPTH` (−1) where no
        point covers the pixel), ``idx`` (B, V, H, W) int64 or None, ``zmin`` (B, V).
    """
    B, V = view_points.shape[:2]
    S = int(settings.image_size)
    zbuf = torch.empty((B, V, S, S), dtype=view_points.dtype, device=view_points.device)
    idx = torch.empty((B, V, S, S), dtype=torch.int64, device=view_points.device) if with_index else None
    zmin = torch.empty((B * V,), dtype=view_points.dtype, device=view_points.device)
    done = 0
    for part in rasterize_chunks(view_points, settings, zbuf, idx):
        zmin[done : done + len(part.zmin)] = part.zmin
        done += len(part.zmin)
    return Fragments(zbuf.masked_fill_(torch.isinf(zbuf), BACKGROUND_DEPTH), idx, zmin.view(B, V))


def rasterize_chunks(view_points: torch.Tensor, settings: RasterSettings, zbuf: torch.Tensor,
                     idx: torch.Tensor | None = None) -> Iterator[Fragments]:
    """Rasterize into ``zbuf`` (and ``idx``) a chunk of maps at a time, yielding each chunk while it is fresh.

    The one chunking policy of the renderers (:meth:`RasterSettings.maps_per_chunk`): shading a
    chunk right after it is rasterized keeps the working set in the CPU's cache.

    Args:
        view_points: (B, V, N, 3) view coordinates (see :func:`rasterize_points`).
        settings: image size, splat radius, chunk size.
        zbuf: (B, V, H, W) contiguous output; filled with depths, **+inf** where no point covers a pixel.
        idx: (B, V, H, W) contiguous int64 output for the winning point indices (−1: none), or None.

    Yields:
        :class:`Fragments` of m maps: views (m, H, W) of ``zbuf`` / ``idx`` (maps in ``B·V`` order)
        and ``zmin`` (m,).
    """
    B, V, N, _ = view_points.shape
    M, S = B * V, int(settings.image_size)
    flat_points = view_points.reshape(M, N, 3)
    zmaps = zbuf.view(M, S, S)
    imaps = idx.view(M, S, S) if idx is not None else None
    offs = torch.arange(-settings.reach, settings.reach + 1, device=view_points.device)
    centres = pixel_centres(S, view_points.device).to(view_points.dtype)
    chunk = settings.maps_per_chunk(N)
    for m0 in range(0, M, chunk):
        zpart = zmaps[m0 : m0 + chunk]
        ipart = imaps[m0 : m0 + chunk] if imaps is not None else None
        zmin = _rasterize_chunk(flat_points[m0 : m0 + chunk], centres, settings.radius2, offs, zpart.view(-1),
                                None if ipart is None else ipart.view(-1))
        yield Fragments(zpart, ipart, zmin)


@functools.lru_cache(maxsize=16)
def _centres_np(size: int) -> np.ndarray:
    flipped = np.arange(size - 1, -1, -1).astype(np.float32)  # the kernel's reversed index S-1-j
    return np.float32(-1.0) + (np.float32(2.0) * flipped + np.float32(1.0)) / np.float32(size)


def pixel_centres(size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(S,) float32 NDC centres of pixel columns (rows alike) ``j = 0..S-1``, exactly as pytorch3d's kernel.

    ``-1 + (2(S-1-j) + 1)/S``, each operation rounded to float32 (IEEE division; computed with numpy
    on the CPU, because CUDA torch divides by a Python scalar through its reciprocal). Column 0
    is the image's left edge, at NDC ≈ +1 (+X points left).
    """
    return torch.from_numpy(_centres_np(int(size))).to(device)


def _axis_candidates(coord: torch.Tensor, centres: torch.Tensor, offs: torch.Tensor):
    """Per-axis candidate pixel indices (clamped into the image) and squared NDC distances (float32, as the kernel)."""
    S = centres.shape[0]
    centre = torch.round(((1.0 - coord) * S - 1.0) / 2.0).to(torch.int64)  # nearest pixel index (a window centre)
    idx = centre[..., None] + offs  # (M, N, K)
    outside = (idx < 0) | (idx >= S)
    idx.clamp_(0, S - 1)
    d2 = (centres[idx] - coord[..., None]) ** 2
    return idx, d2.masked_fill_(outside, math.inf)


def _rasterize_chunk(points: torch.Tensor, centres: torch.Tensor, radius2: float, offs: torch.Tensor, zbuf: torch.Tensor,
                     idx: torch.Tensor | None) -> torch.Tensor:
    """Z-buffer m maps of (m, N, 3) points into flat ``zbuf`` (m·S·S,) (+inf background) and ``idx``; zmin (m,).

    ``centres``: (S,) :func:`pixel_centres` in the points' dtype."""
    m, N, _ = points.shape
    S = centres.shape[0]
    x, y, z = points.unbind(-1)
    col, dx2 = _axis_candidates(x, centres, offs)
    row, dy2 = _axis_candidates(y, centres, offs)
    dy2.masked_fill_((z < 0)[..., None], math.inf)  # behind the camera: never drawn
    row_base = (torch.arange(m, device=row.device)[:, None, None] * S + row) * S  # (m, N, K)
    flat = (row_base[..., :, None] + col[..., None, :]).view(-1)  # (m*N*K*K,)
    hit = (dy2[..., :, None] + dx2[..., None, :]) < radius2  # (m, N, K, K); radius2 is a float32 value
    src = torch.where(hit, z[..., None, None], math.inf)
    zbuf.fill_(math.inf).scatter_reduce_(0, flat, src.view(-1), reduce="amin", include_self=True)
    if idx is not None:  # the winner: a covering point at the pixel's depth, smallest index on ties
        win = hit & (src == zbuf[flat].view(src.shape))
        ids = torch.arange(N, device=points.device)[:, None, None].expand(m, N, *hit.shape[2:])
        idx.fill_(N).scatter_reduce_(0, flat[win.view(-1)], ids[win], reduce="amin", include_self=True)
        idx.masked_fill_(idx == N, -1)
    return src.view(m, -1).amin(dim=1)
