"""The clip2point app: a browser UI (``python -m ui.app``) and Jupyter widgets on top of the ``clip2point`` package.

Bottom to top (each module imports only those below it; ``clip2point`` never imports ``ui``):

* :mod:`ui.defaults`, :mod:`ui.limits`, :mod:`ui.figures`, :mod:`ui.loading`, :mod:`ui.batcher` —
  the app's defaults (taken from the core), what a request may ask for, plotly figures and HTML,
  reading a file without torch, one encoder pass at a time;
* :mod:`ui.registry` (shared models, depth encoders, datasets), :mod:`ui.shapes` (examples,
  datasets, loading and rendering a shape), :mod:`ui.runs` (background few-shot runs);
* :mod:`ui.session` — one user's state (shape → views → cached features → scores), UI-agnostic;
* :mod:`ui.results` (a session as pictures), :mod:`ui.adapters` (a finished run's adapter on a shape);
* :mod:`ui.tabs` — the app's tabs (zero-shot with its ModelNet browser and ``/classify``, few-shot);
  :mod:`ui.widgets` — the Jupyter front end;
* :mod:`ui.app` — composes the tabs; the command line.
"""
