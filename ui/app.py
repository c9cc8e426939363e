"""The clip2point app: see every step of CLIP2Point zero-shot classification in the browser.

Run ``python -m ui.app --help``. The page shows, for one shape: the points in 3-D with the
cameras around them, per view the depth map CLIP reads beside the CLIP image view from the same
camera, and the zero-shot result (probabilities, and a per-view × per-class logit heat-map with
each view's vote). This module composes the tabs (:mod:`ui.tabs.zeroshot`, :mod:`ui.tabs.fewshot`, each building its
components and wiring its events on :mod:`ui.session`, :mod:`ui.results` and :mod:`ui.figures`)
and holds the command line.

Safe to share (``--share``): every endpoint checks its arguments on the server against one
:class:`~ui.limits.AppLimits` (the controls' ranges come from it too) and refuses with one clear
line; uploads are read in a child process with a time and memory limit (``--load-timeout``,
``--load-memory-mb``); few-shot runs are capped per server and per session (``--max-runs``), stop
when their tab closes, and old run folders are deleted (``--runs-max-age-days``).

Scripts use the same server through ``gradio_client``::

    from gradio_client import Client, handle_file
    Client("http://127.0.0.1:7860/").predict(handle_file("chair.ply"), "chair,table", api_name="/classify")
"""
from __future__ import annotations

import argparse
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from clip2point.errors import Clip2PointError
from clip2point.viewcache import ViewFeatureCache
from ui import figures, results
from ui.defaults import DEFAULT_CLASS_SET, DEFAULT_MODEL, DEFAULT_PRECISION, DEFAULT_TEMPLATE, PRECISIONS, REPO_ROOT
from ui.limits import AppLimits
from ui.registry import REGISTRY, ModelRegistry, ModelSpec, probe_weights, resolve_device, warm_up
from ui.runs import RunPool, clean_old_runs
from ui.shapes import CLASS_PRESETS, available_datasets, find_data_dir
from ui.tabs import api, browser, fewshot, zeroshot
from ui.tabs.common import AppContext, Page

log = logging.getLogger(__name__)

__all__ = ["build_app", "main", "parse_args", "configure_registry", "default_batch_images", "Clip2PointApp", "MAX_FILE_SIZE", "CONCURRENCY_LIMIT", "AppLimits",
           "FEWSHOT_RUNS_DIR", "THEME", "APP_CSS"]

#: gradio's upload limit (``AppLimits.max_file_mb`` of the default limits).
MAX_FILE_SIZE = f"{AppLimits().max_file_mb}mb"
#: Heavy events (load + render + encode) handled at once; more queue. Loading and rendering run
#: in parallel; encoder passes go one at a time through ``ui.batcher.EncodeBatcher`` (batched on GPUs).
#: A shape encoded before is read from the view-feature cache (``--cache-dir``) instead.
CONCURRENCY_LIMIT = 8
def default_batch_images(device: str) -> int:
    """Most depth images one encoder pass takes when concurrent requests queue (``--batch-images``):
    64 on CUDA, 1 (one request per pass) on CPU, where batching measured slower (see
    :class:`~ui.batcher.EncodeBatcher`; ``benchmarks/bench_app.py --compare``)."""
    return 64 if resolve_device(device).startswith("cuda") else 1


#: Where the app's few-shot runs go (one ``<timestamp>`` folder per run; gitignored).
FEWSHOT_RUNS_DIR = REPO_ROOT / "runs" / "app"

THEME = gr.themes.Soft(
    primary_hue="indigo",
    secondary_hue="amber",
    neutral_hue="slate",
    radius_size="md",
    font=["Inter", "ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
).set(
    block_title_background_fill="transparent",
    block_title_background_fill_dark="transparent",
    block_title_padding="0",
    block_title_text_color="*neutral_700",
    block_title_text_color_dark="*neutral_200",
    block_title_text_size="*text_sm",
    block_label_background_fill="*neutral_100",
    block_label_text_color="*neutral_600",
    block_label_text_size="*text_sm",
)

APP_CSS = figures.CSS + """
.gradio-container {max-width: 1560px !important}
#c2p-header {display:flex; align-items:baseline; gap:.8rem; flex-wrap:wrap; margin:.2rem 0 .1rem}
#c2p-header h1 {font-size:1.55rem; margin:0; font-weight:800; letter-spacing:-.01em}
#c2p-header h1 span {color:#4f46e5}
#c2p-header p {margin:0; opacity:.75; font-size:.92rem}
#c2p-header a {color:inherit !important; text-decoration:underline; padding:0 !important; margin:0 !important;
  background:none !important}
.c2p-section {font-size:.78rem; font-weight:700; text-transform:uppercase; letter-spacing:.08em; opacity:.65;
  margin:.35rem 0 -.2rem .15rem}
#c2p-examples .grid-container {grid-template-columns:repeat(5, minmax(0, 1fr)) !important; gap:6px !important;
  grid-template-rows:none !important; grid-auto-rows:auto !important; height:auto !important}
#c2p-examples .grid-wrap {height:auto !important; min-height:0 !important; padding:6px !important}
#c2p-examples {height:auto !important}
#c2p-examples .thumbnail-item {width:100% !important; height:auto !important; aspect-ratio:1/1; background:#fff}
#c2p-examples .thumbnail-item img {object-fit:contain}
#c2p-examples .caption-label {font-size:.6rem; padding:0 .1rem; max-width:100% !important; white-space:nowrap !important;
  overflow:visible !important; text-overflow:clip !important; letter-spacing:-.01em}
#c2p-examples .thumbnail-item.selected {outline:3px solid #4f46e5 !important; outline-offset:-1px}
.c2p-tab-header {margin:.2rem 0 .5rem .15rem}
.c2p-tab-header h2 {font-size:1.15rem; margin:0 0 .15rem; font-weight:750}
.c2p-tab-header p {margin:0; opacity:.75; font-size:.88rem}
#c2p-shape-tabs button[role=tab] {white-space:nowrap; overflow:visible; text-overflow:clip; min-width:max-content}
#upload [data-testid=upload-text], #depth-file [data-testid=upload-text] {padding-top:1.8rem; padding-bottom:.6rem}
#c2p-turns {gap:.3rem; flex-wrap:nowrap; align-items:center; padding:.35rem .5rem}
#c2p-turns button {min-width:0 !important; padding:.2rem .4rem; flex:0 0 auto}
#c2p-turns .c2p-turn-label {font-size:.8rem; font-weight:600; white-space:nowrap}
#points3d {min-height:0 !important}
body:has(#c2p-stale) #probabilities, body:has(#c2p-stale) #heatmap, body:has(#c2p-stale) #c2p-view-cards .c2p-vote
  {opacity:.4; filter:grayscale(.8)}
#c2p-examples .icon-button-wrapper {display:none !important}
#status:not(:has(.c2p-msg)) {display:none}
#prediction {min-height:118px}
#c2p-sidebar {gap:.6rem}
.c2p-footnote {font-size:.78rem; opacity:.7}
"""

HEADER = """
<div id="c2p-header">
  <h1>clip2point <span>·</span> CLIP2Point in the browser</h1>
  <p>Zero-shot and few-shot 3-D classification with CLIP, every step visible
  (CLIP2Point, Huang et al., ICCV 2023, <a href="https://arxiv.org/abs/2210.01055" target="_blank">arXiv 2210.01055</a>).</p>
</div>
"""


class Clip2PointApp(gr.Blocks):
    """``gr.Blocks`` whose :meth:`launch` defaults to the app's theme, CSS and upload limit.

    Attributes (set by :func:`build_app`):
        limits: the :class:`AppLimits` every handler checks.
        run_pool: the server's :class:`~ui.runs.RunPool` of few-shot runs.
        runs_dir: where the few-shot runs go.
    """

    limits: AppLimits = AppLimits()
    run_pool: RunPool | None = None
    runs_dir: Path | None = None

    def launch(self, *args: Any, **kwargs: Any):  # noqa: D102 - see gr.Blocks.launch
        kwargs.setdefault("theme", THEME)
        kwargs.setdefault("css", APP_CSS)
        kwargs.setdefault("max_file_size", f"{self.limits.max_file_mb}mb")
        return super().launch(*args, **kwargs)


# ----------------------------------------------------------------------------------------------
# the app


def build_app(
    model_name: str = DEFAULT_MODEL,
    weights: str | None = None,
    device: str = "auto",
    data_dir: str | os.PathLike | None = None,
    depth_encoder: str | None = None,
    registry: ModelRegistry = REGISTRY,
    concurrency_limit: int = CONCURRENCY_LIMIT,
    runs_dir: str | os.PathLike | None = None,
    limits: AppLimits | None = None,
    run_pool: RunPool | None = None,
    precision: str = DEFAULT_PRECISION,
) -> gr.Blocks:
    """Build the app (nothing heavy is loaded until the first request needs it).

    Args:
        model_name: open_clip architecture ("ViT-B-32"; "tiny-ViT-test" in tests).
        weights: None (search; random with a red banner if none found), "random", a tag, a file.
        device: "auto", "cpu", "cuda", ...
        data_dir: ModelNet folder for the dataset browser (default: ``$CLIP2POINT_DATA`` or ``../shared/data``).
        depth_encoder: a CLIP2Point depth-encoder file to start with (``best_eval.pth``).
        registry: where models are cached (shared by all sessions).
        concurrency_limit: heavy events running at once.
        runs_dir: where the Few-shot tab writes its runs (default ``runs/app`` in the repository).
        limits: what one request may ask for (default :class:`AppLimits()`): the controls' ranges,
            checked again by every handler on the server; upload read limits; few-shot run caps;
            the age after which run folders are deleted (at start-up and before each new run).
        run_pool: the few-shot runs of this server (default: a new pool with ``limits``' caps).
        precision: the encoders' weights, "fp32", "bf16" or "auto" (bf16 where the CPU/GPU computes it
            natively); the banner says which was chosen and why.

    Returns:
        A queued :class:`Clip2PointApp` (a ``gr.Blocks``); call ``.launch()``.
    """
    limits = limits or AppLimits()
    data_root = find_data_dir(data_dir)
    ctx = AppContext(
        spec=ModelSpec(model_name, weights, device, depth_encoder, precision), registry=registry, limits=limits,
        data_root=data_root, datasets=available_datasets(data_root, registry),
        runs_root=Path(runs_dir) if runs_dir is not None else FEWSHOT_RUNS_DIR,
        pool=run_pool or RunPool(limits.max_runs, limits.max_runs_per_session), concurrency_limit=concurrency_limit,
    )
    clean_old_runs(ctx.runs_root, limits.runs_max_age_days, keep=ctx.pool.running_dirs())
    with Clip2PointApp(title="clip2point — CLIP2Point zero-shot, every step visible", fill_width=True,
                       analytics_enabled=False) as demo:
        state = gr.State(None, time_to_live=2 * 3600)  # a Session per browser tab, dropped after 2 h idle
        gr.HTML(HEADER)
        banner = gr.HTML(results.banner(ctx.new_session(None)), elem_id="banner")
        page = Page(state, banner, gr.HTML("", elem_id="status"))
        with gr.Tabs(elem_id="c2p-tabs"):
            with gr.Tab("Zero-shot", id="zeroshot"):
                zs_tab = zeroshot.build_zeroshot_tab(ctx, page)
            with gr.Tab("Few-shot", id="fewshot"):
                fs_tab = fewshot.build_fewshot_tab(ctx, page)
        endpoint = api.build_classify_endpoint(limits)
        _wire(demo, ctx, zs_tab, fs_tab, endpoint)
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=256)
    demo.limits, demo.run_pool, demo.runs_dir = limits, ctx.pool, ctx.runs_root
    return demo


def _wire(demo: gr.Blocks, ctx: AppContext, zs_tab: zeroshot.ZeroShotTab, fs_tab: fewshot.FewShotTab,
          endpoint: api.ClassifyEndpoint) -> None:
    """Connect every tab's events (zero-shot, its ModelNet browser, few-shot) and ``/classify``."""
    zs = zeroshot.ZeroShotHandlers(ctx)
    views_then_scores = zeroshot.wire_zeroshot(demo, zs_tab, zs, ctx)
    if zs_tab.browser is not None:
        browser.wire_browser(zs_tab.browser, browser.BrowserHandlers(ctx, zs.show_views, zs.views_error),
                             zs_tab.page.status, zs_tab.page.state, zs_tab.render_settings, views_then_scores)
    fewshot.wire_fewshot(demo, fs_tab, fewshot.FewShotHandlers(ctx), ctx)
    api.wire_classify_endpoint(endpoint, ctx)


# ----------------------------------------------------------------------------------------------
# command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see ``python -m ui.app --help``)."""
    p = argparse.ArgumentParser(
        prog="python -m ui.app",
        description="clip2point app: load a point cloud or mesh, see its CLIP2Point depth views and CLIP image "
                    "views, and classify it zero-shot with CLIP — every step visible in the browser.",
        epilog="examples:\n"
               "  python -m ui.app                               # http://127.0.0.1:7860, weights found automatically\n"
               "  python -m ui.app --weights openai --port 8080  # OpenAI CLIP ViT-B/32 (open_clip cache or download)\n"
               "  python -m ui.app --depth-encoder weights/best_eval.pth   # CLIP2Point's pre-trained depth encoder\n"
               "  python -m ui.app --weights random --data-dir ../shared/data\n\n"
               "Without usable weights the app still starts, with random weights and a red banner that says how to\n"
               "get real ones. Scripts: gradio_client Client(url).predict(handle_file(path), 'chair,table', api_name='/classify').",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface; default %(default)s)")
    p.add_argument("--port", type=int, default=7860, help="port (default %(default)s)")
    p.add_argument("--share", action="store_true", help="also create a public gradio.live link")
    p.add_argument("--model", default=DEFAULT_MODEL, help="open_clip architecture (default %(default)s, CLIP2Point's)")
    p.add_argument("--weights", default=None, metavar="TAG|PATH|random",
                   help="CLIP weights: an open_clip tag (openai), a checkpoint file, or 'random'. Default: "
                        "$CLIP2POINT_WEIGHTS, weights/, the open_clip cache, a download — random if none is found")
    p.add_argument("--depth-encoder", default=None, metavar="PATH",
                   help="CLIP2Point pre-trained depth encoder (the authors' best_eval.pth); can also be uploaded in the page")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, … (default %(default)s)")
    p.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION,
                   help="encoder weights: fp32 (exact), bf16, or auto (bf16 where this CPU/GPU computes it natively, "
                        "else fp32; features within cosine 0.999 of fp32). On a 2-core CPU with native bf16, bf16 "
                        "halved the p50 latency of 10 concurrent /classify clients (1.8x the throughput). The banner "
                        "says what was chosen and why (default %(default)s, as the command line's)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="ModelNet data for the dataset browser (default: $CLIP2POINT_DATA, else ../shared/data if present)")
    p.add_argument("--concurrency", type=int, default=CONCURRENCY_LIMIT,
                   help="heavy requests processed at once; the rest queue (default %(default)s)")
    p.add_argument("--batch-images", type=int, default=None, metavar="N",
                   help="most depth images encoded in one pass when requests arrive together (default: 64 on CUDA, "
                        "1 = one request per pass on CPU, where batching gave no more throughput and 1.5-1.9x the "
                        "p95 latency of 10 concurrent clients, fp32 and bf16)")
    p.add_argument("--no-warmup", action="store_true", help="do not load the model in the background at start-up")
    c = p.add_mutually_exclusive_group()
    c.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="persistent view-feature cache: a shape encoded before (by the app, the command line or a "
                        "notebook) with the same encoder, weights, precision, views and render settings is not encoded "
                        "again (default: $CLIP2POINT_CACHE_DIR, else ~/.cache/clip2point/views; "
                        "`clip2point cache info|clear`)")
    c.add_argument("--no-cache", action="store_true", help="neither read nor write the view-feature cache")
    d = AppLimits()
    g = p.add_argument_group("limits (every request is checked against them on the server; see ui.limits.AppLimits)")
    g.add_argument("--load-timeout", type=float, default=d.load_timeout_s, metavar="SECONDS",
                   help="an uploaded file must be read within this time, in a child process that is killed "
                        "otherwise (default %(default)s)")
    g.add_argument("--load-memory-mb", type=int, default=d.load_memory_mb, metavar="MIB",
                   help="memory (address space) that reading one upload may use (default %(default)s)")
    g.add_argument("--max-runs", type=int, default=d.max_runs, metavar="N",
                   help="few-shot runs training at once on this server; more are refused (default %(default)s; "
                        f"{d.max_runs_per_session} per browser session)")
    g.add_argument("--runs-dir", default=None, metavar="DIR",
                   help="where the Few-shot tab writes its runs (default runs/app in the repository)")
    g.add_argument("--runs-max-age-days", type=float, default=d.runs_max_age_days, metavar="DAYS",
                   help="delete app run folders not changed for this many days, at start-up and before each new run; "
                        "running runs are never deleted; 0 keeps them forever (default %(default)s)")
    args = p.parse_args(argv)
    try:
        args.limits = AppLimits(load_timeout_s=args.load_timeout, load_memory_mb=args.load_memory_mb,
                                max_runs=args.max_runs, runs_max_age_days=args.runs_max_age_days or None)
    except Clip2PointError as err:
        msg = str(err).replace("AppLimits.", "").replace("AppLimits: ", "")
        for field_name, flag in (("load_timeout_s", "--load-timeout"), ("load_memory_mb", "--load-memory-mb"),
                                 ("max_runs", "--max-runs"), ("runs_max_age_days", "--runs-max-age-days")):
            msg = msg.replace(field_name, flag)
        p.error(msg)
    if args.device != "auto" and not (args.device == "cpu" or args.device.startswith("cuda") or args.device == "mps"):
        p.error(f"--device must be auto, cpu, cuda or cuda:N, got {args.device!r}")
    if args.weights is not None and args.weights.lower() != "random":
        _source, reason = probe_weights(ModelSpec(args.model, args.weights, args.device, precision=args.precision))
        if reason:
            p.error(reason)
    if args.depth_encoder and not Path(args.depth_encoder).is_file():
        p.error(f"--depth-encoder {args.depth_encoder}: file not found")
    if args.data_dir and not Path(args.data_dir).is_dir():
        p.error(f"--data-dir {args.data_dir}: not a folder")
    return args


def _warm_up(spec: ModelSpec, registry: ModelRegistry) -> None:
    """Load the model, the default prompts' text features (and the depth encoder) in the background."""
    try:
        warm_up(spec, registry, CLASS_PRESETS[DEFAULT_CLASS_SET], DEFAULT_TEMPLATE)
    except Exception:  # noqa: BLE001 - the first request will show the error in the page
        log.exception("background model load failed")


def configure_registry(args: argparse.Namespace, registry: ModelRegistry = REGISTRY) -> None:
    """Apply the server-wide options of :func:`parse_args` to ``registry``: the encode batcher's
    ``--batch-images`` (default: :func:`default_batch_images`) and the view-feature cache
    (``--cache-dir`` / ``--no-cache``)."""
    if args.batch_images is None:
        args.batch_images = default_batch_images(args.device)
    registry.batcher.max_images = max(1, args.batch_images)
    registry.view_cache = None if args.no_cache else ViewFeatureCache(args.cache_dir)
    if registry.view_cache is not None:
        log.info("view-feature cache: %s", registry.view_cache.info().describe())


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m ui.app``."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_registry(args)
    demo = build_app(args.model, args.weights, args.device, args.data_dir, args.depth_encoder,
                     concurrency_limit=args.concurrency, runs_dir=args.runs_dir, limits=args.limits,
                     precision=args.precision)
    if not args.no_warmup:
        spec = ModelSpec(args.model, args.weights, args.device, args.depth_encoder, args.precision)
        threading.Thread(target=_warm_up, args=(spec, REGISTRY), name="clip2point-warmup", daemon=True).start()
    demo.launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
