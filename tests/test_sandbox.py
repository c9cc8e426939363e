"""Tests of clip2point.sandbox.call_limited: results, limits, crashes, errors, threads, no leftovers."""
from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from clip2point.errors import Clip2PointError, PointCloudFileError, ResourceLimitError, SandboxError
from clip2point.sandbox import call_limited, sandbox_available

pytestmark = pytest.mark.skipif(not sandbox_available(), reason="no multiprocessing forkserver on this platform")


# module-level helpers: the child imports this module to find them


def add_arrays(a: np.ndarray, b: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
    return (a + b) * scale


def child_pid() -> int:
    return os.getpid()


def sleep_forever() -> None:
    while True:
        time.sleep(0.1)


def spin_forever() -> None:
    x = 0
    while True:
        x += 1


def allocate(mb: int) -> int:
    return int(np.ones(mb * 1024 * 1024, dtype=np.uint8).sum())


def segfault() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(5)


def raise_file_error(name: str) -> None:
    raise PointCloudFileError(f"{name}: is broken; re-export it")


def raise_key_error() -> None:
    raise KeyError("points")


def load(path: str):
    from clip2point.io import load_point_cloud

    return load_point_cloud(path, num_points=64)


def _children() -> set[int]:
    """Pids of this process's direct children that are zombies or alive (from /proc)."""
    me, found = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me and fields[0] == "Z":
                found.add(int(entry))
    return found


def test_result_equals_the_in_process_call(tmp_path):
    a, b = np.arange(6.0).reshape(2, 3), np.ones((2, 3))
    np.testing.assert_array_equal(call_limited(add_arrays, a, b, scale=2.0), add_arrays(a, b, scale=2.0))
    assert call_limited(child_pid) != os.getpid()

    path = tmp_path / "cloud.npy"
    np.save(path, np.random.default_rng(0).standard_normal((500, 3)).astype(np.float32))
    here, there = load(str(path)), call_limited(load, str(path))
    np.testing.assert_array_equal(here.points, there.points)
    assert here.source == there.source and here.num_input_points == there.num_input_points


@pytest.mark.parametrize("fn", [sleep_forever, spin_forever])
def test_timeout_kills_the_child_and_raises(fn):
    start = time.monotonic()
    with pytest.raises(ResourceLimitError, match=r"longer than the 1 s limit.*smaller input"):
        call_limited(fn, timeout_s=1.0)
    assert time.monotonic() - start < 4.0
    assert not _children()


def test_memory_limit_turns_into_a_resource_error():
    assert call_limited(allocate, 20, memory_mb=200) == 20 * 1024 * 1024
    with pytest.raises(ResourceLimitError, match=r"more than the 200 MiB memory limit"):
        call_limited(allocate, 2000, memory_mb=200)


def test_a_crash_in_the_child_is_a_clear_error_and_the_caller_lives():
    with pytest.raises(ResourceLimitError, match=r"crashed \(SIGSEGV\)") as err:
        call_limited(segfault, timeout_s=10)
    assert "segfault" in str(err.value)
    assert call_limited(child_pid) > 0  # the next call works
    assert not _children()


def test_clip2point_errors_pass_through_and_others_are_wrapped():
    with pytest.raises(PointCloudFileError, match=r"^scan\.ply: is broken; re-export it$"):
        call_limited(raise_file_error, "scan.ply")
    with pytest.raises(SandboxError, match=r"failed with KeyError: 'points'") as err:
        call_limited(raise_key_error)
    assert isinstance(err.value, Clip2PointError)


def test_bad_limits_are_refused():
    for kwargs in ({"timeout_s": 0}, {"timeout_s": -1.0}, {"memory_mb": 0}, {"memory_mb": 1.5}):
        with pytest.raises(Clip2PointError):
            call_limited(child_pid, **kwargs)


def test_many_threads_at_once():
    def one(i: int):
        if i % 4 == 3:
            with pytest.raises(ResourceLimitError):
                call_limited(sleep_forever, timeout_s=0.5)
            return None
        return call_limited(add_arrays, np.full(3, i), np.zeros(3))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(16)))
    for i, r in enumerate(results):
        if i % 4 != 3:
            np.testing.assert_array_equal(r, np.full(3, i))
    assert not _children()
    assert threading.active_count() < 50
