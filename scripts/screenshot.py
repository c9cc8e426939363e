"""Take the README's screenshot of the app: ``python scripts/screenshot.py`` → docs/screenshot.png.

Starts the app in-process (the real ViT-B-32 architecture with whatever weights are found —
random otherwise, and the banner says so), loads an example, classifies it, and saves a
full-page screenshot with Playwright driving the system Chromium (no browser download).
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
    p.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot.png", help="output PNG (default %(default)s)")
    p.add_argument("--model", default="ViT-B-32", help="open_clip architecture (default %(default)s)")
    p.add_argument("--weights", default=None, help="weights (default: found automatically, random if none)")
    p.add_argument("--example", default="chair", help="example object to show (default %(default)s)")
    p.add_argument("--views", default="6", choices=["6", "10"], help="view set (default %(default)s)")
    p.add_argument("--width", type=int, default=1560, help="browser width in CSS pixels (default %(default)s)")
    p.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable (default %(default)s)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=120_000)

    from ui.app import build_app
    from ui.defaults import DEFAULT_CLASS_SET
    from ui.registry import REGISTRY, ModelSpec, warm_up
    from ui.shapes import CLASS_PRESETS

    spec = ModelSpec(args.model, args.weights, "cpu")
    demo = build_app(args.model, args.weights, "cpu")
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
