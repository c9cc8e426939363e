"""The ModelNet browser in the Zero-shot tab's sidebar: pick a dataset, split, class and shape.

Shown only when ModelNet data was found (``--data-dir``, ``$CLIP2POINT_DATA`` or
``../shared/data``); a loaded shape goes through the Zero-shot tab's views → scores chain, with its
true label shown beside the prediction.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from clip2point.errors import Clip2PointError
from ui import figures
from ui.shapes import ShapeSource, dataset_class_counts, dataset_indices
from ui.tabs.common import AppContext, Dropdown, Radio, Slider, show_error

__all__ = ["BrowserSection", "BrowserHandlers", "build_browser", "wire_browser"]


@dataclass
class BrowserSection:
    """The browser's components."""

    name: gr.Dropdown
    split: gr.Radio
    cls: gr.Dropdown
    index: gr.Slider
    random: gr.Button


def _class_choices(ds) -> list[tuple[str, str]]:
    """("class · count", class) choices of a dataset, "all classes" first."""
    return [(f"all classes · {len(ds)}", "all")] + [(f"{c} · {n}", c) for c, n in dataset_class_counts(ds)]


def build_browser(ctx: AppContext) -> BrowserSection | None:
    """Lay the browser out (inside its ``gr.Tab``); without data, a note on how to get it and None."""
    if not ctx.datasets:
        gr.HTML(figures.message_html(
            "No ModelNet data found. Set $CLIP2POINT_DATA or pass --data-dir DIR "
            "(download: clip2point data download modelnet10 -o DIR).", "info"))
        return None
    first = ctx.registry.dataset(ctx.data_root, ctx.datasets[0], "test")
    name = Dropdown(ctx.datasets, value=ctx.datasets[0], label="Dataset")
    split = Radio(["test", "train"], value="test", label="Split")
    cls = Dropdown(_class_choices(first), value="all", label="Class")
    index = Slider(0, max(len(first) - 1, 0), value=0, step=1, label="Shape (index within the class)")
    rand = gr.Button("Random shape", size="sm")
    gr.HTML(f'<div class="c2p-footnote">From {ctx.data_root} · a pick loads at once · the true label is shown '
            'with the prediction · up axis set from the data</div>')
    return BrowserSection(name, split, cls, index, rand)


class BrowserHandlers:
    """The browser's event handlers; loading a shape goes through ``show_views`` (the Zero-shot tab's)."""

    def __init__(self, ctx: AppContext, show_views: Callable[..., tuple], views_error: Callable[..., tuple]) -> None:
        self.ctx = ctx
        self.show_views = show_views
        self.views_error = views_error

    def dataset(self, name: str, split: str):
        """The open dataset split (Clip2PointError for one that is not offered)."""
        if name not in self.ctx.datasets or split not in ("test", "train"):
            raise Clip2PointError(f"unknown dataset {str(name)[:40]!r} / split {str(split)[:20]!r}; choose one of "
                                  f"{', '.join(self.ctx.datasets) or 'none (no data found)'} and test or train")
        return self.ctx.registry.dataset(self.ctx.data_root, name, split)

    def on_dataset(self, name, split):
        try:
            ds = self.dataset(name, split)
        except Clip2PointError as err:
            return show_error(err, "dataset"), gr.skip(), gr.skip()
        return "", gr.update(choices=_class_choices(ds), value="all"), gr.update(maximum=max(len(ds) - 1, 0), value=0)

    def on_dataset_class(self, name, split, cls):
        try:
            n = len(dataset_indices(self.dataset(name, split), cls))
        except Clip2PointError as err:
            return show_error(err, "dataset class"), gr.skip()
        return "", gr.update(maximum=max(n - 1, 0), value=0)

    def on_dataset_random(self, name, split, cls):
        try:
            n = len(dataset_indices(self.dataset(name, split), cls))
        except Clip2PointError:
            return gr.skip()
        return random.randrange(n) if n else 0

    def on_dataset_load(self, session, name, split, cls, idx, n, views, radius, color_by, progress=gr.Progress()):
        try:
            indices = dataset_indices(self.dataset(name, split), cls)
            i = self.ctx.limits.check_shape_index(idx)
            if not len(indices):
                raise Clip2PointError(f"{name} {split} has no {cls} shapes; pick another class")
            if not i < len(indices):
                raise Clip2PointError(f"shape index {i} is out of range for {cls}: it has {len(indices)} shapes "
                                      f"(0 to {len(indices) - 1})")
            source = ShapeSource.from_dataset(self.ctx.data_root, name, split, int(indices[i]))
        except Exception as err:  # noqa: BLE001
            return self.views_error(session, show_error(err, "dataset shape"))
        return self.show_views(session, source, None, n, views, radius, color_by, progress, set_up=True)


def wire_browser(section: BrowserSection, h: BrowserHandlers, status: gr.HTML, state: gr.State,
                 render_settings: list, views_then_scores: Callable[..., Any]) -> None:
    """Connect the browser's events; ``views_then_scores`` chains a loader to the Zero-shot tab's scores.

    ``render_settings``: the tab's [up, num_points, views, radius, color_by] (up is set from the data).
    """
    _up, num_points, views, radius, color_by = render_settings
    pick = [section.name, section.split]
    inputs = [state, *pick, section.cls, section.index, num_points, views, radius, color_by]
    for control, name in ((section.name, "dataset"), (section.split, "split")):  # a pick loads its first shape
        picked = control.input(h.on_dataset, pick, [status, section.cls, section.index], api_name=f"pick_{name}")
        views_then_scores(picked.success, h.on_dataset_load, inputs, f"load_{name}_shape")
    picked = section.cls.input(h.on_dataset_class, [*pick, section.cls], [status, section.index],
                               api_name="pick_dataset_class")
    views_then_scores(picked.success, h.on_dataset_load, inputs, "load_dataset_shape")
    views_then_scores(section.index.release, h.on_dataset_load, inputs, "load_dataset_index")
    chain = section.random.click(h.on_dataset_random, [*pick, section.cls], section.index,
                                 api_name="pick_random_shape", queue=False)
    views_then_scores(chain.then, h.on_dataset_load, inputs, "load_random_shape")
