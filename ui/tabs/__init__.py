"""The app's tabs, one module each: components, event handlers and their wiring.

* :mod:`ui.tabs.common` — what every tab shares: the :class:`~ui.tabs.common.AppContext`, the
  input components with one-line refusals, error reporting.
* :mod:`ui.tabs.zeroshot` — the Zero-shot tab (shape → views → scores), with
  :mod:`ui.tabs.browser` (the ModelNet browser in its sidebar) and :mod:`ui.tabs.api` (the
  ``/classify`` endpoint and its "Use from Python" note).
* :mod:`ui.tabs.fewshot` — the Few-shot tab (background GDPA runs).

A new tab is a module with a components dataclass, a ``build_*`` function that lays it out
inside ``gr.Tab`` and a ``wire_*`` function that connects its events; :func:`ui.app.build_app`
calls both.
"""
