"""The clip2point app: a browser UI (``python -m ui.app``) on top of the ``clip2point`` package.

* :mod:`ui.session` — UI-agnostic logic (shared model registry, shapes, views, scores);
* :mod:`ui.figures` — plotly figures and HTML fragments;
* :mod:`ui.app` — the Gradio wiring and the command line.
"""
