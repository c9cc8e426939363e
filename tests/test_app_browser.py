"""The app in a real browser: upload through the page, see depth views and scores appear.

Needs the ``playwright`` Python package and a Chromium at /usr/bin/chromium (no browser
download: Playwright is pointed at the system Chromium). Skipped with a reason otherwise.
"""
from __future__ import annotations

import importlib.util
import shutil
import socket
from pathlib import Path

import pytest

from clip2point.classes import MODELNET40
from ui.registry import ModelRegistry
from ui.shapes import example_path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="playwright is not installed (pip install playwright; never `playwright install`)"),
    pytest.mark.skipif(not CHROMIUM.exists() and not shutil.which("chromium"),
                       reason="no Chromium at /usr/bin/chromium (apt-get install chromium)"),
]
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def app_url():
    from ui.app import build_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = build_app("tiny-ViT-test", "random", "cpu", data_dir=None, registry=ModelRegistry())
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield demo.local_url
    demo.close()


@pytest.fixture(scope="module")
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")),
                                    args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(app_url)
        yield page
        browser.close()


def _prediction_text(page) -> str:
    page.wait_for_function(
        "() => { const e = document.querySelector('#c2p-prediction .c2p-pred-class'); return e && e.textContent.length > 0 }")
    return page.locator("#c2p-prediction").inner_text()


def test_opens_on_an_example_with_views_scores_and_a_random_weights_banner(page):
    text = _prediction_text(page)
    assert any(c in text for c in MODELNET40)
    assert "RANDOM WEIGHTS" in page.locator("#c2p-banner").inner_text()
    assert page.locator("#c2p-view-cards img").count() == 12  # 6 views × (depth, image view)
    assert "chair" in page.locator("#c2p-shape-info").inner_text()


def test_upload_shows_depth_views_then_scores(page, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)  # expect()'s own default is 5 s: too short on a loaded 2-core machine

    page.get_by_role("tab", name="Upload").click()
    bad = tmp_path / "broken.ply"
    bad.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 99\nproperty float x\nend_header\n\x00")
    page.set_input_files("#upload input[type=file]", str(bad))
    expect(page.locator("#c2p-status-error")).to_contain_text("broken.ply")
    page.locator("#upload button[aria-label='Clear']").first.click()

    page.set_input_files("#upload input[type=file]", str(example_path("mug", "points")))
    expect(page.locator("#c2p-shape-info")).to_contain_text("mug.ply")
    expect(page.locator("#c2p-view-cards img")).to_have_count(12)
    expect(page.locator("#c2p-view-cards")).to_contain_text("elev 90° · azim 0°")
    expect(page.locator("#c2p-view-cards .c2p-vote")).to_have_count(6)  # scores arrived: each view's vote
    text = _prediction_text(page)
    assert any(c in text for c in MODELNET40)
    expect(page.locator("#probabilities .js-plotly-plot")).to_have_count(1)
    expect(page.locator("#heatmap .js-plotly-plot")).to_have_count(1)
    predicted = page.locator("#c2p-prediction .c2p-pred-class").inner_text()
    expect(page.locator("#probabilities")).to_contain_text(predicted)  # the bar chart names the winner
    assert page.locator("#c2p-status-error").count() == 0  # the error went away with the good file
