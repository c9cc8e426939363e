"""The app's ``/classify`` endpoint for scripts (``gradio_client``) and the "Use from Python" note.

The endpoint has hidden components of its own (no page control drives it); it checks every
argument against the app's limits before the file is read, and reads the file in a child process
with the app's time and memory limits (:func:`ui.session.classify_file`).
"""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from clip2point.prompts import TEMPLATE_PRESETS
from ui.defaults import DEFAULT_NUM_POINTS, DEFAULT_TEMPLATE, DEFAULT_VIEWS, UPLOAD_EXTENSIONS
from ui.limits import AppLimits
from ui.session import classify_file
from ui.tabs.common import AppContext, File, Number, Radio, error_message

__all__ = ["API_NOTE", "API_ADDRESS_JS", "api_note", "ClassifyEndpoint", "ClassifyHandler", "build_classify_endpoint",
           "wire_classify_endpoint"]

API_NOTE = """
**Use this app from Python** (`pip install gradio_client`):

```python
from gradio_client import Client, handle_file
client = Client("{address}")   # this server's address
probs = client.predict(handle_file("chair.ply"), "chair,table,lamp", api_name="/classify")
# {{'chair': 0.71, 'lamp': 0.17, 'table': 0.12}}   optional: template(s) (one per line, or a preset: {presets}),
# up axis ("y"/"z"), views ("6"/"10"), number of points
```
Every control is an API endpoint too; the "Use via API" link at the bottom lists them.
"""
#: The page's own address (what the browser shows), sent to :func:`api_note` when the page loads.
API_ADDRESS_JS = "(x) => window.location.origin + window.location.pathname"


def api_note(limits: AppLimits, address: str | None = None) -> str:
    """The "Use from Python" text for a server at ``address`` (the page's URL; a placeholder until
    the page sends it), with the limits the server enforces on every endpoint."""
    shown = str(address).strip() if address and str(address).startswith(("http://", "https://")) else "http://HOST:PORT/"
    shown = shown.replace("`", "").replace("\n", "")[:200]
    if not shown.endswith("/"):
        shown += "/"
    return API_NOTE.format(address=shown, presets=", ".join(TEMPLATE_PRESETS)) + (
        f"\n**Limits of this server** (checked on every endpoint, scripts included): {limits.min_points:,}–"
        f"{limits.max_points:,} points · at most {limits.max_classes:,} classes of up to {limits.max_class_chars} "
        f"characters · up to {limits.max_templates} templates of up to {limits.max_template_chars} characters · view sets "
        f"{', '.join(limits.view_sets)} · splat radius {limits.min_radius:g}–{limits.max_radius:g} · uploads up to "
        f"{limits.max_file_mb} MB, read within {limits.load_timeout_s:g} s and {limits.load_memory_mb:,} MiB · "
        f"{limits.max_runs} few-shot run(s) at once per server, {limits.max_runs_per_session} per session. "
        "A request beyond them gets a one-line error.\n"
    )


@dataclass
class ClassifyEndpoint:
    """The hidden components of ``/classify`` (its inputs, in order, and its output)."""

    inputs: list
    output: gr.JSON
    button: gr.Button


def build_classify_endpoint(limits: AppLimits) -> ClassifyEndpoint:
    """The endpoint's hidden components (their labels name the API's parameters)."""
    with gr.Row(visible=False):
        file = File(label="point cloud or mesh file", file_types=list(UPLOAD_EXTENSIONS), visible=False)
        classes = gr.Textbox("chair, table, lamp", label="classes (comma-separated)", visible=False)
        template = gr.Textbox(DEFAULT_TEMPLATE, label="prompt template(s): one per line, or a preset name", visible=False)
        up = Radio(["y", "z"], value="y", label="up axis of the file", visible=False)
        views = Radio(list(limits.view_sets), value=DEFAULT_VIEWS, label="view set", visible=False)
        points = Number(DEFAULT_NUM_POINTS, precision=0, minimum=limits.min_points, maximum=limits.max_points,
                        label="number of points", visible=False)
        output = gr.JSON(label="class probabilities", visible=False)
        button = gr.Button(visible=False)
    return ClassifyEndpoint([file, classes, template, up, views, points], output, button)


class ClassifyHandler:
    """``/classify``: a file and class names → {class: probability}."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def classify(self, file, classes, template=DEFAULT_TEMPLATE, up="y", views=DEFAULT_VIEWS,
                 num_points=DEFAULT_NUM_POINTS) -> dict[str, float]:
        """Classify a point-cloud/mesh file: {class: probability}, most probable first.

        Every argument is checked against the app's limits before the file is read; the file is
        read in a child process with the app's time and memory limits.
        """
        ctx = self.ctx
        try:
            path = file if isinstance(file, str) else getattr(file, "name", None)
            return classify_file(path, classes, DEFAULT_TEMPLATE if template is None else template,
                                 DEFAULT_VIEWS if views is None else views, up or "y",
                                 DEFAULT_NUM_POINTS if num_points is None else num_points, ctx.spec, ctx.registry,
                                 limits=ctx.limits)
        except Exception as err:  # noqa: BLE001 - never a bare 500 for a script
            raise gr.Error(error_message(err, "/classify"), print_exception=False) from None


def wire_classify_endpoint(endpoint: ClassifyEndpoint, ctx: AppContext) -> None:
    """Connect ``/classify`` (a heavy event: it loads, renders and encodes)."""
    endpoint.button.click(ClassifyHandler(ctx).classify, endpoint.inputs, endpoint.output, api_name="classify",
                          **ctx.heavy)
