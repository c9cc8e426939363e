"""Read a TorchScript archive's parameters **without running any of it**.

TorchScript archives (OpenAI's own ``ViT-B-32.pt``) are never handed to ``torch.jit.load``, which
compiles and runs the archive's code (PyTorch has no safe mode for it). Their parameters are read by
:func:`read_torchscript_state_dict`: a restricted unpickler over the archive's ``data.pkl`` that
knows only tensor records, plain containers and inert stand-ins for the archive's classes, and reads
each tensor's bytes from the zip's ``data/<key>`` record after checking its declared size against
the record. ``code/`` is only read as text for the ``__parameters__``/``__buffers__`` name lists;
``constants.pkl`` is never read. Archives whose classes define ``__setstate__`` (code that would run
at load time) are refused.

Also here, because every PyTorch checkpoint format is a zip archive: :func:`open_zip_archive`
refuses archives whose records add up to far more than the file (zip bombs), and
:func:`is_torchscript_archive` tells TorchScript archives from ``torch.save`` ones.

The checked entry point for any checkpoint file is :func:`clip2point.checkpoints.load_state_dict_file`.
"""
from __future__ import annotations

import collections
import math
import os
import pickle
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError

__all__ = [
    "read_torchscript_state_dict", "open_zip_archive", "is_torchscript_archive",
    "MAX_ZIP_EXPANSION", "MAX_VIEW_EXPANSION_BYTES",
]

#: A zip archive may hold at most this many times its own size (plus 1 MiB) once uncompressed.
#: ``torch.save`` and ``torch.jit.save`` store tensor records uncompressed, so real checkpoints are ≈ 1×.
MAX_ZIP_EXPANSION = 2
#: A tensor may declare more elements than its storage holds (a broadcast view) only up to this many bytes.
MAX_VIEW_EXPANSION_BYTES = 1 << 20

_MAX_PICKLE_BYTES = 256 << 20  # data.pkl of OpenAI's ViT-L/14 is < 1 MB
_MAX_CODE_BYTES = 64 << 20
_MAX_TENSORS = 1_000_000
_MAX_DEPTH = 64


def open_zip_archive(path: str | os.PathLike, size: int) -> zipfile.ZipFile | None:
    """The zip archive at ``path`` after the zip-bomb check, or None when it is not a (readable) zip archive.

    Args:
        path: a file known to exist and be readable. size: its size in bytes.

    Raises:
        CheckpointError: the records declare more than ``MAX_ZIP_EXPANSION`` × ``size`` (+ 1 MiB) bytes.
        OSError: the file cannot be opened.
    """
    p = Path(path)
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


def is_torchscript_archive(names: list[str]) -> bool:
    """Whether a zip archive's record names are a TorchScript archive's (``constants.pkl`` or ``code/``)."""
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

    Args:
        path: the archive (also named in messages). zf: the archive already opened (and checked by
            :func:`open_zip_archive`); None opens ``path`` (without
            :func:`clip2point.checkpoints.load_state_dict_file`'s checks of the file itself).

    Raises:
        CheckpointError: not a TorchScript archive; a class defines ``__setstate__`` or keeps a
            custom state; a global other than the above; a record missing or of the wrong size; a
            tensor that reaches beyond its storage or declares far more elements than it holds;
            big-endian data.
    """
    p = Path(path)
    own = zf is None
    if zf is None:
        try:
            zf = open_zip_archive(p, os.stat(p).st_size)
        except OSError as e:
            raise CheckpointError(f"{p}: cannot read it ({e.strerror or type(e).__name__}); check the path") from None
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

