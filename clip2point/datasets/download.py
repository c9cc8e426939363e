"""Getting the datasets: ModelNet10/40 downloaded from their public archives and safely unzipped; for
ScanObjectNN and Objaverse-LVIS (no public archive clip2point can use) a message saying where to get them."""
from __future__ import annotations

import logging
import shutil
import tempfile
import zipfile
from pathlib import Path

from ..checkpoints import file_digest
from ..errors import DatasetError
from .modelnet import MODELNET_FOLDERS
from .objaverse import OPENSHAPE_URL
from .registry import canonical_name
from .scanobjectnn import SCANOBJECTNN_URL, SCANOBJECTNN_VARIANTS

__all__ = ["DATASET_URLS", "DOWNLOADABLE", "download_dataset", "safe_extract", "manual_download_message"]

logger = logging.getLogger(__name__)

#: Official archives (Princeton); the same URLs torch_geometric, Keras' PointNet example and
#: pointnet.pytorch use. No checksum is published for them (see :func:`download_dataset`).
DATASET_URLS: dict[str, str] = {
    "modelnet10": "http://3dvision.princeton.edu/projects/2014/3DShapeNets/ModelNet10.zip",
    "modelnet40": "http://modelnet.cs.princeton.edu/ModelNet40.zip",
}
#: Names ``clip2point data download`` accepts: the archives above, and those it explains how to get.
DOWNLOADABLE: tuple[str, ...] = (*DATASET_URLS, "scanobjectnn", *SCANOBJECTNN_VARIANTS, "objaverse-lvis")


def manual_download_message(name: str, dest_dir: str | Path) -> str | None:
    """Where to get ``name`` by hand and where to put it, or None for a dataset with a public archive.

    ScanObjectNN: the authors share ``h5_files.zip`` on request (their README's download link is commented
    out; the FAQ asks to e-mail them), so there is no URL to fetch. Objaverse-LVIS: OpenShape's processed
    data are public but store pickled dicts (≈ 185 GB), which clip2point converts only on request.
    """
    key = str(name).strip().lower().replace("_", "-")
    dest = Path(dest_dir).expanduser()
    if key == "scanobjectnn" or key in SCANOBJECTNN_VARIANTS:
        files = "; ".join(f"{v.paper_name}: {v.folder}/{{{v.file_name('train')},{v.file_name('test')}}}"
                          for v in SCANOBJECTNN_VARIANTS.values())
        return (
            f"ScanObjectNN has no public download URL: its authors share it on request (terms of use on "
            f"{SCANOBJECTNN_URL}; their FAQ asks for an e-mail to the first author). Get h5_files.zip and unzip it "
            f"into {dest}, so that {dest / 'h5_files' / 'main_split'} and {dest / 'h5_files' / 'main_split_nobg'} "
            f"exist. Files read: {files}. Then pass --data-dir {dest / 'h5_files'} with --dataset "
            f"{' / '.join(SCANOBJECTNN_VARIANTS)}."
        )
    if key == "objaverse-lvis":
        return (
            f"Objaverse-LVIS is not downloaded by clip2point: OpenShape's processed data ({OPENSHAPE_URL}: "
            f"meta_data.zip with split/lvis.json, and Objaverse/000-*.tar.gz, about 185 GB) store pickled Python "
            f"objects. Download and unpack them yourself, then convert the files you trust with `clip2point data "
            f"convert-openshape SRC_DIR -o {dest / 'objaverse-lvis'} --split-file SRC_DIR/meta_data/split/lvis.json "
            f"--i-trust-these-files` and pass --data-dir {dest / 'objaverse-lvis'}."
        )
    return None


def safe_extract(archive: Path, dest: Path) -> None:
    """Unzip ``archive`` into ``dest``, skipping macOS metadata and refusing paths outside ``dest``."""
    dest = dest.resolve()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            parts = Path(member.filename).parts
            if not parts or parts[0] == "__MACOSX" or parts[-1] == ".DS_Store":
                continue
            target = (dest / member.filename).resolve()
            if dest != target and dest not in target.parents:
                raise DatasetError(f"{archive} holds an unsafe path {member.filename!r}; not extracting it")
            zf.extract(member, dest)


def download_dataset(name: str, dest_dir: str | Path, progress: bool = True) -> Path:
    """Download and unzip the official ModelNet10/ModelNet40 archive into ``dest_dir``.

    ScanObjectNN and Objaverse-LVIS raise a :class:`DatasetError` whose message is
    :func:`manual_download_message` (where to get them, which files, where to put them, the ``--data-dir``).

    Nothing is fetched when ``dest_dir/ModelNet10`` (or ``ModelNet40``) already exists. The
    archive (≈ 0.5 GB / 2 GB) is fetched with :func:`pooch.retrieve`; Princeton publishes no
    checksum for it, so ``known_hash=None`` and the computed sha256 is logged. It is unzipped
    into a temporary folder first (so an interrupted run leaves no half dataset), then moved in
    place, and the archive is deleted.

    Returns:
        The dataset folder, e.g. ``dest_dir / "ModelNet10"``; pass it (or ``dest_dir``) to
        :func:`clip2point.datasets.open_dataset`.

    Raises:
        DatasetError: unknown name, the download failed (e.g. no internet), a corrupt archive, or a dataset
            with no public archive.
    """
    manual = manual_download_message(name, dest_dir)
    if manual is not None:
        raise DatasetError(manual)
    key = canonical_name(name)
    folder_name, url = MODELNET_FOLDERS[key], DATASET_URLS[key]
    dest = Path(dest_dir).expanduser()
    target = dest / folder_name
    if target.is_dir() and any(target.iterdir()):
        logger.info("%s already exists; not downloading", target)
        return target
    dest.mkdir(parents=True, exist_ok=True)
    import pooch  # lazy: only needed for downloads

    try:
        fetched = pooch.retrieve(url, known_hash=None, fname=f"{folder_name}.zip", path=dest, progressbar=progress)
        archive = Path(fetched)
    except Exception as err:  # requests/urllib errors, OSError, ...: all mean "could not download"
        raise DatasetError(
            f"could not download {folder_name} from {url} ({type(err).__name__}: {err}). On a machine without "
            f"internet, download the archive elsewhere, unzip it into {dest}, and pass --data-dir {dest}."
        ) from err
    logger.info("downloaded %s (sha256 %s)", archive, file_digest(archive))
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        try:
            safe_extract(archive, tmp)
        except zipfile.BadZipFile as err:
            archive.unlink(missing_ok=True)
            raise DatasetError(
                f"{archive} is not a valid zip archive ({err}); it was deleted, run the download again"
            ) from err
        extracted = tmp / folder_name
        if not extracted.is_dir():  # tolerate an archive whose single top folder is named differently
            tops = [p for p in tmp.iterdir() if p.is_dir()]
            extracted = tops[0] if len(tops) == 1 else tmp
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(extracted), str(target))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    archive.unlink(missing_ok=True)
    logger.info("unzipped %s into %s", folder_name, target)
    return target
