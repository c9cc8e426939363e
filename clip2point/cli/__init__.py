"""`clip2point` command line: render depth views, zero-shot classify, evaluate, few-shot train, manage data.

Every error a user can cause ends with one clear line on stderr naming the file or option and the
fix, and exit status 2 (the full traceback with --debug); a bug in clip2point is also one line, exit
status 1, asking to re-run with --debug and report it (see :mod:`clip2point.cliutil`). Output paths
(-o, --plot) are checked before the long work starts. Weight files — --weights, --depth-encoder,
$CLIP2POINT_WEIGHTS, the weights folders, and files a run folder's config.json names — are read
without running code (see :mod:`clip2point.checkpoints`).

Modules: :mod:`.parsers` (the options, their defaults and help) and :mod:`.commands` (what each
sub-command does).
"""
from __future__ import annotations

import sys

from ..cliutil import run_command, setup_logging
from .commands import COMMANDS
from .parsers import PARSERS, build_parser, command_of

__all__ = ["main", "build_parser", "command_of", "COMMANDS", "PARSERS"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``clip2point`` (and ``python -m clip2point``): parse ``argv``, run the command, return its exit status."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(command_of(argv) or "").parse_args(argv)
    setup_logging(args.debug, args.quiet)
    return run_command(COMMANDS[args.command], args, f"clip2point {args.command}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
