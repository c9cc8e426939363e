"""``clip2point data``: dataset downloads (its options and what it does)."""
from __future__ import annotations

import argparse

from ..cliutil import HelpFormatter, check_output_dir

__all__ = ["data_parser", "cmd_data", "DATA_HELP"]

DATA_HELP = "datasets: download ModelNet10/40"


def data_parser(p: argparse.ArgumentParser) -> None:
    from ..datasets import DATASET_URLS

    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    d = dsub.add_parser("download", help="download and unzip the official ModelNet archive", formatter_class=HelpFormatter)
    d.add_argument("name", choices=tuple(DATASET_URLS))
    d.add_argument("-o", "--out-dir", default="data", help="where to unzip")


def cmd_data(args) -> int:
    from ..datasets import download_dataset

    check_output_dir(args.out_dir)
    path = download_dataset(args.name, args.out_dir, progress=not args.quiet)
    print(f"{args.name} ready in {path}; use --data-dir {path}")
    return 0
