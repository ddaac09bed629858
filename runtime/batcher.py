"""A dynamic batcher: concurrent requests for images coalesced into backend calls.

Requests for `(seed, start, n)` or for given latents `z` (a walk, arithmetic, a user's own
sampler), from many threads or asyncio tasks, are cut into pieces of at
most `max_batch` images and queued; a worker thread takes as many queued pieces as fit in
`max_batch` images the moment it is free (waiting at most `max_delay_ms` for more, default 0:
whatever is queued goes, as Triton's dynamic batcher does), runs them as one backend call, and
hands every caller exactly the bytes `Generator.generate(n, seed=seed, start=start)` (or
`Generator.from_latents(z)`) returns: a latent depends only on (seed, index), and a backend's
output for an image does not depend on the batch around it, so both kinds share one batch.

Limits count images, not requests: a queue holding `max_queue` images refuses more at once
(`Overloaded`); each request has a deadline (`DeadlineExceeded` if it is still queued then);
cancelled and expired requests are dropped before they are computed, and cancelling a request
whose first pieces already run drops its other pieces (a client that left costs at most the
batches already running); a backend failure in a batch is retried piece by piece, so one failing
request never fails the others. `close()` stops taking requests and finishes everything queued.

Example:
    >>> with Generator.load("artifacts/demo") as gen, Batcher(gen, max_batch=64) as batcher:
    ...     images = batcher.generate(seed=7, start=0, n=4)        # from a thread
    ...     images = await batcher.agenerate(seed=7, start=0, n=4)  # from asyncio
    ...     images = await batcher.afrom_latents(z)                   # any float32 (n, nz)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field

import numpy as np

from runtime.errors import DcganError
from runtime.generator import MAX_IMAGES, Generator, _check_range, _count, _seed
from runtime.latents import latents

MAX_CONCURRENCY = 64  # worker threads, each holding a backend call: far above what any host uses


class Overloaded(DcganError):
    """The queue is full: the caller should retry later (HTTP 503 with Retry-After)."""


class DeadlineExceeded(DcganError):
    """The request was still queued when its deadline passed; it was not computed."""


class BatcherClosed(DcganError):
    """The batcher is shutting down and takes no new requests."""


class TooLarge(DcganError, ValueError):
    """The request holds more images than the queue can ever hold: retrying cannot help (a 4xx)."""


class _Future(Future):
    """A request's Future whose `cancel()` also works once the request started: the pieces not
    yet computed are dropped, and the Future ends with CancelledError (`cancelled()` stays False
    for a started one, as `concurrent.futures` only cancels pending Futures)."""

    on_cancel: Callable[[], bool] | None = None

    def cancel(self) -> bool:
        if super().cancel():  # still pending: no piece of it ran
            if self.on_cancel is not None:
                self.on_cancel()
            return True
        return self.on_cancel is not None and self.on_cancel()


@dataclass
class _Request:
    seed: int
    start: int
    n: int
    deadline: float | None
    enqueued: float
    z: np.ndarray | None = None  # given latents (seed and start unused), float32 (n, nz)
    future: _Future = field(default_factory=_Future)
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
        if max_batch < 1 or max_queue < 1 or max_delay_ms < 0 or not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"need max_batch >= 1, max_queue >= 1, max_delay_ms >= 0 and "
                             f"1 <= concurrency <= {MAX_CONCURRENCY}")
        if timeout_s is not None and timeout_s < max_delay_ms / 1000.0:
            raise ValueError(f"max_delay_ms {max_delay_ms:g} is longer than the timeout of "
                             f"{timeout_s:g} s: a held batch would expire before it runs")
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
        arguments (TooLarge above the queue's size), Overloaded when the queue is full,
        BatcherClosed after close(). `cancel()` on the Future drops what is not computed yet."""
        n, start, seed = _count(n, "n"), _count(start, "start"), _seed(seed)  # plain ints
        _check_range(start, n)
        if n == 0:
            raise ValueError("n must be >= 1")
        return self._enqueue(_Request(seed, start, n, None, 0.0), timeout_s)

    def submit_latents(self, z: np.ndarray, timeout_s: float | None = None) -> Future:
        """Queue the images of latents `z` (float (n, nz), finite): exactly what
        `Generator.from_latents(z)` returns, in batches shared with seed requests."""
        z = self._checked_latents(z)
        return self._enqueue(_Request(0, 0, len(z), None, 0.0, z=z), timeout_s)

    def generate(self, seed: int, start: int, n: int, timeout_s: float | None = None) -> np.ndarray:
        """Blocking: the images of `submit`."""
        return self.submit(seed, start, n, timeout_s).result()

    def from_latents(self, z: np.ndarray, timeout_s: float | None = None) -> np.ndarray:
        """Blocking: the images of `submit_latents`."""
        return self.submit_latents(z, timeout_s).result()

    async def agenerate(self, seed: int, start: int, n: int,
                        timeout_s: float | None = None) -> np.ndarray:
        """From asyncio: the images of `submit`. Cancelling the awaiting task drops every piece
        of the request not computed yet."""
        return await asyncio.wrap_future(self.submit(seed, start, n, timeout_s))

    async def afrom_latents(self, z: np.ndarray, timeout_s: float | None = None) -> np.ndarray:
        """From asyncio: the images of `submit_latents` (cancellable like `agenerate`)."""
        return await asyncio.wrap_future(self.submit_latents(z, timeout_s))

    def _checked_latents(self, z) -> np.ndarray:
        z = np.asarray(z)
        nz = self.generator.nz
        if z.ndim != 2 or z.shape[1] != nz or z.shape[0] < 1:
            raise ValueError(f"z must have shape (n, {nz}) with n >= 1, got {z.shape}")
        if z.dtype.kind != "f":
            raise ValueError(f"z must be a float array (float32 expected), got {z.dtype}")
        if z.shape[0] > MAX_IMAGES:
            raise TooLarge(f"{z.shape[0]} latents in one request is above {MAX_IMAGES} — split it")
        if z.dtype != np.float32 or not z.flags.c_contiguous:  # (errstate costs microseconds)
            with np.errstate(over="ignore"):  # an overflow shows as inf, refused below
                z = np.ascontiguousarray(z, np.float32)
        if not np.isfinite(z).all():  # after the cast: 1e300 in float64 is inf in float32
            raise ValueError("z contains NaN or inf (as float32); expected finite latents")
        return z

    def _enqueue(self, request: _Request, timeout_s: float | None) -> Future:
        n = request.n
        if n > self.max_queue:
            raise TooLarge(f"{n} images in one request can never fit the queue of {self.max_queue} "
                           "images — ask for fewer")
        now = time.monotonic()
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        request.deadline, request.enqueued = (now + timeout_s if timeout_s else None), now
        request.future.on_cancel = lambda: self._drop(request)
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

    def _drop(self, request: _Request) -> bool:
        """Take a cancelled request's queued pieces out of the queue (and out of its count), and
        end its Future with CancelledError if it is running; False if it had finished."""
        with self._cond:
            kept = deque(p for p in self._pieces if p.request is not request)
            self._queued_images -= sum(p.count for p in self._pieces if p.request is request)
            self._pieces = kept
            if request.future.done():
                return request.future.cancelled()
            request.future.set_exception(CancelledError())
            return True

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

        def piece_latents(p: _Piece) -> np.ndarray:
            r = p.request
            if r.z is not None:
                return r.z[p.offset:p.offset + p.count]
            return latents(r.seed, r.start + p.offset, p.count, nz, latent)

        z = np.concatenate([piece_latents(p) for p in batch])
        return self.generator.backend.infer(z)

    def _deliver(self, piece: _Piece, images: np.ndarray) -> None:
        request = piece.request
        if request.future.done():
            return
        request.out[piece.offset:piece.offset + piece.count] = images
        with self._cond:  # a request's pieces may finish in different workers, or be cancelled
            request.pieces_left -= 1
            if request.pieces_left == 0 and not request.future.done():
                request.future.set_result(request.out)
