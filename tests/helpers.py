"""Shared test helpers: where the real data lives, and small real shapes from it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MN10_TEST = DATA / "modelnet10" / "modelnet10_pcd1024_test.h5"
MN40_PARTIAL_TEST = DATA / "modelnet40_partial" / "modelnet40nr_airplane_bathtub_2048_test.h5"

needs_data = pytest.mark.skipif(not MN10_TEST.exists(), reason=f"real ModelNet data not found at {DATA} (see ../shared/data/README.md)")


def modelnet10_test(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """First n ModelNet10 test shapes, (n, 1024, 3) float32 **y-up** (raw units), and labels (n,)."""
    import h5py

    from clip2point.io import convert_up_axis

    with h5py.File(MN10_TEST, "r") as f:
        data = f["data"][:n] if n else f["data"][:]
        labels = f["label"][:n, 0] if n else f["label"][:, 0]
    return convert_up_axis(data, "z").astype(np.float32), labels.astype(np.int64)
