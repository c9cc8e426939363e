"""clip2point: CLIP2Point (ICCV 2023) — point clouds rendered to depth maps, classified by CLIP.

Public API (lazy: importing clip2point loads no model and no heavy library):

- :func:`load_point_cloud` — read any point-cloud or mesh file into a :class:`PointCloud`.
- :func:`render_depth` — (B, N, 3) points → (B, V, H, W) depth images, the CLIP2Point way.
- :class:`ZeroShotClassifier` — per-view CLIP logits summed over views.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_point_cloud": ".io",
    "load_mesh": ".io",
    "PointCloud": ".io",
    "Mesh": ".io",
    "render_depth": ".render",
    "DepthRenderer": ".render",
    "ViewSet": ".render",
    "ZeroShotClassifier": ".zeroshot",
    "ZeroShotResult": ".zeroshot",
    "load_backbone": ".backbone",
    "ClipBackbone": ".backbone",
    "open_dataset": ".datasets",
}
from .errors import *  # noqa: E402,F401,F403  (light: plain exception classes)
from .errors import __all__ as _errors_all  # noqa: E402

__all__ = sorted([*_LAZY, *_errors_all, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'clip2point' has no attribute {name!r}")
