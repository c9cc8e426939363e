"""This process's place in a pre-training run: one process, or one of N under ``torchrun`` (DDP).

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; :func:`init_distributed`
joins the process group (NCCL for CUDA devices, gloo on CPU) or, without those variables, returns a
world of one in which every collective is skipped (the same code path).
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import Clip2PointError

__all__ = ["DistEnv", "pick_device", "init_distributed", "shutdown_distributed"]


@dataclass
class DistEnv:
    """This process's place in the run: rank, world size, device, backend ("" without a process group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str = ""
    slow_group: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process (a no-op in a world of one)."""
        if self.backend:
            import torch.distributed as dist

            if self.backend == "nccl":
                dist.barrier(device_ids=[self.device.index or 0])
            else:
                dist.barrier()

    def slow_barrier(self) -> None:
        """A barrier on a CPU (gloo) group with a 2-day timeout: for waiting on rank 0's downloads
        and pair-cache build, which may take far longer than NCCL's collective timeout."""
        if self.backend:
            import torch.distributed as dist

            dist.barrier(group=self.slow_group)


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch device of a ``--device`` value: "auto" is cuda when available, else cpu; a bare "cuda" is
    ``cuda:local_rank``.

    Raises:
        Clip2PointError: CUDA was asked for but is not available.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise Clip2PointError("--device cuda was requested but CUDA is not available; use --device cpu")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev


def init_distributed(device: str = "auto") -> DistEnv:
    """Join the torchrun process group when launched by torchrun, else a world of one.

    torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; the backend is NCCL
    for CUDA devices and gloo on CPU. Without those variables no process group is created and
    every collective is skipped (the same code path with world size 1).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if "RANK" not in os.environ or "MASTER_ADDR" not in os.environ:
        return DistEnv(0, 1, 0, dev, "")
    import torch.distributed as dist

    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world,
                                **({"device_id": dev} if dev.type == "cuda" else {}))
    slow = dist.new_group(backend="gloo", timeout=datetime.timedelta(days=2))
    return DistEnv(rank, world, local_rank, dev, backend, slow)


def shutdown_distributed(env: DistEnv) -> None:
    """Leave the process group joined by :func:`init_distributed` (nothing in a world of one)."""
    if env.backend:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


