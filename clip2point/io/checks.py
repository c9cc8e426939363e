"""File checks and error messages shared by every reader of :mod:`clip2point.io`.

Each failure becomes one :class:`~clip2point.errors.PointCloudFileError` line that names the file
and says what to do: :func:`check_file` before anything is read, :func:`reading` around a reader,
:func:`fail` / :func:`truncated` / :func:`too_many` for lying or oversized headers, and
:func:`validate_points` on what was read. Argument checks (:func:`check_count`,
:func:`check_sampling`) raise :class:`~clip2point.errors.Clip2PointError`.
"""
from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from ..checkpoints import probe_readable_file
from ..errors import Clip2PointError, PointCloudFileError, UnsupportedFormatError
from .formats import CHUNK_BYTES, FLOAT32_MAX, MAX_POINTS, SAMPLING_METHODS

__all__ = [
    "os_error_message", "reading", "short_error", "check_file", "fail", "too_many", "truncated", "read_exact",
    "count_newlines", "check_sampling", "check_count", "validate_points",
]


def os_error_message(path: Path, err: OSError) -> str | None:
    """A true one-line message for the OS errors a user can cause, or None for the others."""
    code = getattr(err, "errno", None)
    if isinstance(err, PermissionError) or code in (errno.EACCES, errno.EPERM):
        return f"{path.name}: permission denied reading {path}; make the file readable (chmod u+r) or copy it"
    if code == errno.ELOOP:
        return f"{path.name}: {path} is a symbolic link loop; point to the real file instead"
    if isinstance(err, IsADirectoryError):
        return f"{path.name}: {path} is a folder, not a file; pass a point-cloud or mesh file"
    if code == errno.ENAMETOOLONG:
        return f"{path.name}: the path is too long for the file system; move or rename the file"
    if code == errno.EIO:
        return f"{path.name}: the disk reported an I/O error reading {path}; copy the file to another disk and retry"
    return None


@contextlib.contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn a reader's exception into one true PointCloudFileError line naming the file."""
    try:
        yield
    except PointCloudFileError as err:
        if path.name in str(err):
            raise
        raise type(err)(f"{path.name}: {err}") from err
    except Clip2PointError:
        raise
    except MemoryError as err:
        raise PointCloudFileError(
            f"{path.name}: too large to read into the memory available ({type(err).__name__}); "
            "use a smaller file, or subsample it first"
        ) from err
    except OSError as err:
        text = os_error_message(path, err)
        if text is not None:
            raise PointCloudFileError(text) from err
        raise PointCloudFileError(
            f"{path.name}: could not be read ({type(err).__name__}: {short_error(err)}); "
            "the file may be truncated or corrupt; re-export it"
        ) from err
    except Exception as err:  # readers raise anything from ValueError to struct.error
        raise PointCloudFileError(
            f"{path.name}: could not be read ({type(err).__name__}: {short_error(err)}); "
            "the file may be truncated or corrupt; re-export it"
        ) from err


def short_error(err: BaseException, limit: int = 200) -> str:
    """An exception's text on one line, cut to ``limit`` characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: Messages for :func:`clip2point.checkpoints.probe_readable_file`'s problems (the OS errors aside).
_FILE_PROBLEMS = {
    "missing": "{name}: file not found at {path}; check the path",
    "broken_link": "{name}: {path} is a symbolic link to a file that does not exist; fix the link",
    "bad_parent": "{name}: file not found at {path} (a parent is not a folder)",
    "folder": "{name}: {path} is not a regular file; pass a point-cloud or mesh file",
    "not_regular": "{name}: {path} is not a regular file; pass a point-cloud or mesh file",
    "empty": "{name}: the file is empty (0 bytes); re-export or re-download it",
}


def check_file(path: Path, allowed: tuple[str, ...]) -> str:
    """Return the lower-case extension after checking it is allowed and the file is readable, non-empty."""
    ext = path.suffix.lower()
    if ext not in allowed:
        raise UnsupportedFormatError(
            f"{path.name}: unsupported file type {ext or '(no extension)'!r}; supported: {', '.join(allowed)}"
        )
    probe = probe_readable_file(path)
    if probe.problem in ("stat_error", "open_error"):
        action = "access" if probe.problem == "stat_error" else "open"
        message = os_error_message(path, probe.error) or f"{path.name}: cannot {action} {path} ({probe.error})"
        raise PointCloudFileError(message) from probe.error
    if probe.problem is not None:
        raise PointCloudFileError(_FILE_PROBLEMS[probe.problem].format(name=path.name, path=path)) from None
    return ext


def fail(path: Path, message: str) -> PointCloudFileError:
    """A PointCloudFileError ``"<file name>: <message>"`` (returned, for the caller to raise)."""
    return PointCloudFileError(f"{path.name}: {message}")


def too_many(path: Path, count: int, limit: int, what: str = "points", option: str = "max_points") -> None:
    """Refuse a file that declares more than ``limit`` points/vertices/faces (``option`` names the limit).

    Raises:
        PointCloudFileError: ``count > limit``.
    """
    if count > limit:
        raise fail(
            path,
            f"holds {count:,} {what}, more than the limit of {limit:,} ({option}); "
            "subsample or split the file, or raise the limit",
        )


def truncated(path: Path, declared: str, need: int, have: int) -> PointCloudFileError:
    """The error for a header that declares ``need`` bytes of ``declared`` when only ``have`` follow."""
    return fail(
        path,
        f"its header declares {declared} ({need:,} bytes) but only {have:,} bytes of data follow; "
        "the file is truncated or corrupt (or its header is wrong); re-export it",
    )


def read_exact(fh: IO[bytes], nbytes: int, path: Path, what: str) -> bytes:
    """Read exactly ``nbytes`` (in bounded chunks), or fail naming what was cut short."""
    parts, left = [], nbytes
    while left > 0:
        chunk = fh.read(min(left, CHUNK_BYTES))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    if left:
        raise truncated(path, what, nbytes, nbytes - left)
    return b"".join(parts)


def count_newlines(fh: IO[bytes], limit: int) -> int:
    """Newlines from the current position to the end, stopping early once past ``limit``."""
    count = 0
    for chunk in iter(lambda: fh.read(CHUNK_BYTES), b""):
        count += chunk.count(b"\n")
        if count > limit:
            break
    return count


def check_sampling(method: object) -> None:
    """Refuse a sampling method other than :data:`~clip2point.io.SAMPLING_METHODS` (Clip2PointError)."""
    if method not in SAMPLING_METHODS:
        raise Clip2PointError(f"sampling method must be one of {SAMPLING_METHODS}, got {method!r}")


def check_count(value: object, what: str) -> None:
    """Refuse anything but a positive integer (not a bool) for the argument ``what`` (Clip2PointError)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise Clip2PointError(f"{what} must be a positive integer, got {value!r}")


def validate_points(path: Path, points: np.ndarray, limit: int = MAX_POINTS) -> None:
    """Check read coordinates: numeric (N, 3), not empty, at most ``limit``, finite, within the
    float32 range, at least 2 distinct points.

    Raises:
        PointCloudFileError: naming the file and what to do.
    """
    points = np.asarray(points)
    if points.dtype.kind not in "fiu":  # e.g. a truncated ASCII .ply leaves ragged or missing values
        raise PointCloudFileError(
            f"{path.name}: the coordinates are not all numbers; the file may be truncated or corrupt; re-export it"
        )
    if len(points) == 0:
        raise PointCloudFileError(
            f"could not read any points from {path.name}: the file may be truncated or corrupt; re-export it"
        )
    if points.ndim != 2 or points.shape[1] != 3:
        raise PointCloudFileError(
            f"{path.name}: expected (N, 3) coordinates, got shape {points.shape}; the file is malformed; re-export it"
        )
    too_many(path, len(points), limit)
    bad = int(np.count_nonzero(~np.isfinite(points)))
    if bad:
        raise PointCloudFileError(
            f"{path.name}: contains {bad} NaN/inf coordinates; clean the file (remove or fill those rows) and try again"
        )
    if points.dtype.kind == "f" and points.dtype.itemsize > 4:
        top = float(max(np.abs(points.min()), np.abs(points.max())))
        if top > FLOAT32_MAX:
            raise PointCloudFileError(
                f"{path.name}: has coordinates as large as {top:.3g}, beyond the float32 range (±3.4e38) clip2point "
                "computes in; rescale the coordinates (e.g. to metres) and save the file again"
            )
    if not np.any(points != points[:1]):
        raise PointCloudFileError(
            f"{path.name}: has fewer than 2 distinct points ({len(points)} point(s), all at {points[0].tolist()}); "
            "a point cloud needs at least 2 distinct points"
        )
