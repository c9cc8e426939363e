"""Where weights come from: the known checkpoints, the weights folders, finding weight files in them.

Lookup order for CLIP weights when the user names none (see :func:`clip2point.backbone.resolve_weights`):
``$CLIP2POINT_WEIGHTS`` → files in the weights folders → open_clip's download cache → download.

Reading and writing checkpoint files safely lives in :mod:`clip2point.checkpoints` (and the
TorchScript reader in :mod:`clip2point.torchscript`); their names are re-exported here for code
written against earlier versions.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import (
    STALE_TEMP_AGE_S, describe_os_error, load_state_dict_file, read_json, remove_stale_temp_files, resolve_inside,
    save_state_dict_atomic, write_json_atomic, write_text_atomic,
)
from .torchscript import MAX_ZIP_EXPANSION, read_torchscript_state_dict

__all__ = [
    "KNOWN_CHECKPOINTS", "KnownCheckpoint", "weights_dirs", "find_weight_files", "CHECKPOINT_SUFFIXES",
    # re-exported from clip2point.checkpoints / clip2point.torchscript
    "load_state_dict_file", "read_torchscript_state_dict", "save_state_dict_atomic", "write_json_atomic",
    "write_text_atomic", "read_json", "remove_stale_temp_files", "resolve_inside", "describe_os_error",
    "MAX_ZIP_EXPANSION", "STALE_TEMP_AGE_S",
]

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


@dataclass(frozen=True)
class KnownCheckpoint:
    """A checkpoint users can fetch themselves (this tool never downloads from unofficial hosts)."""

    name: str
    kind: str  # "clip" (full CLIP model) or "depth-encoder"
    model_name: str
    filename: str
    source: str
    how: str


KNOWN_CHECKPOINTS: tuple[KnownCheckpoint, ...] = (
    KnownCheckpoint(
        "openai", "clip", "ViT-B-32", "ViT-B-32.pt",
        "OpenAI CLIP ViT-B/32 (open_clip tag 'openai')",
        "downloaded automatically by open_clip on a machine with internet (or copy ViT-B-32.pt into weights/)",
    ),
    KnownCheckpoint(
        "clip2point-pretrained", "depth-encoder", "ViT-B-32", "best_eval.pth",
        "CLIP2Point pre-trained depth encoder released by the authors (github.com/tyhuang0428/CLIP2Point, README)",
        "download best_eval.pth from the authors' README link, put it in weights/, pass --depth-encoder weights/best_eval.pth",
    ),
)


def weights_dirs() -> list[Path]:
    """Folders searched for weight files: ``$CLIP2POINT_WEIGHTS_DIR``, ``./weights``, the repo's ``weights/``."""
    dirs: list[Path] = []
    env = os.environ.get("CLIP2POINT_WEIGHTS_DIR")
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(Path.cwd() / "weights")
    dirs.append(Path(__file__).resolve().parents[1] / "weights")
    seen: set[Path] = set()
    out = []
    for d in dirs:
        r = d.resolve()
        if r not in seen:
            seen.add(r)
            out.append(d)
    return out


def find_weight_files(prefix: str = "") -> list[Path]:
    """Checkpoint files in the weights folders whose name starts with ``prefix`` (case-insensitive)."""
    found = []
    for d in weights_dirs():
        if d.is_dir():
            for p in sorted(d.iterdir()):
                if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES and p.name.lower().startswith(prefix.lower()):
                    found.append(p)
    return found


