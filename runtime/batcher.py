"""A dynamic batcher: concurrent requests for images coalesced into backend calls.

Requests for `(seed, start, n)` from many threads or asyncio tasks are cut into pieces of at
most `max_batch` images and queued; a worker thread takes as many queued pieces as fit in
`max_batch` images the moment it is free (waiting at most `max_delay_ms` for more, default 0:
whatever is queued goes, as Triton's dynamic batcher does), runs them as one backend call, and
hands every caller exactly the bytes `Generator.generate(n, seed=seed, start=start)`
returns: a latent depends only on (seed, index), and a backend's output for an image does not
depend on the batch around it.

Limits count images, not requests: a queue holding `max_queue` images refuses more at once
(`Overloaded`); each request has a deadline (`DeadlineExceeded` if it is still queued then);
cancelled and expired requests are dropped before they are computed; a backend failure in a
batch is retried piece by piece, so one failing request never fails the others. `close()`
stops taking requests and finishes everything already queued.

Example:
    >>> with Generator.load("artifacts/demo") as gen, Batcher(gen, max_batch=64) as batcher:
    ...     images = batcher.generate(seed=7, start=0, n=4)        # from a thread
    ...     images = await batcher.agenerate(seed=7, start=0, n=4)  # from asyncio
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from runtime.errors import DcganError
from runtime.generator import Generator, _check_range, _count, _seed
from runtime.latents import latents


class Overloaded(DcganError):
    """The queue is full: the caller should retry later (HTTP 503 with Retry-After)."""


class DeadlineExceeded(DcganError):
    """The request was still queued when its deadline passed; it was not computed."""


class BatcherClosed(DcganError):
    """The batcher is shutting down and takes no new requests."""


@dataclass
class _Request:
    seed: int
    start: int
    n: int
    deadline: float | None
    enqueued: float
    future: Future = field(default_factory=Future)
    out: np.ndarray | None = None
    pieces_left: int = 0
    started: bool = False

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now > self.deadline


@dataclass
class _Piece:
    request: _Request
    offset: int  # into the request's images
    count: int


@dataclass
class BatchStats:
    """What one backend call held: for metrics (batch size histogram, queue seconds)."""
    images: int
    requests: int
    queue_seconds: list[float]
    seconds: float


class Batcher:
    """Coalesce concurrent image requests into backend calls of up to `max_batch` images.

    Args:
        generator: an open runtime Generator (thread-safe; its backend does the work).
        max_batch: most images per backend call (capped at the engine's max batch).
        max_delay_ms: how long to hold a batch that is not full, waiting for more (0: never).
        max_queue: most images queued at once; more is refused with Overloaded.
        timeout_s: default deadline per request (None: none).
        on_batch: called with a BatchStats after every backend call (metrics).
        concurrency: backend calls in flight at once, one worker thread each (Triton's instance
            count). With 2, the next batch is already running while the last slices of the one
            before finish and its callers are answered, so the cores do not wait on each other.
    """

    def __init__(self, generator: Generator, max_batch: int = 64, max_delay_ms: float = 0.0,
                 max_queue: int = 4096, timeout_s: float | None = 30.0,
                 on_batch: Callable[[BatchStats], None] | None = None, concurrency: int = 1):
        if max_batch < 1 or max_queue < 1 or max_delay_ms < 0 or concurrency < 1:
            raise ValueError("need max_batch >= 1, max_queue >= 1, max_delay_ms >= 0 and "
                             "concurrency >= 1")
        self.generator = generator
        self.max_batch = min(max_batch, generator.max_batch or max_batch)
        self.max_delay = max_delay_ms / 1000.0
        self.max_queue, self.timeout_s, self.on_batch = max_queue, timeout_s, on_batch
        self.concurrency = concurrency
        self._pieces: deque[_Piece] = deque()
        self._queued_images = 0
        self._cond = threading.Condition()
        self._closed = False
        self._workers = [threading.Thread(target=self._run, name=f"batcher-{i}", daemon=True)
                         for i in range(concurrency)]
        for worker in self._workers:
            worker.start()

    # -- callers ---------------------------------------------------------------------------------
    @property
    def queued_images(self) -> int:
        return self._queued_images

    def submit(self, seed: int, start: int, n: int, timeout_s: float | None = None) -> Future:
        """Queue a request; its Future resolves to uint8 (n, H, W, C). Raises ValueError for bad
        arguments, Overloaded when the queue is full, BatcherClosed after close()."""
        n, start, seed = _count(n, "n"), _count(start, "start"), _seed(seed)
        _check_range(start, n)
        if n == 0:
            raise ValueError("n must be >= 1")
        now = time.monotonic()
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        request = _Request(seed, start, n, now + timeout_s if timeout_s else None, now)
        size, c = self.generator.manifest.image_size, self.generator.manifest.channels
        with self._cond:
            if self._closed:
                raise BatcherClosed("the service is shutting down — retry on another instance")
            if self._queued_images + n > self.max_queue:
                raise Overloaded(f"the queue holds {self._queued_images} images and takes at most "
                                 f"{self.max_queue} — retry shortly")
            request.out = np.empty((n, size, size, c), np.uint8)
            offsets = range(0, n, self.max_batch)
            request.pieces_left = len(offsets)
            for offset in offsets:
                self._pieces.append(_Piece(request, offset, min(self.max_batch, n - offset)))
            self._queued_images += n
            self._cond.notify_all()
        return request.future

    def generate(self, seed: int, start: int, n: int, timeout_s: float | None = None) -> np.ndarray:
        """Blocking: the images of `submit`."""
        return self.submit(seed, start, n, timeout_s).result()

    async def agenerate(self, seed: int, start: int, n: int,
                        timeout_s: float | None = None) -> np.ndarray:
        """From asyncio: the images of `submit`. Cancelling the awaiting task drops the request
        if it was not started yet."""
        return await asyncio.wrap_future(self.submit(seed, start, n, timeout_s))

    def close(self) -> None:
        """Take no more requests; finish every queued one; stop the workers."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for worker in self._workers:
            worker.join()

    def __enter__(self) -> Batcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the worker ------------------------------------------------------------------------------
    def _take(self) -> list[_Piece] | None:
        """The next batch of pieces (None when closed and drained)."""
        with self._cond:
            while not self._pieces and not self._closed:
                self._cond.wait()
            if not self._pieces:
                return None
            if self.max_delay and self._queued_images < self.max_batch and not self._closed:
                wait_until = self._pieces[0].request.enqueued + self.max_delay
                while self._queued_images < self.max_batch and not self._closed:
                    left = wait_until - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            batch, images, now = [], 0, time.monotonic()
            while self._pieces and images + self._pieces[0].count <= self.max_batch:
                piece = self._pieces.popleft()
                self._queued_images -= piece.count
                request = piece.request
                if request.future.done():  # failed, expired or cancelled earlier
                    continue
                if not request.started:
                    if request.expired(now):
                        request.future.set_exception(DeadlineExceeded(
                            f"still queued after {now - request.enqueued:.1f} s, past its deadline "
                            "— the service is overloaded; retry later"))
                        continue
                    if not request.future.set_running_or_notify_cancel():  # cancelled
                        continue
                    request.started = True
                batch.append(piece)
                images += piece.count
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            if batch:
                self._compute(batch)

    def _compute(self, batch: list[_Piece]) -> None:
        t0 = time.perf_counter()
        try:
            images = self._infer(batch)
        except Exception:  # noqa: BLE001 - isolate: each piece alone, failing only its request
            for piece in batch:
                try:
                    self._deliver(piece, self._infer([piece]))
                except Exception as e:  # noqa: BLE001
                    with self._cond:  # its other pieces may be failing in another worker
                        if not piece.request.future.done():
                            piece.request.future.set_exception(e)
            return
        k = 0
        for piece in batch:
            self._deliver(piece, images[k:k + piece.count])
            k += piece.count
        if self.on_batch is not None:
            now = time.monotonic()
            self.on_batch(BatchStats(k, len({id(p.request) for p in batch}),
                                     [now - p.request.enqueued for p in batch],
                                     time.perf_counter() - t0))

    def _infer(self, batch: list[_Piece]) -> np.ndarray:
        nz, latent = self.generator.nz, self.generator.manifest.latent
        z = np.concatenate([latents(p.request.seed, p.request.start + p.offset, p.count, nz, latent)
                            for p in batch])
        return self.generator.backend.infer(z)

    def _deliver(self, piece: _Piece, images: np.ndarray) -> None:
        request = piece.request
        if request.future.done():
            return
        request.out[piece.offset:piece.offset + piece.count] = images
        with self._cond:  # a request's pieces may finish in different workers
            request.pieces_left -= 1
            last = request.pieces_left == 0
        if last:
            request.future.set_result(request.out)
