"""``clip2point data``: get datasets (download / where to get them), list those under a folder, and the opt-in
OpenShape converter (its options and what each action does)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..cliutil import HelpFormatter, check_output_dir

__all__ = ["data_parser", "cmd_data", "DATA_HELP"]

DATA_HELP = ("datasets: download ModelNet10/40 (ScanObjectNN, Objaverse-LVIS: where to get them), find those "
             "under a folder, convert OpenShape's Objaverse-LVIS files (opt-in)")

_CONVERT_EPILOG = """\
OpenShape stores each object as a pickled Python dict, and loading a pickle can run arbitrary code.
This command unpickles them only with --i-trust-these-files, for files you downloaded yourself from
https://huggingface.co/datasets/OpenShape/openshape-training-data (meta_data.zip, Objaverse/000-*.tar.gz).
It writes DEST_DIR/objects/<uid>.npz (xyz, rgb) and DEST_DIR/lvis.json, which clip2point reads without
any pickle; bad files are skipped and listed in DEST_DIR/skipped.json. Re-running resumes.

example:
  clip2point data convert-openshape /data/openshape -o data/objaverse-lvis \\
      --split-file /data/openshape/meta_data/split/lvis.json --i-trust-these-files
  clip2point eval --dataset objaverse-lvis --data-dir data/objaverse-lvis
"""


def data_parser(p: argparse.ArgumentParser) -> None:
    """The ``data`` actions: ``download``, ``find``, ``convert-openshape``."""
    from ..datasets import DOWNLOADABLE

    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    d = dsub.add_parser("download", formatter_class=HelpFormatter,
                        help="download and unzip ModelNet10/40; for ScanObjectNN and Objaverse-LVIS, say where to "
                             "get them and where to put them")
    d.add_argument("name", choices=DOWNLOADABLE)
    d.add_argument("-o", "--out-dir", default="data", help="where to unzip")
    f = dsub.add_parser("find", formatter_class=HelpFormatter,
                        help="list the datasets found under a folder and the --data-dir to pass for each")
    f.add_argument("root", nargs="?", default="data", help="the folder holding your datasets")
    c = dsub.add_parser("convert-openshape", formatter_class=HelpFormatter, epilog=_CONVERT_EPILOG,
                        help="convert OpenShape's pickled Objaverse-LVIS files you trust into clip2point's safe "
                             "layout (opt-in: --i-trust-these-files)")
    c.add_argument("src_dir", metavar="SRC_DIR", help="the folder OpenShape's data were unpacked in")
    c.add_argument("-o", "--out-dir", required=True, metavar="DEST_DIR", help="where to write the safe layout")
    c.add_argument("--split-file", required=True, help="OpenShape's meta_data/split/lvis.json")
    c.add_argument("--i-trust-these-files", dest="trusted", action="store_true",
                   help="you downloaded these files yourself and trust them: they are unpickled, which can run code")
    c.add_argument("--limit", type=int, default=None, help="convert at most this many objects (a quick try)")


def _download(args) -> int:
    from ..datasets import download_dataset, manual_download_message
    from ..errors import DatasetError

    manual = manual_download_message(args.name, args.out_dir)
    if manual is not None:  # no public archive: the message is the answer (exit status 2, as for every error)
        raise DatasetError(manual)
    check_output_dir(args.out_dir)
    path = download_dataset(args.name, args.out_dir, progress=not args.quiet)
    print(f"{args.name} ready in {path}; use --data-dir {path}")
    return 0


def _find(args) -> int:
    from ..datasets import find_datasets

    found = find_datasets(args.root)
    if not found:
        print(f"no dataset found under {args.root}; `clip2point data download NAME -o {args.root}` gets one")
        return 1
    for name, folder in found.items():
        print(f"{name:24s} --dataset {name} --data-dir {folder}")
    return 0


def _convert(args) -> int:
    from ..errors import Clip2PointError
    from .openshape import REFUSAL, convert_openshape  # the one module that unpickles; only this command loads it

    if not args.trusted:
        raise Clip2PointError(REFUSAL)
    if args.limit is not None and args.limit < 1:
        raise Clip2PointError(f"--limit must be at least 1, got {args.limit}")
    split_file = Path(args.split_file).expanduser()
    if not split_file.is_file():
        raise Clip2PointError(f"split file {split_file} does not exist; pass OpenShape's meta_data/split/lvis.json")
    check_output_dir(args.out_dir)
    from tqdm.auto import tqdm

    from ..datasets.objaverse import read_split

    total = len(read_split(split_file))
    total = min(total, args.limit) if args.limit else total
    with tqdm(total=total, desc="converting", unit="object", disable=args.quiet) as bar:
        report = convert_openshape(args.src_dir, args.out_dir, args.split_file, trusted=True, limit=args.limit,
                                   progress=bar.update)
    print(f"converted {len(report.converted)}, kept {len(report.kept)} already converted, skipped "
          f"{len(report.skipped)}; use --dataset objaverse-lvis --data-dir {args.out_dir}")
    for uid, why in list(report.skipped.items())[:5]:
        print(f"  skipped {uid}: {why}")
    if len(report.skipped) > 5:
        print(f"  ... {len(report.skipped) - 5} more in {args.out_dir}/skipped.json")
    return 0


def cmd_data(args) -> int:
    """Run one ``data`` action; returns the exit status."""
    actions = {"download": _download, "find": _find, "convert-openshape": _convert}
    return actions[args.data_command](args)
