"""Downloading the datasets that have a public archive (ModelNet10/40), safely unzipped."""
from __future__ import annotations

import logging
import shutil
import tempfile
import zipfile
from pathlib import Path

from ..checkpoints import file_digest
from ..errors import DatasetError
from .modelnet import MODELNET_FOLDERS
from .registry import canonical_name

__all__ = ["DATASET_URLS", "download_dataset", "safe_extract"]

logger = logging.getLogger(__name__)

#: Official archives (Princeton); the same URLs torch_geometric, Keras' PointNet example and
#: pointnet.pytorch use. No checksum is published for them (see :func:`download_dataset`).
DATASET_URLS: dict[str, str] = {
    "modelnet10": "http://3dvision.princeton.edu/projects/2014/3DShapeNets/ModelNet10.zip",
    "modelnet40": "http://modelnet.cs.princeton.edu/ModelNet40.zip",
}


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

    Nothing is fetched when ``dest_dir/ModelNet10`` (or ``ModelNet40``) already exists. The
    archive (≈ 0.5 GB / 2 GB) is fetched with :func:`pooch.retrieve`; Princeton publishes no
    checksum for it, so ``known_hash=None`` and the computed sha256 is logged. It is unzipped
    into a temporary folder first (so an interrupted run leaves no half dataset), then moved in
    place, and the archive is deleted.

    Returns:
        The dataset folder, e.g. ``dest_dir / "ModelNet10"``; pass it (or ``dest_dir``) to
        :func:`clip2point.datasets.open_dataset`.

    Raises:
        DatasetError: unknown name, the download failed (e.g. no internet), or a corrupt archive.
    """
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
