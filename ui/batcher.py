"""One encoder pass at a time, in arrival order, optionally batching concurrent requests.

:class:`EncodeBatcher` is what every session of the app encodes its views through
(``ui.registry.REGISTRY.batcher``); nothing here knows about models or UIs.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

import torch

__all__ = ["EncodeBatcher"]


class _Pending:
    """One caller's images waiting in an :class:`EncodeBatcher`."""

    __slots__ = ("key", "images", "encode", "result", "error", "done")

    def __init__(self, key: tuple, images: torch.Tensor, encode: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.key, self.images, self.encode = key, images, encode
        self.result: torch.Tensor | None = None
        self.error: BaseException | None = None
        self.done = False


class EncodeBatcher:
    """One encoder pass at a time, in arrival order, optionally batching concurrent requests.

    Leader/follower, no extra thread: callers that arrive while a pass runs wait; when it ends,
    one of them encodes what queued up meanwhile (same encoder, up to ``max_images`` images; the
    oldest request always goes) and hands each caller its rows. A lone request is encoded at
    once. An error fails only its own pass.

    ``max_images=1`` (the default) encodes one request per pass, first come first served. On a
    2-core CPU an image costs the same whatever the batch (ViT-B-32: 6, 12 or 60 images per pass
    within ±10 % per image, fp32 and bf16), so batching cannot raise throughput there, and it
    makes the slowest requests slower (``benchmarks/bench_app.py --compare
    fp32:1,fp32:64,bf16:1,bf16:64 --rounds 2``, ViT-B-32, 10 clients × 5 ``/classify``, ratios to
    one request per pass in the same run; a busy machine, load 7–9 / a quieter one, load 2–3:
    req/s 0.84× / 0.97× (fp32) and 0.82× / 1.01× (bf16); p95 1.88× / 1.46× and 1.70× / 1.50×;
    p50 1.15× / 0.88× and 1.13× / 0.85×; the tiny test model: all within noise). It is meant
    for GPUs, where one pass over many images costs about as much as one over a few
    (``python -m ui.app`` uses 64 there).

    Attributes:
        batches, images: how many passes ran and how many images they encoded.
    """

    def __init__(self, max_images: int = 1) -> None:
        self.max_images = int(max_images)
        self._cv = threading.Condition()
        self._pending: list[_Pending] = []
        self._running = False
        self.batches = 0
        self.images = 0

    def encode(self, key: tuple, images: torch.Tensor, encode: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``encode(images)`` for (N, ...) images, possibly batched with other callers of the same ``key``."""
        item = _Pending(key, images, encode)
        with self._cv:
            self._pending.append(item)
            while not item.done:
                if self._running:
                    self._cv.wait()
                    continue
                self._running = True
                batch = self._take()
                self._cv.release()
                try:
                    self._run(batch)
                finally:
                    self._cv.acquire()
                    self._running = False
                    self._cv.notify_all()
        if item.error is not None:
            raise item.error
        return item.result

    def _take(self) -> list[_Pending]:
        """Remove and return the next batch: queued items with the first item's key, up to max_images."""
        key, batch, total, rest = self._pending[0].key, [], 0, []
        for it in self._pending:
            n = len(it.images)
            if it.key == key and (not batch or total + n <= self.max_images):
                batch.append(it)
                total += n
            else:
                rest.append(it)
        self._pending = rest
        return batch

    def _run(self, batch: list[_Pending]) -> None:
        try:
            feats = batch[0].encode(torch.cat([it.images for it in batch]))
            start = 0
            for it in batch:
                it.result = feats[start : start + len(it.images)].clone()
                start += len(it.images)
            self.batches += 1
            self.images += start
        except BaseException as err:  # noqa: BLE001 - handed to every caller of this batch
            for it in batch:
                it.error = err
        finally:
            for it in batch:
                it.done = True
