"""What every clip2point command-line entry point shares: quiet logging, output checks, one-line errors,
and options built from configuration dataclasses.

Options from a config (:func:`add_config_arguments` / :func:`config_from_args`): a dataclass field
whose metadata has a ``"flag"`` is a command-line option; its default, type, ``"help"``,
``"choices"``, ``"metavar"`` and ``"required"`` come from the field, so each default is written once
(in the dataclass) and the config is built from the parsed options without a field-by-field mapping.

Exit statuses of :func:`run_command`:

* 0 — done; 130 — interrupted (Ctrl-C); 141 — the reader of stdout went away (``| head``).
* 2 — a user-caused error: one line on stderr, ``<command>: error: <file or value>: <what is wrong>; <what to do>``.
  These are :class:`~clip2point.errors.Clip2PointError` (bad files, settings, checkpoints, unsafe
  files), OS errors (the reason comes from the error number: permission denied, disk full, symlink
  loop, …), ``MemoryError`` and running out of GPU memory.
* 1 — anything else is a bug in clip2point: still one line (the exception type and message) that
  asks to re-run with ``--debug`` for the traceback and report it.

``--debug`` re-raises every error with its full traceback instead.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import secrets
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import Clip2PointError

__all__ = [
    "setup_logging", "run_command", "check_output_file", "check_output_dir", "error_line", "HelpFormatter",
    "add_config_arguments", "config_from_args", "option_dest",
]

_CHATTY = ("open_clip", "httpx", "urllib3", "matplotlib", "PIL")
log = logging.getLogger(__name__)


def setup_logging(debug: bool, quiet: bool, fmt: str = "%(levelname)s %(name)s: %(message)s") -> None:
    """INFO from clip2point (WARNING with ``quiet``), third-party chatter at WARNING; all of it with ``debug``."""
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    logging.basicConfig(level=level, format=fmt)
    if not debug:
        logging.getLogger().setLevel(logging.WARNING)
        for name in _CHATTY:
            logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger("clip2point").setLevel(level)


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "(no message)"


def error_line(err: BaseException) -> tuple[str, int]:
    """The one-line message and exit status for an exception (see the module docstring)."""
    from .checkpoints import describe_os_error

    if isinstance(err, Clip2PointError):
        return _one_line(str(err)), 2
    if isinstance(err, MemoryError):
        return ("out of memory (MemoryError): the input or the settings need more memory than this machine has; "
                "use fewer or smaller inputs, a lower --num-points, --batch-size or --image-size"), 2
    if type(err).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
        return ("out of GPU memory: lower --batch-size (or --num-points / --image-size), or run with --device cpu; "
                + _one_line(str(err))[:200]), 2
    if isinstance(err, OSError):
        return _one_line(describe_os_error(err)), 2
    return (f"internal error ({type(err).__name__}: {_one_line(str(err))[:300]}); this is a bug in clip2point: re-run "
            "with --debug for the traceback and please report it"), 1


def run_command(fn: Callable[[argparse.Namespace], int], args: argparse.Namespace, label: str,
                interrupted: str = "interrupted") -> int:
    """Run a command; every error becomes one line on stderr (exit 2 for user errors, 1 for bugs).

    With ``args.debug`` the exception propagates with its traceback.
    """
    try:
        return fn(args)
    except KeyboardInterrupt:
        if getattr(args, "debug", False):
            raise
        print(f"{label}: {interrupted}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        try:  # stdout's reader is gone (e.g. `| head`): stop quietly, and keep Python from complaining at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except Exception as e:  # noqa: BLE001 - the one place errors become messages
        if getattr(args, "debug", False):
            raise
        msg, code = error_line(e)
        if code == 1:
            log.debug("internal error", exc_info=True)
        print(f"{label}: error: {msg}", file=sys.stderr)
        return code


def _probe(folder: Path, what: Path) -> None:
    """Create and remove a temporary file in ``folder``: the only true test that it can be written."""
    from .checkpoints import describe_os_error

    probe = folder / f".{what.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as e:
        raise Clip2PointError(describe_os_error(e, what, "write it")) from None
    os.close(fd)
    os.unlink(probe)


def check_output_dir(path: str | os.PathLike) -> Path:
    """Create the output folder ``path`` (and parents) and check that files can be written in it.

    Call it before long work, so a bad ``-o`` fails in a second, not after an hour.

    Raises:
        Clip2PointError: the folder cannot be created or written (the OS reason: permission
            denied, read-only file system, a file in the way, symlink loop, …).
    """
    from .checkpoints import describe_os_error

    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise Clip2PointError(f"{p}: is a file (or a path through one), not a folder; the output must be a folder, "
                              "choose another name") from None
    except OSError as e:
        raise Clip2PointError(describe_os_error(e, p, "create the output folder")) from None
    _probe(p, p / "output")
    return p


def check_output_file(path: str | os.PathLike) -> Path:
    """Check that the file ``path`` can be written (its folder is created); nothing is left behind.

    Raises:
        Clip2PointError: ``path`` is a folder, its folder cannot be created or written, or the
            existing file is not writable.
    """
    from .checkpoints import describe_os_error

    p = Path(path)
    if p.is_dir():
        raise Clip2PointError(f"{p}: is a folder; give a file name to write")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise Clip2PointError(f"{p.parent}: is a file, not a folder, so {p.name} cannot be written inside it; "
                              "choose another path") from None
    except OSError as e:
        raise Clip2PointError(describe_os_error(e, p.parent, "create the folder")) from None
    if p.exists() and not os.access(p, os.W_OK):
        raise Clip2PointError(f"{p}: cannot write it: permission denied; check the permissions, or choose another path")
    _probe(p.parent, p)
    return p


# --------------------------------------------------------------------------------------------
# options from configuration dataclasses


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Help as written (descriptions and epilogs keep their line breaks), every option with its default.

    Options without a default (``None``) or whose help already names it say nothing more.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.default is False and action.nargs == 0 or "(default" in text:
            return text
        return super()._get_help_string(action)


def option_dest(flag: str | tuple[str, ...]) -> str:
    """The ``argparse`` attribute of an option: its long flag's name, e.g. ``("-o", "--run-dir")`` → ``run_dir``."""
    flags = (flag,) if isinstance(flag, str) else tuple(flag)
    long = next((x for x in flags if x.startswith("--")), flags[0])
    return long.lstrip("-").replace("-", "_")


def _value_type(hint: Any) -> Any:
    """``int`` for ``int`` and ``int | None``; the one non-None member of a union."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        return members[0] if len(members) == 1 else str
    return hint


def _options(config_cls: type, names: Iterable[str] | None) -> list[tuple[dataclasses.Field, Mapping[str, Any]]]:
    """(field, its metadata) of the fields with a flag: ``names`` in that order, or all in field order."""
    by_name = {f.name: f for f in dataclasses.fields(config_cls)}
    out = []
    for name in (names if names is not None else by_name):
        f = by_name[name]
        if "flag" in f.metadata:
            out.append((f, f.metadata))
        elif names is not None:
            raise KeyError(f"{config_cls.__name__}.{name} has no command-line flag in its metadata")
    return out


def add_config_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, config_cls: type,
                         names: Iterable[str] | None = None) -> None:
    """Add one option per field of the dataclass ``config_cls`` that has a ``"flag"`` in its metadata.

    A ``bool`` field that defaults to False becomes a ``store_true`` switch; other fields take their
    type from the annotation (``int | None`` → ``int``). Required options show no default.

    Args:
        parser: a parser or argument group. config_cls: the dataclass.
        names: these fields, in this order (each must have a flag); None: every field with a flag, in field order.
    """
    hints = typing.get_type_hints(config_cls)
    for f, meta in _options(config_cls, names):
        kw: dict[str, Any] = {"help": str(meta.get("help", "")).replace("%", "%%")}
        for key in ("choices", "metavar"):
            if key in meta:
                kw[key] = tuple(meta[key]) if key == "choices" else meta[key]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        vtype = _value_type(hints[f.name])
        if meta.get("required") or default is dataclasses.MISSING:
            kw.update(required=True, default=argparse.SUPPRESS)
        elif vtype is bool:
            if default is not False:
                raise TypeError(f"{config_cls.__name__}.{f.name}: a switch must default to False")
            kw.update(action="store_true", default=False)
        else:
            kw["default"] = default
        if "action" not in kw and vtype is not bool:
            kw["type"] = vtype
        flag = meta["flag"]
        parser.add_argument(*((flag,) if isinstance(flag, str) else flag), **kw)


def config_from_args(config_cls: type, args: argparse.Namespace, **values: Any) -> Any:
    """``config_cls(**…)`` from the parsed options of :func:`add_config_arguments` plus ``values``.

    Every field with a flag whose option was parsed takes the option's value; ``values`` set the
    others (or override). Fields with neither keep their defaults.
    """
    fields = dict(values)
    for f, meta in _options(config_cls, None):
        dest = option_dest(meta["flag"])
        if f.name not in fields and hasattr(args, dest):
            fields[f.name] = getattr(args, dest)
    return config_cls(**fields)
