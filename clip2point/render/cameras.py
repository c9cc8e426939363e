"""Cameras: view sets and world-to-view transforms.

Reproduces pytorch3d's ``look_at_view_transform`` semantics (degrees, y-up world) that
CLIP2Point's released renderer uses (Huang et al., ICCV 2023, §3.1; released ``render/``
code), computed in float32 like pytorch3d so that the degenerate top/bottom views
(elevation ±90°) pick exactly the same in-plane rotation the released weights were trained on.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import Clip2PointError

__all__ = [
    "ViewSet", "VIEW_SETS", "ZEROSHOT_VIEWS", "PRETRAIN_VIEWS", "get_view_set", "Cameras", "camera_centers",
    "look_at_rotation", "world_to_view",
]


@dataclass(frozen=True)
class ViewSet:
    """A list of V cameras looking at the origin, up = +Y.

    Attributes:
        elev: (V,) elevations in degrees.
        azim: (V,) azimuths in degrees.
        dist: (V,) camera distances (unit sphere radius = 1). With CLIP2Point's orthographic
            camera the point cloud is also scaled by 1/dist, so ``dist`` acts as a zoom.
        name: a short label ("6", "10", "custom").
    """

    elev: tuple[float, ...]
    azim: tuple[float, ...]
    dist: tuple[float, ...]
    name: str = "custom"

    def __post_init__(self) -> None:
        if not (len(self.elev) == len(self.azim) == len(self.dist)) or len(self.elev) == 0:
            raise Clip2PointError(
                f"a view set needs equally long, non-empty elev/azim/dist lists; got "
                f"{len(self.elev)}/{len(self.azim)}/{len(self.dist)}"
            )
        if any(not math.isfinite(d) or d <= 0 for d in self.dist):
            raise Clip2PointError(f"camera distances must be positive finite numbers, got {self.dist}")
        if any(not math.isfinite(a) for a in self.elev + self.azim):
            raise Clip2PointError(f"view angles must be finite numbers of degrees, got elev {self.elev}, azim {self.azim}")

    def __len__(self) -> int:
        return len(self.elev)

    def labels(self) -> list[str]:
        """Human-readable labels, e.g. ``"elev 0°, azim 90°"``, one per view."""
        return [f"elev {e:g}°, azim {a:g}°" for e, a in zip(self.elev, self.azim)]

    @classmethod
    def custom(cls, elev: Sequence[float], azim: Sequence[float], dist: Sequence[float] | float = 1.0) -> ViewSet:
        """Build a view set from lists (``dist`` may be one number for all views).

        Raises:
            Clip2PointError: non-numeric values, lists of different lengths, bad distances.
        """
        try:
            elev_t = tuple(float(e) for e in elev)
            azim_t = tuple(float(a) for a in azim)
            dist_t = tuple(float(d) for d in dist) if isinstance(dist, Sequence) else (float(dist),) * len(elev_t)
        except (TypeError, ValueError) as err:
            raise Clip2PointError(f"view angles and distances must be numbers ({err})") from err
        return cls(elev_t, azim_t, dist_t, "custom")


#: The view sets of the released code (REFERENCE: 10 views for pre-training and few-shot, the
#: four oblique cameras at elev 225/315 lie *below* the object; 6 views for zero-shot).
VIEW_SETS: dict[str, ViewSet] = {
    "10": ViewSet(
        elev=(0.0, 90.0, 180.0, 270.0, 225.0, 225.0, 315.0, 315.0, 0.0, 0.0),
        azim=(0.0, 0.0, 0.0, 0.0, -45.0, 45.0, -45.0, 45.0, -90.0, 90.0),
        dist=(1.0,) * 10,
        name="10",
    ),
    "6": ViewSet(
        elev=(0.0, 0.0, 0.0, 0.0, 90.0, -90.0),
        azim=(0.0, 90.0, 180.0, 270.0, 0.0, 180.0),
        dist=(1.0,) * 6,
        name="6",
    ),
}


#: The released zero-shot view set (CLIP2Point §4.2) and the pre-training / few-shot one (§3.2).
ZEROSHOT_VIEWS = "6"
PRETRAIN_VIEWS = "10"


def get_view_set(views: str | int | ViewSet) -> ViewSet:
    """Return a :class:`ViewSet` from a preset name (``"6"``, ``"10"``, ``6``, ``10``) or pass one through.

    Raises:
        Clip2PointError: unknown preset name.
    """
    if isinstance(views, ViewSet):
        return views
    key = str(views).strip()
    if key not in VIEW_SETS:
        raise Clip2PointError(
            f"unknown view set {views!r}; use one of {', '.join(VIEW_SETS)} or ViewSet.custom(elev, azim, dist)"
        )
    return VIEW_SETS[key]


@dataclass(frozen=True)
class Cameras:
    """Look-at cameras on spheres around the origin (up = +Y), as tensors of any batch shape.

    A :class:`ViewSet` gives one camera per view, (V,); pre-training selects one view per sample
    and renders it at several distances, (B, K). The three tensors broadcast against each other.

    Attributes:
        elev, azim: elevation and azimuth in degrees. dist: distance (the orthographic depth
            renderer also scales the cloud by 1/dist, so it acts as a zoom).
    """

    elev: torch.Tensor
    azim: torch.Tensor
    dist: torch.Tensor

    @classmethod
    def from_views(cls, views: str | int | ViewSet, device: torch.device | str | None = None) -> Cameras:
        """The (V,) float32 cameras of a view set or preset name.

        Raises:
            Clip2PointError: unknown preset name.
        """
        vs = get_view_set(views)
        return cls(torch.tensor(vs.elev, device=device), torch.tensor(vs.azim, device=device),
                   torch.tensor(vs.dist, device=device))

    def __getitem__(self, index: Any) -> Cameras:
        """The cameras at ``index``, any tensor index: ``cams[view]`` with a (B,) tensor of view
        indices gives one camera per sample; ``cams[:, None]`` adds a dimension."""
        return Cameras(self.elev[index], self.azim[index], self.dist[index])

    def scaled(self, factor: torch.Tensor) -> Cameras:
        """Cameras with ``dist · factor`` (``factor`` broadcasts against the cameras' shape).

        E.g. (V,) view-set cameras with a (B, V) factor give (B, V) cameras (per-shape distance
        jitter); ``cams[view][:, None].scaled(f)`` with (B,) view indices and a (B, K) factor gives
        each sample's view at K distances.
        """
        return Cameras(self.elev, self.azim, self.dist * factor.to(self.dist.device, torch.float32))

    def to(self, device: torch.device | str) -> Cameras:
        """The same cameras on ``device``."""
        return Cameras(self.elev.to(device), self.azim.to(device), self.dist.to(device))

    def broadcast(self, batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(elev, azim, dist) expanded to one shape; 1-d (V,) cameras to (batch, V) when ``batch`` is given."""
        elev, azim, dist = torch.broadcast_tensors(self.elev, self.azim, self.dist)
        if batch is not None and dist.dim() == 1:
            elev, azim, dist = (t.expand(batch, -1) for t in (elev, azim, dist))
        return elev, azim, dist

    def centers_and_rotations(self, batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Camera centres (..., 3), view axes (..., 3, 3) (rows x, y, z) and distances (...)."""
        elev, azim, dist = self.broadcast(batch)
        centers = camera_centers(elev, azim, dist)
        return centers, look_at_rotation(centers), dist


def camera_centers(elev: torch.Tensor, azim: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Camera centres ``C = dist * (cos e sin a, sin e, cos e cos a)``.

    Args:
        elev, azim: (...,) degrees; dist: (...,) world units. Computed in float32 as pytorch3d's
            ``camera_position_from_spherical_angles`` does (the float32 residual of cos(90°) decides
            the in-plane rotation of top/bottom views).

    Returns:
        (..., 3) float32.
    """
    elev = elev.to(torch.float32) * (math.pi / 180.0)
    azim = azim.to(torch.float32) * (math.pi / 180.0)
    dist = dist.to(torch.float32)
    x = dist * torch.cos(elev) * torch.sin(azim)
    y = dist * torch.sin(elev)
    z = dist * torch.cos(elev) * torch.cos(azim)
    return torch.stack([x, y, z], dim=-1)


def look_at_rotation(centers: torch.Tensor) -> torch.Tensor:
    """View axes of cameras at ``centers`` looking at the origin with up = +Y.

    ``z = normalize(-C)``, ``x = normalize(up × z)``, ``y = normalize(z × x)``; where ``x``
    degenerates (all |x_i| ≤ 5e-3: camera straight above or below) ``x = normalize(y × z)``.
    Normalisation uses eps = 1e-5 exactly like pytorch3d's ``look_at_rotation``.

    Args:
        centers: (..., 3) float32 camera centres.

    Returns:
        (..., 3, 3) float32 whose rows are the view axes x, y, z in world coordinates.
    """
    shape = centers.shape[:-1]
    c = centers.reshape(-1, 3).to(torch.float32)
    up = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float32, device=c.device).expand_as(c)
    z = F.normalize(-c, eps=1e-5, dim=1)
    x = F.normalize(torch.linalg.cross(up, z, dim=1), eps=1e-5, dim=1)
    y = F.normalize(torch.linalg.cross(z, x, dim=1), eps=1e-5, dim=1)
    close = torch.isclose(x, torch.zeros((), device=c.device), atol=5e-3).all(dim=1, keepdim=True)
    x = torch.where(close, F.normalize(torch.linalg.cross(y, z, dim=1), eps=1e-5, dim=1), x)
    return torch.stack([x, y, z], dim=1).reshape(*shape, 3, 3)


def world_to_view(points: torch.Tensor, centers: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Transform world points into each camera's view coordinates.

    Args:
        points: (B, N, 3) or (B, V, N, 3) float32 world points (already scaled by 1/dist where
            that applies; per view when the distance differs per view).
        centers: (V, 3) or (B, V, 3) camera centres.
        rotations: (V, 3, 3) or (B, V, 3, 3), rows = view axes (from :func:`look_at_rotation`).

    Returns:
        (B, V, N, 3): ``((P - C)·x, (P - C)·y, (P - C)·z)``; the last component is the depth.
    """
    if centers.dim() == 2:
        centers = centers[None]
    if rotations.dim() == 3:
        rotations = rotations[None]
    if points.dim() == 3:
        points = points[:, None]
    rel = points - centers[:, :, None, :]  # (B, V, N, 3)
    return torch.einsum("bvnk,bvjk->bvnj", rel, rotations.expand(rel.shape[0], -1, -1, -1))
