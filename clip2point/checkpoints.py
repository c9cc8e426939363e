"""Files on disk: checkpoints and JSON read safely, written atomically, hashed; training state saved and restored.

Reading (:func:`load_state_dict_file`) never runs code from a file:

* ``.safetensors`` files are read with safetensors (a JSON header and raw tensor bytes; it checks
  every declared offset against the file's size).
* ``torch.save`` files are read with ``torch.load(weights_only=True)``: pickled Python objects other
  than tensors and plain containers are refused.
* TorchScript archives (OpenAI's own ``ViT-B-32.pt``) are **never** handed to ``torch.jit.load``;
  their parameters are read by :func:`clip2point.torchscript.read_torchscript_state_dict`, a
  restricted unpickler (see that module).
* Before any of that, zip archives whose records add up to far more than the file (zip bombs) and
  tensors declaring more elements than their storage holds (e.g. a zero-stride view of 10¹²
  elements) are refused.

Writing is atomic (:func:`save_state_dict_atomic`, :func:`write_json_atomic`, :func:`write_text_atomic`):
a temporary ``.<name>.<pid>.<random>.tmp`` in the target's folder (a file created with ``O_EXCL``, or
for safetensors a folder that safetensors writes into), flushed to disk, then renamed over the target,
with the usual permissions (0666 minus the umask; the process umask is never changed). A crash never
leaves a half-written file at the target; temporary files of processes that no longer run (``kill -9``)
or older than a day are removed the next time that target is written. Write failures (disk full,
permissions) raise one clear error and leave no temporary file.

Training state (:func:`save_training_state` / :func:`load_training_state`): one safetensors file with
the model, optimizer, scheduler and AMP grad-scaler state and the caller's JSON state, for few-shot
and pre-training runs alike.

Paths read from run folders and checkpoint indexes go through :func:`resolve_inside`, which refuses
names that leave the folder (absolute, ``..``, symlinks pointing elsewhere). OS errors are put into
words by :func:`describe_os_error` (the true reason from the error number, and what to do).
"""
from __future__ import annotations

import errno
import hashlib
import math
import json
import logging
import os
import pickle
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError, Clip2PointError

if TYPE_CHECKING:  # torch is imported where tensors are handled: io (torch-free) uses the file helpers
    import torch

log = logging.getLogger(__name__)

__all__ = [
    "describe_os_error", "FileProbe", "probe_readable_file", "file_digest", "read_json", "resolve_inside",
    "load_state_dict_file", "save_state_dict_atomic", "write_bytes_atomic", "write_text_atomic", "write_json_atomic",
    "remove_stale_temp_files", "save_training_state", "load_training_state", "STALE_TEMP_AGE_S", "json_safe",
]

#: Temporary files of a target older than this are removed even if their process id is in use again.
STALE_TEMP_AGE_S = 24 * 3600


# --------------------------------------------------------------------------------------------
# OS errors in words


_ERRNO_REASONS = {
    errno.ENOENT: "no such file or folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "disk full (no space left on device)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system or the process's file-size limit",
    errno.EROFS: "read-only file system",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
    errno.ELOOP: "too many levels of symbolic links (a symlink loop)",
    errno.ENAMETOOLONG: "file name too long",
    errno.EEXIST: "it already exists",
    errno.EIO: "input/output error (failing disk or network file system)",
    errno.ENOMEM: "out of memory",
    errno.EMFILE: "too many open files",
    errno.EXDEV: "cannot rename across file systems",
}

_ERRNO_FIXES = {
    errno.ENOENT: "check the path",
    errno.EACCES: "check the permissions, or choose a folder you can write to",
    errno.EPERM: "check the permissions, or choose another folder",
    errno.ENOSPC: "free some space or write somewhere else",
    errno.EDQUOT: "free some space or write somewhere else",
    errno.EFBIG: "write to another file system or raise the file-size limit (ulimit -f)",
    errno.EROFS: "choose a folder on a writable disk",
    errno.ENOTDIR: "check the path",
    errno.EISDIR: "give a file name, not a folder",
    errno.ELOOP: "fix or remove the symbolic link",
    errno.ENAMETOOLONG: "use a shorter name",
}


def describe_os_error(err: OSError, path: str | os.PathLike | None = None, action: str = "") -> str:
    """One true sentence for an OS error: ``"<path>: cannot <action>: <reason>; <fix>"``.

    The reason comes from the error number (disk full, permission denied, symlink loop, …), never a guess.
    """
    where = path if path is not None else (err.filename if err.filename is not None else "")
    reason = _ERRNO_REASONS.get(err.errno or -1) or (err.strerror or str(err) or type(err).__name__)
    fix = _ERRNO_FIXES.get(err.errno or -1)
    head = f"{where}: " if where != "" else ""
    return f"{head}{'cannot ' + action + ': ' if action else ''}{reason}" + (f"; {fix}" if fix else "")


def _safetensors_errno(err: Exception) -> int | None:
    """The OS error number inside a safetensors write error (``I/O error: ... (os error 28)`` or ``IoError(Os { code: 28, ... })``)."""
    m = re.search(r"(?:\bcode:\s*|\bos error\s*)(\d+)", str(err))
    return int(m.group(1)) if m else None


def _write_error(path: Path, err: BaseException) -> str:
    if isinstance(err, OSError):
        return describe_os_error(err, path, "write it")
    code = _safetensors_errno(err)
    if code is not None:
        return describe_os_error(OSError(code, os.strerror(code)), path, "write it")
    return f"{path}: cannot write it ({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''})"


# --------------------------------------------------------------------------------------------
# files about to be read


@dataclass(frozen=True)
class FileProbe:
    """Outcome of :func:`probe_readable_file`.

    Attributes:
        size: ``st_size`` in bytes (0 when the file could not be stat'ed).
        problem: None when the file is a readable, non-empty regular file; else one of
            "missing" (FileNotFoundError, not a link), "broken_link" (FileNotFoundError on a symlink),
            "bad_parent" (NotADirectoryError), "stat_error" (other OSError from ``os.stat``),
            "folder", "not_regular" (device, pipe, socket), "empty" (0 bytes),
            "open_error" (OSError opening it for reading).
        error: the OSError for "missing", "broken_link", "bad_parent", "stat_error" and "open_error", else None.
    """

    size: int
    problem: str | None
    error: OSError | None = None


def probe_readable_file(path: str | os.PathLike) -> FileProbe:
    """Whether ``path`` is a readable, non-empty regular file, and if not, why (never raises for OS errors).

    Callers turn :attr:`FileProbe.problem` into their own message (checkpoints, point-cloud files).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError as e:
        return FileProbe(0, "broken_link" if os.path.islink(path) else "missing", e)
    except NotADirectoryError as e:
        return FileProbe(0, "bad_parent", e)
    except OSError as e:
        return FileProbe(0, "stat_error", e)
    if stat.S_ISDIR(st.st_mode):
        return FileProbe(st.st_size, "folder")
    if not stat.S_ISREG(st.st_mode):
        return FileProbe(st.st_size, "not_regular")
    if st.st_size == 0:
        return FileProbe(0, "empty")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        return FileProbe(st.st_size, "open_error", e)
    return FileProbe(st.st_size, None)


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB chunks (constant memory for any size).

    Args:
        path: the file. algorithm: any :func:`hashlib.new` name ("sha256", "sha1", "md5", …).

    Raises:
        OSError: the file cannot be read. ValueError: unknown ``algorithm``.
    """
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# paths inside a folder


def read_json(path: str | os.PathLike, what: str, fix: str = "the folder is damaged",
              error: type[Clip2PointError] = CheckpointError) -> Any:
    """Parse a JSON file of a run, checkpoint or cache folder (it may come from anywhere).

    Args:
        path: the file. what: what it is, for the message ("run config"). fix: what to do.
        error: the :class:`Clip2PointError` subclass to raise.

    Raises:
        ``error``: the file cannot be read (the OS's true reason) or is not valid UTF-8 JSON.
    """
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise error(describe_os_error(e, p, f"read the {what}")) from None
    except (UnicodeDecodeError, ValueError) as e:
        raise error(f"{p}: not valid JSON for a {what} ({type(e).__name__}: {' '.join(str(e).split())[:160]}); {fix}") from None


def resolve_inside(folder: str | os.PathLike, name: Any, what: str = "file") -> Path:
    """The path of ``name`` (read from a JSON file of ``folder``) if it stays inside ``folder``.

    Args:
        folder: the run / checkpoint / cache folder the name was read from.
        name: a relative path as stored in that folder's JSON (e.g. ``"step_00000010.safetensors"``).
        what: what the name is, for the message.

    Returns:
        The resolved path (symlinks followed), inside the resolved ``folder``.

    Raises:
        CheckpointError: ``name`` is not a non-empty string, is absolute, contains ``..``, or resolves
            (through symlinks) outside ``folder``; a symlink loop.
    """
    folder = Path(folder)
    if not isinstance(name, str) or not name or "\x00" in name:
        raise CheckpointError(f"{folder}: the {what} entry {name!r} is not a file name; the folder's JSON is damaged")
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts or name.startswith("~"):
        raise CheckpointError(
            f"{folder}: refused the {what} {name!r}: files named in this folder's JSON must lie inside the folder "
            "(no absolute paths or '..'); the folder was edited or is not trustworthy")
    try:
        root = folder.resolve(strict=True)
        target = (root / rel).resolve()
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: folder not found") from None
    except RuntimeError:  # Python < 3.13 reports a symlink loop this way
        raise CheckpointError(f"{folder / name}: too many levels of symbolic links (a symlink loop); fix or remove the link") from None
    except OSError as e:
        raise CheckpointError(describe_os_error(e, folder / name, "resolve it")) from None
    if target != root and root not in target.parents:
        raise CheckpointError(
            f"{folder}: refused the {what} {name!r}: it resolves to {target}, outside the folder (a symbolic link "
            "pointing elsewhere); files named in this folder's JSON must lie inside it")
    return target


# --------------------------------------------------------------------------------------------
# reading checkpoints


_UNREADABLE = {
    "folder": "is a folder, not a checkpoint file; pass the file inside it",
    "not_regular": "not a regular file (a device, pipe or socket); pass a checkpoint file",
    "empty": "the file is empty; download or export it again",
}


def _check_readable(p: Path) -> int:
    """Size of ``p``; a CheckpointError with the true reason when it cannot be read."""
    probe = probe_readable_file(p)
    if probe.problem in ("missing", "broken_link"):
        raise CheckpointError(f"{p}: checkpoint file not found; check the path (see `clip2point info` for where weights are looked for)")
    if probe.error is not None:
        raise CheckpointError(describe_os_error(probe.error, p, "read the checkpoint"))
    if probe.problem is not None:
        raise CheckpointError(f"{p}: {_UNREADABLE[probe.problem]}")
    return probe.size


def _check_tensor_sizes(tensors: dict[str, torch.Tensor], p: Path) -> None:
    """Refuse tensors that declare far more elements than their storage holds (zero-stride views)."""
    from .torchscript import MAX_VIEW_EXPANSION_BYTES
    for k, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if nbytes > MAX_VIEW_EXPANSION_BYTES and nbytes > t.untyped_storage().nbytes():
            raise CheckpointError(
                f"{p}: refused: tensor {k!r} declares {t.numel():,} elements ({nbytes:,} bytes) over a storage of "
                f"{t.untyped_storage().nbytes():,} bytes (a broadcast view that would fill memory when copied); "
                "the file is corrupt or was crafted")


#: safetensors files up to this size are read with one ``read()``: safe_open reads the header and the
#: tensor bytes through two separate opens, so a file renamed over (an atomic rewrite by a running
#: process) between them could pair one version's header with the other's data.
READ_ONCE_BYTES = 256 << 20


def _read_safetensors_once(p: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header metadata of a safetensors file from a single read of its bytes."""
    from safetensors.torch import load as load_bytes

    data = p.read_bytes()
    if len(data) < 8:
        raise CheckpointError(f"{p}: cannot read this checkpoint, it is truncated ({len(data)} bytes); "
                              "download or export it again")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise CheckpointError(f"{p}: cannot read this checkpoint, its header declares {n:,} bytes but the file "
                              f"has {len(data) - 8:,} after it; it looks truncated — download or export it again")
    header = json.loads(data[8 : 8 + n])
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return load_bytes(data), {str(k): str(v) for k, v in (meta or {}).items()}


def load_state_dict_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a checkpoint safely into a flat ``{name: tensor}`` dict on the CPU; nothing in the file is run.

    Accepts safetensors, ``torch.save`` files (loaded with ``weights_only=True``; ``state_dict``/
    ``model``/``model_state_dict`` wrappers are unwrapped) and TorchScript archives such as OpenAI's
    CLIP ``.pt`` (their parameters, read by :func:`read_torchscript_state_dict`; never ``torch.jit.load``).

    Returns:
        (state_dict, metadata) — metadata is the safetensors header metadata (empty otherwise).

    Raises:
        CheckpointError: missing, unreadable (the OS reason is given), empty, truncated or corrupt file;
            pickled Python objects or TorchScript load-time code (refused for safety); zip bombs;
            tensors larger than their storage; no tensors inside.
    """
    import torch

    from .torchscript import is_torchscript_archive, open_zip_archive, read_torchscript_state_dict

    p = Path(path)
    size = _check_readable(p)
    meta: dict[str, str] = {}
    try:
        if p.suffix == ".safetensors" and size <= READ_ONCE_BYTES:
            obj, meta = _read_safetensors_once(p)
        elif p.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(p), framework="pt", device="cpu") as f:
                meta = dict(f.metadata() or {})
                obj = {k: f.get_tensor(k) for k in f.keys()}
        else:
            zf = open_zip_archive(p, size)
            if zf is not None and is_torchscript_archive(zf.namelist()):
                log.info("%s is a TorchScript archive (OpenAI CLIP format); reading its parameters without running it", p)
                with zf:
                    obj = read_torchscript_state_dict(p, zf)
            else:
                if zf is not None:
                    zf.close()
                obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{p}: refused to load — the file contains pickled Python objects besides tensors, which could run code "
            f"({str(e).splitlines()[0][:160]}). Re-save it as a plain state dict (torch.save(model.state_dict())) or safetensors."
        ) from None
    except MemoryError:
        raise CheckpointError(f"{p}: not enough memory to read this {size:,}-byte checkpoint; free memory or use a smaller model") from None
    except OSError as e:
        if e.errno in _ERRNO_REASONS and e.errno not in (errno.ENOENT,):
            raise CheckpointError(describe_os_error(e, p, "read the checkpoint")) from None
        raise CheckpointError(f"{p}: cannot read this checkpoint, it looks truncated or corrupt ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:160] if str(e) else ''}); download or export it again") from None
    except Exception as e:  # truncated zips, bad headers, random bytes
        raise CheckpointError(
            f"{p}: cannot read this checkpoint, it looks truncated or corrupt ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:160] if str(e) else ''}); download or export it again"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{p}: no tensors found (expected a state dict); is this a model checkpoint?")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{p}: the checkpoint holds no tensors; is this a model checkpoint?")
    _check_tensor_sizes(tensors, p)
    return tensors, meta


# --------------------------------------------------------------------------------------------
# writing


_TMP_RE = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d{1,10})\.(?P<rand>[0-9a-f]{8,32})\.tmp$")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except (OverflowError, OSError):
        return False
    return True


def remove_stale_temp_files(target: str | os.PathLike, max_age_s: float = STALE_TEMP_AGE_S) -> list[Path]:
    """Remove ``.<name>.<pid>.<random>.tmp`` siblings of ``target`` left by crashed writers.

    They are files (JSON/text writes) or folders (a safetensors write happens inside one, since
    safetensors itself writes through its own temporary file). A temporary file is stale when its process id no longer runs (a ``kill -9`` mid-write) or when
    it is older than ``max_age_s`` (the id may have been reused). Temporary files of this process
    younger than that are kept (another thread may be writing the same target).

    Returns:
        The files removed.
    """
    target = Path(target)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    now = time.time()
    me = os.getpid()
    for e in entries:
        m = _TMP_RE.match(e.name)
        if not m or m.group("target") != target.name:
            continue
        pid = int(m.group("pid"))
        try:
            age = now - e.stat(follow_symlinks=False).st_mtime
            is_dir = e.is_dir(follow_symlinks=False)
        except OSError:
            continue
        if age > max_age_s or (pid != me and not _pid_alive(pid)):
            try:
                if is_dir:
                    shutil.rmtree(e.path)
                else:
                    os.unlink(e.path)
                removed.append(Path(e.path))
                log.info("removed %s, a temporary file left by an interrupted write", e.path)
            except OSError:
                pass
    return removed


def _prepare_target(p: Path) -> None:
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file where a folder should be
        raise CheckpointError(f"{p.parent}: is a file, not a folder, so {p.name} cannot be written inside it; "
                              "choose another path") from None
    except OSError as e:
        raise CheckpointError(describe_os_error(e, p.parent, "create the folder")) from None
    if p.is_dir():
        raise CheckpointError(f"{p}: is a folder; give a file name to write")
    remove_stale_temp_files(p)


def _temp_name(p: Path) -> Path:
    return p.with_name(f".{p.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _create_temp(p: Path) -> tuple[int, Path]:
    """A new ``.<name>.<pid>.<random>.tmp`` next to ``p`` (``O_EXCL``; permissions 0666 minus the umask)."""
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    while True:
        tmp = _temp_name(p)
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
        except OSError as e:
            raise CheckpointError(describe_os_error(e, p, "write it")) from None


def _create_temp_dir(p: Path) -> Path:
    """A new folder ``.<name>.<pid>.<random>.tmp`` next to ``p`` (mode 0777 minus the umask)."""
    while True:
        tmp = _temp_name(p)
        try:
            os.mkdir(tmp, 0o777)
            return tmp
        except FileExistsError:
            continue
        except OSError as e:
            raise CheckpointError(describe_os_error(e, p, "write it")) from None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_state_dict_atomic(
    state_dict: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> Path:
    """Write tensors as safetensors atomically (temporary file in the same folder, then rename).

    A crash mid-write never leaves a half-written checkpoint at ``path`` (the previous file stays);
    the file gets the usual permissions (0666 minus the umask; the process umask is never changed).

    Args:
        state_dict: ``{name: tensor}`` (any device; written from the CPU, contiguous).
        path: the ``.safetensors`` file to write; its folder is created.
        metadata: string key/values stored in the header.

    Returns:
        ``path``.

    Raises:
        CheckpointError: the file cannot be written (disk full, file too large, permission denied,
            read-only disk, …: the message says which); no temporary file is left behind.
    """
    from safetensors.torch import save_file

    p = Path(path)
    _prepare_target(p)
    # safetensors writes through its own temporary file (mode 0600) and renames it; it does so inside a
    # folder of ours, so a crash leaves only `.<name>.<pid>.<random>.tmp/`, which the next write removes.
    tmp_dir = _create_temp_dir(p)
    try:
        mode = stat.S_IMODE(os.stat(tmp_dir).st_mode) & 0o666  # 0666 minus the umask, read without changing it
        inner = tmp_dir / p.name
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
        save_file(tensors, str(inner), metadata={k: str(v) for k, v in (metadata or {}).items()})
        os.chmod(inner, mode)
        _fsync(inner)
        os.replace(inner, p)
    except BaseException as e:
        if isinstance(e, OSError) or type(e).__name__ == "SafetensorError":
            raise CheckpointError(_write_error(p, e)) from None
        raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return p


def write_bytes_atomic(path: str | os.PathLike, data: bytes, durable: bool = True) -> Path:
    """Write bytes atomically (temporary file in the same folder, then renamed over ``path``).

    Readers see the old file or the new one, never part of one; concurrent writers of one path each
    rename a complete file (the last rename wins).

    Args:
        path: the file; its folder is created.
        data: the complete contents.
        durable: flush to disk (``fsync``) before the rename, so a power cut cannot leave an empty file;
            ``False`` for caches that can be rebuilt (≈ 15× faster for small files).

    Returns:
        ``path``.

    Raises:
        Clip2PointError: the file cannot be written (the message gives the OS reason); no temporary file is left.
    """
    p = Path(path)
    try:
        _prepare_target(p)
        fd, tmp = _create_temp(p)
    except CheckpointError as e:
        raise Clip2PointError(str(e)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise Clip2PointError(_write_error(p, e)) from None
        raise
    return p


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically and durably (see :func:`write_bytes_atomic`).

    Raises:
        Clip2PointError: the file cannot be written (the message gives the OS reason); no temporary file is left.
    """
    return write_bytes_atomic(path, text.encode("utf-8"))


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN/inf float replaced by None (strict JSON: ``null``), recursively through dicts, lists and tuples."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON atomically (see :func:`write_text_atomic`).

    Raises:
        Clip2PointError: the file cannot be written. TypeError/ValueError: ``obj`` is not JSON-serialisable
            (raised before anything is written).
    """
    return write_text_atomic(path, json.dumps(obj, indent=indent))


# --------------------------------------------------------------------------------------------
# training state


def _split_tensors(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> Any:
    """JSON-able copy of ``obj`` with every tensor moved into ``out`` (replaced by ``{"__tensor__": key}``)."""
    import torch

    if isinstance(obj, torch.Tensor):
        out[prefix] = obj.detach().cpu()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {str(k): _split_tensors(v, f"{prefix}.{k}", out) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_split_tensors(v, f"{prefix}.{i}", out) for i, v in enumerate(obj)]
    return obj


def _join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`_split_tensors` (lists stay lists; dict keys stay strings)."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        return {k: _join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_tensors(v, tensors) for v in obj]
    return obj


def save_training_state(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    scaler: Any | None = None,
    *,
    format: str,
    state: dict[str, Any] | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Write a training state (model, optimizer, LR scheduler, AMP grad scaler, the caller's state) atomically.

    One safetensors file (see :func:`save_state_dict_atomic`): tensors ``model.<state-dict key>``,
    ``optim.<path>`` and ``sched.<path>`` (every tensor inside the optimizer's / scheduler's
    ``state_dict()``, e.g. ``optim.state.0.exp_avg``); header metadata ``format``, ``state`` (JSON
    of ``state``), ``optimizer`` / ``scheduler`` / ``scaler`` (JSON of their ``state_dict()`` with
    each tensor replaced by ``{"__tensor__": key}``) and ``metadata``. No random-number-generator
    state is saved: clip2point runs draw every random number from generators seeded by (seed, epoch,
    index), never from the process-wide RNGs.

    Args:
        path: the ``.safetensors`` file. model: its ``state_dict()`` is saved (any device).
        optimizer, scheduler, scaler: saved when given (``torch.amp.GradScaler``: its ``state_dict()``,
            empty when disabled).
        format: the file's format id, checked by :func:`load_training_state`.
        state: the caller's JSON-able state (epoch, best score, …). metadata: further header strings.

    Returns:
        The JSON parts written, ``{"optimizer": …, "scheduler": …, "scaler": …}`` (only those given),
        for callers that also keep them in a JSON index (pre-training's ``step_*.json``).

    Raises:
        CheckpointError: the file cannot be written (see :func:`save_state_dict_atomic`).
        TypeError/ValueError: ``state`` is not JSON-serialisable (before anything is written).
    """
    import torch

    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in model.state_dict().items()}
    parts: dict[str, Any] = {}
    if optimizer is not None:
        parts["optimizer"] = _split_tensors(optimizer.state_dict(), "optim", tensors)
    if scheduler is not None:
        parts["scheduler"] = _split_tensors(scheduler.state_dict(), "sched", tensors)
    if scaler is not None:
        parts["scaler"] = scaler.state_dict()
    header = {**(metadata or {}), "format": format, **{k: json.dumps(v) for k, v in parts.items()}}
    if state is not None:
        header["state"] = json.dumps(state)
    save_state_dict_atomic(tensors, path, header)
    return parts


def _legacy_fewshot_parts(meta: dict[str, str], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The parts of a few-shot checkpoint written before :func:`save_training_state` existed.

    Its header held ``param_groups`` and ``scaler`` (JSON); its tensors ``optim.<param index>.<name>``.
    """
    state: dict[str, dict[str, Any]] = {}
    for k in tensors:
        if k.startswith("optim."):
            _, i, name = k.split(".", 2)
            state.setdefault(str(int(i)), {})[name] = {"__tensor__": k}
    return {"optimizer": {"state": state, "param_groups": json.loads(meta["param_groups"])},
            "scaler": json.loads(meta.get("scaler", "{}"))}


def _restore_parts(parts: dict[str, Any], tensors: dict[str, torch.Tensor], optimizer: Any, scheduler: Any,
                   scaler: Any) -> None:
    if optimizer is not None:
        opt = _join_tensors(parts["optimizer"], tensors)
        opt["state"] = {int(k): v for k, v in opt["state"].items()}
        optimizer.load_state_dict(opt)
    if scheduler is not None:
        scheduler.load_state_dict(_join_tensors(parts["scheduler"], tensors))
    if scaler is not None and parts.get("scaler") and scaler.is_enabled():
        scaler.load_state_dict(parts["scaler"])


def load_training_state(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    scaler: Any | None = None,
    *,
    format: str | Collection[str],
    parts: dict[str, Any] | None = None,
    check_state: Callable[[dict[str, Any]], Any] | None = None,
    fix: str = "start again",
    label: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Restore a state written by :func:`save_training_state` in place; return the caller's state.

    The file is read with :func:`load_state_dict_file` (nothing in it runs). Also reads the two
    earlier layouts: pre-training checkpoints (optimizer and scheduler JSON kept in ``step_*.json``,
    passed as ``parts``) and few-shot checkpoints whose header held ``param_groups``.

    Args:
        path: the ``.safetensors`` file. model: restored strictly (every key, every shape).
        optimizer, scheduler, scaler: restored when given (a scaler only when it is enabled and the
            file holds a non-empty scaler state).
        format: the accepted format id(s) (the header's ``format``).
        parts: ``{"optimizer": …, "scheduler": …}`` JSON kept elsewhere (a JSON index), used instead of the header's.
        check_state: called with the returned state; a KeyError/TypeError/ValueError it raises is reported
            as a damaged checkpoint.
        fix: what the user should do, ending every message.
        label: the file named in messages about its content (default ``path``; pre-training names its
            ``step_*.json``, which holds ``parts``).

    Returns:
        The caller's state (header ``state``; ``{}`` when none was saved).

    Raises:
        CheckpointError: unreadable or unsafe file (see :func:`load_state_dict_file`); another format;
            the model does not fit; malformed optimizer, scheduler, scaler or caller state.
    """
    tensors, meta = load_state_dict_file(path)
    p = Path(label if label is not None else path)
    formats = (format,) if isinstance(format, str) else tuple(format)
    if meta.get("format") not in formats:
        raise CheckpointError(f"{p}: not a {' or '.join(formats)} checkpoint (format {meta.get('format')!r}); {fix}")
    damaged = f"{p}: the checkpoint does not fit this run or is damaged"
    try:
        model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    except RuntimeError as e:
        raise CheckpointError(f"{damaged}: its model weights do not fit this model ({' '.join(str(e).split())[:200]}); "
                              f"{fix}") from None
    try:
        if parts is None:
            legacy = "optimizer" not in meta and "param_groups" in meta
            parts = _legacy_fewshot_parts(meta, tensors) if legacy else {
                k: json.loads(meta[k]) for k in ("optimizer", "scheduler", "scaler") if k in meta}
        _restore_parts(parts, tensors, optimizer, scheduler, scaler)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as e:
        raise CheckpointError(f"{damaged}: its optimizer, scheduler or scaler state is malformed ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:160]}); {fix}") from None
    try:
        state = json.loads(meta.get("state", "{}"))
        if not isinstance(state, dict):
            raise TypeError(f"the state is a {type(state).__name__}, not an object")
        if check_state is not None:
            check_state(state)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise CheckpointError(f"{damaged}: its state is malformed ({type(e).__name__}: {' '.join(str(e).split())[:160]}); "
                              f"{fix}") from None
    return state
