"""What every clip2point command-line entry point shares: quiet logging and one-line errors."""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from .errors import Clip2PointError

__all__ = ["setup_logging", "run_command"]

_CHATTY = ("open_clip", "httpx", "urllib3", "matplotlib", "PIL")


def setup_logging(debug: bool, quiet: bool, fmt: str = "%(levelname)s %(name)s: %(message)s") -> None:
    """INFO from clip2point (WARNING with ``quiet``), third-party chatter at WARNING; all of it with ``debug``."""
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    logging.basicConfig(level=level, format=fmt)
    if not debug:
        logging.getLogger().setLevel(logging.WARNING)
        for name in _CHATTY:
            logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger("clip2point").setLevel(level)


def run_command(fn: Callable[[argparse.Namespace], int], args: argparse.Namespace, label: str,
                interrupted: str = "interrupted") -> int:
    """Run a command; a user error becomes one line on stderr and exit status 2 (the traceback with --debug)."""
    try:
        return fn(args)
    except (Clip2PointError, OSError) as e:
        if args.debug:
            raise
        msg = str(e) if isinstance(e, Clip2PointError) else f"{type(e).__name__}: {e}"
        print(f"{label}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{label}: {interrupted}", file=sys.stderr)
        return 130
