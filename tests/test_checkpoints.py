"""clip2point.checkpoints: atomic byte writes and consistent safetensors reads under concurrent rewrites."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest
import torch

from clip2point.checkpoints import load_state_dict_file, save_state_dict_atomic, write_bytes_atomic
from clip2point.errors import CheckpointError, Clip2PointError


@pytest.mark.parametrize("durable", [True, False])
def test_write_bytes_atomic_replaces_the_file_and_leaves_no_temp(tmp_path: Path, durable: bool) -> None:
    target = tmp_path / "sub" / "entry.bin"
    write_bytes_atomic(target, b"old", durable=durable)
    write_bytes_atomic(target, b"new contents", durable=durable)
    assert target.read_bytes() == b"new contents"
    assert sorted(p.name for p in target.parent.iterdir()) == ["entry.bin"]


def test_write_bytes_atomic_failure_names_the_reason_and_leaves_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(Clip2PointError, match="file"):
        write_bytes_atomic(blocker / "entry.bin", b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_safetensors_metadata_and_tensors_read_together(tmp_path: Path) -> None:
    p = save_state_dict_atomic({"w": torch.arange(6.0).reshape(2, 3)}, tmp_path / "a.safetensors", {"k": "v"})
    tensors, meta = load_state_dict_file(p)
    assert meta == {"k": "v"} and torch.equal(tensors["w"], torch.arange(6.0).reshape(2, 3))


def test_safetensors_with_a_lying_header_length_is_refused(tmp_path: Path) -> None:
    p = save_state_dict_atomic({"w": torch.ones(4)}, tmp_path / "a.safetensors")
    data = bytearray(p.read_bytes())
    data[:8] = (len(data) * 4).to_bytes(8, "little")
    p.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated"):
        load_state_dict_file(p)


def _rewrite(path: str, value: float, until: float) -> None:
    while time.time() < until:
        save_state_dict_atomic({"x": torch.full((256,), value)}, path, {"value": str(value)})


def test_reads_never_pair_one_versions_header_with_anothers_data(tmp_path: Path) -> None:
    """Two processes keep renaming new versions over one file; every read is one whole version."""
    path = tmp_path / "entry.safetensors"
    save_state_dict_atomic({"x": torch.full((256,), 1.0)}, path, {"value": "1.0"})
    until = time.time() + 3.0
    ctx = multiprocessing.get_context("spawn" if os.name != "posix" else "fork")
    writers = [ctx.Process(target=_rewrite, args=(str(path), v, until)) for v in (1.0, 2.0)]
    for w in writers:
        w.start()
    reads, mismatched = 0, 0
    try:
        while time.time() < until:
            tensors, meta = load_state_dict_file(path)
            reads += 1
            x = tensors["x"]
            mismatched += not (float(x.min()) == float(x.max()) == float(meta["value"]))
    finally:
        for w in writers:
            w.join(10)
    assert reads > 50 and mismatched == 0
