"""Where weights come from, and how checkpoint files are read and written safely.

Lookup order for CLIP weights when the user names none (see :func:`clip2point.backbone.resolve_weights`):
``$CLIP2POINT_WEIGHTS`` → files in the weights folder → open_clip's download cache → download.

Reading (:func:`load_state_dict_file`) never runs code from a file:

* ``.safetensors`` files are read with safetensors (a JSON header and raw tensor bytes; it checks
  every declared offset against the file's size).
* ``torch.save`` files are read with ``torch.load(weights_only=True)``: pickled Python objects other
  than tensors and plain containers are refused.
* TorchScript archives (OpenAI's own ``ViT-B-32.pt``) are **never** handed to ``torch.jit.load``,
  which compiles and runs the archive's code (PyTorch has no safe mode for it). Their parameters are
  read by :func:`read_torchscript_state_dict`: a restricted unpickler over the archive's
  ``data.pkl`` that knows only tensor records, plain containers and inert stand-ins for the
  archive's classes, and reads each tensor's bytes from the zip's ``data/<key>`` record after
  checking its declared size against the record. ``code/`` is only read as text for the
  ``__parameters__``/``__buffers__`` name lists; ``constants.pkl`` is never read. Archives whose
  classes define ``__setstate__`` (code that would run at load time) are refused.
* Before any of that, zip archives whose records add up to far more than the file (zip bombs) and
  tensors declaring more elements than their storage holds (e.g. a zero-stride view of 10¹²
  elements) are refused.

Writing is atomic (:func:`save_state_dict_atomic`, :func:`write_json_atomic`): a temporary
``.<name>.<pid>.<random>.tmp`` in the target's folder (a file created with ``O_EXCL``, or for
safetensors a folder that safetensors writes into), flushed to disk, then renamed over the target,
with the usual permissions (0666 minus the umask; the process umask is never changed). A crash never leaves a half-written
file at the target; temporary files of processes that no longer run (``kill -9``) or older than a
day are removed the next time that target is written. Write failures (disk full, permissions)
raise one clear error and leave no temporary file.

Paths read from run folders and checkpoint indexes go through :func:`resolve_inside`, which refuses
names that leave the folder (absolute, ``..``, symlinks pointing elsewhere).
"""
from __future__ import annotations

import collections
import errno
import json
import logging
import math
import os
import pickle
import pickletools
import re
import secrets
import shutil
import stat
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, Clip2PointError

log = logging.getLogger(__name__)

__all__ = [
    "KNOWN_CHECKPOINTS", "KnownCheckpoint", "weights_dirs", "find_weight_files",
    "load_state_dict_file", "read_torchscript_state_dict", "save_state_dict_atomic", "write_json_atomic",
    "write_text_atomic", "read_json", "remove_stale_temp_files", "resolve_inside", "describe_os_error", "CHECKPOINT_SUFFIXES",
    "MAX_ZIP_EXPANSION", "STALE_TEMP_AGE_S",
]

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")

#: A zip archive may hold at most this many times its own size (plus 1 MiB) once uncompressed.
#: ``torch.save`` and ``torch.jit.save`` store tensor records uncompressed, so real checkpoints are ≈ 1×.
MAX_ZIP_EXPANSION = 2
#: A tensor may declare more elements than its storage holds (a broadcast view) only up to this many bytes.
MAX_VIEW_EXPANSION_BYTES = 1 << 20
#: Temporary files of a target older than this are removed even if their process id is in use again.
STALE_TEMP_AGE_S = 24 * 3600

_MAX_PICKLE_BYTES = 256 << 20  # data.pkl of OpenAI's ViT-L/14 is < 1 MB
_MAX_CODE_BYTES = 64 << 20
_MAX_TENSORS = 1_000_000
_MAX_DEPTH = 64


@dataclass(frozen=True)
class KnownCheckpoint:
    """A checkpoint users can fetch themselves (this tool never downloads from unofficial hosts)."""

    name: str
    kind: str  # "clip" (full CLIP model) or "depth-encoder"
    model_name: str
    filename: str
    source: str
    how: str


KNOWN_CHECKPOINTS: tuple[KnownCheckpoint, ...] = (
    KnownCheckpoint(
        "openai", "clip", "ViT-B-32", "ViT-B-32.pt",
        "OpenAI CLIP ViT-B/32 (open_clip tag 'openai')",
        "downloaded automatically by open_clip on a machine with internet (or copy ViT-B-32.pt into weights/)",
    ),
    KnownCheckpoint(
        "clip2point-pretrained", "depth-encoder", "ViT-B-32", "best_eval.pth",
        "CLIP2Point pre-trained depth encoder released by the authors (github.com/tyhuang0428/CLIP2Point, README)",
        "download best_eval.pth from the authors' README link, put it in weights/, pass --depth-encoder weights/best_eval.pth",
    ),
)


def weights_dirs() -> list[Path]:
    """Folders searched for weight files: ``$CLIP2POINT_WEIGHTS_DIR``, ``./weights``, the repo's ``weights/``."""
    dirs: list[Path] = []
    env = os.environ.get("CLIP2POINT_WEIGHTS_DIR")
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(Path.cwd() / "weights")
    dirs.append(Path(__file__).resolve().parents[1] / "weights")
    seen: set[Path] = set()
    out = []
    for d in dirs:
        r = d.resolve()
        if r not in seen:
            seen.add(r)
            out.append(d)
    return out


def find_weight_files(prefix: str = "") -> list[Path]:
    """Checkpoint files in the weights folders whose name starts with ``prefix`` (case-insensitive)."""
    found = []
    for d in weights_dirs():
        if d.is_dir():
            for p in sorted(d.iterdir()):
                if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES and p.name.lower().startswith(prefix.lower()):
                    found.append(p)
    return found


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
# reading


def _check_readable(p: Path) -> int:
    """Size of ``p``; a CheckpointError with the true reason when it cannot be read."""
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise CheckpointError(f"{p}: checkpoint file not found; check the path (see `clip2point info` for where weights are looked for)") from None
    except OSError as e:
        raise CheckpointError(describe_os_error(e, p, "read the checkpoint")) from None
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"{p}: is a folder, not a checkpoint file; pass the file inside it")
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{p}: not a regular file (a device, pipe or socket); pass a checkpoint file")
    if st.st_size == 0:
        raise CheckpointError(f"{p}: the file is empty; download or export it again")
    try:
        with open(p, "rb"):
            pass
    except OSError as e:
        raise CheckpointError(describe_os_error(e, p, "read the checkpoint")) from None
    return st.st_size


def _open_zip(p: Path, size: int) -> zipfile.ZipFile | None:
    """The zip archive at ``p`` after the zip-bomb check, or None when ``p`` is not a zip archive."""
    with open(p, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return None
    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None  # not a readable zip: torch.load says what it is
    total = sum(max(0, i.file_size) for i in zf.infolist())
    if total > MAX_ZIP_EXPANSION * size + (1 << 20):
        zf.close()
        raise CheckpointError(
            f"{p}: refused: the zip archive declares {total:,} bytes of content in a {size:,}-byte file "
            f"(more than {MAX_ZIP_EXPANSION}x; PyTorch checkpoints store tensors uncompressed), a zip bomb or a corrupt file; "
            "use the original checkpoint")
    return zf


def _is_torchscript(names: list[str]) -> bool:
    return any(n == "constants.pkl" or n.endswith("/constants.pkl") or "/code/" in f"/{n}" for n in names)


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
}


class _StorageType:
    """Stands for ``torch.<X>Storage`` in an archive's pickle (never called)."""

    __slots__ = ("dtype", "name")

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        self.name, self.dtype = name, dtype


class _ScriptObject:
    """Inert stand-in for an instance of a TorchScript class (``__torch__.*``): BUILD stores its state, nothing runs."""

    _c2p_class = "__torch__.?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # pragma: no cover - pickle uses __new__
        self._c2p_state = None

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "_c2p_state", state)


def _plain_tensor(t: Any, what: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise CheckpointError(f"{what} is not a tensor")
    return t


def _int_tuple(x: Any, what: str) -> tuple[int, ...]:
    if not isinstance(x, (tuple, list)) or not all(type(v) is int for v in x):
        raise ValueError(f"{what} must be a tuple of integers")
    return tuple(x)


class _StorageRef:
    __slots__ = ("tensor", "key")

    def __init__(self, tensor: torch.Tensor, key: str) -> None:
        self.tensor, self.key = tensor, key


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                    backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    """Safe ``torch._utils._rebuild_tensor_v2``: a view of a storage read from the archive, bounds checked."""
    if not isinstance(storage, _StorageRef):
        raise ValueError("tensor without a storage record")
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if type(storage_offset) is not int or storage_offset < 0 or len(size) != len(stride) or len(size) > 64:
        raise ValueError("bad tensor offset, size or stride")
    if any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise ValueError("negative tensor size or stride")
    base = storage.tensor
    numel = math.prod(size)
    if numel:
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= base.numel():
            raise ValueError(f"tensor of size {list(size)} reaches element {last:,} of a storage of {base.numel():,}")
        nbytes = numel * base.element_size()
        if numel > base.numel() and nbytes > MAX_VIEW_EXPANSION_BYTES:
            raise CheckpointError(f"a tensor declares {numel:,} elements ({nbytes:,} bytes) over a storage of "
                                  f"{base.numel():,} (record {storage.key}); refused")
    return base.as_strided(size, stride, storage_offset)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None, state: Any = None) -> torch.Tensor:
    return _plain_tensor(data, "a parameter's data")


def _identity(value: Any, *_: Any) -> Any:
    return value


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript ``data.pkl``: tensors, containers and inert ``__torch__`` stand-ins only."""

    _SAFE = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch.jit._pickle", "build_intlist"): _identity,
        ("torch.jit._pickle", "build_tensorlist"): _identity,
        ("torch.jit._pickle", "build_doublelist"): _identity,
        ("torch.jit._pickle", "build_boollist"): _identity,
        ("torch.jit._pickle", "restore_type_tag"): _identity,
    }

    def __init__(self, data: bytes, zf: zipfile.ZipFile, prefix: str, path: Path) -> None:
        import io

        super().__init__(io.BytesIO(data))
        self.zf, self.prefix, self.path = zf, prefix, path
        self.storages: dict[str, _StorageRef] = {}
        self.classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._SAFE:
            return self._SAFE[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        if (module == "__torch__" or module.startswith("__torch__.")) and name.isidentifier():
            qual = f"{module}.{name}"
            cls = self.classes.get(qual)
            if cls is None:
                if len(self.classes) > 100_000:
                    raise pickle.UnpicklingError("too many classes")
                cls = self.classes[qual] = type(name, (_ScriptObject,), {"_c2p_class": qual, "__module__": __name__})
            return cls
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a TorchScript archive's data")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent record {str(pid)[:80]}")
        _, stype, key, _location, numel = pid
        if not isinstance(stype, _StorageType) or not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_]{1,64}", key) \
                or type(numel) is not int or numel < 0:
            raise pickle.UnpicklingError("malformed storage record")
        ref = self.storages.get(key)
        if ref is not None:
            if ref.tensor.dtype != stype.dtype or ref.tensor.numel() != numel:
                raise pickle.UnpicklingError(f"storage {key} is declared twice with different types or sizes")
            return ref
        record = f"{self.prefix}/data/{key}"
        try:
            info = self.zf.getinfo(record)
        except KeyError:
            raise CheckpointError(f"{self.path}: the archive has no record {record} for one of its tensors; it is truncated or corrupt") from None
        itemsize = torch.empty((), dtype=stype.dtype).element_size()
        if info.file_size != numel * itemsize:
            raise CheckpointError(
                f"{self.path}: tensor record {record} declares {numel:,} × {itemsize} bytes ({stype.name}) but holds "
                f"{info.file_size:,} bytes; the file is corrupt or was crafted, refused")
        buf = bytearray(info.file_size)
        if buf:
            with self.zf.open(info) as f:
                view = memoryview(buf)
                got = 0
                while got < len(buf):
                    n = f.readinto(view[got:])
                    if not n:
                        raise CheckpointError(f"{self.path}: record {record} ends early; the file is truncated")
                    got += n
            tensor = torch.frombuffer(buf, dtype=stype.dtype)
        else:
            tensor = torch.empty(0, dtype=stype.dtype)
        ref = self.storages[key] = _StorageRef(tensor, key)
        return ref


_CLASS_RE = re.compile(r"^class\s+([A-Za-z_][A-Za-z_0-9]*)\s*\(\s*([A-Za-z_][A-Za-z_0-9.]*)\s*\)\s*:")
_NAMES_RE = re.compile(r"^\s+(__parameters__|__buffers__)\s*=\s*\[(.*)\]\s*$")


def _script_class_info(zf: zipfile.ZipFile, prefix: str, path: Path) -> dict[str, dict[str, Any]]:
    """Per TorchScript class: is it a Module, its ``__parameters__``/``__buffers__`` names (from ``code/`` as text).

    The code is only scanned as text; a class defining ``__setstate__`` (load-time code) is refused.
    """
    info: dict[str, dict[str, Any]] = {}
    code_root = f"{prefix}/code/"
    read = 0
    for zi in zf.infolist():
        name = zi.filename
        if not (name.startswith(code_root) and name.endswith(".py")):
            continue
        read += zi.file_size
        if read > _MAX_CODE_BYTES:
            raise CheckpointError(f"{path}: the archive's code/ folder is larger than {_MAX_CODE_BYTES >> 20} MB; refused")
        module = name[len(code_root):-3].replace("/", ".")
        text = zf.read(zi).decode("utf-8", errors="replace")
        current: dict[str, Any] | None = None
        qual = ""
        for line in text.splitlines():
            m = _CLASS_RE.match(line)
            if m:
                qual = f"{module}.{m.group(1)}"
                current = info.setdefault(qual, {"module": m.group(2) == "Module"})
                continue
            if current is None:
                continue
            if line and not line[0].isspace():
                current = None
                continue
            m = _NAMES_RE.match(line)
            if m:
                current[m.group(1)] = re.findall(r'"([^"\\]*)"', m.group(2))
            elif re.match(r"^\s+def\s+__setstate__\s*\(", line):
                raise CheckpointError(
                    f"{path}: refused: TorchScript class {qual} "
                    "defines __setstate__, code that torch.jit.load would run while loading; clip2point never runs "
                    "TorchScript code. Re-save the weights as a plain state dict (torch.save(model.state_dict())) or safetensors")
    return info


def _flatten_script_module(obj: _ScriptObject, classes: dict[str, dict[str, Any]], path: Path) -> dict[str, torch.Tensor]:
    """``{dotted.name: tensor}`` as ``torch.jit.load(path).state_dict()`` would list it (parameters, buffers, submodules)."""
    out: dict[str, torch.Tensor] = {}

    def visit(o: _ScriptObject, prefix: str, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise CheckpointError(f"{path}: modules nested more than {_MAX_DEPTH} deep; refused")
        state = o._c2p_state
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise CheckpointError(
                f"{path}: refused: TorchScript class {o._c2p_class} stores a custom state ({type(state).__name__}) that only its "
                "own load-time code (__setstate__) can interpret; clip2point never runs TorchScript code. Re-save the weights "
                "as a plain state dict (torch.save(model.state_dict())) or safetensors")
        decl = classes.get(o._c2p_class)
        if decl is not None and ("__parameters__" in decl or "__buffers__" in decl):
            names = [*decl.get("__parameters__", []), *decl.get("__buffers__", [])]
            tensors = [(n, state[n]) for n in names if isinstance(state.get(n), torch.Tensor)]
        else:  # no declaration in code/: every tensor attribute
            tensors = [(n, v) for n, v in state.items() if isinstance(v, torch.Tensor)]
        for n, v in tensors:
            out[prefix + n] = v.detach()
            if len(out) > _MAX_TENSORS:
                raise CheckpointError(f"{path}: more than {_MAX_TENSORS:,} tensors; refused")
        for n, v in state.items():
            if isinstance(v, _ScriptObject) and _is_module(v, classes):
                visit(v, f"{prefix}{n}.", depth + 1)

    visit(obj, "", 0)
    return out


def _is_module(o: _ScriptObject, classes: dict[str, dict[str, Any]]) -> bool:
    decl = classes.get(o._c2p_class)
    if decl is not None:
        return bool(decl["module"])
    return isinstance(o._c2p_state, dict) and isinstance(o._c2p_state.get("training"), bool)


def read_torchscript_state_dict(path: str | os.PathLike, zf: zipfile.ZipFile | None = None) -> dict[str, torch.Tensor]:
    """The parameters and buffers of a TorchScript archive, read **without running any of it**.

    Gives the same ``{dotted.name: tensor}`` as ``torch.jit.load(path).state_dict()`` (names, order,
    values; CPU tensors) for archives like OpenAI's ``ViT-B-32.pt``, without ``torch.jit.load``:
    the archive's ``data.pkl`` is unpickled with a restricted unpickler that allows only tensor
    records (``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter``, storage types),
    ``collections.OrderedDict``, ``torch.jit._pickle``'s list/type-tag helpers (as plain Python
    functions) and inert stand-ins for ``__torch__.*`` classes whose ``__setstate__`` only stores
    the attribute dict. Tensor bytes come from the zip's ``<archive>/data/<key>`` records, whose
    sizes must equal the declared ones. ``code/*.py`` is read as text only, for each class's
    ``__parameters__``/``__buffers__`` lists; ``constants.pkl`` is never read.

    Raises:
        CheckpointError: not a TorchScript archive; a class defines ``__setstate__`` or keeps a
            custom state; a global other than the above; a record missing or of the wrong size; a
            tensor that reaches beyond its storage or declares far more elements than it holds;
            big-endian data.
    """
    p = Path(path)
    own = zf is None
    if zf is None:
        size = _check_readable(p)
        zf = _open_zip(p, size)
        if zf is None:
            raise CheckpointError(f"{p}: not a zip archive, so not a TorchScript file")
    try:
        names = zf.namelist()
        pkls = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(pkls) != 1:
            raise CheckpointError(f"{p}: a TorchScript archive has one <name>/data.pkl; found {len(pkls)}; the file is corrupt")
        prefix = pkls[0][: -len("/data.pkl")]
        byteorder = f"{prefix}/byteorder"
        if byteorder in names and zf.read(byteorder).strip() not in (b"little", b""):
            raise CheckpointError(f"{p}: the archive stores big-endian tensors; re-save it on a little-endian machine")
        classes = _script_class_info(zf, prefix, p)
        zi = zf.getinfo(pkls[0])
        if zi.file_size > _MAX_PICKLE_BYTES:
            raise CheckpointError(f"{p}: data.pkl is {zi.file_size:,} bytes (more than {_MAX_PICKLE_BYTES >> 20} MB); refused")
        data = zf.read(zi)
        try:  # a pass over the opcodes alone: lengths that exceed the data are caught before anything is allocated
            for _ in pickletools.genops(data):
                pass
        except Exception as e:  # noqa: BLE001 - any malformed opcode stream
            raise CheckpointError(f"{p}: the archive's data.pkl is malformed ({type(e).__name__}: {str(e)[:120]}); "
                                  "the file is truncated, corrupt or crafted") from None
        root = _RestrictedUnpickler(data, zf, prefix, p).load()
    finally:
        if own:
            zf.close()
    if not isinstance(root, _ScriptObject):
        raise CheckpointError(f"{p}: the archive's data.pkl holds a {type(root).__name__}, not a TorchScript module; "
                              "is this a model file?")
    return _flatten_script_module(root, classes, p)


def _check_tensor_sizes(tensors: dict[str, torch.Tensor], p: Path) -> None:
    """Refuse tensors that declare far more elements than their storage holds (zero-stride views)."""
    for k, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if nbytes > MAX_VIEW_EXPANSION_BYTES and nbytes > t.untyped_storage().nbytes():
            raise CheckpointError(
                f"{p}: refused: tensor {k!r} declares {t.numel():,} elements ({nbytes:,} bytes) over a storage of "
                f"{t.untyped_storage().nbytes():,} bytes (a broadcast view that would fill memory when copied); "
                "the file is corrupt or was crafted")


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
    p = Path(path)
    size = _check_readable(p)
    meta: dict[str, str] = {}
    try:
        if p.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(p), framework="pt", device="cpu") as f:
                meta = dict(f.metadata() or {})
                obj = {k: f.get_tensor(k) for k in f.keys()}
        else:
            zf = _open_zip(p, size)
            if zf is not None and _is_torchscript(zf.namelist()):
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


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically (temporary file in the same folder, flushed, then renamed).

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
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise Clip2PointError(_write_error(p, e)) from None
        raise
    return p


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON atomically (see :func:`write_text_atomic`).

    Raises:
        Clip2PointError: the file cannot be written. TypeError/ValueError: ``obj`` is not JSON-serialisable
            (raised before anything is written).
    """
    return write_text_atomic(path, json.dumps(obj, indent=indent))
