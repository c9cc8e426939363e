"""What every clip2point command-line entry point shares: quiet logging, output checks and one-line errors.

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
import logging
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from .errors import Clip2PointError

__all__ = ["setup_logging", "run_command", "check_output_file", "check_output_dir", "error_line"]

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
