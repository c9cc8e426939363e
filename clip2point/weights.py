"""Where weights come from, and how checkpoint files are read and written safely.

Lookup order for CLIP weights when the user names none (see :func:`clip2point.backbone.resolve_weights`):
``$CLIP2POINT_WEIGHTS`` → files in the weights folder → open_clip's download cache → download.
Every file is loaded with ``torch.load(weights_only=True)`` (or safetensors); TorchScript archives
(OpenAI's own ``ViT-B-32.pt``) are read with ``torch.jit.load``, which runs no Python pickle code.
Checkpoints are written atomically (temporary file + rename).
"""
from __future__ import annotations

import logging
import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import CheckpointError

log = logging.getLogger(__name__)

__all__ = [
    "KNOWN_CHECKPOINTS", "KnownCheckpoint", "weights_dirs", "find_weight_files",
    "load_state_dict_file", "save_state_dict_atomic", "CHECKPOINT_SUFFIXES",
]

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


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


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_state_dict_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a checkpoint safely into a flat ``{name: tensor}`` dict on the CPU.

    Accepts safetensors, ``torch.save`` files (loaded with ``weights_only=True``; ``state_dict``/
    ``model`` wrappers are unwrapped) and TorchScript archives (OpenAI's CLIP ``.pt``).

    Returns:
        (state_dict, metadata) — metadata is the safetensors header metadata (empty otherwise).

    Raises:
        CheckpointError: missing, empty, truncated or corrupt file; pickled Python objects
            (refused for safety); no tensors inside.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint file not found; check the path (see `clip2point info` for where weights are looked for)")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: the file is empty; download or export it again")
    meta: dict[str, str] = {}
    try:
        if p.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(p), framework="pt", device="cpu") as f:
                meta = dict(f.metadata() or {})
                obj = {k: f.get_tensor(k) for k in f.keys()}
        elif _is_torchscript(p):
            log.info("%s is a TorchScript archive (OpenAI CLIP format); reading its parameters", p)
            obj = {k: v for k, v in torch.jit.load(str(p), map_location="cpu").state_dict().items()}
        else:
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{p}: refused to load — the file contains pickled Python objects besides tensors, which could run code "
            f"({str(e).splitlines()[0][:160]}). Re-save it as a plain state dict (torch.save(model.state_dict())) or safetensors."
        ) from None
    except Exception as e:  # truncated zips, bad headers, random bytes
        raise CheckpointError(
            f"{p}: cannot read this checkpoint, it looks truncated or corrupt ({type(e).__name__}: {str(e).splitlines()[0][:160]}); "
            "download or export it again"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{p}: no tensors found (expected a state dict); is this a model checkpoint?")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{p}: the checkpoint holds no tensors; is this a model checkpoint?")
    return tensors, meta


def save_state_dict_atomic(
    state_dict: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> Path:
    """Write tensors as safetensors atomically (temporary file in the same folder, then rename).

    A crash mid-write never leaves a half-written checkpoint at ``path``.
    """
    from safetensors.torch import save_file

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
        save_file(tensors, tmp, metadata={k: str(v) for k, v in (metadata or {}).items()})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a checkpoint gets normal file permissions
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p

