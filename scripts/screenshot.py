"""Take the README's screenshots of the app's two tabs.

    python scripts/screenshot.py                      # Zero-shot tab → docs/screenshot.png
    python scripts/screenshot.py --tab fewshot        # Few-shot tab after a short run → docs/screenshot_fewshot.png

Starts the app in-process (the real ViT-B-32 architecture with whatever weights are found —
random otherwise, and the banner says so). Zero-shot: loads an example and classifies it.
Few-shot: trains a short run on ModelNet10 (``--data-dir``) with the tab's quick settings and
``--limit-test`` test shapes, then shows its curves and gate. Saves a full-page screenshot with
Playwright driving the system Chromium (no browser download).
"""
from __future__ import annotations

import argparse
import io
import logging
import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

log = logging.getLogger("screenshot")

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
MAX_BYTES = 1_000_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _save_small(png: bytes, out: Path, max_bytes: int = MAX_BYTES) -> int:
    """Write the PNG; if it is larger than ``max_bytes``, as a 256-colour palette PNG instead."""
    from PIL import Image

    if len(png) > max_bytes:
        img = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=0)
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)
        png = buf.getvalue()
    out.write_bytes(png)
    return len(png)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tab", choices=("zeroshot", "fewshot"), default="zeroshot", help="which tab (default %(default)s)")
    p.add_argument("--out", type=Path, default=None,
                   help="output PNG (default docs/screenshot.png, or docs/screenshot_fewshot.png with --tab fewshot)")
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data",
                   help="folder with ModelNet10, for the few-shot run (default %(default)s)")
    p.add_argument("--limit-test", type=int, default=20, help="few-shot: test shapes of the run (default %(default)s)")
    p.add_argument("--model", default="ViT-B-32", help="open_clip architecture (default %(default)s)")
    p.add_argument("--weights", default=None, help="weights (default: found automatically, random if none)")
    p.add_argument("--example", default="chair", help="example object to show (default %(default)s)")
    p.add_argument("--views", default="6", choices=["6", "10"], help="view set (default %(default)s)")
    p.add_argument("--width", type=int, default=1560, help="browser width in CSS pixels (default %(default)s)")
    p.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable (default %(default)s)")
    return p.parse_args(argv)


def _fewshot_run(page, expect, limit_test: int) -> None:
    """Open the Few-shot tab, start a short run, wait until it has finished and its gate is drawn."""
    page.get_by_role("tab", name="Few-shot").click()
    page.locator("#fs-start").wait_for(state="visible")
    page.locator("#fs-more").get_by_text("More settings").click()
    box = page.locator("#fs-limit input")
    box.fill(str(limit_test))
    box.press("Enter")
    page.locator("#fs-start").click()
    expect(page.locator("#fs-status")).to_contain_text("completed", timeout=900_000)
    expect(page.locator("#fs-gate .js-plotly-plot")).to_be_visible()


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.out is None:
        args.out = REPO / "docs" / ("screenshot.png" if args.tab == "zeroshot" else "screenshot_fewshot.png")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=120_000)

    from ui.app import build_app
    from ui.defaults import DEFAULT_CLASS_SET
    from ui.registry import REGISTRY, ModelSpec, warm_up
    from ui.shapes import CLASS_PRESETS

    spec = ModelSpec(args.model, args.weights, "cpu")
    import tempfile

    runs = tempfile.mkdtemp(prefix="c2p-screenshot-runs-")
    demo = build_app(args.model, args.weights, "cpu", data_dir=args.data_dir if args.data_dir.is_dir() else None,
                     runs_dir=runs)
    demo.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True)
    warm_up(spec, REGISTRY, CLASS_PRESETS[DEFAULT_CLASS_SET])  # as `python -m ui.app` does in the background
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": args.width, "height": 1000}, device_scale_factor=1)
            page.set_default_timeout(120_000)
            page.goto(demo.local_url)
            expect(page.locator("#c2p-view-cards .c2p-vote").first).to_be_visible()  # the opening example is scored
            if args.views != "6":
                page.get_by_label(f"{args.views} · pre-training").check()
                expect(page.locator("#c2p-view-cards .c2p-vote")).to_have_count(int(args.views))
            if args.example != "chair":
                page.locator("#c2p-examples button[aria-label^='Thumbnail']", has_text=args.example).first.click()
                expect(page.locator("#c2p-shape-info")).to_contain_text(args.example)
                expect(page.locator("#c2p-view-cards .c2p-vote").first).to_be_visible()
            if args.tab == "fewshot":
                _fewshot_run(page, expect, args.limit_test)
            page.mouse.move(0, 0)
            time.sleep(1.5)  # let plotly finish drawing
            args.out.parent.mkdir(parents=True, exist_ok=True)
            size = _save_small(page.screenshot(full_page=True), args.out)
            log.info("wrote %s (%d KB)", args.out, size // 1024)
            browser.close()
    finally:
        demo.close()


if __name__ == "__main__":
    main()
