"""What one request to the app may ask for: :class:`AppLimits`, checked on the server.

The page's controls take their ranges from one :class:`AppLimits` and **every handler checks
them again**, so a script calling the API gets the same bounds as the page; each violation is a
one-line :class:`RequestLimitError` naming the value, the range and the fix. :func:`as_int`,
:func:`as_float`, :func:`check_up` and :func:`check_num_points` are the checks of the library
path (scripts and notebooks, no app limits), shared with the app's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clip2point.classes import parse_classes
from clip2point.errors import Clip2PointError
from clip2point.prompts import TEMPLATE_PRESETS, as_templates, validate_template
from ui.defaults import UP_AXES, VIEW_SETS

__all__ = ["AppLimits", "RequestLimitError", "as_int", "as_float", "check_up", "check_num_points", "MIN_POINTS",
           "parse_templates"]

#: Fewest points a shape may be classified with (scripts; the app's :attr:`AppLimits.min_points`).
MIN_POINTS = 16


class RequestLimitError(Clip2PointError):
    """A request asked for more than the app allows (:class:`AppLimits`); the message names the
    value, the allowed range and what to do."""


def as_int(value: object, what: str) -> int:
    """``value`` as an int (ints, integral floats, numeric strings), else a RequestLimitError."""
    if isinstance(value, bool):
        raise RequestLimitError(f"{what} must be a whole number, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise RequestLimitError(f"{what} must be a whole number, got {str(value)[:40]!r}") from None
    if not np.isfinite(f) or f != int(f):
        raise RequestLimitError(f"{what} must be a whole number, got {str(value)[:40]}")
    return int(f)


def as_float(value: object, what: str) -> float:
    """``value`` as a finite float (numbers, numeric strings), else a RequestLimitError."""
    if isinstance(value, bool):
        raise RequestLimitError(f"{what} must be a number, got {value!r}")
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise RequestLimitError(f"{what} must be a number, got {str(value)[:40]!r}") from None
    if not np.isfinite(f):
        raise RequestLimitError(f"{what} must be a finite number, got {f}")
    return f


@dataclass(frozen=True)
class AppLimits:
    """Everything one request to the app may ask for, in one place (``python -m ui.app`` options).

    The app's sliders stop at these values and **every handler checks them again on the server**,
    so a script calling the API (``gradio_client``) gets the same bounds as the page, each
    violation a one-line :class:`RequestLimitError` that names the value, the range and the fix.

    Attributes:
        min_points, max_points: points classified per shape (default 16–8,192; the page's slider
            covers 256–8,192). 8,192 points render in well under a second on a CPU.
        max_classes: class names per request (default 1,000: 18.6 s for a first ViT-B-32 request
            on a shared 2-core CPU, text encoding included, ~+400 MiB transient server memory;
            10,000 names took 113 s).
        max_class_chars: characters per class name (default 100; CLIP reads 77 tokens at most).
        max_template_chars: characters of one prompt template (default 200).
        max_templates: templates in one prompt ensemble (default 32; CLIP's published ensembles have 7 and 80).
        view_sets: view sets offered ("6" zero-shot, "10" pre-training).
        min_radius, max_radius: splat radius in NDC units (default 0.005–0.06, the slider's range).
        max_top_k: classes shown in the chart (default 10).
        max_shape_index: highest shape index in a multi-shape upload (default 100,000; the file's
            own count is checked when it is read).
        fewshot_shots: shapes per class a few-shot run may take (CLIP2Point/PointCLIP protocol).
        fewshot_max_epochs: epochs of a few-shot run (default 200; released: 100).
        fewshot_max_test_shapes: test shapes a run evaluates (default 5,000; 0 = the whole split,
            ModelNet40 has 2,468).
        fewshot_max_val_per_class: validation shapes per class (default 20).
        max_runs: few-shot runs training at once on the server (default 2); more are refused.
        max_runs_per_session: few-shot runs per browser tab / API client session (default 1).
        load_timeout_s: seconds an uploaded file may take to read (default 60) and
        load_memory_mb: address space in MiB the reading child process may use (default 4,096).
            Reading runs in a child process (``clip2point.sandbox.call_limited``) that is killed
            when either is exceeded; the request fails with a clear error, the server carries on.
        runs_max_age_days: app run folders older than this are deleted at start-up and before
            each new run (default 30; None keeps them forever). Running runs are never touched.
        max_file_mb: largest upload in MB (default 200; enforced by gradio's ``max_file_size``).
    """

    min_points: int = 16
    max_points: int = 8192
    max_classes: int = 1000
    max_class_chars: int = 100
    max_template_chars: int = 200
    max_templates: int = 32
    view_sets: tuple[str, ...] = VIEW_SETS
    min_radius: float = 0.005
    max_radius: float = 0.06
    max_top_k: int = 10
    max_shape_index: int = 100_000
    fewshot_shots: tuple[int, ...] = (1, 2, 4, 8, 16)
    fewshot_max_epochs: int = 200
    fewshot_max_test_shapes: int = 5000
    fewshot_max_val_per_class: int = 20
    max_runs: int = 2
    max_runs_per_session: int = 1
    load_timeout_s: float = 60.0
    load_memory_mb: int = 4096
    runs_max_age_days: float | None = 30.0
    max_file_mb: int = 200

    def __post_init__(self) -> None:
        if not 1 <= self.min_points <= self.max_points:
            raise Clip2PointError(f"AppLimits: need 1 <= min_points <= max_points, got {self.min_points}, {self.max_points}")
        if not 0.0 < self.min_radius <= self.max_radius <= 0.2:
            raise Clip2PointError(f"AppLimits: need 0 < min_radius <= max_radius <= 0.2, got {self.min_radius}, {self.max_radius}")
        for name in ("max_classes", "max_class_chars", "max_template_chars", "max_templates", "max_top_k", "fewshot_max_epochs",
                     "max_runs", "max_runs_per_session", "load_memory_mb", "max_file_mb"):
            if int(getattr(self, name)) < 1:
                raise Clip2PointError(f"AppLimits.{name} must be at least 1, got {getattr(self, name)}")
        if not self.load_timeout_s > 0:
            raise Clip2PointError(f"AppLimits.load_timeout_s must be positive, got {self.load_timeout_s}")
        if self.runs_max_age_days is not None and not self.runs_max_age_days > 0:
            raise Clip2PointError(f"AppLimits.runs_max_age_days must be positive or None, got {self.runs_max_age_days}")

    @property
    def max_classes_chars(self) -> int:
        """Longest class-list text accepted before it is even split (names, commas and spaces)."""
        return self.max_classes * (self.max_class_chars + 3)

    @property
    def max_templates_chars(self) -> int:
        """Longest template text accepted (``max_templates`` lines of ``max_template_chars``)."""
        return self.max_templates * (self.max_template_chars + 1)

    # -- checks: each returns the clean value or raises RequestLimitError ---------------------
    def check_num_points(self, value: object) -> int:
        """Points to classify per shape, in ``min_points``..``max_points``."""
        n = as_int(value, "number of points")
        if not self.min_points <= n <= self.max_points:
            raise RequestLimitError(f"number of points {n:,} is out of range: this app classifies "
                                    f"{self.min_points:,} to {self.max_points:,} points per shape; pick a number in it")
        return n

    def check_views(self, value: object) -> str:
        """A view-set name offered by the app (``view_sets``)."""
        v = str(value)
        if v not in self.view_sets:
            raise RequestLimitError(f"view set {str(value)[:40]!r} is unknown; choose one of {', '.join(self.view_sets)}")
        return v

    def check_radius(self, value: object) -> float:
        """The splat radius (NDC units), in ``min_radius``..``max_radius``."""
        r = as_float(value, "splat radius")
        if not self.min_radius <= r <= self.max_radius:
            raise RequestLimitError(f"splat radius {r:g} is out of range: choose {self.min_radius:g} to "
                                    f"{self.max_radius:g} (NDC units)")
        return r

    def check_top_k(self, value: object) -> int:
        """Classes shown in the chart, 1..``max_top_k``."""
        k = as_int(value, "top-k")
        if not 1 <= k <= self.max_top_k:
            raise RequestLimitError(f"top-k {k} is out of range: the chart shows 1 to {self.max_top_k} classes")
        return k

    def check_shape_index(self, value: object) -> int:
        """A shape index in a multi-shape file (None: 0), 0..``max_shape_index``."""
        i = as_int(0 if value is None else value, "shape index")
        if not 0 <= i <= self.max_shape_index:
            raise RequestLimitError(f"shape index {i:,} is out of range: use 0 to {self.max_shape_index:,} "
                                    "(and fewer than the shapes in the file)")
        return i

    def check_template(self, value: object) -> str:
        """One prompt template: text of at most ``max_template_chars`` characters with one ``{}``."""
        if not isinstance(value, str):
            raise RequestLimitError(f"the prompt template must be text with {{}} for the class name, got {type(value).__name__}")
        if len(value) > self.max_template_chars:
            raise RequestLimitError(f"the prompt template is {len(value):,} characters long; this app takes at most "
                                    f"{self.max_template_chars}, e.g. \"image of a {{}}\"")
        return validate_template(value)

    def check_templates(self, value: object) -> tuple[str, ...]:
        """Prompt templates (an ensemble): a preset name, text with one template per line, or a list
        (see :func:`parse_templates`), within ``max_templates`` of ``max_template_chars`` each."""
        if isinstance(value, str) and len(value) > self.max_templates_chars:
            raise RequestLimitError(f"the prompt templates are {len(value):,} characters long; this app takes at most "
                                    f"{self.max_template_chars} characters per template and {self.max_templates} templates")
        return parse_templates(value, self.max_template_chars, self.max_templates)

    def check_classes(self, value: object) -> list[str]:
        """The class names of a comma-separated string (or a list), within the count and length limits."""
        if isinstance(value, str):
            if len(value) > self.max_classes_chars:
                raise RequestLimitError(f"the class list is {len(value):,} characters long; this app takes at most "
                                        f"{self.max_classes:,} names of up to {self.max_class_chars} characters")
            names = parse_classes(value)
        elif isinstance(value, (list, tuple)):
            if len(value) > self.max_classes:
                raise RequestLimitError(f"{len(value):,} class names given; this app scores at most {self.max_classes:,} "
                                        "at once; send fewer")
            names = parse_classes([str(v)[: self.max_class_chars + 1] for v in value])
        else:
            raise RequestLimitError(f"classes must be comma-separated text, got {type(value).__name__}")
        if len(names) > self.max_classes:
            raise RequestLimitError(f"{len(names):,} class names given; this app scores at most {self.max_classes:,} "
                                    "at once; send fewer")
        long = next((n for n in names if len(n) > self.max_class_chars), None)
        if long is not None:
            raise RequestLimitError(f"class name {long[:30]!r}… is {len(long):,} characters long; this app takes at "
                                    f"most {self.max_class_chars} per name")
        return names

    def check_fewshot(self, shots: object, epochs: object, limit_test: object, val_per_class: object) -> tuple[int, int, int, int]:
        """(shots, epochs, test shapes, validation shapes per class) of a few-shot run, within the limits."""
        k = as_int(shots, "shots")
        if k not in self.fewshot_shots:
            raise RequestLimitError(f"shots must be one of {', '.join(map(str, self.fewshot_shots))}, got {k}")
        e = as_int(epochs, "epochs")
        if not 1 <= e <= self.fewshot_max_epochs:
            raise RequestLimitError(f"epochs {e:,} is out of range: a run in this app trains 1 to "
                                    f"{self.fewshot_max_epochs} epochs")
        t = as_int(limit_test or 0, "test shapes")
        if not 0 <= t <= self.fewshot_max_test_shapes:
            raise RequestLimitError(f"test shapes {t:,} is out of range: use 0 (the whole split) to "
                                    f"{self.fewshot_max_test_shapes:,}")
        v = as_int(val_per_class or 0, "validation shapes per class")
        if not 0 <= v <= self.fewshot_max_val_per_class:
            raise RequestLimitError(f"validation shapes per class {v:,} is out of range: use 0 to "
                                    f"{self.fewshot_max_val_per_class}")
        return k, e, t, v


def check_num_points(num_points: object) -> int:
    """``num_points`` as an int of at least :data:`MIN_POINTS` (the library path; the app uses
    :meth:`AppLimits.check_num_points`).

    Raises:
        RequestLimitError: not a whole number. Clip2PointError: fewer than 16.
    """
    n = as_int(num_points, "number of points")
    if n < MIN_POINTS:
        raise Clip2PointError(f"number of points must be at least {MIN_POINTS}, got {n}")
    return n


def check_up(up: object) -> str:
    """``up`` if it is an up axis ("y" or "z").

    Raises:
        Clip2PointError: anything else.
    """
    if up not in UP_AXES:
        raise Clip2PointError(f"up axis must be 'y' or 'z', got {up!r}")
    return str(up)


def parse_templates(value: object, max_chars: int | None = None, max_count: int | None = None) -> tuple[str, ...]:
    """Prompt templates from what a user typed: a preset name of ``clip2point.prompts.TEMPLATE_PRESETS``
    (text without braces, any case), text with one template per line (blank lines and ``#`` lines
    skipped), or a list/tuple of templates. Never a file path (the app must not read server files).

    Each template must have exactly one bare ``{}`` (``clip2point.prompts.validate_template``).

    Raises:
        RequestLimitError: more than ``max_count`` templates, or one longer than ``max_chars``.
        PromptTemplateError: an invalid template (the message says which and why), no templates,
            or text without braces that is not a preset name.
    """
    if isinstance(value, str):
        key = value.strip().lower()
        if key in TEMPLATE_PRESETS:
            return TEMPLATE_PRESETS[key]
        items = [line.strip() for line in value.splitlines()]
        items = [t for t in items if t and not t.startswith("#")] or [value]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise RequestLimitError(f"the prompt template must be text with {{}} for the class name, got {type(value).__name__}")
    if max_count is not None and len(items) > max_count:
        raise RequestLimitError(f"{len(items):,} prompt templates given; this app averages at most {max_count} per class")
    for i, t in enumerate(items):
        if max_chars is not None and isinstance(t, str) and len(t) > max_chars:
            which = f"prompt template {i + 1}" if len(items) > 1 else "the prompt template"
            raise RequestLimitError(f"{which} is {len(t):,} characters long; this app takes at most {max_chars}, "
                                    "e.g. \"image of a {}\"")
    if isinstance(value, str) and len(items) == 1 and "{" not in items[0] and "}" not in items[0] and items[0].strip():
        from clip2point.prompts import PromptTemplateError

        raise PromptTemplateError(f"prompt template {items[0][:60]!r} has no {{}} placeholder for the class name and is "
                                  f"not a preset ({', '.join(TEMPLATE_PRESETS)}); e.g. \"image of a {{}}\"")
    return (validate_template(items[0]),) if len(items) == 1 else as_templates(items)
