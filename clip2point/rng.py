"""Reproducible randomness without touching torch's process-wide RNG.

Reseeding torch's global generator (even inside a forked-RNG context) changes the random
numbers of every other thread of the process: in the app, one user's
few-shot run would perturb another's. Code that must be reproducible draws from its own
``torch.Generator`` instead. Third-party code that draws from the global generator without a
``generator=`` argument (e.g. open_clip's and ``torch.nn``'s parameter initialisation) is run
inside :func:`private_rng`, which hands it a private generator for the duration, on this thread
only.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["private_rng", "seeded_generator"]

#: Names of the in-place random fills (``Tensor.normal_`` ..., also ``torch.nn.init.normal_`` ...) and
#: random factories (``torch.randn`` ...) that take a ``generator=`` keyword.
_RANDOM_OPS = frozenset({
    "normal_", "uniform_", "random_", "bernoulli_", "exponential_", "geometric_", "log_normal_", "cauchy_",
    "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_", "orthogonal_",
    "sparse_", "randn", "rand", "randint", "randperm", "normal", "bernoulli", "multinomial",
})
_LIKE_OPS = {"randn_like": torch.randn, "rand_like": torch.rand}  # no generator= argument: rewritten


class _PrivateRNG(TorchFunctionMode):
    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.generator = generator

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        if name in _LIKE_OPS:
            t = args[0]
            kwargs.setdefault("dtype", t.dtype)
            kwargs.setdefault("device", t.device)
            return _LIKE_OPS[name](t.shape, generator=self.generator, **kwargs)
        if name in _RANDOM_OPS and kwargs.get("generator") is None:
            kwargs["generator"] = self.generator
        return func(*args, **kwargs)


@contextmanager
def private_rng(generator: torch.Generator) -> Iterator[torch.Generator]:
    """Route this thread's torch random draws to ``generator`` while the block runs.

    Every ``Tensor.normal_/uniform_/...`` and ``torch.randn/rand/randint/randperm/...`` call made
    in the block without an explicit ``generator=`` draws from ``generator`` (CPU tensors: a CPU
    generator). The global RNG is neither read nor advanced, and other threads are unaffected
    (torch-function modes are thread-local). ``torch.nn.functional.dropout`` takes no generator
    and is not redirected (see :class:`clip2point.gdpa.SeededDropout`).

    Example:
        >>> with private_rng(seeded_generator(0, "init")):
        ...     layer = torch.nn.Linear(4, 4)  # the same weights in every run, global RNG untouched
    """
    with _PrivateRNG(generator):
        yield generator


def seeded_generator(seed: int, *stream: object, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded by ``seed`` and any labels (independent streams)."""
    digest = hashlib.sha256(repr((int(seed), *stream)).encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)
