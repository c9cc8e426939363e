"""The app's defaults and paths, in one place (the bottom of :mod:`ui`; no UI toolkit, no torch work).

The model, the encoder precision, the prompt template and the view sets come from the core (``clip2point.backbone``,
``clip2point.zeroshot``, ``clip2point.render``), so the app and the command line agree; what is
declared here is the app's own choice (the first example, the class-set preset, the points shown).
"""
from __future__ import annotations

from pathlib import Path

from clip2point.backbone import DEFAULT_MODEL, PRECISIONS, BackboneConfig
from clip2point.io import SUPPORTED_MESH_EXTENSIONS, SUPPORTED_POINT_EXTENSIONS, UP_AXES
from clip2point.render import VIEW_SETS as CORE_VIEW_SETS
from clip2point.zeroshot import DEFAULT_TEMPLATE

__all__ = [
    "REPO_ROOT", "EXAMPLES_DIR", "DEFAULT_EXAMPLE", "DEFAULT_MODEL", "DEFAULT_TEMPLATE", "DEFAULT_NUM_POINTS",
    "DEFAULT_VIEWS", "FEWSHOT_VIEWS", "DEFAULT_RADIUS", "DEFAULT_CLASS_SET", "VIEW_SETS", "VIEW_SET_NAMES", "UP_AXES",
    "ENCODERS", "UPLOAD_EXTENSIONS", "DEFAULT_PRECISION", "PRECISIONS",
]

#: Encoder precision when none is asked for: the library's and the command line's (``BackboneConfig.precision``).
DEFAULT_PRECISION: str = BackboneConfig.precision
#: The repository (examples, ``runs/app``) and its procedural example objects.
REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = REPO_ROOT / "examples"
#: The example shown when the page opens.
DEFAULT_EXAMPLE = "chair"
#: Points classified per shape (the ModelNet loaders' 1,024).
DEFAULT_NUM_POINTS = 1024
#: The released zero-shot view set; few-shot runs and pre-training use "10".
DEFAULT_VIEWS = "6"
FEWSHOT_VIEWS = "10"
#: Splat radius in NDC units (``clip2point.render.render_depth``'s default).
DEFAULT_RADIUS = 0.02
#: The class-name preset shown first.
DEFAULT_CLASS_SET = "modelnet40"
#: The core's view-set names, zero-shot first ("6", "10").
VIEW_SETS: tuple[str, ...] = tuple(sorted(CORE_VIEW_SETS, key=lambda name: name != DEFAULT_VIEWS))
#: What each view set is for, in the page.
VIEW_SET_NAMES: dict[str, str] = {DEFAULT_VIEWS: "zero-shot", FEWSHOT_VIEWS: "pre-training"}
#: Encoder ids and their names in the UI.
ENCODERS: dict[str, str] = {"clip": "CLIP visual tower", "depth": "CLIP2Point depth encoder"}
#: Everything the core reads (point clouds and meshes), for upload widgets.
UPLOAD_EXTENSIONS: tuple[str, ...] = tuple(sorted(set(SUPPORTED_POINT_EXTENSIONS) | set(SUPPORTED_MESH_EXTENSIONS)))
