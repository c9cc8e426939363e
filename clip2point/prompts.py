"""Prompt templates: validation, presets, template files and prompt ensembles (torch-free).

A template is text with exactly one ``{}`` where the class name goes ("image of a {}"). Several
templates form an *ensemble*: :meth:`clip2point.backbone.ClipBackbone.text_features` encodes
every (template, class) prompt, L2-normalises each feature, averages over the templates and
L2-normalises again — CLIP's prompt ensembling (Radford et al., ICML 2021, §3.1.4; OpenAI's
``notebooks/Prompt_Engineering_for_ImageNet.ipynb``). Every place a template enters clip2point
(the backbone, :class:`~clip2point.zeroshot.ZeroShotClassifier`, the CLI, the app) checks it with
:func:`validate_template`, so a bad template is one clear :class:`PromptTemplateError` rather than
an ``IndexError`` deep inside ``str.format`` or, worse, the same prompt for every class.
"""
from __future__ import annotations

import os
import string
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import Clip2PointError

__all__ = [
    "PromptTemplateError", "DEFAULT_TEMPLATE", "TEMPLATE_PRESETS", "MAX_TEMPLATE_CHARS", "MAX_TEMPLATES",
    "MAX_TEMPLATE_FILE_BYTES", "validate_template", "as_templates", "resolve_templates", "read_template_file",
    "preset_of", "describe_templates",
]

#: Prompt template of CLIP2Point's released zero-shot code (Huang et al., ICCV 2023, §4).
DEFAULT_TEMPLATE = "image of a {}"
#: Longest template accepted (characters). CLIP reads 77 tokens, so longer prompts are truncated anyway.
MAX_TEMPLATE_CHARS = 500
#: Most templates in one ensemble (a file or a sequence); CLIP's largest published ensemble has 80.
MAX_TEMPLATES = 256
#: Largest template file read (bytes).
MAX_TEMPLATE_FILE_BYTES = 64 * 1024

_EXAMPLE = 'e.g. "image of a {}"'

#: Named template lists (``--templates NAME``, the app's presets). Each is a tuple of valid templates.
#:
#: - ``clip2point``: the released CLIP2Point zero-shot prompt (Huang et al., ICCV 2023, §4; the default).
#: - ``pointclip``: PointCLIP's prompt (Zhang et al., CVPR 2022): "point cloud depth map of a {}.".
#: - ``depth``: this project's ensemble about depth maps and renderings of a 3-D shape (the release's and
#:   PointCLIP's prompts plus five more). Written by hand, not searched on any test set; no accuracy is claimed for it.
#: - ``clip``: CLIP's 7-template ImageNet ensemble, the subset that sequential forward selection over its 80
#:   ImageNet templates picked, in the order selected (openai/CLIP, ``notebooks/Prompt_Engineering_for_ImageNet.ipynb``:
#:   "The search terminated after ensembling 7 templates").
TEMPLATE_PRESETS: dict[str, tuple[str, ...]] = {
    "clip2point": (DEFAULT_TEMPLATE,),
    "pointclip": ("point cloud depth map of a {}.",),
    "depth": (
        DEFAULT_TEMPLATE,
        "point cloud depth map of a {}.",
        "a depth map of a {}.",
        "a rendered depth image of a {}.",
        "a grayscale depth rendering of a 3D model of a {}.",
        "a 3D rendering of the shape of a {}.",
        "a depth image of a 3D {} model on a white background.",
    ),
    "clip": (
        "itap of a {}.",
        "a bad photo of the {}.",
        "a origami {}.",
        "a photo of the large {}.",
        "a {} in a video game.",
        "art of the {}.",
        "a photo of the small {}.",
    ),
}


class PromptTemplateError(Clip2PointError):
    """A prompt template (or a template file or preset name) that clip2point cannot use; the message says why and how to fix it."""


def validate_template(template: object) -> str:
    """Check that ``template`` has exactly one bare ``{}`` for the class name and return it unchanged.

    Rules (parsed with :class:`string.Formatter`, the parser ``str.format`` uses): exactly one
    replacement field, and it is the bare ``{}`` — no index (``{0}``), no name (``{x}``), no conversion
    (``{!r}``), no format spec (``{:>10}``). Literal braces written ``{{`` / ``}}`` are allowed but are
    not a placeholder. Not empty, at most :data:`MAX_TEMPLATE_CHARS` characters.

    Raises:
        PromptTemplateError: not text, empty, too long, unbalanced braces, no ``{}``, more than one
            field, or a field that is not the bare ``{}``; the message names the problem and gives an example.
    """
    if not isinstance(template, str):
        raise PromptTemplateError(f"a prompt template must be text with one {{}} for the class name ({_EXAMPLE}), "
                                  f"got {type(template).__name__}")
    if not template.strip():
        raise PromptTemplateError(f"the prompt template is empty; write one with {{}} for the class name, {_EXAMPLE}")
    if len(template) > MAX_TEMPLATE_CHARS:
        raise PromptTemplateError(f"the prompt template is {len(template):,} characters long (at most {MAX_TEMPLATE_CHARS}; "
                                  f"CLIP reads only 77 tokens), {_EXAMPLE}")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:  # "Single '}' encountered", "expected '}' before end of string", ...
        raise PromptTemplateError(f"prompt template {template!r} has unbalanced braces ({e}); use {{}} once for the class "
                                  f"name and {{{{ }}}} for a literal brace, {_EXAMPLE}") from None
    fields = [(name, spec, conv) for _, name, spec, conv in parts if name is not None]
    if not fields:
        why = "has only literal braces ({{ or }}, which print as { and }) and" if ("{{" in template or "}}" in template) else "has"
        raise PromptTemplateError(f"prompt template {template!r} {why} no {{}} placeholder for the class name, so every "
                                  f"class would get the same prompt; put {{}} where the class name goes, {_EXAMPLE}")
    if len(fields) > 1:
        raise PromptTemplateError(f"prompt template {template!r} has {len(fields)} replacement fields; it needs exactly one "
                                  f"{{}} for the class name, {_EXAMPLE}")
    name, spec, conv = fields[0]
    if name or spec or conv:
        field = "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
        what = "an index or name" if name else ("a conversion" if conv else "a format spec")
        raise PromptTemplateError(f"prompt template {template!r}: the field {field} has {what}; write the bare {{}} for the "
                                  f"class name, {_EXAMPLE}")
    return template


def _dedup(templates: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(templates))


def as_templates(template: str | Sequence[str]) -> tuple[str, ...]:
    """One template or a sequence of templates as a validated, de-duplicated (first kept), non-empty tuple.

    No preset names or files (see :func:`resolve_templates`): a string is one template.

    Raises:
        PromptTemplateError: an invalid template (the message says which, by position in a sequence),
            an empty sequence, or more than :data:`MAX_TEMPLATES`.
    """
    if isinstance(template, str):
        return (validate_template(template),)
    if not isinstance(template, Sequence):
        raise PromptTemplateError(f"templates must be a string or a sequence of strings ({_EXAMPLE}), "
                                  f"got {type(template).__name__}")
    if not template:
        raise PromptTemplateError(f"no prompt templates given; give at least one, {_EXAMPLE}")
    if len(template) > MAX_TEMPLATES:
        raise PromptTemplateError(f"{len(template):,} prompt templates; at most {MAX_TEMPLATES} are used in one ensemble")
    out = []
    for i, t in enumerate(template):
        try:
            out.append(validate_template(t))
        except PromptTemplateError as e:
            raise PromptTemplateError(f"template {i + 1} of {len(template)}: {e}") from None
    return _dedup(out)


def read_template_file(path: str | os.PathLike) -> tuple[str, ...]:
    """Templates from a UTF-8 text file: one per line; blank lines and lines starting with ``#`` are skipped.

    Leading and trailing whitespace of each line is dropped. At most :data:`MAX_TEMPLATE_FILE_BYTES`
    bytes and :data:`MAX_TEMPLATES` templates; repeated templates are kept once (the first).

    Raises:
        PromptTemplateError: missing or unreadable file, too large, not UTF-8, no templates, too many, or
            an invalid line (the message is ``FILE:LINE: what is wrong``).
    """
    p = Path(path)
    if not p.is_file():
        raise PromptTemplateError(f"template file {p} does not exist (or is not a file); give a preset "
                                  f"({', '.join(TEMPLATE_PRESETS)}), a file with one template per line, or a template with {{}}")
    try:
        size = p.stat().st_size
        if size > MAX_TEMPLATE_FILE_BYTES:
            raise PromptTemplateError(f"template file {p} is {size:,} bytes; at most {MAX_TEMPLATE_FILE_BYTES:,} are read "
                                      f"(one template per line, at most {MAX_TEMPLATES} templates)")
        with open(p, "rb") as f:
            raw = f.read(MAX_TEMPLATE_FILE_BYTES + 1)
    except OSError as e:
        raise PromptTemplateError(f"template file {p}: cannot read it ({e.strerror or e})") from None
    if len(raw) > MAX_TEMPLATE_FILE_BYTES:  # grew since stat
        raise PromptTemplateError(f"template file {p} is larger than {MAX_TEMPLATE_FILE_BYTES:,} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise PromptTemplateError(f"{p}:{line}: not UTF-8 text (byte {e.start}); save the template file as UTF-8") from None
    out: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        t = line.strip()
        if not t or t.startswith("#"):
            continue
        try:
            out.append(validate_template(t))
        except PromptTemplateError as e:
            raise PromptTemplateError(f"{p}:{lineno}: {e}") from None
        if len(out) > MAX_TEMPLATES:
            raise PromptTemplateError(f"{p}:{lineno}: more than {MAX_TEMPLATES} templates; at most {MAX_TEMPLATES} are used")
    if not out:
        raise PromptTemplateError(f"template file {p} has no templates (only blank or '#' lines); write one per line, {_EXAMPLE}")
    return _dedup(out)


def resolve_templates(spec: str | os.PathLike | Sequence[str] | None) -> tuple[str, ...]:
    """Templates from a preset name, a template file, one template or a sequence of templates.

    A string is read as: a template when it contains a brace; else a preset name of
    :data:`TEMPLATE_PRESETS` (case-insensitive); else the path of a template file (see
    :func:`read_template_file`; write ``./clip`` for a file named like a preset). A path object is a
    file; a sequence is a list of templates; None is the default (``("image of a {}",)``).

    Returns:
        A non-empty tuple of valid templates, de-duplicated in order.

    Raises:
        PromptTemplateError: an invalid template, an unknown preset or missing file (the message lists
            the presets), or a bad file (see :func:`read_template_file`).
    """
    if spec is None:
        return (DEFAULT_TEMPLATE,)
    if isinstance(spec, os.PathLike):
        return read_template_file(spec)
    if not isinstance(spec, str):
        return as_templates(spec)
    if "{" in spec or "}" in spec:
        return as_templates(spec)
    key = spec.strip().lower()
    if key in TEMPLATE_PRESETS:
        return TEMPLATE_PRESETS[key]
    if not Path(spec).is_file() and not any(sep in spec for sep in "/\\") and not Path(spec).suffix:
        raise PromptTemplateError(f"{spec!r} is neither a template preset ({', '.join(TEMPLATE_PRESETS)}) nor a file; "
                                  f"a template needs {{}} for the class name, {_EXAMPLE}")
    return read_template_file(spec)


def preset_of(templates: Sequence[str]) -> str | None:
    """The name of the preset whose templates are exactly ``templates`` (same order), or None."""
    t = tuple(templates)
    return next((name for name, preset in TEMPLATE_PRESETS.items() if preset == t), None)


def describe_templates(templates: Sequence[str]) -> str:
    """One short phrase for logs and titles: the template itself, or "7 templates (preset clip)"."""
    t = tuple(templates)
    if len(t) == 1:
        return repr(t[0])
    name = preset_of(t)
    return f"{len(t)} templates" + (f" (preset {name})" if name else "")
