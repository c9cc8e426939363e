"""The app in a real browser: upload through the page, see depth views and scores appear.

Needs the ``playwright`` Python package and a Chromium at /usr/bin/chromium (no browser
download: Playwright is pointed at the system Chromium). Skipped with a reason otherwise.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from clip2point.classes import MODELNET40
from helpers import DATA, chromium_browser, free_port, needs_browser
from ui.registry import ModelRegistry
from ui.shapes import example_path

pytestmark = needs_browser
TIMEOUT_MS = 30_000


HAS_DATA = (DATA / "modelnet10").is_dir()


@pytest.fixture(scope="module")
def app_url():
    from ui.app import build_app

    demo = build_app("tiny-ViT-test", "random", "cpu", data_dir=DATA if HAS_DATA else None, registry=ModelRegistry())
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    yield demo.local_url
    demo.close()


@pytest.fixture(scope="module")
def browser():
    yield from chromium_browser(TIMEOUT_MS)


def open_page(browser, app_url, width: int = 1440, height: int = 1000):
    """A new tab on the app at this viewport, once the opening example is scored."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": width, "height": height}, accept_downloads=True)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app_url)
    expect(page.locator("#c2p-view-cards .c2p-vote").first).to_be_visible()
    return page


@pytest.fixture(scope="module")
def page(browser, app_url):
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app_url)
    yield page
    page.close()


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


# ---------------------------------------------------------------------------------------------
# issue 13: layout and behaviour only a browser shows, at 1440×900 and 1280×720


def _box(locator) -> dict:
    return locator.evaluate("e => { const r = e.getBoundingClientRect(); return {top: r.top, bottom: r.bottom, "
                            "left: r.left, right: r.right, width: r.width, height: r.height} }")


def _not_clipped(locator) -> bool:
    return locator.evaluate("e => e.scrollWidth <= e.clientWidth + 1 && e.scrollHeight <= e.clientHeight + 1")


def _upload_box_is_whole(page, elem_id: str) -> None:
    """The file box's label sits above its icon and its text fits: nothing of the drop area is hidden."""
    label, icon = page.locator(f"#{elem_id} label[data-testid=block-label]"), page.locator(f"#{elem_id} [data-testid=upload-icon]")
    assert _box(label)["bottom"] <= _box(icon)["top"] + 1, (elem_id, _box(label), _box(icon))
    text, area = _box(page.locator(f"#{elem_id} [data-testid=upload-text]")), _box(page.locator(f"#{elem_id} button.upload-container"))
    assert area["top"] - 1 <= text["top"] and text["bottom"] <= area["bottom"] + 1, (elem_id, text, area)
    assert _box(page.locator(f"#{elem_id}"))["bottom"] >= area["bottom"] - 1  # the block does not cut the drop area


@pytest.mark.parametrize("viewport", [(1440, 900), (1280, 720)])
def test_layout_nothing_clipped_and_every_camera_named(browser, app_url, viewport):
    from playwright.sync_api import expect

    page = open_page(browser, app_url, *viewport)
    try:
        for tab in ("Examples", "Upload", "ModelNet"):
            assert _not_clipped(page.get_by_role("tab", name=tab)), tab
        captions = page.locator("#c2p-examples .caption-label")
        assert captions.count() == 14
        for i in range(captions.count()):  # "bookshelf", "airplane": whole words, not "books…"
            assert _not_clipped(captions.nth(i)), captions.nth(i).inner_text()
        plot, info = _box(page.locator("#points3d")), _box(page.locator("#c2p-shape-info"))
        assert 0 <= info["top"] - plot["bottom"] < 40, (plot, info)  # no gap under the 3-D plot
        expect(page.locator("#c2p-zs-header")).to_be_visible()  # each tab has its own header
        page.get_by_role("tab", name="Few-shot").click()
        expect(page.locator("#fs-header")).to_be_visible()  # ui/tabs/fewshot.py's header
        expect(page.locator("#c2p-zs-header")).to_be_hidden()
        page.get_by_role("tab", name="Zero-shot").click()
        page.get_by_role("tab", name="Upload").click()
        _upload_box_is_whole(page, "upload")
        page.get_by_text("4 · Encoder").click()
        _upload_box_is_whole(page, "depth-file")
        page.get_by_label("10 · pre-training").check()
        expect(page.locator("#c2p-view-cards .c2p-vote")).to_have_count(10)
        names = page.locator("#points3d .annotation-text")
        expect(names).to_have_count(10)  # every camera numbered, none hidden (10 views)
        assert sorted(int(names.nth(i).text_content()) for i in range(10)) == list(range(1, 11))
        assert all(_box(names.nth(i))["width"] > 4 for i in range(10))
    finally:
        page.close()


def test_a_view_opens_full_size_on_click_and_logits_download(browser, app_url):
    page = open_page(browser, app_url, 1280, 720)
    try:
        first = page.locator("#c2p-view-cards .c2p-zoom summary").first
        small = _box(first.locator("img"))["width"]
        first.click()
        big = _box(first.locator("img"))
        assert big["width"] > 3 * small and big["width"] >= 0.8 * 720, (small, big)
        first.click(position={"x": 5, "y": 5})  # the dark backdrop closes it
        assert _box(first.locator("img"))["width"] == pytest.approx(small, abs=2)
        for kind, head in (("CSV", "view,camera,vote,p_vote,"), ("JSON", "{")):
            with page.expect_download() as download:
                page.locator("#c2p-prediction .c2p-exports a", has_text=kind).click()
            path = download.value.path()
            assert download.value.suggested_filename.endswith(kind.lower())
            text = Path(path).read_text()
            assert text.startswith(head) and "airplane" in text
    finally:
        page.close()


def test_edits_mark_results_stale_and_a_failed_rescore_clears_them(browser, app_url):
    from playwright.sync_api import expect

    page = open_page(browser, app_url)
    try:
        page.locator("#classes textarea").fill("chair, table, lamp, sofa")
        page.locator("#classes textarea").press("End")
        page.locator("#classes textarea").type(", bed")
        expect(page.locator("#c2p-stale")).to_be_visible()
        expect(page.locator("#class-preset input")).to_have_value("custom (the text below)")
        assert float(page.locator("#probabilities").evaluate("e => getComputedStyle(e).opacity")) < 0.6
        page.locator("#score").click()
        expect(page.locator("#c2p-stale")).to_have_count(0)
        expect(page.locator("#c2p-prediction")).to_contain_text("5 classes")
        assert float(page.locator("#probabilities").evaluate("e => getComputedStyle(e).opacity")) == 1.0
        page.locator("#template textarea").fill("a {} and a {}")
        page.locator("#template textarea").press("Enter")
        expect(page.locator("#c2p-status-error")).to_contain_text("2 replacement fields")
        expect(page.locator("#c2p-view-cards .c2p-vote")).to_have_count(0)  # votes, bars, heat-map: all cleared
        expect(page.locator("#prediction")).to_contain_text("No scores")
        expect(page.locator("#probabilities")).to_contain_text("no scores")
        expect(page.locator("#heatmap")).to_contain_text("no scores")
        page.locator("#template-preset input").click()
        page.get_by_role("option", name="clip · 7 templates").click()
        expect(page.locator("#c2p-prediction")).to_contain_text("7 templates (preset clip)")
        expect(page.locator("#c2p-view-cards .c2p-vote")).to_have_count(6)
    finally:
        page.close()


def test_gallery_follows_the_dropdown_and_the_api_note_has_this_address(browser, app_url):
    from playwright.sync_api import expect

    page = open_page(browser, app_url)
    try:
        expect(page.locator("#c2p-examples .thumbnail-item.selected")).to_contain_text("chair")
        page.locator("#example input").click()
        page.get_by_role("option", name="guitar").click()
        expect(page.locator("#c2p-shape-info")).to_contain_text("guitar")
        expect(page.locator("#c2p-examples .thumbnail-item.selected")).to_contain_text("guitar")
        page.get_by_text("Use from Python (gradio_client) · API").click()
        expect(page.locator("#api-note")).to_contain_text(f'Client("{app_url.rstrip("/")}/")')
        assert "7860" not in page.locator("#api-note").inner_text() or ":7860" in app_url
    finally:
        page.close()


@pytest.mark.skipif(not HAS_DATA, reason=f"real ModelNet10 data not found at {DATA}")
def test_modelnet_browser_loads_on_class_pick(browser, app_url):
    from playwright.sync_api import expect

    page = open_page(browser, app_url)
    try:
        page.get_by_role("tab", name="ModelNet").click()
        page.get_by_role("combobox", name="Class", exact=True).click()
        page.get_by_role("option", name="toilet · 100").click()  # no "Load shape" button: the pick loads
        expect(page.locator("#c2p-shape-info")).to_contain_text("toilet")
        expect(page.locator("#c2p-prediction")).to_contain_text("true label toilet")
    finally:
        page.close()
