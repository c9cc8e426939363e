"""Run an untrusted-input task (e.g. reading an uploaded file) in a child process with limits.

:func:`call_limited` calls a picklable, module-level function in a fresh child forked from a
``multiprocessing`` *forkserver* (which has numpy, h5py, trimesh and :mod:`clip2point.io`
preloaded, never torch), with a wall-clock limit and an address-space limit, and returns its
result. Guarantees:

* **Time**: the child is killed (SIGKILL) after ``timeout_s`` seconds; the caller gets a
  :class:`~clip2point.errors.ResourceLimitError` at most about ``timeout_s`` + 1 s after the call.
* **Memory**: the child's address space is capped at its size when it starts plus
  ``memory_mb`` (``RLIMIT_AS``); an allocation beyond it fails inside the child (numpy raises
  ``MemoryError``, which becomes a :class:`~clip2point.errors.ResourceLimitError`) instead of
  growing the caller's process. ``memory_mb=None`` sets no memory limit.
* **Crashes**: a child killed by a signal (a segfault in a C reader, the kernel's OOM killer)
  becomes a :class:`~clip2point.errors.ResourceLimitError` naming the signal; the caller lives on.
* **Errors**: a :class:`~clip2point.errors.Clip2PointError` raised in the child is re-raised as-is
  (same class and message); any other exception becomes a
  :class:`~clip2point.errors.SandboxError` (a ``Clip2PointError``) naming its type and message.
* **No leftovers**: every child is joined (reaped) before the call returns, also on timeout or
  when the calling thread is interrupted, so no zombie or orphan process remains; children die
  with the caller (the forkserver exits when the caller does).
* **Threads**: safe to call from many threads at once; each call has its own child.

The child does not import the caller's ``__main__`` module (so e.g. ``python -m ui.app`` does
not re-import the app, gradio or torch in each child), which is why ``fn`` must live in an
importable module. Results and arguments travel by pickle: keep them to numpy arrays, plain data
and dataclasses such as :class:`~clip2point.io.PointCloud`.

Where the forkserver start method is unavailable (non-POSIX platforms), :func:`call_limited`
logs a warning once and calls ``fn`` in-process, without limits.
"""
from __future__ import annotations

import io
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing import connection
from typing import Any, TypeVar

from .errors import Clip2PointError, ResourceLimitError, SandboxError

__all__ = ["call_limited", "PRELOAD_MODULES", "sandbox_available"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Imported once by the forkserver, so every child starts with them loaded (cheap forks).
PRELOAD_MODULES: tuple[str, ...] = ("numpy", "h5py", "trimesh", "clip2point.errors", "clip2point.io")

_CONTEXT_LOCK = threading.Lock()
_context: Any = None
_context_ready = False
_warned_fallback = False


try:  # POSIX: a forkserver Popen whose children skip re-importing the caller's ``__main__``
    from multiprocessing import forkserver as _forkserver
    from multiprocessing import popen_forkserver as _popen_forkserver
    from multiprocessing import process as _mp_process
    from multiprocessing import reduction as _reduction
    from multiprocessing import spawn as _spawn
    from multiprocessing import util as _mp_util
    from multiprocessing.context import set_spawning_popen as _set_spawning_popen

    class _Popen(_popen_forkserver.Popen):
        """CPython's forkserver Popen, minus the instruction to re-import the parent's ``__main__``."""

        def _launch(self, process_obj: Any) -> None:  # mirrors popen_forkserver.Popen._launch
            prep_data = _spawn.get_preparation_data(process_obj._name)
            prep_data.pop("init_main_from_name", None)
            prep_data.pop("init_main_from_path", None)
            buf = io.BytesIO()
            _set_spawning_popen(self)
            try:
                _reduction.dump(prep_data, buf)
                _reduction.dump(process_obj, buf)
            finally:
                _set_spawning_popen(None)
            self.sentinel, w = _forkserver.connect_to_new_process(self._fds)
            _parent_w = os.dup(w)
            self.finalizer = _mp_util.Finalize(self, _mp_util.close_fds, (_parent_w, self.sentinel))
            with open(w, "wb", closefd=True) as f:
                f.write(buf.getbuffer())
            self.pid = _forkserver.read_signed(self.sentinel)

    class _Process(_mp_process.BaseProcess):
        _start_method = "forkserver"

        @staticmethod
        def _Popen(process_obj: Any) -> Any:
            return _Popen(process_obj)

except ImportError:  # no forkserver (e.g. Windows)
    _Process = None  # type: ignore[assignment,misc]


def _make_context() -> Any:
    """(forkserver context, process class), or None where forkserver is unavailable."""
    if _Process is None:
        return None
    try:
        ctx = multiprocessing.get_context("forkserver")
    except ValueError:
        return None
    ctx.set_forkserver_preload(list(PRELOAD_MODULES))
    return (ctx, _Process)


def _get_context() -> Any:
    global _context, _context_ready
    with _CONTEXT_LOCK:
        if not _context_ready:
            _context, _context_ready = _make_context(), True
        return _context


def sandbox_available() -> bool:
    """True when :func:`call_limited` runs functions in a limited child process (Linux, macOS)."""
    return _get_context() is not None


def _vm_size_bytes() -> int | None:
    """This process's current virtual memory size (VmSize), or None where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _die_with_parent() -> None:
    """Linux: SIGKILL this child when its parent (the forkserver, which exits with the caller) dies."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _limit_cpu(timeout_s: float) -> None:
    """Backstop for the parent's timer: the kernel stops a child that burns more CPU than allowed."""
    try:
        import resource

        soft = int(timeout_s) + 5
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    except (ImportError, OSError, ValueError):
        pass


def _child_main(
    conn: Any, fn: Callable[..., Any], args: tuple, kwargs: dict, memory_mb: int | None, timeout_s: float
) -> None:
    """Child side: set the memory limit, call ``fn``, send ("ok", result) or an error tuple."""
    try:
        _die_with_parent()
        _limit_cpu(timeout_s)
        if memory_mb is not None:
            import resource

            base = _vm_size_bytes()
            if base is None:  # no /proc (macOS): the limit is then absolute
                base = 0
            limit = base + int(memory_mb) * 1024 * 1024
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        result = fn(*args, **kwargs)
        message: tuple = ("ok", result)
    except MemoryError as err:
        message = ("memory", str(err))
    except Clip2PointError as err:
        message = ("clip2point", err)
    except BaseException as err:  # anything else: report its type and message, not the object
        message = ("error", type(err).__name__, str(err), traceback.format_exc(limit=-8))
    try:
        conn.send(message)
    except MemoryError:
        conn.send(("memory", "the result did not fit in the memory limit"))
    except Exception as err:  # an unpicklable result or exception
        conn.send(("error", type(err).__name__, f"could not send the result back: {err}", ""))
    finally:
        conn.close()


def _describe(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _in_process(fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    global _warned_fallback
    if not _warned_fallback:
        _warned_fallback = True
        logger.warning("multiprocessing forkserver is unavailable here; running %s in-process without limits",
                       _describe(fn))
    return fn(*args, **kwargs)


def _wait_for_message(receiver: Any, child: Any, deadline: float) -> tuple | None:
    """The child's message, or None when it exits without one (a crash) or ``deadline`` (monotonic) passes."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready = connection.wait([receiver, child.sentinel], timeout=left)
        if receiver in ready:
            try:
                return receiver.recv()
            except EOFError:  # the child exited without a message (a crash)
                return None
            except MemoryError:
                return ("memory", "the result is too large to receive")
        elif child.sentinel in ready:  # exited; drain a message it may have sent just before
            if receiver.poll(0):
                continue
            return None


def _no_result_error(child: Any, name: str, timeout_s: float) -> Clip2PointError:
    """Why the child sent no result: the time limit (it is killed now), a signal, or an exit code."""
    child.join(timeout=0.5)
    if child.exitcode is None:  # still running: the time limit
        child.kill()
        child.join()
        return ResourceLimitError(
            f"{name} took longer than the {timeout_s:g} s limit and was stopped; "
            "use a smaller input (fewer points, a smaller file) or raise the time limit"
        )
    code = child.exitcode
    if code < 0:
        sig = -code
        try:
            signame = signal.Signals(sig).name
        except ValueError:
            signame = f"signal {sig}"
        what = (
            "was killed (SIGKILL, e.g. by the system's out-of-memory killer)"
            if sig == signal.SIGKILL
            else f"crashed ({signame})"
        )
        return ResourceLimitError(
            f"{name} {what} while working on its input; the input is probably corrupt or too large: "
            "check or re-export the file, or use a smaller one"
        )
    return SandboxError(f"{name} exited with code {code} without a result; check the input and the logs")


def _unpack(message: tuple, name: str, memory_mb: int | None) -> Any:
    """The result a child sent, or the exception it stands for."""
    kind = message[0]
    if kind == "ok":
        return message[1]
    if kind == "clip2point":
        raise message[1]
    if kind == "memory":
        limit = f"the {memory_mb} MiB memory limit" if memory_mb is not None else "the available memory"
        raise ResourceLimitError(
            f"{name} needed more than {limit} ({message[1] or 'MemoryError'}); "
            "use a smaller input (fewer points, a smaller file) or raise the memory limit"
        )
    _, type_name, text, tb = message
    logger.debug("sandboxed %s raised %s: %s\n%s", name, type_name, text, tb)
    raise SandboxError(f"{name} failed with {type_name}: {text}; check the input file")


def call_limited(
    fn: Callable[..., T], /, *args: Any, timeout_s: float = 60.0, memory_mb: int | None = 4096, **kwargs: Any
) -> T:
    """Return ``fn(*args, **kwargs)`` computed in a child process with time and memory limits.

    Args:
        fn: a module-level function (picklable by reference; not a lambda or a closure, and not
            defined in ``__main__``).
        *args, **kwargs: its arguments (pickled to the child).
        timeout_s: wall-clock limit in seconds (> 0); the child is killed when it is reached.
        memory_mb: extra address space the child may use beyond its size at start, in MiB;
            None = no limit.

    Returns:
        ``fn``'s return value (pickled back from the child).

    Raises:
        Clip2PointError: whatever ``fn`` raised of this family, re-raised unchanged.
        ResourceLimitError: the time or memory limit was hit, or the child died on a signal.
        SandboxError: ``fn`` raised another exception (its type and message are in the text).
        Clip2PointError: ``timeout_s`` or ``memory_mb`` is not positive.
    """
    if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
        raise Clip2PointError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    if memory_mb is not None and (isinstance(memory_mb, bool) or not isinstance(memory_mb, int) or memory_mb <= 0):
        raise Clip2PointError(f"memory_mb must be a positive integer or None, got {memory_mb!r}")
    context = _get_context()
    if context is None:
        return _in_process(fn, args, kwargs)
    ctx, process_class = context
    name = _describe(fn)
    receiver, sender = ctx.Pipe(duplex=False)
    child = process_class(target=_child_main, args=(sender, fn, args, kwargs, memory_mb, float(timeout_s)),
                          daemon=not multiprocessing.current_process().daemon,
                          name=f"clip2point-sandbox:{getattr(fn, '__name__', 'task')}")
    deadline = time.monotonic() + float(timeout_s)  # the start of the child counts against the limit
    try:
        child.start()
        sender.close()  # the child holds its own copy; EOF on receiver then means the child is gone
        message = _wait_for_message(receiver, child, deadline)
        if message is None:
            raise _no_result_error(child, name, timeout_s)
    finally:
        receiver.close()
        if child.pid is not None and child.exitcode is None:
            child.kill()
        if child.pid is not None:
            child.join()
            child.close()
    return _unpack(message, name, memory_mb)
