"""Shared fixtures: an offline, weights-free environment and a tiny CLIP backbone."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers.py

# Tests never download and never see a developer's own weights.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("CLIP2POINT_WEIGHTS", None)


@pytest.fixture(autouse=True)
def _isolated_weights_dir(tmp_path_factory, monkeypatch):
    empty = tmp_path_factory.mktemp("weights")
    monkeypatch.setenv("CLIP2POINT_WEIGHTS_DIR", str(empty))
    # commands cache view features by default: each test starts with its own empty cache, never ~/.cache
    monkeypatch.setenv("CLIP2POINT_CACHE_DIR", str(tmp_path_factory.mktemp("view-cache")))
    monkeypatch.delenv("CLIP2POINT_WEIGHTS", raising=False)
    monkeypatch.setattr("clip2point.weights.weights_dirs", lambda: [empty])


@pytest.fixture(scope="session")
def tiny_backbone():
    """A randomly initialised tiny open_clip model (2 layers, width 64): fast, real code paths."""
    import torch

    from clip2point.backbone import load_backbone

    torch.manual_seed(0)
    return load_backbone("tiny-ViT-test", weights="random")
