"""Shared test helpers: where the real data lives, small real shapes from it, and the browser tests' Chromium."""
from __future__ import annotations

import importlib.util
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MN10_TEST = DATA / "modelnet10" / "modelnet10_pcd1024_test.h5"
MN40_PARTIAL_TEST = DATA / "modelnet40_partial" / "modelnet40nr_airplane_bathtub_2048_test.h5"

needs_data = pytest.mark.skipif(not MN10_TEST.exists(), reason=f"real ModelNet data not found at {DATA} (see ../shared/data/README.md)")

#: The system Chromium the browser tests drive through Playwright (never a downloaded browser).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
#: ``pytestmark`` of a browser test module: skipped with a reason without playwright or Chromium.
needs_browser = [
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="playwright is not installed (pip install playwright; never `playwright install`)"),
    pytest.mark.skipif(not CHROMIUM.exists() and not shutil.which("chromium"),
                       reason="no Chromium at /usr/bin/chromium (apt-get install chromium)"),
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium_browser(timeout_ms: int) -> Iterator:
    """Yield a Playwright browser on the system Chromium (for a module-scoped fixture); ``expect()`` waits ``timeout_ms``."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=timeout_ms)  # expect()'s own default is 5 s: too short on a loaded 2-core machine
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")),
                                    args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def modelnet10_test(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """First n ModelNet10 test shapes, (n, 1024, 3) float32 **y-up** (raw units), and labels (n,)."""
    import h5py

    from clip2point.io import convert_up_axis

    with h5py.File(MN10_TEST, "r") as f:
        data = f["data"][:n] if n else f["data"][:]
        labels = f["label"][:n, 0] if n else f["label"][:, 0]
    return convert_up_axis(data, "z").astype(np.float32), labels.astype(np.int64)
